"""One row of the benchmark table: cpworker's figure beside its baseline's, the ratio, the target.

Its own module so that every benchmark module can build its rows (tests/bench/__main__.py prints
them all in one table).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class Row:
    name: str
    ours: float
    unit: str
    baseline_name: str
    baseline: float
    higher_is_better: bool
    target: str = ""
    met: bool | None = None

    @property
    def ratio(self) -> float:
        if self.higher_is_better:
            return self.ours / self.baseline if self.baseline else float("inf")
        return self.baseline / self.ours if self.ours else float("inf")


def median(runs: int, measure: Callable[[], float]) -> float:
    return statistics.median(measure() for _ in range(runs))
