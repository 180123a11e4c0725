"""The Mailchimp flow's tables: the application's owners and contacts, connections, the outbox.

`account_owners` and `contacts` belong to the application (the seed's RealCoach database, the
source of truth): migration 0007 creates them only where they do not exist yet. Each owner may
connect one Mailchimp account and audience (`mailchimp_connection`); changes to an owner's
contacts wait in `mailchimp_sync_queue` (the outbox, filled by `flows.mailchimp.capture` or by
the PostgreSQL triggers) until a drain sends them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from shared.models import JSONType, UTCDateTime

OPERATIONS = ("create", "update", "delete")
STATUSES = ("active", "paused", "error")


class AccountOwner(SQLModel, table=True):
    """An application user who owns contacts (the seed's `auth.users`)."""

    __tablename__ = "account_owners"

    id: str = Field(primary_key=True, max_length=64)
    name: str | None = Field(default=None, max_length=255)
    email: str | None = Field(default=None, max_length=320)
    created_at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))


class Contact(SQLModel, table=True):
    """One of an owner's contacts; `tags` is a list of names; `deleted` marks a soft delete."""

    __tablename__ = "contacts"

    id: str = Field(primary_key=True, max_length=64)
    owner_id: str = Field(foreign_key="account_owners.id", index=True, max_length=64)
    first_name: str | None = Field(default=None, max_length=255)
    last_name: str | None = Field(default=None, max_length=255)
    email: str | None = Field(default=None, max_length=320)
    phone: str | None = Field(default=None, max_length=50)
    tags: list[str] = Field(default_factory=list, sa_column=sa.Column(JSONType, nullable=False))
    deleted: bool = False
    updated_at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))


class MailchimpConnection(SQLModel, table=True):
    """An owner's Mailchimp account and chosen audience.

    `access_token_encrypted` is the OAuth token (or API key, `auth = "api_key"`) encrypted with
    `MAILCHIMP_TOKEN_KEYS` (`shared.crypto`); nothing else here is secret. `account_id` is
    Mailchimp's id of the account: its 10 simultaneous connections are shared by every
    connection to that account.
    """

    __tablename__ = "mailchimp_connection"

    id: int | None = Field(default=None, primary_key=True)
    owner_id: str = Field(foreign_key="account_owners.id", unique=True, max_length=64)
    auth: str = Field(default="oauth", max_length=10)  # oauth | api_key
    access_token_encrypted: str = Field(sa_column=sa.Column(sa.Text(), nullable=False))
    server_prefix: str = Field(max_length=20)  # the data centre, e.g. us19
    api_endpoint: str = Field(max_length=300)  # without /3.0
    account_id: str = Field(max_length=100)
    account_name: str | None = Field(default=None, max_length=255)
    audience_id: str | None = Field(default=None, max_length=50)
    audience_name: str | None = Field(default=None, max_length=255)
    connected_at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))
    last_sync_at: datetime | None = Field(default=None, sa_column=sa.Column(UTCDateTime()))
    # When the last full sync (Sync Now) started; None: the audience was never reconciled,
    # so the next drain reconciles it first.
    last_full_sync_at: datetime | None = Field(default=None, sa_column=sa.Column(UTCDateTime()))
    status: str = Field(default="active", max_length=20)  # one of STATUSES
    paused_reason: str | None = Field(default=None, sa_column=sa.Column(sa.Text()))
    paused_at: datetime | None = Field(default=None, sa_column=sa.Column(UTCDateTime()))


class MailchimpSyncQueue(SQLModel, table=True):
    """One change to send (the outbox). A drain claims rows for `claimed_until`, sends them and
    deletes them; a failure sets `attempts`, `next_retry_at` and `last_error` instead."""

    __tablename__ = "mailchimp_sync_queue"
    __table_args__ = (sa.Index("ix_mailchimp_sync_queue_owner_due", "owner_id", "next_retry_at"),)

    id: int | None = Field(
        default=None, sa_column=sa.Column(sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                                          primary_key=True, autoincrement=True)
    )  # fmt: skip
    owner_id: str = Field(max_length=64)
    contact_id: str = Field(max_length=64)  # no foreign key: a hard delete removes the contact
    operation: str = Field(max_length=10)  # one of OPERATIONS
    email: str | None = Field(default=None, max_length=320)  # captured when deleted
    attempts: int = 0
    next_retry_at: datetime | None = Field(default=None, sa_column=sa.Column(UTCDateTime()))
    last_error: str | None = Field(default=None, sa_column=sa.Column(sa.Text()))
    created_at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))
    claimed_by: str | None = Field(default=None, max_length=64)
    claimed_until: datetime | None = Field(default=None, sa_column=sa.Column(UTCDateTime()))


def contact_row(contact: Contact) -> dict[str, Any]:
    """The contact as plain values (what a drain compares and sends)."""
    return {
        "id": contact.id,
        "first_name": contact.first_name,
        "last_name": contact.last_name,
        "email": contact.email,
        "phone": contact.phone,
        "tags": list(contact.tags or []),
    }
