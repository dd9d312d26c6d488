"""What the benchmark measures: the scenario grid, the two modes, and one measured cell."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

CONCURRENCY = 16
LATENCIES_S = (0.0, 0.020, 0.100)
BATCHES = (10, 100, 1000)
HEADLINE = (0.050, 100)
RSS_THREADS, RSS_UPDATES_PER_THREAD = 2500, 4


@dataclass(frozen=True)
class Mode:
    name: str
    repeats: int  # timed runs per contender and scenario (median reported)
    budget_s: float  # ...but no further runs once a contender has spent this long on a scenario
    sequential_limit_s: float  # skip a sequential contender when batch x latency exceeds this
    cold_runs: int


QUICK = Mode("quick", repeats=3, budget_s=3.0, sequential_limit_s=5.0, cold_runs=3)
FULL = Mode("full", repeats=5, budget_s=8.0, sequential_limit_s=1e9, cold_runs=5)


@dataclass
class Cell:
    """One contender on one scenario."""

    contender: str
    latency_s: float
    batch: int
    samples: list[float] = field(default_factory=list)
    max_in_flight: int = 0
    skipped: str | None = None
    estimate_s: float | None = None  # for a skipped sequential run: extrapolated from the same latency

    @property
    def median_s(self) -> float | None:
        return statistics.median(self.samples) if self.samples else None

    @property
    def value_s(self) -> float | None:
        return self.median_s if self.samples else self.estimate_s
