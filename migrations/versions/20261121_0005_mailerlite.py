"""MailerLite: the application's users, subscriptions and conversations; push_state.remote_status

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-21
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column("push_state", sa.Column("remote_status", sa.String(length=40), nullable=True))
    # The application's own tables: an application database that has them keeps its own.
    existing = set(sa.inspect(op.get_bind()).get_table_names())
    if "users" not in existing:
        op.create_table(
            "users",
            sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
            sa.Column("email", sa.String(length=320), nullable=False),
            sa.Column("subscription_status", sa.String(length=40), nullable=True),
            sa.Column("created_at", WHEN, nullable=False),
            sa.Column("last_login_at", WHEN, nullable=True),
            sa.Column("is_demo", sa.Boolean(), nullable=False),
            sa.Column("is_test", sa.Boolean(), nullable=False),
            sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        )
    if "subscriptions" not in existing:
        op.create_table(
            "subscriptions",
            sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
            sa.Column("user_id", sa.Integer(), nullable=False),
            sa.Column("plan", sa.String(length=100), nullable=False),
            sa.Column("tier", sa.String(length=20), nullable=False),
            sa.Column("status", sa.String(length=40), nullable=False),
            sa.Column("started_at", WHEN, nullable=False),
            sa.Column("ended_at", WHEN, nullable=True),
            sa.ForeignKeyConstraint(
                ["user_id"], ["users.id"], name=op.f("fk_subscriptions_user_id_users")
            ),
            sa.PrimaryKeyConstraint("id", name=op.f("pk_subscriptions")),
        )
        op.create_index("ix_subscriptions_user_id", "subscriptions", ["user_id"])
    if "conversations" not in existing:
        op.create_table(
            "conversations",
            sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
            sa.Column("user_id", sa.Integer(), nullable=False),
            sa.Column("created_at", WHEN, nullable=False),
            sa.ForeignKeyConstraint(
                ["user_id"], ["users.id"], name=op.f("fk_conversations_user_id_users")
            ),
            sa.PrimaryKeyConstraint("id", name=op.f("pk_conversations")),
        )
        op.create_index("ix_conversations_user_id", "conversations", ["user_id"])
    op.execute(
        "CREATE VIEW mailerlite_latest_sync AS "
        "SELECT * FROM sync_run_latest WHERE provider = 'mailerlite'"
    )
    op.execute(
        "CREATE VIEW mailerlite_sync_statistics AS "
        "SELECT * FROM sync_run_stats WHERE provider = 'mailerlite'"
    )


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS mailerlite_sync_statistics")
    op.execute("DROP VIEW IF EXISTS mailerlite_latest_sync")
    # The application tables stay: they may have been there before this migration.
    with op.batch_alter_table("push_state") as batch:  # SQLite cannot drop a column in place
        batch.drop_column("remote_status")
