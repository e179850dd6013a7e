"""Run candidate budget configurations through the exported model, computing each sample once
per distinct routing path.

Why a path cache: a sample's route in layer l depends on the layer's input, which depends on
the heads earlier layers ran. So a sample's output is fixed by its sequence of budgets
(k_0, ..., k_{L-1}), and k_l is fixed by the budget distribution the router computed for that
prefix and by (tau_l, cap_l). The evaluator asks the ONNX graph for each layer's budget tail
P(K >= k) (an internal tensor, added as an output to a private copy of the graph), stores it
in a per-sample tree keyed by the budgets taken so far, and then resolves a new candidate by
walking that tree: only samples whose path leaves the known tree are run again, in
length-sorted batches with per-row thresholds and caps (the graph takes both per row), so
misses from many candidates share one batch. This is exact, not a surrogate: the comparison
(tail > 1 - tau) is replicated bit for bit in the graph's float type, and every run checks it.

Screening (`exact=False`) walks the same tree but, where a path is unknown, continues along
the known sibling with the nearest budget: an estimate that costs no model run, used to rank
moves before the best few are evaluated exactly.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper

from bfexport.errors import BfexportError
from bfexport.exported import ExportedModel
from bfexport.names import ATTENTION_MASK, BUDGET_THRESHOLDS, HEAD_CAPS, HEAD_COUNTS, INPUT_IDS, LOGITS, router_tail
from bfexport.runtime import session_options
from calibration.inputs import CalibrationData


@dataclass(frozen=True)
class Config:
    """One operating point: a threshold tau and a head cap per layer."""

    thresholds: tuple[float, ...]
    caps: tuple[int, ...]

    @classmethod
    def uniform(cls, tau: float, cap: int, n_layers: int) -> Config:
        return cls((float(tau),) * n_layers, (int(cap),) * n_layers)

    def with_layer(self, layer: int, *, tau: float | None = None, cap: int | None = None) -> Config:
        taus, caps = list(self.thresholds), list(self.caps)
        if tau is not None:
            taus[layer] = float(tau)
        if cap is not None:
            caps[layer] = int(cap)
        return replace(self, thresholds=tuple(taus), caps=tuple(caps))

    def to_json(self) -> dict[str, list[float] | list[int]]:
        return {"thresholds": list(self.thresholds), "caps": list(self.caps)}


@dataclass
class Outcome:
    """What a configuration does on the calibration data."""

    heads: np.ndarray  # (N, L) heads each sample runs in each layer
    preds: np.ndarray  # (N,) predicted class ids
    exact: bool  # False: a screening estimate (some paths borrowed from a sibling)


class _Node:
    """A routing prefix of one sample: the budget tail its next layer computes, and the
    children reached by each budget taken there (a leaf holds the prediction)."""

    __slots__ = ("tail", "kcache", "children", "pred")

    def __init__(self, tail: np.ndarray | None, pred: int = -1) -> None:
        self.tail = tail  # (H - 1,) P(K > k) for k = 1..H-1, in the graph's float type
        self.kcache: dict[float, int] = {}
        self.children: dict[int, _Node] = {}
        self.pred = pred

    def budget(self, tau: float, cap: int, one: np.generic | np.ndarray, dtype: np.dtype) -> int:
        """Router.budget on the stored tail, in the graph's arithmetic."""
        k = self.kcache.get(tau)
        if k is None:
            level = one - np.asarray(tau, dtype=np.float32).astype(dtype)
            k = int(np.count_nonzero(self.tail > level)) + 1
            self.kcache[tau] = k
        return min(k, cap)


@dataclass
class EvaluatorStats:
    calls: int = 0  # session.run calls
    rows: int = 0  # sample-rows run
    seconds: float = 0.0
    mismatches: int = 0  # replicated budget != graph budget (should stay 0)
    cached_configs: int = 0
    screened: int = 0


@dataclass
class Evaluator:
    """Evaluates configurations of one exported model on one calibration data set."""

    exported: ExportedModel
    data: CalibrationData
    threads: int | None = None
    batch_size: int = 32
    stats: EvaluatorStats = field(default_factory=EvaluatorStats)

    def __post_init__(self) -> None:
        cfg = self.exported.config
        self.n_layers, self.n_heads = cfg.n_layers, cfg.n_heads
        inputs = {i.name for i in self.exported.proto.graph.input}
        if BUDGET_THRESHOLDS not in inputs or HEAD_CAPS not in inputs:
            raise BfexportError(f"{self.exported.path}: the {self.exported.flavor} flavor has no budget inputs, so "
                                "there is nothing to calibrate; export the adaptive flavor "
                                "(bfexport convert --flavor adaptive)")
        proto, self._tails, self._dtype = _with_tail_outputs(self.exported.proto, self.n_layers)
        self._one = np.asarray(1.0, dtype=self._dtype)[()]
        self.session = ort.InferenceSession(proto.SerializeToString(), session_options(self.threads),
                                            providers=["CPUExecutionProvider"])
        self._lengths = self.data.lengths
        self._roots: list[_Node | None] = [None] * len(self.data)
        self._cache: dict[Config, Outcome] = {}
        self._full: dict[Config, Outcome] = {}  # fallback when the graph exposes no tails

    # ---- public ------------------------------------------------------------------
    def outcomes(self, configs: Sequence[Config], exact: bool = True) -> list[Outcome]:
        """Outcomes of `configs` in order; exact ones are cached for the whole calibration."""
        for c in configs:
            self._check(c)
        if self._tails is None:
            return [self._run_full(c) for c in configs]
        todo = [c for c in dict.fromkeys(configs) if c not in self._cache]
        if todo and exact:
            self._fill(todo)
        out = []
        for c in configs:
            if c in self._cache:
                out.append(self._cache[c])
                continue
            heads, preds, complete = self._walk_all(c, approximate=not exact)
            outcome = Outcome(heads, preds, complete)
            if complete:
                self._cache[c] = outcome
            else:
                self.stats.screened += 1
            out.append(outcome)
        self.stats.cached_configs = len(self._cache)
        return out

    @property
    def exact_tracking(self) -> bool:
        """True when candidates are resolved through the path cache (tails exposed)."""
        return self._tails is not None

    # ---- the path tree ---------------------------------------------------------------
    def _walk(self, i: int, c: Config, approximate: bool) -> tuple[list[int], int, int]:
        """(budgets, prediction, depth of the first unknown step or -1) for sample i."""
        node = self._roots[i]
        ks: list[int] = []
        if node is None:
            return ks, -1, 0
        miss = -1
        for layer in range(self.n_layers):
            k = node.budget(c.thresholds[layer], c.caps[layer], self._one, self._dtype)
            ks.append(k)
            child = node.children.get(k)
            if child is None:
                if miss < 0:
                    miss = layer
                if not approximate:
                    return ks, -1, miss
                child = node.children[min(node.children, key=lambda kk: (abs(kk - k), -kk))]
            node = child
        return ks, node.pred, miss

    def _walk_all(self, c: Config, approximate: bool) -> tuple[np.ndarray, np.ndarray, bool]:
        N = len(self.data)
        heads = np.empty((N, self.n_layers), dtype=np.int64)
        preds = np.empty(N, dtype=np.int64)
        complete = True
        for i in range(N):
            ks, pred, miss = self._walk(i, c, approximate)
            if len(ks) < self.n_layers:  # no root yet: nothing to borrow
                raise BfexportError("internal: screening before any exact evaluation")
            heads[i], preds[i] = ks, pred
            complete &= miss < 0
        return heads, preds, complete

    def _fill(self, configs: Sequence[Config]) -> None:
        """Run the samples whose path leaves the tree, in waves: per unknown step (sample,
        budgets so far) one row runs and reveals a whole path below it; configurations that
        share the step then resolve from it, or run in the next wave if they branch off."""
        seen: set[tuple[int, tuple[int, ...]]] = set()
        while True:
            misses: dict[tuple[int, tuple[int, ...]], tuple[int, Config, list[int]]] = {}
            stuck: set[Config] = set()
            for c in configs:
                for i in range(len(self.data)):
                    ks, _, miss = self._walk(i, c, approximate=False)
                    if miss >= 0:
                        key = (i, tuple(ks))
                        if key in seen:  # the graph disagreed with the replicated budget: run it whole
                            stuck.add(c)
                        else:
                            misses.setdefault(key, (i, c, ks))
            for c in stuck:
                self._cache[c] = self._run_full(c)
            configs = [c for c in configs if c not in stuck]
            misses = {k: m for k, m in misses.items() if m[1] not in stuck}
            if not misses:
                return
            seen.update(misses)
            # similar lengths and the same configuration side by side: the graph pads a batch to
            # its longest row and to its largest k, so mixed batches pay for their most expensive row
            rows = sorted(misses.values(), key=lambda m: (self._lengths[m[0]] // 8, m[1].caps, m[1].thresholds,
                                                          m[2], self._lengths[m[0]]))
            for start in range(0, len(rows), self.batch_size):
                self._run_rows(rows[start:start + self.batch_size])

    def _run_rows(self, chunk: Sequence[tuple[int, Config, list[int]]]) -> None:
        ids, mask = self.data.batch([i for i, _, _ in chunk])
        feeds = {INPUT_IDS: ids, ATTENTION_MASK: mask,
                 BUDGET_THRESHOLDS: np.asarray([c.thresholds for _, c, _ in chunk], dtype=np.float32),
                 HEAD_CAPS: np.asarray([c.caps for _, c, _ in chunk], dtype=np.int64)}
        assert self._tails is not None  # _fill runs only when the graph exposes the tails
        names = [LOGITS, HEAD_COUNTS, *self._tails]
        t0 = time.perf_counter()
        logits, counts, *tails = self.session.run(names, feeds)
        self.stats.seconds += time.perf_counter() - t0
        self.stats.calls += 1
        self.stats.rows += len(chunk)
        preds = logits.argmax(-1)
        for b, (i, c, predicted) in enumerate(chunk):
            actual = [int(k) for k in counts[b]]
            if self._roots[i] is None:
                self._roots[i] = _Node(tails[0][b, 1:].copy())
            node = self._roots[i]
            assert node is not None  # set just above
            for layer, k in enumerate(actual):
                if layer < len(predicted) and predicted[layer] != k:  # trust the graph from here on
                    self.stats.mismatches += 1
                    node.kcache[c.thresholds[layer]] = k
                child = node.children.get(k)
                if child is None:
                    last = layer + 1 == self.n_layers
                    child = _Node(None if last else tails[layer + 1][b, 1:].copy(), int(preds[b]) if last else -1)
                    node.children[k] = child
                node = child

    # ---- without tails: one full run per configuration ------------------------------
    def _run_full(self, c: Config) -> Outcome:
        if c not in self._full:
            order = np.argsort(self._lengths, kind="stable")
            heads = np.empty((len(self.data), self.n_layers), dtype=np.int64)
            preds = np.empty(len(self.data), dtype=np.int64)
            for start in range(0, len(order), self.batch_size):
                idx = order[start:start + self.batch_size]
                ids, mask = self.data.batch(idx)
                feeds = {INPUT_IDS: ids, ATTENTION_MASK: mask,
                         BUDGET_THRESHOLDS: np.asarray([c.thresholds], dtype=np.float32),
                         HEAD_CAPS: np.asarray([c.caps], dtype=np.int64)}
                t0 = time.perf_counter()
                logits, counts = self.session.run([LOGITS, HEAD_COUNTS], feeds)
                self.stats.seconds += time.perf_counter() - t0
                self.stats.calls += 1
                self.stats.rows += len(idx)
                heads[idx], preds[idx] = counts, logits.argmax(-1)
            self._full[c] = Outcome(heads, preds, True)
        return self._full[c]

    def _check(self, c: Config) -> None:
        if len(c.thresholds) != self.n_layers or len(c.caps) != self.n_layers:
            raise BfexportError(f"a configuration needs {self.n_layers} thresholds and caps, got {c}")
        if not all(0.0 < t <= 1.0 for t in c.thresholds):
            raise BfexportError(f"budget thresholds must lie in (0, 1], got {list(c.thresholds)}")
        if not all(1 <= k <= self.n_heads for k in c.caps):
            raise BfexportError(f"head caps must lie in [1, {self.n_heads}], got {list(c.caps)}")


def _with_tail_outputs(proto: onnx.ModelProto, n_layers: int) -> tuple[onnx.ModelProto, list[str] | None, np.dtype]:
    """A copy of the graph that also outputs each layer's budget tail (B, H), if the graph has
    the router tensors bfexport's exporter names `names.router_tail(layer)`."""
    produced = {name: node for node in proto.graph.node for name in node.output}
    names = [router_tail(layer) for layer in range(n_layers)]
    float_type = TensorProto.FLOAT
    for init in proto.graph.initializer:
        if init.name == "blocks.0.attn.qkv_weight":
            float_type = init.data_type
    dtype = np.dtype(helper.tensor_dtype_to_np_dtype(float_type))
    if not all(n in produced and produced[n].op_type == "CumSum" for n in names):
        return proto, None, dtype
    copy = onnx.ModelProto()
    copy.CopyFrom(proto)
    for n in names:
        copy.graph.output.append(helper.make_tensor_value_info(n, float_type, None))
    return copy, names, dtype
