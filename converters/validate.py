"""Parity between the PyTorch model and an exported file under ONNX Runtime.

Runs both on the same inputs: real texts batched with mixed lengths, the same texts one by
one, and (for budgeted flavors) every k = 1..H forced through head caps with tau = 1.
Compares logits and, per (sample, layer), the set of heads that ran.

A check that can pass a broken model is worse than none, so any non-finite logit (in either
runtime) fails, as does any changed prediction in fp32 (fp16 may flip near-ties within its
tolerance). Logits agree when |onnx - torch| <= atol + rtol * |torch| elementwise (numpy.allclose).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import onnx
import tokenizers
import torch

from bfexport import data
from bfexport.errors import BfexportError
from bfexport.model import BudgetFormerForSequenceClassification
from bfexport.names import LOGITS, SELECTED_HEADS
from bfexport.runtime import OnnxClassifier
from converters.onnx.rebuild import float_type

TOLERANCE = {"fp32": 1e-4, "fp16": 2e-2}


@dataclass
class ParityReport:
    flavor: str
    samples: int  # (input, operating point) pairs compared
    max_abs_diff: float
    max_rel_diff: float
    head_selection_agreement: float  # share of (sample, layer) pairs with identical head sets
    prediction_agreement: float  # share of samples with the same argmax label
    tolerance: float  # atol
    rtol: float
    outside_tolerance: int  # logits (elements) with |diff| > atol + rtol * |torch|, non-finite ones included
    non_finite: int  # samples with a NaN or infinite logit in either runtime
    fp16: bool
    cases: dict[str, int]  # how many samples each kind of input contributed

    @property
    def failures(self) -> list[str]:
        """Why the check fails; empty when it passes."""
        out = []
        if self.non_finite:
            out.append(f"{self.non_finite} samples have NaN or infinite logits")
        if self.outside_tolerance:
            out.append(f"{self.outside_tolerance} logits outside the tolerance")
        if self.head_selection_agreement < 1.0:
            out.append("head selection differs")
        if self.prediction_agreement < 1.0 and not self.fp16:
            out.append("predictions differ (fp32)")
        return out

    @property
    def passed(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "passed": self.passed, "failures": self.failures}


def synthetic_texts(tokenizer: tokenizers.Tokenizer, n: int, max_length: int, seed: int = 0) -> list[str]:
    """`n` texts decoded from random ids of `tokenizer`'s vocabulary, 1 to 1.25 x max_length
    tokens long: inputs any exported file can produce itself (its tokenizer is embedded), of
    mixed lengths and past max_length so that truncation runs too."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, max_length * 5 // 4 + 2, n)
    vocab = tokenizer.get_vocab_size()
    return [tokenizer.decode(rng.integers(0, vocab, int(k)).tolist()) for k in lengths]


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
             batch_size: int = 8, atol: float | None = None, rtol: float = 0.0) -> ParityReport:
    """Compare `model` (PyTorch, eval mode) with `classifier` (the exported file) on `texts`.

    atol: absolute tolerance on logits (default TOLERANCE for the file's dtype); rtol: relative.
    """
    for name, value in (("atol", atol), ("rtol", rtol)):
        if value is not None and not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
            raise BfexportError(f"--{name} must be a finite number >= 0, got {value!r}")
    cfg, exported = model.config, classifier.exported
    fixed = exported.fixed_heads
    ids, mask = data.encode(classifier.tokenizer, texts, cfg.max_length)
    fp16 = float_type(exported) == onnx.TensorProto.FLOAT16
    atol = TOLERANCE["fp16" if fp16 else "fp32"] if atol is None else float(atol)
    max_abs = max_rel = 0.0
    agree = pairs = same_label = samples = outside = non_finite = 0
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
        finite = np.isfinite(ort_out[LOGITS]) & np.isfinite(ref_logits)
        non_finite += int((~finite).any(-1).sum())
        diff = np.abs(ort_out[LOGITS] - ref_logits)
        outside += int((~(diff <= atol + rtol * np.abs(ref_logits))).sum())  # NaN compares False: outside
        if finite.any():  # the maxima over finite logits; the others are counted above
            max_abs = max(max_abs, float(diff[finite].max()))
            max_rel = max(max_rel, float((diff / (np.abs(ref_logits) + 1e-6))[finite].max()))
        equal = _head_sets_equal(ort_out[SELECTED_HEADS], ref.selected_heads(cfg.n_heads).numpy())
        agree += int(equal.sum())
        pairs += equal.size
        same_label += int((ort_out[LOGITS].argmax(-1) == ref_logits.argmax(-1)).sum())
        samples += len(b_ids)
        cases[case.split("=")[0]] = cases.get(case.split("=")[0], 0) + len(b_ids)
    return ParityReport(exported.flavor, samples, max_abs, max_rel, agree / pairs, same_label / samples,
                        atol, rtol, outside, non_finite, fp16, cases)
