"""Labels are matched by name: numbers are not class indices into named labels, and a label column
under another name is said, not silently read as unlabelled data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bfexport.data import Example, label_ids, read_examples, unlabelled_note
from bfexport.errors import BfexportError
from tests.factories import LABELS, TEXTS


@pytest.mark.parametrize("label", ["1", "0", "-1"])
def test_number_is_not_an_index_into_named_labels(label: str) -> None:
    with pytest.raises(BfexportError) as caught:
        label_ids([Example("t", "neg", "f:1"), Example("t", label, "f:2")], ["neg", "pos"])
    assert str(caught.value) == (f"f:2: label {label} is a number, but this model's labels are names (neg, pos); "
                                 "write the label names, not class indices")


def test_numbers_that_are_the_label_names_still_work() -> None:
    assert label_ids([Example("t", "2", "f:1"), Example("t", "10", "f:2")], ["10", "2"]).tolist() == [1, 0]


def test_inspect_refuses_numeric_labels_on_a_named_model(bfexport, checkpoint: Path, tmp_path: Path) -> None:
    data = tmp_path / "ids.jsonl"
    data.write_text("".join(json.dumps({"text": t, "label": i % 4}) + "\n" for i, t in enumerate(TEXTS)))
    result = bfexport("inspect", checkpoint, "--data", data)
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: {data}:1: label 0 is a number, but this model's labels are names")


def test_label_column_under_another_name_gets_a_note(bfexport, checkpoint: Path, tmp_path: Path) -> None:
    data = tmp_path / "other.jsonl"
    data.write_text("".join(json.dumps({"text": t, "section": LABELS[i % 4]}) + "\n" for i, t in enumerate(TEXTS)))
    result = bfexport("inspect", checkpoint, "--data", data, "--json")
    assert result.returncode == 0, result.stderr
    assert f"note: {data}: no row has a 'label' field (other fields: section); read as unlabelled" in result.stderr
    assert json.loads(result.stdout)["accuracy"] is None


def test_plain_unlabelled_data_needs_no_note(tmp_path: Path) -> None:
    data = tmp_path / "plain.csv"
    data.write_text("text\nhello\nworld\n")
    assert unlabelled_note(read_examples(data), data) is None
    labelled = tmp_path / "labelled.jsonl"
    labelled.write_text('{"text": "a", "label": "x", "id": 3}\n')
    assert unlabelled_note(read_examples(labelled), labelled) is None


def test_partly_labelled_data_gets_a_note(tmp_path: Path) -> None:
    data = tmp_path / "partly.jsonl"
    data.write_text('{"text": "a", "label": "x"}\n{"text": "b"}\n{"text": "c", "label": ""}\n')
    assert unlabelled_note(read_examples(data), data) == f"{data}: 2 of 3 rows have no label; read as unlabelled"
