"""The seed's Clients Manager views, as counts: customers against Brevo contacts, by email.

* **source**: every customer (the seed's "Neon" view, the source of truth);
* **brevo**: every Brevo contact;
* **matched**: customers whose address (trimmed, any case) Brevo has;
* **unmatched**: customers whose address Brevo does not have (the seed's "need sync"; opted-out
  customers are among them, and `pending` counts only the opted-in ones);
* **brevo_only**: contacts whose address no customer has.

Plus the seed's status numbers: `total` opted-in customers, `synced` (with a
`brevo_contact_id`), `pending` (the rest). The last reconciliation is kept in `sync_cursor`
(stream `reconciliation`) for `syncflows status brevo`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session

from flows.brevo.api import Brevo
from flows.brevo.tables import Customer
from shared.db import in_thread
from shared.models import utcnow
from shared.runs import get_cursor, set_cursor

PROVIDER = "brevo"
STREAM = "reconciliation"
FIRST_ROWS = 20


@dataclass
class Reconciliation:
    at: str
    source: int
    brevo: int
    matched: int
    unmatched: int
    brevo_only: int
    total: int
    synced: int
    pending: int
    first: dict[str, list[str]] = field(default_factory=dict)  # view → first addresses

    def counts(self) -> dict[str, int]:
        return {k: v for k, v in asdict(self).items() if isinstance(v, int)}


def compare(customers: list[Any], contacts: dict[str, int]) -> Reconciliation:
    """Customers (rows with email, marketing_opt_in, brevo_contact_id) against contacts."""
    addresses = {(c.email or "").strip().lower() for c in customers}
    matched = [c for c in customers if (c.email or "").strip().lower() in contacts]
    unmatched = [c for c in customers if (c.email or "").strip().lower() not in contacts]
    brevo_only = sorted(email for email in contacts if email not in addresses)
    opted_in = [c for c in customers if c.marketing_opt_in]
    synced = sum(1 for c in opted_in if c.brevo_contact_id is not None)
    return Reconciliation(
        at=utcnow().isoformat(),
        source=len(customers),
        brevo=len(contacts),
        matched=len(matched),
        unmatched=len(unmatched),
        brevo_only=len(brevo_only),
        total=len(opted_in),
        synced=synced,
        pending=len(opted_in) - synced,
        first={
            "matched": [c.email for c in matched[:FIRST_ROWS]],
            "unmatched": [c.email for c in unmatched[:FIRST_ROWS]],
            "brevo_only": brevo_only[:FIRST_ROWS],
        },
    )


async def all_contacts(brevo: Brevo) -> dict[str, int]:
    """Every contact's address (lower-cased) → id, in pages of 1,000."""
    found: dict[str, int] = {}
    offset = 0
    while True:
        page, total = await brevo.contacts(offset)
        for entry in page:
            found[str(entry.get("email") or "").strip().lower()] = int(entry["id"])
        offset += len(page)
        if not page or offset >= total:
            return found


def read_customers(url: str) -> Any:
    def work(session: Session) -> list[Any]:
        table = Customer.__table__  # type: ignore[attr-defined]
        query = sa.select(
            table.c.id, table.c.email, table.c.marketing_opt_in, table.c.brevo_contact_id
        ).order_by(table.c.id)
        return list(session.connection().execute(query))

    return in_thread(url, work)


async def reconcile(brevo: Brevo, url: str) -> Reconciliation:
    contacts = await all_contacts(brevo)
    return compare(await read_customers(url), contacts)


def save_reconciliation(session: Session, account: str, found: Reconciliation) -> None:
    set_cursor(session, PROVIDER, account, STREAM, json.dumps(asdict(found)))


def load_reconciliation(session: Session, account: str) -> dict[str, Any] | None:
    saved = get_cursor(session, PROVIDER, account, STREAM)
    return json.loads(saved) if saved else None
