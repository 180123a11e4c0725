"""Change capture: the application queues each contact change in its own transaction.

Call `capture` in the same transaction that writes the contacts, so a change is queued if and
only if it is committed (the transactional outbox). A CSV import is one call with every
imported contact. A delete captures the email, which a hard delete would otherwise take away.
Only owners with a Mailchimp connection are queued: connecting reconciles the whole audience
first (`flows.mailchimp.flow`), so nothing from before is missed.

    with session_scope(url) as session:
        session.add(contact)
        capture(session, "create", contact)

On PostgreSQL, the triggers of migration 0007 can do this instead (`syncflows mailchimp
triggers on`); events queued twice are harmless, as a drain collapses a contact's events.
"""

from __future__ import annotations

from collections.abc import Iterable

import sqlalchemy as sa
from sqlmodel import Session, col, select

from flows.mailchimp.tables import OPERATIONS, Contact, MailchimpConnection, MailchimpSyncQueue
from shared.models import utcnow

TRIGGER = "mailchimp_capture"


def capture(session: Session, operation: str, *contacts: Contact | Iterable[Contact]) -> int:
    """Queue `operation` (create, update, delete) for contacts; returns how many were queued."""
    if operation not in OPERATIONS:
        raise ValueError(f"operation must be one of {', '.join(OPERATIONS)}, not {operation!r}")
    flat: list[Contact] = []
    for item in contacts:
        flat.extend([item] if isinstance(item, Contact) else item)
    owners = {c.owner_id for c in flat}
    if not owners:
        return 0
    connected = set(
        session.exec(
            select(MailchimpConnection.owner_id).where(
                col(MailchimpConnection.owner_id).in_(owners)
            )
        ).all()
    )
    now = utcnow()
    rows = [
        {
            "owner_id": c.owner_id,
            "contact_id": c.id,
            "operation": operation,
            "email": c.email if operation == "delete" else None,
            "attempts": 0,
            "created_at": now,
        }
        for c in flat
        if c.owner_id in connected
    ]
    if rows:
        session.execute(sa.insert(MailchimpSyncQueue), rows)
    return len(rows)


def set_triggers(session: Session, enabled: bool) -> None:
    """Switch the PostgreSQL capture triggers on or off (they are installed off)."""
    if session.get_bind().dialect.name != "postgresql":
        raise RuntimeError("capture triggers exist on PostgreSQL only; on SQLite call capture()")
    action = "ENABLE" if enabled else "DISABLE"
    session.execute(sa.text(f"ALTER TABLE contacts {action} TRIGGER {TRIGGER}"))
