"""The one timing loop: warm-up, interleaved rotating rounds, per-run samples, and their summary.

Shared by `bfexport bench` (bfexport/benchmark), calibration's latency runtimes and the
benchmarks/ scripts, so every latency bfexport reports is measured the same way:

- every call is warmed up first (untimed);
- then rounds: in each round every slot (a variant, a budget configuration) runs once, in an
  order that starts one later each round (and each group), so drift, caches and neighbours
  favour none of them;
- the loop never sleeps (which would let the CPU clock down) and the garbage collector is off
  while it times, so no collector pause lands inside a timed call;
- `sync` (e.g. torch.cuda.synchronize) runs before the clock stops, so asynchronous devices
  are timed to completion.

numpy and the standard library only: nothing here knows about ONNX, PyTorch or devices.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable, Sequence
from typing import TypedDict

import numpy as np

from bfexport.errors import BfexportError

Clock = Callable[[], int]  # nanoseconds, like time.perf_counter_ns


def interleave(n_slots: int, round_index: int) -> list[int]:
    """Order of the slots in one round: round-robin, starting one later each round, so no
    slot always runs right after the same neighbour or first in the round."""
    start = round_index % n_slots
    return [(start + i) % n_slots for i in range(n_slots)]


def time_interleaved(call: Callable[[int, int], object], n_slots: int, n_groups: int = 1, *, repeats: int,
                     warmup: int = 1, min_time_s: float = 0.0, max_rounds: int | None = None,
                     sync: Callable[[], object] | None = None, clock: Clock = time.perf_counter_ns,
                     on_round: Callable[[int, int], None] | None = None) -> np.ndarray:
    """Seconds of each call(slot, group), shape (rounds, n_slots, n_groups).

    Warm-up: `warmup` untimed calls of each (slot, group), slot by slot. Then rounds: per group,
    every slot once, in the order interleave(n_slots, round + group). Runs `repeats` rounds,
    then more while the rounds so far took under min_time_s (at most max_rounds, default
    10 * repeats). on_round(rounds done, planned rounds) after each round.
    """
    if repeats < 1 or warmup < 0:
        raise BfexportError(f"repeats must be >= 1 and warmup >= 0, got {repeats}, {warmup}")
    done = sync or (lambda: None)
    for slot in range(n_slots):
        for group in range(n_groups):
            for _ in range(warmup):
                call(slot, group)
    done()
    max_rounds = max(repeats, max_rounds if max_rounds is not None else 10 * repeats)
    rounds: list[np.ndarray] = []
    gc.collect()
    collecting = gc.isenabled()
    gc.disable()  # no collector pause inside a timed call
    try:
        started = clock()
        while len(rounds) < repeats or ((clock() - started) / 1e9 < min_time_s and len(rounds) < max_rounds):
            seconds = np.empty((n_slots, n_groups), dtype=np.float64)
            for group in range(n_groups):
                for slot in interleave(n_slots, len(rounds) + group):
                    t0 = clock()
                    call(slot, group)
                    done()
                    seconds[slot, group] = (clock() - t0) / 1e9
            rounds.append(seconds)
            if on_round is not None:
                on_round(len(rounds), repeats)
    finally:
        if collecting:
            gc.enable()
    return np.stack(rounds)


def time_slots(runs: Sequence[Callable[[], object]], *, repeats: int, warmup: int, min_time_s: float = 0.0,
               max_rounds: int | None = None, clock: Clock = time.perf_counter_ns,
               on_round: Callable[[int, int], None] | None = None) -> list[list[float]]:
    """Seconds per run for each callable: time_interleaved over one group of argument-less runs."""
    seconds = time_interleaved(lambda slot, _: runs[slot](), len(runs), repeats=repeats, warmup=warmup,
                               min_time_s=min_time_s, max_rounds=max_rounds, clock=clock, on_round=on_round)
    return [seconds[:, slot, 0].tolist() for slot in range(len(runs))]


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
