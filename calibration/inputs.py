"""Calibration data from any source, tokenized once.

The library does not own the data loop (torchao's habit): a caller can pass a data file, an
iterable of (texts, labels) batches, or a `forward_loop(feed)` callable that calls
`feed(texts, labels=None)` for each of its batches. Everything ends up as token id rows
plus, when every row has one, label ids; the search then only ever slices these arrays.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import numpy as np
import tokenizers

from bfexport import data as bfdata
from bfexport.errors import BfexportError
from bfexport.model import BudgetFormerConfig

Feed = Callable[..., None]
ForwardLoop = Callable[[Feed], Any]
DataSource = Union[str, Path, ForwardLoop, Iterable[Any]]


@dataclass
class CalibrationData:
    """Token rows (each 1..max_len tokens) and optional label ids, in the source's order."""

    tokens: list[np.ndarray]  # per sample int64 token ids, truncated to max_len
    labels: np.ndarray | None  # (N,) int64 class ids; None unless every row is labelled
    source: str
    seq_len: int | None = None  # fixed padded length for latency batches; None pads to the batch's longest row
    unlabelled_rows: int = 0  # rows without a label (forcing the agreement objective)

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def lengths(self) -> np.ndarray:
        return np.array([len(t) for t in self.tokens], dtype=np.int64)

    def batch(self, indices: Sequence[int] | np.ndarray, pad_to: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Right-padded (input_ids, attention_mask) for the rows `indices`."""
        return bfdata.pad([self.tokens[i] for i in indices], pad_to)


def collect(source: DataSource, config: BudgetFormerConfig, tokenizer: tokenizers.Tokenizer, *,
            samples: int | None = None, seq_len: int | None = None) -> CalibrationData:
    """Read, validate and tokenize calibration rows from `source`.

    Args:
        source: a data file path (.jsonl/.csv, gzip ok, or a saved HF dataset); an iterable
            whose items are (texts, labels) pairs or {"text": [...], "label": [...]} batches
            (labels may be None); or a forward loop, called once with `feed`.
        samples: keep at most this many rows.
        seq_len: truncate rows to this many tokens, and pad latency batches to it.
    Returns:
        CalibrationData; raises BfexportError when no usable row is left.
    """
    if seq_len is not None and not 1 <= seq_len <= config.max_length:
        raise BfexportError(f"sequence length must be in [1, {config.max_length}] (the model's max_length), "
                            f"got {seq_len}")
    if samples is not None and samples < 1:
        raise BfexportError(f"samples must be at least 1, got {samples}")
    texts: list[str] = []
    labels: list[Any] = []
    if isinstance(source, (str, Path)):
        examples = bfdata.read_examples(source, limit=samples)
        texts = [e.text for e in examples]
        labels = [e.label for e in examples]
        name = str(source)
        ids = _label_ids_from_examples(examples, config) if all(lab is not None for lab in labels) else None
    else:
        name = _gather(source, texts, labels, samples)
        ids = _label_ids(labels, config) if labels and all(lab is not None for lab in labels) else None
    if not texts:
        raise BfexportError(f"calibration data {name} has no usable rows (no non-blank texts)")
    max_len = seq_len or config.max_length
    unk = tokenizer.token_to_id(bfdata.UNK_TOKEN)
    tokens = [np.asarray(ids or [unk], dtype=np.int64) for ids in bfdata.token_ids(tokenizer, texts, max_len)]
    for row in tokens:
        if row.max() >= config.vocab_size:
            raise BfexportError(f"calibration data {name}: the tokenizer produced ids outside the model's vocabulary "
                                f"({config.vocab_size}); is this the model's tokenizer?")
    unlabelled = sum(lab is None for lab in labels)
    return CalibrationData(tokens, ids, name, seq_len, unlabelled)


def _gather(source: Any, texts: list[str], labels: list[Any], samples: int | None) -> str:
    """Append rows from an iterable of batches or a forward loop; returns a name for messages."""
    full = [False]

    def feed(batch_texts: Sequence[str] | None, batch_labels: Sequence[Any] | None = None) -> None:
        if isinstance(batch_texts, str) or not isinstance(batch_texts, Sequence):
            raise BfexportError("calibration feed: texts must be a list of strings, one per row")
        if batch_labels is not None and len(batch_labels) != len(batch_texts):
            raise BfexportError(f"calibration feed: {len(batch_texts)} texts but {len(batch_labels)} labels")
        for j, text in enumerate(batch_texts):
            if samples is not None and len(texts) >= samples:
                full[0] = True
                return
            if not isinstance(text, str):
                raise BfexportError(f"calibration feed: text must be a string, got {type(text).__name__}")
            if not text.strip():
                continue  # blank rows carry nothing to route on
            texts.append(text)
            labels.append(None if batch_labels is None else batch_labels[j])

    if callable(source) and not isinstance(source, Iterable):
        source(feed)
        return getattr(source, "__name__", "forward_loop")
    if not isinstance(source, Iterable):
        raise BfexportError(f"calibration data must be a file path, an iterable of (texts, labels) batches or a "
                            f"forward loop, got {type(source).__name__}")
    for item in source:
        if isinstance(item, Mapping):
            feed(item.get("text"), item.get("label"))
        elif isinstance(item, (tuple, list)) and len(item) == 2:
            feed(item[0], item[1])
        else:
            raise BfexportError("calibration batches must be (texts, labels) pairs or {'text': [...], 'label': [...]} "
                                f"mappings, got {type(item).__name__}")
        if full[0]:
            break
    return type(source).__name__


def _label_ids_from_examples(examples: Sequence[bfdata.Example], config: BudgetFormerConfig) -> np.ndarray:
    return bfdata.label_ids(examples, config.labels)


def _label_ids(labels: Sequence[Any], config: BudgetFormerConfig) -> np.ndarray:
    """Label names or integer ids -> class ids, refusing labels the model does not know."""
    index = {name: i for i, name in enumerate(config.labels)}
    out = []
    for lab in labels:
        if isinstance(lab, (int, np.integer)) and not isinstance(lab, bool) and 0 <= int(lab) < config.n_labels:
            out.append(int(lab))
        elif isinstance(lab, str) and lab.strip() in index:
            out.append(index[lab.strip()])
        else:
            known = ", ".join(config.labels[:5]) + (", ..." if config.n_labels > 5 else "")
            raise BfexportError(f"calibration label {lab!r} is not one of the model's labels ({known})")
    return np.asarray(out, dtype=np.int64)
