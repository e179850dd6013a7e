"""bfexport/benchmark: the arithmetic, the plumbing with a fake clock (no wall-clock assertions),
the fused-attention dense graphs' parity, and one slow smoke run of the real thing."""

from __future__ import annotations

import json
import math
from functools import partial

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from bfexport.benchmark import (
    BenchmarkResult,
    BenchModel,
    Cell,
    ModelShape,
    Row,
    attention_op_export,
    budgets,
    check_targets,
    compute_rows,
    ideal_batch,
    ideal_speedup,
    per_sample_caps,
    run_benchmark,
    timing_copy,
    to_markdown,
)
from bfexport.cost import model_macs
from bfexport.errors import BfexportError
from converters import DenseExport, export
from tests import factories

TINY = ModelShape("tiny", d_model=16, n_heads=4, n_layers=2, d_ff=32, vocab_size=50)


# TINY's shape, two labels, the model's own initialisation.
tiny_model = partial(factories.tiny_model, init="plain", vocab_size=50, d_model=16, n_layers=2, d_ff=32,
                     labels=["negative", "positive"], dropout=0.1)


# ---- budgets and caps ------------------------------------------------------------------------

@pytest.mark.parametrize("heads, expected", [(8, [2, 4, 6, 8]), (12, [3, 6, 9, 12]), (4, [1, 2, 3, 4]),
                                             (2, [1, 2]), (1, [1]), (6, [2, 3, 5, 6])])
def test_budgets_are_quarters_of_h(heads, expected):
    assert budgets(heads) == expected


@pytest.mark.parametrize("heads", [4, 8, 12])
def test_per_sample_caps_hit_the_target_mean_and_vary(heads):
    for target in budgets(heads):
        caps = per_sample_caps(np.random.default_rng(target), 8, 3, heads, target)
        assert caps.shape == (8, 3) and caps.dtype == np.int64
        assert caps.min() >= 1 and caps.max() <= heads
        assert np.all(caps.mean(axis=0) == target)
        if 1 < target < heads:  # a mean of exactly 1 or H leaves no room to vary
            assert len(np.unique(caps)) > 1  # different heads per sample
    same = per_sample_caps(np.random.default_rng(0), 8, 3, heads, heads // 2)
    assert np.array_equal(same, per_sample_caps(np.random.default_rng(0), 8, 3, heads, heads // 2))


# ---- the cost side ---------------------------------------------------------------------------

def brief_layer_macs(L, d, dh, f, H, k, router):
    """Section 3 of the brief, written out again."""
    width = k * dh
    cost = 3 * L * d * width + L * L * width + L * L * width + L * width * d + 2 * L * d * f
    return cost + ((L * d + d * 2 * H) if router else 0)


def test_ideal_speedup_is_the_brief_cost_ratio():
    cfg = TINY.config(64)
    L, d, dh, f, H = 64, 16, 4, 32, 4
    head = L * d + d * cfg.n_labels  # pooling + classifier, in both
    dense = 2 * brief_layer_macs(L, d, dh, f, H, H, False) + head
    adaptive = 2 * brief_layer_macs(L, d, dh, f, H, 2, True) + head
    static = 2 * brief_layer_macs(L, d, dh, f, H, 2, False) + head
    assert ideal_speedup(cfg, 64, [2, 2], router=True) == pytest.approx(dense / adaptive)
    assert ideal_speedup(cfg, 64, [2, 2], router=False) == pytest.approx(dense / static)
    assert ideal_speedup(cfg, 64, None, router=False) == 1.0
    assert ideal_speedup(cfg, 64, [4, 4], router=True) < 1.0  # the router costs something at full budget


def test_ideal_batch_padded_vs_per_sample():
    cfg = TINY.config(64)
    uniform = np.full((8, 2), 2)
    padded, own = ideal_batch(cfg, 64, uniform)
    assert padded == pytest.approx(own) == pytest.approx(ideal_speedup(cfg, 64, [2, 2], router=True))
    mixed = np.array([[1, 3]] * 4 + [[3, 1]] * 4)  # per layer: mean 2, largest 3
    padded, own = ideal_batch(cfg, 64, mixed)
    assert padded == pytest.approx(ideal_speedup(cfg, 64, [3, 3], router=True))
    expected_own = 8 * model_macs(cfg, 64) / (4 * model_macs(cfg, 64, [1, 3]) + 4 * model_macs(cfg, 64, [3, 1]))
    assert own == pytest.approx(expected_own)
    assert padded < own


# ---- rows: speedup, efficiency, overheads --------------------------------------------------

def row(variant, flavor, k, ms, ideal, **kw):
    return Row(variant=variant, flavor=flavor, k=k, median_ms=ms, q1_ms=ms, q3_ms=ms, runs=3, ideal=ideal, **kw)


def batch1_rows():
    return [row("dense", "dense", None, 10.0, 1.0), row("dense-mha+ortopt", "dense", None, 8.0, 1.0),
            row("static", "static", 2, 5.0, 1.7), row("static", "static", 4, 8.2, 1.0),
            row("adaptive", "adaptive", 2, 5.5, 1.6), row("adaptive", "adaptive", 4, 8.4, 0.99)]


def test_compute_rows_speedup_efficiency_and_overheads():
    rows = batch1_rows()
    reference = compute_rows(rows, batch=1, n_heads=4)
    assert reference == "dense-mha+ortopt"  # the fastest dense variant
    by = {(r.variant, r.k): r for r in rows}
    assert by[("dense-mha+ortopt", None)].speedup == 1.0
    assert by[("dense", None)].speedup == pytest.approx(0.8)
    half = by[("adaptive", 2)]
    assert half.speedup == pytest.approx(8.0 / 5.5)
    assert half.efficiency == pytest.approx((8.0 / 5.5) / 1.6)
    assert half.overhead_vs_static == pytest.approx(5.5 / 5.0 - 1)
    assert half.overhead_vs_dense is None
    full = by[("adaptive", 4)]
    assert full.overhead_vs_static == pytest.approx(8.4 / 8.2 - 1)
    assert full.overhead_vs_dense == pytest.approx(8.4 / 8.0 - 1)
    assert by[("static", 2)].overhead_vs_static is None


def test_compute_rows_batch_uses_both_ideals_and_no_static():
    rows = [row("dense", "dense", None, 80.0, 1.0),
            row("adaptive", "adaptive", 2.0, 60.0, 1.2, k_padded=[3, 3], ideal_per_sample=1.5)]
    compute_rows(rows, batch=8, n_heads=4)
    adaptive = rows[1]
    assert adaptive.efficiency == pytest.approx((80 / 60) / 1.2)
    assert adaptive.efficiency_per_sample == pytest.approx((80 / 60) / 1.5)
    assert adaptive.overhead_vs_static is None and adaptive.overhead_vs_dense is None


def test_compute_rows_needs_a_dense_variant():
    with pytest.raises(BfexportError, match="dense"):
        compute_rows([row("static", "static", 2, 5.0, 1.7)], batch=1, n_heads=4)


# ---- targets and the result dict -------------------------------------------------------------

def fake_result() -> BenchmarkResult:
    cells = []
    for seq, batch in ((512, 1), (128, 1)):
        rows = batch1_rows()
        cells.append(Cell("tiny", seq, 1, batch, 4, compute_rows(rows, batch, 4), 3, rows))
    rows = [row("dense", "dense", None, 80.0, 1.0),
            row("adaptive", "adaptive", 2.0, 60.0, 1.2, k_padded=[3, 3], ideal_per_sample=1.5)]
    cells.append(Cell("tiny", 512, 1, 8, 4, compute_rows(rows, 8, 4), 3, rows))
    return BenchmarkResult(settings={"repeats": 3, "fusions": "dense"},
                           environment={"onnxruntime": "x", "cpu": "y", "cpu_count": 2, "loadavg_start": 0.1,
                                        "loadavg_end": 0.2},
                           models=[{"name": "tiny", "d_model": 16, "n_heads": 4, "n_layers": 2, "d_ff": 32,
                                    "source": "random weights", "dense_variants": ["dense", "dense-mha+ortopt"],
                                    "notes": []}],
                           cells=cells)


def test_check_targets_on_known_numbers():
    targets = {t.name: t for t in check_targets(fake_result())}
    eff1 = targets["efficiency at k = H/2, seq 512, batch 1"]
    assert [m["value"] for m in eff1.measurements] == [pytest.approx((8.0 / 5.5) / 1.6)]  # seq 512 only
    assert eff1.passed is False  # 0.909 < 0.95
    eff8 = targets["efficiency at k = H/2 (mean), batch 8, padded ideal"]
    assert eff8.passed is True and eff8.measurements[0]["value"] == pytest.approx((80 / 60) / 1.2)
    vs_static = targets["adaptive overhead vs static, same k, batch 1"]
    assert len(vs_static.measurements) == 4 and vs_static.passed is False  # +10% at k = 2
    assert [m["passed"] for m in vs_static.measurements] == [False, True, False, True]
    vs_dense = targets["adaptive at k = H overhead vs dense reference, batch 1"]
    assert vs_dense.passed is False and vs_dense.measurements[0]["value"] == pytest.approx(0.05)


def test_targets_not_measured_are_none():
    empty = BenchmarkResult(settings={}, environment={}, models=[])
    assert all(t.passed is None and not t.measurements for t in check_targets(empty))


def test_result_dict_is_strict_json_with_targets():
    result = fake_result()
    result.cells[0].rows[0].speedup = float("nan")
    d = result.to_dict()
    text = json.dumps(d, allow_nan=False)
    assert set(d) == {"settings", "environment", "models", "cells", "notes", "targets"}
    cell = d["cells"][0]
    assert set(cell) == {"model", "seq", "threads", "batch", "n_heads", "dense_reference", "rounds", "rows"}
    assert set(cell["rows"][0]) >= {"variant", "flavor", "k", "median_ms", "q1_ms", "q3_ms", "runs", "ideal",
                                    "speedup", "efficiency", "overhead_vs_static", "overhead_vs_dense"}
    assert cell["rows"][0]["speedup"] is None  # NaN became null
    assert len(d["targets"]) == 4 and set(d["targets"][0]) == {"name", "threshold", "measurements", "passed"}
    assert json.loads(text) == d


def test_markdown_has_targets_and_a_table_per_cell():
    result = fake_result()
    md = to_markdown(result, check_targets(result))
    assert md.count("## tiny seq") == 3
    assert "| variant | k | ms | IQR | speedup | ideal | efficiency | vs static |" in md
    assert "ideal/sample" in md  # the batch-8 table
    assert "dense-mha+ortopt*" in md  # the reference is marked
    assert "**fail**" in md and "| pass |" in md


# ---- models and graphs -----------------------------------------------------------------------

def test_timing_copy_keeps_weights_and_extends_positions():
    model = tiny_model(max_length=16)
    same, notes = timing_copy(model, 16)
    assert same is model and notes == []
    longer, notes = timing_copy(model, 40)
    assert longer.config.max_length == 40 and "extended 16 -> 40" in notes[0]
    old, new = model.state_dict(), longer.state_dict()
    assert torch.equal(new["pos_emb.weight"][:16], old["pos_emb.weight"])
    assert all(torch.equal(new[k], v) for k, v in old.items() if k != "pos_emb.weight")
    dense_trained, notes = timing_copy(tiny_model(max_length=16, adaptive=False), 16)
    assert dense_trained.config.adaptive and "trained dense" in notes[0]


def test_timing_copy_of_a_model_with_a_position_offset():
    model = factories.variant_model("roberta", max_length=16)  # pos_emb rows: 16 + offset 2
    longer, _ = timing_copy(model, 40)
    assert longer.pos_emb.weight.shape[0] == 42
    assert torch.equal(longer.pos_emb.weight[:18], model.pos_emb.weight)


@pytest.mark.parametrize("mode", ["mha", "attn23"])
def test_fused_attention_dense_graphs_match_the_plain_dense_export(mode):
    model = tiny_model()
    with torch.no_grad():  # weights large enough that attention moves the logits
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    ids = np.random.default_rng(0).integers(1, 50, size=(2, 20))
    mask = np.ones((2, 20), dtype=np.int64)
    mask[1, 12:] = 0
    feeds = {"input_ids": ids, "attention_mask": mask}

    def logits(proto):
        session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
        return session.run(["logits"], feeds)[0]

    fused = attention_op_export(model, mode)
    op = {"mha": ("Attention", "com.microsoft"), "attn23": ("Attention", "")}[mode]
    assert sum((n.op_type, n.domain) == op for n in fused.graph.node) == 2
    np.testing.assert_allclose(logits(fused), logits(export(model, DenseExport())), rtol=1e-4, atol=1e-5)
    with pytest.raises(BfexportError):
        attention_op_export(model, "flash")


@pytest.mark.parametrize("mode", ["mha", "attn23"])
def test_fused_attention_rewrite_leaves_nothing_unused(mode):
    """The rewrite drops the replaced attention cores: every node feeds an output, every initializer a node."""
    fused = attention_op_export(tiny_model(), mode)
    graph = fused.graph
    read = {name for node in graph.node for name in node.input}
    assert all(t.name in read for t in graph.initializer)
    needed = {o.name for o in graph.output}
    for node in reversed(graph.node):
        assert needed & set(node.output), node.name
        needed |= set(node.input)
    onnx.checker.check_model(fused)


def test_run_benchmark_plumbing_with_a_fake_clock():
    """Real graphs and sessions, a clock that says every run takes 1 ms: all speedups 1."""

    class Tick:
        now = 0

        def __call__(self):
            self.now += 500_000  # each run is bracketed by two reads
            return self.now

    seen = []
    result = run_benchmark([BenchModel("tiny", tiny_model(max_length=16))], seqs=[8, 24], threads=[1],
                           batch_sizes=[1, 2], repeats=2, warmup=0, min_time_s=0.0, fusions="none",
                           clock=Tick(), progress=lambda label, done, total: seen.append((done, total)))
    assert [(c.seq, c.batch) for c in result.cells] == [(8, 1), (24, 1), (8, 2), (24, 2)]
    assert result.models[0]["dense_variants"] == ["dense", "dense-mha", "dense-attn23"]
    assert "max_length extended 16 -> 24" in result.notes[0]
    batch1 = result.cells[0]
    assert [(r.variant, r.k) for r in batch1.rows if r.flavor != "dense"] == \
        [("masked", 2), ("static", 1), ("static", 2), ("static", 3), ("static", 4),
         ("adaptive", 1), ("adaptive", 2), ("adaptive", 3), ("adaptive", 4)]
    assert all(r.median_ms == pytest.approx(0.5) and r.speedup == pytest.approx(1.0) for r in batch1.rows)
    batch2 = result.cells[2]
    assert {r.flavor for r in batch2.rows} == {"dense", "adaptive"}
    assert all(r.k_padded is not None and r.ideal <= r.ideal_per_sample for r in batch2.rows if r.flavor == "adaptive")
    assert seen[-1] == (4, 4)
    json.dumps(result.to_dict(), allow_nan=False)


def test_run_benchmark_skips_large_batch_cells_and_rejects_bad_lists():
    result = run_benchmark([TINY], seqs=[8], threads=[1], batch_sizes=[1, 4], repeats=1, warmup=0, min_time_s=0,
                           fusions="none", max_batch_activation=100, clock=iter(range(0, 10**12, 1000)).__next__)
    assert [c.batch for c in result.cells] == [1]
    assert "batch 4 seq 8 skipped" in result.notes[0]
    with pytest.raises(BfexportError):
        run_benchmark([TINY], seqs=[], threads=[1], batch_sizes=[1])


# ---- the real thing --------------------------------------------------------------------------

@pytest.mark.slow
def test_smoke_real_timing_with_ort_fusions(tmp_path):
    result = run_benchmark([TINY], seqs=[16], threads=[1], batch_sizes=[1, 8], repeats=2, warmup=1, min_time_s=0)
    info = result.models[0]
    assert info["dense_variants"][0] == "dense"
    assert len(result.cells) == 2
    for cell in result.cells:
        assert cell.dense_reference in info["dense_variants"]
        for r in cell.rows:
            assert r.runs >= 2 and r.median_ms > 0 and math.isfinite(r.efficiency)
    d = result.to_dict()
    json.dumps(d, allow_nan=False)
    assert len(d["targets"]) == 4


@pytest.mark.slow
def test_smoke_cli_json(tmp_path):
    from click.testing import CliRunner

    from bfexport.checkpoint import save_checkpoint
    from bfexport.cli import cli

    save_checkpoint(tiny_model(max_length=16), tmp_path / "ckpt")
    out = CliRunner().invoke(cli, ["bench", str(tmp_path / "ckpt"), "--seq", "16", "--threads", "1", "--batch", "1",
                                   "--repeats", "2", "--warmup", "1", "--min-time", "0", "--no-bert-base", "--json"])
    assert out.exit_code == 0, out.output
    d = json.loads(out.stdout)
    assert d["cells"][0]["model"] == "ckpt" and d["models"][0]["source"].startswith("checkpoint weights")
