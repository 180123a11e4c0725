"""State store: migrations, upserts, UTC timestamps, cursor atomicity — on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from alembic import command
from sqlmodel import select

from shared.db import alembic_config, session_scope, upsert
from shared.models import PushState, SyncCursor, SyncRun
from shared.runs import get_cursor, save_push_state, set_cursor


def test_alembic_check_finds_no_drift_after_upgrade(migrated_url: str) -> None:
    command.check(alembic_config(migrated_url))  # raises if models and migrations differ


def test_migration_creates_the_four_state_tables(migrated_url: str) -> None:
    tables = set(sa.inspect(sa.create_engine(migrated_url)).get_table_names())
    assert {"sync_run", "sync_failure", "sync_cursor", "push_state"} <= tables


def test_downgrade_then_upgrade_round_trips(migrated_url: str) -> None:
    command.downgrade(alembic_config(migrated_url), "base")
    assert "sync_run" not in sa.inspect(sa.create_engine(migrated_url)).get_table_names()
    command.upgrade(alembic_config(migrated_url), "head")
    command.check(alembic_config(migrated_url))


def test_upsert_inserts_then_updates_on_conflict(migrated_url: str) -> None:
    now = datetime.now(UTC)
    row = {
        "provider": "p",
        "account": "a",
        "record_key": "k1",
        "remote_id": "r1",
        "payload_hash": "h1",
        "pushed_at": now,
    }
    with session_scope(migrated_url) as session:
        upsert(
            session,
            PushState,
            [row, {**row, "record_key": "k2"}],
            keys=("provider", "account", "record_key"),
        )
    with session_scope(migrated_url) as session:
        upsert(
            session,
            PushState,
            [{**row, "payload_hash": "h2"}],
            keys=("provider", "account", "record_key"),
        )
    with session_scope(migrated_url) as session:
        hashes = {s.record_key: s.payload_hash for s in session.exec(select(PushState))}
    assert hashes == {"k1": "h2", "k2": "h1"}


def test_upsert_with_no_update_columns_keeps_the_existing_row(migrated_url: str) -> None:
    row = {
        "provider": "p",
        "account": "a",
        "stream": "s",
        "value": "1",
        "updated_at": datetime.now(UTC),
    }
    keys = ("provider", "account", "stream")
    with session_scope(migrated_url) as session:
        upsert(session, SyncCursor, [row], keys=keys, update=())
        upsert(session, SyncCursor, [{**row, "value": "2"}], keys=keys, update=())
    with session_scope(migrated_url) as session:
        assert get_cursor(session, "p", "a", "s") == "1"


def test_timestamps_read_back_as_aware_utc(migrated_url: str) -> None:
    amsterdam = timezone(timedelta(hours=1))
    started = datetime(2026, 11, 21, 15, 30, tzinfo=amsterdam)
    with session_scope(migrated_url) as session:
        session.add(SyncRun(provider="p", account="a", mode="full", started_at=started))
    with session_scope(migrated_url) as session:
        run = session.exec(select(SyncRun)).one()
    assert run.started_at == started
    assert run.started_at.tzinfo is not None
    assert run.started_at.utcoffset() == timedelta(0)


def test_naive_timestamps_are_refused(migrated_url: str) -> None:
    naive = datetime(2026, 1, 1)  # noqa: DTZ001 (the point of the test)
    with session_scope(migrated_url) as session:
        session.add(SyncRun(provider="p", account="a", mode="full", started_at=naive))
        with pytest.raises(sa.exc.StatementError, match="naive datetime"):
            session.flush()
        session.rollback()


def test_cursor_and_rows_roll_back_together_on_failure(migrated_url: str) -> None:
    with session_scope(migrated_url) as session:
        set_cursor(session, "p", "a", "orders", "100")

    class InjectedCrash(RuntimeError):
        pass

    def crash_after_writing() -> None:
        with session_scope(migrated_url) as session:
            save_push_state(session, "p", "a", [("k1", "r1", "h1")])
            set_cursor(session, "p", "a", "orders", "200")
            raise InjectedCrash("crash between the rows and the commit")

    with pytest.raises(InjectedCrash):
        crash_after_writing()

    with session_scope(migrated_url) as session:
        assert get_cursor(session, "p", "a", "orders") == "100"
        assert session.exec(select(PushState)).all() == []

    with session_scope(migrated_url) as session:
        save_push_state(session, "p", "a", [("k1", "r1", "h1")])
        set_cursor(session, "p", "a", "orders", "200")
    with session_scope(migrated_url) as session:
        assert get_cursor(session, "p", "a", "orders") == "200"
        assert [s.record_key for s in session.exec(select(PushState))] == ["k1"]


def test_migrate_creates_the_sqlite_folder_of_a_fresh_checkout(tmp_path) -> None:
    from shared.db import migrate

    url = f"sqlite:///{tmp_path}/not/yet/there/state.db"
    migrate(url)
    command.check(alembic_config(url))


def test_two_first_runs_migrating_one_sqlite_file_at_once_both_succeed(tmp_path) -> None:
    import subprocess
    import sys

    url = f"sqlite:///{tmp_path}/shared.db"
    code = f"from shared.db import migrate; migrate({url!r})"
    for _ in range(3):  # the race was intermittent: try a few times
        (tmp_path / "shared.db").unlink(missing_ok=True)
        runs = [
            subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True)
            for _ in range(2)
        ]
        errors = [run.communicate()[1] for run in runs]
        assert [run.returncode for run in runs] == [0, 0], errors
    command.check(alembic_config(url))
