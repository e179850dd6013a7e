"""Serving an exported model with ONNX Runtime: text in, labels out, budget per call.

One ONNX Runtime session is shared by all callers (`InferenceSession.run` is thread-safe);
thresholds and caps travel with each call as inputs, so nothing per-request is stored.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import tokenizers

from bfexport import data
from bfexport.errors import BfexportError
from bfexport.exported import ExportedModel, load_exported
from bfexport.model import cap_rows, check_batch, check_int, threshold_rows
from bfexport.names import ATTENTION_MASK, BUDGET_THRESHOLDS, HEAD_CAPS, HEAD_COUNTS, INPUT_IDS, LOGITS

MAX_THREADS = 4 * (os.cpu_count() or 1)  # beyond a few threads per core ONNX Runtime only slows down


def session_options(threads: int | None = None) -> ort.SessionOptions:
    """Quiet, and safe to interleave with other sessions (idle sessions stop spinning).

    Quiet matters for adaptive and masked files: budget_thresholds and head_caps are graph
    inputs that are also initializers (ONNX's overridable initializers), so a call that passes
    no budget runs at the file's defaults and a call that passes one overrides them, per call.
    ONNX Runtime warns on load that such initializers "appear in graph inputs" and are not
    constant-folded; that is the intent (folding them would freeze the budget), so bfexport's
    sessions log errors only. Other consumers may ignore the warning, or set
    log_severity_level = 3 as here.
    """
    if threads is not None:
        check_int("threads", threads, 1, MAX_THREADS)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    options.add_session_config_entry("session.force_spinning_stop", "1")
    return options


@dataclass
class Prediction:
    label: str
    score: float  # softmax probability of the label
    head_counts: list[int]  # heads run in each layer


class OnnxClassifier:
    """Classify text with a model written by `bfexport convert`.

    Example:
        clf = OnnxClassifier("out/model.onnx")
        clf.classify(["A library for parsing JSON"], thresholds=[0.3] * clf.config.n_layers)
    """

    def __init__(self, model: str | Path | ExportedModel, *, threads: int | None = None,
                 tokenizer: tokenizers.Tokenizer | None = None) -> None:
        self.exported = model if isinstance(model, ExportedModel) else load_exported(model)
        self.config = self.exported.config
        if tokenizer is None:
            if self.exported.tokenizer_json is None:
                raise BfexportError(f"{self.exported.path}: no tokenizer embedded; pass tokenizer=")
            tokenizer = data.tokenizer_from_str(self.exported.tokenizer_json, str(self.exported.path),
                                                self.config.vocab_size)
        self.tokenizer = tokenizer
        proto = self.exported.proto
        if self.exported.kind.custom_op:
            from bfexport.ort_custom_ops import session
            self.session = session(proto, session_options(threads))
        else:
            self.session = ort.InferenceSession(proto.SerializeToString(), session_options(threads),
                                                providers=["CPUExecutionProvider"])
        self.input_names = {i.name for i in self.exported.proto.graph.input}  # incl. overridable initializers

    @property
    def budgeted(self) -> bool:
        return BUDGET_THRESHOLDS in self.input_names

    def run(self, input_ids: np.ndarray, attention_mask: np.ndarray, *, thresholds: Any = None,
            caps: Any = None) -> dict[str, np.ndarray]:
        """Raw outputs (logits, head_counts, selected_heads) for a padded batch.

        thresholds / caps: one value per layer, or one row per sample (batch, n_layers).
        """
        input_ids = np.asarray(input_ids, dtype=np.int64)
        attention_mask = np.asarray(attention_mask, dtype=np.int64)
        check_batch(input_ids, attention_mask, self.config)
        feeds = {INPUT_IDS: input_ids, ATTENTION_MASK: attention_mask}
        if thresholds is not None or caps is not None:
            if not self.budgeted:
                raise BfexportError(f"this model ({self.exported.flavor} flavor) has no budget inputs")
            batch = input_ids.shape[0]
            if thresholds is not None:
                feeds[BUDGET_THRESHOLDS] = np.asarray(threshold_rows(thresholds, batch, self.config), np.float32)
            if caps is not None:
                feeds[HEAD_CAPS] = np.asarray(cap_rows(caps, batch, self.config), np.int64)
        names = [o.name for o in self.session.get_outputs()]
        return dict(zip(names, self.session.run(names, feeds), strict=True))

    def classify(self, texts: str | Sequence[str], *, thresholds: Any = None, caps: Any = None,
                 batch_size: int = 32) -> list[Prediction]:
        """One prediction per text (a str is one text), run batch_size texts at a time so that
        memory follows the batch, not the number of texts. Per-sample thresholds / caps rows
        (len(texts), n_layers) are split with the texts."""
        if isinstance(texts, str):
            texts = [texts]
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise BfexportError(f"batch_size must be a positive integer, got {batch_size!r}")
        predictions: list[Prediction] = []
        for start in range(0, len(texts), batch_size):
            stop = min(start + batch_size, len(texts))
            ids, mask = data.encode(self.tokenizer, texts[start:stop], self.config.max_length)
            out = self.run(ids, mask, thresholds=_rows_of(thresholds, start, stop, len(texts)),
                           caps=_rows_of(caps, start, stop, len(texts)))
            logits = out[LOGITS].astype(np.float64)
            probs = np.exp(logits - logits.max(-1, keepdims=True))
            probs /= probs.sum(-1, keepdims=True)
            predictions += [Prediction(self.config.labels[int(b)], float(p[b]), [int(k) for k in counts])
                            for b, p, counts in zip(probs.argmax(-1), probs, out[HEAD_COUNTS], strict=True)]
        return predictions


def _rows_of(values: Any, start: int, stop: int, total: int) -> Any:
    """The rows start:stop of per-sample values (total rows); one row per layer applies to all."""
    if values is None or np.ndim(values) != 2 or len(values) == 1:
        return values
    if len(values) != total:
        raise BfexportError(f"per-sample values: expected {total} rows (one per text), got {len(values)}")
    return values[start:stop]
