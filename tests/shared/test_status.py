"""`syncflows status` and the run views, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from shared.db import session_scope
from shared.models import SyncRun
from shared.runs import record_failure, set_cursor
from shared.status import collect_status, format_status


def _run(
    url: str, provider: str, state: str, started: datetime, seconds: float | None, **counts: int
) -> None:
    with session_scope(url) as session:
        session.add(
            SyncRun(
                provider=provider,
                account="default",
                mode="incremental",
                started_at=started,
                state=state,
                finished_at=started + timedelta(seconds=seconds) if seconds is not None else None,
                **counts,
            )
        )


def test_empty_database_says_there_is_nothing_yet(database_url: str) -> None:
    report = format_status(collect_status(database_url), "the test database")
    assert report.startswith("No sync runs recorded yet in the test database.")


def test_views_give_latest_run_and_statistics(migrated_url: str) -> None:
    t0 = datetime(2026, 11, 21, 8, 0, tzinfo=UTC)
    _run(migrated_url, "brevo", "completed", t0, 30, records_read=10, created=4, requests=5)
    _run(migrated_url, "brevo", "failed", t0 + timedelta(hours=1), 90, records_read=2, failed=2)
    _run(
        migrated_url,
        "brevo",
        "completed",
        t0 + timedelta(hours=2),
        60,
        records_read=7,
        updated=7,
        requests=7,
    )
    _run(migrated_url, "magento", "running", t0 + timedelta(hours=3), None)
    with sa.create_engine(migrated_url).connect() as connection:
        stats = {r.provider: r for r in connection.execute(sa.text("SELECT * FROM sync_run_stats"))}
        latest = {
            r.provider: r for r in connection.execute(sa.text("SELECT * FROM sync_run_latest"))
        }
    assert (stats["brevo"].runs, stats["brevo"].completed_runs, stats["brevo"].failed_runs) == (
        3,
        2,
        1,
    )
    assert stats["brevo"].success_rate == pytest.approx(2 / 3)
    assert stats["brevo"].avg_duration_seconds == pytest.approx(60.0)
    assert stats["magento"].success_rate is None  # nothing finished yet
    assert (latest["brevo"].state, latest["brevo"].updated) == ("completed", 7)
    assert latest["brevo"].duration_seconds == pytest.approx(60.0)
    assert latest["magento"].duration_seconds is None


def test_report_shows_last_run_cursor_and_failures(migrated_url: str) -> None:
    t0 = datetime(2026, 11, 21, 8, 0, tzinfo=UTC)
    _run(
        migrated_url,
        "magento",
        "completed",
        t0,
        12.5,
        records_read=300,
        created=290,
        skipped=10,
        requests=2,
    )
    with session_scope(migrated_url) as session:
        set_cursor(session, "magento", "default", "orders", "48213")
        for key in ("o-1", "o-2"):
            record_failure(
                session,
                provider="magento",
                account="default",
                record_key=key,
                operation="insert",
                message="no email",
            )
        record_failure(
            session,
            provider="magento",
            account="default",
            record_key="o-3",
            operation="insert",
            message="no email",
            permanent=True,
        )
    report = format_status(collect_status(migrated_url, "magento"), "db")
    assert "magento / default" in report
    assert "last run   completed at 2026-11-21 08:00:00 UTC (incremental, 12.5 s)" in report
    assert "read 300, created 290" in report
    assert "skipped 10" in report
    assert "cursor     orders=48213" in report
    assert "failures   2 open (retried next run), 1 permanent" in report
    assert collect_status(migrated_url, "brevo") == []
