"""The self-check scenarios' correctness check fails when the database and sandbox disagree."""

from __future__ import annotations

from datetime import UTC, datetime

from bench.scenarios import _database_matches_sandbox
from flows.selfcheck import demo_records, payload
from shared.db import migrate, session_scope
from shared.models import SyncRun
from shared.runs import payload_hash, record_failure, save_push_state


def _synced(url: str, records: int) -> dict[str, dict[str, object]]:
    """A database and sandbox state as a correct run leaves them; returns the sandbox items."""
    migrate(url)
    good = [r for r in demo_records(records) if r["key"] != "demo-013"]
    with session_scope(url) as session:
        save_push_state(
            session,
            "selfcheck",
            "default",
            [(r["key"], f"sc-{r['key']}", payload_hash(payload(r))) for r in good],
        )
        record_failure(
            session,
            provider="selfcheck",
            account="default",
            record_key="demo-013",
            operation="upsert",
            message="invalid email",
            status_code=422,
        )
        session.add(
            SyncRun(
                provider="selfcheck",
                account="default",
                mode="incremental",
                started_at=datetime.now(UTC),
                state="completed",
                created=len(good),
                failed=1,
            )
        )
    return {r["key"]: {"id": f"sc-{r['key']}", **payload(r)} for r in good}


def test_a_correct_run_is_correct(tmp_path) -> None:
    url = f"sqlite:///{tmp_path}/ok.db"
    assert _database_matches_sandbox(url, _synced(url, 20), 20)


def test_a_missing_or_altered_record_is_incorrect_not_a_crash(tmp_path) -> None:
    url = f"sqlite:///{tmp_path}/bad.db"
    items = _synced(url, 20)
    missing = {k: v for k, v in items.items() if k != "demo-004"}
    altered = {**items, "demo-005": {**items["demo-005"], "name": "Someone Else"}}
    assert not _database_matches_sandbox(url, missing, 20)
    assert not _database_matches_sandbox(url, altered, 20)
