"""The application tables the MailerLite flow reads: `users`, `subscriptions`, `conversations`.

They belong to the application, not to syncflows: migration 0005 creates them only where they
do not exist yet (a fresh database, the demo, the tests). An application whose tables differ
can expose views with these names and columns instead.

A user's subscription status lives on the user (`subscription_status`) and, independently, on
every subscription row; the seed's dashboard calls a user active when either says "active".
`tier` is one of `TIERS` (see `flows.mailerlite.users` for how the current one is chosen).
`is_demo` marks demo sessions and `is_test` test data; both are excluded from the push.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from shared.models import UTCDateTime

TIERS = ("premium", "standard", "starter")  # best first


class AppUser(SQLModel, table=True):
    """An application user (the seed's `User`)."""

    __tablename__ = "users"

    id: int | None = Field(default=None, primary_key=True)
    email: str = Field(max_length=320)
    subscription_status: str | None = Field(default=None, max_length=40)
    created_at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))
    last_login_at: datetime | None = Field(default=None, sa_column=sa.Column(UTCDateTime()))
    is_demo: bool = False
    is_test: bool = False


class Subscription(SQLModel, table=True):
    """One subscription of a user, in any status (the seed reads them all)."""

    __tablename__ = "subscriptions"
    __table_args__ = (sa.Index("ix_subscriptions_user_id", "user_id"),)

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="users.id")
    plan: str = Field(max_length=100)
    tier: str = Field(max_length=20)
    status: str = Field(max_length=40)
    started_at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))
    ended_at: datetime | None = Field(default=None, sa_column=sa.Column(UTCDateTime()))


class Conversation(SQLModel, table=True):
    """A conversation a user had; only counted."""

    __tablename__ = "conversations"
    __table_args__ = (sa.Index("ix_conversations_user_id", "user_id"),)

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="users.id")
    created_at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))
