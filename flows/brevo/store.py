"""What the Brevo flow writes: push state, the contact id back on the customer, failures.

A synced customer's `push_state` row (record key `customer:<id>`) holds the hash of the
contact sent and Brevo's contact id; the same transaction writes that id to
`customers.brevo_contact_id`. A refusal is a `sync_failure` with Brevo's message; the customer
keeps its old hash, so the next run sends it again. An opted-out customer's row is marked
`opted_out` with a hash no contact can have, so opting in again sends it again.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlmodel import Session, col, select

from flows.brevo.tables import Customer
from shared.models import PushState
from shared.runs import Counts, record_failure, resolve_failures, save_push_state

PROVIDER = "brevo"
OPERATION = "push"
OPTED_OUT = "opted_out"


def record_key(customer_id: str) -> str:
    return f"customer:{customer_id}"


@dataclass(frozen=True)
class Synced:
    customer_id: str
    contact_id: int
    digest: str
    created: bool


@dataclass(frozen=True)
class Refused:
    customer_id: str
    status: int | None
    message: str


def record_results(
    session: Session,
    account: str,
    run_id: int,
    synced: Sequence[Synced],
    refused: Sequence[Refused],
) -> Counts:
    """Push state and `brevo_contact_id` for the synced, failures for the refused."""
    save_push_state(
        session,
        PROVIDER,
        account,
        [(record_key(s.customer_id), str(s.contact_id), s.digest) for s in synced],
    )
    table = Customer.__table__  # type: ignore[attr-defined]
    if synced:
        session.connection().execute(
            table.update()
            .where(table.c.id == sa.bindparam("customer"))
            .values(brevo_contact_id=sa.bindparam("contact")),
            [{"customer": s.customer_id, "contact": s.contact_id} for s in synced],
        )
    resolve_failures(
        session,
        provider=PROVIDER,
        account=account,
        operation=OPERATION,
        record_keys=[record_key(s.customer_id) for s in synced],
    )
    for refusal in refused:
        record_failure(
            session,
            provider=PROVIDER,
            account=account,
            record_key=record_key(refusal.customer_id),
            operation=OPERATION,
            message=refusal.message,
            status_code=refusal.status,
            run_id=run_id,
        )
    created = sum(1 for s in synced if s.created)
    return Counts(created=created, updated=len(synced) - created, failed=len(refused))


def opted_out_since_push(session: Session, account: str) -> list[tuple[str, str]]:
    """(customer id, email) of customers pushed before who no longer opt in."""
    keys = select(PushState.record_key).where(
        PushState.provider == PROVIDER,
        PushState.account == account,
        col(PushState.remote_status).is_(None),
    )
    pushed = {key.removeprefix("customer:") for key in session.exec(keys)}
    customers = session.exec(
        select(Customer.id, Customer.email).where(col(Customer.marketing_opt_in).is_(False))
    )
    return [(cid, email.strip().lower()) for cid, email in customers if cid in pushed]


def record_opt_outs(session: Session, account: str, customer_ids: Iterable[str]) -> None:
    keys = [record_key(cid) for cid in customer_ids]
    save_push_state(
        session,
        PROVIDER,
        account,
        [(key, None, OPTED_OUT) for key in keys],
        dict.fromkeys(keys, OPTED_OUT),
    )
