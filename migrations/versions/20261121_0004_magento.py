"""Magento: consumer and magento_sync_status

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-21
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "consumer",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("first_name", sa.String(length=255), nullable=True),
        sa.Column("last_name", sa.String(length=255), nullable=True),
        sa.Column("phone", sa.String(length=100), nullable=True),
        sa.Column("country", sa.String(length=2), nullable=True),
        sa.Column("city", sa.String(length=255), nullable=True),
        sa.Column("store_code", sa.String(length=64), nullable=True),
        sa.Column("purchase_date", WHEN, nullable=False),
        sa.Column("source", sa.String(length=40), nullable=False),
        sa.Column("order_entity_id", sa.BigInteger(), nullable=False),
        sa.Column("order_increment_id", sa.String(length=50), nullable=True),
        sa.Column("created_at", WHEN, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_consumer")),
        sa.UniqueConstraint("email", "purchase_date", name=op.f("uq_consumer_email_purchase_date")),
    )
    op.create_index("ix_consumer_source_created_at", "consumer", ["source", "created_at"])
    op.create_table(
        "magento_sync_status",
        sa.Column("account", sa.String(length=200), nullable=False),
        sa.Column("sync_type", sa.String(length=20), nullable=False),
        sa.Column("last_entity_id", sa.BigInteger(), nullable=True),
        sa.Column("last_sync_at", WHEN, nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("total_orders", sa.Integer(), nullable=True),
        sa.Column("total_processed", sa.Integer(), nullable=False),
        sa.Column("total_created", sa.Integer(), nullable=False),
        sa.Column("total_duplicates", sa.Integer(), nullable=False),
        sa.Column("total_errors", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.Column("updated_at", WHEN, nullable=False),
        sa.PrimaryKeyConstraint("account", "sync_type", name=op.f("pk_magento_sync_status")),
    )
    # The seed's `GET /api/sync-status` as views: the generic ones, for this provider.
    op.execute(
        "CREATE VIEW magento_latest_sync AS "
        "SELECT * FROM sync_run_latest WHERE provider = 'magento'"
    )
    op.execute(
        "CREATE VIEW magento_sync_statistics AS "
        "SELECT * FROM sync_run_stats WHERE provider = 'magento'"
    )


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS magento_sync_statistics")
    op.execute("DROP VIEW IF EXISTS magento_latest_sync")
    op.drop_table("magento_sync_status")
    op.drop_index("ix_consumer_source_created_at", table_name="consumer")
    op.drop_table("consumer")
