"""Deployments: prefect.yaml is valid offline, and `make deploy` + a worker work end to end."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from prefect.client.schemas.schedules import CronSchedule
from prefect.flows import load_flow_from_entrypoint
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from sandbox.base import Latency
from sandbox.selfcheck import create_app
from sandbox.server import serve
from shared.alerts import AUTOMATION
from shared.names import global_limit_name
from shared.settings import PROVIDERS
from tests.support.measure import MEASUREMENTS
from tests.support.prefect_server import prefect_server

ROOT = Path(__file__).resolve().parents[2]
SPEC = yaml.safe_load((ROOT / "prefect.yaml").read_text())


def test_every_deployment_loads_its_flow_with_valid_parameters() -> None:
    for deployment in SPEC["deployments"]:
        flow = load_flow_from_entrypoint(str(ROOT / deployment["entrypoint"]))
        schema = flow.parameters.model_dump()["properties"]
        assert set(deployment.get("parameters", {})) <= set(schema), deployment["name"]
        assert all(prop.get("description") for prop in schema.values()), "parameters need docs"
        assert deployment["concurrency_limit"] == {"limit": 1, "collision_strategy": "CANCEL_NEW"}
        assert deployment["work_pool"]["name"] == "syncflows"


def test_schedules_follow_the_seeds_and_avoid_dst_gaps() -> None:
    schedules = SPEC["definitions"]["schedules"]
    assert schedules["mailerlite_daily"] == {"cron": "0 3 * * *", "timezone": "America/New_York"}
    assert schedules["brevo_hourly"]["cron"] == "0 * * * *"
    assert schedules["activecampaign_every_15_minutes"]["cron"] == "*/15 * * * *"
    assert schedules["mailchimp_outbox_every_minute"]["cron"] == "* * * * *"
    for name, schedule in schedules.items():
        CronSchedule(cron=schedule["cron"], timezone=schedule["timezone"])  # parses
        runs_more_than_daily = not re.fullmatch(r"\d+ \d+ \* \* \*", schedule["cron"])
        if runs_more_than_daily:
            assert schedule["timezone"] == "UTC", f"{name}: sub-daily crons must run in UTC"


def _run(command: list[str], env: dict[str, str], timeout: float = 120) -> str:
    result = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert result.returncode == 0, f"{command}: {result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    return result.stdout


async def _read_state(api_env: dict[str, str]) -> dict[str, Any]:
    from prefect import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: api_env["PREFECT_API_URL"]}):
        async with get_client() as client:
            pool = await client.read_work_pool("syncflows")
            deployments = {}
            for spec in SPEC["deployments"]:
                flow = load_flow_from_entrypoint(str(ROOT / spec["entrypoint"]))
                deployment = await client.read_deployment_by_name(f"{flow.name}/{spec['name']}")
                deployments[spec["name"]] = deployment
            limits = {
                cls.provider: await client.read_global_concurrency_limit_by_name(
                    global_limit_name(cls.provider, "default")
                )
                for cls in PROVIDERS
                if not cls.accounts_per_connection  # Mailchimp's come with its connections
            }
    return {"pool": pool, "deployments": deployments, "limits": limits}


def _uuid(output: str) -> str:
    """The flow run id `prefect deployment run` prints."""
    found = re.search(r"UUID: ([0-9a-f-]{36})", output)
    assert found is not None, output
    return found.group(1)


def alert_receiver() -> Starlette:
    """A webhook that keeps the JSON bodies posted to `/hook` (`app.state.posts`)."""
    posts: list[dict[str, Any]] = []

    async def hook(request: Request) -> JSONResponse:
        posts.append(await request.json())
        return JSONResponse({"ok": True})

    app = Starlette(routes=[Route("/hook", hook, methods=["POST"])])
    app.state.posts = posts
    return app


async def _automations(api_url: str) -> list[str]:
    from prefect import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: api_url}):
        async with get_client() as client:
            return [a.name for a in await client.read_automations()]


async def _wait_for_flow_run(api_url: str, flow_run_id: str, seconds: float) -> Any:
    from prefect import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: api_url}):
        async with get_client() as client:
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                run = await client.read_flow_run(flow_run_id)  # type: ignore[arg-type]
                if run.state and run.state.is_final():
                    return run
                await asyncio.sleep(1)
    raise AssertionError(f"flow run {flow_run_id} did not finish in {seconds} s")


@pytest.mark.e2e
def test_make_deploy_then_a_worker_runs_a_deployment_with_parameters(
    postgres_url: str, tmp_path: Path
) -> None:
    started = time.monotonic()
    app = create_app(api_key="e2e-key-2718281828")
    alerts = alert_receiver()
    with (
        prefect_server(postgres_url, tmp_path) as api_url,
        serve(app) as sandbox_url,
        serve(alerts) as alerts_url,
    ):
        env = {
            **os.environ,
            "PREFECT_API_URL": api_url,
            "PREFECT_HOME": str(tmp_path),
            "DATABASE_URL": f"sqlite:///{tmp_path}/state.db",
            "SELFCHECK_BASE_URL": sandbox_url,
            "SELFCHECK_API_KEY": "e2e-key-2718281828",
            "PREFECT_WORKER_QUERY_SECONDS": "1",  # the default 10 s poll is idle test time
            "SYNCFLOWS_ALERT_WEBHOOK_URL": f"{alerts_url}/hook",
        }
        _run(["make", "deploy"], env)
        first = asyncio.run(_read_state(env))
        _run(["make", "deploy"], env)  # idempotent
        state = asyncio.run(_read_state(env))

        assert state["pool"].type == "process"
        for spec in SPEC["deployments"]:
            deployment = state["deployments"][spec["name"]]
            assert deployment.id == first["deployments"][spec["name"]].id
            assert deployment.work_pool_name == "syncflows"
            assert deployment.parameters == spec["parameters"]
            assert deployment.global_concurrency_limit is not None
            assert deployment.global_concurrency_limit.limit == 1
            assert deployment.concurrency_options.collision_strategy.value == "CANCEL_NEW"
            assert deployment.pull_steps[0]["prefect.deployments.steps.set_working_directory"][
                "directory"
            ] == str(ROOT)
            got = [(s.schedule.cron, s.schedule.timezone, s.active) for s in deployment.schedules]
            want = [(s["cron"], s["timezone"], s.get("active", True)) for s in spec["schedules"]]
            assert got == want
        assert all(limit.limit == 1 for limit in state["limits"].values())

        worker = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "prefect",
                "worker",
                "start",
                "--pool",
                "syncflows",
                "--name",
                "e2e-worker",
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            output = _run(
                [
                    sys.executable,
                    "-m",
                    "prefect",
                    "deployment",
                    "run",
                    "selfcheck-sync/selfcheck",
                    "-p",
                    "records=12",
                    "-p",
                    "batch_size=4",
                ],
                env,
            )
            flow_run_id = re.search(r"UUID: ([0-9a-f-]{36})", output).group(1)  # type: ignore[union-attr]
            run = asyncio.run(_wait_for_flow_run(api_url, flow_run_id, seconds=120))
            status = _run([sys.executable, "-m", "shared.cli", "status", "selfcheck"], env)
            pushed = len(app.state.sandbox.items)
            # A run that fails (batch_size 0 cannot make batches) reaches people.
            failing = _run(
                [sys.executable, "-m", "prefect", "deployment", "run", "selfcheck-sync/selfcheck",
                 "-p", "batch_size=0"],
                env,
            )  # fmt: skip
            failed_id = re.search(r"UUID: ([0-9a-f-]{36})", failing).group(1)  # type: ignore[union-attr]
            failed = asyncio.run(_wait_for_flow_run(api_url, failed_id, seconds=120))
            deadline = time.monotonic() + 60
            while not alerts.state.posts and time.monotonic() < deadline:
                time.sleep(0.5)
            time.sleep(2)  # a second notification for the same run would come by now
            automations = asyncio.run(_automations(api_url))
            # No overlap: a second run while the first is still sending is cancelled.
            app.state.sandbox.latency = Latency(4.0)
            slow, late = (
                _run(
                    [sys.executable, "-m", "prefect", "deployment", "run",
                     "selfcheck-sync/selfcheck", "-p", f"records={records}"],
                    env,
                )
                for records in (16, 20)
            )  # fmt: skip
            slow_run, late_run = (
                asyncio.run(_wait_for_flow_run(api_url, _uuid(output), seconds=120))
                for output in (slow, late)
            )
        finally:
            os.killpg(worker.pid, signal.SIGTERM)
            try:
                worker.wait(timeout=10)
            except subprocess.TimeoutExpired:  # prefect-notes §3: workers may ignore SIGTERM
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait()

    assert run.state.type.value == "COMPLETED", run.state
    assert slow_run.state.type.value == "COMPLETED", slow_run.state
    assert late_run.state.type.value == "CANCELLED", late_run.state  # visibly, with a reason
    assert "concurrency" in (late_run.state.message or "").lower(), late_run.state.message
    assert failed.state.type.value == "FAILED", failed.state
    assert automations == [AUTOMATION]  # one, though deploy ran twice
    assert len(alerts.state.posts) == 1, alerts.state.posts  # one notification per failed run
    text = alerts.state.posts[0]["text"]
    assert "selfcheck-sync" in text
    assert "Failed" in text
    assert failed.name in text
    assert run.parameters == {"records": 12, "batch_size": 4}
    assert pushed == 12
    import sqlalchemy as sa

    engine = sa.create_engine(f"sqlite:///{tmp_path}/state.db")
    with engine.connect() as connection:
        row = connection.execute(
            sa.text(
                "SELECT state, records_read, created, flow_run_id FROM sync_run "
                "WHERE flow_run_id = :id"
            ),
            {"id": flow_run_id},
        ).one()
    assert tuple(row) == ("completed", 12, 12, flow_run_id)
    assert "selfcheck / default" in status
    assert "last run   completed" in status
    assert "read 12, created 12" in status
    assert "schedule   selfcheck: 30 5 * * * UTC (paused)" in status
    elapsed = time.monotonic() - started
    MEASUREMENTS.append(f"e2e deploy + worker run: {elapsed:.0f} s in all")
    assert elapsed < 180
