"""Views over sync_run: latest run and statistics per provider and account.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Seconds between two timestamps: the one expression that differs by dialect.
DURATION = {
    "postgresql": "CAST(EXTRACT(EPOCH FROM (r.finished_at - r.started_at)) AS FLOAT)",
    "sqlite": "((julianday(r.finished_at) - julianday(r.started_at)) * 86400.0)",
}


def upgrade() -> None:
    duration = DURATION[op.get_bind().dialect.name]
    op.execute(
        f"""
        CREATE VIEW sync_run_latest AS
        SELECT r.id, r.provider, r.account, r.mode, r.flow_run_id, r.state, r.started_at,
               r.finished_at, {duration} AS duration_seconds, r.records_read, r.created,
               r.updated, r.unchanged, r.skipped, r.failed, r.requests, r.error
        FROM sync_run r
        WHERE r.id = (SELECT MAX(l.id) FROM sync_run l
                      WHERE l.provider = r.provider AND l.account = r.account)
        """
    )
    op.execute(
        f"""
        CREATE VIEW sync_run_stats AS
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
    )


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS sync_run_stats")
    op.execute("DROP VIEW IF EXISTS sync_run_latest")
