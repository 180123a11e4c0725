"""`syncflows mailchimp …`: connect owners' Mailchimp accounts, choose audiences, Sync Now.

The seed's Settings page as commands: `connect` (OAuth, or an API key), `audiences`,
`select-audience`, `status`, `disconnect`, `sync-now`; and for operators `new-key`,
`rotate-keys` and `triggers on|off`. Every command checks its configuration first, then
migrates `DATABASE_URL`; an expected failure (missing settings, an unknown owner, Mailchimp
refusing) is one line on stderr and exit code 2. Credentials are never printed.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from flows.mailchimp import manage
from flows.mailchimp.api import Mailchimp
from flows.mailchimp.connections import Connection, keyring, load_connections
from flows.mailchimp.oauth import (
    CallbackListener,
    OAuthError,
    authorize_url,
    exchange_code,
    is_loopback,
    load_oauth_settings,
    read_metadata,
)
from shared.crypto import Keyring, UnreadableSecret, new_key
from shared.db import migrate, session_scope
from shared.http import ProviderError
from shared.models import utcnow
from shared.redact import redact, register_secret
from shared.settings import (
    MailchimpSettings,
    MissingConfiguration,
    Settings,
    load_provider_settings,
    load_settings,
)

EXIT_REFUSED = 2
EXIT_INTERRUPTED = 130  # the shell's code for Ctrl+C


class CommandError(RuntimeError):
    """An expected failure, shown to the user as its message alone."""


EXPECTED = (
    CommandError,
    MissingConfiguration,
    OAuthError,
    manage.ManageError,
    ProviderError,
    UnreadableSecret,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `mailchimp` sub-commands, under `syncflows mailchimp`."""
    commands = parser.add_subparsers(dest="mailchimp_command", required=True)
    connect = commands.add_parser(
        "connect", help="connect an owner's Mailchimp account (OAuth, or --api-key)"
    )
    _owner(connect)
    connect.add_argument(
        "--code", help="the authorization code, when the redirect URI is not on this machine"
    )
    connect.add_argument(
        "--api-key",
        help="connect with an API key instead of OAuth (MAILCHIMP_API_KEY keeps it out of the "
        "shell history)",
    )
    connect.add_argument("--audience", help="the audience id to choose when there are several")
    connect.add_argument(
        "--timeout", type=float, default=300.0, help="seconds to wait for the browser (300)"
    )
    _owner(commands.add_parser("audiences", help="list the owner's audiences"))
    select = commands.add_parser("select-audience", help="sync the owner to another audience")
    _owner(select)
    select.add_argument("--audience", required=True, help="an id from `audiences`")
    _owner(commands.add_parser("disconnect", help="forget the connection (Mailchimp is kept)"))
    status = commands.add_parser("status", help="'Connected to …', last sync, notes")
    status.add_argument("--owner", help="one owner (default: every connection)")
    commands.add_parser("new-key", help="print a fresh key for MAILCHIMP_TOKEN_KEYS")
    commands.add_parser(
        "rotate-keys", help="re-encrypt every credential under the first MAILCHIMP_TOKEN_KEYS key"
    )
    triggers = commands.add_parser("triggers", help="PostgreSQL capture triggers on or off")
    triggers.add_argument("state", choices=["on", "off"])
    sync_now = commands.add_parser("sync-now", help="reconcile the owner's audience now")
    _owner(sync_now)
    sync_now.add_argument("--test-mode", action="store_true", help="a dry run")


def _owner(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--owner", required=True, help="the account owner's id")


def run(args: argparse.Namespace) -> int:
    """Run the parsed `mailchimp` command; expected failures are one line and exit code 2."""
    command: Callable[[argparse.Namespace], int] = COMMANDS[args.mailchimp_command]
    try:
        return command(args)
    except EXPECTED as error:
        print(f"syncflows mailchimp: {redact(str(error))}", file=sys.stderr)  # noqa: T201
        return EXIT_REFUSED
    except KeyboardInterrupt:
        print("syncflows mailchimp: interrupted", file=sys.stderr)  # noqa: T201
        return EXIT_INTERRUPTED


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m flows.mailchimp.cli …`, the same as `syncflows mailchimp …`."""
    parser = argparse.ArgumentParser(prog="syncflows mailchimp", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))


def say(text: str) -> None:
    """One line for the user (flushed: the authorize URL must show before the wait)."""
    print(redact(text), flush=True)  # noqa: T201


# ---- what every command needs -------------------------------------------------------------------


@dataclass(frozen=True)
class Context:
    """What a command that touches credentials needs: settings, the migrated database, keys."""

    settings: Settings
    provider: MailchimpSettings
    ring: Keyring

    @property
    def url(self) -> str:
        return self.settings.database_url


async def _prepare(load: Callable[[], Awaitable[MailchimpSettings]] | None = None) -> Context:
    """Check the configuration before any work, then migrate."""
    settings = load_settings()
    provider: MailchimpSettings = await (load or _mailchimp_settings)()
    try:
        ring = keyring(provider)
    except ValueError as error:  # a malformed key: the message names the variable, not the key
        raise CommandError(str(error)) from None
    migrate(settings.database_url)
    return Context(settings, provider, ring)


async def _mailchimp_settings() -> MailchimpSettings:
    return await load_provider_settings(MailchimpSettings)


def _database() -> str:
    """For commands that need no credentials: the migrated database's URL."""
    url = load_settings().database_url
    migrate(url)
    return url


def _connection(ctx: Context, owner: str) -> Connection:
    with session_scope(ctx.url) as session:
        manage.require(session, owner)
        return load_connections(session, ctx.ring, owner)[0]


async def _audiences(ctx: Context, connection: Connection) -> list[dict[str, Any]]:
    """The connection's audiences (push §3.9), with the stored credential."""
    async with connection.client(ctx.provider, ctx.settings) as client:
        try:
            return await Mailchimp(client).audiences()
        except ProviderError as error:
            if error.status in (401, 403):  # revoked, or the app was disconnected in Mailchimp
                raise CommandError(
                    f"Mailchimp refused the stored credentials ({error.message}): connect "
                    f"again with `syncflows mailchimp connect --owner {connection.owner_id}`"
                ) from None
            raise


# ---- connect ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Account:
    """What a connect learned of the Mailchimp account."""

    auth: str
    credential: str
    server_prefix: str
    api_endpoint: str
    account_id: str
    account_name: str | None


def connect(args: argparse.Namespace) -> int:
    """Connect an owner, then choose the audience (the seed, 1 and 2)."""
    plain = MailchimpSettings()  # only to see which way to connect; blocks load in _prepare
    if args.api_key or plain.api_key or plain.api_key_block:
        ctx = asyncio.run(_prepare())
        _known_owner(ctx, args.owner)
        stored = ctx.provider.api_key
        key = args.api_key or (stored.get_secret_value() if stored else "")
        register_secret(key)
        return asyncio.run(_connect(ctx, args, lambda: _verify_key(ctx, key)))
    ctx = asyncio.run(_prepare(load_oauth_settings))
    _known_owner(ctx, args.owner)
    code = args.code or _wait_for_browser(ctx.provider, args.timeout)
    return asyncio.run(_connect(ctx, args, lambda: _oauth(ctx, code)))


def _known_owner(ctx: Context, owner: str) -> None:
    """Before any request: an unknown owner must not spend the user's approval."""
    with session_scope(ctx.url) as session:
        manage.require_owner(session, owner)


def _wait_for_browser(provider: MailchimpSettings, timeout: float) -> str:
    """Show the authorize URL and take the code from the loopback redirect (push §3.1). Runs
    outside any event loop, so Ctrl+C ends the wait at once."""
    state = secrets.token_urlsafe(24)
    redirect = provider.redirect_uri or ""
    if not is_loopback(redirect):  # the web app's callback: the user brings the code over
        return _pasted_code(provider, state, redirect)
    with CallbackListener(redirect, state) as listener:
        say("Open this address in a browser and approve syncflows:")
        say(authorize_url(provider, state))
        say(f"Waiting up to {timeout:.0f} s for Mailchimp to send the browser to {redirect} …")
        return listener.wait(timeout)


def _pasted_code(provider: MailchimpSettings, state: str, redirect: str) -> str:
    say("Open this address in a browser and approve syncflows:")
    say(authorize_url(provider, state))
    say(f"Mailchimp then sends the browser to {redirect}?code=…: that code is what is needed.")
    if not _interactive():
        raise CommandError(
            "MAILCHIMP_REDIRECT_URI is not on this machine, so this command cannot receive the "
            "code: run it again with --code <code>"
        )
    code = input("Code: ").strip()
    if not code:
        raise CommandError("no code given")
    register_secret(code)
    return code


async def _connect(
    ctx: Context, args: argparse.Namespace, learn: Callable[[], Awaitable[Account]]
) -> int:
    account = await learn()
    with session_scope(ctx.url) as session:
        saved = manage.save_connection(
            session,
            ctx.ring,
            args.owner,
            account.auth,
            account.credential,
            server_prefix=account.server_prefix,
            api_endpoint=account.api_endpoint,
            account_id=account.account_id,
            account_name=account.account_name,
        )
    name = f' "{account.account_name}"' if account.account_name else ""
    verb = "Connected" if saved.created else "Reconnected"
    say(f"{verb} owner {args.owner} to Mailchimp account{name} ({account.server_prefix}).")
    if saved.account_changed:
        say("That is another Mailchimp account than before: its audience must be chosen.")
    return await _choose_after_connect(ctx, args.owner, args.audience, saved.audience_id)


async def _oauth(ctx: Context, code: str) -> Account:
    """Swap the code for a token and learn its account (push §3.1)."""
    token = await exchange_code(ctx.provider, ctx.settings, code)
    meta = await read_metadata(ctx.provider, ctx.settings, token)
    return Account("oauth", token, meta.dc, meta.api_endpoint, meta.account_id, meta.account_name)


async def _verify_key(ctx: Context, key: str) -> Account:
    """An API key's data centre is its suffix (push §3.1); the API root (`GET /3.0/`) proves
    the key and names its account, so key and OAuth connections to one account share its
    10 connections."""
    if "-" not in key:
        raise CommandError("that is not a Mailchimp API key (it ends in -<dc>, e.g. -us19)")
    dc = key.rsplit("-", 1)[-1]
    endpoint = ctx.provider.base_url.replace("{dc}", dc).rstrip("/").removesuffix("/3.0")
    probe = Connection("", "api_key", key, endpoint, f"key-{dc}", None, None, "active", None)
    async with probe.client(ctx.provider, ctx.settings) as client:
        try:
            root = await client.get_json("")
        except ProviderError as error:
            if error.status in (401, 403):
                raise CommandError(f"Mailchimp refused the API key ({error.message})") from None
            raise
    account_id, name = root.get("account_id"), root.get("account_name")
    if not account_id:
        raise CommandError("Mailchimp's API root did not name the key's account")
    return Account("api_key", key, dc, endpoint, str(account_id), str(name) if name else None)


async def _choose_after_connect(
    ctx: Context, owner: str, wanted: str | None, kept: str | None
) -> int:
    """One audience: chosen. Several: `--audience`, a prompt on a terminal, or a hint."""
    audiences = await _audiences(ctx, _connection(ctx, owner))
    if wanted is not None:
        return _select(ctx, owner, audiences, wanted)
    if kept is not None and any(a.get("id") == kept for a in audiences):
        say(f'Still syncing to "{_name(audiences, kept)}".')
        return 0
    if not audiences:
        say(
            "This Mailchimp account has no audience yet: create one in Mailchimp, then run "
            f"`syncflows mailchimp audiences --owner {owner}`."
        )
        return 0
    if len(audiences) == 1:  # the seed, 2.2
        only = audiences[0]
        _store(ctx, owner, only)
        say(f'Connected to "{only.get("name")}" (the account\'s only audience).')
        return 0
    say(_table(audiences, None))
    if _interactive():
        return _select(ctx, owner, audiences, _ask(audiences))
    say(
        "Several audiences: choose one with "
        f"`syncflows mailchimp select-audience --owner {owner} --audience <id>`."
    )
    return 0


def _interactive() -> bool:
    return sys.stdin is not None and sys.stdin.isatty()


def _ask(audiences: list[dict[str, Any]]) -> str:
    """The id of the audience the user picks by number."""
    while True:
        answer = input(f"Audience to sync to (1-{len(audiences)}): ").strip()
        if answer.isdigit() and 1 <= int(answer) <= len(audiences):
            return str(audiences[int(answer) - 1].get("id"))
        say(f"Please type a number from 1 to {len(audiences)}.")


# ---- audiences ----------------------------------------------------------------------------------


def _name(audiences: list[dict[str, Any]], audience_id: str) -> str:
    return next((str(a.get("name")) for a in audiences if a.get("id") == audience_id), audience_id)


def _table(audiences: list[dict[str, Any]], selected: str | None) -> str:
    """Numbered lines: number, id, name, subscribed members, `*` on the chosen one."""
    lines = []
    for number, audience in enumerate(audiences, 1):
        mark = "*" if audience.get("id") == selected else " "
        members = (audience.get("stats") or {}).get("member_count", 0)
        lines.append(
            f"{mark} {number:>2}. {audience.get('id')}  {audience.get('name')}  "
            f"({members} subscribed)"
        )
    return "\n".join(lines)


def _store(ctx: Context, owner: str, audience: dict[str, Any]) -> bool:
    name = audience.get("name")
    with session_scope(ctx.url) as session:
        return manage.select_audience(
            session, owner, str(audience.get("id")), str(name) if name else None
        )


def _select(ctx: Context, owner: str, audiences: list[dict[str, Any]], wanted: str) -> int:
    audience = next((a for a in audiences if a.get("id") == wanted), None)
    if audience is None:
        known = ", ".join(str(a.get("id")) for a in audiences) or "none"
        raise CommandError(f"the account has no audience {wanted!r} (its audiences: {known})")
    changed = _store(ctx, owner, audience)
    suffix = "; the next sync reconciles it first" if changed else " (unchanged)"
    say(f'Owner {owner} syncs to "{audience.get("name")}"{suffix}.')
    return 0


def audiences(args: argparse.Namespace) -> int:
    """List the owner's audiences; `*` marks the chosen one."""

    async def listing() -> int:
        ctx = await _prepare()
        connection = _connection(ctx, args.owner)
        found = await _audiences(ctx, connection)
        say(_table(found, connection.audience_id) if found else "The account has no audience.")
        return 0

    return asyncio.run(listing())


def select_audience(args: argparse.Namespace) -> int:
    """Sync the owner to another audience (checked against the account's)."""

    async def choose() -> int:
        ctx = await _prepare()
        found = await _audiences(ctx, _connection(ctx, args.owner))
        return _select(ctx, args.owner, found, args.audience)

    return asyncio.run(choose())


# ---- the rest -----------------------------------------------------------------------------------


def disconnect(args: argparse.Namespace) -> int:
    """Forget the owner's connection; Mailchimp keeps the audience and its members."""
    with session_scope(_database()) as session:
        existed = manage.disconnect(session, args.owner)
    if not existed:
        raise CommandError(f"owner {args.owner!r} has no Mailchimp connection")
    say(
        f"Disconnected owner {args.owner}: credentials and queued changes removed; "
        "the Mailchimp audience is left as it is."
    )
    return 0


def status(args: argparse.Namespace) -> int:
    """'Connected to "…" · last synced …' per owner (every connection without --owner)."""
    with session_scope(_database()) as session:
        if args.owner is not None:
            say("\n".join(manage.status_lines(session, args.owner)))
            return 0
        owners = manage.connected_owners(session)
        if not owners:
            say("No Mailchimp connections.")
        for owner in owners:
            first, *notes = manage.status_lines(session, owner)
            say("\n".join([f"{owner}: {first}", *(f"  {note}" for note in notes)]))
    return 0


def make_key(args: argparse.Namespace) -> int:  # noqa: ARG001 - a command
    """A fresh key for MAILCHIMP_TOKEN_KEYS (put it first, then `rotate-keys`)."""
    print(new_key())  # noqa: T201 - the one output meant to be copied
    return 0


def rotate_keys(args: argparse.Namespace) -> int:  # noqa: ARG001 - a command
    """Re-encrypt every credential under the first key of MAILCHIMP_TOKEN_KEYS."""
    ctx = asyncio.run(_prepare())
    with session_scope(ctx.url) as session:
        count = manage.rotate_keys(session, ctx.ring)
    say(
        f"Re-encrypted {count} credential{'' if count == 1 else 's'} under the first key; "
        "older keys can now be removed from MAILCHIMP_TOKEN_KEYS."
    )
    return 0


def triggers(args: argparse.Namespace) -> int:
    """Switch the PostgreSQL capture triggers (migration 0007) on or off."""
    from flows.mailchimp.capture import set_triggers

    with session_scope(_database()) as session:
        if session.get_bind().dialect.name != "postgresql":
            raise CommandError(
                "capture triggers exist on PostgreSQL only; on SQLite the application calls "
                "flows.mailchimp.capture.capture()"
            )
        set_triggers(session, args.state == "on")
    say(f"Mailchimp capture triggers are {args.state}.")
    return 0


def sync_now(args: argparse.Namespace) -> int:
    """The seed's Sync Now: a full reconciliation of the owner's audience, once an hour."""
    url = _database()
    # Refused here, before Prefect starts (seconds); the flow's own check is the binding one.
    with session_scope(url) as session:
        allowed = manage.sync_now_allowed_at(session, args.owner, utcnow())
    if allowed is not None and not args.test_mode:
        raise CommandError(
            f"Sync Now for owner {args.owner} is allowed again at "
            f"{allowed:%Y-%m-%d %H:%M} UTC (once an hour)"
        )
    # Imported when used: the flow imports Prefect, which no other command needs.
    from flows.mailchimp.flow import SyncNowRefused, mailchimp_sync
    from shared.cli import format_table

    try:
        result = asyncio.run(
            mailchimp_sync(owner=args.owner, full_sync=True, test_mode=args.test_mode)
        )
    except SyncNowRefused as refused:  # "Sync Now is allowed again at 14:03 UTC …"
        raise CommandError(str(refused)) from None
    if result.summaries:
        say(format_table([summary.row() for summary in result.summaries]))
    if args.owner in result.idle:  # no audience yet, or credentials Mailchimp refused
        with session_scope(url) as session:
            say("\n".join(["Nothing was synced:", *manage.status_lines(session, args.owner)]))
    return 0


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "connect": connect,
    "audiences": audiences,
    "select-audience": select_audience,
    "disconnect": disconnect,
    "status": status,
    "new-key": make_key,
    "rotate-keys": rotate_keys,
    "triggers": triggers,
    "sync-now": sync_now,
}


if __name__ == "__main__":
    sys.exit(main())
