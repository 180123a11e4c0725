"""The tables the flows own: run ledger, per-record failures, cursors, push state.

Timestamps are UTC and timezone-aware on both databases (`UTCDateTime`); JSON columns are JSONB
on PostgreSQL and JSON on SQLite. Constraint names are fixed by `NAMING` so Alembic migrations
stay stable across dialects.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
SQLModel.metadata.naming_convention = NAMING

# none_as_null: a Python None is SQL NULL, not the JSON text 'null'.
JSONType = sa.JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


class UTCDateTime(sa.TypeDecorator[datetime]):
    """A timestamp stored as UTC that always reads back timezone-aware.

    SQLite keeps no offset, so values are normalised to UTC on the way in and marked UTC on the
    way out; naive datetimes are refused rather than guessed at.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: pass a timezone-aware value")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(
        self,
        value: datetime | None,
        dialect: sa.Dialect,  # noqa: ARG002 (part of the TypeDecorator interface)
    ) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class SyncRun(SQLModel, table=True):
    """One row per flow run: what it did, how many records, how many requests, how it ended."""

    __tablename__ = "sync_run"
    __table_args__ = (
        sa.Index("ix_sync_run_provider_account_started", "provider", "account", "started_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    provider: str = Field(max_length=40)
    account: str = Field(max_length=200)
    mode: str = Field(max_length=40)
    flow_run_id: str | None = Field(default=None, max_length=64)
    started_at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))
    finished_at: datetime | None = Field(default=None, sa_column=sa.Column(UTCDateTime()))
    state: str = Field(default="running", max_length=20)
    records_read: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: int = 0
    failed: int = 0
    requests: int = 0
    error: str | None = Field(default=None, sa_column=sa.Column(sa.Text()))


class SyncFailure(SQLModel, table=True):
    """One row per record that failed; retried by later runs until resolved or permanent."""

    __tablename__ = "sync_failure"
    __table_args__ = (
        sa.UniqueConstraint("provider", "account", "record_key", "operation"),
        sa.Index("ix_sync_failure_open", "provider", "account", "resolved_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    provider: str = Field(max_length=40)
    account: str = Field(max_length=200)
    record_key: str = Field(max_length=300)
    operation: str = Field(max_length=40)
    status_code: int | None = None
    message: str = Field(sa_column=sa.Column(sa.Text(), nullable=False))
    detail: dict[str, Any] | None = Field(default=None, sa_column=sa.Column(JSONType))
    attempts: int = 1
    permanent: bool = False
    run_id: int | None = None
    first_seen_at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))
    last_seen_at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))
    resolved_at: datetime | None = Field(default=None, sa_column=sa.Column(UTCDateTime()))


class SyncCursor(SQLModel, table=True):
    """Where a stream stopped: moved in the same transaction as the rows it describes."""

    __tablename__ = "sync_cursor"

    provider: str = Field(primary_key=True, max_length=40)
    account: str = Field(primary_key=True, max_length=200)
    stream: str = Field(primary_key=True, max_length=100)
    value: str = Field(sa_column=sa.Column(sa.Text(), nullable=False))
    updated_at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))


class PushState(SQLModel, table=True):
    """What was last pushed for a record: remote id and payload hash (send only what changed)."""

    __tablename__ = "push_state"

    provider: str = Field(primary_key=True, max_length=40)
    account: str = Field(primary_key=True, max_length=200)
    record_key: str = Field(primary_key=True, max_length=300)
    remote_id: str | None = Field(default=None, max_length=200)
    payload_hash: str = Field(max_length=64)
    # What the provider said of the record when it last answered, when that matters to the
    # next run (MailerLite: "unsubscribed", which a push must not undo). None: nothing to note.
    remote_status: str | None = Field(default=None, max_length=40)
    # What was sent, where the next push must know it (Mailchimp: the tags, so one removed in
    # the application is made inactive, and the email, whose member a later email replaces).
    pushed: dict[str, Any] | None = Field(default=None, sa_column=sa.Column(JSONType))
    pushed_at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))


class SyncCheckpoint(SQLModel, table=True):
    """Progress inside an unfinished pass over a stream: one row per finished part (a page, a
    key range), written with that part's rows and deleted when the pass completes, so a run
    that dies mid-pass resumes without re-reading what it already stored."""

    __tablename__ = "sync_checkpoint"

    provider: str = Field(primary_key=True, max_length=40)
    account: str = Field(primary_key=True, max_length=200)
    stream: str = Field(primary_key=True, max_length=100)
    part: str = Field(primary_key=True, max_length=100)
    value: str = Field(sa_column=sa.Column(sa.Text(), nullable=False))
    updated_at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))
