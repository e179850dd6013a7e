"""What `bfexport inspect` reports: architecture, cost per layer, and behaviour on data.

Works on a checkpoint (PyTorch) or an exported file (ONNX Runtime) through one `Runner`:
a callable from a padded batch to its outputs (logits, head_counts, selected_heads), the
same names and shapes as the exported graph's, so `OnnxClassifier.run` is a runner.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import tokenizers
import torch

from bfexport import cost, data
from bfexport.flavors import AdaptiveExport, ExportConfig, flavor_named
from bfexport.model import BudgetFormerConfig, BudgetFormerForSequenceClassification
from bfexport.names import HEAD_COUNTS, LOGITS, OUTPUTS, SELECTED_HEADS

TORCH = "pytorch"  # the flavor `bfexport inspect` names a checkpoint's run
Runner = Callable[[np.ndarray, np.ndarray], dict[str, np.ndarray]]


def torch_runner(model: BudgetFormerForSequenceClassification) -> Runner:
    def run(ids: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
        out = model.predict(torch.from_numpy(ids), torch.from_numpy(mask))
        return {LOGITS: out.logits.numpy(), HEAD_COUNTS: out.head_counts.numpy(),
                SELECTED_HEADS: out.selected_heads(model.config.n_heads).numpy()}
    return run


def architecture(config: BudgetFormerConfig, n_params: int | None = None) -> dict[str, Any]:
    return {"n_layers": config.n_layers, "n_heads": config.n_heads, "d_model": config.d_model,
            "d_head": config.d_head, "d_ff": config.d_ff, "max_length": config.max_length,
            "vocab_size": config.vocab_size, "n_labels": config.n_labels, "adaptive": config.adaptive,
            "budget_thresholds": config.budget_thresholds, "head_caps": config.head_caps, "parameters": n_params}


def run_data(runner: Runner, tokenizer: tokenizers.Tokenizer, config: BudgetFormerConfig, texts: Sequence[str],
             batch_size: int = 32) -> dict[str, np.ndarray]:
    """The runner's outputs over `texts`, in order, plus `lengths` (tokens per text)."""
    parts: dict[str, list[np.ndarray]] = {}
    for start in range(0, len(texts), batch_size):
        ids, mask = data.encode(tokenizer, texts[start:start + batch_size], config.max_length)
        out = {**runner(ids, mask), "lengths": mask.sum(-1)}
        for name in (*OUTPUTS, "lengths"):
            parts.setdefault(name, []).append(out[name])
    return {name: np.concatenate(arrays) for name, arrays in parts.items()}


def behaviour(config: BudgetFormerConfig, flavor: str, outputs: dict[str, np.ndarray],
              labels: np.ndarray | None) -> dict[str, Any]:
    """Accuracy, head statistics and FLOPs of one flavor over a dataset (run_data's outputs).

    flavor: an exported file's, or "pytorch" for a checkpoint run in PyTorch (it computes what
    its adaptive export does).
    """
    counts, lengths, selected = outputs[HEAD_COUNTS], outputs["lengths"], outputs[SELECTED_HEADS]
    heads, router = cost.computed_heads(_kind(flavor), counts, config.n_heads)
    L, H = config.n_layers, config.n_heads
    return {
        "samples": int(len(lengths)),
        "accuracy": float((outputs[LOGITS].argmax(-1) == labels).mean()) if labels is not None else None,
        "mean_heads_per_layer": [round(float(v), 4) for v in counts.mean(0)],
        "k_histogram_per_layer": [np.bincount(counts[:, layer], minlength=H + 1)[1:].tolist() for layer in range(L)],
        "head_usage_per_layer": head_usage(selected, H).round(4).tolist(),
        "adaptivity_per_layer": adaptivity(counts, H),
        "mean_length": float(lengths.mean()),
        "flops_ratio": cost.flops_ratio(config, lengths, heads, router=router),
        "flops_per_layer": [2 * m for m in cost.per_layer_macs(config, lengths, heads, router=router)],
        "dense_flops_per_layer": [2 * m for m in cost.per_layer_macs(config, lengths, None)],
    }


def _kind(flavor: str) -> type[ExportConfig]:
    return AdaptiveExport if flavor == TORCH else flavor_named(flavor)


def head_usage(selected_heads: np.ndarray, n_heads: int) -> np.ndarray:
    """(N, L, H) selected heads (-1 = none) -> (L, H): the share of samples running each head."""
    return np.stack([(selected_heads == h).any(-1).mean(0) for h in range(n_heads)], axis=-1)


ADAPTIVE_SHARE = 0.1  # a layer is adaptive when at least two budgets are each used by this share of inputs


def adaptivity(head_counts: np.ndarray, n_heads: int) -> list[dict[str, Any]]:
    """(N, L) budgets -> per layer: how many distinct k are in use, their std, the share of the
    most common k, and whether the layer really varies (two budgets each on >= ADAPTIVE_SHARE of
    inputs): a layer that runs one k on 99% of inputs is a static budget with per-input head choice."""
    out = []
    for layer in range(head_counts.shape[1]):
        k = head_counts[:, layer]
        shares = np.bincount(k, minlength=n_heads + 1)[1:] / len(k)
        out.append({"distinct_k": int((shares > 0).sum()), "std_k": round(float(k.std()), 4),
                    "top_k_share": round(float(shares.max()), 4),
                    "adaptive": bool((shares >= ADAPTIVE_SHARE).sum() >= 2)})
    return out
