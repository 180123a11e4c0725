"""What every benchmark scenario shares: the result shape, peak memory, the report, the file.

A scenario runs a real flow against a loopback sandbox with documented limits and chosen
latency, then checks the database against the sandbox. `floor_s` is the least time the
provider's limits allow for the requests made (requests ÷ allowed rate), or the latency-bound
minimum where there is no rate limit; `ratio = wall_s / floor_s`.
"""

from __future__ import annotations

import json
import resource
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass
class BenchResult:
    """One scenario's figures; the JSON line is this minus `details`."""

    scenario: str
    records: int
    requests: int
    wall_s: float
    floor_s: float
    http_429: int
    correct: bool
    peak_rss_mb: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        return self.wall_s / self.floor_s if self.floor_s > 0 else float("inf")

    def line(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "records": self.records,
            "requests": self.requests,
            "wall_s": round(self.wall_s, 3),
            "floor_s": round(self.floor_s, 3),
            "ratio": round(self.ratio, 3),
            "http_429": self.http_429,
            "peak_rss_mb": round(self.peak_rss_mb, 1),
            "correct": self.correct,
        }


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    run: Callable[[], BenchResult]


async def warm_prefect() -> None:
    """Start Prefect's ephemeral API before the clock runs (it is not part of a sync)."""
    from prefect import get_client

    async with get_client() as client:
        await client.api_healthcheck()


def peak_rss_mb() -> float:
    """This process's peak resident memory (Linux reports kilobytes)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def report(result: BenchResult) -> str:
    """The human table, then the JSON line (always the last line printed)."""
    rows = {**result.line(), **result.details}
    width = max(len(k) for k in rows)
    table = "\n".join(f"{key.ljust(width)}  {value}" for key, value in rows.items())
    return f"{table}\n{json.dumps(result.line())}"


def save(result: BenchResult) -> Path:
    """Write bench/results/<scenario>.json (details included)."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{result.scenario}.json"
    path.write_text(json.dumps({**result.line(), "details": result.details}, indent=2) + "\n")
    return path
