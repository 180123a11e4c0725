"""The application table the Brevo flow reads and writes back to: `customers`.

It belongs to the application (the seed's Neon database, the source of truth): migration 0006
creates it only where it does not exist yet. The flow reads every column and writes one,
`brevo_contact_id`, the id Brevo gave the customer's contact.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from shared.models import UTCDateTime


class Customer(SQLModel, table=True):
    """A customer of the application (the seed's Neon `customers`)."""

    __tablename__ = "customers"

    id: str = Field(primary_key=True, max_length=64)  # the seed's ids are UUIDs
    email: str = Field(max_length=320)
    first_name: str | None = Field(default=None, max_length=255)
    last_name: str | None = Field(default=None, max_length=255)
    phone: str | None = Field(default=None, max_length=50)
    marketing_opt_in: bool = False
    used_welcome_offer: bool = False
    brevo_contact_id: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger()))
    updated_at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))
