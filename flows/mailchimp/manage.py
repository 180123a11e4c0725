"""Managing owners' Mailchimp connections in the database: save, choose an audience, disconnect.

What the seed's Settings page does, as functions over a `Session` (the caller's transaction;
`syncflows mailchimp …` calls them): connect (store the credential encrypted), pick an audience,
show "Connected to "…" · last synced 2 minutes ago", disconnect, and re-encrypt every stored
credential after a key rotation. Nothing here talks to Mailchimp: disconnecting removes only
our side (the seed: "remove stored credentials—do NOT remove contacts from Mailchimp").
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from flows.mailchimp.connections import PAUSED_NOTICE, SYNC_NOW_EVERY, owner_account
from flows.mailchimp.members import PROVIDER
from flows.mailchimp.tables import AccountOwner, MailchimpConnection, MailchimpSyncQueue
from shared.crypto import Keyring
from shared.db import upsert
from shared.models import PushState, utcnow


class ManageError(RuntimeError):
    """A request the database refuses (unknown owner, no connection); safe to show as is."""


@dataclass(frozen=True)
class Saved:
    """What `save_connection` did: a new connection, or a reconnect (to another account?)."""

    created: bool
    account_changed: bool
    audience_id: str | None  # the audience kept, if any


def find(session: Session, owner: str) -> MailchimpConnection | None:
    """The owner's connection row, if any."""
    return session.exec(
        select(MailchimpConnection).where(MailchimpConnection.owner_id == owner)
    ).first()


def require(session: Session, owner: str) -> MailchimpConnection:
    """The owner's connection row.

    Raises:
        ManageError: the owner has none.
    """
    row = find(session, owner)
    if row is None:
        raise ManageError(
            f"owner {owner!r} has no Mailchimp connection: "
            f"run `syncflows mailchimp connect --owner {owner}` first"
        )
    return row


def require_owner(session: Session, owner: str) -> None:
    """Check that `owner` is one of the application's users (`account_owners`).

    Raises:
        ManageError: it is not.
    """
    if session.get(AccountOwner, owner) is None:
        raise ManageError(f"no account owner {owner!r} in account_owners")


def save_connection(
    session: Session,
    ring: Keyring,
    owner: str,
    auth: str,
    credential: str,
    *,
    server_prefix: str,
    api_endpoint: str,
    account_id: str,
    account_name: str | None,
) -> Saved:
    """Store (or replace) the owner's connection, its credential encrypted; status active.

    A reconnect to the same Mailchimp account keeps the audience and the sync times; to another
    account it clears them, because the old audience is not in the new account and the next
    drain must reconcile whatever audience is chosen.

    Raises:
        ManageError: `owner` is not in `account_owners`.
    """
    require_owner(session, owner)
    old = find(session, owner)
    same = old is not None and old.account_id == account_id
    kept: dict[str, Any] = {
        "audience_id": old.audience_id if same and old else None,
        "audience_name": old.audience_name if same and old else None,
        "last_sync_at": old.last_sync_at if same and old else None,
        "last_full_sync_at": old.last_full_sync_at if same and old else None,
    }
    row = {
        "owner_id": owner,
        "auth": auth,
        "access_token_encrypted": ring.encrypt(credential),
        "server_prefix": server_prefix,
        "api_endpoint": api_endpoint.rstrip("/"),
        "account_id": account_id,
        "account_name": account_name,
        "connected_at": utcnow(),
        "status": "active",  # a reconnect is the cure for `error` (refused credentials)
        "paused_reason": None,
        "paused_at": None,
        **kept,
    }
    upsert(session, MailchimpConnection, [row], keys=["owner_id"])
    if old is not None and not same:
        _forget_pushes(session, owner)
    return Saved(
        created=old is None,
        account_changed=old is not None and not same,
        audience_id=kept["audience_id"],
    )


def select_audience(session: Session, owner: str, audience_id: str, name: str | None) -> bool:
    """Sync the owner's contacts to this audience from now on; returns whether it changed.

    A new audience has none of our contacts yet: `last_full_sync_at` goes back to None, so the
    next drain reconciles it first, and the owner's push_state (what was sent to the old
    audience) is deleted. Choosing the audience already chosen only refreshes its name.

    Raises:
        ManageError: the owner has no connection.
    """
    row = require(session, owner)
    changed = row.audience_id != audience_id
    values: dict[str, Any] = {"audience_id": audience_id, "audience_name": name}
    if changed:
        values.update(last_full_sync_at=None, status="active", paused_reason=None, paused_at=None)
        _forget_pushes(session, owner)
    session.execute(
        sa.update(MailchimpConnection)
        .where(col(MailchimpConnection.owner_id) == owner)
        .values(**values)
    )
    return changed


def disconnect(session: Session, owner: str) -> bool:
    """Forget the owner's connection, queued changes and push state; returns whether there was
    a connection. Mailchimp is not called: its audience keeps every member (the seed, 1.6)."""
    existed = find(session, owner) is not None
    session.execute(sa.delete(MailchimpSyncQueue).where(col(MailchimpSyncQueue.owner_id) == owner))
    _forget_pushes(session, owner)
    session.execute(
        sa.delete(MailchimpConnection).where(col(MailchimpConnection.owner_id) == owner)
    )
    return existed


def _forget_pushes(session: Session, owner: str) -> None:
    session.execute(
        sa.delete(PushState).where(
            col(PushState.provider) == PROVIDER, col(PushState.account) == owner_account(owner)
        )
    )


def connected_owners(session: Session) -> list[str]:
    """Every owner with a connection, oldest connection first."""
    query = select(MailchimpConnection.owner_id).order_by(col(MailchimpConnection.id))
    return list(session.exec(query).all())


def status_lines(session: Session, owner: str, now: datetime | None = None) -> list[str]:
    """The seed's Settings text for one owner: the connection, then any note about it."""
    row = find(session, owner)
    if row is None:
        return ["Not connected"]
    now = now or utcnow()
    synced = f"last synced {ago(row.last_sync_at, now)}" if row.last_sync_at else "not synced yet"
    if row.audience_id:
        lines = [f'Connected to "{row.audience_name or row.audience_id}" · {synced}']
    else:
        account = f' "{row.account_name}"' if row.account_name else ""
        lines = [
            f"Connected to Mailchimp account{account} · no audience chosen yet: "
            f"list them with `syncflows mailchimp audiences --owner {owner}`, then run "
            f"`syncflows mailchimp select-audience --owner {owner} --audience <id>`"
        ]
    if row.status == "paused":
        lines.append(PAUSED_NOTICE)
    elif row.status == "error":
        lines.append(
            "Mailchimp refused the stored credentials: connect again with "
            f"`syncflows mailchimp connect --owner {owner}`"
        )
    return lines


def ago(then: datetime, now: datetime) -> str:
    """How long ago, as people say it: "just now", "2 minutes ago", "yesterday", "4 days ago"."""
    elapsed = now - then
    if elapsed < timedelta(minutes=1):  # also a clock a little ahead of ours
        return "just now"
    if elapsed < timedelta(hours=1):
        return _count(elapsed // timedelta(minutes=1), "minute")
    if elapsed < timedelta(days=1):
        return _count(elapsed // timedelta(hours=1), "hour")
    if elapsed < timedelta(days=2):
        return "yesterday"
    return _count(elapsed.days, "day")


def _count(number: int, unit: str) -> str:
    return f"{number} {unit}{'' if number == 1 else 's'} ago"


def sync_now_allowed_at(session: Session, owner: str, now: datetime) -> datetime | None:
    """When the owner's next Sync Now may start, or None if it may now (the seed: once an
    hour). Only a look: the flow takes the hour itself (`claim_full_sync`), race-free."""
    last = require(session, owner).last_full_sync_at
    if last is None or last + SYNC_NOW_EVERY <= now:
        return None
    return last + SYNC_NOW_EVERY


def rotate_keys(session: Session, ring: Keyring) -> int:
    """Re-encrypt every stored credential under the ring's first key; returns how many.

    Then the old key can leave `MAILCHIMP_TOKEN_KEYS` (shared.crypto).
    """
    rows = session.exec(select(MailchimpConnection)).all()
    for row in rows:
        session.execute(
            sa.update(MailchimpConnection)
            .where(col(MailchimpConnection.id) == row.id)
            .values(access_token_encrypted=ring.rotate(row.access_token_encrypted))
        )
    return len(rows)
