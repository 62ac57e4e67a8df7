"""Tiny shared helpers for bench scripts: time a callable, report median and p95 as Markdown.

Bench scripts run as ``python bench/<name>.py`` (this directory is then on ``sys.path``), so
they import this module as ``from _stats import ...``. Figures are printed, never asserted.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Figure:
    """One measured operation: per-run timings in seconds, and an optional target."""

    name: str
    seconds: Sequence[float]
    per: str = "op"
    target: float | None = None

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def p95(self) -> float:
        return percentile(self.seconds, 95)


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (no interpolation: the value was really observed)."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * pct // 100))  # ceil without floats drifting
    return ordered[int(rank) - 1]


def measure(
    fn: Callable[[], object],
    *,
    repeat: int = 30,
    number: int = 1,
    setup: Callable[[], object] | None = None,
) -> list[float]:
    """Run ``fn`` ``number`` times per run, ``repeat`` runs; seconds per call for each run.

    ``setup`` (untimed) runs before every run, e.g. to drop a cache.
    """
    if repeat < 1 or number < 1:
        raise ValueError("repeat and number must be >= 1")
    timings: list[float] = []
    for _ in range(repeat):
        if setup is not None:
            setup()
        start = time.perf_counter()
        for _ in range(number):
            fn()
        timings.append((time.perf_counter() - start) / number)
    return timings


async def timed(fn: Callable[[], Awaitable[object]], repeat: int) -> list[float]:
    """Await ``fn()`` ``repeat`` times; seconds per call for each run."""
    timings = []
    for _ in range(repeat):
        start = time.perf_counter()
        await fn()
        timings.append(time.perf_counter() - start)
    return timings


def format_duration(seconds: float) -> str:
    """Pick a readable unit: us below 1 ms, ms below 1 s, else s."""
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} us"
    if seconds < 1:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.2f} s"


def markdown_table(figures: Sequence[Figure]) -> str:
    """A Markdown table: operation, median, p95, target and whether the median meets it."""
    rows = [
        "| operation | median | p95 | target | meets target |",
        "|---|---:|---:|---:|:---:|",
    ]
    for fig in figures:
        target = "-" if fig.target is None else format_duration(fig.target)
        meets = "-" if fig.target is None else ("yes" if fig.median <= fig.target else "NO")
        rows.append(
            f"| {fig.name} (per {fig.per}) | {format_duration(fig.median)} "
            f"| {format_duration(fig.p95)} | {target} | {meets} |"
        )
    return "\n".join(rows)
