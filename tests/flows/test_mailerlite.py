"""The MailerLite flow end to end over loopback, on SQLite and PostgreSQL.

The sandbox runs its clock 30 times faster than real (10 times for the test of the limits
themselves) and the flow's pace follows, so the documented 120 requests and 5 imports per
minute hold while the tests take seconds.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlmodel import select

import flows.mailerlite.api
import flows.mailerlite.flow
from flows.mailerlite.flow import mailerlite_sync, push_chunk
from flows.mailerlite.tables import AppUser, Conversation, Subscription
from sandbox.app_users import seed_users, touch_users
from sandbox.mailerlite import create_app
from sandbox.server import serve
from shared.db import ensure_schema, get_engine, session_scope
from shared.models import PushState, SyncFailure
from shared.settings import MailerLiteSettings, MissingConfiguration

pytestmark = pytest.mark.usefixtures("prefect_harness")
KEY = "mailerlite-test-key-271828"
FAST = 30.0  # sandbox seconds per real second
SCALE = 10.0  # for the test of the limits
FIELD_TYPES = {
    "active_user": "number",
    "current_tier": "text",
    "conversation_count": "number",
    "user_created_at": "date",
    "last_login_at": "date",
}
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


@contextmanager
def open_account(monkeypatch: pytest.MonkeyPatch, url: str, scale: float) -> Iterator[Any]:
    """A MailerLite account with the group to push to, the flow configured for it."""
    app = create_app(KEY, scale=scale)
    sandbox = app.state.sandbox
    group = sandbox.add_group("App users")
    ensure_schema(url)
    with serve(app) as base_url:
        monkeypatch.setenv("DATABASE_URL", url)
        monkeypatch.setenv("MAILER_LITE_BASE_URL", f"{base_url}/api")
        monkeypatch.setenv("MAILER_LITE_API_KEY", KEY)
        monkeypatch.setenv("MAILER_LITE_GROUP_ID", group)
        monkeypatch.setenv("MAILER_LITE_RATE_PER_SECOND", str(2.0 * scale))
        monkeypatch.setenv("MAILER_LITE_IMPORTS_PER_MINUTE", str(5.0 * scale))
        # The default 0.5 % is 0.3 s of a real minute but 10 ms of a sandbox minute here: too
        # little for a sandbox that shares this process (and its GIL) with the flow.
        monkeypatch.setenv("MAILER_LITE_RATE_MARGIN", "0.02")
        monkeypatch.setenv("HTTP_TIMEOUT_SECONDS", "5")
        sandbox.group = group
        yield sandbox


@pytest.fixture
def account(monkeypatch: pytest.MonkeyPatch, database_url: str) -> Iterator[Any]:
    with open_account(monkeypatch, database_url, FAST) as sandbox:
        yield sandbox


def add_user(url: str, user_id: int, email: str, **columns: Any) -> None:
    subscriptions = columns.pop("subscriptions", [])
    conversations = columns.pop("conversations", 0)
    columns.setdefault("created_at", NOW - timedelta(days=100))
    with session_scope(url) as session:
        session.add(AppUser(id=user_id, email=email, **columns))
        session.flush()
        for n, (tier, status) in enumerate(subscriptions):
            started = NOW - timedelta(days=90 - n)
            session.add(
                Subscription(
                    user_id=user_id, plan=tier, tier=tier, status=status, started_at=started
                )
            )
        for _ in range(conversations):
            session.add(Conversation(user_id=user_id, created_at=NOW))


def writes(sandbox: Any, since: int = 0) -> list[Any]:
    """Writes the sandbox took (a rare 429 at 30 times speed is retried: not counted)."""
    return [e for e in sandbox.log[since:] if e.method != "GET" and e.status != 429]


def sent_emails(sandbox: Any, since: int = 0) -> list[str]:
    """Every address the flow sent, single upserts and batch items alike."""
    emails = []
    for entry in writes(sandbox, since):
        if entry.path == "/api/subscribers":
            emails.append(entry.body["email"])
        elif entry.path == "/api/batch":
            emails += [r["body"]["email"] for r in entry.body["requests"]]
    return emails


def failures(url: str) -> dict[str, SyncFailure]:
    with session_scope(url) as session:
        rows = session.exec(select(SyncFailure).where(SyncFailure.resolved_at == None))  # noqa: E711
        return {f.record_key: f for f in rows}


# ---- edge users: exact values ---------------------------------------------------------------


def seed_edge_users(url: str) -> None:
    add_user(url, 1, "never@mail.example", subscription_status="active")
    add_user(url, 2, "subonly@mail.example", subscription_status="canceled",
             subscriptions=[("standard", "canceled"), ("premium", "active")],
             last_login_at=datetime(2026, 11, 19, 23, 59, tzinfo=UTC), conversations=3)  # fmt: skip
    add_user(url, 3, "useronly@mail.example", subscription_status="active",
             subscriptions=[("premium", "canceled"), ("standard", "canceled")])  # fmt: skip
    add_user(url, 4, "demo@mail.example", is_demo=True, subscription_status="active")
    add_user(url, 5, "flagged@mail.example", is_test=True)
    add_user(url, 6, "someone+test@mail.example")
    add_user(url, 7, "qa@test.example.org")
    add_user(url, 8, "  Mixed.CASE@Mail.Example  ", last_login_at=NOW, conversations=1)
    add_user(url, 9, "nosubs@mail.example", subscription_status=None)
    add_user(url, 10, "   ")
    add_user(url, 11, "twice@mail.example", conversations=2)
    add_user(url, 12, "TWICE@mail.example ", conversations=5)


async def test_edge_users_get_exact_field_values(account: Any, database_url: str) -> None:
    seed_edge_users(database_url)
    summary = await mailerlite_sync()

    def fields(email: str) -> dict[str, Any]:
        subscriber = account.subscriber(email)
        assert subscriber is not None, email
        assert [g["id"] for g in subscriber["groups"]] == [account.group]
        return {k: subscriber["fields"][k] for k in FIELD_TYPES}

    created = "2026-08-12"  # NOW - 100 days
    assert fields("never@mail.example") == {
        "active_user": 1, "current_tier": "starter", "conversation_count": 0,
        "user_created_at": created, "last_login_at": "",
    }  # fmt: skip
    assert fields("subonly@mail.example") == {
        "active_user": 1, "current_tier": "premium", "conversation_count": 3,
        "user_created_at": created, "last_login_at": "2026-11-19",
    }  # fmt: skip
    assert fields("useronly@mail.example") == {
        "active_user": 1, "current_tier": "standard", "conversation_count": 0,  # latest sub
        "user_created_at": created, "last_login_at": "",
    }  # fmt: skip
    assert fields("mixed.case@mail.example")["last_login_at"] == "2026-11-20"
    assert fields("nosubs@mail.example") == {
        "active_user": 0, "current_tier": "starter", "conversation_count": 0,
        "user_created_at": created, "last_login_at": "",
    }  # fmt: skip
    assert fields("twice@mail.example")["conversation_count"] == 5  # the newer account wins
    for left_out in ("demo@", "flagged@", "someone+test@", "qa@test."):
        assert not [e for e in account.subscribers if e.startswith(left_out)]
    assert sorted(account.subscribers) == sorted(
        ["never@mail.example", "subonly@mail.example", "useronly@mail.example",
         "mixed.case@mail.example", "nosubs@mail.example", "twice@mail.example"]
    )  # fmt: skip
    counts = summary.counts
    assert (counts.created, counts.updated, counts.failed, counts.skipped) == (6, 0, 1, 1)
    assert failures(database_url)["user:10"].message == "the user has no email address"
    assert {key: account.fields[key]["type"] for key in FIELD_TYPES} == FIELD_TYPES


# ---- diff, reruns, changes ----------------------------------------------------------------------


async def test_a_rerun_sends_nothing_and_a_change_sends_only_that_user(
    account: Any, database_url: str
) -> None:
    made = seed_users(database_url, 300, seed=3, now=NOW)
    first = await mailerlite_sync()
    assert first.counts.created == made.production
    assert len(account.subscribers) == made.production
    fields_created = [e for e in writes(account) if e.path == "/api/fields"]
    assert len(fields_created) == len(FIELD_TYPES)
    assert [e for e in writes(account) if e.path == "/api/batch"], "imports were used"

    before = len(account.log)
    second = await mailerlite_sync()
    assert account.log[before:] == []  # no write, and no read either: keys are cached
    assert second.counts.unchanged == made.production
    assert (second.counts.created, second.counts.updated) == (0, 0)

    touched = touch_users(database_url, 0.05, seed=4)
    with session_scope(database_url) as session:
        production = {
            u.id
            for u in session.exec(select(AppUser))
            if not (u.is_demo or u.is_test) and "+test@" not in u.email
        }
    before = len(account.log)
    third = await mailerlite_sync()
    expected = sorted(account_email(database_url, i) for i in touched if i in production)
    assert sorted(sent_emails(account, before)) == expected
    assert third.counts.updated == len(expected)
    assert not [e for e in account.log[before:] if e.path == "/api/fields"]


def account_email(url: str, user_id: int) -> str:
    with session_scope(url) as session:
        return session.get_one(AppUser, user_id).email.strip().lower()


async def test_full_sync_sends_everyone_and_counts_updates(account: Any, database_url: str) -> None:
    made = seed_users(database_url, 120, seed=5, now=NOW)
    await mailerlite_sync()
    before = len(account.log)
    summary = await mailerlite_sync(full_sync=True)
    assert len(sent_emails(account, before)) == made.production
    assert summary.counts.updated == made.production
    assert summary.counts.created == 0


# ---- bad input, unsubscribed ---------------------------------------------------------------------


async def test_invalid_emails_fail_with_mailerlites_message_and_only_they_are_retried(
    account: Any, database_url: str
) -> None:
    made = seed_users(database_url, 400, seed=1, invalid_share=0.01, now=NOW)
    assert made.invalid == 3  # about 1 % of the production users
    first = await mailerlite_sync()
    assert first.counts.failed == made.invalid
    assert first.counts.created == made.production
    open_failures = failures(database_url)
    assert len(open_failures) == made.invalid
    assert {f.status_code for f in open_failures.values()} == {422}
    assert all(
        "The email must be a valid email address." in f.message for f in open_failures.values()
    )
    before = len(account.log)
    second = await mailerlite_sync()
    retried = sent_emails(account, before)
    assert len(retried) == made.invalid
    assert all(e.endswith("@localhost") for e in retried)
    assert second.counts.failed == made.invalid
    with session_scope(database_url) as session:
        rows = session.exec(select(SyncFailure)).all()
    assert {f.attempts for f in rows} == {2}


async def test_an_unsubscribed_subscriber_is_skipped_not_reactivated(
    account: Any, database_url: str
) -> None:
    add_user(database_url, 1, "gone@mail.example", subscription_status="active")
    add_user(database_url, 2, "here@mail.example")
    await mailerlite_sync()
    account.unsubscribe("gone@mail.example")
    with session_scope(database_url) as session:
        session.add(Conversation(user_id=1, created_at=NOW))
        session.add(Conversation(user_id=2, created_at=NOW))
    summary = await mailerlite_sync()
    assert account.subscriber("gone@mail.example")["status"] == "unsubscribed"
    assert (summary.counts.skipped, summary.counts.updated) == (1, 1)
    with session_scope(database_url) as session:
        state = session.get_one(PushState, ("mailerlite", "default", "user:1"))
    assert state.remote_status == "unsubscribed"
    dry = await mailerlite_sync(test_mode=True)
    assert dry.counts.unchanged == 2  # nothing changed since


# ---- single user, test mode, configuration -------------------------------------------------------


async def test_single_user_by_id_and_by_email_bypasses_the_diff(
    account: Any, database_url: str
) -> None:
    seed_edge_users(database_url)
    await mailerlite_sync()
    before = len(account.log)
    by_id = await mailerlite_sync(user="2")
    by_email = await mailerlite_sync(user="  NEVER@mail.example")
    assert sent_emails(account, before) == ["subonly@mail.example", "never@mail.example"]
    assert [e.path for e in writes(account, before)] == ["/api/subscribers"] * 2
    assert (by_id.mode, by_id.counts.updated, by_email.counts.updated) == ("single", 1, 1)
    with pytest.raises(ValueError, match="user 4 is not pushed: a demo or test user"):
        await mailerlite_sync(user="4")
    with pytest.raises(LookupError, match=r"no user with email 'nobody@mail\.example'"):
        await mailerlite_sync(user="nobody@mail.example")
    assert len(writes(account, before)) == 2


async def test_test_mode_sends_nothing_and_counts_what_would_happen(
    account: Any, database_url: str
) -> None:
    seed_edge_users(database_url)
    dry = await mailerlite_sync(test_mode=True)
    assert account.log == []
    assert (dry.mode, dry.counts.unchanged, dry.counts.skipped, dry.counts.failed) == (
        "test",
        0,
        1,
        1,
    )
    assert failures(database_url) == {}  # a dry run records nothing
    await mailerlite_sync()
    with session_scope(database_url) as session:
        session.add(Conversation(user_id=1, created_at=NOW))
    before = len(account.log)
    again = await mailerlite_sync(test_mode=True)
    assert account.log[before:] == []
    assert again.counts.unchanged == 5


async def test_dry_run_rows_name_each_action(account: Any, database_url: str) -> None:
    from flows.mailerlite.flow import Push, dry_run_rows, plan_push
    from flows.mailerlite.users import excluded_patterns
    from shared.runs import Counts, RunTracker

    seed_edge_users(database_url)
    await mailerlite_sync()
    account.unsubscribe("never@mail.example")
    with session_scope(database_url) as session:
        session.add(AppUser(id=20, email="new@mail.example", created_at=NOW))
        session.add(Conversation(user_id=3, created_at=NOW))
    run = RunTracker(database_url, "mailerlite", "default", "test", 0, Counts())
    push = Push(database_url, "default", account.group, run)
    patterns = excluded_patterns(MailerLiteSettings().excluded_emails)
    plan = await plan_push.fn(push, patterns, None, False)
    rows = dry_run_rows(plan)
    by_action = {r["action"]: r for r in rows if not r["action"].endswith("(count)")}
    assert by_action["create"]["email"] == "new@mail.example"
    assert by_action["update"]["email"] == "useronly@mail.example"
    assert {r["action"]: r["user"] for r in rows if r["action"].endswith("(count)")} == {
        "create (count)": 1, "update (count)": 1, "skip (count)": 1, "fail (count)": 1,
        "unchanged (count)": 5,
    }  # fmt: skip


async def test_missing_key_or_group_stops_before_any_request(
    account: Any, monkeypatch: pytest.MonkeyPatch, database_url: str
) -> None:
    add_user(database_url, 1, "a@mail.example")
    monkeypatch.delenv("MAILER_LITE_API_KEY")
    with pytest.raises(MissingConfiguration, match="MAILER_LITE_API_KEY"):
        await mailerlite_sync()
    monkeypatch.setenv("MAILER_LITE_API_KEY", KEY)
    monkeypatch.delenv("MAILER_LITE_GROUP_ID")
    with pytest.raises(MissingConfiguration, match="MAILER_LITE_GROUP_ID"):
        await mailerlite_sync()
    monkeypatch.setenv("MAILER_LITE_GROUP_ID", "999")
    with pytest.raises(LookupError, match="MAILER_LITE_GROUP_ID=999 is not a group"):
        await mailerlite_sync()
    assert writes(account) == []


# ---- limits and resuming -----------------------------------------------------------------------


@pytest.mark.serial
async def test_both_limits_are_used_and_never_exceeded(
    monkeypatch: pytest.MonkeyPatch, database_url: str
) -> None:
    with open_account(monkeypatch, database_url, SCALE) as account:
        # The import lane takes about two thirds of the users (50 per import against ~24 singles
        # in between): 700 make about 9 imports, safely over the 6 the span check needs.
        made = seed_users(database_url, 700, seed=11, now=NOW)
        summary = await mailerlite_sync()
    assert summary.counts.created == made.production
    assert [e for e in account.log if e.status == 429] == []
    batches = [e for e in account.log if e.path == "/api/batch"]
    singles = [e for e in account.log if e.path == "/api/subscribers"]
    assert batches
    assert singles
    assert all(len(e.body["requests"]) == 50 for e in batches)
    # 5 imports per sandbox minute: any 6 in a row arrive more than a (sandbox) minute apart.
    spans = [(b.at - a.at) * SCALE for a, b in zip(batches, batches[5:], strict=False)]
    assert spans
    assert min(spans) > 60.0


async def test_a_run_that_dies_resends_only_what_was_not_recorded(
    account: Any, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = seed_users(database_url, 600, seed=13, now=NOW)
    real = flows.mailerlite.api.MailerLite.upsert
    calls = [0]

    async def dying(self: Any, payload: dict[str, Any]) -> Any:
        calls[0] += 1
        if calls[0] > 100:  # after each single lane recorded a few batches of 25
            raise RuntimeError("worker lost")
        return await real(self, payload)

    monkeypatch.setattr(flows.mailerlite.api.MailerLite, "upsert", dying)
    # A worker that is lost does not retry its task: neither does this one.
    monkeypatch.setattr(flows.mailerlite.flow, "push_chunk", push_chunk.with_options(retries=0))
    with pytest.raises(RuntimeError, match="worker lost"):
        await mailerlite_sync()
    monkeypatch.setattr(flows.mailerlite.api.MailerLite, "upsert", real)
    with get_engine(database_url).connect() as connection:
        recorded = connection.scalar(sa.text("SELECT COUNT(*) FROM push_state"))
    assert 0 < recorded < made.production
    before = len(account.log)
    summary = await mailerlite_sync()
    resent = sent_emails(account, before)
    assert len(resent) == made.production - recorded
    assert len(account.subscribers) == made.production
    assert summary.counts.created + summary.counts.updated == len(resent)
