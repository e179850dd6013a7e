"""The Hugging Face peer: a transformers BertForSequenceClassification of a model's shape (random
weights), dense and with `prune_heads` down to k heads per layer, exported by torch.onnx and run
by ONNX Runtime like every other graph. Only when transformers (the `hf` extra) is installed.

It is what an engineer gets without bfexport: static pruning of a standard BERT. Its
architecture is not BudgetFormer's (post-LN, a pooler, token-type embeddings), so it is a peer
row, never the dense reference: what it shows is the time, at the same shape and k.
"""

from __future__ import annotations

import importlib
import importlib.util
import io
import warnings
from collections.abc import Sequence
from contextlib import redirect_stdout
from typing import Any

import numpy as np

from bfexport.model import BudgetFormerConfig
from bfexport.names import ATTENTION_MASK, INPUT_IDS, LOGITS

HF_OPSET = 17  # torch.onnx's TorchScript exporter; dynamo=True would need onnxscript


def hf_available() -> bool:
    return importlib.util.find_spec("transformers") is not None


def hf_graphs(config: BudgetFormerConfig, ks: Sequence[int], seed: int = 0) -> list[tuple[str, int | None, bytes]]:
    """(variant, k, ONNX bytes): "hf-dense" (k None) and "hf-pruned" at each k < H, each
    checked against its PyTorch model's logits before it is returned."""
    import torch

    transformers: Any = importlib.import_module("transformers")  # untyped: reached through Any
    bert = transformers.BertConfig(
        vocab_size=config.vocab_size, hidden_size=config.d_model, num_attention_heads=config.n_heads,
        num_hidden_layers=config.n_layers, intermediate_size=config.d_ff, max_position_embeddings=config.max_length,
        num_labels=config.n_labels, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
        attn_implementation="eager")
    out: list[tuple[str, int | None, bytes]] = []
    for k in [None, *(k for k in ks if k < config.n_heads)]:
        torch.manual_seed(seed)
        model = transformers.BertForSequenceClassification(bert).eval()
        if k is not None:  # keep heads 0..k-1, as the static rows do
            model.prune_heads({layer: list(range(k, config.n_heads)) for layer in range(config.n_layers)})
        out.append(("hf-dense" if k is None else "hf-pruned", k, _export(model, config)))
    return out


def _export(model: Any, config: BudgetFormerConfig) -> bytes:
    import onnxruntime as ort
    import torch

    seq = min(config.max_length, 16)
    ids = torch.ones(2, seq, dtype=torch.long)
    mask = torch.ones_like(ids)
    mask[1, seq // 2:] = 0
    buffer: Any = io.BytesIO()  # torch.onnx.export writes to a file object too
    with warnings.catch_warnings(), redirect_stdout(io.StringIO()):  # the exporter's deprecation notes
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (ids, mask), buffer, input_names=[INPUT_IDS, ATTENTION_MASK], output_names=[LOGITS],
                          dynamic_axes={INPUT_IDS: {0: "batch", 1: "seq"}, ATTENTION_MASK: {0: "batch", 1: "seq"}},
                          opset_version=HF_OPSET, dynamo=False)
    payload: bytes = buffer.getvalue()
    with torch.no_grad():
        expected = model(ids, attention_mask=mask).logits.numpy()
    got = ort.InferenceSession(payload, providers=["CPUExecutionProvider"]).run(
        [LOGITS], {INPUT_IDS: ids.numpy(), ATTENTION_MASK: mask.numpy()})[0]
    if not np.allclose(got, expected, atol=1e-4, rtol=1e-3):
        raise RuntimeError(f"the Hugging Face export's logits differ from PyTorch's by "
                           f"{np.abs(got - expected).max():.2e}")
    return payload
