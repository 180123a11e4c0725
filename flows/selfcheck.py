"""Self-check: proves settings → database → HTTP → ledger end to end, before any provider.

Pushes a fixed set of demo records to the self-check sandbox (`sandbox/selfcheck.py`) with
`PUT /items/{key}` (`X-Api-Key` auth, 201 created / 200 updated, 422 for a bad email). Only
records whose payload hash differs from `push_state` are sent, so a second run sends nothing
but the retry of the record that failed. Batches fan out concurrently under the shared limiter.
"""

from __future__ import annotations

import asyncio
from typing import Any

from shared.db import session_scope
from shared.flowkit import fan_out, io_task, sync_flow
from shared.http import HttpClient, ProviderError, provider_client
from shared.observability import get_logger
from shared.runs import (
    Counts,
    RunSummary,
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


def payload(record: dict[str, Any]) -> dict[str, Any]:
    """What the sandbox receives for a record."""
    return {"email": record["email"], "name": record["name"]}


def save_batch(
    url: str,
    account: str,
    run_id: int,
    pushed: list[tuple[str, str | None, str]],
    failed: list[tuple[str, ProviderError]],
) -> None:
    """Push state, resolved and new failures of one batch, in one transaction."""
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


@io_task(retries=2, retry_delay_seconds=1)
async def push_batch(
    client: HttpClient, url: str, account: str, run_id: int, records: list[dict[str, Any]]
) -> Counts:
    """Upsert one batch; a record the provider rejects becomes a failure row, not an error."""
    counts = Counts()
    pushed: list[tuple[str, str | None, str]] = []
    failed: list[tuple[str, ProviderError]] = []
    for record in records:
        body = payload(record)
        try:
            response = await client.request(
                "PUT", f"/items/{record['key']}", json_body=body, parse_json=True
            )
        except ProviderError as error:
            failed.append((record["key"], error))
            continue
        if response.status_code == 201:
            counts.created += 1
        else:
            counts.updated += 1
        pushed.append((record["key"], response.json().get("id"), payload_hash(body)))
    # Database work runs off the event loop, so it never stalls the paced requests.
    await asyncio.to_thread(save_batch, url, account, run_id, pushed, failed)
    counts.failed = len(failed)
    return counts


def plan(
    url: str, account: str, wanted: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], int, int]:
    """Records to send (new, changed, or failed before), how many are skipped, how many retried."""
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
        if r["key"] not in given_up and hashes.get(r["key"]) != payload_hash(payload(r))
    ]
    skipped = sum(1 for r in wanted if r["key"] in given_up)
    return changed, skipped, len(retrying)


@sync_flow(name="selfcheck-sync")
async def selfcheck_sync(records: int = 40, batch_size: int = 10) -> RunSummary:
    """Push the demo records that changed since the last run; return the run's summary.

    Args:
        records: How many demo records make up the data set (`demo-001` …).
        batch_size: Records per pushed batch; batches run concurrently under the shared limiter.
    """
    settings = load_settings()
    provider = await load_provider_settings(SelfcheckSettings)
    assert provider.api_key is not None
    url, account = settings.database_url, provider.account
    async with tracked_run(url, PROVIDER, account, "incremental") as run:
        wanted = demo_records(records)
        changed, skipped, retrying = await asyncio.to_thread(plan, url, account, wanted)
        run.counts.records_read = len(wanted)
        run.counts.skipped = skipped
        run.counts.unchanged = len(wanted) - len(changed) - skipped
        get_logger().info(
            "%d of %d records changed (%d retried after failure)",
            len(changed),
            len(wanted),
            retrying,
        )
        client = provider_client(
            provider, settings, headers={"X-Api-Key": provider.api_key.get_secret_value()}
        )
        done = 0

        async def push_and_report(batch: list[dict[str, Any]]) -> None:
            nonlocal done
            counts: Counts = await push_batch(client, url, account, run.run_id, batch)
            # Counted as each batch lands, so a run that fails later still records these.
            run.counts = run.counts + counts
            done += len(batch)
            await run.progress(done, len(changed))

        batches = [changed[i : i + batch_size] for i in range(0, len(changed), batch_size)]
        try:
            async with client:
                await fan_out(batches, push_and_report)
        finally:
            run.requests = client.requests
    assert run.summary is not None
    return run.summary


if __name__ == "__main__":
    print(asyncio.run(selfcheck_sync()).row())  # noqa: T201
