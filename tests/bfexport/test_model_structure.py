"""model.py's shape: Block.forward is the layer and the model's forward the loop over blocks;
the budget fields are lists after construction; one validator per fact, shared by PyTorch and
OnnxClassifier; parameter names stay those of the checkpoints on disk."""

from __future__ import annotations

import contextlib
import typing
from pathlib import Path

import numpy as np
import pytest
import torch

from bfexport.checkpoint import load_checkpoint
from bfexport.errors import BfexportError
from bfexport.model import MASK_BIAS, BudgetFormerConfig, masked_mean
from bfexport.runtime import OnnxClassifier
from converters import AdaptiveExport, export_with_metadata, save_onnx
from tests.factories import tiny_config, tiny_model

SHIPPED = Path(__file__).resolve().parents[2] / "examples" / "debian-sections" / "checkpoint"


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.randint(1, 100, (3, 9), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0
    return ids, mask


def test_the_models_forward_is_the_loop_over_blocks() -> None:
    model = tiny_model(vocab_size=100)
    ids, mask = _batch()
    tau, cap = torch.full((3,), 0.4), torch.full((3,), 3)
    bool_mask = mask.to(torch.bool)
    key_bias = ((~bool_mask).float() * MASK_BIAS)[:, None, None, :]
    with torch.no_grad():
        x = model.tok_emb(ids) + model.pos_emb(torch.arange(ids.shape[1]))
        counts = []
        for block in model.blocks:
            x, sel, probs = block(x, bool_mask, key_bias, tau=tau, cap=cap)
            counts.append(sel.counts)
            assert probs is None  # q(k | x) only under training
        logits = model.classifier(masked_mean(model.ln_final(x), bool_mask))
    out = model.predict(ids, mask, thresholds=[0.4] * 3, caps=[3] * 3)
    assert torch.equal(out.logits, logits)
    assert torch.equal(out.head_counts, torch.stack(counts, dim=1))


def test_a_block_runs_fixed_heads_or_the_training_gate() -> None:
    model = tiny_model(vocab_size=100)
    ids, mask = _batch()
    block = model.blocks[0]
    x = model.tok_emb(ids)
    bool_mask = mask.to(torch.bool)
    key_bias = ((~bool_mask).float() * MASK_BIAS)[:, None, None, :]
    one = torch.ones(3)
    _, sel, _ = block(x, bool_mask, key_bias, tau=one, cap=one.long(), heads=[2, 0])
    assert sel.heads.tolist() == [[2, 0]] * 3 and sel.counts.tolist() == [2] * 3
    seen = []

    def gate(budget_logits: torch.Tensor, relevance: torch.Tensor):
        seen.append(budget_logits.shape)
        return torch.ones_like(relevance), sel

    _, gated, probs = block(x, bool_mask, key_bias, tau=one, cap=one.long(), heads=[1], gate=gate)
    assert gated is sel and seen == [(3, 4)]  # the gate wins over fixed heads, as in training
    assert probs is not None and torch.allclose(probs.sum(-1), torch.ones(3))


def test_budget_fields_are_lists_after_construction() -> None:
    hints = typing.get_type_hints(BudgetFormerConfig)
    assert hints["budget_thresholds"] == list[float] and hints["head_caps"] == list[int]
    for config in (tiny_config(), tiny_config(budget_thresholds=None, head_caps=None),
                   BudgetFormerConfig.from_dict({**tiny_config().to_dict(), "budget_thresholds": None,
                                                 "head_caps": None})):
        assert config.budget_thresholds == [0.5] * 3 and config.head_caps == [4] * 3


def test_parameter_names_are_the_checkpoints() -> None:
    """Checkpoints on disk name parameters this way; a rename would orphan them."""
    keys = list(tiny_model(n_layers=1).state_dict())
    assert keys == ["tok_emb.weight", "pos_emb.weight",
                    "blocks.0.ln_attn.weight", "blocks.0.ln_attn.bias",
                    "blocks.0.attn.qkv_weight", "blocks.0.attn.qkv_bias", "blocks.0.attn.out_weight",
                    "blocks.0.attn.out_bias", "blocks.0.attn.router.proj.weight", "blocks.0.attn.router.proj.bias",
                    "blocks.0.ln_ffn.weight", "blocks.0.ln_ffn.bias",
                    "blocks.0.ffn.up.weight", "blocks.0.ffn.up.bias", "blocks.0.ffn.down.weight",
                    "blocks.0.ffn.down.bias",
                    "ln_final.weight", "ln_final.bias", "classifier.weight", "classifier.bias"]
    shipped = load_checkpoint(SHIPPED)
    assert shipped.config.budget_thresholds == [0.5] * shipped.config.n_layers


BAD_BATCHES = [
    ("all padding", np.ones((2, 4)), np.array([[1, 1, 0, 0], [0, 0, 0, 0]])),
    ("max_length", np.ones((1, 40)), np.ones((1, 40))),
    ("non-empty", np.ones((1, 0)), np.ones((1, 0))),
    ("of one shape", np.ones((2, 4)), np.ones((2, 3))),
    ("vocabulary", np.full((1, 3), 10**6), np.ones((1, 3))),
]
BAD_BUDGETS = [
    ("threshold-range", {"thresholds": [0.0, 0.5, 0.5]}, r"\(0, 1\]"),
    ("threshold-count", {"thresholds": [0.5, 0.5]}, "expected a list of 3"),
    ("row-count", {"thresholds": [[0.5] * 3] * 3}, r"expected \(3,\) or \(2, 3\) values, got 3 rows"),
    ("ragged-rows", {"thresholds": [[0.5] * 3, [0.5]]}, "rows of different lengths"),
    ("cap-range", {"caps": [9, 1, 1]}, r"\[1, 4\]"),
    ("float-caps", {"caps": [2.0, 2.0, 2.0]}, "integers"),
]


@pytest.fixture(scope="module")
def both(tmp_path_factory: pytest.TempPathFactory, tokenizer):
    model = tiny_model(vocab_size=tokenizer.get_vocab_size())
    path = tmp_path_factory.mktemp("structure") / "m.onnx"
    clf = OnnxClassifier(save_onnx(export_with_metadata(model, AdaptiveExport(), tokenizer.to_str()), path), threads=1)
    return model, clf


@pytest.mark.parametrize("message, ids, mask", BAD_BATCHES, ids=[b[0] for b in BAD_BATCHES])
def test_pytorch_and_onnx_runtime_refuse_a_batch_alike(both, message: str, ids, mask) -> None:
    model, clf = both
    tensors = torch.as_tensor(ids, dtype=torch.long), torch.as_tensor(mask, dtype=torch.long)
    errors = []
    for run in (lambda: model.predict(*tensors), lambda: clf.run(ids, mask)):
        with pytest.raises(BfexportError, match=message) as caught:
            run()
        errors.append(str(caught.value))
    assert errors[0] == errors[1]


@pytest.mark.parametrize("budget, message", [b[1:] for b in BAD_BUDGETS], ids=[b[0] for b in BAD_BUDGETS])
def test_pytorch_and_onnx_runtime_refuse_budget_rows_alike(both, budget, message: str) -> None:
    model, clf = both
    ids, mask = np.ones((2, 5), dtype=np.int64), np.ones((2, 5), dtype=np.int64)
    variants = [budget]
    with contextlib.suppress(ValueError):  # ragged rows have no array form
        variants.append({k: np.asarray(v) for k, v in budget.items()})
    runs = (lambda values: model.predict(torch.from_numpy(ids), torch.from_numpy(mask), **values),
            lambda values: clf.run(ids, mask, **values))
    errors = []
    for values in variants:
        for run in runs:
            with pytest.raises(BfexportError, match=message) as caught:
                run(values)
            errors.append(str(caught.value))
    assert len(set(errors)) == 1, errors
