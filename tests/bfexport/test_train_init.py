"""`train --init`: budgetizing an existing checkpoint (a dense one here) from its own weights."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from bfexport import data
from bfexport.checkpoint import load_checkpoint, load_tokenizer_json
from bfexport.cli import run
from bfexport.errors import BfexportError
from bfexport.files import file_sha256
from bfexport.train import TrainConfig, group_schedules, train
from bfexport.warm_start import FULL_BUDGET_PROB, load_warm_start, open_routers, parameter_groups
from tests.factories import LABELS, TEXTS, tiny_model

TINY = dict(epochs=2, batch_size=8, explore_frac=0.5, vocab_size=150, max_length=16, d_model=16, n_heads=2,
            n_layers=1, d_ff=32)


def examples() -> list[data.Example]:
    return [data.Example(t, LABELS[i % 4], f"toy:{i}") for i, t in enumerate(TEXTS)]


@pytest.fixture(scope="module")
def dense_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dense") / "ckpt"
    train(examples(), examples(), TrainConfig(**{**TINY, "dense": True, "epochs": 1}), out, show_progress=False)
    return out


def test_opened_routers_run_every_head_at_any_threshold_above_one_minus_the_full_budget_probability() -> None:
    model = tiny_model(0, n_heads=4)
    open_routers(model)
    ids, mask = torch.randint(0, 120, (5, 12)), torch.ones(5, 12, dtype=torch.long)
    for tau in (1 - FULL_BUDGET_PROB + 1e-3, 0.5, 1.0):
        assert (model.predict(ids, mask, thresholds=[tau] * 3).head_counts == 4).all(), tau
    assert (model.predict(ids, mask, thresholds=[1 - FULL_BUDGET_PROB - 1e-3] * 3).head_counts < 4).all()
    dense = model.predict(ids, mask, fixed_heads=[[0, 1, 2, 3]] * 3)
    torch.testing.assert_close(model.predict(ids, mask).logits, dense.logits, atol=1e-6, rtol=0)
    # far from saturation: the budget head still has a gradient to learn from
    assert abs(model.blocks[0].attn.router.proj.bias[:4].softmax(-1)[-1].item() - FULL_BUDGET_PROB) < 1e-6


def test_a_dense_checkpoint_starts_as_itself_with_routers_opened(dense_checkpoint: Path) -> None:
    dense = load_checkpoint(dense_checkpoint)
    start = load_warm_start(dense_checkpoint, sorted(LABELS))
    assert start.routers_opened and start.model.config.adaptive
    assert start.weights_sha256 == file_sha256(dense_checkpoint / "model.safetensors")
    assert start.tokenizer_json == load_tokenizer_json(dense_checkpoint)
    ids, mask = data.encode(data.tokenizer_from_str(start.tokenizer_json), TEXTS[:8], 16)
    ids_t, mask_t = torch.from_numpy(ids), torch.from_numpy(mask)
    out = start.model.predict(ids_t, mask_t)
    assert (out.head_counts == 2).all()
    torch.testing.assert_close(out.logits, dense.predict(ids_t, mask_t).logits, atol=1e-6, rtol=0)


def test_labels_the_checkpoint_does_not_classify_are_refused(dense_checkpoint: Path) -> None:
    with pytest.raises(BfexportError, match="labels this checkpoint does not classify \\(audio\\)"):
        load_warm_start(dense_checkpoint, ["audio", "libs"])


def test_parameter_groups_put_routers_at_the_base_rate_and_the_rest_at_the_scale() -> None:
    model = tiny_model(0)
    groups = parameter_groups(model, 0.01, encoder_lr_scale=0.1)
    by_id = {id(p): g for g in groups for p in g["params"]}  # type: ignore[attr-defined]
    for name, p in model.named_parameters():
        g = by_id[id(p)]
        assert g["lr_scale"] == (1.0 if ".router." in name else 0.1), name
        assert g["weight_decay"] == (0.01 if p.dim() >= 2 and "emb" not in name else 0.0), name
    assert len(by_id) == len(list(model.parameters()))


@pytest.mark.parametrize("freeze", [False, True])
def test_train_init_budgetizes_the_checkpoint_and_records_the_recipe(dense_checkpoint: Path, tmp_path: Path,
                                                                       freeze: bool) -> None:
    tc = TrainConfig(epochs=2, batch_size=8, explore_frac=0.75, init=str(dense_checkpoint),
                     freeze_encoder_while_exploring=freeze, encoder_lr_scale=0.5)
    result = train(examples(), examples(), tc, tmp_path / "b", show_progress=False)
    model, dense = load_checkpoint(tmp_path / "b"), load_checkpoint(dense_checkpoint)
    assert model.config.adaptive and model.config.d_model == 16 and model.config.labels == dense.config.labels
    assert load_tokenizer_json(tmp_path / "b") == load_tokenizer_json(dense_checkpoint)
    args = json.loads((tmp_path / "b" / "training_args.json").read_text())
    assert args["init"] == str(dense_checkpoint) and args["freeze_encoder_while_exploring"] is freeze
    assert args["init_weights_sha256"] == file_sha256(dense_checkpoint / "model.safetensors")
    assert args["init_routers_opened"] is True and args["encoder_lr_scale"] == 0.5
    assert (args["d_model"], args["n_heads"], args["vocab_size"]) == (16, 2, dense.config.vocab_size)
    assert result["best"]["epoch"] == 2  # epoch 1 explores, so it is not kept
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, dense.state_dict()[k])}
    assert any(".router." in k for k in changed) and any(".router." not in k for k in changed)


def test_a_frozen_encoder_gets_no_learning_rate_until_exploitation() -> None:
    groups = parameter_groups(tiny_model(0), 0.01, encoder_lr_scale=0.1)
    factors = group_schedules(groups, lambda s: 1.0, frozen_until=10)  # type: ignore[arg-type]
    for g, factor in zip(groups, factors, strict=True):
        assert factor(9) == (1.0 if g["router"] else 0.0)
        assert factor(10) == g["lr_scale"]


def test_cli_init_refuses_size_options_and_an_output_over_the_init(dense_checkpoint: Path, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps({"text": e.text, "label": e.label}) + "\n" for e in examples()))
    base = ["train", "--train", str(rows), "--validation", str(rows), "--init", str(dense_checkpoint)]
    assert run([*base, "-o", str(tmp_path / "x"), "--d-model", "32"]) == 2
    err = capsys.readouterr().err
    assert "--init takes the architecture from" in err and "--d-model" in err and "Traceback" not in err
    assert run([*base, "-o", str(tmp_path / "x"), "--pooling", "first"]) == 2
    assert "--pooling" in capsys.readouterr().err
    assert run([*base, "-o", str(dense_checkpoint), "--force"]) == 2
    assert "--init" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
    assert run([*base, "-o", str(tmp_path / "ok"), "--epochs", "2", "--batch-size", "8", "--explore-frac", "0.75",
                "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["epoch"] == 2
