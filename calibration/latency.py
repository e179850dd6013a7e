"""Latency on the device the model will run on: runtimes, a per-layer lookup table, verification.

Runtimes implement one small interface (`LatencyRuntime`) and share one timing loop
(`bfexport.timing.time_interleaved`, the one `bfexport bench` uses too), so the search never
knows whether it is pricing ONNX Runtime on a CPU (here), PyTorch (torch_runtime.py) or a
TensorRT engine (tensorrt_runtime.py); runtimes.py
names them and says which can run on this machine.

The table follows NetAdapt: the budget k of every layer is forced through the head caps
(tau = 1 then cap = k gives exactly k heads), each configuration is timed on batches drawn
from the calibration data, and a candidate's latency on a batch is predicted as the all-heads
time plus, per layer, the difference its batch's largest k makes (the exported graph pads a
batch to its largest k).
BudgetFormer layers share one shape, so the default profile forces the same k in every layer
(H configurations instead of L*(H-1)+1, and an L times larger signal above the noise) and
splits the difference evenly; mode="per-layer" times each layer on its own.

Pitfalls of timing ONNX Runtime on CPU, handled: every session stops spinning when idle
(`session.force_spinning_stop`), so an idle session does not steal the cores of the timed one;
loops stay busy (no sleeps, which would let the CPU clock down); configurations are interleaved
per batch in a rotating order so drift hits all of them alike; and medians are used.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import onnxruntime as ort

from bfexport.errors import BfexportError
from bfexport.exported import ExportedModel
from bfexport.names import ATTENTION_MASK, BUDGET_THRESHOLDS, HEAD_CAPS, INPUT_IDS, LOGITS
from bfexport.runtime import session_options
from bfexport.timing import time_interleaved
from calibration.evaluate import Config
from calibration.inputs import CalibrationData
from calibration.targets import PERCENTILES

Batch = tuple[np.ndarray, np.ndarray]  # (input_ids, attention_mask), int64 (B, S)


def time_ms(call: Callable[[int, int], object], configs: Sequence[Config], batches: Sequence[Batch], *,
            repeats: int, warmup: int, sync: Callable[[], object] | None = None) -> np.ndarray:
    """Milliseconds of each call(config index, batch index), shape (repeats, len(configs), len(batches)):
    the shared loop (bfexport.timing.time_interleaved), every runtime's `measure` in one unit."""
    return 1e3 * time_interleaved(call, len(configs), len(batches), repeats=repeats, warmup=warmup, sync=sync)


class LatencyRuntime(ABC):
    """Times an exported model on one device. Implement `describe` and `measure`; `missing` says
    what a machine lacks to run it, and construction refuses with that line.

    Example:
        rt = get_runtime("ort-cpu")(exported, threads=2)
        ms = rt.measure(batches, [Config.uniform(1.0, 8, 4)], repeats=5)  # (5, 1, len(batches))
    """

    name: ClassVar[str]
    about: ClassVar[str] = ""  # one line for --help

    def __init__(self, exported: ExportedModel, threads: int | None = None) -> None:
        why = self.missing()
        if why is not None:
            raise BfexportError(f"runtime '{self.name}' cannot run on this machine: {why}")
        self.exported, self.threads = exported, threads

    @classmethod
    def missing(cls) -> str | None:
        """What this machine lacks to run the runtime (one line), or None when it can run it."""
        return None

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """Runtime name, version and settings, recorded in calibration.json."""

    @abstractmethod
    def measure(self, batches: Sequence[Batch], configs: Sequence[Config], repeats: int,
                warmup: int = 1) -> np.ndarray:
        """Milliseconds per call, shape (repeats, len(configs), len(batches)); configurations
        interleaved per batch so that they see the same machine state (time_ms)."""

    def fresh(self) -> LatencyRuntime:
        """The same runtime in a new session (for re-measurement)."""
        return type(self)(self.exported, self.threads)


class OrtCpuRuntime(LatencyRuntime):
    """ONNX Runtime, CPU execution provider; thresholds and caps fed per call."""

    name = "ort-cpu"
    about = "ONNX Runtime on the CPU, the exported graph itself"

    def __init__(self, exported: ExportedModel, threads: int | None = None) -> None:
        super().__init__(exported, threads)
        self.options = session_options(threads)
        self.session = ort.InferenceSession(exported.proto.SerializeToString(), self.options,
                                            providers=["CPUExecutionProvider"])

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "provider": "CPUExecutionProvider", "onnxruntime": ort.__version__,
                "intra_op_threads": self.threads or "default (one per physical core)",
                "graph_optimization_level": str(self.options.graph_optimization_level).split(".")[-1]}

    def measure(self, batches: Sequence[Batch], configs: Sequence[Config], repeats: int,
                warmup: int = 1) -> np.ndarray:
        feeds = [[{INPUT_IDS: ids, ATTENTION_MASK: mask,
                   BUDGET_THRESHOLDS: np.asarray([c.thresholds], dtype=np.float32),
                   HEAD_CAPS: np.asarray([c.caps], dtype=np.int64)} for ids, mask in batches] for c in configs]
        run = self.session.run
        return time_ms(lambda c, m: run([LOGITS], feeds[c][m]), configs, batches, repeats=repeats, warmup=warmup)


# ---- measurement batches --------------------------------------------------------------------
def latency_groups(n_samples: int, batch_size: int, count: int, seed: int = 0) -> list[np.ndarray]:
    """`count` batches of `batch_size` distinct calibration rows, drawn without replacement so
    that the batches follow the data's length distribution."""
    if batch_size < 1:
        raise BfexportError(f"batch size must be at least 1, got {batch_size}")
    if n_samples < batch_size:
        raise BfexportError(f"latency calibration at batch size {batch_size} needs at least {batch_size} samples, "
                            f"got {n_samples}")
    order = np.random.default_rng(seed).permutation(n_samples)
    count = max(1, min(count, n_samples // batch_size))
    return [np.sort(order[i * batch_size:(i + 1) * batch_size]) for i in range(count)]


def make_batches(data: CalibrationData, groups: Sequence[np.ndarray]) -> list[Batch]:
    """Padded to the batch's longest row, or to the fixed --seq-len."""
    return [data.batch(g, pad_to=data.seq_len) for g in groups]


# ---- the lookup table ---------------------------------------------------------------------
@dataclass
class LatencyTable:
    """Per-batch medians of forced-budget configurations, and predictions made from them."""

    groups: list[np.ndarray]  # calibration rows of each measured batch
    mode: str  # "uniform" or "per-layer"
    times: np.ndarray  # uniform: (H+1, M) all layers at k; per-layer: (L, H+1, M) layer l at k, others H
    n_layers: int
    n_heads: int

    @property
    def all_heads(self) -> np.ndarray:
        times: np.ndarray = self.times[self.n_heads] if self.mode == "uniform" else self.times[0, self.n_heads]
        return times

    def layer_delta(self, layer: int, k: np.ndarray, m: np.ndarray) -> np.ndarray:
        """Milliseconds that layer `layer` at budget k adds over all heads, for batches m."""
        delta: np.ndarray
        if self.mode == "uniform":
            delta = (self.times[k, m] - self.times[self.n_heads, m]) / self.n_layers
        else:
            delta = self.times[layer, k, m] - self.times[layer, self.n_heads, m]
        return delta

    def predict(self, heads: np.ndarray) -> np.ndarray:
        """Predicted ms per measured batch for per-sample head counts `heads` (N, L)."""
        kmax = np.stack([heads[g].max(0) for g in self.groups])  # (M, L): the graph runs the batch's largest k
        m = np.arange(len(self.groups))
        return self.all_heads + sum(self.layer_delta(layer, kmax[:, layer], m) for layer in range(self.n_layers))

    def percentile(self, heads: np.ndarray, q: float) -> float:
        return float(np.percentile(self.predict(heads), q))

    def forced(self, k: int, q: float) -> float:
        """Measured percentile with every layer forced to k heads."""
        if self.mode == "uniform":
            return float(np.percentile(self.times[k], q))
        full = np.full((len(self.groups), self.n_layers), k)
        m = np.arange(len(self.groups))
        return float(np.percentile(self.all_heads + sum(self.layer_delta(layer, full[:, layer], m)
                                                        for layer in range(self.n_layers)), q))

    def to_json(self) -> dict[str, Any]:
        """Median over batches of each layer's added ms at each k (the lookup table)."""
        m = np.arange(len(self.groups))
        return {"mode": self.mode, "batches": len(self.groups),
                "all_heads_median_ms": float(np.median(self.all_heads)),
                "layer_delta_ms": [[float(np.median(self.layer_delta(layer, np.full_like(m, k), m)))
                                    for k in range(1, self.n_heads + 1)] for layer in range(self.n_layers)]}


def profile(runtime: LatencyRuntime, batches: Sequence[Batch], groups: Sequence[np.ndarray], n_layers: int,
            n_heads: int, *, repeats: int = 5, mode: str = "uniform") -> LatencyTable:
    """Time forced-budget configurations (caps = k, tau = 1) on the measurement batches."""
    top = Config.uniform(1.0, n_heads, n_layers)
    if mode == "uniform":
        configs = [Config.uniform(1.0, k, n_layers) for k in range(1, n_heads + 1)]
        med = np.median(runtime.measure(batches, configs, repeats), axis=0)  # (H, M)
        times = np.concatenate([np.zeros((1, med.shape[1])), med])  # row k = k heads everywhere
    elif mode == "per-layer":
        configs = [top] + [top.with_layer(layer, cap=k) for layer in range(n_layers) for k in range(1, n_heads)]
        med = np.median(runtime.measure(batches, configs, repeats), axis=0)  # (1 + L*(H-1), M)
        times = np.zeros((n_layers, n_heads + 1, med.shape[1]))
        for layer in range(n_layers):
            times[layer, n_heads] = med[0]
            times[layer, 1:n_heads] = med[1 + layer * (n_heads - 1): 1 + (layer + 1) * (n_heads - 1)]
    else:
        raise BfexportError(f"latency profile mode must be 'uniform' or 'per-layer', got {mode!r}")
    return LatencyTable(list(groups), mode, times, n_layers, n_heads)


# ---- verification ---------------------------------------------------------------------------
def percentiles(values: np.ndarray) -> dict[str, float]:
    """p50 / p90 / p95 / p99 of milliseconds per call (the percentiles a target may name)."""
    return {f"p{q}": float(np.percentile(values, q)) for q in PERCENTILES}


def session_samples(runtime: LatencyRuntime, batches: Sequence[Batch], configs: Sequence[Config], *,
                    sessions: int, repeats: int) -> list[list[np.ndarray]]:
    """Per fresh session of `runtime`, each configuration's milliseconds per call (repeats x
    batches, flattened), the configurations interleaved per batch."""
    out = []
    for _ in range(max(1, sessions)):
        rt = runtime.fresh()
        raw = rt.measure(batches, list(configs), repeats)  # (repeats, len(configs), batches)
        del rt
        out.append([raw[:, i, :].ravel() for i in range(len(configs))])
    return out


def verify(runtime: LatencyRuntime, batches: Sequence[Batch], candidate: Config, reference: Config, *,
           percentile: int, target_ms: float | None, fraction: float | None = None, sessions: int = 5,
           repeats: int = 5) -> dict[str, Any]:
    """Measure the candidate end to end, interleaved with the all-heads reference, in
    `sessions` fresh sessions. Percentiles are over every timed call (batches x repeats x
    sessions); each session's own percentile says how often a re-measurement meets the target.
    With `fraction`, the target is that fraction of the reference measured alongside (pooled,
    and per session for the per-session count)."""
    runs = session_samples(runtime, batches, [candidate, reference], sessions=sessions, repeats=repeats)
    per_session = [{"ms": float(np.percentile(c, percentile)), "all_heads_ms": float(np.percentile(r, percentile))}
                   for c, r in runs]
    c, r = np.concatenate([run[0] for run in runs]), np.concatenate([run[1] for run in runs])
    key = f"p{percentile}"
    measured, reference_ms = percentiles(c), percentiles(r)
    session_ms = [s["ms"] for s in per_session]
    if fraction is not None:
        target_ms = float(fraction) * reference_ms[key]
        session_targets = [fraction * s["all_heads_ms"] for s in per_session]
    else:
        assert target_ms is not None  # callers give target_ms, or fraction for a relative target
        session_targets = [target_ms] * len(per_session)
    return {
        **measured,
        "percentile": percentile,
        "target_ms": float(target_ms),
        "target_fraction_of_all_heads": fraction,
        "met": bool(measured[key] <= target_ms),
        "all_heads": reference_ms,
        "speedup": reference_ms[key] / measured[key],
        "spread": {"iqr_ms": float(np.percentile(c, 75) - np.percentile(c, 25)),
                   "mad_ms": float(np.median(np.abs(c - np.median(c)))),
                   f"session_{key}_min_ms": min(session_ms), f"session_{key}_max_ms": max(session_ms)},
        "sessions": len(per_session),
        "sessions_meeting_target": int(sum(v <= t for v, t in zip(session_ms, session_targets, strict=True))),
        "sessions_meeting_pooled_target": int(sum(v <= target_ms for v in session_ms)),  # same as above for ms targets
        "per_session": per_session,
        "calls_per_session": len(runs[0][0]),
        "batches": len(batches),
    }
