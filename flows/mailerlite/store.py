"""What the MailerLite flow keeps in the database: push state, failures, the field-key cache.

Each user's push is recorded in `push_state` (record key `user:<id>`) with the hash of the
payload MailerLite accepted, so the next run sends only users whose payload changed. A refusal
is a `sync_failure` row with MailerLite's message; its user keeps the old hash (or none), so
every later run sends it again until it goes through. Results are written per batch, in one
transaction with their failures, so a run that dies resends at most what was in flight.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from flows.mailerlite.api import INACTIVE_STATUSES, Answer
from shared.models import PushState
from shared.runs import (
    Counts,
    delete_cursor,
    get_cursor,
    record_failure,
    resolve_failures,
    save_push_state,
    set_cursor,
)

PROVIDER = "mailerlite"
OPERATION = "push"
FIELD_KEYS = "field_keys"  # sync_cursor stream: {"group_id": …, "keys": {name: key}}


def record_key(user_id: int) -> str:
    return f"user:{user_id}"


@dataclass(frozen=True)
class Pending:
    """One user to send: the fields by name, and the hash of what is sent."""

    user_id: int
    email: str
    fields: dict[str, Any]
    digest: str

    @property
    def key(self) -> str:
        return record_key(self.user_id)

    def payload(self, keys: dict[str, str], group_id: str) -> dict[str, Any]:
        """The `POST subscribers` body: fields under their MailerLite keys, the one group."""
        fields = {keys[name]: value for name, value in self.fields.items()}
        return {"email": self.email, "fields": fields, "groups": [group_id]}


def skip_reason(status: str) -> str:
    return f"the subscriber is {status} in MailerLite; a push does not re-activate it"


def still_due(
    session: Session, account: str, items: Sequence[Pending], since: datetime
) -> list[Pending]:
    """`items` less those this run (started at `since`) has recorded already: a retried task
    goes on where its last attempt stopped."""
    recorded = session.exec(
        select(PushState.record_key, PushState.payload_hash).where(
            PushState.provider == PROVIDER,
            PushState.account == account,
            col(PushState.record_key).in_([i.key for i in items]),
            col(PushState.pushed_at) >= since,
        )
    ).all()
    done = set(recorded)
    return [i for i in items if (i.key, i.digest) not in done]


def record_answers(
    session: Session, account: str, run_id: int, results: Sequence[tuple[Pending, Answer]]
) -> Counts:
    """Push state for the accepted, failures for the refused; the counts they make."""
    counts = Counts()
    pushed: list[tuple[str, str | None, str]] = []
    statuses: dict[str, str] = {}
    for item, answer in results:
        if not answer.ok:
            counts.failed += 1
            record_failure(
                session,
                provider=PROVIDER,
                account=account,
                record_key=item.key,
                operation=OPERATION,
                message=answer.message,
                status_code=answer.code,
                detail=answer.body,
                run_id=run_id,
            )
            continue
        remote_id = answer.subscriber.get("id")
        pushed.append((item.key, str(remote_id) if remote_id else None, item.digest))
        if answer.status in INACTIVE_STATUSES:
            counts.skipped += 1
            statuses[item.key] = answer.status
        elif answer.code == 201:
            counts.created += 1
        else:
            counts.updated += 1
    save_push_state(session, PROVIDER, account, pushed, statuses)
    resolve_failures(
        session,
        provider=PROVIDER,
        account=account,
        operation=OPERATION,
        record_keys=[key for key, _, _ in pushed],
    )
    return counts


def record_no_email(session: Session, account: str, run_id: int, user_ids: Sequence[int]) -> None:
    for user_id in user_ids:
        record_failure(
            session,
            provider=PROVIDER,
            account=account,
            record_key=record_key(user_id),
            operation=OPERATION,
            message="the user has no email address",
            run_id=run_id,
        )


def load_field_keys(
    session: Session, account: str, group_id: str, names: Sequence[str]
) -> dict[str, str] | None:
    """The cached name → key map, if it covers `names` and was checked with this group."""
    saved = get_cursor(session, PROVIDER, account, FIELD_KEYS)
    if saved is None:
        return None
    cache = json.loads(saved)
    keys: dict[str, str] = cache.get("keys") or {}
    if cache.get("group_id") != group_id or any(name not in keys for name in names):
        return None
    return keys


def save_field_keys(session: Session, account: str, group_id: str, keys: dict[str, str]) -> None:
    text = json.dumps({"group_id": group_id, "keys": keys}, sort_keys=True)
    set_cursor(session, PROVIDER, account, FIELD_KEYS, text)


def forget_field_keys(session: Session, account: str) -> None:
    """A 422 named a field or the group: the next run lists fields and groups again."""
    delete_cursor(session, PROVIDER, account, FIELD_KEYS)
