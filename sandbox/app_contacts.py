"""The application's side of the Mailchimp demo and benches: owners, contacts, connections.

Contacts are written as the application would write them: through `flows.mailchimp.capture`
in the same transaction, so the outbox sees every change. `connect_owner` stands in for the
OAuth dance (`syncflows mailchimp connect` does the real one): a sandbox account and audience,
a token it minted, encrypted like a real connection's.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlmodel import Session, select

from flows.mailchimp.capture import capture
from flows.mailchimp.tables import AccountOwner, Contact, MailchimpConnection
from sandbox.generate import FIRST_NAMES, LAST_NAMES
from sandbox.mailchimp import MailchimpSandbox
from shared.crypto import Keyring
from shared.db import session_scope

TAGS = ("client", "lead", "vip", "past-client", "investor", "referral", "newsletter")


def connect_owner(
    url: str,
    sandbox: MailchimpSandbox,
    api_endpoint: str,
    ring: Keyring,
    owner: str,
    account_name: str | None = None,
) -> str:
    """`owner` (created if new) connected to a sandbox account (`account_name`, else the owner's
    own) and an audience of its own; the audience id.

    A sandbox forgets everything when it stops, so a second demo connects again: same
    account and audience ids (the sandbox makes them from its seed), a new token and address,
    and the owner's sync history kept.
    """
    name = account_name or f"{owner} account"
    account = sandbox.accounts.get(name) or sandbox.add_account(name)
    audience = f"{owner} contacts"
    found = [a.id for a in account.audiences.values() if a.name == audience]
    list_id = found[0] if found else sandbox.add_audience(account, audience)
    token = sandbox.mint_token(account)
    with session_scope(url) as session:
        if session.get(AccountOwner, owner) is None:
            session.add(AccountOwner(id=owner, name=owner, created_at=datetime.now(UTC)))
            session.flush()
        row = session.exec(
            select(MailchimpConnection).where(MailchimpConnection.owner_id == owner)
        ).first()
        if row is None:
            row = MailchimpConnection(
                owner_id=owner,
                access_token_encrypted="",
                server_prefix=account.dc,
                api_endpoint=api_endpoint,
                account_id=account.account_id,
                connected_at=datetime.now(UTC),
            )
        if row.audience_id != list_id:
            row.last_full_sync_at = None  # a new audience is reconciled first
        row.access_token_encrypted = ring.encrypt(token)
        row.api_endpoint, row.account_id, row.account_name = (
            api_endpoint,
            account.account_id,
            account.name,
        )
        row.audience_id, row.audience_name = list_id, audience
        session.add(row)
    return list_id


def contact_values(owner: str, n: int, rng: random.Random) -> dict[str, Any]:
    """One generated contact: a few have no email (not synced) or no phone."""
    return {
        "id": f"{owner}-{n}",
        "owner_id": owner,
        "first_name": rng.choice(FIRST_NAMES),
        "last_name": rng.choice(LAST_NAMES),
        "email": None if rng.random() < 0.02 else f"{owner}.{n}@contacts.example",
        "phone": None if rng.random() < 0.3 else f"+1 404 555 {n % 10_000:04d}",
        "tags": sorted(rng.sample(TAGS, rng.randrange(0, 4))),
        "updated_at": datetime.now(UTC),
    }


def seed_contacts(url: str, owner: str, count: int, *, seed: int = 0, first: int = 0) -> int:
    """Insert `count` contacts of `owner` as one import (one capture call); returns count."""
    rng = random.Random(f"{owner}:{seed}")
    with session_scope(url) as session:
        made = [Contact(**contact_values(owner, n, rng)) for n in range(first, first + count)]
        session.add_all(made)
        session.flush()
        capture(session, "create", made)
    return count


@dataclass(frozen=True)
class Changes:
    created: int
    edited: int
    retagged: int
    deleted: int

    @property
    def events(self) -> int:
        return self.created + self.edited + self.retagged + self.deleted


def change_contacts(
    url: str, owner: str, *, created: int, edited: int, retagged: int, deleted: int, seed: int = 1
) -> Changes:
    """A day of changes to `owner`'s contacts, each captured: a CSV import of `created`, then
    edits of names and phones, tag changes, and deletes (half soft, half hard)."""
    rng = random.Random(f"{owner}:changes:{seed}")
    with session_scope(url) as session:
        live = list(
            session.exec(
                select(Contact).where(Contact.owner_id == owner, Contact.deleted == False)  # noqa: E712
            )
        )
        start = 1 + max(int(c.id.rsplit("-", 1)[1]) for c in live) if live else 0
        picked = rng.sample(live, edited + retagged + deleted)
        imported = [Contact(**contact_values(owner, start + n, rng)) for n in range(created)]
        session.add_all(imported)
        session.flush()
        capture(session, "create", imported)
        for contact in picked[:edited]:
            contact.last_name = f"{contact.last_name}-{seed}"
            contact.phone = f"+1 678 555 {rng.randrange(10_000):04d}"
            _changed(session, contact, "update")
        for contact in picked[edited : edited + retagged]:
            kept = [t for t in contact.tags if rng.random() < 0.5]
            contact.tags = sorted({*kept, rng.choice(TAGS)})
            _changed(session, contact, "update")
        for index, contact in enumerate(picked[edited + retagged :]):
            capture(session, "delete", contact)
            if index % 2:
                session.delete(contact)
            else:
                contact.deleted = True
                session.add(contact)
    return Changes(created, edited, retagged, deleted)


def _changed(session: Session, contact: Contact, operation: str) -> None:
    contact.updated_at = datetime.now(UTC)
    session.add(contact)
    capture(session, operation, contact)
