"""Percentiles for benchmarks and the few tests that print latency figures: one definition everywhere
(nearest rank: the smallest sample with at least p % of the samples at or below it)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence


def pct(values: Sequence[float], p: float) -> float:
    """The p-th percentile (0 < p <= 100) by nearest rank; nan for no samples."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered), max(1, math.ceil(p / 100 * len(ordered)))) - 1]


def spread(values: Sequence[float], *, scale: float = 1.0, digits: int = 2) -> dict[str, float]:
    """{"p50", "p99", "max"} of values times scale, rounded: the shape BENCHMARKS.md quotes."""
    if not values:
        return {}
    return {"p50": round(statistics.median(values) * scale, digits), "p99": round(pct(values, 99) * scale, digits),
            "max": round(max(values) * scale, digits)}
