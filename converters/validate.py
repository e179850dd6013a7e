"""Parity between the PyTorch model and an exported file under ONNX Runtime.

Runs both on the same inputs: real texts batched with mixed lengths, the same texts one by
one, and (for budgeted flavors) every k = 1..H forced through head caps with tau = 1.
Compares logits and, per (sample, layer), the set of heads that ran.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from bfexport import data
from bfexport.model import BudgetFormerForSequenceClassification
from bfexport.runtime import OnnxClassifier

TOLERANCE = {"fp32": 1e-4, "fp16": 2e-2}


@dataclass
class ParityReport:
    flavor: str
    samples: int  # (input, operating point) pairs compared
    max_abs_diff: float
    max_rel_diff: float
    head_selection_agreement: float  # share of (sample, layer) pairs with identical head sets
    prediction_agreement: float  # share of samples with the same argmax label
    tolerance: float
    cases: dict[str, int]  # how many samples each kind of input contributed

    @property
    def passed(self) -> bool:
        return self.max_abs_diff <= self.tolerance and self.head_selection_agreement == 1.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "passed": self.passed}


def _head_sets_equal(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(B, L) bool: same set of heads, whatever their order."""
    equal: np.ndarray = (np.sort(a, axis=-1) == np.sort(b, axis=-1)).all(-1)
    return equal


def _cases(ids: np.ndarray, mask: np.ndarray, n_layers: int, n_heads: int, budgeted: bool,
           batch_size: int) -> Iterator[tuple[str, np.ndarray, np.ndarray, dict[str, Any]]]:
    for start in range(0, len(ids), batch_size):
        yield "batched", ids[start:start + batch_size], mask[start:start + batch_size], {}
    for i in range(min(len(ids), 8)):
        width = int(mask[i].sum())
        yield "single", ids[i:i + 1, :width], mask[i:i + 1, :width], {}
    if budgeted:
        chunk = slice(0, min(len(ids), batch_size))
        for k in range(1, n_heads + 1):
            yield f"forced_k={k}", ids[chunk], mask[chunk], {"thresholds": [1.0] * n_layers, "caps": [k] * n_layers}
        rng = np.random.default_rng(0)
        rows = len(ids[chunk])
        per_sample = {"thresholds": rng.uniform(0.05, 1.0, (rows, n_layers)).astype(np.float32)}
        yield "per_sample_thresholds", ids[chunk], mask[chunk], per_sample


def validate(model: BudgetFormerForSequenceClassification, classifier: OnnxClassifier, texts: Sequence[str], *,
             batch_size: int = 8) -> ParityReport:
    """Compare `model` (PyTorch, eval mode) with `classifier` (the exported file) on `texts`."""
    cfg, exported = model.config, classifier.exported
    fixed: list[list[int]] | None = None
    if exported.flavor == "static":
        fixed = exported.static_heads
    elif exported.flavor == "dense":
        fixed = [list(range(cfg.n_heads))] * cfg.n_layers
    ids, mask = data.encode(classifier.tokenizer, texts, cfg.max_length)
    fp16 = any(init.data_type == 10 for init in exported.proto.graph.initializer)  # TensorProto.FLOAT16
    max_abs = max_rel = 0.0
    agree = pairs = same_label = samples = 0
    cases: dict[str, int] = {}
    defaults = {"thresholds": exported.default_thresholds, "caps": exported.default_caps}
    for case, b_ids, b_mask, budget in _cases(ids, mask, cfg.n_layers, cfg.n_heads, classifier.budgeted, batch_size):
        ort_out = classifier.run(b_ids, b_mask, **budget)
        budget = {**defaults, **budget}  # the file's defaults may be calibrated ones, not the checkpoint's
        thresholds = budget.get("thresholds")
        ref = model.predict(torch.from_numpy(b_ids), torch.from_numpy(b_mask), fixed_heads=fixed,
                            thresholds=None if thresholds is None else torch.as_tensor(thresholds),
                            caps=budget.get("caps"))
        ref_logits = ref.logits.numpy()
        diff = np.abs(ort_out["logits"] - ref_logits)
        max_abs = max(max_abs, float(diff.max()))
        max_rel = max(max_rel, float((diff / (np.abs(ref_logits) + 1e-6)).max()))
        equal = _head_sets_equal(ort_out["selected_heads"], ref.selected_heads(cfg.n_heads).numpy())
        agree += int(equal.sum())
        pairs += equal.size
        same_label += int((ort_out["logits"].argmax(-1) == ref_logits.argmax(-1)).sum())
        samples += len(b_ids)
        cases[case.split("=")[0]] = cases.get(case.split("=")[0], 0) + len(b_ids)
    return ParityReport(exported.flavor, samples, max_abs, max_rel, agree / pairs, same_label / samples,
                        TOLERANCE["fp16" if fp16 else "fp32"], cases)
