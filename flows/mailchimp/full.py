"""Sync Now: a full reconciliation of one connection's audience against the owner's contacts.

The seed's "queue all contacts for sync, deduplicated against existing Mailchimp records": the
audience is listed (1,000 members a page, push §3.9) and compared with every contact, and only
what differs is sent:

* members missing (or archived) are batch-subscribed as `subscribed`; members whose merge
  fields differ are batch-updated without a status, so an unsubscribed, cleaned or pending
  member keeps it (push §3.6, §3.7: `update_existing`, ≤ 500 a call);
* tag changes go as one `POST …/tags` operation per member inside `/batches` (push §3.8): the
  documented way past the 10 connections, and the tags endpoint is the only reliable one
  (push §3.4);
* contacts deleted in the application whose member is still there are archived (or forgotten).

Members that exist only in Mailchimp are left alone (the seed's open question 4: skip).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from sqlmodel import Session, select

from flows.mailchimp.api import BATCH_OPERATIONS, SUBSCRIBE_LIMIT, subscriber_hash, tag_body
from flows.mailchimp.members import (
    OPERATION,
    PROVIDER,
    Pushed,
    Wanted,
    pushed_from,
    record_key,
    same_email,
    tag_changes,
    wanted,
)
from flows.mailchimp.outbox import Delete
from flows.mailchimp.tables import Contact
from shared.models import PushState


@dataclass(frozen=True)
class Member:
    """A member as listed: status, merge fields, tag names (None when the list is cut off)."""

    email: str
    status: str
    merge_fields: dict[str, Any]
    tags: set[str] | None


def member_from(body: dict[str, Any]) -> Member:
    tags = body.get("tags") or []
    names = {str(t.get("name")) for t in tags if isinstance(t, dict)}
    count = body.get("tags_count")
    complete = not isinstance(count, int) or count <= len(names)
    return Member(
        str(body.get("email_address", "")),
        str(body.get("status", "")),
        dict(body.get("merge_fields") or {}),
        names if complete else None,
    )


@dataclass
class FullPlan:
    """What a full sync sends, and what already matches."""

    subscribe: list[tuple[Wanted, bool]] = field(default_factory=list)  # (member, is new)
    tags: dict[str, tuple[Wanted, list[str], list[str]]] = field(default_factory=dict)
    unchanged: list[Wanted] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    deletes: list[Delete] = field(default_factory=list)
    contacts: int = 0

    @property
    def tag_only(self) -> list[Wanted]:
        sending = {w.contact_id for w, _ in self.subscribe}
        return [w for w, _, _ in self.tags.values() if w.contact_id not in sending]


@dataclass(frozen=True)
class Known:
    """The owner's contacts and what was last pushed of each (read in one transaction)."""

    contacts: list[Contact]
    pushed: dict[str, Pushed]


def read_known(session: Session, owner: str, account: str) -> Known:
    contacts = list(session.exec(select(Contact).where(Contact.owner_id == owner)).all())
    rows = session.exec(
        select(PushState).where(PushState.provider == PROVIDER, PushState.account == account)
    ).all()
    return Known(contacts, {r.record_key: pushed_from(r.payload_hash, r.pushed) for r in rows})


def plan_full(known: Known, members: dict[str, Member]) -> FullPlan:
    """Compare every contact with its member (`members` keyed by subscriber hash)."""
    plan = FullPlan(contacts=len(known.contacts))
    for contact in known.contacts:
        before = known.pushed.get(record_key(contact.id))
        want = None if contact.deleted else wanted(contact)
        old_email = before.email if before else None
        if want is None or (old_email and not same_email(old_email, want.email)):
            # Deleted, without email, or moved to another address: the old member goes.
            old = members.get(subscriber_hash(old_email)) if old_email else None
            if old is not None and old.status != "archived":
                plan.deletes.append(Delete(contact.id, old.email))
            if want is None:
                if not contact.deleted:
                    plan.skipped.append(contact.id)
                continue
        member = members.get(subscriber_hash(want.email))
        gone = member is None or member.status == "archived"
        fields_differ = gone or any(
            str((member.merge_fields if member else {}).get(k, "")) != v
            for k, v in want.merge_fields.items()
        )
        present = set() if member is None else member.tags
        active, inactive = tag_changes(want.tags, before.tags if before else (), present)
        if fields_differ:
            plan.subscribe.append((want, gone))
        if active or inactive:
            plan.tags[want.contact_id] = (want, active, inactive)
        if not fields_differ and not (active or inactive):
            plan.unchanged.append(want)
    return plan


def subscribe_chunks(plan: FullPlan) -> list[list[dict[str, Any]]]:
    """Batch-subscribe bodies of ≤ 500 members; only new members get a status (§3.6)."""
    items = []
    for want, new in plan.subscribe:
        item: dict[str, Any] = {"email_address": want.email, "merge_fields": want.merge_fields}
        if new:
            item["status"] = "subscribed"
        items.append(item)
    return [items[i : i + SUBSCRIBE_LIMIT] for i in range(0, len(items), SUBSCRIBE_LIMIT)]


def tag_operations(
    list_id: str, changes: list[tuple[Wanted, list[str], list[str]]]
) -> list[list[dict[str, Any]]]:
    """`/batches` operations, ≤ 500 a batch, one `POST …/tags` per member (§3.4, §3.8)."""
    operations = [
        {
            "method": "POST",
            "path": f"/lists/{list_id}/members/{subscriber_hash(want.email)}/tags",
            "body": json.dumps(tag_body(active, inactive)),  # §3.8: a string
            "operation_id": want.contact_id,
        }
        for want, active, inactive in changes
    ]
    return [
        operations[i : i + BATCH_OPERATIONS] for i in range(0, len(operations), BATCH_OPERATIONS)
    ]


__all__ = ["OPERATION", "FullPlan", "Known", "Member", "member_from", "plan_full", "read_known"]
