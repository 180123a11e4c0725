"""Benchmark scenarios: each runs a real flow against a loopback sandbox and checks the result.

Provider issues add their scenarios here, or in `bench/<provider>.py` registered below. The
self-check ones measure the foundation itself: pacing at a rate cap, and fan-out overhead when
latency, not a rate, is the bound.
"""

from __future__ import annotations

import asyncio
import math
import os
import tempfile
import time
from typing import Any

from sqlmodel import select

from bench.activecampaign import SCENARIOS as ACTIVECAMPAIGN
from bench.brevo import SCENARIOS as BREVO
from bench.harness import BenchResult, Scenario, warm_prefect
from bench.magento import SCENARIOS as MAGENTO
from bench.mailchimp import SCENARIOS as MAILCHIMP
from bench.mailchimp_workers import SCENARIOS as MAILCHIMP_WORKERS
from bench.mailerlite import SCENARIOS as MAILERLITE
from flows.selfcheck import BAD_RECORD, demo_records, payload, selfcheck_sync
from sandbox.selfcheck import create_app
from sandbox.server import serve
from shared.db import session_scope
from shared.models import PushState, SyncFailure, SyncRun
from shared.runs import payload_hash

KEY = "bench-selfcheck-key-5e2a"


def _database_matches_sandbox(url: str, items: dict[str, dict[str, Any]], records: int) -> bool:
    """Database, sandbox and the demo data agree record by record; the ledger tells the same.

    Each record is compared as (remote id, payload hash); the bad record must be an open
    failure and nothing else; the run's ledger row must be complete with matching counts.
    """
    bad = f"demo-{BAD_RECORD:03d}"
    expected = {r["key"]: payload(r) for r in demo_records(records) if r["key"] != bad}
    with session_scope(url) as session:
        pushed = {
            p.record_key: (p.remote_id, p.payload_hash) for p in session.exec(select(PushState))
        }
        failures = {f.record_key: f.resolved_at for f in session.exec(select(SyncFailure))}
        runs = [(r.state, r.created, r.failed) for r in session.exec(select(SyncRun))]
    in_sandbox = {
        key: (item.get("id"), payload_hash({k: v for k, v in item.items() if k != "id"}))
        for key, item in items.items()
    }
    wanted = {key: (f"sc-{key}", payload_hash(body)) for key, body in expected.items()}
    bad_failures = {bad: None} if records >= BAD_RECORD else {}
    return (
        pushed == in_sandbox == wanted
        and failures == bad_failures
        and runs == [("completed", len(expected), len(bad_failures))]
    )


def selfcheck(
    name: str,
    *,
    records: int,
    batch_size: int,
    rate: float | None,
    in_flight: int,
    latency: float,
    jitter: float,
) -> BenchResult:
    """Push `records` demo records through the self-check flow and time it."""
    # The sandbox enforces the documented cap itself, so an over-eager client shows as 429s.
    app = create_app(KEY, per_second=int(rate) if rate else None, latency=latency, jitter=jitter)
    sandbox = app.state.sandbox
    with tempfile.TemporaryDirectory() as tmp, serve(app) as base_url:
        url = f"sqlite:///{tmp}/bench.db"
        os.environ.update(
            DATABASE_URL=url,
            SELFCHECK_BASE_URL=base_url,
            SELFCHECK_API_KEY=KEY,
            # No cap at all is spelled as a rate far above what loopback can reach.
            SELFCHECK_RATE_PER_SECOND=str(rate or 1_000_000),
            SELFCHECK_MAX_IN_FLIGHT=str(in_flight),
        )
        asyncio.run(warm_prefect())
        started = time.perf_counter()
        summary = asyncio.run(selfcheck_sync(records=records, batch_size=batch_size))
        wall = time.perf_counter() - started
        correct = _database_matches_sandbox(url, sandbox.items, records)
    requests = summary.requests
    # The least time the limits allow: requests ÷ rate, or latency rounds of `in_flight`.
    floor = requests / rate if rate else math.ceil(requests / in_flight) * latency
    return BenchResult(
        scenario=name,
        records=records,
        requests=requests,
        wall_s=wall,
        floor_s=floor,
        http_429=sum(1 for entry in sandbox.log if entry.status == 429),
        correct=correct,
        details={
            "batch_size": batch_size,
            "rate_per_second": rate,
            "max_in_flight": in_flight,
            "latency_ms": latency * 1000,
            "created": summary.counts.created,
            "failed": summary.counts.failed,
            "tasks": math.ceil(records / batch_size),
        },
    )


def task_overhead() -> BenchResult:
    """The marginal cost of one more task: the same records as 10 tasks, then as 400."""
    same = {"records": 400, "rate": None, "in_flight": 8, "latency": 0.005, "jitter": 0.0}
    few = selfcheck("task-overhead", batch_size=40, **same)  # type: ignore[arg-type]
    many = selfcheck("task-overhead", batch_size=1, **same)  # type: ignore[arg-type]
    extra_tasks = many.details["tasks"] - few.details["tasks"]
    many.details.update(
        wall_s_with_10_tasks=round(few.wall_s, 3),
        ms_per_extra_task=round(1000 * (many.wall_s - few.wall_s) / extra_tasks, 2),
    )
    many.correct = many.correct and few.correct
    many.http_429 += few.http_429
    return many


SCENARIOS = {
    s.name: s
    for s in (
        Scenario(
            "selfcheck-rate",
            "600 records at a 100 req/s cap, 5 ms latency: is the cap used in full?",
            lambda: selfcheck(
                "selfcheck-rate",
                records=600,
                batch_size=20,
                rate=100.0,
                in_flight=8,
                latency=0.005,
                jitter=0.002,
            ),
        ),
        Scenario(
            "selfcheck-fanout",
            "400 records, no rate cap, 8 in flight, 50 ms latency: task fan-out overhead",
            lambda: selfcheck(
                "selfcheck-fanout",
                records=400,
                batch_size=10,
                rate=None,
                in_flight=8,
                latency=0.05,
                jitter=0.0,
            ),
        ),
        Scenario(
            "task-overhead",
            "400 records as 10 tasks, then as 400: milliseconds per extra Prefect task",
            task_overhead,
        ),
        *ACTIVECAMPAIGN,
        *MAGENTO,
        *MAILERLITE,
        *BREVO,
        *MAILCHIMP,
    )
}

# Run only when named (`python -m bench run mailchimp-workers`), never by `--all`: they need
# PostgreSQL and a Prefect server with workers, and take about 16 minutes.
ON_REQUEST = {s.name: s for s in MAILCHIMP_WORKERS}
