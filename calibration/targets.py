"""What a calibration aims for: a FLOP ratio or a measured latency, each with a tolerance band.

A target is a ceiling (the calibrated model must not cost more) and a band below it: the
search prefers configurations that spend at least `limit - tolerance`, because a budget the
user granted is accuracy the model can use. Both targets are small dataclasses that round-trip
through JSON, so calibration.json records exactly what was asked for.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, ClassVar

from bfexport.errors import BfexportError

PERCENTILES = (50, 90, 95, 99)


@dataclass(frozen=True)
class FlopsTarget:
    """Mean FLOPs over the data relative to the dense model (router included), e.g. 0.6.

    tolerance is absolute, in ratio units: the result lands in [ratio - tolerance, ratio].
    """

    ratio: float
    tolerance: float = 0.02
    kind: ClassVar[str] = "flops"

    def __post_init__(self) -> None:
        if isinstance(self.ratio, bool) or not isinstance(self.ratio, (int, float)) or not math.isfinite(self.ratio) \
                or self.ratio <= 0:
            raise BfexportError(f"FLOPs target must be a positive ratio of the dense model's cost, got {self.ratio!r}")
        _check_tolerance(self.tolerance)

    @property
    def limit(self) -> float:
        return float(self.ratio)

    @property
    def floor(self) -> float:
        return float(self.ratio) - float(self.tolerance)

    def describe(self) -> str:
        return f"FLOPs ratio <= {self.ratio:g} (band {self.tolerance:g})"

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "ratio": float(self.ratio), "tolerance": float(self.tolerance)}


@dataclass(frozen=True)
class LatencyTarget:
    """Latency in milliseconds per call at a percentile, measured on the chosen runtime.

    Give `ms`, or `fraction` of the all-heads latency measured in the same run (e.g. 0.8):
    a relative target survives a machine that is faster or busier than the day it was set.
    tolerance is relative: the predicted latency lands in [ms * (1 - tolerance), ms].
    """

    ms: float | None = None
    percentile: int = 50
    tolerance: float = 0.05
    fraction: float | None = None
    kind: ClassVar[str] = "latency"

    def __post_init__(self) -> None:
        if self.ms is None and self.fraction is None:  # both: a relative target resolved after profiling
            raise BfexportError("a latency target needs ms or a fraction (of the all-heads latency)")
        for name in ("ms", "fraction"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not math.isfinite(value) or value <= 0):
                raise BfexportError(f"latency target {name} must be a positive number, got {value!r}")
        if self.percentile not in PERCENTILES:
            choices = ", ".join(map(str, PERCENTILES))
            raise BfexportError(f"latency percentile must be one of {choices}, got {self.percentile!r}")
        _check_tolerance(self.tolerance)
        if self.tolerance >= 1:
            raise BfexportError(f"latency tolerance is a fraction of the target and must be below 1, "
                                f"got {self.tolerance!r}")

    def resolve(self, all_heads_ms: float) -> LatencyTarget:
        """The target in milliseconds, given the measured all-heads latency."""
        if self.ms is not None:
            return self
        assert self.fraction is not None  # __post_init__ requires ms or fraction
        return replace(self, ms=float(self.fraction) * float(all_heads_ms))

    @property
    def limit(self) -> float:
        if self.ms is None:
            raise BfexportError("relative latency target not resolved yet (needs the all-heads measurement)")
        return float(self.ms)

    @property
    def floor(self) -> float:
        return self.limit * (1.0 - float(self.tolerance))

    def describe(self) -> str:
        if self.ms is None:
            return f"p{self.percentile} latency <= {self.fraction:g} x all heads"
        return f"p{self.percentile} latency <= {self.ms:g} ms"

    def to_json(self) -> dict[str, Any]:
        out = {"kind": self.kind, "ms": None if self.ms is None else float(self.ms), "percentile": int(self.percentile),
               "tolerance": float(self.tolerance)}
        if self.fraction is not None:
            out["fraction_of_all_heads"] = float(self.fraction)
        return out


Target = FlopsTarget | LatencyTarget


def _check_tolerance(value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise BfexportError(f"target tolerance must be a non-negative number, got {value!r}")


def target_from_options(*, flops: float | None = None, latency_ms: float | None = None,
                        latency_fraction: float | None = None, percentile: int | None = None,
                        tolerance: float | None = None) -> Target:
    """The one target a command asked for (`bfexport calibrate`'s --target-* options): exactly one of
    `flops`, `latency_ms` or `latency_fraction`; None leaves percentile and tolerance at their defaults."""
    if sum(v is not None for v in (flops, latency_ms, latency_fraction)) != 1:
        raise BfexportError("give exactly one of --target-flops RATIO, --target-latency-ms MS or "
                            "--target-latency-fraction F")
    given: dict[str, Any] = {"tolerance": tolerance} if tolerance is not None else {}
    if flops is not None:
        if percentile is not None:
            raise BfexportError("--percentile applies to latency targets only")
        return FlopsTarget(flops, **given)
    if percentile is not None:
        given["percentile"] = percentile
    return LatencyTarget(latency_ms, fraction=latency_fraction, **given)


def target_from_json(data: dict[str, Any]) -> Target:
    """The inverse of `to_json`; unknown kinds are refused rather than guessed."""
    kind = data.get("kind") if isinstance(data, dict) else None
    if kind == "flops":
        return FlopsTarget(data["ratio"], data.get("tolerance", 0.02))
    if kind == "latency":
        return LatencyTarget(data.get("ms"), data.get("percentile", 50), data.get("tolerance", 0.05),
                             data.get("fraction_of_all_heads"))
    raise BfexportError(f"unknown calibration target {data!r}")
