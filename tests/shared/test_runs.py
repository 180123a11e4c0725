"""Run ledger and per-record failures, on SQLite and PostgreSQL."""

from __future__ import annotations

from sqlmodel import select

from shared.db import session_scope
from shared.models import SyncFailure, SyncRun
from shared.redact import register_secret
from shared.runs import (
    Counts,
    finish_run,
    open_failure_keys,
    payload_hash,
    push_hashes,
    record_failure,
    resolve_failures,
    save_push_state,
    start_run,
)

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
