"""ActiveCampaign tables and views; sync_checkpoint for resumable passes

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")
WHEN = sa.DateTime(timezone=True)


def _id() -> sa.Column[int]:
    return sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False)


def upgrade() -> None:
    op.create_table(
        "sync_checkpoint",
        sa.Column("provider", sa.String(length=40), nullable=False),
        sa.Column("account", sa.String(length=200), nullable=False),
        sa.Column("stream", sa.String(length=100), nullable=False),
        sa.Column("part", sa.String(length=100), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("updated_at", WHEN, nullable=False),
        sa.PrimaryKeyConstraint(
            "provider", "account", "stream", "part", name=op.f("pk_sync_checkpoint")
        ),
    )
    op.create_table(
        "ac_field",
        _id(),
        sa.Column("title", sa.String(length=300), nullable=False),
        sa.Column("type", sa.String(length=40), nullable=False),
        sa.Column("perstag", sa.String(length=300), nullable=True),
        sa.Column("options", JSON, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ac_field")),
    )
    op.create_table(
        "ac_deal_field",
        _id(),
        sa.Column("label", sa.String(length=300), nullable=False),
        sa.Column("type", sa.String(length=40), nullable=False),
        sa.Column("options", JSON, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ac_deal_field")),
    )
    op.create_table(
        "ac_pipeline",
        _id(),
        sa.Column("title", sa.String(length=300), nullable=False),
        sa.Column("currency", sa.String(length=10), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ac_pipeline")),
    )
    op.create_table(
        "ac_stage",
        _id(),
        sa.Column("pipeline_id", sa.BigInteger(), nullable=True),
        sa.Column("title", sa.String(length=300), nullable=False),
        sa.Column("order", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ac_stage")),
    )
    op.create_table(
        "ac_user",
        _id(),
        sa.Column("username", sa.String(length=300), nullable=True),
        sa.Column("first_name", sa.String(length=300), nullable=True),
        sa.Column("last_name", sa.String(length=300), nullable=True),
        sa.Column("email", sa.String(length=300), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ac_user")),
    )
    op.create_table(
        "ac_contact",
        _id(),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("first_name", sa.String(length=300), nullable=True),
        sa.Column("last_name", sa.String(length=300), nullable=True),
        sa.Column("phone", sa.String(length=100), nullable=True),
        sa.Column("created_at", WHEN, nullable=True),
        sa.Column("updated_at", WHEN, nullable=True),
        sa.Column("deleted_at", WHEN, nullable=True),
        sa.Column("values_as_of", WHEN, nullable=True),
        sa.Column("seen_pass", sa.Integer(), nullable=True),
        sa.Column("record", JSON, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ac_contact")),
    )
    op.create_index("ix_ac_contact_email", "ac_contact", ["email"])
    op.create_index("ix_ac_contact_updated_at", "ac_contact", ["updated_at"])
    op.create_table(
        "ac_contact_value",
        sa.Column("contact_id", sa.BigInteger(), nullable=False),
        sa.Column("field_id", sa.BigInteger(), nullable=False),
        sa.Column("value", sa.Text(), nullable=True),
        sa.Column("seen_pass", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("contact_id", "field_id", name=op.f("pk_ac_contact_value")),
    )
    op.create_table(
        "ac_deal",
        _id(),
        sa.Column("title", sa.String(length=500), nullable=True),
        sa.Column("value_cents", sa.BigInteger(), nullable=True),
        sa.Column("currency", sa.String(length=10), nullable=True),
        sa.Column("status", sa.Integer(), nullable=True),
        sa.Column("pipeline_id", sa.BigInteger(), nullable=True),
        sa.Column("pipeline", sa.String(length=300), nullable=True),
        sa.Column("stage_id", sa.BigInteger(), nullable=True),
        sa.Column("stage", sa.String(length=300), nullable=True),
        sa.Column("owner_id", sa.BigInteger(), nullable=True),
        sa.Column("owner", sa.String(length=300), nullable=True),
        sa.Column("contact_id", sa.BigInteger(), nullable=True),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", WHEN, nullable=True),
        sa.Column("updated_at", WHEN, nullable=True),
        sa.Column("deleted_at", WHEN, nullable=True),
        sa.Column("values_as_of", WHEN, nullable=True),
        sa.Column("seen_pass", sa.Integer(), nullable=True),
        sa.Column("record", JSON, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ac_deal")),
    )
    op.create_index("ix_ac_deal_pipeline", "ac_deal", ["pipeline", "deleted_at"])
    op.create_index("ix_ac_deal_stage_id", "ac_deal", ["stage_id"])
    op.create_index("ix_ac_deal_contact_id", "ac_deal", ["contact_id"])
    op.create_index("ix_ac_deal_updated_at", "ac_deal", ["updated_at"])
    op.create_table(
        "ac_deal_value",
        sa.Column("deal_id", sa.BigInteger(), nullable=False),
        sa.Column("field_id", sa.BigInteger(), nullable=False),
        sa.Column("value", sa.Text(), nullable=True),
        sa.Column("seen_pass", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("deal_id", "field_id", name=op.f("pk_ac_deal_value")),
    )
    if op.get_bind().dialect.name == "postgresql":  # JSONB containment queries (`@>`)
        op.create_index("ix_ac_contact_record", "ac_contact", ["record"], postgresql_using="gin")
        op.create_index("ix_ac_deal_record", "ac_deal", ["record"], postgresql_using="gin")
    # The seed's `GET /api/sync-status` as views: the generic ones, for this provider.
    op.execute(
        "CREATE VIEW ac_latest_sync AS "
        "SELECT * FROM sync_run_latest WHERE provider = 'activecampaign'"
    )
    op.execute(
        "CREATE VIEW ac_sync_statistics AS "
        "SELECT * FROM sync_run_stats WHERE provider = 'activecampaign'"
    )


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS ac_sync_statistics")
    op.execute("DROP VIEW IF EXISTS ac_latest_sync")
    for table in (
        "ac_deal_value",
        "ac_deal",
        "ac_contact_value",
        "ac_contact",
        "ac_user",
        "ac_stage",
        "ac_pipeline",
        "ac_deal_field",
        "ac_field",
        "sync_checkpoint",
    ):
        op.drop_table(table)
