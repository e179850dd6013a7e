"""bfexport/timing.py: the one timing loop (warm-up, rotating interleaved rounds, min-time, sync)
with fake clocks, and the summary of its samples. No wall-clock assertions."""

from __future__ import annotations

import gc

import numpy as np
import pytest

from bfexport.errors import BfexportError
from bfexport.timing import interleave, summarize, time_interleaved, time_slots


class FakeClock:
    """perf_counter_ns stand-in: time moves only when a fake run says so."""

    def __init__(self) -> None:
        self.now = 0

    def __call__(self) -> int:
        return self.now

    def runner(self, name: str, durations_ms: list[float], log: list[str]):
        """A run that takes durations_ms[i] on its i-th call (the last one repeats)."""
        calls = iter(range(10**9))

        def run() -> None:
            i = next(calls)
            log.append(name)
            self.now += int(durations_ms[min(i, len(durations_ms) - 1)] * 1e6)

        return run


def test_interleave_rotates_so_each_slot_takes_each_position_once():
    n = 5
    rounds = [interleave(n, r) for r in range(n)]
    assert rounds[0] == [0, 1, 2, 3, 4] and rounds[1] == [1, 2, 3, 4, 0]
    for order in rounds:
        assert sorted(order) == list(range(n))
    for position in range(n):
        assert sorted(order[position] for order in rounds) == list(range(n))
    assert interleave(n, n) == interleave(n, 0)


def test_time_slots_warms_up_then_interleaves_and_times_each_run():
    clock, log = FakeClock(), []
    runs = [clock.runner("a", [50, 10], log), clock.runner("b", [20], log), clock.runner("c", [99, 99, 30], log)]
    samples = time_slots(runs, repeats=3, warmup=2, clock=clock)
    assert log[:6] == ["a", "a", "b", "b", "c", "c"]  # warm-up, untimed, each variant in turn
    assert log[6:] == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]  # rotated rounds
    assert samples == [[0.01] * 3, [0.02] * 3, [0.03] * 3]  # warm-up costs are not in the samples


def test_time_slots_min_time_adds_rounds_up_to_the_cap():
    clock, log = FakeClock(), []
    samples = time_slots([clock.runner("a", [100], log)], repeats=2, warmup=0, min_time_s=0.45, clock=clock)
    assert len(samples[0]) == 5  # 0.1 s a round: rounds continue until 0.45 s have passed
    clock, log = FakeClock(), []
    samples = time_slots([clock.runner("a", [100], log)], repeats=2, warmup=0, min_time_s=100, max_rounds=7,
                         clock=clock)
    assert len(samples[0]) == 7


def test_time_slots_reports_rounds_and_rejects_bad_counts():
    clock, seen = FakeClock(), []
    time_slots([clock.runner("a", [1], [])], repeats=3, warmup=0, clock=clock,
               on_round=lambda r, n: seen.append((r, n)))
    assert seen == [(1, 3), (2, 3), (3, 3)]
    assert gc.isenabled()  # switched off only while timing
    with pytest.raises(BfexportError):
        time_slots([], repeats=0, warmup=0)


def test_summarize_median_ignores_outliers():
    s = summarize([0.010, 0.011, 0.012, 0.500, 0.011])
    assert s["median_ms"] == pytest.approx(11.0)
    assert s["q1_ms"] == pytest.approx(11.0) and s["q3_ms"] == pytest.approx(12.0)
    assert s["runs"] == 5
    one = summarize([0.002])
    assert one["median_ms"] == one["q1_ms"] == one["q3_ms"] == pytest.approx(2.0)


def test_timing_loop_rotates_which_configuration_goes_first() -> None:
    calls: list[tuple[int, int]] = []
    ticks = iter(range(1000))
    ms = 1e3 * time_interleaved(lambda c, m: calls.append((c, m)), 3, 2, repeats=2, warmup=1,
                                sync=lambda: calls.append((-1, -1)), clock=lambda: next(ticks) * 1_000_000)
    warm, timed = calls[:6], calls[7:]
    assert warm == [(c, m) for c in range(3) for m in range(2)] and calls[6] == (-1, -1)
    assert timed[1::2] == [(-1, -1)] * 12  # every timed call is synced before the clock stops
    order = timed[::2]
    assert order == [((j + r + m) % 3, m) for r in range(2) for m in range(2) for j in range(3)]
    assert ms.shape == (2, 3, 2) and np.allclose(ms, 1.0)  # one tick per call


def test_summarize_reports_tail_percentiles_and_throughput() -> None:
    s = summarize([0.001 * i for i in range(1, 101)], batch=4)  # 1..100 ms
    assert s["p50_ms"] == pytest.approx(50.5) and s["median_ms"] == pytest.approx(50.5)
    assert s["p90_ms"] == pytest.approx(90.1) and s["p99_ms"] == pytest.approx(99.01)
    assert s["items_per_s"] == pytest.approx(4 * 100 / 5.05)  # 400 items in 5.05 s
