"""The whole collection as a team runs it: a Prefect server on PostgreSQL, `make deploy`, the
`syncflows` pool with two workers, the five provider sandboxes and the self-check one, a Sentry
receiver and an alert webhook, all on loopback.

Every credential is distinctive (`secrets`), so the secrets audit can search for each one.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa

from bench.local import fresh_database, prefect_server, process_table, stop_group
from sandbox.activecampaign import create_app as activecampaign_app
from sandbox.app_contacts import connect_owner, seed_contacts
from sandbox.app_customers import seed_customers
from sandbox.app_users import seed_users
from sandbox.brevo import create_app as brevo_app
from sandbox.magento import create_app as magento_app
from sandbox.mailchimp import create_app as mailchimp_app
from sandbox.mailerlite import create_app as mailerlite_app
from sandbox.selfcheck import create_app as selfcheck_app
from sandbox.server import serve
from shared.crypto import Keyring, new_key
from shared.db import get_engine, migrate
from tests.support.sentry_receiver import create_receiver
from tests.support.webhook import alert_receiver

T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[2]
AC_CAP = 5  # ActiveCampaign's documented requests per second per account (pull §1.11)
AC_CONTACTS, AC_DEALS = 1_500, 1_000
MAGENTO_ORDERS = 300
USERS, CUSTOMERS, CONTACTS = 300, 200, 150
OWNERS = ("owner-a", "owner-b")  # two owners connected to one Mailchimp account
SHARED_ACCOUNT = "agency account"
DEPLOYMENTS = {
    "selfcheck": "selfcheck-sync/selfcheck",
    "activecampaign": "activecampaign-sync/activecampaign-every-15-min",
    "magento": "magento-sync/magento-daily",
    "mailerlite": "mailerlite-sync/mailerlite-daily",
    "brevo": "brevo-sync/brevo-hourly",
    "mailchimp": "mailchimp-sync/mailchimp-outbox",
}


def _secret(name: str) -> str:
    return f"e2e{name}{secrets.token_hex(12)}"


@dataclass
class Stack:
    home: Path
    api_url: str
    app_url: str  # the application's database (psycopg URL)
    prefect_url: str  # the Prefect server's database
    env: dict[str, str]
    apps: dict[str, Any]  # sandbox name → its ASGI app (`.state.sandbox`)
    sentry: Any
    alerts: Any
    secrets: dict[str, str]
    workers: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def sandbox(self, name: str) -> Any:
        return self.apps[name].state.sandbox

    def prefect(self, *args: str, timeout: float = 180) -> str:
        """`prefect <args>` with the stack's environment; fails the test on a non-zero exit."""
        return run([sys.executable, "-m", "prefect", *args], self.env, timeout)

    def trigger(self, deployment: str, **parameters: Any) -> str:
        """`prefect deployment run <deployment> -p k=v …`; the flow run id it prints."""
        args = ["deployment", "run", DEPLOYMENTS.get(deployment, deployment)]
        for name, value in parameters.items():
            args += ["-p", f"{name}={_cli_value(value)}"]
        output = self.prefect(*args)
        found = re.search(r"UUID: ([0-9a-f-]{36})", output)
        assert found is not None, output
        return found.group(1)

    def api(self, call: Callable[[Any], Awaitable[T]]) -> T:
        """`await call(client)` with a Prefect client of the stack's server."""
        from prefect import get_client
        from prefect.settings import PREFECT_API_URL, temporary_settings

        async def go() -> T:
            async with get_client() as client:
                return await call(client)

        with temporary_settings({PREFECT_API_URL: self.api_url}):
            return asyncio.run(go())

    def wait(self, *flow_run_ids: str, seconds: float = 240) -> dict[str, Any]:
        """Poll until every run is final; the flow runs by id."""

        async def poll(client: Any) -> dict[str, Any]:
            deadline = time.monotonic() + seconds
            while True:
                runs = {i: await client.read_flow_run(i) for i in flow_run_ids}
                if all(r.state and r.state.is_final() for r in runs.values()):
                    return runs
                if time.monotonic() > deadline:
                    states = {i: r.state.name if r.state else None for i, r in runs.items()}
                    raise AssertionError(f"flow runs not final after {seconds} s: {states}")
                await asyncio.sleep(1)

        return self.api(poll)

    def start_worker(self, name: str) -> None:
        """`prefect worker start --pool syncflows --limit 1`: one flow run at a time, so two
        runs started together land on two workers."""
        log = (self.home / f"{name}.log").open("ab")
        self.workers[name] = subprocess.Popen(
            [sys.executable, "-m", "prefect", "worker", "start", "--pool", "syncflows",
             "--name", name, "--limit", "1"],
            cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        log.close()

    def kill_worker(self, name: str) -> list[int]:
        """`kill -9` of the worker and the flow-run process it started, as when its machine or
        container dies (the flow run's own process sits in a session of its own)."""
        worker = self.workers.pop(name)
        pids = [worker.pid, *descendants(worker.pid)]
        for pid in pids:
            with suppress(ProcessLookupError):  # it may have gone with its parent
                os.kill(pid, signal.SIGKILL)
        worker.wait()
        return pids

    def stop_workers(self) -> None:
        """SIGTERM every worker at once, then wait for each (SIGKILL after 10 s)."""
        workers = [self.workers.pop(name) for name in list(self.workers)]
        for worker in workers:
            os.killpg(worker.pid, signal.SIGTERM)
        for worker in workers:
            stop_group(worker, timeout=10)

    def worker_logs(self) -> str:
        return "".join(p.read_text(errors="replace") for p in sorted(self.home.glob("e2e-w*.log")))


def _cli_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def run(command: list[str], env: dict[str, str], timeout: float = 180) -> str:
    result = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert result.returncode == 0, f"{command}: {result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    return result.stdout


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (children, then theirs)."""
    children: dict[int, list[int]] = {}
    for child, (_, parent, _) in process_table().items():
        children.setdefault(parent, []).append(child)
    found, queue = [], [pid]
    while queue:
        below = children.get(queue.pop(), [])
        found += below
        queue += below
    return found


@contextmanager
def production_stack(home: Path) -> Iterator[Stack]:
    """Start everything, deploy, seed the application database, start two workers."""
    keys = {
        name: _secret(name)
        for name in ("selfcheck", "activecampaign", "magento", "mailerlite", "brevo")
    }
    keys["brevo"] = "xkeysib-" + keys["brevo"]
    token_keys = new_key()
    keys["mailchimp_token_keys"] = token_keys
    apps = {
        "selfcheck": selfcheck_app(api_key=keys["selfcheck"]),
        "activecampaign": activecampaign_app(
            keys["activecampaign"], contacts=AC_CONTACTS, deals=AC_DEALS, per_second=AC_CAP
        ),
        "magento": magento_app(keys["magento"], orders=MAGENTO_ORDERS),
        "mailerlite": mailerlite_app(keys["mailerlite"], scale=20),
        "brevo": brevo_app(keys["brevo"], import_seconds=0.5),
        "mailchimp": mailchimp_app(default_account=False),
    }
    group = apps["mailerlite"].state.sandbox.add_group("App users")
    sentry, alerts = create_receiver(), alert_receiver()
    with ExitStack() as stack:
        app_url = stack.enter_context(fresh_database("syncflows_e2e_app"))
        prefect_url = stack.enter_context(fresh_database("syncflows_e2e_prefect"))
        # Only runs the tests start: scheduled ones would take the one-at-a-time slots.
        scheduler_off = {"PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": "false"}
        server = stack.enter_context(prefect_server(prefect_url, home, env=scheduler_off))
        api_url = server.api_url
        urls = {name: stack.enter_context(serve(app)) for name, app in apps.items()}
        sentry_url = stack.enter_context(serve(sentry))
        alerts_url = stack.enter_context(serve(alerts))
        env = {
            **os.environ,
            "PREFECT_API_URL": api_url,
            "PREFECT_HOME": str(home),
            "PREFECT_WORKER_QUERY_SECONDS": "1",
            "DATABASE_URL": app_url,
            "SENTRY_DSN": f"http://e2epublic@{sentry_url.removeprefix('http://')}/1",
            "SYNCFLOWS_ALERT_WEBHOOK_URL": f"{alerts_url}/hook",
            "SELFCHECK_BASE_URL": urls["selfcheck"],
            "SELFCHECK_API_KEY": keys["selfcheck"],
            "AC_API_URL": f"{urls['activecampaign']}/api/3",
            "AC_API_KEY": keys["activecampaign"],
            "AC_RATE_PER_SECOND": str(AC_CAP),
            "MAGENTO_BASE_URL": urls["magento"],
            "MAGENTO_ACCESS_TOKEN": keys["magento"],
            "MAILER_LITE_BASE_URL": f"{urls['mailerlite']}/api",
            "MAILER_LITE_API_KEY": keys["mailerlite"],
            "MAILER_LITE_GROUP_ID": group,
            "MAILER_LITE_RATE_PER_SECOND": "40",  # the sandbox runs 20 times faster
            "MAILER_LITE_IMPORTS_PER_MINUTE": "100",
            "BREVO_BASE_URL": f"{urls['brevo']}/v3",
            "BREVO_API_KEY": keys["brevo"],
            "BREVO_LIST_ID": "2",
            "BREVO_DEFAULT_COUNTRY": "NL",
            "MAILCHIMP_TOKEN_KEYS": token_keys,
        }
        migrate(app_url)
        seed_users(app_url, USERS, seed=1, invalid_share=0.01)
        seed_customers(app_url, CUSTOMERS, seed=1)
        ring = Keyring(token_keys, "MAILCHIMP_TOKEN_KEYS")
        mailchimp = apps["mailchimp"].state.sandbox
        for owner in OWNERS:
            connect_owner(app_url, mailchimp, urls["mailchimp"], ring, owner, SHARED_ACCOUNT)
            seed_contacts(app_url, owner, CONTACTS)
        with get_engine(app_url).connect() as connection:
            stored = connection.scalars(
                sa.text("SELECT access_token_encrypted FROM mailchimp_connection")
            )
            for n, token in enumerate(stored):
                keys[f"mailchimp_oauth_{n}"] = ring.decrypt(token)
        result = Stack(home, api_url, app_url, prefect_url, env, apps, sentry, alerts, secrets=keys)
        run(["make", "deploy"], env, timeout=300)
        stack.callback(result.stop_workers)
        result.start_worker("e2e-w1")
        result.start_worker("e2e-w2")
        yield result
