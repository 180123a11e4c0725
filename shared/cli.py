"""`syncflows`: the commands that are not flows (database, demo, status, deploy, sandboxes)."""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sys
from collections.abc import Sequence
from typing import Any

from shared.db import migrate
from shared.settings import load_settings

SANDBOX_OPTIONS = ("api_key", "per_second", "preset", "orders")  # passed on only when given
DEMO_SCALE = 20  # the demo's MailerLite runs its per-minute limits 20 times faster
COLUMNS = (
    "flow",
    "mode",
    "state",
    "records_read",
    "created",
    "updated",
    "unchanged",
    "skipped",
    "failed",
    "requests",
    "seconds",
)


def format_table(rows: Sequence[dict[str, Any]], columns: Sequence[str] = COLUMNS) -> str:
    """Rows as a plain fixed-width table."""
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns}
    lines = [
        "  ".join(c.ljust(widths[c]) for c in columns),
        "  ".join("-" * widths[c] for c in columns),
    ]
    lines += [
        "  ".join(
            str(r.get(c, "")).rjust(widths[c])
            if isinstance(r.get(c), int | float)
            else str(r.get(c, "")).ljust(widths[c])
            for c in columns
        )
        for r in rows
    ]
    return "\n".join(lines)


def run_demo() -> list[dict[str, Any]]:
    """Run every flow against loopback sandboxes on the configured (default SQLite) database."""
    # A fresh PREFECT_HOME's temporary API migrates its own database first: 10 to 25 s on two
    # cores, past Prefect's 20 s default (prefect-notes §1). Set before Prefect is imported.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    from flows.activecampaign.flow import activecampaign_sync
    from flows.brevo.flow import brevo_sync
    from flows.magento.flow import magento_sync
    from flows.mailerlite.flow import mailerlite_sync
    from flows.selfcheck import selfcheck_sync
    from sandbox.activecampaign import create_app as activecampaign_app
    from sandbox.app_customers import seed_customers
    from sandbox.app_users import seed_users
    from sandbox.brevo import create_app as brevo_app
    from sandbox.magento import create_app as magento_app
    from sandbox.mailerlite import create_app as mailerlite_app
    from sandbox.selfcheck import create_app
    from sandbox.server import serve

    settings = load_settings()
    migrate(settings.database_url)
    key = secrets.token_urlsafe(24)
    rows = []
    with serve(create_app(api_key=key)) as base_url:
        os.environ.update(SELFCHECK_BASE_URL=base_url, SELFCHECK_API_KEY=key)
        rows.append(asyncio.run(selfcheck_sync()).row())
    # A small generated account (the same every time, so a second demo is incremental).
    with serve(activecampaign_app(key, contacts=300, deals=250, per_second=None)) as base_url:
        os.environ.update(AC_API_URL=f"{base_url}/api/3", AC_API_KEY=key)
        rows.append(asyncio.run(activecampaign_sync()).row())
    # A small shop (the same orders every time, so a second demo finds nothing new).
    with serve(magento_app(key, orders=300)) as base_url:
        os.environ.update(MAGENTO_BASE_URL=base_url, MAGENTO_ACCESS_TOKEN=key)
        rows.append(asyncio.run(magento_sync()).row())
    # 300 application users (seeded once, so a second demo has nothing to send), a few of them
    # demo/test accounts or invalid addresses; MailerLite's limits 20 times faster than real.
    if not _count(settings.database_url, "users"):
        seed_users(settings.database_url, 300, seed=1, invalid_share=0.01)
    mailerlite = mailerlite_app(key, scale=DEMO_SCALE)
    group = mailerlite.state.sandbox.add_group("App users")
    with serve(mailerlite) as base_url:
        os.environ.update(
            MAILER_LITE_BASE_URL=f"{base_url}/api",
            MAILER_LITE_API_KEY=key,
            MAILER_LITE_GROUP_ID=group,
            MAILER_LITE_RATE_PER_SECOND=str(2 * DEMO_SCALE),
            MAILER_LITE_IMPORTS_PER_MINUTE=str(5 * DEMO_SCALE),
        )
        rows.append(asyncio.run(mailerlite_sync()).row())
    # 200 customers (seeded once), 80 % opted in: enough for one bulk import.
    if not _count(settings.database_url, "customers"):
        seed_customers(settings.database_url, 200, seed=1)
    with serve(brevo_app(key, import_seconds=0.5)) as base_url:
        os.environ.update(
            BREVO_BASE_URL=f"{base_url}/v3",
            BREVO_API_KEY=key,
            BREVO_LIST_ID="2",
            BREVO_DEFAULT_COUNTRY="NL",
        )
        rows.append(asyncio.run(brevo_sync()).row())
    rows.append(_demo_mailchimp(settings.database_url))
    return rows


def _demo_mailchimp(url: str) -> dict[str, Any]:
    """One owner's 150 contacts into a sandbox audience (seeded once): the first demo
    reconciles the audience in full; each later one edits five contacts and drains them."""
    from flows.mailchimp.flow import MailchimpResult, mailchimp_sync
    from sandbox.app_contacts import change_contacts, connect_owner, seed_contacts
    from sandbox.mailchimp import create_app as mailchimp_app
    from sandbox.server import serve
    from shared.crypto import Keyring, new_key

    owner = "demo-agent"
    # Every demo stores a fresh sandbox token, so a fresh key will do unless one is set.
    os.environ.setdefault("MAILCHIMP_TOKEN_KEYS", new_key())
    ring = Keyring(os.environ["MAILCHIMP_TOKEN_KEYS"], "MAILCHIMP_TOKEN_KEYS")
    app = mailchimp_app(default_account=False)
    with serve(app) as base_url:
        connect_owner(url, app.state.sandbox, base_url, ring, owner)
        if not _count(url, "contacts"):
            seed_contacts(url, owner, 150)
        else:
            runs = _count(url, "sync_run WHERE provider = 'mailchimp'")
            change_contacts(url, owner, created=0, edited=5, retagged=0, deleted=0, seed=runs)
        result: MailchimpResult = asyncio.run(mailchimp_sync(owner=owner))
    [summary] = result.summaries
    return summary.row()


def _count(url: str, table: str) -> int:
    import sqlalchemy as sa

    from shared.db import get_engine

    with get_engine(url).connect() as connection:
        return int(connection.scalar(sa.text(f"SELECT COUNT(*) FROM {table}")) or 0)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="syncflows", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    db = commands.add_parser("db", help="database schema")
    db.add_argument("action", choices=["upgrade"], help="migrate DATABASE_URL to the newest schema")
    commands.add_parser("demo", help="run every flow against local sandboxes and print a summary")
    status = commands.add_parser(
        "status", help="last run, cursor, failures and schedule per provider"
    )
    status.add_argument("provider", nargs="?", help="only this provider (e.g. brevo)")
    commands.add_parser("deploy", help="create the work pool and limits, deploy prefect.yaml")
    from flows.mailchimp import cli as mailchimp_cli  # light: heavy imports wait for a command

    mailchimp_cli.add_arguments(
        commands.add_parser("mailchimp", help="owners' Mailchimp connections, audiences, Sync Now")
    )
    sandbox = commands.add_parser("sandbox", help="serve a provider's local emulator on loopback")
    sandbox.add_argument("provider", help="e.g. selfcheck")
    sandbox.add_argument("--port", type=int, default=0, help="0 picks a free port")
    sandbox.add_argument("--host", default="127.0.0.1")
    sandbox.add_argument("--latency", type=float, default=0.0, help="seconds before each answer")
    sandbox.add_argument("--jitter", type=float, default=0.0, help="plus up to this many seconds")
    sandbox.add_argument("--scale", type=float, default=1.0, help="sandbox seconds per second")
    sandbox.add_argument("--seed", type=int, default=0, help="for generated records")
    # Provider options go to the factory only when given, so each keeps its own defaults.
    sandbox.add_argument(
        "--api-key", default=argparse.SUPPRESS, help="the key it accepts (default: its own)"
    )
    sandbox.add_argument(
        "--per-second",
        type=_per_second,
        default=argparse.SUPPRESS,
        help="requests per second it admits, 0 or 'none' for no limit "
        "(default: the provider's documented limit)",
    )
    sandbox.add_argument(
        "--preset",
        default=argparse.SUPPRESS,
        help="generated account, e.g. activecampaign 'default' or 'seed' (82k contacts)",
    )
    sandbox.add_argument(
        "--orders",
        type=int,
        default=argparse.SUPPRESS,
        help="generated orders (magento; default 2,000)",
    )
    sandbox.add_argument(
        "--stats-file", help="on exit (Ctrl+C, SIGTERM), write its request counts here as JSON"
    )
    args = parser.parse_args(argv)

    if args.command == "db":
        settings = load_settings()
        migrate(settings.database_url)
        print(f"database at {_safe_url(settings.database_url)} is up to date")  # noqa: T201
    elif args.command == "demo":
        rows = run_demo()
        print("\n" + format_table(rows))  # noqa: T201
    elif args.command == "status":
        print(show_status(args.provider))  # noqa: T201
    elif args.command == "mailchimp":
        return mailchimp_cli.run(args)
    elif args.command == "deploy":
        from shared.deploy import deploy

        return deploy()
    elif args.command == "sandbox":
        from sandbox.registry import UnknownSandbox, main_sandbox

        try:
            given = {name: getattr(args, name) for name in SANDBOX_OPTIONS if name in args}
            main_sandbox(
                args.provider,
                args.port,
                args.host,
                stats_file=args.stats_file,
                latency=args.latency,
                jitter=args.jitter,
                scale=args.scale,
                seed=args.seed,
                **given,
            )
        except UnknownSandbox as unknown:
            parser.error(str(unknown))
    return 0


def _per_second(text: str) -> int | None:
    """`--per-second`: a whole number of requests; 0 or "none" switches the limit off."""
    if text.strip().lower() in ("0", "none"):
        return None
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of requests: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {value}")
    return value


def show_status(provider: str | None) -> str:
    """The `syncflows status` report; adds schedules when a Prefect API is configured."""
    from shared.status import add_schedules, collect_status, format_status

    settings = load_settings()
    statuses = collect_status(settings.database_url, provider)
    report = ""
    if settings.prefect_api_configured:
        try:
            asyncio.run(add_schedules(statuses, provider))
        except Exception as error:  # the database part is still worth printing
            report = f"\n\n(schedules unavailable: Prefect API unreachable: {type(error).__name__})"
    return format_status(statuses, _safe_url(settings.database_url)) + report


def _safe_url(url: str) -> str:
    from sqlalchemy import make_url

    return make_url(url).render_as_string(hide_password=True)


if __name__ == "__main__":
    sys.exit(main())
