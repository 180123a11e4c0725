"""Run views: a `crashed` run has no duration

A run killed outright leaves its `sync_run` row `running`; the next run of its provider account
closes it as `crashed` (shared.runs), with `finished_at` the moment that run noticed. That span
says when the death was noticed, not how long the run ran, so `sync_run_latest` shows no
duration for a crashed run and `sync_run_stats` leaves crashed runs out of the average. The
views keep their columns (so the per-provider views made from them stay valid); `sync_run.state`
is a plain string column, so no constraint changes.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# As in 0002: seconds between two timestamps, the one expression that differs by dialect.
DURATION = {
    "postgresql": "CAST(EXTRACT(EPOCH FROM (r.finished_at - r.started_at)) AS FLOAT)",
    "sqlite": "((julianday(r.finished_at) - julianday(r.started_at)) * 86400.0)",
}
RAN_FOR = "CASE WHEN r.state = 'crashed' THEN NULL ELSE {duration} END"

LATEST = """
    SELECT r.id, r.provider, r.account, r.mode, r.flow_run_id, r.state, r.started_at,
           r.finished_at, {duration} AS duration_seconds, r.records_read, r.created,
           r.updated, r.unchanged, r.skipped, r.failed, r.requests, r.error
    FROM sync_run r
    WHERE r.id = (SELECT MAX(l.id) FROM sync_run l
                  WHERE l.provider = r.provider AND l.account = r.account)
"""
STATS = """
    SELECT r.provider, r.account,
           COUNT(*) AS runs,
           SUM(CASE WHEN r.state = 'completed' THEN 1 ELSE 0 END) AS completed_runs,
           SUM(CASE WHEN r.state = 'failed' THEN 1 ELSE 0 END) AS failed_runs,
           CAST(SUM(CASE WHEN r.state = 'completed' THEN 1 ELSE 0 END) AS FLOAT)
               / NULLIF(SUM(CASE WHEN r.finished_at IS NOT NULL THEN 1 ELSE 0 END), 0)
               AS success_rate,
           CAST(AVG({duration}) AS FLOAT) AS avg_duration_seconds,
           MAX(r.started_at) AS last_started_at,
           SUM(r.records_read) AS records_read,
           SUM(r.requests) AS requests
    FROM sync_run r
    GROUP BY r.provider, r.account
"""


def _replace_views(duration: str) -> None:
    dialect = op.get_bind().dialect.name
    for name, body in (("sync_run_latest", LATEST), ("sync_run_stats", STATS)):
        sql = body.format(duration=duration)
        if dialect == "postgresql":  # the per-provider views depend on these: replace in place
            op.execute(f"CREATE OR REPLACE VIEW {name} AS {sql}")
        else:  # SQLite has no OR REPLACE, and resolves dependent views when they are read
            op.execute(f"DROP VIEW IF EXISTS {name}")
            op.execute(f"CREATE VIEW {name} AS {sql}")


def upgrade() -> None:
    duration = DURATION[op.get_bind().dialect.name]
    _replace_views(RAN_FOR.format(duration=duration))


def downgrade() -> None:
    _replace_views(DURATION[op.get_bind().dialect.name])
