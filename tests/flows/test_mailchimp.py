"""The Mailchimp flow end to end over loopback, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlmodel import select

import flows.mailchimp.outbox
from flows.mailchimp.capture import capture
from flows.mailchimp.connections import PAUSED_NOTICE
from flows.mailchimp.flow import MailchimpResult, SyncNowRefused, mailchimp_sync
from flows.mailchimp.manage import status_lines
from flows.mailchimp.tables import AccountOwner, Contact, MailchimpConnection, MailchimpSyncQueue
from sandbox.mailchimp import MailchimpSandbox, create_app, subscriber_hash
from sandbox.server import serve
from shared.crypto import Keyring, new_key
from shared.db import ensure_schema, session_scope
from shared.models import SyncFailure, SyncRun
from shared.settings import MissingConfiguration

pytestmark = pytest.mark.usefixtures("prefect_harness")
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


@dataclass
class World:
    sandbox: MailchimpSandbox
    base_url: str
    url: str
    ring: Keyring
    tokens: dict[str, str]  # owner → token

    def connect(
        self,
        owner: str,
        account: str | None = None,
        fields: tuple[str, ...] = ("FNAME", "LNAME", "PHONE"),
        **columns: Any,
    ) -> str:
        """An owner connected to `account` (created when new) with a fresh audience."""
        name = account or f"Account of {owner}"
        found = self.sandbox.accounts.get(name) or self.sandbox.add_account(name)
        list_id = self.sandbox.add_audience(found, f"Audience of {owner}", fields)
        token = self.sandbox.mint_token(found)
        self.tokens[owner] = token
        with session_scope(self.url) as session:
            if session.get(AccountOwner, owner) is None:
                session.add(AccountOwner(id=owner, name=owner, created_at=NOW))
                session.flush()
            session.add(
                MailchimpConnection(
                    owner_id=owner,
                    access_token_encrypted=self.ring.encrypt(token),
                    server_prefix=found.dc,
                    api_endpoint=self.base_url,
                    account_id=found.account_id,
                    account_name=found.name,
                    audience_id=list_id,
                    audience_name=f"Audience of {owner}",
                    connected_at=NOW,
                    **columns,
                )
            )
        return list_id

    def member(self, list_id: str, email: str) -> dict[str, Any] | None:
        return self.sandbox.member(list_id, email)

    def writes(self, since: int = 0) -> list[Any]:
        return [e for e in self.sandbox.log[since:] if e.method != "GET"]


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch, database_url: str) -> Iterator[World]:
    app = create_app(default_account=False)
    ensure_schema(database_url)
    key = new_key()
    # The seed's 1 s, 2 s, 4 s… shrunk, so five attempts fit in a test.
    monkeypatch.setattr(flows.mailchimp.outbox, "BACKOFF_FIRST_SECONDS", 0.02)
    with serve(app) as base_url:
        monkeypatch.setenv("DATABASE_URL", database_url)
        monkeypatch.setenv("MAILCHIMP_TOKEN_KEYS", key)
        monkeypatch.setenv("HTTP_TIMEOUT_SECONDS", "5")
        yield World(app.state.sandbox, base_url, database_url, Keyring(key, "keys"), {})


def add_contacts(
    url: str, owner: str, count: int, start: int = 0, operation: str = "create", **columns: Any
) -> list[Contact]:
    """Contacts written the way the application would: with `capture` in the same transaction."""
    made = []
    with session_scope(url) as session:
        for n in range(start, start + count):
            values = {
                "first_name": f"First{n}",
                "last_name": f"Last{n}",
                "email": f"contact{n}@{owner}.example",
                "phone": f"+1 404 555 {n:04d}",
                "tags": ["client"] if n % 2 else ["client", "vip"],
                "updated_at": NOW,
                **columns,
            }
            contact_id = values.pop("id", f"{owner}-{n}")
            made.append(Contact(id=contact_id, owner_id=owner, **values))
        session.add_all(made)
        session.flush()
        capture(session, operation, made)
    return made


def edit(url: str, contact_id: str, **changes: Any) -> None:
    with session_scope(url) as session:
        contact = session.get(Contact, contact_id)
        assert contact is not None
        for name, value in changes.items():
            setattr(contact, name, value)
        session.add(contact)
        session.flush()
        capture(session, "delete" if changes.get("deleted") else "update", contact)


def hard_delete(url: str, contact_id: str) -> None:
    with session_scope(url) as session:
        contact = session.get(Contact, contact_id)
        assert contact is not None
        capture(session, "delete", contact)
        session.delete(contact)


def run(**parameters: Any) -> MailchimpResult:
    return asyncio.run(mailchimp_sync(**parameters))


def queued(url: str) -> list[MailchimpSyncQueue]:
    with session_scope(url) as session:
        return list(session.exec(select(MailchimpSyncQueue)))


def connection(url: str, owner: str) -> MailchimpConnection:
    with session_scope(url) as session:
        found = session.exec(
            select(MailchimpConnection).where(MailchimpConnection.owner_id == owner)
        ).one()
        return found


def notes(url: str, owner: str) -> list[str]:
    """What `syncflows mailchimp status` shows the owner."""
    with session_scope(url) as session:
        return status_lines(session, owner)


def failures(url: str) -> dict[str, SyncFailure]:
    with session_scope(url) as session:
        rows = session.exec(select(SyncFailure).where(SyncFailure.resolved_at == None))  # noqa: E711
        return {f.record_key: f for f in rows}


def assert_mirrored(world: World, list_id: str, owner: str) -> None:
    """Every live contact with an email is a member with its fields and (at least) its tags."""
    with session_scope(world.url) as session:
        contacts = list(session.exec(select(Contact).where(Contact.owner_id == owner)))
    for contact in contacts:
        if contact.deleted or not contact.email:
            continue
        member = world.member(list_id, contact.email)
        assert member is not None, contact.email
        assert member["status"] != "archived", contact.email
        assert member["merge_fields"] == {
            "FNAME": contact.first_name or "",
            "LNAME": contact.last_name or "",
            "PHONE": contact.phone or "",
        }
        assert set(contact.tags) <= set(world.sandbox.tags(list_id, contact.email))


# ---- first run and reruns ------------------------------------------------------------------------


def test_a_new_connection_is_reconciled_in_full_then_a_rerun_sends_nothing(world: World) -> None:
    list_id = world.connect("ann")
    add_contacts(world.url, "ann", 40)
    add_contacts(world.url, "ann", 3, start=40, email=None)  # not synced: no email

    result = run()

    assert_mirrored(world, list_id, "ann")
    [summary] = result.summaries
    assert summary.mode == "full"
    counts = summary.counts
    assert (counts.records_read, counts.created, counts.skipped) == (43, 40, 3)
    assert world.sandbox.accounts["Account of ann"].audiences[list_id].counts["subscribed"] == 40
    assert queued(world.url) == []  # the full sync covered the queued creates
    assert connection(world.url, "ann").last_full_sync_at is not None

    before = len(world.sandbox.log)
    again = run()
    assert world.writes(before) == []
    assert again.summaries == []  # nothing due: no run, no ledger row


def test_merge_fields_the_audience_lacks_are_created_first(world: World) -> None:
    list_id = world.connect("pia", fields=("FNAME",))  # LNAME and PHONE were removed
    add_contacts(world.url, "pia", 3)

    run()

    audience = world.sandbox.accounts["Account of pia"].audiences[list_id]
    assert audience.merge_fields == ("FNAME", "LNAME", "PHONE")
    assert audience.field_info["PHONE"]["type"] == "phone"
    assert_mirrored(world, list_id, "pia")
    assert failures(world.url) == {}


def test_contacts_in_mailchimp_before_connecting_are_matched_not_duplicated(world: World) -> None:
    list_id = world.connect("bea")
    made = add_contacts(world.url, "bea", 10)
    run()
    world.sandbox.tag(list_id, made[0].email or "", "from-mailchimp")
    with session_scope(world.url) as session:  # a new audience: reconciled again in full
        row = session.exec(select(MailchimpConnection)).one()
        row.last_full_sync_at = None
        session.add(row)

    result = run()

    [summary] = result.summaries
    assert (summary.counts.created, summary.counts.unchanged) == (0, 10)
    assert "from-mailchimp" in world.sandbox.tags(list_id, made[0].email or "")


# ---- the outbox ----------------------------------------------------------------------------------


def test_creates_edits_tags_csv_imports_and_deletes_are_reflected_after_one_drain(
    world: World,
) -> None:
    list_id = world.connect("cid")
    made = add_contacts(world.url, "cid", 6)
    run()  # the first reconciliation
    world.sandbox.tag(list_id, made[1].email or "", "mailchimp-only")

    add_contacts(world.url, "cid", 2, start=100)  # created
    edit(world.url, made[0].id, first_name="Renamed", phone=None)  # edited, phone cleared
    edit(world.url, made[1].id, tags=["client", "hot"])  # tag added
    edit(world.url, made[2].id, tags=["client"])  # "vip" removed
    imported = add_contacts(world.url, "cid", 500, start=1000)  # a CSV import
    edit(world.url, made[3].id, deleted=True)  # soft delete
    hard_delete(world.url, made[4].id)  # hard delete: only the captured email is left
    edit(world.url, made[5].id, email="moved@cid.example")  # a new address

    result = run()

    assert queued(world.url) == []
    assert_mirrored(world, list_id, "cid")
    assert world.member(list_id, made[0].email or "")["merge_fields"]["FNAME"] == "Renamed"
    assert world.member(list_id, made[0].email or "")["merge_fields"]["PHONE"] == ""
    assert set(world.sandbox.tags(list_id, made[1].email or "")) == {
        "client",
        "hot",
        "mailchimp-only",  # set only in Mailchimp: untouched
    }
    assert set(world.sandbox.tags(list_id, made[2].email or "")) == {"client"}  # vip inactive
    for gone in (made[3], made[4]):
        assert world.member(list_id, gone.email or "")["status"] == "archived"
    assert world.member(list_id, made[5].email or "")["status"] == "archived"
    assert world.member(list_id, "moved@cid.example")["status"] == "subscribed"
    assert all(world.member(list_id, c.email or "") for c in imported)
    [summary] = result.summaries
    assert summary.counts.created == 502
    assert summary.counts.failed == 0


def test_several_events_of_one_contact_are_sent_once(world: World) -> None:
    list_id = world.connect("dan")
    [contact] = add_contacts(world.url, "dan", 1)
    run()
    for name in ("A", "B", "C"):
        edit(world.url, contact.id, first_name=name)
    before = len(world.sandbox.log)

    run()

    puts = [e for e in world.writes(before) if e.method == "PUT"]
    assert len(puts) == 1
    assert world.member(list_id, contact.email or "")["merge_fields"]["FNAME"] == "C"


def test_five_503s_pause_the_connection_and_the_next_success_resumes_it(world: World) -> None:
    list_id = world.connect("eve")
    run()
    [contact] = add_contacts(world.url, "eve", 1)
    world.sandbox.faults.add("503", times=5, method="PUT")

    run()

    paused = connection(world.url, "eve")
    assert paused.status == "paused"
    assert "503" in (paused.paused_reason or "")
    assert PAUSED_NOTICE in notes(world.url, "eve")
    [event] = queued(world.url)
    assert (event.attempts, event.contact_id) == (5, contact.id)
    assert world.member(list_id, contact.email or "") is None

    assert event.next_retry_at is not None
    assert event.next_retry_at - event.created_at >= flows.mailchimp.outbox.backoff(5)

    def due_in(seconds: float) -> None:
        with session_scope(world.url) as session:
            when = datetime.now(UTC) + timedelta(seconds=seconds)
            session.execute(sa.update(MailchimpSyncQueue).values(next_retry_at=when))

    due_in(3600)
    before = len(world.sandbox.log)
    run()  # not due yet: a paused connection is not hammered
    assert world.writes(before) == []
    assert connection(world.url, "eve").status == "paused"
    due_in(-1)

    run()  # due again, and Mailchimp answers again

    resumed = connection(world.url, "eve")
    assert (resumed.status, resumed.paused_reason) == ("active", None)
    assert PAUSED_NOTICE not in notes(world.url, "eve")  # the note goes by itself
    assert queued(world.url) == []
    assert world.member(list_id, contact.email or "") is not None


def test_unsubscribed_cleaned_and_forgotten_members_are_never_resubscribed(world: World) -> None:
    list_id = world.connect("fay")
    made = add_contacts(world.url, "fay", 4)
    run()
    emails = [c.email or "" for c in made]
    world.sandbox.set_status(list_id, emails[0], "unsubscribed")
    world.sandbox.set_status(list_id, emails[1], "cleaned")
    world.sandbox.set_status(list_id, emails[2], "unsubscribed")
    edit(world.url, made[2].id, deleted=True)  # archived while unsubscribed
    run()
    forget = world.sandbox  # a GDPR request handled in Mailchimp's web app
    with forget.lock:
        audience = forget.accounts["Account of fay"].audiences[list_id]
        member = audience.members.pop(subscriber_hash(emails[3]))
        audience.forgotten[member.hash] = member.email
        audience.counts[member.status] -= 1

    for contact in made[:2]:
        edit(world.url, contact.id, first_name="Edited")
    add_contacts(world.url, "fay", 1, start=2, id="fay-again")  # the archived address is back
    edit(world.url, made[3].id, first_name="Edited")
    run()

    assert world.member(list_id, emails[0])["status"] == "unsubscribed"
    assert world.member(list_id, emails[0])["merge_fields"]["FNAME"] == "Edited"
    assert world.member(list_id, emails[1])["status"] == "cleaned"
    assert world.member(list_id, emails[2])["status"] == "archived"
    assert world.member(list_id, emails[3]) is None
    found = failures(world.url)
    compliance = found["contact:fay-again"]
    assert compliance.permanent
    assert "compliance state" in compliance.message
    forgotten = found["contact:fay-3"]
    assert forgotten.permanent
    assert "permanently deleted" in forgotten.message
    assert queued(world.url) == []  # permanent: not retried
    assert connection(world.url, "fay").status == "active"  # and not pausing

    with session_scope(world.url) as session:  # Sync Now, through batch subscribe
        session.execute(sa.update(MailchimpConnection).values(last_full_sync_at=NOW))
        session.execute(
            sa.update(Contact).where(Contact.id == made[0].id).values(first_name="Direct")
        )
    before = len(world.sandbox.log)
    run(owner="fay", full_sync=True)
    assert [world.member(list_id, e)["status"] for e in emails[:2]] == ["unsubscribed", "cleaned"]
    assert world.member(list_id, emails[3]) is None
    assert failures(world.url)["contact:fay-3"].permanent
    [subscribe] = [e for e in world.writes(before) if e.path == f"/3.0/lists/{list_id}"]
    sent = {m["email_address"]: m for m in subscribe.body["members"]}
    assert "status" not in sent[emails[0]]  # an existing member's status is never forced


# ---- Sync Now ------------------------------------------------------------------------------------


def test_sync_now_sends_what_differs_and_a_second_within_the_hour_is_refused(
    world: World,
) -> None:
    list_id = world.connect("gus")
    made = add_contacts(world.url, "gus", 30)
    run()
    with session_scope(world.url) as session:  # changed behind the outbox's back
        session.execute(
            sa.update(Contact).where(Contact.id == made[0].id).values(first_name="Direct")
        )
        session.execute(sa.update(MailchimpConnection).values(last_full_sync_at=NOW))
    world.sandbox.tag(list_id, made[1].email or "", "mailchimp-only")
    before = len(world.sandbox.log)

    result = run(owner="gus", full_sync=True)

    [summary] = result.summaries
    assert (summary.counts.updated, summary.counts.unchanged) == (1, 29)
    assert world.member(list_id, made[0].email or "")["merge_fields"]["FNAME"] == "Direct"
    assert "mailchimp-only" in world.sandbox.tags(list_id, made[1].email or "")
    subscribes = [e for e in world.writes(before) if e.path == f"/3.0/lists/{list_id}"]
    assert len(subscribes) == 1
    assert len(subscribes[0].body["members"]) == 1

    with pytest.raises(SyncNowRefused) as refused:
        run(owner="gus", full_sync=True)
    allowed = connection(world.url, "gus").last_full_sync_at + timedelta(hours=1)
    assert f"allowed again at {allowed:%Y-%m-%d %H:%M} UTC" in str(refused.value)


def test_test_mode_lists_what_it_would_send_and_sends_nothing(world: World) -> None:
    world.connect("hal")
    add_contacts(world.url, "hal", 5)
    before = len(world.sandbox.log)

    result = run(test_mode=True)

    assert world.writes(before) == []
    assert len(queued(world.url)) == 5
    assert connection(world.url, "hal").last_full_sync_at is None
    assert result.summaries[0].mode == "test"


# ---- limits, configuration, concurrency ----------------------------------------------------------


def test_connections_to_one_account_share_its_ten_connections(world: World) -> None:
    world.sandbox.latency = type(world.sandbox.latency)(0.02)
    for owner in ("ivy", "jon", "kim"):
        world.connect(owner, account="Shared Account")
        add_contacts(world.url, owner, 60)
    run()  # reconciles the three
    for owner in ("ivy", "jon", "kim"):
        add_contacts(world.url, owner, 60, start=100)

    run()

    assert world.sandbox.peak_concurrency("Shared Account") <= 10
    assert not [e for e in world.sandbox.log if e.status == 429]
    for owner in ("ivy", "jon", "kim"):
        assert_mirrored(world, connection(world.url, owner).audience_id or "", owner)


def test_missing_token_keys_fail_before_any_request(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    world.connect("lea")
    monkeypatch.delenv("MAILCHIMP_TOKEN_KEYS")
    with pytest.raises(MissingConfiguration, match="MAILCHIMP_TOKEN_KEYS"):
        run()
    assert world.sandbox.log == []


def test_the_token_is_not_stored_in_plaintext(world: World) -> None:
    world.connect("max")
    with session_scope(world.url) as session:
        row = session.execute(sa.select(MailchimpConnection.__table__)).one()  # type: ignore[attr-defined]
    assert world.tokens["max"] not in " ".join(str(v) for v in row)


def test_two_drainers_process_every_event_exactly_once(world: World) -> None:
    if not world.url.startswith("postgresql"):
        pytest.skip("FOR UPDATE SKIP LOCKED: the PostgreSQL case of concurrent drainers")
    list_id = world.connect("ned")
    run()
    made = add_contacts(world.url, "ned", 1000)
    # A round of 500 takes seconds, so the second drainer claims while the first sends.
    world.sandbox.latency = type(world.sandbox.latency)(0.03)
    results: list[MailchimpResult] = []

    def drainer() -> None:
        results.append(run())

    threads = [threading.Thread(target=drainer) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    puts = Counter(e.path for e in world.sandbox.log if e.method == "PUT")
    assert len(puts) == 1000
    assert set(puts.values()) == {1}
    assert queued(world.url) == []
    assert world.sandbox.peak_concurrency("Account of ned") <= 10  # one cap across both
    assert not [e for e in world.sandbox.log if e.status == 429]
    created = [s.counts.created for r in results for s in r.summaries]
    assert sum(created) == 1000
    assert all(created)
    assert all(world.member(list_id, c.email or "") for c in made)
    with session_scope(world.url) as session:
        assert session.exec(select(sa.func.count()).select_from(SyncRun)).one() >= 3


def test_events_a_crashed_drainer_held_are_sent_once_its_lease_ends(world: World) -> None:
    list_id = world.connect("oli")
    run()
    made = add_contacts(world.url, "oli", 4)
    with session_scope(world.url) as session:  # a drainer claimed them, then its worker died
        held = flows.mailchimp.outbox.claim(session, "oli", "dead-worker", datetime.now(UTC))
    assert len(held) == 4

    run()  # the lease still holds: nothing is sent twice
    assert all(world.member(list_id, c.email or "") is None for c in made)
    with session_scope(world.url) as session:
        session.execute(
            sa.update(MailchimpSyncQueue).values(
                claimed_until=datetime.now(UTC) - timedelta(seconds=1)
            )
        )

    run()  # the lease ended: the events are taken over
    assert all(world.member(list_id, c.email or "") for c in made)
    assert queued(world.url) == []
