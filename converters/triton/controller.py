"""The load-adaptive budget controller: which rung of a ladder the next batch runs at, so that the
served p99 latency stays under a target.

Pure Python with the clock injected (tests drive it with a fake clock and fake latencies). It is
also copied as is, as budget_controller.py, beside the controller model's model.py in a deployed
repository, so it imports nothing outside the standard library. One `BudgetController` per
Triton model instance: each instance has its own queue and its own latencies, so each decides
for itself.

The rule, evaluated before each batch:
- hot (step down one rung, toward the cheapest): at least `queue_down` requests arrived together
  (Triton's dynamic batcher hands an instance what queued while it was busy, so the batch size
  is the queue length) and, once this rung's per-request service time is known, they would take
  it more than `queue_down_at` (0.8) x target to serve (a queue a loose target absorbs is no
  reason to give up heads); or the recent p99 exceeds `down_at` x target, or the last two latencies
  both exceed the target, or the recent request rate times this rung's per-request service time
  (its utilisation) exceeds `down_utilization` (1.2): a rung that cannot keep up will build a
  queue, so it steps down before the latencies show it. Above 1 because the estimate overstates
  the load: with a 0.95 limit the controller served rung 1 for 97% of the requests at half the
  full model's capacity in the quick load test (the service time an instance measures includes
  the wait in the classifier's own queue);
- cool (step up one rung, toward the full model): at most `queue_up` requests together and the
  recent p95 latency, scaled by how much slower the rung above served a request when it last ran
  (learned online, per instance), under `up_at` x target (an idle window counts as cool; p95, so
  one stall of a shared machine does not pin the rung down), and
  the recent request rate times the rung above's service time (the utilisation it would run
  at) under `up_utilization` (0.8), since a rung that cannot keep up with the arrivals builds a queue
  (a rung steps down for its own utilisation only once the instance has served for a whole
  window, so a first burst, which the queue rule handles, does not read as a rate);
- hysteresis: down_at > up_at, and a move needs `dwell_down_s` / `dwell_up_s` since the last
  one (stepping up waits longer); a step up that a step down undoes within a window doubles the
  wait before the next one (up to `max_dwell_up_s`; back to `dwell_up_s` once a step up holds for
  a window), so a load the rung above cannot carry stops drawing the controller up every second;
  only latencies recorded since the last move count, so a rung is judged on its own latencies.
"""

from __future__ import annotations

import math
import statistics
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

SERVICE_SAMPLES = 32  # a rung's service time is the median per-request time of its last 32 batches: one stall
# of a shared machine would otherwise inflate the estimate of a rung the controller then stops serving, and
# a stale, inflated estimate of the rung above keeps the utilisation check from ever letting it step back up


@dataclass(frozen=True)
class ControllerSettings:
    """How the controller reacts; every field has a default but the target and the rung count."""

    target_p99_ms: float
    n_rungs: int
    window_s: float = 2.0  # latencies older than this are forgotten
    min_samples: int = 8  # latencies needed before their p99 counts
    down_at: float = 0.8  # step down when the recent p99 exceeds this fraction of the target
    up_at: float = 0.5  # step up when the recent p95 is under this fraction of the target
    queue_down: int = 4  # ... or when this many requests arrive in one batch
    queue_down_at: float = 0.8  # ... that this rung would take over this fraction of the target to serve (0: any)
    queue_up: int = 1  # step up only when at most this many arrive together
    dwell_down_s: float = 0.2  # least time between a move and a step down
    dwell_up_s: float = 1.0  # least time between a move and a step up
    max_dwell_up_s: float = 8.0  # ... doubled after each step up undone within a window, up to this
    up_utilization: float = 0.8  # step up only if the rung above would be busy less than this fraction of the time
    down_utilization: float = 1.2  # step down when this rung would need more than this fraction of the time

    def __post_init__(self) -> None:
        for name in ("target_p99_ms", "window_s", "down_at", "up_at", "up_utilization", "down_utilization"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or value <= 0:
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        for name in ("n_rungs", "min_samples", "queue_down", "queue_up"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < (1 if name != "queue_up" else 0):
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name in ("dwell_down_s", "dwell_up_s", "max_dwell_up_s", "queue_down_at"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise ValueError(f"{name} must be a number >= 0, got {value!r}")
        if self.max_dwell_up_s < self.dwell_up_s:
            raise ValueError(f"max_dwell_up_s ({self.max_dwell_up_s}) must be at least dwell_up_s ({self.dwell_up_s})")
        if self.up_at >= self.down_at:
            raise ValueError(f"up_at ({self.up_at}) must be below down_at ({self.down_at}): that gap is the "
                             "hysteresis that keeps the rung from flapping")
        if self.up_utilization >= self.down_utilization:
            raise ValueError(f"up_utilization ({self.up_utilization}) must be below down_utilization "
                             f"({self.down_utilization})")
        if self.queue_up >= self.queue_down:
            raise ValueError(f"queue_up ({self.queue_up}) must be below queue_down ({self.queue_down})")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ControllerSettings:
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown controller settings: {', '.join(unknown)}")
        return cls(**data)


@dataclass
class Counters:
    """What the controller did: requests served per rung, own-budget requests, moves."""

    per_rung: list[int]
    own_budget: int = 0
    batches: int = 0
    moves_down: int = 0
    moves_up: int = 0
    decisions: list[tuple[float, int]] = field(default_factory=list)  # (time, new rung), the last 64 moves


class BudgetController:
    """Chooses the rung per batch (0 = the top, the full model) and learns from the latencies fed back.

    Example:
        c = BudgetController(ControllerSettings(target_p99_ms=50, n_rungs=4))
        rung = c.choose(waiting=len(requests))
        ... serve the batch at ladder[rung] ...
        c.record(latency_ms, rung, count=len(requests))
    """

    def __init__(self, settings: ControllerSettings, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings, self.clock = settings, clock
        self.rung = 0
        self.last_move = -math.inf
        self.up_dwell_s = settings.dwell_up_s  # the wait before the next step up (backs off, see the module doc)
        self._last_up: float | None = None  # when the last step up happened, until it holds for a window
        self._recent: deque[tuple[float, float]] = deque()  # (time, latency ms) since the last move
        self._served: deque[tuple[float, int]] = deque()  # (time, requests) in the window, across moves
        self._first_served: float | None = None
        self.counters = Counters(per_rung=[0] * settings.n_rungs)
        self._services: list[deque[float]] = [deque(maxlen=SERVICE_SAMPLES) for _ in range(settings.n_rungs)]
        self.service_ms: list[float | None] = [None] * settings.n_rungs  # per request, median of the last batches

    def choose(self, waiting: int) -> int:
        """The rung for a batch of `waiting` requests (moves at most one rung per call)."""
        s, now = self.settings, self.clock()
        self._forget(now)
        latencies = [ms for _, ms in self._recent]
        since = now - self.last_move
        service = self.service_ms[self.rung]
        queued = waiting >= s.queue_down and (service is None or waiting * service > s.queue_down_at * s.target_p99_ms)
        hot = queued or (len(latencies) >= s.min_samples and _percentile(latencies, 0.99) > s.down_at *
                         s.target_p99_ms) or (len(latencies) >= 2 and min(latencies[-2:]) > s.target_p99_ms) \
            or self._utilization(self.rung, full_window=True) > s.down_utilization
        cool = waiting <= s.queue_up \
            and (not latencies or _percentile(latencies, 0.95) * self._slowdown_above() < s.up_at * s.target_p99_ms) \
            and (self.rung == 0 or self._utilization(self.rung - 1) < s.up_utilization)
        if self._last_up is not None and now - self._last_up >= s.window_s:  # the last step up held
            self.up_dwell_s, self._last_up = s.dwell_up_s, None
        if hot and self.rung < s.n_rungs - 1 and since >= s.dwell_down_s:
            if self._last_up is not None:  # a step up undone within a window: wait longer before the next
                self.up_dwell_s, self._last_up = min(2 * self.up_dwell_s, s.max_dwell_up_s), None
            self._move(now, self.rung + 1)
            self.counters.moves_down += 1
        elif cool and not hot and self.rung > 0 and since >= self.up_dwell_s:
            self._move(now, self.rung - 1)
            self._last_up = now
            self.counters.moves_up += 1
        self.counters.batches += 1
        return self.rung

    def record(self, latency_ms: float, rung: int, count: int = 1, service_ms: float | None = None) -> None:
        """Feed back a served batch of `count` requests: its latency (ms), the rung it ran at and,
        when known, the time the batch took to serve; latencies of an earlier rung than the current
        one are counted but not judged."""
        now = self.clock()
        self._served.append((now, count))
        if self._first_served is None:
            self._first_served = now
        if 0 <= rung < self.settings.n_rungs:
            self.counters.per_rung[rung] += count
            if service_ms is not None and count > 0:
                self._services[rung].append(service_ms / count)
                self.service_ms[rung] = statistics.median(self._services[rung])
        if rung == self.rung:
            self._recent.append((self.clock(), float(latency_ms)))

    def record_own_budget(self, count: int = 1) -> None:
        """Requests that carried their own budget: served with it, not counted on a rung."""
        self.counters.own_budget += count

    def snapshot(self) -> dict[str, Any]:
        """The counters and the state, for the log."""
        out = asdict(self.counters)
        out.update(rung=self.rung, recent=len(self._recent), up_dwell_s=self.up_dwell_s,
                   service_ms=[None if v is None else round(v, 3) for v in self.service_ms])
        out["decisions"] = out["decisions"][-8:]
        return out

    def _slowdown_above(self) -> float:
        """How much slower the rung above served a request than this one (at least 1); infinite while
        this rung has served nothing yet, so no latency of it counts as cool before it is known."""
        if self.rung == 0:
            return 1.0
        above, here = self.service_ms[self.rung - 1], self.service_ms[self.rung]
        if here is None or here <= 0:
            return math.inf
        return max(1.0, above / here) if above is not None else 1.0

    def _utilization(self, rung: int, *, full_window: bool = False) -> float:
        """The fraction of the time `rung` would be busy at the recent request rate; 0 when unknown
        (no service time for it yet or, with full_window, the instance younger than the window)."""
        service = self.service_ms[rung]
        if service is None or self._first_served is None or \
                (full_window and self.clock() - self._first_served < self.settings.window_s):
            return 0.0
        served = sum(count for _, count in self._served)
        span = min(self.settings.window_s, self.clock() - self._first_served)  # shorter while the instance is young
        rate = served / max(span, 1e-3)  # requests per second
        return rate * service / 1e3

    def _move(self, now: float, rung: int) -> None:
        self.rung, self.last_move = rung, now
        self._recent.clear()
        self.counters.decisions = [*self.counters.decisions[-63:], (now, rung)]

    def _forget(self, now: float) -> None:
        while self._recent and self._recent[0][0] < now - self.settings.window_s:
            self._recent.popleft()
        while self._served and self._served[0][0] < now - self.settings.window_s:
            self._served.popleft()


def _percentile(values: list[float], q: float) -> float:
    """The q-quantile (0.99: the p99), linear between order statistics (numpy's default)."""
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


class BatchClock:
    """Estimates the latency of the oldest request of each batch an instance serves: its own
    service time, plus the previous batch's when the instance was busy (it went straight from one
    batch to the next, so the oldest request queued while the previous batch ran)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, busy_gap_s: float = 0.002) -> None:
        self.clock, self.busy_gap_s = clock, busy_gap_s
        self._previous_end = -math.inf
        self._previous_s = 0.0
        self._start = 0.0
        self.service_ms = 0.0  # the last batch's own service time

    def start(self) -> None:
        self._start = self.clock()

    def stop(self) -> float:
        """The estimated latency (ms) of the batch's oldest request."""
        end = self.clock()
        service = end - self._start
        busy = self._start - self._previous_end <= self.busy_gap_s
        latency = service + (self._previous_s if busy else 0.0)
        self._previous_end, self._previous_s = end, service
        self.service_ms = 1e3 * service
        return 1e3 * latency
