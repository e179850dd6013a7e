"""Every config field is type- and range-checked when a config is built: one line naming the field."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

import pytest

from bfexport.errors import BfexportError
from bfexport.model import ARCHITECTURE, BudgetFormerConfig
from tests.factories import TEXTS, VARIANTS, tiny_config, tiny_model


@pytest.mark.parametrize("overrides, message", [
    ({"labels": [0, 1]}, "labels[0] must be a non-empty string"),
    ({"labels": ["a", "a"]}, "labels must be distinct"),
    ({"labels": ["a", " b"]}, "labels[1] must be a non-empty string without surrounding whitespace"),
    ({"labels": "ab"}, "labels must be a list"),
    ({"labels": ["a", "b\nc"]}, "labels[1] 'b\\nc' contains a line break"),
    ({"labels": ["a", "b\rc"]}, "contains a line break"),
    ({"labels": ["a", "b\u2028c"]}, "contains a line break"),
    ({"labels": ["a", "b\x85c"]}, "contains a line break"),
    ({"labels": ["a", "b\ud800c"]}, "labels[1] 'b\\ud800c' is not valid Unicode"),
    ({"dropout": "x"}, "dropout must be a number in [0, 1), got 'x'"),
    ({"dropout": 2.0}, "dropout must be a number in [0, 1), got 2.0"),
    ({"dropout": float("nan")}, "dropout"),
    ({"adaptive": "maybe"}, "adaptive must be true or false, got 'maybe'"),
    ({"adaptive": 1}, "adaptive must be true or false"),
    ({"pad_token_id": -5}, "pad_token_id must be an integer in [0, 119], got -5"),
    ({"pad_token_id": 120}, "pad_token_id must be an integer in [0, 119]"),
    ({"vocab_size": 10**5000}, "vocab_size must be an integer in [1, 1000000], got an integer too long to print"),
    ({"budget_thresholds": [10**400] * 3}, "budget thresholds must lie in (0, 1]"),
    ({"d_model": 8192, "n_heads": 64, "n_layers": 64, "d_ff": 65536}, "parameters, more than the 1,000,000,000"),
    ({"norm": "sandwich"}, "norm must be one of 'pre', 'post', got 'sandwich'"),
    ({"norm": None}, "norm must be one of 'pre', 'post', got None"),
    ({"activation": "gelu_new"}, "activation must be one of 'gelu', 'gelu_tanh', 'relu', got 'gelu_new'"),
    ({"activation": "tanh"}, "activation must be one of"),
    ({"pooling": "max"}, "pooling must be one of 'mean', 'first', got 'max'"),
    ({"pooler": "sigmoid"}, "pooler must be one of 'none', 'tanh', 'relu', 'gelu', got 'sigmoid'"),
    ({"pooler": ["tanh"]}, "pooler must be one of"),
    ({"layer_norm_eps": 0.0}, "layer_norm_eps must be a number in (0, 1), got 0.0"),
    ({"layer_norm_eps": "1e-12"}, "layer_norm_eps must be a number in (0, 1), got '1e-12'"),
    ({"layer_norm_eps": float("nan")}, "layer_norm_eps must be a number in (0, 1)"),
    ({"layer_norm_eps": True}, "layer_norm_eps must be a number in (0, 1), got True"),
    ({"type_vocab_size": -1}, "type_vocab_size must be an integer in [0, 1024], got -1"),
    ({"type_vocab_size": 2.0}, "type_vocab_size must be an integer in [0, 1024], got 2.0"),
    ({"position_offset": 5000}, "position_offset must be an integer in [0, 1024], got 5000"),
    ({"position_offset": "2"}, "position_offset must be an integer in [0, 1024], got '2'"),
])
def test_bad_field_is_one_line_naming_it(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(BfexportError) as caught:
        tiny_config(**overrides)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value).replace("\\n", "")


@pytest.mark.parametrize("overrides", [{}, {"n_layers": 1, "n_heads": 1, "labels": ["only"]},
                                       {"vocab_size": 7, "d_model": 12, "n_heads": 3, "d_ff": 5},
                                       *VARIANTS.values(), {"pooler": "gelu", "type_vocab_size": 16}])
def test_parameter_count_is_the_models(overrides: dict[str, object]) -> None:
    model = tiny_model(**overrides)
    assert model.config.n_parameters == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("variant", VARIANTS)
def test_architecture_fields_round_trip(variant: str) -> None:
    config = tiny_config(**VARIANTS[variant])
    data = json.loads(config.to_json())
    assert {k: data[k] for k in VARIANTS[variant]} == VARIANTS[variant]
    assert BudgetFormerConfig.from_dict(data) == config


def test_architecture_fields_at_their_defaults_are_not_written() -> None:
    """So a config.json, and every export's metadata, reads byte for byte as before they existed."""
    data = json.loads(BudgetFormerConfig().to_json())
    assert not set(data) & set(ARCHITECTURE)
    assert set(data) | set(ARCHITECTURE) == {f.name for f in fields(BudgetFormerConfig)}
    written = json.loads(tiny_config(pooler="tanh").to_json())
    assert written["pooler"] == "tanh" and "norm" not in written


@pytest.mark.parametrize("field, value, message", [
    ("labels", [0, 1, 2, 3], "labels[0]"),
    ("dropout", "x", "dropout"),
    ("adaptive", "maybe", "adaptive"),
    ("pad_token_id", -5, "pad_token_id"),
    ("labels", ["libs", "games", "py\u2028thon", "doc"], "labels[2]"),
])
def test_checkpoint_with_a_bad_field_is_refused_by_every_reader(bfexport, checkpoint: Path, field: str,
                                                                value: object, message: str) -> None:
    config = json.loads((checkpoint / "config.json").read_text())
    (checkpoint / "config.json").write_text(json.dumps({**config, field: value}))
    result = bfexport("inspect", checkpoint)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(f"error: {checkpoint / 'config.json'}: config: {message}")
    assert result.stderr.count("\n") == 1


def test_config_round_trips_with_defaults() -> None:
    config = BudgetFormerConfig()
    assert BudgetFormerConfig.from_dict(json.loads(config.to_json())) == config


@pytest.mark.parametrize("bad", ["two\nlines", "carriage\rreturn", "line\u2028separator", "next\x85line"])
def test_train_refuses_a_label_deploy_cannot_carry_before_any_work(tmp_path: Path, monkeypatch, bad: str) -> None:
    from bfexport import data, train

    def no_work(*args: object, **kwargs: object) -> None:
        raise AssertionError("the tokenizer was trained before the labels were checked")

    monkeypatch.setattr(data, "train_tokenizer", no_work)
    rows = [data.Example(t, [bad, "fine"][i % 2], f"t:{i}") for i, t in enumerate(TEXTS)]
    with pytest.raises(BfexportError, match="contains a line break"):
        train.train(rows, rows, train.TrainConfig(epochs=1), tmp_path / "out")
