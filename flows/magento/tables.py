"""The Magento tables: `consumer` (the application's consumers, as the seed defines them) and
`magento_sync_status` (the seed's `SyncStatus`).

A consumer is one person's purchase day: unique on (email, purchase_date), where the email is
trimmed and lower-cased and `purchase_date` is the order's `created_at` in UTC. Rows are only
ever created; an order whose pair exists already is a counted duplicate.

`magento_sync_status` has one row per account and sync type (`full`, `incremental`). A run
updates its row in the same transaction as each page's consumers, so the row always tells what
is stored. `last_entity_id` is the watermark: the next incremental run reads orders above the
highest of an account's rows (a full sync sets its row's only once it has read everything).
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from shared.models import UTCDateTime

SOURCE = "magento_sync"


class Consumer(SQLModel, table=True):
    """A customer of the shop on the day of a purchase (the seed's `Consumer`)."""

    __tablename__ = "consumer"
    __table_args__ = (
        sa.UniqueConstraint("email", "purchase_date"),
        # The seed's mail flow asks for consumers of one source created since a moment.
        sa.Index("ix_consumer_source_created_at", "source", "created_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    email: str = Field(max_length=320)
    first_name: str | None = Field(default=None, max_length=255)
    last_name: str | None = Field(default=None, max_length=255)
    phone: str | None = Field(default=None, max_length=100)
    country: str | None = Field(default=None, max_length=2)
    city: str | None = Field(default=None, max_length=255)
    store_code: str | None = Field(default=None, max_length=64)
    purchase_date: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))
    source: str = Field(default=SOURCE, max_length=40)
    order_entity_id: int = Field(sa_type=sa.BigInteger)
    order_increment_id: str | None = Field(default=None, max_length=50)
    created_at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))


class MagentoSyncStatus(SQLModel, table=True):
    """Where an account's full or incremental sync stands (the seed's `SyncStatus`)."""

    __tablename__ = "magento_sync_status"

    account: str = Field(primary_key=True, max_length=200)
    sync_type: str = Field(primary_key=True, max_length=20)  # full | incremental
    last_entity_id: int | None = Field(default=None, sa_type=sa.BigInteger)
    last_sync_at: datetime | None = Field(default=None, sa_column=sa.Column(UTCDateTime()))
    status: str = Field(default="stopped", max_length=20)  # stopped | running | error
    # This run's figures so far (the last run's once it stopped). `total_orders`: what the run
    # expects to read, Magento's `total_count` when it began (the seed's `progress.total`).
    total_orders: int | None = None
    total_processed: int = 0
    total_created: int = 0
    total_duplicates: int = 0
    total_errors: int = 0
    run_id: int | None = None
    updated_at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))
