"""Tests for bfexport.data: reading user files, error messages, labels, tokenizer, encoding."""

from __future__ import annotations

import gzip
import importlib.util
import json
import re
from pathlib import Path

import numpy as np
import pytest

from bfexport.data import (
    MAX_CHARS,
    Example,
    batches,
    encode,
    label_ids,
    load_tokenizer,
    read_examples,
    train_tokenizer,
)
from bfexport.errors import BfexportError

DATASET = Path(__file__).resolve().parents[2] / "examples" / "debian-sections"
TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "A library for parsing JSON documents quickly.",
    "Python bindings for the quick parsing library.",
    "Documentation for the lazy dog package.",
    "Café résumé naïve façade",
] * 4


def write(path: Path, content: str | bytes) -> Path:
    data = content.encode("utf-8") if isinstance(content, str) else content
    path.write_bytes(gzip.compress(data, mtime=0) if path.suffix == ".gz" else data)
    return path


def jsonl(*rows: object) -> str:
    return "".join(json.dumps(row) + "\n" for row in rows)


def error_of(path: Path, **kwargs: object) -> str:
    with pytest.raises(BfexportError) as caught:
        read_examples(path, **kwargs)
    message = str(caught.value)
    assert "\n" not in message
    return message


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(TEXTS, vocab_size=200)


# --- reading -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["d.jsonl", "d.jsonl.gz"])
def test_reads_jsonl_plain_and_gzip(tmp_path: Path, name: str) -> None:
    path = write(tmp_path / name, jsonl({"text": "hello", "label": "pos"}, {"text": "bye", "label": 3}) + "\n\n")
    examples = read_examples(path)
    assert examples == [
        Example("hello", "pos", f"{path}:1"),
        Example("bye", "3", f"{path}:2"),
    ]


@pytest.mark.parametrize("name", ["d.csv", "d.csv.gz"])
def test_reads_csv_plain_and_gzip(tmp_path: Path, name: str) -> None:
    path = write(tmp_path / name, 'label,text\npos,"hello, ""world"""\n\nneg,"two\nlines"\n,unlabelled\n')
    examples = read_examples(path)
    assert [(e.text, e.label, e.source) for e in examples] == [
        ('hello, "world"', "pos", f"{path}:2"),
        ("two\nlines", "neg", f"{path}:4"),
        ("unlabelled", None, f"{path}:6"),
    ]


def test_gzip_is_detected_without_gz_suffix_and_bom_is_ignored(tmp_path: Path) -> None:
    path = write(tmp_path / "d.csv", gzip.compress("\ufefftext\nhi\n".encode(), mtime=0))
    assert read_examples(path)[0].text == "hi"


def test_labels_are_optional_and_limit_stops_early(tmp_path: Path) -> None:
    path = write(tmp_path / "d.jsonl", jsonl({"text": "a"}, {"text": "b"}) + "not json\n")
    assert [e.label for e in read_examples(path, limit=2)] == [None, None]


# --- errors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (jsonl({"text": "ok"}) + "{bad json\n", ":2: invalid JSON"),
        (jsonl({"text": "ok"}, ["a", "list"]), ":2: expected a JSON object, found an array"),
        (jsonl({"label": "x"}), ":1: missing 'text'"),
        (jsonl({"text": "ok"}, {"text": "   "}), ":2: empty text"),
        (jsonl({"text": 5}), ":1: 'text' must be a string, found a number"),
        (jsonl({"text": "ok", "label": 1.5}), ":1: label must be a string or an integer"),
    ],
)
def test_jsonl_errors_name_file_and_line(tmp_path: Path, content: str, expected: str) -> None:
    path = write(tmp_path / "d.jsonl", content)
    assert error_of(path).startswith(f"{path}{expected}")


def test_missing_label_when_required(tmp_path: Path) -> None:
    path = write(tmp_path / "d.jsonl", jsonl({"text": "a", "label": "x"}, {"text": "b"}))
    assert error_of(path, require_labels=True) == f"{path}:2: missing label"


def test_invalid_utf8_reports_the_line(tmp_path: Path) -> None:
    path = write(tmp_path / "d.jsonl", b'{"text": "ok"}\n{"text": "\xff"}\n')
    assert error_of(path).startswith(f"{path}:2: invalid UTF-8")


def test_too_long_line_is_rejected(tmp_path: Path) -> None:
    path = write(tmp_path / "d.jsonl", jsonl({"text": "ok"}, {"text": "x" * MAX_CHARS}))
    assert error_of(path) == f"{path}:2: line longer than 1,000,000 characters"


def test_too_long_csv_text_is_rejected(tmp_path: Path) -> None:
    path = write(tmp_path / "d.csv", 'text\n"' + ("y" * 1000 + "\n") * 1000 + '"\n')
    assert error_of(path).startswith(f"{path}:")
    assert "field larger than field limit" in error_of(path)


def test_csv_without_text_column(tmp_path: Path) -> None:
    path = write(tmp_path / "d.csv", "sentence,label\nhi,pos\n")
    assert error_of(path) == f"{path}:1: no 'text' column in the CSV header (found: sentence, label)"


def test_csv_row_with_extra_fields(tmp_path: Path) -> None:
    path = write(tmp_path / "d.csv", "text,label\nhello, world,pos\n")
    assert error_of(path).startswith(f"{path}:2: 3 fields but the header has 2")


@pytest.mark.parametrize(
    ("name", "content"),
    [("d.jsonl", ""), ("d.jsonl", "\n \n"), ("d.csv", ""), ("d.csv", "\n"), ("d.csv", "text,label\n")]
)
def test_no_usable_rows(tmp_path: Path, name: str, content: str) -> None:
    path = write(tmp_path / name, content)
    assert error_of(path) == f"{path}: no usable rows"


def test_missing_file_and_unknown_extension(tmp_path: Path) -> None:
    assert error_of(tmp_path / "nope.jsonl") == f"{tmp_path / 'nope.jsonl'}: no such file or directory"
    path = write(tmp_path / "d.json", jsonl({"text": "a"}))
    assert error_of(path).startswith(f"{path}: unsupported file type '.json'")


def test_corrupt_gzip(tmp_path: Path) -> None:
    path = write(tmp_path / "d.jsonl", gzip.compress(b'{"text": "a"}\n' * 100, mtime=0)[:30])
    assert re.match(rf"{re.escape(str(path))}:\d+: cannot decompress", error_of(path))


@pytest.mark.skipif(importlib.util.find_spec("datasets") is not None, reason="datasets is installed")
def test_directory_needs_datasets(tmp_path: Path) -> None:
    assert "pip install datasets" in error_of(tmp_path)


# --- labels --------------------------------------------------------------------------------


def test_label_ids_maps_names_to_indices() -> None:
    examples = [Example("t", label, f"f:{i}") for i, label in enumerate(["neg", "pos", "pos", "neg"])]
    ids = label_ids(examples, ["neg", "pos"])
    assert ids.dtype == np.int64
    assert ids.tolist() == [0, 1, 1, 0]


def test_label_ids_prefers_names_over_ids() -> None:
    assert label_ids([Example("t", "0", "f:1")], ["1", "0"]).tolist() == [1]


@pytest.mark.parametrize("label", ["maybe", "2", "-1", None])
def test_label_ids_rejects_unknown(label: str | None) -> None:
    labels = ["a", "b", "c", "d", "e", "f"]
    with pytest.raises(BfexportError, match=r"^f:7: ") as caught:
        label_ids([Example("t", "a", "f:6"), Example("t", label, "f:7")], labels[:2] if label == "2" else labels)
    if label == "maybe":
        assert str(caught.value) == "f:7: unknown label 'maybe' (known labels: a, b, c, d, e, ...)"


# --- tokenizer and encoding ---------------------------------------------------------------


def test_tokenizer_special_ids_and_determinism(tokenizer) -> None:
    assert tokenizer.token_to_id("[PAD]") == 0
    assert tokenizer.token_to_id("[UNK]") == 1
    for _ in range(3):  # the Rust trainer's hash maps are seeded differently on each call
        assert train_tokenizer(iter(TEXTS), vocab_size=200).get_vocab() == tokenizer.get_vocab()
    assert tokenizer.decode(tokenizer.encode("Café").ids) == "cafe"


def test_tokenizer_roundtrip_and_load_errors(tmp_path: Path, tokenizer) -> None:
    path = tmp_path / "tokenizer.json"
    tokenizer.save(str(path))
    assert load_tokenizer(path).get_vocab() == tokenizer.get_vocab()
    with pytest.raises(BfexportError, match="tokenizer file not found"):
        load_tokenizer(tmp_path / "missing.json")
    path.write_text("{not json")
    with pytest.raises(BfexportError, match=r"not a valid tokenizer\.json"):
        load_tokenizer(path)


def test_encode_pads_truncates_and_never_leaves_a_row_empty(tokenizer) -> None:
    texts = ["quick brown fox", "the quick brown fox jumps over the lazy dog", "", "   "]
    ids, mask = encode(tokenizer, texts, max_length=6)
    assert ids.dtype == mask.dtype == np.int64
    assert ids.shape == mask.shape == (4, 6)
    assert mask.sum(axis=1).tolist()[1] == 6  # truncated
    assert (mask.sum(axis=1) >= 1).all()
    assert ids[2].tolist() == [1, 0, 0, 0, 0, 0]  # empty text -> one [UNK]
    assert (ids[mask == 0] == 0).all()
    assert (mask[:, :-1] >= mask[:, 1:]).all()  # right padding

    short_ids, _ = encode(tokenizer, ["fox"], max_length=64)
    assert short_ids.shape[1] == len(tokenizer.encode("fox", add_special_tokens=False).ids)


def test_batches() -> None:
    examples = [Example(str(i), None, f"f:{i}") for i in range(7)]
    assert [len(b) for b in batches(examples, 3)] == [3, 3, 1]
    assert [e for b in batches(examples, 3) for e in b] == examples
    shuffled = [e for b in batches(examples, 3, shuffle=True, seed=1) for e in b]
    assert sorted(shuffled, key=lambda e: int(e.text)) == examples
    assert shuffled == [e for b in batches(examples, 3, shuffle=True, seed=1) for e in b]
    with pytest.raises(BfexportError):
        next(batches(examples, 0))


# --- shipped dataset -------------------------------------------------------------------------


def test_shipped_dataset_loads_with_20_labels() -> None:
    splits = {name: read_examples(DATASET / f"{name}.jsonl.gz", require_labels=True)
              for name in ("train", "validation", "test")}
    labels = sorted({e.label for e in splits["train"]})
    assert len(labels) == 20
    for examples in splits.values():
        assert {e.label for e in examples} == set(labels)
        assert len(label_ids(examples, labels)) == len(examples)
    assert len(splits["train"]) > 5 * len(splits["test"])
