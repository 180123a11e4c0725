"""Self-check: proves settings → database → HTTP → ledger end to end, before any provider.

Pushes a fixed set of demo records to the self-check sandbox (`sandbox/selfcheck.py`) with
`PUT /items/{key}` (`X-Api-Key` auth, 201 created / 200 updated, 422 for a bad email). Only
records whose payload hash differs from `push_state` are sent, so a second run sends nothing
but the retry of the record that failed. Batches fan out concurrently under the shared limiter.
"""

from __future__ import annotations

import asyncio
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from shared.db import session_scope
from shared.http import HttpClient, ProviderError, provider_client
from shared.observability import get_logger, init_observability, report_run_failure
from shared.runs import (
    Counts,
    open_failure_keys,
    payload_hash,
    push_hashes,
    record_failure,
    resolve_failures,
    save_push_state,
    tracked_run,
)
from shared.settings import SelfcheckSettings, load_provider_settings, load_settings

PROVIDER = "selfcheck"
OPERATION = "upsert"
BAD_RECORD = 13  # this demo record has an email the sandbox rejects, to show per-record failure


def demo_records(count: int) -> list[dict[str, Any]]:
    """Deterministic demo records keyed `demo-001`…; one carries an invalid email."""
    return [
        {
            "key": f"demo-{n:03d}",
            "email": "not-an-email" if n == BAD_RECORD else f"user{n:03d}@example.com",
            "name": f"Demo User {n}",
        }
        for n in range(1, count + 1)
    ]


@task(retries=2, retry_delay_seconds=1, cache_policy=NO_CACHE)
async def push_batch(
    client: HttpClient, url: str, account: str, run_id: int, records: list[dict[str, Any]]
) -> Counts:
    """Upsert one batch; successes and failures are saved in one transaction."""
    counts = Counts()
    pushed: list[tuple[str, str | None, str]] = []
    failed: list[tuple[str, ProviderError]] = []
    for record in records:
        payload = {"email": record["email"], "name": record["name"]}
        try:
            response = await client.request("PUT", f"/items/{record['key']}", json_body=payload)
        except ProviderError as error:
            failed.append((record["key"], error))
            continue
        if response.status_code == 201:
            counts.created += 1
        else:
            counts.updated += 1
        pushed.append((record["key"], response.json().get("id"), payload_hash(payload)))
    with session_scope(url) as session:
        save_push_state(session, PROVIDER, account, pushed)
        resolve_failures(
            session,
            provider=PROVIDER,
            account=account,
            operation=OPERATION,
            record_keys=[key for key, _, _ in pushed],
        )
        for key, problem in failed:
            record_failure(
                session,
                provider=PROVIDER,
                account=account,
                record_key=key,
                operation=OPERATION,
                message=problem.message,
                status_code=problem.status,
                detail=problem.body,
                run_id=run_id,
            )
    counts.failed = len(failed)
    return counts


@flow(name="selfcheck-sync", on_failure=[report_run_failure], on_crashed=[report_run_failure])
async def selfcheck_sync(records: int = 40, batch_size: int = 10) -> dict[str, Any]:
    """Push the demo records that changed since the last run; return the run's summary row."""
    init_observability()
    settings = load_settings()
    provider = await load_provider_settings(SelfcheckSettings)
    assert provider.api_key is not None
    url, account = settings.database_url, provider.account
    async with tracked_run(url, PROVIDER, account, "incremental") as run:
        wanted = demo_records(records)
        with session_scope(url) as session:
            hashes = push_hashes(session, PROVIDER, account)
            retrying = open_failure_keys(
                session, provider=PROVIDER, account=account, operation=OPERATION
            )
            given_up = open_failure_keys(
                session, provider=PROVIDER, account=account, operation=OPERATION, permanent=True
            )
        changed = [
            r
            for r in wanted
            if r["key"] not in given_up
            and hashes.get(r["key"]) != payload_hash({"email": r["email"], "name": r["name"]})
        ]
        run.counts.records_read = len(wanted)
        run.counts.skipped = sum(1 for r in wanted if r["key"] in given_up)
        run.counts.unchanged = len(wanted) - len(changed) - run.counts.skipped
        get_logger().info(
            "%d of %d records changed (%d retried after failure)",
            len(changed),
            len(wanted),
            len(retrying),
        )
        client = provider_client(
            provider, settings, headers={"X-Api-Key": provider.api_key.get_secret_value()}
        )
        async with client:
            batches = [changed[i : i + batch_size] for i in range(0, len(changed), batch_size)]
            results = await asyncio.gather(
                *(push_batch(client, url, account, run.run_id, batch) for batch in batches)
            )
            run.requests = client.requests
        for counts in results:
            run.counts = run.counts + counts
    assert run.summary is not None
    return run.summary.row()


if __name__ == "__main__":
    print(asyncio.run(selfcheck_sync()))  # noqa: T201
