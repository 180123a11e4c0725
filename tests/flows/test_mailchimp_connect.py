"""`syncflows mailchimp …` against the Mailchimp sandbox over loopback, on SQLite and PostgreSQL:
connecting (OAuth through the loopback redirect, a pasted code, an API key), audiences,
status, disconnecting, key rotation and the PostgreSQL capture triggers."""

from __future__ import annotations

import io
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import sqlalchemy as sa
from sqlmodel import col, select

import flows.mailchimp.cli
from bench.local import free_port
from flows.mailchimp import manage
from flows.mailchimp.connections import PAUSED_NOTICE
from flows.mailchimp.oauth import CallbackListener, OAuthError
from flows.mailchimp.tables import AccountOwner, MailchimpConnection, MailchimpSyncQueue
from sandbox.mailchimp import (
    DEFAULT_API_KEY,
    DEFAULT_AUDIENCE,
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    MailchimpSandbox,
    create_app,
)
from sandbox.server import serve
from shared.cli import main
from shared.crypto import Keyring, UnreadableSecret, new_key
from shared.db import session_scope
from shared.models import PushState, utcnow

OWNERS = ("alice", "bob", "carol")


@dataclass
class Env:
    """A migrated database with owners, a sandbox on loopback, the settings pointing at both."""

    url: str
    sandbox: MailchimpSandbox
    base_url: str
    key: str  # MAILCHIMP_TOKEN_KEYS
    redirect_uri: str

    @property
    def default_audience(self) -> str:
        account = self.sandbox.accounts["Sandbox Account"]
        return next(iter(account.audiences))

    def row(self, owner: str) -> MailchimpConnection | None:
        with session_scope(self.url) as session:
            return manage.find(session, owner)

    def code(self) -> str:
        """An authorization code, as the browser's redirect would carry it."""
        response = httpx.get(
            f"{self.base_url}/oauth2/authorize",
            params={
                "response_type": "code",
                "client_id": DEFAULT_CLIENT_ID,
                "redirect_uri": self.redirect_uri,
                "state": "s",
            },
        )
        return parse_qs(urlsplit(response.headers["location"]).query)["code"][0]

    def tokens(self) -> list[str]:
        with self.sandbox.lock:
            return list(self.sandbox._tokens)


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, migrated_url: str) -> Iterator[Env]:
    with session_scope(migrated_url) as session:
        for owner in OWNERS:
            session.add(AccountOwner(id=owner, name=owner.title(), created_at=utcnow()))
    app = create_app()
    key = new_key()
    redirect_uri = f"http://127.0.0.1:{free_port()}/callback"
    with serve(app) as base_url:
        monkeypatch.setenv("DATABASE_URL", migrated_url)
        monkeypatch.setenv("MAILCHIMP_TOKEN_KEYS", key)
        monkeypatch.setenv("MAILCHIMP_CLIENT_ID", DEFAULT_CLIENT_ID)
        monkeypatch.setenv("MAILCHIMP_CLIENT_SECRET", DEFAULT_CLIENT_SECRET)
        monkeypatch.setenv("MAILCHIMP_LOGIN_URL", base_url)
        monkeypatch.setenv("MAILCHIMP_REDIRECT_URI", redirect_uri)
        monkeypatch.setenv("HTTP_TIMEOUT_SECONDS", "5")
        yield Env(migrated_url, app.state.sandbox, base_url, key, redirect_uri)


def mailchimp(*args: str) -> int:
    return main(["mailchimp", *args])


def connect_with_code(env: Env, owner: str, *more: str) -> None:
    assert mailchimp("connect", "--owner", owner, "--code", env.code(), *more) == 0


class Browser(io.StringIO):
    """Stands in for the terminal and the user: opens the authorize URL once it is printed,
    following the redirect to the command's own listener, as a browser would."""

    def __init__(self) -> None:
        super().__init__()
        self.page: httpx.Response | None = None
        self.thread: threading.Thread | None = None

    def write(self, text: str) -> int:
        if "/oauth2/authorize?" in text and self.thread is None:
            url = next(word for word in text.split() if "/oauth2/authorize?" in word)
            self.thread = threading.Thread(target=self._open, args=(url,), daemon=True)
            self.thread.start()
        return super().write(text)

    def _open(self, url: str) -> None:
        self.page = httpx.get(url, follow_redirects=True, timeout=10)


# ---- connect ------------------------------------------------------------------------------------


def test_oauth_connect_through_the_loopback_redirect_stores_the_token_encrypted(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    browser = Browser()
    monkeypatch.setattr(sys, "stdout", browser)

    assert mailchimp("connect", "--owner", "alice", "--timeout", "20") == 0

    assert browser.thread is not None
    browser.thread.join(timeout=10)
    assert browser.page is not None
    assert browser.page.status_code == 200
    assert "close this tab" in browser.page.text
    account = env.sandbox.accounts["Sandbox Account"]
    row = env.row("alice")
    assert row is not None
    assert (row.auth, row.server_prefix, row.api_endpoint, row.account_id, row.status) == (
        "oauth",
        account.dc,
        env.base_url,
        account.account_id,
        "active",
    )
    assert (row.audience_id, row.audience_name) == (env.default_audience, DEFAULT_AUDIENCE)
    # The only token the sandbox issued: stored encrypted, nowhere in plaintext.
    (token,) = env.tokens()
    assert env.sandbox.account(token) is account
    assert all(token not in str(value) for value in row.model_dump().values())
    assert Keyring(env.key, "MAILCHIMP_TOKEN_KEYS").decrypt(row.access_token_encrypted) == token
    output = browser.getvalue()
    assert token not in output
    assert f'Connected to "{DEFAULT_AUDIENCE}"' in output


def test_connect_with_a_code_and_several_audiences_takes_audience_or_explains(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    second = env.sandbox.add_audience("Sandbox Account", "Second Audience")

    connect_with_code(env, "alice", "--audience", second)
    connect_with_code(env, "bob")  # no --audience, and no terminal to ask on

    alice, bob = env.row("alice"), env.row("bob")
    assert alice is not None
    assert bob is not None
    assert (alice.audience_id, alice.audience_name) == (second, "Second Audience")
    assert bob.audience_id is None
    output = capsys.readouterr().out
    assert env.default_audience in output
    assert second in output
    assert "syncflows mailchimp select-audience --owner bob --audience <id>" in output
    with session_scope(env.url) as session:
        assert "no audience chosen yet" in manage.status_lines(session, "bob")[0]


def test_connect_on_a_terminal_asks_which_audience(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    second = env.sandbox.add_audience("Sandbox Account", "Second Audience")
    answers = iter(["seven", "2"])
    monkeypatch.setattr(flows.mailchimp.cli, "_interactive", lambda: True)
    monkeypatch.setattr("builtins.input", lambda _prompt: next(answers))

    connect_with_code(env, "alice")

    row = env.row("alice")
    assert row is not None
    assert row.audience_id == second


def test_connect_without_the_oauth_app_names_the_variables_before_any_request(
    env: Env, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("MAILCHIMP_CLIENT_ID")
    monkeypatch.delenv("MAILCHIMP_CLIENT_SECRET")

    assert mailchimp("connect", "--owner", "alice", "--timeout", "1") == 2

    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1
    assert "MAILCHIMP_CLIENT_ID" in error
    assert "MAILCHIMP_CLIENT_SECRET" in error
    assert "MAILCHIMP_REDIRECT_URI" not in error
    assert env.sandbox.log == []
    assert env.row("alice") is None


def test_connect_refuses_an_unknown_owner_first_and_a_spent_code(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    assert mailchimp("connect", "--owner", "nobody", "--timeout", "1") == 2
    assert "no account owner 'nobody'" in capsys.readouterr().err
    assert env.sandbox.log == []

    code = env.code()
    assert mailchimp("connect", "--owner", "alice", "--code", code) == 0
    assert mailchimp("connect", "--owner", "bob", "--code", code) == 2
    error = capsys.readouterr().err
    assert "Mailchimp refused the authorization code: invalid_grant" in error
    assert code not in error
    assert DEFAULT_CLIENT_SECRET not in error
    assert env.row("bob") is None


def test_connect_with_an_api_key(
    env: Env, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MAILCHIMP_BASE_URL", f"{env.base_url}/3.0")
    monkeypatch.setenv("MAILCHIMP_API_KEY", DEFAULT_API_KEY)

    assert mailchimp("connect", "--owner", "alice") == 0

    row = env.row("alice")
    assert row is not None
    assert (row.auth, row.server_prefix, row.api_endpoint) == ("api_key", "us19", env.base_url)
    # The API root names the key's account: the same id an OAuth connection would store.
    assert row.account_id == env.sandbox.account(DEFAULT_API_KEY).account_id
    assert row.audience_id == env.default_audience
    assert all(DEFAULT_API_KEY not in str(value) for value in row.model_dump().values())
    key = Keyring(env.key, "MAILCHIMP_TOKEN_KEYS").decrypt(row.access_token_encrypted)
    assert key == DEFAULT_API_KEY
    assert [entry.path for entry in env.sandbox.log][:1] == ["/3.0/"]
    assert DEFAULT_API_KEY not in capsys.readouterr().out

    wrong = "ffffffffffffffffffffffffffffffff-us19"
    assert mailchimp("connect", "--owner", "bob", "--api-key", wrong) == 2
    error = capsys.readouterr().err
    assert "Mailchimp refused the API key" in error
    assert wrong not in error
    assert env.row("bob") is None


# ---- audiences ----------------------------------------------------------------------------------


def test_select_audience_checks_the_id_and_starts_the_new_audience_afresh(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    second = env.sandbox.add_audience("Sandbox Account", "Second Audience")
    connect_with_code(env, "alice", "--audience", env.default_audience)
    connect_with_code(env, "bob", "--audience", env.default_audience)
    now = utcnow()
    with session_scope(env.url) as session:
        session.execute(sa.update(MailchimpConnection).values(last_full_sync_at=now))
        for owner in ("alice", "bob"):
            session.add(
                PushState(
                    provider="mailchimp",
                    account=f"owner-{owner}",
                    record_key="c1",
                    payload_hash="x",
                    pushed_at=now,
                )
            )
    capsys.readouterr()

    assert mailchimp("select-audience", "--owner", "alice", "--audience", "nope") == 2
    assert "no audience 'nope'" in capsys.readouterr().err
    assert mailchimp("select-audience", "--owner", "alice", "--audience", second) == 0
    assert "the next sync reconciles it first" in capsys.readouterr().out

    alice, bob = env.row("alice"), env.row("bob")
    assert alice is not None
    assert bob is not None
    assert (alice.audience_id, alice.audience_name, alice.last_full_sync_at) == (
        second,
        "Second Audience",
        None,
    )
    assert bob.last_full_sync_at == now
    with session_scope(env.url) as session:
        left = session.exec(select(PushState.account)).all()
    assert left == ["owner-bob"]
    assert mailchimp("audiences", "--owner", "alice") == 0
    listing = capsys.readouterr().out.splitlines()
    assert [line.startswith("*") for line in listing] == [False, True]


def test_a_revoked_token_is_reported_as_refused_credentials(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    connect_with_code(env, "alice")
    (token,) = env.tokens()
    with env.sandbox.lock:
        del env.sandbox._tokens[token]  # the user disconnected the app inside Mailchimp
    capsys.readouterr()

    assert mailchimp("audiences", "--owner", "alice") == 2

    error = capsys.readouterr().err
    assert "Mailchimp refused the stored credentials" in error
    assert "syncflows mailchimp connect --owner alice" in error
    assert token not in error


# ---- disconnect ---------------------------------------------------------------------------------


def test_disconnect_forgets_our_side_and_leaves_mailchimp_alone(env: Env) -> None:
    connect_with_code(env, "alice")
    connect_with_code(env, "bob")
    (token, _) = env.tokens()
    member = httpx.put(
        f"{env.base_url}/3.0/lists/{env.default_audience}/members/ann@example.com",
        json={"email_address": "ann@example.com", "status_if_new": "subscribed"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert member.status_code == 200
    with session_scope(env.url) as session:
        for owner in ("alice", "bob"):
            session.add(
                MailchimpSyncQueue(
                    owner_id=owner, contact_id="c1", operation="create", created_at=utcnow()
                )
            )
            session.add(
                PushState(
                    provider="mailchimp",
                    account=f"owner-{owner}",
                    record_key="c1",
                    payload_hash="x",
                    pushed_at=utcnow(),
                )
            )
    env.sandbox.clear_log()

    assert mailchimp("disconnect", "--owner", "alice") == 0

    assert env.row("alice") is None
    assert env.row("bob") is not None
    with session_scope(env.url) as session:
        assert session.exec(select(MailchimpSyncQueue.owner_id)).all() == ["bob"]
        assert session.exec(select(PushState.account)).all() == ["owner-bob"]
    assert env.sandbox.log == []  # not a request, so certainly no DELETE
    assert env.sandbox.member(env.default_audience, "ann@example.com") is not None
    assert mailchimp("disconnect", "--owner", "alice") == 2


# ---- status -------------------------------------------------------------------------------------


def test_status_says_connected_last_synced_and_paused(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    connect_with_code(env, "alice")
    capsys.readouterr()

    assert mailchimp("status", "--owner", "alice") == 0
    assert capsys.readouterr().out.strip() == f'Connected to "{DEFAULT_AUDIENCE}" · not synced yet'

    with session_scope(env.url) as session:
        session.execute(
            sa.update(MailchimpConnection).values(
                last_sync_at=utcnow() - timedelta(minutes=2, seconds=5), status="paused"
            )
        )
    assert mailchimp("status", "--owner", "alice") == 0
    assert capsys.readouterr().out.splitlines() == [
        f'Connected to "{DEFAULT_AUDIENCE}" · last synced 2 minutes ago',
        PAUSED_NOTICE,
    ]

    with session_scope(env.url) as session:
        session.execute(sa.update(MailchimpConnection).values(status="error"))
    assert mailchimp("status") == 0
    every = capsys.readouterr().out.splitlines()
    assert every[0] == f'alice: Connected to "{DEFAULT_AUDIENCE}" · last synced 2 minutes ago'
    assert "Mailchimp refused the stored credentials" in every[1]
    assert "syncflows mailchimp connect --owner alice" in every[1]

    assert mailchimp("status", "--owner", "carol") == 0
    assert capsys.readouterr().out.strip() == "Not connected"


@pytest.mark.parametrize(
    ("elapsed", "said"),
    [
        (timedelta(seconds=-5), "just now"),
        (timedelta(seconds=59), "just now"),
        (timedelta(minutes=1, seconds=30), "1 minute ago"),
        (timedelta(minutes=59), "59 minutes ago"),
        (timedelta(hours=3, minutes=10), "3 hours ago"),
        (timedelta(hours=30), "yesterday"),
        (timedelta(days=4, hours=2), "4 days ago"),
    ],
)
def test_relative_times_read_as_people_say_them(elapsed: timedelta, said: str) -> None:
    now = utcnow()
    assert manage.ago(now - elapsed, now) == said


def test_sync_now_within_the_hour_is_refused_before_the_flow_starts(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    connect_with_code(env, "alice")
    started = utcnow() - timedelta(minutes=10)
    with session_scope(env.url) as session:
        assert manage.sync_now_allowed_at(session, "alice", utcnow()) is None  # never ran
        session.execute(sa.update(MailchimpConnection).values(last_full_sync_at=started))
    capsys.readouterr()

    assert mailchimp("sync-now", "--owner", "alice") == 2

    allowed = started + timedelta(hours=1)
    assert capsys.readouterr().err.strip() == (
        f"syncflows mailchimp: Sync Now for owner alice is allowed again at "
        f"{allowed:%Y-%m-%d %H:%M} UTC (once an hour)"
    )


# ---- keys ---------------------------------------------------------------------------------------


def test_rotate_keys_lets_the_old_key_go(
    env: Env, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    connect_with_code(env, "alice")
    (token,) = env.tokens()
    newer = new_key()
    row = env.row("alice")
    assert row is not None
    with pytest.raises(UnreadableSecret):
        Keyring(newer, "MAILCHIMP_TOKEN_KEYS").decrypt(row.access_token_encrypted)

    monkeypatch.setenv("MAILCHIMP_TOKEN_KEYS", f"{newer},{env.key}")
    assert mailchimp("rotate-keys") == 0
    assert "Re-encrypted 1 credential " in capsys.readouterr().out

    monkeypatch.setenv("MAILCHIMP_TOKEN_KEYS", newer)
    row = env.row("alice")
    assert row is not None
    assert Keyring(newer, "MAILCHIMP_TOKEN_KEYS").decrypt(row.access_token_encrypted) == token
    assert mailchimp("audiences", "--owner", "alice") == 0  # the stored token still works
    assert DEFAULT_AUDIENCE in capsys.readouterr().out


def test_new_key_prints_a_usable_key(capsys: pytest.CaptureFixture[str]) -> None:
    assert mailchimp("new-key") == 0
    key = capsys.readouterr().out.strip()
    assert Keyring(key, "K").decrypt(Keyring(key, "K").encrypt("secret")) == "secret"


def test_a_malformed_key_is_named_not_shown(
    env: Env, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MAILCHIMP_TOKEN_KEYS", "not-a-fernet-key")
    assert mailchimp("audiences", "--owner", "alice") == 2
    error = capsys.readouterr().err
    assert "MAILCHIMP_TOKEN_KEYS" in error
    assert "not-a-fernet-key" not in error


# ---- the loopback listener ----------------------------------------------------------------------


def test_listener_ignores_a_wrong_state_and_reports_a_refusal() -> None:
    redirect = f"http://127.0.0.1:{free_port()}/callback"
    with CallbackListener(redirect, "right") as listener:
        wrong = httpx.get(redirect, params={"code": "c0de-from-elsewhere", "state": "wrong"})
        elsewhere = httpx.get(redirect.replace("/callback", "/other"), params={"state": "right"})
        declined = httpx.get(redirect, params={"error": "access_denied", "state": "right"})
        with pytest.raises(OAuthError, match="access_denied"):
            listener.wait(5)
    assert (wrong.status_code, elsewhere.status_code, declined.status_code) == (400, 404, 400)

    with CallbackListener(redirect, "right") as listener:
        httpx.get(redirect, params={"code": "the-code", "state": "right"})
        assert listener.wait(5) == "the-code"

    with pytest.raises(OAuthError, match="--code"):
        CallbackListener("https://app.example.com/api/mailchimp/callback", "s")


def test_connect_with_a_web_redirect_shows_the_url_and_asks_for_the_code(
    env: Env, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MAILCHIMP_REDIRECT_URI", "https://app.example.com/api/mailchimp/callback")

    assert mailchimp("connect", "--owner", "alice") == 2

    captured = capsys.readouterr()
    assert f"{env.base_url}/oauth2/authorize?response_type=code" in captured.out
    assert "--code" in captured.err
    assert env.sandbox.log == []


# ---- capture triggers ---------------------------------------------------------------------------


def _contacts(url: str, statements: list[tuple[str, dict[str, Any]]]) -> None:
    with session_scope(url) as session:
        for statement, params in statements:
            session.execute(sa.text(statement), params)


INSERT = (
    "INSERT INTO contacts (id, owner_id, first_name, last_name, email, phone, tags, deleted, "
    "updated_at) VALUES (:id, :owner, 'Ann', 'Lee', :email, NULL, CAST('[\"vip\"]' AS jsonb), "
    "false, now())"
)


def test_triggers_queue_changes_of_connected_owners_on_postgresql(env: Env) -> None:
    if env.url.startswith("sqlite"):
        pytest.skip("capture triggers exist on PostgreSQL only")
    connect_with_code(env, "alice")
    assert mailchimp("triggers", "on") == 0

    _contacts(
        env.url,
        [
            (INSERT, {"id": "c1", "owner": "alice", "email": "ann@example.com"}),
            ("UPDATE contacts SET first_name = 'Anne' WHERE id = 'c1'", {}),
            ("UPDATE contacts SET updated_at = now() + interval '1 minute' WHERE id = 'c1'", {}),
            ("UPDATE contacts SET deleted = true WHERE id = 'c1'", {}),
            (INSERT, {"id": "c2", "owner": "alice", "email": "bo@example.com"}),
            ("DELETE FROM contacts WHERE id = 'c2'", {}),
            (INSERT, {"id": "c3", "owner": "bob", "email": "cy@example.com"}),  # not connected
        ],
    )
    assert mailchimp("triggers", "off") == 0
    _contacts(env.url, [(INSERT, {"id": "c4", "owner": "alice", "email": "di@example.com"})])

    with session_scope(env.url) as session:
        queued = session.exec(select(MailchimpSyncQueue).order_by(col(MailchimpSyncQueue.id))).all()
    assert [(q.owner_id, q.contact_id, q.operation, q.email) for q in queued] == [
        ("alice", "c1", "create", None),
        ("alice", "c1", "update", None),
        ("alice", "c1", "delete", "ann@example.com"),
        ("alice", "c2", "create", None),
        ("alice", "c2", "delete", "bo@example.com"),
    ]


def test_triggers_are_refused_on_sqlite(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path}/state.db")
    assert mailchimp("triggers", "on") == 2
    assert "PostgreSQL only" in capsys.readouterr().err
