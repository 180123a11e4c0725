"""Mailchimp connections: stored encrypted, read back decrypted, paused and resumed.

A connection is one owner's Mailchimp account and audience (`MailchimpConnection`). Its
credential (OAuth token or API key) is encrypted with `MAILCHIMP_TOKEN_KEYS` (`shared.crypto`)
and only decrypted into a `Connection` for the run that uses it. OAuth tokens do not expire and
have no refresh token (push §3.1), so a connection lasts until it is disconnected or revoked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from flows.mailchimp.tables import MailchimpConnection
from shared.crypto import Keyring
from shared.http import HttpClient, provider_client
from shared.models import utcnow
from shared.settings import MailchimpSettings, Settings

SYNC_NOW_EVERY = timedelta(hours=1)  # the seed: Sync Now is rate limited to once per hour
PAUSED_NOTICE = "Heads up—email sync is paused right now."  # the seed's coach-panel note


def owner_account(owner: str) -> str:
    """The account of an owner's connection in the run ledger, push state and failures."""
    return f"owner-{owner}"


def keyring(settings: MailchimpSettings) -> Keyring:
    assert settings.token_keys is not None  # load_provider_settings checked it
    return Keyring(settings.token_keys.get_secret_value(), settings.env_name("token_keys"))


@dataclass(frozen=True)
class Connection:
    """What a run needs of a connection, the credential decrypted (never logged: redacted)."""

    owner_id: str
    auth: str  # oauth | api_key
    credential: str = field(repr=False)
    api_endpoint: str
    account_id: str
    audience_id: str | None
    audience_name: str | None
    status: str
    last_full_sync_at: datetime | None

    @property
    def label(self) -> str:
        return owner_account(self.owner_id)

    def client(self, provider: MailchimpSettings, settings: Settings, **kwargs: Any) -> HttpClient:
        """This connection's HTTP client; its limiter is the Mailchimp account's, shared by
        every connection to that account (10 simultaneous connections, push §3.11)."""
        per_account = provider.model_copy(update={"account": self.account_id})
        if self.auth == "api_key":
            return provider_client(
                per_account,
                settings,
                auth=("syncflows", self.credential),  # §3.1: any user name
                base_url=f"{self.api_endpoint}/3.0",
                **kwargs,
            )
        return provider_client(
            per_account,
            settings,
            headers={"Authorization": f"Bearer {self.credential}"},
            base_url=f"{self.api_endpoint}/3.0",
            **kwargs,
        )


def load_connections(session: Session, ring: Keyring, owner: str | None = None) -> list[Connection]:
    """Every connection (or the owner's), decrypted, oldest first."""
    query = select(MailchimpConnection).order_by(col(MailchimpConnection.id))
    if owner is not None:
        query = query.where(MailchimpConnection.owner_id == owner)
    return [
        Connection(
            owner_id=row.owner_id,
            auth=row.auth,
            credential=ring.decrypt(row.access_token_encrypted),
            api_endpoint=row.api_endpoint,
            account_id=row.account_id,
            audience_id=row.audience_id,
            audience_name=row.audience_name,
            status=row.status,
            last_full_sync_at=row.last_full_sync_at,
        )
        for row in session.exec(query).all()
    ]


def _table() -> Any:
    return MailchimpConnection.__table__  # type: ignore[attr-defined]


def claim_full_sync(session: Session, owner: str, now: datetime) -> datetime | None:
    """Take the hour's Sync Now for `owner`: None when taken, else when it is allowed again.

    One conditional UPDATE, so two Sync Nows at once cannot both pass.
    """
    table = _table()
    taken = session.execute(
        sa.update(table)
        .where(
            table.c.owner_id == owner,
            sa.or_(
                table.c.last_full_sync_at.is_(None),
                table.c.last_full_sync_at <= now - SYNC_NOW_EVERY,
            ),
        )
        .values(last_full_sync_at=now)
    )
    if taken.rowcount:  # type: ignore[attr-defined]
        return None
    last = session.execute(
        sa.select(table.c.last_full_sync_at).where(table.c.owner_id == owner)
    ).scalar_one_or_none()
    if last is None:
        raise LookupError(f"owner {owner!r} has no Mailchimp connection")
    allowed: datetime = last + SYNC_NOW_EVERY
    return allowed


def release_full_sync(
    session: Session, owner: str, taken: datetime, before: datetime | None
) -> None:
    """A full sync that failed gives its hour back (the user may press Sync Now again)."""
    table = _table()
    session.execute(
        sa.update(table)
        .where(table.c.owner_id == owner, table.c.last_full_sync_at == taken)
        .values(last_full_sync_at=before)
    )


def mark_synced(session: Session, owner: str, now: datetime) -> bool:
    """A successful exchange with Mailchimp: `last_sync_at`, and a paused connection is
    active again (the seed's note disappears). Returns whether it was paused."""
    table = _table()
    resumed = session.execute(
        sa.update(table)
        .where(table.c.owner_id == owner, table.c.status == "paused")
        .values(status="active", paused_reason=None, paused_at=None)
    ).rowcount  # type: ignore[attr-defined]
    session.execute(sa.update(table).where(table.c.owner_id == owner).values(last_sync_at=now))
    return bool(resumed)


def set_status(session: Session, owner: str, status: str, reason: str) -> None:
    """Pause a connection (failures past the retry threshold) or mark it `error` (Mailchimp
    refused its credentials: it must be connected again)."""
    table = _table()
    session.execute(
        sa.update(table)
        .where(table.c.owner_id == owner)
        .values(status=status, paused_reason=reason[:2000], paused_at=utcnow())
    )
