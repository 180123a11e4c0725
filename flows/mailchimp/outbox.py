"""The outbox's database side: claim due events, collapse them per contact, record outcomes.

* **Claim**: one `UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP LOCKED) RETURNING`: on
  PostgreSQL two drainers skip each other's rows, and on SQLite the statement takes the write
  lock before it reads. A claim is a lease (`claimed_until`): a drainer that dies frees its
  events when the lease ends, without any lock held across requests.
* **Collapse**: a contact's events become one action decided by the contact as it is now (the
  application is the source of truth): gone or deleted → delete; no email → skip; otherwise an
  upsert, unless it matches what was last pushed.
* **Outcomes**: done events are deleted with the push state written in the same transaction.
  A failure that may pass (5xx, timeouts, 429s the client gave up on) is retried after 1 s,
  2 s, 4 s, 8 s… at most 5 min (the seed); at its fifth attempt the connection pauses. A refusal
  of the record itself (4xx) is a `sync_failure` with Mailchimp's message: permanent for
  compliance states and forgotten addresses (push §3.5, §3.6), otherwise retried on the same
  schedule and then left to the next Sync Now, without pausing anything.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from flows.mailchimp.connections import mark_synced, set_status
from flows.mailchimp.members import (
    OPERATION,
    PROVIDER,
    Pushed,
    Wanted,
    pushed_from,
    record_key,
    wanted,
)
from flows.mailchimp.tables import Contact, MailchimpSyncQueue
from shared.models import PushState
from shared.runs import Counts, record_failure, resolve_failures, save_push_state

CLAIM_SIZE = 500  # events per round: a round's requests finish well inside the lease
CLAIM_LEASE = timedelta(minutes=10)
MAX_ATTEMPTS = 5  # the seed
BACKOFF_FIRST_SECONDS = 1.0  # the seed: 1 s, 2 s, 4 s, 8 s…
BACKOFF_CAP_SECONDS = 300.0  # … at most 5 min


def backoff(attempts: int) -> timedelta:
    """The wait after the `attempts`-th failure."""
    seconds = BACKOFF_FIRST_SECONDS * 2 ** max(attempts - 1, 0)
    return timedelta(seconds=min(seconds, BACKOFF_CAP_SECONDS))


def _queue() -> Any:
    return MailchimpSyncQueue.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Event:
    id: int
    contact_id: str
    operation: str
    email: str | None
    attempts: int


def claim(
    session: Session, owner: str, drainer: str, now: datetime, limit: int = CLAIM_SIZE
) -> list[Event]:
    """Lease up to `limit` due events of `owner`, oldest first."""
    queue = _queue()
    due = (
        sa.select(queue.c.id)
        .where(*_due(queue, owner, now))
        .order_by(queue.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    rows = session.execute(
        sa.update(queue)
        .where(queue.c.id.in_(due.scalar_subquery()))
        .values(claimed_by=drainer, claimed_until=now + CLAIM_LEASE)
        .returning(
            queue.c.id, queue.c.contact_id, queue.c.operation, queue.c.email, queue.c.attempts
        )
    ).all()
    return sorted((Event(*row) for row in rows), key=lambda e: e.id)


def peek(session: Session, owner: str, now: datetime, limit: int = CLAIM_SIZE) -> list[Event]:
    """The events `claim` would take, left where they are (a dry run)."""
    queue = _queue()
    rows = session.execute(
        sa.select(
            queue.c.id, queue.c.contact_id, queue.c.operation, queue.c.email, queue.c.attempts
        )
        .where(*_due(queue, owner, now))
        .order_by(queue.c.id)
        .limit(limit)
    ).all()
    return [Event(*row) for row in rows]


def _due(queue: Any, owner: str, now: datetime) -> list[Any]:
    return [
        queue.c.owner_id == owner,
        sa.or_(queue.c.next_retry_at.is_(None), queue.c.next_retry_at <= now),
        sa.or_(queue.c.claimed_until.is_(None), queue.c.claimed_until < now),
    ]


def next_due(session: Session, owner: str, now: datetime) -> datetime | None:
    """When the owner's next event nobody holds is due (None: there is none)."""
    queue = _queue()
    value: datetime | None = session.execute(
        sa.select(sa.func.min(sa.func.coalesce(queue.c.next_retry_at, queue.c.created_at))).where(
            queue.c.owner_id == owner,
            sa.or_(queue.c.claimed_until.is_(None), queue.c.claimed_until < now),
        )
    ).scalar_one_or_none()
    if value is not None and value.tzinfo is None:  # func.min loses the column's type
        from datetime import UTC

        value = value.replace(tzinfo=UTC)
    return value


def pending(session: Session, owner: str) -> int:
    queue = _queue()
    return int(
        session.execute(
            sa.select(sa.func.count()).select_from(queue).where(queue.c.owner_id == owner)
        ).scalar_one()
    )


# ---- collapse ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Upsert:
    want: Wanted
    before: Pushed | None  # None: never pushed


@dataclass(frozen=True)
class Delete:
    contact_id: str
    email: str


@dataclass
class Round:
    """One claim's events, collapsed: what to send, and what needs nothing."""

    events: list[Event]
    upserts: list[Upsert] = field(default_factory=list)
    deletes: list[Delete] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)  # contact ids
    skipped: list[str] = field(default_factory=list)  # contact ids without email
    nothing: list[str] = field(default_factory=list)  # deleted before it was ever pushed

    def event_ids(self, contact_id: str) -> list[int]:
        return [e.id for e in self.events if e.contact_id == contact_id]


def collapse(session: Session, account: str, events: list[Event]) -> Round:
    """One action per contact, from its current row and what was last pushed."""
    work = Round(events)
    by_contact: dict[str, list[Event]] = defaultdict(list)
    for event in events:
        by_contact[event.contact_id].append(event)
    ids = list(by_contact)
    contacts = {c.id: c for c in session.exec(select(Contact).where(col(Contact.id).in_(ids)))}
    states = {
        row.record_key: pushed_from(row.payload_hash, row.pushed)
        for row in session.exec(
            select(PushState).where(
                PushState.provider == PROVIDER,
                PushState.account == account,
                col(PushState.record_key).in_([record_key(i) for i in ids]),
            )
        )
    }
    for contact_id, its_events in by_contact.items():
        contact = contacts.get(contact_id)
        before = states.get(record_key(contact_id))
        want = None if contact is None or contact.deleted else wanted(contact)
        if want is not None:
            if before is not None and before.digest == want.digest:
                work.unchanged.append(contact_id)
            else:
                work.upserts.append(Upsert(want, before))
            continue
        captured = next((e.email for e in reversed(its_events) if e.email), None)
        email = (before.email if before else None) or captured
        if contact is not None and not contact.deleted:  # kept, but without an email
            work.skipped.append(contact_id)
        if email:
            work.deletes.append(Delete(contact_id, email))
        elif contact is None or contact.deleted:
            work.nothing.append(contact_id)
    return work


# ---- outcomes ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Done:
    contact_id: str
    want: Wanted | None  # None: deleted
    created: bool = False


@dataclass(frozen=True)
class Refused:
    """Mailchimp refused the record itself (4xx)."""

    contact_id: str
    status: int | None
    message: str
    body: Any
    permanent: bool


@dataclass(frozen=True)
class Failed:
    """A failure that may pass (5xx, timeout, too many requests)."""

    contact_id: str
    message: str


Outcome = Done | Refused | Failed


@dataclass(frozen=True)
class Recorded:
    counts: Counts
    paused: str | None  # the reason, when this round paused the connection
    resumed: bool


def save_done(session: Session, account: str, done: list[Done]) -> None:
    """Push state for what was sent (deleted contacts lose theirs); their failures resolve."""
    pushes = [o.want for o in done if o.want is not None]
    save_push_state(
        session,
        PROVIDER,
        account,
        [(record_key(w.contact_id), None, w.digest) for w in pushes],
        pushed={record_key(w.contact_id): w.pushed() for w in pushes},
    )
    gone = [record_key(o.contact_id) for o in done if o.want is None]
    if gone:
        session.execute(
            sa.delete(PushState).where(
                col(PushState.provider) == PROVIDER,
                col(PushState.account) == account,
                col(PushState.record_key).in_(gone),
            )
        )
    resolve_failures(
        session,
        provider=PROVIDER,
        account=account,
        operation=OPERATION,
        record_keys=[record_key(o.contact_id) for o in done],
    )


def save_refused(session: Session, account: str, run_id: int, refused: Refused) -> None:
    record_failure(
        session,
        provider=PROVIDER,
        account=account,
        record_key=record_key(refused.contact_id),
        operation=OPERATION,
        message=refused.message,
        status_code=refused.status,
        detail=refused.body,
        run_id=run_id,
        permanent=refused.permanent,
        max_attempts=MAX_ATTEMPTS,
    )


def record(
    session: Session,
    owner: str,
    account: str,
    run_id: int,
    work: Round,
    outcomes: list[Outcome],
    now: datetime,
) -> Recorded:
    """Write a round's outcomes in one transaction; see the module docstring for the rules."""
    queue = _queue()
    finished: list[int] = []
    for contact_id in work.unchanged + work.skipped + work.nothing:
        finished += work.event_ids(contact_id)
    done = [o for o in outcomes if isinstance(o, Done)]
    for success in done:
        finished += work.event_ids(success.contact_id)
    save_done(session, account, done)
    paused: str | None = None
    for outcome in outcomes:
        if isinstance(outcome, Done):
            continue
        ids = work.event_ids(outcome.contact_id)
        attempts = 1 + max(e.attempts for e in work.events if e.id in ids)
        if isinstance(outcome, Refused):
            save_refused(session, account, run_id, outcome)
            if outcome.permanent or attempts >= MAX_ATTEMPTS:
                finished += ids  # the failure row keeps it; Sync Now sends it again
                continue
        elif attempts >= MAX_ATTEMPTS:
            paused = outcome.message
        session.execute(
            sa.update(queue)
            .where(queue.c.id.in_(ids))
            .values(
                attempts=attempts,
                next_retry_at=now + backoff(attempts),
                last_error=outcome.message[:4000],
                claimed_by=None,
                claimed_until=None,
            )
        )
    if finished:
        session.execute(sa.delete(queue).where(queue.c.id.in_(finished)))
    resumed = mark_synced(session, owner, now) if done else False
    if paused is not None:
        set_status(session, owner, "paused", paused)
    counts = Counts(
        records_read=len({e.contact_id for e in work.events}),
        created=sum(1 for o in done if o.created),
        updated=sum(1 for o in done if not o.created),
        unchanged=len(work.unchanged),
        skipped=len(work.skipped),
        failed=sum(1 for o in outcomes if not isinstance(o, Done)),
    )
    return Recorded(counts, paused, resumed)


def release(session: Session, events: list[Event]) -> None:
    """Give back claimed events untouched (a dry run, or a connection that stopped)."""
    queue = _queue()
    ids = [e.id for e in events]
    if ids:
        session.execute(
            sa.update(queue).where(queue.c.id.in_(ids)).values(claimed_by=None, claimed_until=None)
        )
