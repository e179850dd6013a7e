"""The budget controller's rule without a server: a fake clock and fake latencies drive it down
the ladder under load and back up when load falls, with hysteresis and dwell times, per instance."""

from __future__ import annotations

import pytest

from converters.triton.controller import BatchClock, BudgetController, ControllerSettings

TARGET = 100.0


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def controller(n_rungs: int = 4, **settings: float) -> tuple[BudgetController, FakeClock]:
    clock = FakeClock()
    return BudgetController(ControllerSettings(target_p99_ms=TARGET, n_rungs=n_rungs, **settings), clock), clock


def serve(c: BudgetController, clock: FakeClock, latency_ms: float, *, waiting: int = 1, batches: int = 1,
          step_s: float = 0.05) -> list[int]:
    """`batches` batches of `waiting` requests, each served in `latency_ms`; the rungs chosen."""
    rungs = []
    for _ in range(batches):
        rung = c.choose(waiting)
        clock.advance(step_s)
        c.record(latency_ms, rung, count=waiting, service_ms=latency_ms * waiting)
        rungs.append(rung)
    return rungs


def test_low_load_stays_on_the_top_rung() -> None:
    c, clock = controller()
    assert set(serve(c, clock, 20.0, batches=200)) == {0}
    assert c.counters.per_rung == [200, 0, 0, 0] and c.counters.moves_down == c.counters.moves_up == 0


def test_a_queue_steps_down_one_rung_per_dwell_and_stops_at_the_cheapest() -> None:
    c, clock = controller(dwell_down_s=0.2)
    rungs = serve(c, clock, 30.0, waiting=6, batches=40, step_s=0.05)
    assert rungs[0] == 1  # the first full batch moves at once
    first_at = {r: rungs.index(r) for r in range(1, 4)}
    assert first_at[2] - first_at[1] >= 4 and first_at[3] - first_at[2] >= 4  # 0.2 s dwell at 0.05 s per batch
    assert rungs[-1] == 3 and max(rungs) == 3  # never past the cheapest rung
    assert c.counters.moves_down == 3


def test_high_latency_alone_steps_down() -> None:
    c, clock = controller()
    rungs = serve(c, clock, 0.9 * TARGET, waiting=1, batches=12)  # above down_at (0.8) once 8 samples are in
    assert rungs[:8] == [0] * 8 and rungs[-1] >= 1


def test_two_latencies_over_the_target_step_down_before_the_p99_fills() -> None:
    c, clock = controller()
    assert serve(c, clock, 1.5 * TARGET, batches=3) == [0, 0, 1]


def test_hysteresis_between_up_at_and_down_at_holds_the_rung() -> None:
    c, clock = controller()
    serve(c, clock, 30.0, waiting=6, batches=1)
    assert c.rung == 1
    # 0.65 x target: over up_at (0.5), under down_at (0.8): neither direction, for a long time
    assert set(serve(c, clock, 0.65 * TARGET, batches=400, step_s=0.1)) == {1}  # 65% busy: under down_utilization


def test_steps_up_only_after_the_up_dwell_when_load_falls() -> None:
    c, clock = controller(dwell_up_s=1.0)
    serve(c, clock, 30.0, waiting=6, batches=1)
    assert c.rung == 1
    rungs = serve(c, clock, 10.0, waiting=1, batches=30, step_s=0.05)
    up = rungs.index(0)
    assert up >= 19 and set(rungs[up:]) == {0}  # at least 1 s (20 batches of 0.05 s) after the step down
    assert c.counters.moves_up == 1


def test_an_idle_window_counts_as_cool() -> None:
    c, clock = controller(dwell_up_s=1.0, window_s=2.0)
    serve(c, clock, 1.5 * TARGET, batches=3)
    assert c.rung == 1
    clock.advance(5.0)  # nothing served: the slow latencies are forgotten
    assert c.choose(1) == 0


def test_latencies_of_the_rung_before_a_move_do_not_judge_the_new_one() -> None:
    c, clock = controller()
    serve(c, clock, 0.95 * TARGET, batches=8)
    first = c.choose(1)
    assert first == 1
    c.record(0.95 * TARGET, 0)  # a slow batch that ran at the old rung, finishing after the move
    clock.advance(0.5)
    assert c.choose(1) == 1 and c.counters.per_rung[0] == 9


def test_each_instance_decides_alone() -> None:
    busy, clock = controller()
    idle = BudgetController(busy.settings, clock)
    serve(busy, clock, 30.0, waiting=8, batches=20)
    assert busy.rung == 3 and idle.choose(1) == 0 and idle.counters.per_rung == [0, 0, 0, 0]


def test_counters_and_snapshot_say_what_happened() -> None:
    c, clock = controller()
    serve(c, clock, 30.0, waiting=6, batches=1)
    c.record_own_budget(3)
    snap = c.snapshot()
    assert snap["rung"] == 1 and snap["own_budget"] == 3 and snap["per_rung"] == [0, 6, 0, 0]
    assert snap["moves_down"] == 1 and snap["decisions"] == [(1000.0, 1)] and snap["batches"] == 1


@pytest.mark.parametrize("bad, message", [({"up_at": 0.9}, "hysteresis"), ({"queue_up": 4}, "queue_up"),
                                          ({"target_p99_ms": 0}, "target_p99_ms"), ({"n_rungs": 0}, "n_rungs"),
                                          ({"dwell_up_s": -1}, "dwell_up_s"),
                                          ({"queue_down_at": -0.1}, "queue_down_at")])
def test_bad_settings_are_refused(bad: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ControllerSettings(**{"target_p99_ms": TARGET, "n_rungs": 3, **bad})
    with pytest.raises(ValueError, match="unknown controller settings: speed"):
        ControllerSettings.from_dict({"target_p99_ms": TARGET, "n_rungs": 3, "speed": 1})


def test_batch_clock_adds_the_previous_batch_when_the_instance_was_busy() -> None:
    clock = FakeClock()
    bc = BatchClock(clock)
    bc.start()
    clock.advance(0.010)
    assert bc.stop() == pytest.approx(10.0)  # idle before: its own service time
    bc.start()  # straight after: busy
    clock.advance(0.020)
    assert bc.stop() == pytest.approx(30.0)
    clock.advance(1.0)
    bc.start()
    clock.advance(0.005)
    assert bc.stop() == pytest.approx(5.0)


def test_steps_up_only_when_the_slower_rung_above_is_predicted_to_stay_cool() -> None:
    c, clock = controller(dwell_up_s=0.0)
    c.record(10.0, 0, service_ms=40.0)  # the top rung served a request in 40 ms
    assert c.choose(6) == 1  # a burst: down to rung 1, which serves the 6 in 60 ms (10 ms a request)
    c.record(30.0, 1, count=6, service_ms=60.0)
    for _ in range(20):  # rung 1 serves in 10 ms: the top rung is 4x slower
        c.choose(1)
        clock.advance(0.05)
        c.record(20.0, 1, service_ms=10.0)
    assert c.rung == 1  # 20 ms x 4 = 80 ms, over up_at (0.5) x 100 ms: stays down
    for _ in range(5):
        c.choose(1)
        clock.advance(0.05)
        c.record(10.0, 1, service_ms=10.0)
    clock.advance(2.5)  # the 20 ms latencies leave the window
    c.record(10.0, 1, service_ms=10.0)
    assert c.choose(1) == 0  # 10 ms x 4 = 40 ms < 50 ms: up


def test_steps_up_only_when_the_rung_above_could_keep_up_with_the_arrivals() -> None:
    c, clock = controller(dwell_up_s=0.0, up_utilization=0.6)
    c.record(5.0, 0, service_ms=20.0)  # the top rung: 20 ms a request, so at most 50 requests/s
    assert c.choose(6) == 1
    for _ in range(80):  # 40 requests/s, one at a time, served fast at rung 1: the top rung would be 80% busy
        clock.advance(0.025)
        c.record(4.0, 1, service_ms=4.0)
        assert c.choose(1) == 1
    for _ in range(30):  # arrivals slow to 10 requests/s: 20% busy
        clock.advance(0.1)
        c.record(4.0, 1, service_ms=4.0)
        if c.choose(1) == 0:
            break
    assert c.rung == 0 and c.counters.moves_up == 1


def test_a_rung_busier_than_down_utilization_steps_down_before_its_latencies_rise() -> None:
    c, clock = controller(dwell_down_s=0.0, window_s=1.0)
    rungs = []
    for _ in range(120):  # one request every 15 ms, each needing 19.8 ms: 1.32 x what the rung can serve
        rungs.append(c.choose(1))
        clock.advance(0.015)
        c.record(19.8, rungs[-1], service_ms=19.8 if rungs[-1] == 0 else 5.0)
    assert 19.8 < 0.8 * TARGET  # no latency rule fired (nor the queue one): the utilisation did
    first = rungs.index(1)
    assert 66 <= first <= 69  # once the instance has served for a whole window (1 s at 15 ms a request)
    assert set(rungs[first:]) == {1}  # rung 1 is 33% busy, and the top rung would be 132%: it stays


def test_a_first_request_does_not_read_as_overload() -> None:
    c, clock = controller(dwell_down_s=0.0)
    c.record(5.0, 0, service_ms=50.0)  # one request: over a vanishing span any rate looks huge
    clock.advance(0.001)
    assert c.choose(1) == 0


def test_up_utilization_must_stay_below_down_utilization() -> None:
    with pytest.raises(ValueError, match="down_utilization"):
        ControllerSettings(target_p99_ms=1.0, n_rungs=2, up_utilization=0.9, down_utilization=0.9)


def test_a_queue_the_target_absorbs_keeps_the_rung() -> None:
    c, clock = controller()
    c.record(5.0, 0, service_ms=5.0)  # the top rung serves a request in 5 ms
    for _ in range(20):  # bursts of 6, each batch served in 30 ms: under 0.8 x 100 ms
        assert c.choose(6) == 0
        clock.advance(0.1)
        c.record(30.0, 0, count=6, service_ms=30.0)
    slow, clock = controller()
    slow.record(20.0, 0, service_ms=20.0)
    assert slow.choose(6) == 1  # 6 x 20 ms: 120 ms, over it
    fresh, clock = controller()
    assert fresh.choose(6) == 1  # the service time unknown yet: the count alone decides
    counting, clock = controller(queue_down_at=0)
    counting.record(5.0, 0, service_ms=5.0)
    assert counting.choose(6) == 1  # queue_down_at 0: any queue of queue_down counts


def test_one_stall_among_cool_latencies_does_not_hold_the_rung_down() -> None:
    c, clock = controller(dwell_up_s=1.0)
    serve(c, clock, 30.0, waiting=6, batches=1)
    assert c.rung == 1
    serve(c, clock, 10.0, batches=10, step_s=0.05)
    serve(c, clock, 60.0, batches=1, step_s=0.05)  # one stall: 60 ms, over up_at (0.5) x 100 ms
    rungs = serve(c, clock, 10.0, batches=20, step_s=0.05)
    assert rungs[-1] == 0 and c.counters.moves_up == 1  # the window's p95 is still 10 ms


def test_one_slow_batch_does_not_inflate_a_rungs_service_time() -> None:
    c, _ = controller()
    for _ in range(10):
        c.record(4.0, 0, service_ms=4.0)
    c.record(60.0, 0, service_ms=60.0)  # a stall: the median of the last batches stays 4 ms
    assert c.service_ms[0] == 4.0


def test_a_step_up_undone_within_a_window_doubles_the_wait_before_the_next() -> None:
    c, clock = controller(dwell_down_s=0.0, dwell_up_s=1.0, max_dwell_up_s=4.0, window_s=2.0)
    c.record(20.0, 0, service_ms=20.0)  # the top rung: 20 ms a request, so a burst of 6 takes it 120 ms
    ups, burst = [], True
    for _ in range(400):  # 20 s: one request per 50 ms at rung 1, and a burst whenever the top rung serves
        before = c.rung
        rung = c.choose(6 if burst else 1)
        if rung < before:
            ups.append(clock.now)
        clock.advance(0.05)
        count = 6 if burst else 1
        c.record(10.0, rung, count=count, service_ms=(20.0 if rung == 0 else 5.0) * count)
        burst = rung == 0
    gaps = [b - a for a, b in zip(ups, ups[1:], strict=False)]
    assert len(gaps) >= 3 and [round(g) for g in gaps[:3]] == [2, 4, 4]  # 2 s, 4 s, then the 4 s cap
    assert c.up_dwell_s == 4.0
    for _ in range(160):  # 8 s without a burst: up after at most 4 s, and that step up holds for a window
        rung = c.choose(1)
        clock.advance(0.05)
        c.record(10.0, rung, service_ms=20.0 if rung == 0 else 5.0)
    assert c.rung == 0 and c.up_dwell_s == 1.0
