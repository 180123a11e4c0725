"""Run ledger and per-record failures, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from prefect import flow, get_client
from prefect.states import Crashed, Running
from sqlmodel import select

from shared.db import session_scope
from shared.models import SyncFailure, SyncRun
from shared.redact import register_secret
from shared.runs import (
    Counts,
    close_abandoned_runs,
    finish_run,
    open_failure_keys,
    payload_hash,
    push_hashes,
    record_failure,
    resolve_failures,
    save_push_state,
    start_run,
    tracked_run,
)
from shared.status import collect_status, format_status

KEY = {"provider": "p", "account": "a", "operation": "upsert"}


def test_ledger_row_goes_from_running_to_completed_with_counts(migrated_url: str) -> None:
    run_id = start_run(migrated_url, "p", "a", "full", None)
    with session_scope(migrated_url) as session:
        assert session.get_one(SyncRun, run_id).state == "running"
    finish_run(
        migrated_url,
        run_id,
        state="completed",
        requests=7,
        counts=Counts(records_read=5, created=3, updated=1, failed=1),
    )
    with session_scope(migrated_url) as session:
        run = session.get_one(SyncRun, run_id)
    assert (run.state, run.records_read, run.created, run.updated, run.failed, run.requests) == (
        "completed",
        5,
        3,
        1,
        1,
        7,
    )
    assert run.finished_at is not None
    assert run.finished_at >= run.started_at


def test_failure_error_text_is_redacted_in_the_ledger(migrated_url: str) -> None:
    register_secret("ledger-secret-123456")
    run_id = start_run(migrated_url, "p", "a", "full", None)
    finish_run(
        migrated_url,
        run_id,
        state="failed",
        counts=Counts(),
        requests=0,
        error="boom with ledger-secret-123456 inside",
    )
    with session_scope(migrated_url) as session:
        assert session.get_one(SyncRun, run_id).error == "boom with *** inside"


def test_failures_are_bumped_resolved_and_turn_permanent(migrated_url: str) -> None:
    for _ in range(2):
        with session_scope(migrated_url) as session:
            record_failure(
                session,
                **KEY,
                record_key="r1",
                message="The email is invalid.",
                status_code=422,
                detail={"errors": {"email": ["invalid"]}},
                max_attempts=3,
            )
            record_failure(session, **KEY, record_key="r2", message="Bad phone", max_attempts=3)
    with session_scope(migrated_url) as session:
        assert open_failure_keys(session, **KEY) == {"r1", "r2"}
        resolve_failures(session, **KEY, record_keys=["r2"])
    with session_scope(migrated_url) as session:
        record_failure(
            session, **KEY, record_key="r1", message="The email is invalid.", max_attempts=3
        )
    with session_scope(migrated_url) as session:
        rows = {f.record_key: f for f in session.exec(select(SyncFailure))}
        assert open_failure_keys(session, **KEY) == set()
        assert open_failure_keys(session, **KEY, permanent=True) == {"r1"}
    assert rows["r1"].attempts == 3
    assert rows["r1"].permanent
    assert rows["r1"].message == "The email is invalid."
    assert rows["r2"].resolved_at is not None
    assert not rows["r2"].permanent
    assert rows["r1"].first_seen_at <= rows["r1"].last_seen_at


def test_push_hashes_reflect_the_last_saved_payload(migrated_url: str) -> None:
    first, second = payload_hash({"a": 1, "b": 2}), payload_hash({"b": 2, "a": 1})
    assert first == second  # key order does not change the hash
    with session_scope(migrated_url) as session:
        save_push_state(session, "p", "a", [("k1", "r1", first), ("k2", None, "x")])
    with session_scope(migrated_url) as session:
        save_push_state(session, "p", "a", [("k2", "r2", "y")])
    with session_scope(migrated_url) as session:
        assert push_hashes(session, "p", "a") == {"k1": first, "k2": "y"}
        assert push_hashes(session, "p", "a", ["k2"]) == {"k2": "y"}


def test_two_runs_failing_on_one_record_at_once_both_count(migrated_url: str) -> None:
    import threading

    both_inside = threading.Barrier(2)

    def fail_once() -> None:
        with session_scope(migrated_url) as session:
            both_inside.wait(timeout=10)  # two open transactions before either writes
            record_failure(session, **KEY, record_key="r9", message="Service said no")

    threads = [threading.Thread(target=fail_once) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    with session_scope(migrated_url) as session:
        failure = session.exec(select(SyncFailure)).one()
    assert failure.attempts == 2


# A run killed outright (kill -9) leaves its ledger row `running`; the next run closes it.


@flow(name="activecampaign-sync")
def killed_sync() -> None:
    """Stands in for a deployment's flow: only its flow runs are used, never run."""


async def _flow_run(*, crashed: bool) -> str:
    """A flow run on the Prefect API: Running, or Crashed as the heartbeat automation leaves it."""
    async with get_client() as client:
        run = await client.create_flow_run(killed_sync, state=Running())
        if crashed:
            await client.set_flow_run_state(
                run.id, Crashed(message="No heartbeat for 90 s"), force=True
            )
    return str(run.id)


def _row(url: str, run_id: int) -> SyncRun:
    with session_scope(url) as session:
        return session.get_one(SyncRun, run_id)


@pytest.mark.usefixtures("prefect_harness")
async def test_the_next_run_closes_a_killed_runs_row_as_crashed_and_reports_it_once(
    migrated_url: str, sentry_events: Any, caplog: pytest.LogCaptureFixture
) -> None:
    killed, going, elsewhere = (
        await _flow_run(crashed=True),
        await _flow_run(crashed=False),
        await _flow_run(crashed=True),
    )
    dead = start_run(migrated_url, "activecampaign", "default", "full", killed)
    alive = start_run(migrated_url, "activecampaign", "default", "incremental", going)
    other = start_run(migrated_url, "activecampaign", "other-account", "incremental", elsewhere)
    caplog.set_level(logging.WARNING)

    async with tracked_run(migrated_url, "activecampaign", "default", "incremental"):
        pass

    row = _row(migrated_url, dead)
    assert row.state == "crashed"
    assert row.finished_at is not None
    assert row.error is not None
    assert "killed or lost" in row.error
    assert killed in row.error
    assert "Crashed" in row.error
    assert _row(migrated_url, alive).state == "running"  # another deployment's run, still going
    assert _row(migrated_url, other).state == "running"  # another account's: its own next run
    assert len(sentry_events.events) == 1
    event = sentry_events.events[0]
    assert event["level"] == "error"
    assert event["tags"]["syncflows.provider"] == "activecampaign"
    assert event["tags"]["syncflows.account"] == "default"
    assert event["tags"]["prefect.flow_run_id"] == killed
    assert event["tags"]["syncflows.mode"] == "full"
    assert event["message"] == (
        f"activecampaign run {killed} (account default) ended without finishing: its process "
        "was killed or lost; this run picks up its work"
    )
    assert killed in caplog.text
    assert "killed or lost" in caplog.text

    async with tracked_run(migrated_url, "activecampaign", "default", "incremental"):
        pass
    assert len(sentry_events.events) == 1  # reported once, not by every later run
    assert _row(migrated_url, alive).state == "running"


@pytest.mark.usefixtures("prefect_harness")
async def test_a_row_whose_flow_run_this_prefect_never_saw_is_closed_too(
    migrated_url: str, sentry_events: Any
) -> None:
    unknown = str(uuid.uuid4())  # e.g. recorded against another Prefect server
    dead = start_run(migrated_url, "brevo", "default", "incremental", unknown)

    async with tracked_run(migrated_url, "brevo", "default", "incremental"):
        pass

    row = _row(migrated_url, dead)
    assert row.state == "crashed"
    assert "does not know it" in (row.error or "")
    assert [e["tags"]["prefect.flow_run_id"] for e in sentry_events.events] == [unknown]


@pytest.mark.usefixtures("prefect_harness")
async def test_two_runs_starting_at_once_report_a_dead_run_once(
    migrated_url: str, sentry_events: Any
) -> None:
    killed = await _flow_run(crashed=True)
    dead = start_run(migrated_url, "mailerlite", "default", "incremental", killed)

    first, second = await asyncio.gather(
        close_abandoned_runs(migrated_url, "mailerlite", "default", str(uuid.uuid4())),
        close_abandoned_runs(migrated_url, "mailerlite", "default", str(uuid.uuid4())),
    )

    assert [r.run_id for r in first + second] == [dead]
    assert len(sentry_events.events) == 1
    assert _row(migrated_url, dead).state == "crashed"


@pytest.mark.usefixtures("prefect_harness")
async def test_trouble_reporting_a_dead_run_never_fails_the_run(
    migrated_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    killed = await _flow_run(crashed=True)
    dead = start_run(migrated_url, "magento", "default", "incremental", killed)

    async def unreachable(_ids: list[str]) -> dict[str, str]:
        raise ConnectionError("Prefect API unreachable")

    monkeypatch.setattr("shared.runs._ended_flow_runs", unreachable)
    caplog.set_level(logging.WARNING)
    async with tracked_run(migrated_url, "magento", "default", "incremental") as run:
        run.counts.created = 1

    assert _row(migrated_url, dead).state == "running"  # a later run will try again
    assert _row(migrated_url, run.run_id).state == "completed"
    assert "Prefect API unreachable" in caplog.text


def test_status_shows_a_crashed_run_without_a_made_up_duration(migrated_url: str) -> None:
    t0 = datetime(2026, 11, 21, 8, 0, tzinfo=UTC)
    with session_scope(migrated_url) as session:
        session.add(
            SyncRun(
                provider="magento",
                account="default",
                mode="incremental",
                started_at=t0,
                finished_at=t0 + timedelta(seconds=60),
                state="completed",
            )
        )
        session.add(  # closed by the next run a day later: a day is not how long it ran
            SyncRun(
                provider="magento",
                account="default",
                mode="incremental",
                started_at=t0 + timedelta(hours=1),
                finished_at=t0 + timedelta(hours=25),
                state="crashed",
                error="ended without finishing: its process was killed or lost",
            )
        )
    with sa.create_engine(migrated_url).connect() as connection:
        stats = connection.execute(sa.text("SELECT * FROM sync_run_stats")).one()
        latest = connection.execute(sa.text("SELECT * FROM sync_run_latest")).one()
    assert stats.avg_duration_seconds == pytest.approx(60.0)
    assert stats.success_rate == pytest.approx(0.5)
    assert (latest.state, latest.duration_seconds) == ("crashed", None)

    report = format_status(collect_status(migrated_url), "the test database")
    assert "last run   crashed at 2026-11-21 09:00:00 UTC (incremental, never finished)" in report
    assert "killed or lost" in report
    assert "60.0 s on average" in report
