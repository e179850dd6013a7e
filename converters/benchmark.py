"""Head-skipping benchmark: ONNX Runtime CPU latency of every flavor, side by side in one run.

For each model, thread count, batch size and sequence length (a *cell*) every variant is
timed in the same loop, so a busy neighbour or a clock change hits all of them alike:

  dense      the strongest dense baseline measured: the plain export (MatMul/Softmax
             attention), the same after ONNX Runtime's transformers optimizer, and dense
             graphs whose attention is one ``com.microsoft.Attention`` or one opset-23
             ``Attention`` node. The fastest (median) is the cell's *dense reference*.
  masked     every head computed, unselected ones zeroed (costs what dense costs).
  static     fixed heads 0..k-1 per layer, pruned at export time (the best case for k).
  adaptive   the product: router in the graph, only the selected heads computed. k is
             forced with budget_thresholds = 1 and head_caps = k, so every sample runs
             exactly k heads per layer (checked on the head_counts output before timing).

Batch 1 runs k = H/4, H/2, 3H/4, H. Batch > 1 gives every sample its own k (head_caps of
shape (batch, layers), per-layer mean = the target): the graph computes the batch's
largest k per layer, so the ideal is reported both from that padded k (what the graph
can achieve) and from the per-sample mean (what a per-sample runtime could).

Method: all sessions of a (model, threads) pair are built first (each with
``session.force_spinning_stop`` so idle sessions do not steal cores), every variant is
warmed up, then runs are interleaved round-robin (the starting variant rotates each
round) with no sleeping, and medians are taken.

  ideal speedup  = dense MACs / variant MACs (bfexport.cost, router included for adaptive)
  speedup        = dense reference median / variant median
  efficiency     = speedup / ideal
  overhead       = adaptive median / static median at the same k - 1   (batch 1)

Random weights are fine for timing: k is forced, and nothing else depends on values.

A quick run (full=False, `bfexport bench` without --full) times one given model as it would
serve (an exported file as is, or a checkpoint's default export, at its own default budgets on
random token ids) side by side with a dense export of the same weights, at the model's own
shape; the head counts the model ran are read from its head_counts output.

Every row reports the median (= p50), p90 and p99 latency and the throughput, items (texts)
per second = batch * runs / total time of the runs.
"""

from __future__ import annotations

import dataclasses
import gc
import io
import logging
import math
import os
import platform
import statistics
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass, field
from typing import Any, TypedDict

import numpy as np
import onnx
import torch
from onnx import helper

from bfexport.cost import computed_heads, model_macs
from bfexport.errors import BfexportError
from bfexport.model import MASK_BIAS, BudgetFormerConfig, BudgetFormerForSequenceClassification
from converters.onnx_export import AdaptiveExport, DenseExport, MaskedExport, StaticExport, _Exporter, export
from converters.onnx_io import ExportedModel
from converters.rebuild import float_type

Clock = Callable[[], int]  # nanoseconds, like time.perf_counter_ns
Progress = Callable[[str, float, int], None]  # (what is running, cells done (fractional), cells in all)

FUSION_MODES = ("dense", "all", "none")  # which graphs go through the transformers optimizer
MAX_BATCH_ACTIVATION = 2 ** 20  # batch > 1 cells above this many activation values are skipped


# ---- shapes and models ---------------------------------------------------------------------

@dataclass(frozen=True)
class ModelShape:
    """The sizes that matter for timing; weights are random."""

    name: str
    d_model: int
    n_heads: int
    n_layers: int
    d_ff: int
    vocab_size: int = 8000

    def config(self, max_length: int) -> BudgetFormerConfig:
        return BudgetFormerConfig(vocab_size=self.vocab_size, max_length=max_length, d_model=self.d_model,
                                  n_heads=self.n_heads, n_layers=self.n_layers, d_ff=self.d_ff, dropout=0.0)


SHIPPED = ModelShape("shipped", d_model=128, n_heads=8, n_layers=4, d_ff=512)
# BERT-base widths (d 768, 12 heads, FFN 3072) with 4 of its 12 layers: every ratio here is a
# per-layer quantity (the cost model's ideal differs by < 0.001% between 4 and 12 layers), and
# 4 layers keep the standard sweep under ~10 minutes on 2 cores. --bert-layers 12 for the full depth.
# The vocabulary stays 8000: the embedding is one Gather, its size changes no timing, and a
# 30522-row table would only slow down exporting and the optimizer.
BERT_BASE = ModelShape("bert-base", d_model=768, n_heads=12, n_layers=4, d_ff=3072)


@dataclass
class BenchModel:
    """A model to time, under a name. source says where its weights came from; exported: the
    file a quick run times as is (None: a quick run times the model's default export)."""

    name: str
    model: BudgetFormerForSequenceClassification
    source: str = "random weights"
    exported: ExportedModel | None = None


def random_model(shape: ModelShape, max_length: int, seed: int = 0) -> BenchModel:
    torch.manual_seed(seed)
    return BenchModel(shape.name, BudgetFormerForSequenceClassification(shape.config(max_length)).eval())


def timing_copy(model: BudgetFormerForSequenceClassification, max_length: int,
                seed: int = 0) -> tuple[BudgetFormerForSequenceClassification, list[str]]:
    """The same weights in a model that accepts max_length tokens and exports every flavor.

    Position embeddings past the checkpoint's max_length are random (std 0.02): only
    timing is measured, and nothing else changes. A dense-trained checkpoint is marked
    adaptive so its (present but untrained) router can be exported; k is forced anyway.
    Returns the model and notes on what was changed.
    """
    cfg = model.config
    notes: list[str] = []
    new_len = max(cfg.max_length, max_length)
    if new_len == cfg.max_length and cfg.adaptive:
        return model.eval(), notes
    if new_len > cfg.max_length:
        notes.append(f"max_length extended {cfg.max_length} -> {new_len} for timing: positions >= "
                     f"{cfg.max_length} use random embeddings")
    if not cfg.adaptive:
        notes.append("checkpoint trained dense: timed as adaptive with its untrained router (k is forced)")
    new_cfg = dataclasses.replace(cfg, max_length=new_len, adaptive=True)
    state = dict(model.state_dict())
    generator = torch.Generator().manual_seed(seed)
    old = state["pos_emb.weight"]
    extra = torch.randn(new_len - old.shape[0], old.shape[1], generator=generator, dtype=old.dtype) * 0.02
    state["pos_emb.weight"] = torch.cat([old, extra])
    copy_ = BudgetFormerForSequenceClassification(new_cfg)
    copy_.load_state_dict(state)
    return copy_.eval(), notes


def budgets(n_heads: int) -> list[int]:
    """k = H/4, H/2, 3H/4, H (rounded, at least 1, without repeats)."""
    out: list[int] = []
    for fraction in (0.25, 0.5, 0.75, 1.0):
        k = min(n_heads, max(1, int(math.floor(n_heads * fraction + 0.5))))
        if k not in out:
            out.append(k)
    return out


def per_sample_caps(rng: np.random.Generator, batch: int, n_layers: int, n_heads: int, target: int) -> np.ndarray:
    """(batch, n_layers) random head caps within +-max(1, H/4) of target, clipped to [1, H]
    (so the spread is one-sided at the ends), then nudged until each layer's mean is exactly target.
    """
    width = max(1, n_heads // 4)
    lo, hi = max(1, target - width), min(n_heads, target + width)
    caps = rng.integers(lo, hi + 1, size=(batch, n_layers))
    for l in range(n_layers):
        col = caps[:, l]
        goal = int(np.clip(target * batch, lo * batch, hi * batch))
        while col.sum() != goal:
            step = -1 if col.sum() > goal else 1
            movable = np.flatnonzero(col > lo) if step < 0 else np.flatnonzero(col < hi)
            col[rng.choice(movable)] += step
    return caps.astype(np.int64)


# ---- cost model side ---------------------------------------------------------------------

def ideal_speedup(config: BudgetFormerConfig, seq_len: int, heads_per_layer: Sequence[int] | None, *,
                  router: bool) -> float:
    """Dense MACs / the variant's MACs at batch 1 (None = dense)."""
    if heads_per_layer is None:
        return 1.0
    return model_macs(config, seq_len) / model_macs(config, seq_len, heads_per_layer, router=router)


def ideal_batch(config: BudgetFormerConfig, seq_len: int, caps: np.ndarray, *,
                router: bool = True) -> tuple[float, float]:
    """Adaptive at per-sample head counts caps (batch, n_layers): (ideal from the padded k the
    graph computes, the batch's largest k per layer; ideal from each sample's own k)."""
    batch = caps.shape[0]
    dense = batch * model_macs(config, seq_len)
    padded = batch * model_macs(config, seq_len, caps.max(axis=0).tolist(), router=router)
    own = sum(model_macs(config, seq_len, row.tolist(), router=router) for row in caps)
    return dense / padded, dense / own


def efficiency(speedup: float, ideal: float) -> float:
    return speedup / ideal


def overhead(time_s: float, reference_s: float) -> float:
    """How much slower than the reference: 0.03 = 3% slower."""
    return time_s / reference_s - 1.0


# ---- timing ----------------------------------------------------------------------------------

def interleave(n_slots: int, round_index: int) -> list[int]:
    """Order of the slots in one round: round-robin, starting one later each round, so no
    variant always runs right after the same neighbour or first in the round."""
    start = round_index % n_slots
    return [(start + i) % n_slots for i in range(n_slots)]


def time_slots(runs: Sequence[Callable[[], object]], *, repeats: int, warmup: int, min_time_s: float = 0.0,
               max_rounds: int | None = None, clock: Clock = time.perf_counter_ns,
               on_round: Callable[[int, int], None] | None = None) -> list[list[float]]:
    """Seconds per run for each callable: warm each, then interleaved rounds.

    Runs `repeats` rounds, then more while the rounds so far took under min_time_s (at most
    max_rounds, default 10 * repeats). Never sleeps; the garbage collector is off while timing.
    on_round(rounds done, planned rounds) after each round.
    """
    if repeats < 1 or warmup < 0:
        raise BfexportError(f"repeats must be >= 1 and warmup >= 0, got {repeats}, {warmup}")
    for run in runs:
        for _ in range(warmup):
            run()
    max_rounds = max(repeats, max_rounds if max_rounds is not None else 10 * repeats)
    samples: list[list[float]] = [[] for _ in runs]
    gc.collect()
    collecting = gc.isenabled()
    gc.disable()  # no collector pause inside a timed run
    try:
        started, rounds = clock(), 0
        while rounds < repeats or ((clock() - started) / 1e9 < min_time_s and rounds < max_rounds):
            for i in interleave(len(runs), rounds):
                t0 = clock()
                runs[i]()
                samples[i].append((clock() - t0) / 1e9)
            rounds += 1
            if on_round is not None:
                on_round(rounds, repeats)
    finally:
        if collecting:
            gc.enable()
    return samples


class Summary(TypedDict):
    median_ms: float
    q1_ms: float
    q3_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    items_per_s: float
    runs: int


def summarize(samples_s: Sequence[float], batch: int = 1) -> Summary:
    """Median, quartiles and tail percentiles (linear interpolation) in milliseconds, and items
    per second over all the runs (batch items each)."""
    ms = sorted(s * 1e3 for s in samples_s)
    q1, p50, q3, p90, p99 = (float(v) for v in np.percentile(ms, [25, 50, 75, 90, 99]))
    return {"median_ms": statistics.median(ms), "q1_ms": q1, "q3_ms": q3, "p50_ms": p50, "p90_ms": p90,
            "p99_ms": p99, "items_per_s": batch * len(ms) / (sum(ms) / 1e3), "runs": len(ms)}


# ---- results ---------------------------------------------------------------------------------

@dataclass
class Row:
    """One timed variant in one cell. k: heads per layer (batch > 1: the per-sample mean)."""

    variant: str  # dense, dense+ortopt, dense-mha+ortopt, dense-attn23+ortopt, masked, static, adaptive
    flavor: str  # dense, masked, static, adaptive
    k: float | None  # None for dense variants
    median_ms: float
    q1_ms: float
    q3_ms: float
    runs: int
    ideal: float
    speedup: float = float("nan")  # dense reference / this
    efficiency: float = float("nan")  # speedup / ideal
    overhead_vs_static: float | None = None  # adaptive, batch 1
    overhead_vs_dense: float | None = None  # adaptive at k = H, batch 1
    k_padded: list[int] | None = None  # batch > 1: per layer, the largest k in the batch
    ideal_per_sample: float | None = None  # batch > 1: ideal from each sample's own k
    efficiency_per_sample: float | None = None
    p50_ms: float = float("nan")
    p90_ms: float = float("nan")
    p99_ms: float = float("nan")
    items_per_s: float = float("nan")  # batch * runs / time of the runs


@dataclass
class Cell:
    model: str
    seq: int
    threads: int
    batch: int
    n_heads: int
    dense_reference: str  # the fastest dense variant (its row has speedup 1)
    rounds: int
    rows: list[Row]

    @property
    def label(self) -> str:
        return f"{self.model} seq {self.seq} batch {self.batch} threads {self.threads}"

    def row(self, variant: str, k: float | None = None) -> Row | None:
        return next((r for r in self.rows if r.variant == variant and (k is None or r.k == k)), None)


@dataclass
class BenchmarkResult:
    settings: dict[str, Any]
    environment: dict[str, Any]
    models: list[dict[str, Any]]  # name, shape, source, dense variants built, optimizer fusions, notes
    cells: list[Cell] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Strict JSON (NaN -> None), with the head-skipping targets checked ("targets")."""
        out = dataclasses.asdict(self)
        full = self.settings.get("mode", "full") == "full"  # a quick run forces no k: no targets
        out["targets"] = [dataclasses.asdict(t) for t in check_targets(self)] if full else []
        strict: dict[str, Any] = _finite(out)
        return strict


def _finite(obj: Any) -> Any:
    """NaN/inf -> None, so the dict is strict JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj


def compute_rows(rows: list[Row], batch: int, n_heads: int) -> str:
    """Fill speedup, efficiency and overheads in place from the medians; returns the dense reference.

    Dense reference = the dense variant with the lowest median.
    """
    dense = [r for r in rows if r.flavor == "dense"]
    if not dense:
        raise BfexportError("no dense variant was timed: nothing to compare against")
    reference = min(dense, key=lambda r: r.median_ms)
    for r in rows:
        r.speedup = reference.median_ms / r.median_ms
        r.efficiency = efficiency(r.speedup, r.ideal)
        if r.ideal_per_sample is not None:
            r.efficiency_per_sample = efficiency(r.speedup, r.ideal_per_sample)
        if r.flavor == "adaptive" and batch == 1:
            static = next((s for s in rows if s.flavor == "static" and s.k == r.k), None)
            if static is not None:
                r.overhead_vs_static = overhead(r.median_ms, static.median_ms)
            if r.k == n_heads:
                r.overhead_vs_dense = overhead(r.median_ms, reference.median_ms)
    return reference.variant


# ---- graphs ----------------------------------------------------------------------------------

class _AttentionOpExporter(_Exporter):
    """The dense export with each layer's attention core as one fused node.

    mode "mha": ``com.microsoft.Attention`` (input, packed QKV weight, bias, 2-D mask), what
    the transformers optimizer produces when its patterns match. mode "attn23": ONNX opset-23
    ``Attention`` on the packed projection's Q, K, V. Weights and everything else as the
    plain dense export, so outputs agree with it (checked before timing).
    """

    def __init__(self, model: BudgetFormerForSequenceClassification, mode: str) -> None:
        super().__init__(model, DenseExport(opset=23 if mode == "attn23" else 17))
        self.mode = mode
        self._shared: dict[str, str] = {}

    def fixed_attention(self, l: int, h: str, key_bias: str, heads: list[int]) -> str:
        g, p = self.g, f"blocks.{l}.attn"
        H, d, dh = self.cfg.n_heads, self.cfg.d_model, self.cfg.d_head
        # (d, 3, H, dh): all heads' Q columns, then K, then V, as the plain dense export
        w = self.w[f"{p}.qkv_weight"].reshape(H, d, 3, dh).transpose(1, 2, 0, 3).reshape(d, 3 * d)
        b = self.w[f"{p}.qkv_bias"].reshape(H, 3, dh).transpose(1, 0, 2).reshape(3 * d)
        if self.mode == "mha":
            if "mask" not in self._shared:
                self._shared["mask"] = g.op("Cast", "attention_mask", to=onnx.TensorProto.INT32, name="mask_int32")
            ctx = g.op("Attention", h, g.weight(f"{p}.qkv_weight", w), g.weight(f"{p}.qkv_bias", b),
                       self._shared["mask"], domain="com.microsoft", num_heads=H, mask_filter_value=MASK_BIAS,
                       name=f"{p}.mha")  # (B, S, d)
        else:
            if "bias" not in self._shared:  # the op wants the mask's query axis spelled out: (B, 1, S, S)
                shape = g.op("Shape", "attention_mask")
                seq = g.op("Slice", shape, g.const([1]), g.const([2]))
                full = g.op("Concat", g.op("Slice", shape, g.const([0]), g.const([1])), g.const([1]), seq, seq, axis=0)
                self._shared["bias"] = g.op("Expand", key_bias, full, name="key_bias_full")
            qkv = g.op("Add", g.op("MatMul", h, g.weight(f"{p}.qkv_weight", w)), g.weight(f"{p}.qkv_bias", b),
                       name=f"{p}.qkv")
            q, k, v = g.op("Split", qkv, g.const([d] * 3), axis=-1, outputs=3, name=f"{p}.split")
            ctx = g.op("Attention", q, k, v, self._shared["bias"], q_num_heads=H, kv_num_heads=H,
                       name=f"{p}.attention")  # (B, S, d)
        w_out = g.weight(f"{p}.out_weight", self.w[f"{p}.out_weight"].reshape(d, d))
        return g.op("Add", g.op("MatMul", ctx, w_out), g.weight(f"{p}.out_bias", self.w[f"{p}.out_bias"]),
                    name=f"{p}.out")

    def build(self) -> onnx.ModelProto:
        proto = super().build()
        if self.mode == "mha":
            proto.opset_import.append(helper.make_opsetid("com.microsoft", 1))
        return proto


def attention_op_export(model: BudgetFormerForSequenceClassification, mode: str) -> onnx.ModelProto:
    """Dense graph with fused attention nodes: mode "mha" (com.microsoft) or "attn23" (opset 23)."""
    if mode not in ("mha", "attn23"):
        raise BfexportError(f"attention op mode must be 'mha' or 'attn23', got {mode!r}")
    return _AttentionOpExporter(model, mode).build()


FLAVOR_OPSET = 23  # the exporters' fastest attention on ONNX Runtime CPU (one Attention node)


@contextmanager
def _quiet(captured: io.StringIO) -> Iterator[None]:
    """The optimizer warns through logging (our producer is not "pytorch") and prints shape
    inference failures to stdout, which would corrupt --json output: capture both."""
    logging.disable(logging.WARNING)
    try:
        with redirect_stdout(captured):
            yield
    finally:
        logging.disable(logging.NOTSET)


def ort_optimize(proto: onnx.ModelProto, config: BudgetFormerConfig) -> tuple[onnx.ModelProto, dict[str, int], str]:
    """Run onnxruntime.transformers' BERT fusions (opt_level 0: fusions only, the session still
    applies its own). Returns the new graph, the ops it added (e.g. {"SkipLayerNormalization": 8})
    and what it printed. Raises whatever the optimizer raises."""
    from onnxruntime.transformers.optimizer import optimize_model

    source = onnx.ModelProto()
    source.CopyFrom(proto)  # the optimizer edits its input in place
    before = Counter(n.op_type for n in proto.graph.node)
    printed = io.StringIO()
    with _quiet(printed):
        optimized = optimize_model(source, model_type="bert", num_heads=config.n_heads,
                                   hidden_size=config.d_model, opt_level=0, use_gpu=False).model
    after = Counter(n.op_type for n in optimized.graph.node)
    added = {op: after[op] - before[op] for op in sorted(after) if after[op] > before[op]}
    return optimized, added, " ".join(printed.getvalue().split())


# ---- sessions --------------------------------------------------------------------------------

@dataclass
class _Graph:
    """One exported graph to time."""

    variant: str
    flavor: str
    payload: bytes
    k: int | None = None  # static: its fixed k
    as_exported: bool = False  # quick run: timed with the file's own default budgets
    budget_rows: dict[str, np.ndarray] = field(default_factory=dict)  # as_exported: required inputs' default row


def _session(payload: bytes, threads: int) -> Any:
    import onnxruntime as ort

    from bfexport.runtime import session_options

    return ort.InferenceSession(payload, session_options(threads), providers=["CPUExecutionProvider"])


def _feeds(config: BudgetFormerConfig, batch: int, seq: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"input_ids": rng.integers(1, config.vocab_size, size=(batch, seq), dtype=np.int64),
            "attention_mask": np.ones((batch, seq), dtype=np.int64)}


def _budget_feeds(config: BudgetFormerConfig, base: dict[str, np.ndarray], caps: np.ndarray) -> dict[str, np.ndarray]:
    """thresholds 1.0 (k = H before the cap) and caps: every sample runs exactly its cap."""
    return {**base, "budget_thresholds": np.ones((1, config.n_layers), dtype=np.float32),
            "head_caps": np.ascontiguousarray(caps, dtype=np.int64)}


def _parity_feeds(config: BudgetFormerConfig) -> dict[str, np.ndarray]:
    seq = min(config.max_length, 48)
    feeds = _feeds(config, 2, seq, seed=12345)
    feeds["attention_mask"][1, seq // 2:] = 0  # one padded row: masks must agree too
    return feeds


def prepare_graphs(bench: BenchModel, ks: Sequence[int], fusions: str = "dense") -> tuple[list[_Graph], dict[str, Any]]:
    """Every graph to time for one model, checked against its unfused twin; plus what was built.

    fusions: "dense" = the transformers optimizer runs on the dense graphs only (the head-
    skipping graphs are timed as bfexport exports them); "all" = on every graph; "none" = on none.
    """
    if fusions not in FUSION_MODES:
        raise BfexportError(f"fusions must be one of {', '.join(FUSION_MODES)}, got {fusions!r}")
    model, cfg = bench.model, bench.model.config
    info: dict[str, Any] = {"name": bench.name, "source": bench.source, "d_model": cfg.d_model,
                            "n_heads": cfg.n_heads, "n_layers": cfg.n_layers, "d_ff": cfg.d_ff,
                            "max_length": cfg.max_length, "fusions": fusions, "dense_variants": [],
                            "optimizer": {}, "notes": []}
    plain = export(model, DenseExport())
    candidates: list[tuple[str, str, onnx.ModelProto, int | None]] = [("dense", "dense", plain, None)]
    for mode in ("mha", "attn23"):
        try:
            candidates.append((f"dense-{mode}", "dense", attention_op_export(model, mode), None))
        except Exception as e:  # an op this onnx/onnxruntime cannot build: time the others
            info["notes"].append(f"dense-{mode} not built: {type(e).__name__}: {e}")
    opset = FLAVOR_OPSET
    candidates.append(("masked", "masked", export(model, MaskedExport(opset=opset)), None))
    k: int | None  # a static k here, then each candidate's (None unless static) below
    for k in ks:
        heads = [list(range(k))] * cfg.n_layers
        candidates.append(("static", "static", export(model, StaticExport(opset=opset, heads=heads)), k))
    candidates.append(("adaptive", "adaptive", export(model, AdaptiveExport(opset=opset)), None))
    info["notes"].append(f"masked, static and adaptive exported at opset {opset} (attention as one Attention node)")

    feeds = _parity_feeds(cfg)
    budget = _budget_feeds(cfg, feeds, np.full((1, cfg.n_layers), max(1, cfg.n_heads // 2)))
    graphs: list[_Graph] = []
    reference = _session(plain.SerializeToString(), 1).run(["logits"], feeds)[0]
    for variant, flavor, proto, k in candidates:
        feed = budget if flavor in ("adaptive", "masked") else feeds
        payload = proto.SerializeToString()
        logits = _session(payload, 1).run(["logits"], feed)[0]
        if flavor == "dense" and not _close(logits, reference):
            info["notes"].append(f"{variant} dropped: logits differ from the plain dense export by "
                                 f"{np.abs(logits - reference).max():.2e}")
            continue
        fused = None
        if fusions == "all" or (fusions == "dense" and flavor == "dense"):
            fused = _fused_payload(proto, cfg, feed, logits, f"{variant}@{k}" if k is not None else variant, info)
        if fused is None or variant == "dense":  # the plain dense stays too: it shows what fusing buys
            graphs.append(_Graph(variant, flavor, payload, k))
        if fused is not None:
            graphs.append(_Graph(f"{variant}+ortopt", flavor, fused, k))
    plain_fusion = info["optimizer"].get("dense")
    if plain_fusion is not None and not {"Attention", "MultiHeadAttention"} & set(plain_fusion):
        info["notes"].append("transformers optimizer did not fuse attention in the plain dense export "
                             "(its BERT patterns need separate Q/K/V MatMuls and its own mask path); "
                             "dense-mha is the fused com.microsoft.Attention built directly")
    info["dense_variants"] = [g.variant for g in graphs if g.flavor == "dense"]
    return graphs, info


def quick_graphs(bench: BenchModel) -> tuple[list[_Graph], dict[str, Any]]:
    """The model as it serves (bench.exported as is, else its default export: adaptive, or dense
    for a dense-trained model) and, unless that is dense, a dense export of the same weights."""
    model, cfg, exported = bench.model, bench.model.config, bench.exported
    info: dict[str, Any] = {"name": bench.name, "source": bench.source, "d_model": cfg.d_model,
                            "n_heads": cfg.n_heads, "n_layers": cfg.n_layers, "d_ff": cfg.d_ff,
                            "max_length": cfg.max_length, "fusions": "none", "dense_variants": ["dense"],
                            "optimizer": {}, "notes": []}
    rows: dict[str, np.ndarray] = {}
    if exported is not None:
        flavor, payload = exported.flavor, exported.proto.SerializeToString()
        fp16 = float_type(exported) == onnx.TensorProto.FLOAT16
        # a file whose budgets are required inputs (`bfexport deploy` with batching) gets its default rows
        stored = {i.name for i in exported.proto.graph.initializer}
        required = {i.name for i in exported.proto.graph.input} - stored
        defaults: dict[str, np.ndarray] = {
            "budget_thresholds": np.asarray([exported.default_thresholds], dtype=np.float32),
            "head_caps": np.asarray([exported.default_caps], dtype=np.int64)}
        rows = {name: row for name, row in defaults.items() if name in required}
    else:
        flavor, fp16 = ("adaptive" if cfg.adaptive else "dense"), False
        payload = export(model, AdaptiveExport() if cfg.adaptive else DenseExport()).SerializeToString()
    if flavor not in ("adaptive", "masked", "static", "dense"):
        raise BfexportError(f"{bench.name}: bench times ONNX Runtime graphs; a {flavor} file runs on TensorRT "
                            "(bench the adaptive export of the same model)")
    graphs = [_Graph(f"{flavor} (this model)", flavor, payload, as_exported=True, budget_rows=rows)]
    if flavor == "dense":
        info["dense_variants"] = [graphs[0].variant]
    else:
        graphs.insert(0, _Graph("dense", "dense", export(model, DenseExport(fp16=fp16)).SerializeToString()))
        info["notes"].append(f"{graphs[1].variant}: its own default budgets on random token ids; dense: a dense "
                             "export of the same weights" + (" (fp16 like the file)" if fp16 else ""))
    return graphs, info


def _fused_payload(proto: onnx.ModelProto, cfg: BudgetFormerConfig, feed: dict[str, np.ndarray],
                   logits: np.ndarray, key: str, info: dict[str, Any]) -> bytes | None:
    """The optimizer's version of proto if it fused something and left the logits alone, else None
    (with the reason in info["notes"]); info["optimizer"][key] lists the ops it added."""
    try:
        fused, added, printed = ort_optimize(proto, cfg)
        payload: bytes = fused.SerializeToString()
        out = _session(payload, 1).run(["logits"], feed)[0]
    except Exception as e:  # optimizer missing or failing: time the graph as exported
        info["notes"].append(f"transformers optimizer failed on {key}: {type(e).__name__}: {e}")
        return None
    if printed:
        info["notes"].append(f"transformers optimizer on {key} printed: {printed}")
    info["optimizer"][key] = added
    if not added:
        info["notes"].append(f"transformers optimizer fused nothing in {key}")
        return None
    if not _close(out, logits):
        moved = np.abs(out - logits).max()
        info["notes"].append(f"{key}+ortopt dropped: the optimizer moved the logits by {moved:.2e}")
        return None
    return payload


def _close(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and bool(np.allclose(a, b, rtol=1e-3, atol=1e-4))


# ---- the benchmark ---------------------------------------------------------------------------

@dataclass
class _Slot:
    """One timed thing in a cell: a session and its feeds."""

    variant: str
    flavor: str
    k: float | None
    ideal: float
    run: Callable[[], object]
    k_padded: list[int] | None = None
    ideal_per_sample: float | None = None


def _cell_slots(graphs: list[_Graph], sessions: list[Any], cfg: BudgetFormerConfig, seq: int, batch: int,
                ks: Sequence[int], seed: int) -> list[_Slot]:
    H, L = cfg.n_heads, cfg.n_layers
    base = _feeds(cfg, batch, seq, seed)
    slots: list[_Slot] = []

    def runner(session: Any, feeds: dict[str, np.ndarray]) -> Callable[[], object]:
        return lambda: session.run(None, feeds)

    for graph, session in zip(graphs, sessions):
        if graph.as_exported:
            feeds = {**base, **{name: np.ascontiguousarray(np.broadcast_to(row, (batch, row.shape[1])))
                                for name, row in graph.budget_rows.items()}}
            slots.append(_as_exported_slot(graph, session, cfg, seq, feeds, runner(session, feeds)))
        elif graph.flavor == "dense":
            slots.append(_Slot(graph.variant, "dense", None, 1.0, runner(session, base)))
        elif batch > 1 and graph.flavor != "adaptive":
            continue  # batch > 1 compares per-sample budgets with dense only
        elif graph.flavor == "masked":
            k = max(1, H // 2)  # every head is computed whatever k is
            feeds = _budget_feeds(cfg, base, np.full((1, L), k))
            _check_heads(session, feeds, np.full((batch, L), k), graph.variant)
            slots.append(_Slot(graph.variant, "masked", k, ideal_speedup(cfg, seq, [H] * L, router=True),
                               runner(session, feeds)))
        elif graph.flavor == "static":
            assert graph.k is not None  # static graphs carry their fixed k
            slots.append(_Slot(graph.variant, "static", graph.k,
                               ideal_speedup(cfg, seq, [graph.k] * L, router=False), runner(session, base)))
        else:  # adaptive: one session, one slot per budget
            for k in ks:
                if batch == 1:
                    caps = np.full((1, L), k)
                    feeds = _budget_feeds(cfg, base, caps)
                    _check_heads(session, feeds, caps, graph.variant)
                    slots.append(_Slot(graph.variant, "adaptive", k, ideal_speedup(cfg, seq, [k] * L, router=True),
                                       runner(session, feeds)))
                else:
                    caps = per_sample_caps(np.random.default_rng(seed + k), batch, L, H, k)
                    feeds = _budget_feeds(cfg, base, caps)
                    _check_heads(session, feeds, caps, graph.variant)
                    padded, own = ideal_batch(cfg, seq, caps)
                    slots.append(_Slot(graph.variant, "adaptive", float(caps.mean()), padded, runner(session, feeds),
                                       k_padded=caps.max(axis=0).tolist(), ideal_per_sample=own))
    return slots


def _as_exported_slot(graph: _Graph, session: Any, cfg: BudgetFormerConfig, seq: int, feeds: dict[str, np.ndarray],
                      run: Callable[[], object]) -> _Slot:
    """A graph timed with its own default budgets: k and the ideal from the heads it computes on
    these feeds (head_counts; masked computes every head)."""
    counts = session.run(["head_counts"], feeds)[0]
    heads, router = computed_heads(graph.flavor, counts, cfg.n_heads)
    padded, own = ideal_batch(cfg, seq, heads, router=router)
    batch = counts.shape[0]
    return _Slot(graph.variant, graph.flavor, None if graph.flavor == "dense" else float(counts.mean()), padded,
                 run, k_padded=heads.max(axis=0).tolist() if batch > 1 else None,
                 ideal_per_sample=own if batch > 1 else None)


def _check_heads(session: Any, feeds: dict[str, np.ndarray], expected: np.ndarray, variant: str) -> None:
    counts = session.run(["head_counts"], feeds)[0]
    if not np.array_equal(counts, np.broadcast_to(expected, counts.shape)):
        raise RuntimeError(f"{variant}: head_caps {expected.tolist()} with thresholds 1.0 ran "
                           f"{counts.tolist()} heads; the forced budget did not take")


def environment() -> dict[str, Any]:
    import onnxruntime as ort

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    return {"onnxruntime": ort.__version__, "onnx": onnx.__version__, "torch": torch.__version__,
            "numpy": np.__version__, "python": platform.python_version(), "cpu": cpu,
            "cpu_count": os.cpu_count(), "platform": platform.platform(), "loadavg_start": load_average()}


def load_average() -> float | None:
    """The 1-minute load average (None where the OS has none)."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def run_benchmark(models: Sequence[BenchModel | ModelShape], *, seqs: Sequence[int] = (128, 512),
                  threads: Sequence[int] = (1, 2), batch_sizes: Sequence[int] = (1, 8), repeats: int = 15,
                  warmup: int = 3, min_time_s: float = 3.0, fusions: str = "dense", seed: int = 0,
                  max_batch_activation: int | None = MAX_BATCH_ACTIVATION, full: bool = True,
                  progress: Progress | None = None, clock: Clock = time.perf_counter_ns) -> BenchmarkResult:
    """Time every flavor side by side on each model, and compare with the best dense graph
    (full=False: each model as it serves beside a plain dense export, see quick_graphs).

    Args:
        models: BenchModel (weights given, e.g. a checkpoint's) or ModelShape (random weights,
            max_length = the longest seq). A model shorter than the longest seq gets a
            same-weight copy with a longer position table (timing_copy).
        seqs, threads, batch_sizes: the cells, every combination for every model, except
            batch > 1 cells whose activations (batch * seq * d_model values) exceed
            max_batch_activation (default 2**20: BERT-base batch 8 runs at seq 128 only;
            None or 0 = no limit). Skipped cells are listed in the result's notes.
        repeats: interleaved rounds per cell (at least); min_time_s: keep adding rounds until a
            cell has run this long (cheap cells get more rounds, at most 10 * repeats).
        warmup: untimed runs of every variant before each cell.
        fusions: "dense" (default): ONNX Runtime's transformers optimizer on the dense
            candidates only, head-skipping graphs as exported; "all": on every graph; "none".
            A quick run fuses nothing.
        full: False for a quick run: given models only, at seqs up to their max_length.
        progress: called as progress(label, cells done, cells in all) after every round.
        clock: nanosecond clock (tests pass a fake one).

    Returns:
        BenchmarkResult: .cells[i].rows, .to_dict() for JSON.

    Example:
        result = run_benchmark([SHIPPED], seqs=[128], threads=[1], batch_sizes=[1], repeats=5)
        print(result.cells[0].row("adaptive", 4).efficiency)
    """
    for name, values in (("seqs", seqs), ("threads", threads), ("batch_sizes", batch_sizes)):
        if not values or any(int(v) < 1 for v in values):
            raise BfexportError(f"{name} must be a non-empty list of positive integers, got {list(values)}")
    benches, notes = _bench_models(models, max(seqs), seed, full)
    plan: list[tuple[int, int]] = [(batch, seq) for batch in batch_sizes for seq in seqs]  # per model and threads
    cells_of: dict[str, list[tuple[int, int]]] = {}
    for b in benches:
        cells_of[b.name] = []
        for batch, seq in plan:
            size = batch * seq * b.model.config.d_model
            if batch > 1 and max_batch_activation and size > max_batch_activation:
                notes.append(f"{b.name} batch {batch} seq {seq} skipped: {size} activation values > "
                             f"max_batch_activation {max_batch_activation}")
            else:
                cells_of[b.name].append((batch, seq))
    total = sum(len(c) for c in cells_of.values()) * len(threads)
    result = BenchmarkResult(
        settings={"seqs": list(seqs), "threads": list(threads), "batch_sizes": list(batch_sizes), "repeats": repeats,
                  "warmup": warmup, "min_time_s": min_time_s, "fusions": fusions, "seed": seed,
                  "max_batch_activation": max_batch_activation, "mode": "full" if full else "quick",
                  "provider": "CPUExecutionProvider", "dtype": "float32"},
        environment=environment(), models=[], notes=notes)

    def report(label: str, done: float) -> None:
        if progress is not None:
            progress(label, done, total)

    for bench in benches:
        ks = budgets(bench.model.config.n_heads)
        report(f"{bench.name}: exporting and checking graphs", len(result.cells))
        graphs, info = prepare_graphs(bench, ks, fusions) if full else quick_graphs(bench)
        result.models.append(info)
        for t in threads:
            if cells_of[bench.name]:
                report(f"{bench.name}: {len(graphs)} sessions, {t} threads", len(result.cells))
                result.cells += _time_cells(bench, graphs, ks, t, cells_of[bench.name], repeats=repeats,
                                            warmup=warmup, min_time_s=min_time_s, seed=seed, clock=clock,
                                            report=report, done=len(result.cells))
    result.environment["loadavg_end"] = load_average()
    return result


def _bench_models(models: Sequence[BenchModel | ModelShape], longest: int, seed: int,
                  full: bool = True) -> tuple[list[BenchModel], list[str]]:
    """Random models for shapes; for given models a copy that takes `longest` tokens if needed
    (a quick run times the given model itself, so longer sequences are refused)."""
    benches, notes = [], []
    for m in models:
        if isinstance(m, ModelShape):
            benches.append(random_model(m, longest, seed))
        elif not full:
            if longest > m.model.config.max_length:
                raise BfexportError(f"seq {longest} exceeds {m.name}'s max_length {m.model.config.max_length}: a "
                                    "quick run times the model as it is (--full times a copy with a longer "
                                    "position table)")
            benches.append(m)
        else:
            model, changes = timing_copy(m.model, longest, seed)
            benches.append(BenchModel(m.name, model, m.source))
            notes += [f"{m.name}: {c}" for c in changes]
    names = [b.name for b in benches]
    if len(set(names)) != len(names):
        raise BfexportError(f"model names must differ, got {names}")
    return benches, notes


def _time_cells(bench: BenchModel, graphs: list[_Graph], ks: list[int], threads: int, cells: list[tuple[int, int]], *,
                repeats: int, warmup: int, min_time_s: float, seed: int, clock: Clock,
                report: Callable[[str, float], None], done: int) -> list[Cell]:
    """All (batch, seq) cells of one model at one thread count, on one set of sessions (freed on return)."""
    cfg = bench.model.config
    sessions = [_session(g.payload, threads) for g in graphs]
    out: list[Cell] = []
    for batch, seq in cells:
        label = f"{bench.name} seq {seq} batch {batch} threads {threads}"
        slots = _cell_slots(graphs, sessions, cfg, seq, batch, ks, seed)
        base = done + len(out)
        samples = time_slots([s.run for s in slots], repeats=repeats, warmup=warmup, min_time_s=min_time_s,
                             clock=clock, on_round=lambda r, planned: report(label, base + min(r / planned, 1.0)))
        rows = [Row(variant=s.variant, flavor=s.flavor, k=s.k, ideal=s.ideal, k_padded=s.k_padded,
                    ideal_per_sample=s.ideal_per_sample, **summarize(x, batch)) for s, x in zip(slots, samples)]
        reference = compute_rows(rows, batch, cfg.n_heads)
        out.append(Cell(bench.name, seq, threads, batch, cfg.n_heads, reference, len(samples[0]), rows))
        report(label, base + 1)
    return out


# ---- head-skipping targets ----------------------------------------------------------------

@dataclass
class TargetCheck:
    name: str
    threshold: str
    measurements: list[dict[str, Any]]  # cell, value, passed
    passed: bool | None  # None: no cell measured it


def check_targets(result: BenchmarkResult) -> list[TargetCheck]:
    """The head-skipping targets (what real head skipping should reach), on every cell that measures them.

    1. adaptive efficiency >= 0.95 at k = H/2, seq 512, batch 1
    2. adaptive efficiency >= 0.85 at k = H/2 (per-sample mean), batch > 1, padded ideal
    3. adaptive within 3% of static at the same k (every k, batch 1)
    4. adaptive at k = H within 3% of the dense reference (batch 1)
    """
    eff1, eff8, vs_static, vs_dense = [], [], [], []
    for cell in result.cells:
        half = max(1, int(math.floor(cell.n_heads * 0.5 + 0.5)))
        for r in cell.rows:
            if r.flavor != "adaptive":
                continue
            if cell.batch == 1:
                if r.k == half and cell.seq == 512:
                    eff1.append(_measure(cell.label, r.efficiency, r.efficiency >= 0.95))
                if r.overhead_vs_static is not None:
                    vs_static.append(_measure(f"{cell.label} k {r.k:g}", r.overhead_vs_static,
                                              r.overhead_vs_static <= 0.03))
                if r.overhead_vs_dense is not None:
                    vs_dense.append(_measure(f"{cell.label} vs {cell.dense_reference}", r.overhead_vs_dense,
                                             r.overhead_vs_dense <= 0.03))
            elif r.k is not None and abs(r.k - half) < 1e-9:
                eff8.append(_measure(cell.label, r.efficiency, r.efficiency >= 0.85))
    return [
        _target("efficiency at k = H/2, seq 512, batch 1", ">= 0.95", eff1),
        _target("efficiency at k = H/2 (mean), batch 8, padded ideal", ">= 0.85", eff8),
        _target("adaptive overhead vs static, same k, batch 1", "<= +3%", vs_static),
        _target("adaptive at k = H overhead vs dense reference, batch 1", "<= +3%", vs_dense),
    ]


def _measure(cell: str, value: float, passed: bool) -> dict[str, Any]:
    return {"cell": cell, "value": value, "passed": bool(passed)}


def _target(name: str, threshold: str, measurements: list[dict[str, Any]]) -> TargetCheck:
    return TargetCheck(name, threshold, measurements,
                       all(m["passed"] for m in measurements) if measurements else None)


# ---- text ------------------------------------------------------------------------------------

def _fmt(value: float | None, spec: str) -> str:
    return "" if value is None or (isinstance(value, float) and not math.isfinite(value)) else format(value, spec)


def row_cells(row: Row, reference: str, batch: int) -> list[str]:
    """The text of one table row, in headers(batch) order. The dense reference is marked with '*'."""
    name = row.variant + ("*" if row.variant == reference else "")
    if row.k is None:
        k = ""
    elif row.k_padded is not None:
        k = f"{row.k:g} (max {max(row.k_padded)})"
    else:
        k = f"{row.k:g}"
    spread = (row.q3_ms - row.q1_ms) / row.median_ms * 100
    over = "" if row.overhead_vs_static is None else f"{row.overhead_vs_static * 100:+.1f}%"
    cells = [name, k, f"{row.median_ms:.2f}", f"{spread:.1f}%", f"{row.speedup:.3f}", f"{row.ideal:.3f}",
             f"{row.efficiency:.3f}", over, _fmt(row.ideal_per_sample, ".3f"), _fmt(row.efficiency_per_sample, ".3f"),
             _fmt(row.p90_ms, ".2f"), _fmt(row.p99_ms, ".2f"), _fmt(row.items_per_s, ".1f")]
    return [c for c, h in zip(cells, HEADERS) if h in headers(batch)]


# ms is the median (p50); batch > 1 tables add the two per-sample columns
HEADERS = ["variant", "k", "ms", "IQR", "speedup", "ideal", "efficiency", "vs static", "ideal/sample",
           "eff./sample", "p90 ms", "p99 ms", "items/s"]
PER_SAMPLE = ("ideal/sample", "eff./sample")


def headers(batch: int) -> list[str]:
    return HEADERS if batch > 1 else [h for h in HEADERS if h not in PER_SAMPLE]


def to_markdown(result: BenchmarkResult, targets: list[TargetCheck] | None = None) -> str:
    env = result.environment
    lines = ["# Head-skipping benchmark", "",
             f"ONNX Runtime {env['onnxruntime']} CPU, {env['cpu']} ({env['cpu_count']} cores), fp32; "
             f"{result.settings['repeats']}+ interleaved rounds per cell, medians; load average "
             f"{env.get('loadavg_start')} at start, {env.get('loadavg_end')} at end; "
             f"fusions: {result.settings['fusions']}.",
             ""]
    for m in result.models:
        lines.append(f"- **{m['name']}**: d {m['d_model']}, {m['n_heads']} heads, {m['n_layers']} layers, "
                     f"FFN {m['d_ff']} ({m['source']}); dense candidates: {', '.join(m['dense_variants'])}")
        for note in m["notes"]:
            lines.append(f"  - {note}")
    lines += [f"- {n}" for n in result.notes]
    if targets:
        lines += ["", "## Targets", "", "| target | threshold | worst | result |", "| --- | --- | --- | --- |"]
        for t in targets:
            worst = _worst(t)
            verdict = "not measured" if t.passed is None else ("pass" if t.passed else "**fail**")
            lines.append(f"| {t.name} | {t.threshold} | {worst} | {verdict} |")
    for cell in result.cells:
        names = headers(cell.batch)
        lines += ["", f"## {cell.label}", "", f"dense reference (*): {cell.dense_reference}; {cell.rounds} rounds", "",
                  "| " + " | ".join(names) + " |", "|" + " --- |" * len(names)]
        for row in cell.rows:
            lines.append("| " + " | ".join(row_cells(row, cell.dense_reference, cell.batch)) + " |")
    return "\n".join(lines) + "\n"


def _worst(t: TargetCheck) -> str:
    if not t.measurements:
        return ""
    if t.threshold.startswith(">="):
        m = min(t.measurements, key=lambda m: m["value"])
        return f"{m['value']:.3f} ({m['cell']})"
    m = max(t.measurements, key=lambda m: m["value"])
    return f"{m['value'] * 100:+.1f}% ({m['cell']})"
