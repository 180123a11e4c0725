"""`make deploy`'s work pool: every flow run it starts beats often enough for crash detection."""

from __future__ import annotations

from typing import Any

import pytest
from prefect import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.workers.process import ProcessJobConfiguration, ProcessWorker

from shared.deploy import HEARTBEAT_VARIABLE, ensure_work_pool

pytestmark = pytest.mark.usefixtures("prefect_harness")


async def _pool(name: str) -> Any:
    async with get_client() as client:
        return await client.read_work_pool(name)


async def _run_env(name: str, job_variables: dict[str, Any]) -> dict[str, str | None]:
    """The environment the pool's worker gives a flow run of a deployment with these variables."""
    pool = await _pool(name)
    configuration = await ProcessJobConfiguration.from_template_and_values(
        pool.base_job_template, job_variables
    )
    return configuration.env


async def test_a_new_pool_gives_every_flow_run_the_heartbeat_frequency() -> None:
    assert await ensure_work_pool(45, name="heartbeat-new") == "created"

    pool = await _pool("heartbeat-new")
    assert pool.type == "process"
    assert (await _run_env("heartbeat-new", {}))[HEARTBEAT_VARIABLE] == "45"
    # A deployment's own env adds to the pool's, it does not drop the heartbeat.
    env = await _run_env("heartbeat-new", {"env": {"EXTRA": "1"}})
    assert (env[HEARTBEAT_VARIABLE], env["EXTRA"]) == ("45", "1")
    assert await ensure_work_pool(45, name="heartbeat-new") == "ready"


async def test_an_existing_pool_gets_the_heartbeat_and_keeps_its_own_settings() -> None:
    template = ProcessWorker.get_default_base_job_template()
    variables = template["variables"]["properties"]
    variables["env"]["default"] = {"HTTP_TIMEOUT_SECONDS": "12"}
    variables["stream_output"]["default"] = False
    async with get_client() as client:
        await client.create_work_pool(
            WorkPoolCreate(name="heartbeat-old", type="process", base_job_template=template)
        )

    assert await ensure_work_pool(30, name="heartbeat-old") == "updated"
    fixed = (await _pool("heartbeat-old")).base_job_template
    assert fixed["variables"]["properties"]["env"]["default"] == {
        "HTTP_TIMEOUT_SECONDS": "12",
        HEARTBEAT_VARIABLE: "30",
    }
    assert fixed["variables"]["properties"]["stream_output"]["default"] is False
    assert {k: v for k, v in fixed.items() if k != "variables"} == {
        k: v for k, v in template.items() if k != "variables"
    }

    assert await ensure_work_pool(60, name="heartbeat-old") == "updated"  # another value
    env = await _run_env("heartbeat-old", {})
    assert (env[HEARTBEAT_VARIABLE], env["HTTP_TIMEOUT_SECONDS"]) == ("60", "12")
    assert await ensure_work_pool(60, name="heartbeat-old") == "ready"
