"""What every benchmark scenario shares: the result shape, peak memory, the report, the file.

A scenario runs a real flow against a loopback sandbox with documented limits and chosen
latency, then checks the database against the sandbox. `floor_s` is the least time the
provider's limits allow for the requests made (requests ÷ allowed rate), or the latency-bound
minimum where there is no rate limit; `ratio = wall_s / floor_s`.
"""

from __future__ import annotations

import json
import os
import re
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
STARTUP_SECONDS = 120  # a sandbox generates its account before it listens (seconds for 100k)


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
    def ratio(self) -> float | None:
        """None when there is no floor (a run that needs no request): JSON null."""
        return round(self.wall_s / self.floor_s, 3) if self.floor_s > 0 else None

    def line(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "records": self.records,
            "requests": self.requests,
            "wall_s": round(self.wall_s, 3),
            "floor_s": round(self.floor_s, 3),
            "ratio": self.ratio,
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


# ---- a sandbox in its own process -----------------------------------------------------------


@dataclass
class SandboxProcess:
    """`syncflows sandbox <provider>` running as a child process."""

    process: subprocess.Popen[bytes]
    base_url: str
    stats_file: Path

    def stop(self) -> dict[str, Any]:
        """SIGTERM, wait, and read the request counts it wrote on the way out."""
        self.process.terminate()
        self.process.wait(timeout=30)
        stats: dict[str, Any] = json.loads(self.stats_file.read_text())
        return stats


@contextmanager
def serve_in_process(folder: Path, provider: str, *options: str) -> Iterator[SandboxProcess]:
    """Serve `provider`'s sandbox (CLI `options`) from a child process until `stop()`, so the
    flow's peak memory is measured alone; killed if still up when the block ends."""
    stats, out, err = (folder / name for name in ("sandbox.json", "sandbox.out", "sandbox.err"))
    command = [
        *(sys.executable, "-m", "shared.cli", "sandbox", provider, "--port", "0"),
        *options,
        *("--stats-file", str(stats)),
    ]
    env = {**os.environ, "SYNCFLOWS_ENV_FILE": os.devnull}
    # Files, not pipes: uvicorn logs every request, and a pipe nobody reads fills and stalls it.
    with out.open("wb") as stdout, err.open("wb") as stderr:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=stdout, stderr=stderr)
    try:
        yield SandboxProcess(process, _base_url(process, out, err), stats)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _base_url(process: subprocess.Popen[bytes], out: Path, err: Path) -> str:
    """The URL in the sandbox's first line ("… listening on http://127.0.0.1:PORT")."""
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline and process.poll() is None:
        with out.open() as lines:
            first = lines.readline()
        if first.endswith("\n") and (found := re.search(r"listening on (http://\S+)", first)):
            return found.group(1)
        time.sleep(0.1)
    raise RuntimeError(f"the sandbox did not start:\n{err.read_text()[-2000:]}")
