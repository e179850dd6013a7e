"""Training end to end on a toy set: a loadable checkpoint, kept best epoch, reproducible."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from bfexport import data
from bfexport.checkpoint import load_checkpoint
from bfexport.errors import BfexportError
from bfexport.train import ExploreExploit, TrainConfig, train
from tests.factories import LABELS, TEXTS, tiny_config

TINY = dict(epochs=2, batch_size=8, explore_frac=0.75, vocab_size=150, max_length=16, d_model=16, n_heads=2,
            n_layers=1, d_ff=32)


def examples() -> list[data.Example]:
    return [data.Example(t, LABELS[i % 4], f"toy:{i}") for i, t in enumerate(TEXTS)]


def test_train_writes_a_loadable_checkpoint_and_is_reproducible(tmp_path: Path) -> None:
    runs = []
    for name in ("a", "b"):
        result = train(examples(), examples(), TrainConfig(**TINY), tmp_path / name, show_progress=False)
        runs.append(result)
    assert runs[0] == runs[1]
    a, b = (load_file(str(tmp_path / n / "model.safetensors")) for n in "ab")
    assert all((a[k] == b[k]).all() for k in a)
    model = load_checkpoint(tmp_path / "a")
    assert model.config.labels == sorted(LABELS) and model.config.adaptive
    metrics = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert metrics["best"]["epoch"] == 2  # epoch 1 is still exploring, so it cannot be kept
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == [
        "config.json", "metrics.json", "model.safetensors", "tokenizer.json", "training_args.json"]


def test_dense_training_runs_every_head(tmp_path: Path) -> None:
    train(examples(), examples(), TrainConfig(**{**TINY, "dense": True, "epochs": 1}), tmp_path / "d",
          show_progress=False)
    model = load_checkpoint(tmp_path / "d")
    assert not model.config.adaptive
    metrics = json.loads((tmp_path / "d" / "metrics.json").read_text())
    assert metrics["best"]["mean_heads_per_layer"] == [2.0]


def test_first_token_pooling_reaches_the_checkpoint(tmp_path: Path) -> None:
    train(examples(), examples(), TrainConfig(**{**TINY, "pooling": "first", "epochs": 1}), tmp_path / "f",
          show_progress=False)
    config = load_checkpoint(tmp_path / "f").config
    assert config.pooling == "first" and config.adaptive


def test_training_refuses_a_single_label(tmp_path: Path) -> None:
    rows = [data.Example(t, "libs", f"toy:{i}") for i, t in enumerate(TEXTS)]
    with pytest.raises(BfexportError, match="two distinct labels"):
        train(rows, rows, TrainConfig(**TINY), tmp_path / "x", show_progress=False)
    assert not (tmp_path / "x").exists()


def test_unknown_validation_label_fails_before_training(tmp_path: Path) -> None:
    bad = examples()[:3] + [data.Example("text", "nonsense", "val.jsonl:4")]
    with pytest.raises(BfexportError, match="val.jsonl:4"):
        train(examples(), bad, TrainConfig(**TINY), tmp_path / "x", show_progress=False)


def test_stop_after_epoch_keeps_the_schedule_but_ends_early(tmp_path: Path) -> None:
    result = train(examples(), examples(), TrainConfig(**{**TINY, "epochs": 3, "explore_frac": 0.3,
                                                          "stop_after_epoch": 2}),
                   tmp_path / "s", show_progress=False)
    assert [h["epoch"] for h in result["history"]] == [1, 2]


def test_static_heads_fine_tune_a_start_model_on_its_fixed_heads(tmp_path: Path) -> None:
    train(examples(), examples(), TrainConfig(**{**TINY, "dense": True, "epochs": 1}), tmp_path / "d",
          show_progress=False)
    dense = load_checkpoint(tmp_path / "d")
    tokenizer = data.tokenizer_from_str((tmp_path / "d" / "tokenizer.json").read_text(), "d")
    tc = TrainConfig(**{**TINY, "epochs": 1, "static_heads": [[1]], "weight_decay": 0.0})  # no decay: Adam leaves a
    # weight with no gradient exactly where it was
    train(examples(), examples(), tc, tmp_path / "s", show_progress=False, start=(dense, tokenizer))
    metrics = json.loads((tmp_path / "s" / "metrics.json").read_text())
    assert metrics["best"]["mean_heads_per_layer"] == [1.0]  # validated on the fixed head, not the router
    tuned = load_file(str(tmp_path / "s" / "model.safetensors"))
    start = load_file(str(tmp_path / "d" / "model.safetensors"))
    qkv = "blocks.0.attn.qkv_weight"
    assert (tuned[qkv][0] == start[qkv][0]).all() and not (tuned[qkv][1] == start[qkv][1]).all()  # head 0 never ran


def test_distillation_needs_the_teachers_tokenizer_and_labels(tmp_path: Path) -> None:
    train(examples(), examples(), TrainConfig(**{**TINY, "dense": True, "epochs": 1}), tmp_path / "t",
          show_progress=False)
    result = train(examples(), examples(), TrainConfig(**{**TINY, "distill_from": str(tmp_path / "t")}),
                   tmp_path / "s", show_progress=False)
    assert 0.0 <= result["best"]["accuracy"] <= 1.0
    with pytest.raises(BfexportError, match="tokenizer differs"):
        train(examples(), examples(), TrainConfig(**{**TINY, "vocab_size": 120, "distill_from": str(tmp_path / "t")}),
              tmp_path / "x", show_progress=False)
    assert not (tmp_path / "x").exists()


def test_exploitation_runs_the_models_own_caps() -> None:
    """Exploiting, the gate applies the model's threshold and cap per layer, as inference does, so a
    model fine-tuned at a calibrated budget (thresholds and caps) trains at that budget."""
    config = tiny_config(budget_thresholds=[1.0, 1.0, 1.0], head_caps=[1, 2, 4])
    gate = ExploreExploit(config, TrainConfig(explore_frac=0.0), total_steps=10)
    many = torch.tensor([[-9.0, -9.0, -9.0, 9.0]] * 5)  # q(k = 4) ~ 1: uncapped, every head
    for layer, cap in enumerate(config.head_caps):
        gates, sel = gate(layer, many, torch.randn(5, 4))
        assert (sel.counts == cap).all() and (gates.detach().sum(-1) == cap).all()
