"""Brevo: the application's customers

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-21
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # The application's own table: an application database that has it keeps its own.
    if "customers" not in sa.inspect(op.get_bind()).get_table_names():
        op.create_table(
            "customers",
            sa.Column("id", sa.String(length=64), nullable=False),
            sa.Column("email", sa.String(length=320), nullable=False),
            sa.Column("first_name", sa.String(length=255), nullable=True),
            sa.Column("last_name", sa.String(length=255), nullable=True),
            sa.Column("phone", sa.String(length=50), nullable=True),
            sa.Column("marketing_opt_in", sa.Boolean(), nullable=False),
            sa.Column("used_welcome_offer", sa.Boolean(), nullable=False),
            sa.Column("brevo_contact_id", sa.BigInteger(), nullable=True),
            sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
            sa.PrimaryKeyConstraint("id", name=op.f("pk_customers")),
        )
    op.execute(
        "CREATE VIEW brevo_latest_sync AS SELECT * FROM sync_run_latest WHERE provider = 'brevo'"
    )
    op.execute(
        "CREATE VIEW brevo_sync_statistics AS SELECT * FROM sync_run_stats WHERE provider = 'brevo'"
    )


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS brevo_sync_statistics")
    op.execute("DROP VIEW IF EXISTS brevo_latest_sync")
    # The customers table stays: it may have been there before this migration.
