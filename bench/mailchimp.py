"""Mailchimp scenarios: Sync Now of 10,000 contacts over 3 connections, a drain of 1,000 events.

Mailchimp has no request-rate quota, only 10 simultaneous connections per account (push
§3.11), so the bound is latency: the sandbox answers every request after `LATENCY` (200 ms)
and shares this process. Each owner has an account of its own.

* `mailchimp-full`: 10,000 contacts (4,000 + 3,500 + 2,500). Each audience already holds 10 %
  of its owner's contacts with stale names and no tags, plus 100 members only Mailchimp has.
  `correct`: every contact with an email is a member whose merge fields and tags equal the
  application's, the Mailchimp-only members are untouched, and no account ever had more than
  10 requests in flight. The acceptance bound is 60 s of wall time.
* `mailchimp-outbox`: after that, 1,000 events over the three owners (CSV imports, edits, tag
  changes, deletes) and one drain. `correct`: the outbox is empty and every audience mirrors
  its owner's contacts again (deleted ones archived).
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from typing import Any

import httpx
from sqlmodel import select

from bench.harness import BenchResult, Scenario, peak_rss_mb, warm_prefect
from flows.mailchimp.flow import mailchimp_sync
from flows.mailchimp.members import wanted
from flows.mailchimp.outbox import pending
from flows.mailchimp.tables import Contact
from sandbox.app_contacts import change_contacts, connect_owner, seed_contacts
from sandbox.mailchimp import MailchimpSandbox, create_app, subscriber_hash
from sandbox.registry import request_stats
from sandbox.server import serve
from shared.crypto import Keyring, new_key
from shared.db import dispose_engine, ensure_schema, session_scope

OWNERS = {"ana": 4_000, "ben": 3_500, "cy": 2_500}
LATENCY = 0.2
PRESENT_SHARE = 0.1  # of each owner's contacts already in the audience
MAILCHIMP_ONLY = 100
EVENTS = {"created": 400, "edited": 250, "retagged": 200, "deleted": 150}  # 1,000 in all
WALL_BOUND = 60.0


def _preload(sandbox: MailchimpSandbox, base_url: str, list_id: str, url: str, owner: str) -> None:
    """Members that exist before the first sync: stale copies of some contacts, and strangers."""
    with session_scope(url) as session:
        contacts = list(session.exec(select(Contact).where(Contact.owner_id == owner)))
    present = [c for c in contacts if c.email][: int(len(contacts) * PRESENT_SHARE)]
    members = [
        {"email_address": c.email, "status": "subscribed", "merge_fields": {"FNAME": "Stale"}}
        for c in present
    ]
    members += [
        {"email_address": f"stranger{n}@{owner}.example", "status": "subscribed"}
        for n in range(MAILCHIMP_ONLY)
    ]
    key = sandbox.accounts[f"{owner} account"].api_key
    with httpx.Client(base_url=f"{base_url}/3.0", auth=("bench", key), timeout=60) as client:
        for start in range(0, len(members), 500):
            chunk = members[start : start + 500]
            client.post(f"lists/{list_id}", json={"members": chunk}).raise_for_status()


def check(url: str, sandbox: MailchimpSandbox, audiences: dict[str, str]) -> tuple[bool, int]:
    """(every audience mirrors its owner's contacts exactly; how many contacts were checked)."""
    checked = 0
    with session_scope(url) as session:
        contacts = list(session.exec(select(Contact)))
    by_owner: dict[str, set[str]] = {owner: set() for owner in audiences}
    for contact in contacts:
        list_id = audiences[contact.owner_id]
        want = None if contact.deleted else wanted(contact)
        if want is None:
            continue
        checked += 1
        by_owner[contact.owner_id].add(subscriber_hash(want.email))
        member = sandbox.member(list_id, want.email)
        if member is None or member["status"] != "subscribed":
            return False, checked
        if member["merge_fields"] != want.merge_fields:
            return False, checked
        if set(sandbox.tags(list_id, want.email)) != set(want.tags):
            return False, checked
    for owner, list_id in audiences.items():
        members = sandbox.accounts[f"{owner} account"].audiences[list_id].members
        for key, member in members.items():
            stranger = member.email.startswith("stranger")
            if stranger and (member.status != "subscribed" or member.tags):
                return False, checked
            if not stranger and key not in by_owner[owner] and member.status != "archived":
                return False, checked  # a deleted contact's member must be archived
    return True, checked


def _run(scenario: str) -> BenchResult:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/bench.db"
        ensure_schema(url)
        key = new_key()
        ring = Keyring(key, "MAILCHIMP_TOKEN_KEYS")
        asyncio.run(warm_prefect())
        app = create_app(default_account=False, latency=LATENCY)
        sandbox: MailchimpSandbox = app.state.sandbox
        with serve(app) as base_url:
            os.environ.update(
                DATABASE_URL=url, MAILCHIMP_TOKEN_KEYS=key, SYNCFLOWS_ENV_FILE=os.devnull
            )
            audiences = {}
            for owner, count in OWNERS.items():
                audiences[owner] = connect_owner(url, sandbox, base_url, ring, owner)
                seed_contacts(url, owner, count)
                _preload(sandbox, base_url, audiences[owner], url, owner)
            events = 0
            if scenario == "mailchimp-outbox":
                asyncio.run(mailchimp_sync())  # the first reconciliation, not measured
                for n, owner in enumerate(OWNERS):
                    share = {k: v // len(OWNERS) + (n == 0) * (v % len(OWNERS))
                             for k, v in EVENTS.items()}  # fmt: skip
                    events += change_contacts(url, owner, seed=n, **share).events
            for account in sandbox.accounts.values():
                account.peak = 0
            before = len(sandbox.log)
            started = time.perf_counter()
            result = asyncio.run(mailchimp_sync(full_sync=scenario == "mailchimp-full"))
            wall = time.perf_counter() - started
            peak = peak_rss_mb()
            log = sandbox.log[before:]
            correct, checked = check(url, sandbox, audiences)
            peaks = {name: a.peak for name, a in sandbox.accounts.items()}
            with session_scope(url) as session:
                left = sum(pending(session, owner) for owner in OWNERS)
        dispose_engine(url)
    stats = request_stats(log)
    summaries = result.summaries
    counts: dict[str, Any] = {
        field: sum(getattr(s.counts, field) for s in summaries)
        for field in ("records_read", "created", "updated", "unchanged", "skipped", "failed")
    }
    correct = (
        correct
        and len(summaries) == len(OWNERS)
        and all(s.state == "completed" for s in summaries)
        and max(peaks.values()) <= 10
        and left == 0
        and counts["failed"] == 0
    )
    return BenchResult(
        scenario=scenario,
        records=counts["records_read"],
        requests=sum(s.requests for s in summaries),
        wall_s=wall,
        floor_s=WALL_BOUND if scenario == "mailchimp-full" else 0.0,
        http_429=int(stats["by_status"].get("429", 0)),
        correct=correct,
        peak_rss_mb=peak,
        details={
            "owners": OWNERS,
            "events": events,
            "checked": checked,
            "counts": counts,
            "peak_concurrency": peaks,
            "left_in_outbox": left,
            "latency_s": LATENCY,
            "requests_by_route": stats["by_route"],
            "floor": "mailchimp-full: the issue's 60 s bound, not a computed floor",
        },
    )


SCENARIOS = (
    Scenario(
        "mailchimp-full",
        "Sync Now: 10,000 contacts over 3 connections, 200 ms latency",
        lambda: _run("mailchimp-full"),
    ),
    Scenario(
        "mailchimp-outbox",
        "1,000 outbox events (imports, edits, tags, deletes) over 3 connections",
        lambda: _run("mailchimp-outbox"),
    ),
)
