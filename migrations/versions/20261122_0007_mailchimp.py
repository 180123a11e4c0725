"""Mailchimp: owners and contacts, connections, the outbox, capture triggers; push_state.pushed

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WHEN = sa.DateTime(timezone=True)
JSON = sa.JSON().with_variant(sa.dialects.postgresql.JSONB(), "postgresql")

# PostgreSQL only: the outbox filled by the database itself, for applications that write
# contacts from places that cannot call `flows.mailchimp.capture`. Installed disabled, because
# an application that calls the helper would queue every change twice (harmless, since a drain
# collapses a contact's events, but wasteful): `syncflows mailchimp triggers on` enables it.
CAPTURE_FUNCTION = """
CREATE FUNCTION mailchimp_capture() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  row_owner text;
  operation text;
BEGIN
  IF TG_OP = 'DELETE' THEN
    row_owner := OLD.owner_id;
    operation := 'delete';
  ELSIF TG_OP = 'INSERT' THEN
    row_owner := NEW.owner_id;
    operation := CASE WHEN NEW.deleted THEN 'delete' ELSE 'create' END;
  ELSE
    IF (NEW.first_name, NEW.last_name, NEW.email, NEW.phone, NEW.tags::text, NEW.deleted)
       IS NOT DISTINCT FROM
       (OLD.first_name, OLD.last_name, OLD.email, OLD.phone, OLD.tags::text, OLD.deleted) THEN
      RETURN NEW;  -- nothing Mailchimp mirrors has changed
    END IF;
    row_owner := NEW.owner_id;
    operation := CASE WHEN NEW.deleted THEN 'delete' ELSE 'update' END;
  END IF;
  IF EXISTS (SELECT 1 FROM mailchimp_connection WHERE owner_id = row_owner) THEN
    INSERT INTO mailchimp_sync_queue (owner_id, contact_id, operation, email, attempts, created_at)
    VALUES (
      row_owner,
      CASE WHEN TG_OP = 'DELETE' THEN OLD.id ELSE NEW.id END,
      operation,
      CASE WHEN TG_OP = 'DELETE' THEN OLD.email WHEN operation = 'delete' THEN NEW.email END,
      0,
      now()
    );
  END IF;
  RETURN NULL;
END;
$$
"""


def upgrade() -> None:
    op.add_column("push_state", sa.Column("pushed", JSON, nullable=True))
    # The application's own tables: an application database that has them keeps its own.
    existing = set(sa.inspect(op.get_bind()).get_table_names())
    if "account_owners" not in existing:
        op.create_table(
            "account_owners",
            sa.Column("id", sa.String(length=64), nullable=False),
            sa.Column("name", sa.String(length=255), nullable=True),
            sa.Column("email", sa.String(length=320), nullable=True),
            sa.Column("created_at", WHEN, nullable=False),
            sa.PrimaryKeyConstraint("id", name=op.f("pk_account_owners")),
        )
    if "contacts" not in existing:
        op.create_table(
            "contacts",
            sa.Column("id", sa.String(length=64), nullable=False),
            sa.Column("owner_id", sa.String(length=64), nullable=False),
            sa.Column("first_name", sa.String(length=255), nullable=True),
            sa.Column("last_name", sa.String(length=255), nullable=True),
            sa.Column("email", sa.String(length=320), nullable=True),
            sa.Column("phone", sa.String(length=50), nullable=True),
            sa.Column("tags", JSON, nullable=False),
            sa.Column("deleted", sa.Boolean(), nullable=False),
            sa.Column("updated_at", WHEN, nullable=False),
            sa.ForeignKeyConstraint(
                ["owner_id"],
                ["account_owners.id"],
                name=op.f("fk_contacts_owner_id_account_owners"),
            ),
            sa.PrimaryKeyConstraint("id", name=op.f("pk_contacts")),
        )
        op.create_index("ix_contacts_owner_id", "contacts", ["owner_id"])
    op.create_table(
        "mailchimp_connection",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("owner_id", sa.String(length=64), nullable=False),
        sa.Column("auth", sa.String(length=10), nullable=False),
        sa.Column("access_token_encrypted", sa.Text(), nullable=False),
        sa.Column("server_prefix", sa.String(length=20), nullable=False),
        sa.Column("api_endpoint", sa.String(length=300), nullable=False),
        sa.Column("account_id", sa.String(length=100), nullable=False),
        sa.Column("account_name", sa.String(length=255), nullable=True),
        sa.Column("audience_id", sa.String(length=50), nullable=True),
        sa.Column("audience_name", sa.String(length=255), nullable=True),
        sa.Column("connected_at", WHEN, nullable=False),
        sa.Column("last_sync_at", WHEN, nullable=True),
        sa.Column("last_full_sync_at", WHEN, nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("paused_reason", sa.Text(), nullable=True),
        sa.Column("paused_at", WHEN, nullable=True),
        sa.ForeignKeyConstraint(
            ["owner_id"],
            ["account_owners.id"],
            name=op.f("fk_mailchimp_connection_owner_id_account_owners"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mailchimp_connection")),
        sa.UniqueConstraint("owner_id", name=op.f("uq_mailchimp_connection_owner_id")),
    )
    op.create_table(
        "mailchimp_sync_queue",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("owner_id", sa.String(length=64), nullable=False),
        sa.Column("contact_id", sa.String(length=64), nullable=False),
        sa.Column("operation", sa.String(length=10), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_retry_at", WHEN, nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", WHEN, nullable=False),
        sa.Column("claimed_by", sa.String(length=64), nullable=True),
        sa.Column("claimed_until", WHEN, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mailchimp_sync_queue")),
    )
    op.create_index(
        "ix_mailchimp_sync_queue_owner_due", "mailchimp_sync_queue", ["owner_id", "next_retry_at"]
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(CAPTURE_FUNCTION)
        op.execute(
            "CREATE TRIGGER mailchimp_capture AFTER INSERT OR UPDATE OR DELETE ON contacts "
            "FOR EACH ROW EXECUTE FUNCTION mailchimp_capture()"
        )
        op.execute("ALTER TABLE contacts DISABLE TRIGGER mailchimp_capture")
    op.execute(
        "CREATE VIEW mailchimp_latest_sync AS "
        "SELECT * FROM sync_run_latest WHERE provider = 'mailchimp'"
    )
    op.execute(
        "CREATE VIEW mailchimp_sync_statistics AS "
        "SELECT * FROM sync_run_stats WHERE provider = 'mailchimp'"
    )


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS mailchimp_sync_statistics")
    op.execute("DROP VIEW IF EXISTS mailchimp_latest_sync")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS mailchimp_capture ON contacts")
        op.execute("DROP FUNCTION IF EXISTS mailchimp_capture()")
    op.drop_index("ix_mailchimp_sync_queue_owner_due", table_name="mailchimp_sync_queue")
    op.drop_table("mailchimp_sync_queue")
    op.drop_table("mailchimp_connection")
    op.drop_column("push_state", "pushed")
    # The application tables stay: they may have been there before this migration.
