"""Arrival-time analysis for limit tests, and the figures printed at the end of the run."""

from __future__ import annotations

import bisect
from dataclasses import dataclass

MEASUREMENTS: list[str] = []  # printed by conftest's terminal summary


@dataclass(frozen=True)
class RateReport:
    requests: int
    rate: float  # mean starts per second between the first and the last arrival
    max_window: int  # most arrivals in any rolling 1-second window

    def __str__(self) -> str:
        return f"{self.requests} requests, {self.rate:.2f} req/s, max {self.max_window} in any 1 s"


def analyse(arrivals: list[float]) -> RateReport:
    """Mean rate and the worst rolling one-second window of sorted arrival times."""
    times = sorted(arrivals)
    if len(times) < 2:
        return RateReport(len(times), 0.0, len(times))
    worst = max(bisect.bisect_left(times, t + 1.0) - i for i, t in enumerate(times))
    return RateReport(len(times), (len(times) - 1) / (times[-1] - times[0]), worst)
