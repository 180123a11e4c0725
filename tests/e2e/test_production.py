"""Production readiness (issue 9): the collection on a Prefect server backed by PostgreSQL, the
`syncflows` pool with two workers, every deployment triggered through the Prefect CLI, provider
caps shared across workers, workers killed mid-run, and a search for every secret.

The tests share one stack and run in file order (marker `serial`: they measure rates, and the
stack needs the machine's two cores to itself).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from prefect.flows import load_flow_from_entrypoint

from bench.local import fresh_database
from flows.brevo.tables import Customer
from sandbox.app_contacts import change_contacts
from sandbox.app_customers import seed_customers
from sandbox.base import Latency
from sandbox.brevo import create_app as brevo_app
from sandbox.server import serve
from shared.alerts import AUTOMATION, CRASH_AUTOMATION
from shared.db import get_engine, migrate
from shared.names import global_limit_name
from shared.settings import PROVIDERS
from tests.conftest import POSTGRES_MISSING
from tests.e2e.stack import (
    AC_CAP,
    AC_CONTACTS,
    AC_DEALS,
    CONTACTS,
    CUSTOMERS,
    MAGENTO_ORDERS,
    OWNERS,
    ROOT,
    SHARED_ACCOUNT,
    Stack,
    production_stack,
    run,
)
from tests.support.measure import MEASUREMENTS, analyse

pytestmark = [pytest.mark.e2e, pytest.mark.serial]
SPEC = yaml.safe_load((ROOT / "prefect.yaml").read_text())


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    if POSTGRES_MISSING:
        pytest.skip(POSTGRES_MISSING)
    with production_stack(tmp_path_factory.mktemp("stack")) as started:
        yield started


def scalar(stack: Stack, sql: str, **params: Any) -> Any:
    with get_engine(stack.app_url).connect() as connection:
        return connection.scalar(sa.text(sql), params)


def ledger(stack: Stack, flow_run_id: str) -> dict[str, Any]:
    with get_engine(stack.app_url).connect() as connection:
        rows = connection.execute(
            sa.text("SELECT * FROM sync_run WHERE flow_run_id = :id"), {"id": flow_run_id}
        )
        found = [dict(r._mapping) for r in rows]
    assert len(found) == 1, found
    return found[0]


def test_make_deploy_again_changes_nothing_and_matches_prefect_yaml(stack: Stack) -> None:
    """The stack ran `make deploy` once; a second run updates in place, creating nothing."""
    first = stack.api(_deployed)
    run(["make", "deploy"], stack.env, timeout=300)
    state = stack.api(_deployed)

    assert state["pool"].type == "process"
    for spec in SPEC["deployments"]:
        deployment = state["deployments"][spec["name"]]
        assert deployment.id == first["deployments"][spec["name"]].id
        assert deployment.work_pool_name == "syncflows"
        assert deployment.parameters == spec["parameters"]
        assert deployment.global_concurrency_limit.limit == 1
        assert deployment.concurrency_options.collision_strategy.value == "CANCEL_NEW"
        steps = deployment.pull_steps[0]["prefect.deployments.steps.set_working_directory"]
        assert steps["directory"] == str(ROOT)
        got = [(s.schedule.cron, s.schedule.timezone, s.active) for s in deployment.schedules]
        want = [(s["cron"], s["timezone"], s.get("active", True)) for s in spec["schedules"]]
        assert got == want
    assert all(limit.limit == 1 for limit in state["limits"].values())
    assert sorted(state["automations"]) == sorted([AUTOMATION, CRASH_AUTOMATION])  # once each


async def _deployed(client: Any) -> dict[str, Any]:
    deployments = {}
    for spec in SPEC["deployments"]:
        flow = load_flow_from_entrypoint(str(ROOT / spec["entrypoint"]))
        deployments[spec["name"]] = await client.read_deployment_by_name(
            f"{flow.name}/{spec['name']}"
        )
    limits = {
        cls.provider: await client.read_global_concurrency_limit_by_name(
            global_limit_name(cls.provider, "default")
        )
        for cls in PROVIDERS
        if not cls.accounts_per_connection  # Mailchimp's come with its connections
    }
    return {
        "pool": await client.read_work_pool("syncflows"),
        "deployments": deployments,
        "limits": limits,
        "automations": [a.name for a in await client.read_automations()],
    }


def test_every_deployment_runs_from_the_cli_on_two_workers(stack: Stack) -> None:
    runs = {
        "selfcheck": stack.trigger("selfcheck", records=12, batch_size=4),
        "activecampaign": stack.trigger("activecampaign", full_sync=True),
        "magento": stack.trigger("magento", full_sync=True, batch_size=50),
        "mailerlite": stack.trigger("mailerlite", full_sync=True),
        "brevo": stack.trigger("brevo", full_sync=True),
        "mailchimp": stack.trigger("mailchimp"),  # new connections: reconciled in full first
    }
    finished = stack.wait(*runs.values(), seconds=300)
    states = {name: finished[i].state.name for name, i in runs.items()}
    assert set(states.values()) == {"Completed"}, states
    assert finished[runs["magento"]].parameters == {
        "full_sync": True,
        "test_mode": False,
        "batch_size": 50,
    }

    # Both workers took runs (each runs one at a time, and six were waiting).
    for name in ("e2e-w1", "e2e-w2"):
        log = (stack.home / f"{name}.log").read_text()
        assert any(i in log for i in runs.values()), f"{name} ran nothing:\n{log[-2000:]}"

    assert ledger(stack, runs["selfcheck"])["created"] == 12
    assert len(stack.sandbox("selfcheck").items) == 12

    assert scalar(stack, "SELECT COUNT(*) FROM ac_contact") == AC_CONTACTS
    assert scalar(stack, "SELECT COUNT(*) FROM ac_deal") == AC_DEALS
    assert ledger(stack, runs["activecampaign"])["mode"] == "full"

    magento = ledger(stack, runs["magento"])
    assert magento["records_read"] == MAGENTO_ORDERS
    assert magento["created"] == scalar(stack, "SELECT COUNT(*) FROM consumer") > 0

    mailerlite = ledger(stack, runs["mailerlite"])
    subscribers = stack.sandbox("mailerlite").subscribers
    assert mailerlite["created"] == len(subscribers) > 0
    assert mailerlite["failed"] == scalar(
        stack, "SELECT COUNT(*) FROM sync_failure WHERE provider = 'mailerlite'"
    )

    brevo = stack.sandbox("brevo")
    with get_engine(stack.app_url).connect() as connection:
        opted_in = connection.execute(
            sa.text("SELECT email, brevo_contact_id FROM customers WHERE marketing_opt_in")
        ).all()
    assert opted_in
    for email, contact_id in opted_in:
        assert contact_id == brevo.contact(email)["id"], email  # the id written back

    mailchimp = stack.sandbox("mailchimp")
    account = mailchimp.accounts[SHARED_ACCOUNT]
    for owner in OWNERS:
        [audience] = [a for a in account.audiences.values() if a.name == f"{owner} contacts"]
        with_email = scalar(
            stack,
            "SELECT COUNT(*) FROM contacts WHERE owner_id = :o AND email IS NOT NULL",
            o=owner,
        )
        assert len(audience.members) == with_email > CONTACTS * 0.9

    status = run([sys.executable, "-m", "shared.cli", "status", "selfcheck"], stack.env)
    assert "last run   completed" in status
    assert "read 12, created 12" in status
    assert "schedule   selfcheck: 30 5 * * * UTC (paused)" in status


def test_a_second_run_while_the_first_is_running_is_cancelled_visibly(stack: Stack) -> None:
    selfcheck = stack.sandbox("selfcheck")
    selfcheck.latency = Latency(4.0)
    try:
        slow = stack.trigger("selfcheck", records=16)
        late = stack.trigger("selfcheck", records=20)
        finished = stack.wait(slow, late)
    finally:
        selfcheck.latency = Latency()
    assert finished[slow].state.name == "Completed"
    assert finished[late].state.type.value == "CANCELLED", finished[late].state
    assert "concurrency" in (finished[late].state.message or "").lower()  # what the UI shows


def test_two_workers_share_each_provider_cap(stack: Stack) -> None:
    """Two ActiveCampaign runs of one account at once (a second deployment, so neither is
    cancelled), one per worker: the account's cap holds in every rolling second and is used.
    Then two owners of one Mailchimp account drain at once: never an 11th connection."""
    second = _second_deployment(stack, "activecampaign-sync/activecampaign-every-15-min")
    mailchimp_second = _second_deployment(stack, "mailchimp-sync/mailchimp-outbox")
    activecampaign = stack.sandbox("activecampaign")
    activecampaign.log.clear()
    first = stack.trigger("activecampaign", full_sync=True)
    other = stack.trigger(second, full_sync=True)
    finished = stack.wait(first, other, seconds=240)
    assert {r.state.name for r in finished.values()} == {"Completed"}
    arrivals = [e.at for e in activecampaign.log]
    report = analyse(arrivals)
    statuses = [e.status for e in activecampaign.log]
    both = [ledger(stack, i)["requests"] for i in (first, other)]
    MEASUREMENTS.append(
        f"e2e: two ActiveCampaign runs on two workers, cap {AC_CAP}/s: {report}; "
        f"split {both[0]} + {both[1]}"
    )
    assert statuses.count(429) == 0
    assert sum(both) == report.requests
    # Both full passes of one account together still saw every record: none soft-deleted.
    live = "SELECT COUNT(*) FROM {} WHERE deleted_at IS NULL"
    assert scalar(stack, live.format("ac_contact")) == AC_CONTACTS
    assert scalar(stack, live.format("ac_deal")) == AC_DEALS
    assert report.max_window <= AC_CAP
    assert report.rate >= AC_CAP * 0.95

    mailchimp = stack.sandbox("mailchimp")
    mailchimp.latency = Latency(0.2)
    for n, owner in enumerate(OWNERS):
        change_contacts(stack.app_url, owner, created=300, edited=50, retagged=0, deleted=0, seed=n)
    account = mailchimp.accounts[SHARED_ACCOUNT]
    account.peak = 0
    mailchimp.log.clear()
    drains = [
        stack.trigger("mailchimp", owner=OWNERS[0]),
        stack.trigger(mailchimp_second, owner=OWNERS[1]),
    ]
    finished = stack.wait(*drains, seconds=240)
    mailchimp.latency = Latency()
    assert {r.state.name for r in finished.values()} == {"Completed"}
    refused = [e for e in mailchimp.log if e.status == 429]
    MEASUREMENTS.append(
        f"e2e: two Mailchimp drains of one account on two workers: {len(mailchimp.log)} "
        f"requests, peak {account.peak} connections, {len(refused)} refused"
    )
    assert scalar(stack, "SELECT COUNT(*) FROM mailchimp_sync_queue") == 0
    assert refused == []
    assert account.peak == 10  # the cap was reached, and never passed


def _second_deployment(stack: Stack, name: str) -> str:
    """A copy of deployment `name` on the same pool (e.g. a team's backfill deployment)."""

    async def create(client: Any) -> str:
        original = await client.read_deployment_by_name(name)
        await client.create_deployment(
            flow_id=original.flow_id,
            name=f"{original.name}-second",
            entrypoint=original.entrypoint,
            work_pool_name=original.work_pool_name,
            path=original.path,
            pull_steps=original.pull_steps,
            parameter_openapi_schema=original.parameter_openapi_schema,
            parameters=original.parameters,
            tags=original.tags,
        )
        return f"{name}-second"

    return stack.api(create)


def test_kill_9_of_workers_mid_run_crashes_the_runs_and_the_next_runs_finish_the_work(
    stack: Stack, tmp_path: Path
) -> None:
    """A pull (Magento) and a push (Brevo) run on the two workers; both workers die with
    `kill -9` (with their flow-run processes, as when a machine goes). The runs end Crashed,
    people are alerted, each crash is one Sentry event, and the next runs leave the database
    (and Brevo) exactly as a clean run leaves a fresh one."""
    magento, brevo = stack.sandbox("magento"), stack.sandbox("brevo")
    an_hour_ago = datetime.now(UTC) - timedelta(hours=1)  # past MAGENTO_SETTLE_SECONDS
    new_orders = magento.add_orders(400, created_at=an_hour_ago)
    seed_customers(stack.app_url, 300, seed=2, first=CUSTOMERS + 1)
    consumers_before = scalar(stack, "SELECT COUNT(*) FROM consumer")
    magento.latency, brevo.import_seconds = Latency(2.0), 30.0
    brevo.log.clear()
    doomed = {
        "magento": stack.trigger("magento", batch_size=10),
        "brevo": stack.trigger("brevo"),
    }

    deadline = time.monotonic() + 120
    while True:  # kill once Magento has stored part of the orders and Brevo's import is sent
        stored = scalar(stack, "SELECT COUNT(*) FROM consumer") - consumers_before
        imported = any(e.path.endswith("/contacts/import") for e in brevo.log)
        if stored > 0 and imported:
            break
        assert time.monotonic() < deadline, (stored, imported)
        time.sleep(0.2)
    killed_at = time.monotonic()
    for name in list(stack.workers):
        stack.kill_worker(name)
    assert 0 < stored < len(new_orders)  # truly mid-run
    magento.latency, brevo.import_seconds = Latency(), 0.5
    stack.start_worker("e2e-w3")
    stack.start_worker("e2e-w4")

    # What a clean run makes of the same data, on fresh databases, while the crash is noticed.
    clean = _clean_runs(stack, tmp_path)

    crashed = stack.wait(*doomed.values(), seconds=240)
    noticed = time.monotonic() - killed_at
    assert {r.state.name for r in crashed.values()} == {"Crashed"}, crashed
    again = {
        "magento": stack.trigger("magento", batch_size=10),
        "brevo": stack.trigger("brevo"),
    }
    finished = stack.wait(*again.values(), seconds=240)
    assert {r.state.name for r in finished.values()} == {"Completed"}
    MEASUREMENTS.append(f"e2e: kill -9 → both runs Crashed after {noticed:.0f} s")

    for flow_run_id in doomed.values():
        assert ledger(stack, flow_run_id)["state"] == "crashed"
        events = [e for e in stack.sentry.state.events if flow_run_id in json.dumps(e)]
        assert len(events) == 1, events  # one event per crash, from the next run
        alerts = _alerts_about(stack, crashed[flow_run_id].name)
        assert len(alerts) == 1, alerts  # people hear of it
        assert "Crashed" in alerts[0]

    # Nothing lost, nothing duplicated: the same rows as a clean run's.
    assert _consumers(stack.app_url) == clean["consumers"]
    assert _brevo_state(stack.app_url, brevo) == clean["brevo"]


def _alerts_about(stack: Stack, flow_run_name: str) -> list[str]:
    """The alert webhook's notifications naming the run, once one came (the automation acts
    seconds after the state change), and a little longer, so a second would show."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if any(flow_run_name in p["text"] for p in stack.alerts.state.posts):
            time.sleep(2)
            break
        time.sleep(0.5)
    return [p["text"] for p in stack.alerts.state.posts if flow_run_name in p["text"]]


def _consumers(url: str) -> list[tuple[Any, ...]]:
    with get_engine(url).connect() as connection:
        return [
            tuple(r)
            for r in connection.execute(
                sa.text(
                    "SELECT email, first_name, last_name, phone, country, city, store_code, "
                    "purchase_date, order_entity_id, order_increment_id FROM consumer "
                    "ORDER BY email, purchase_date"
                )
            )
        ]


def _brevo_state(url: str, brevo: Any) -> dict[str, Any]:
    """Brevo's contacts by email (no ids: two sandboxes number them apart), and the app's
    view: which customers have a Brevo id (each the id Brevo has for its email) and what
    push state says was sent."""
    with get_engine(url).connect() as connection:
        customers = connection.execute(
            sa.text("SELECT email, brevo_contact_id FROM customers ORDER BY email")
        ).all()
        pushed = sorted(
            connection.execute(
                sa.text("SELECT record_key, payload_hash FROM push_state WHERE provider = 'brevo'")
            ).all()
        )
    for email, contact_id in customers:
        if contact_id is not None:
            assert contact_id == brevo.contact(email)["id"], email
    contacts = {
        c["email"]: (c["attributes"], sorted(c["listIds"])) for c in brevo.contacts.values()
    }
    return {
        "contacts": contacts,
        "count": len(brevo.contacts),
        "with_id": [email for email, contact_id in customers if contact_id is not None],
        "pushed": [tuple(p) for p in pushed],
    }


def _clean_runs(stack: Stack, tmp_path: Path) -> dict[str, Any]:
    """A full Magento sync and a Brevo sync of a copy of the customers (ids cleared) into fresh
    databases and a fresh Brevo sandbox: what the crashed deployment's database must equal."""
    code = (
        "import asyncio, sys\n"
        "from flows.brevo.flow import brevo_sync\n"
        "from flows.magento.flow import magento_sync\n"
        "asyncio.run(magento_sync(full_sync=True, batch_size=100))\n"
        "asyncio.run(brevo_sync())\n"
    )
    with fresh_database("syncflows_e2e_clean") as url:
        migrate(url)
        with get_engine(stack.app_url).connect() as source:
            rows = [dict(r._mapping) for r in source.execute(sa.text("SELECT * FROM customers"))]
        for row in rows:
            row["brevo_contact_id"] = None
        with get_engine(url).begin() as target:
            target.execute(sa.insert(Customer.__table__), rows)  # type: ignore[attr-defined]
        brevo = brevo_app(stack.secrets["brevo"], import_seconds=0.5)
        with serve(brevo) as brevo_url:
            env = {
                **stack.env,
                "DATABASE_URL": url,
                "BREVO_BASE_URL": f"{brevo_url}/v3",
                "PREFECT_HOME": str(tmp_path),
            }
            run([sys.executable, "-c", code], env, timeout=300)
        return {"consumers": _consumers(url), "brevo": _brevo_state(url, brevo.state.sandbox)}


def test_no_secret_reaches_logs_the_prefect_api_sentry_or_a_database_dump(stack: Stack) -> None:
    """Runs with distinctive keys and tokens (all of the above, plus a run that fails on a
    rejected key): none of them appears in the server's or the workers' logs, in what the
    Prefect API holds (flow runs with their parameters and states, logs, artifacts), in what
    Sentry and the alert webhook received, or in a dump of either database."""
    activecampaign = stack.sandbox("activecampaign")
    real_key, activecampaign.api_key = activecampaign.api_key, "rotated-behind-our-back"
    try:
        failing = stack.trigger("activecampaign")
        [failed] = stack.wait(failing).values()
    finally:
        activecampaign.api_key = real_key
    assert failed.state.name == "Failed"
    assert len([e for e in stack.sentry.state.events if failing in json.dumps(e)]) == 1
    alerts = _alerts_about(stack, failed.name)
    assert len(alerts) == 1, alerts  # one notification per failed run
    assert "Failed" in alerts[0]
    assert "activecampaign-sync" in alerts[0]

    # Each key was really sent to its provider, so finding none below means something.
    sent = {
        name: any(stack.secrets[name] in str(e.raw_headers) for e in stack.sandbox(name).log)
        for name in ("selfcheck", "activecampaign", "magento", "mailerlite", "brevo")
    }
    assert all(sent.values()), sent
    tokens = [v for k, v in stack.secrets.items() if k.startswith("mailchimp_oauth_")]
    assert len(tokens) == len(OWNERS)
    mailchimp_headers = {str(e.raw_headers) for e in stack.sandbox("mailchimp").log}
    assert all(any(t in h for h in mailchimp_headers) for t in tokens)

    haystacks = {
        "server log": (stack.home / "server.log").read_text(errors="replace"),
        "worker logs": stack.worker_logs(),
        "prefect api": stack.api(_everything_in_the_api),
        "sentry": "\n".join(stack.sentry.state.raw),
        "alerts": json.dumps(stack.alerts.state.posts),
        "app database dump": _dump(stack.app_url),
        "prefect database dump": _dump(stack.prefect_url),
    }
    found = {
        (secret, where)
        for secret, value in stack.secrets.items()
        for where, text in haystacks.items()
        if value in text
    }
    sizes = ", ".join(f"{where} {len(text) / 1e3:.0f} kB" for where, text in haystacks.items())
    MEASUREMENTS.append(
        f"e2e secrets audit: {len(stack.secrets)} secrets, {sizes}: {len(found)} occurrences"
    )
    assert found == set()
    assert all(len(text) > 0 for text in haystacks.values()), sizes


async def _everything_in_the_api(client: Any) -> str:
    """Flow runs (parameters, states, job variables), every log line and every artifact."""
    from prefect.client.schemas.sorting import LogSort

    parts: list[str] = []
    runs = await client.read_flow_runs(limit=200)
    parts += [flow_run.model_dump_json() for flow_run in runs]
    for flow_run in runs:
        states = await client.read_flow_run_states(flow_run.id)
        parts += [state.model_dump_json() for state in states]
    offset = 0
    while True:
        logs = await client.read_logs(limit=200, offset=offset, sort=LogSort.TIMESTAMP_ASC)
        parts += [log.model_dump_json() for log in logs]
        if len(logs) < 200:
            break
        offset += 200
    parts += [a.model_dump_json() for a in await client.read_artifacts(limit=200)]
    return "\n".join(parts)


def _dump(url: str) -> str:
    name = sa.make_url(url).database
    assert name is not None
    result = subprocess.run(
        ["pg_dump", "--host", "127.0.0.1", "--username", "postgres", "--data-only", name],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return result.stdout
