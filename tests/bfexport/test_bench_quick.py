"""bfexport bench: by default a quick run of the given checkpoint or .onnx at its own shape, beside a
dense export timed in the same loop; the full sweep behind --full; p50/p90/p99 and items/s per row.
Timings are real but nothing is asserted about their size (no wall-clock thresholds)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bfexport.benchmark import BenchModel, load_target, run_benchmark
from bfexport.cli import run
from bfexport.errors import BfexportError
from converters import AdaptiveExport, DenseExport, StaticExport, export_with_metadata, load_exported, save_onnx
from tests.factories import tiny_model

FAST = ["--repeats", "2", "--warmup", "0", "--min-time", "0"]


def bench(capsys, *args: object) -> tuple[int, str, str]:
    capsys.readouterr()
    code = run(["bench", *map(str, args)])
    out = capsys.readouterr()
    return code, out.out, out.err


def bench_json(capsys, *args: object) -> dict:
    code, out, err = bench(capsys, *args, *FAST, "--json")
    assert code == 0, err
    return json.loads(out)


def test_default_is_a_quick_run_of_the_checkpoint_at_its_own_shape(checkpoint: Path, capsys) -> None:
    d = bench_json(capsys, checkpoint)
    assert d["settings"]["mode"] == "quick" and d["targets"] == []
    assert [m["name"] for m in d["models"]] == ["ckpt"]  # no BERT-base shape
    (cell,) = d["cells"]
    assert (cell["seq"], cell["batch"], cell["threads"]) == (32, 1, 1)  # the tiny model's max_length
    assert [r["variant"] for r in cell["rows"]] == ["dense", "adaptive (this model)"]
    assert cell["dense_reference"] == "dense"
    for r in cell["rows"]:
        assert r["runs"] == cell["rounds"]  # timed in the same interleaved rounds
        assert 0 < r["p50_ms"] <= r["p90_ms"] <= r["p99_ms"] and r["items_per_s"] > 0
        assert r["median_ms"] == pytest.approx(r["p50_ms"])
    adaptive = cell["rows"][1]
    assert 1 <= adaptive["k"] <= 4 and adaptive["ideal"] >= 1 and adaptive["speedup"] > 0


@pytest.mark.parametrize("flavor", ["adaptive", "dense"])
def test_an_exported_file_is_timed_as_is(tmp_path: Path, tokenizer, capsys, flavor: str) -> None:
    model = tiny_model(vocab_size=tokenizer.get_vocab_size())
    config = AdaptiveExport() if flavor == "adaptive" else DenseExport()
    path = save_onnx(export_with_metadata(model, config, tokenizer.to_str()), tmp_path / "m.onnx")
    d = bench_json(capsys, path, "--batch", "1", "--batch", "3")
    assert d["models"][0]["source"].startswith(f"exported file ({path}, {flavor})")
    assert [c["batch"] for c in d["cells"]] == [1, 3]
    variants = [r["variant"] for r in d["cells"][1]["rows"]]
    assert variants == (["dense", "adaptive (this model)"] if flavor == "adaptive" else ["dense (this model)"])
    assert all(r["items_per_s"] > 0 for c in d["cells"] for r in c["rows"])


def test_the_file_itself_is_what_runs(tmp_path: Path, tokenizer) -> None:
    """The quick run's own graph is the file's bytes, default budgets included (caps 1: one head)."""
    model = tiny_model(vocab_size=tokenizer.get_vocab_size())
    path = save_onnx(export_with_metadata(model, AdaptiveExport(), tokenizer.to_str()), tmp_path / "m.onnx")
    exported = load_exported(path)
    for init in exported.proto.graph.initializer:
        if init.name == "head_caps":
            init.int64_data[:] = []
            init.raw_data = (b"\x01" + b"\x00" * 7) * model.config.n_layers
    ticks = iter(range(0, 10**12, 500_000))
    result = run_benchmark([BenchModel("m", model, "file", exported)], seqs=[16], threads=[1], batch_sizes=[1],
                           repeats=1, warmup=0, min_time_s=0, full=False, clock=lambda: next(ticks))
    own = result.cells[0].row("adaptive (this model)")
    assert own is not None and own.k == 1.0 and own.speedup == pytest.approx(1.0)


def test_full_sweep_behind_a_flag(checkpoint: Path, capsys) -> None:
    d = bench_json(capsys, checkpoint, "--full", "--no-wide", "--fusions", "none", "--seq", "16",
                   "--threads", "1", "--batch", "1")
    assert d["settings"]["mode"] == "full" and len(d["targets"]) == 7
    flavors = {r["flavor"] for r in d["cells"][0]["rows"]}
    assert flavors == {"dense", "masked", "static", "adaptive"}


@pytest.mark.parametrize("args, message", [
    (["--seq", "64"], "exceeds ckpt's max_length 32"),
    (["--fusions", "all"], "--fusions: only with --full"),
    (["--bert-layers", "2"], "--bert-layers: only with --full"),
])
def test_quick_run_refusals_are_one_line(checkpoint: Path, capsys, args: list[str], message: str) -> None:
    code, out, err = bench(capsys, checkpoint, *args, *FAST)
    assert code == 2 and out == "" and message in err
    assert len([line for line in err.splitlines() if line.startswith("error:")]) == 1


def test_a_file_that_cannot_be_rebuilt_is_refused(tmp_path: Path, tokenizer) -> None:
    model = tiny_model(vocab_size=tokenizer.get_vocab_size())
    path = save_onnx(export_with_metadata(model, StaticExport(heads=[[0, 1]] * 3), tokenizer.to_str()),
                     tmp_path / "s.onnx")
    with pytest.raises(BfexportError, match="cannot be rebuilt"):
        load_target(str(path))


def test_the_model_onnx_deploy_writes_is_timed_with_its_default_rows(tmp_path: Path, tokenizer, capsys) -> None:
    """With batching, deploy turns the budgets into required inputs: bench feeds the file's defaults."""
    from converters.triton import DeployOptions, deploy

    model = tiny_model(vocab_size=tokenizer.get_vocab_size())
    path = save_onnx(export_with_metadata(model, AdaptiveExport(), tokenizer.to_str()), tmp_path / "m.onnx")
    deploy(path, tmp_path / "models", DeployOptions(name="m"))
    d = bench_json(capsys, tmp_path / "models" / "m" / "1" / "model.onnx", "--batch", "2")
    assert [r["variant"] for r in d["cells"][0]["rows"]] == ["dense", "adaptive (this model)"]
