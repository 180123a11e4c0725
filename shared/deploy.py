"""`make deploy`: the work pool, the provider limits, the automations, then every deployment in
prefect.yaml.

Idempotent: the pool and limits are created only when missing (the pool's heartbeat setting and
the limits are corrected if they drifted), the automations are updated in place, and
`prefect deploy --all` updates deployments in place.
"""

from __future__ import annotations

import asyncio
import copy
import os
import subprocess
import sys
from typing import Any

from shared.alerts import ensure_crash_automation
from shared.db import ROOT
from shared.limits import ensure_global_limit
from shared.names import global_limit_name
from shared.settings import PROVIDERS, Settings, load_settings

WORK_POOL = "syncflows"
HEARTBEAT_VARIABLE = "PREFECT_FLOWS_HEARTBEAT_FREQUENCY"


async def ensure_work_pool(heartbeat_seconds: int, name: str = WORK_POOL) -> str:
    """Create the process work pool, or correct it, so every flow run it starts beats every
    `heartbeat_seconds` (`PREFECT_FLOWS_HEARTBEAT_FREQUENCY` in its `env` job variable).

    The pool gets Prefect's default job template; an existing pool keeps its template and every
    other `env` entry. Returns "created", "updated" or "ready", for deploy's output.
    """
    from prefect import get_client
    from prefect.client.schemas.actions import WorkPoolCreate, WorkPoolUpdate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
    from prefect.workers.process import ProcessWorker

    async with get_client() as client:
        try:
            pool = await client.read_work_pool(name)
        except ObjectNotFound:
            default = ProcessWorker.get_default_base_job_template()
            template = with_heartbeat(default, heartbeat_seconds)
            try:
                await client.create_work_pool(
                    WorkPoolCreate(name=name, type="process", base_job_template=template)
                )
                return "created"
            except ObjectAlreadyExists:  # created by a concurrent `make deploy`
                pool = await client.read_work_pool(name)
        template = with_heartbeat(pool.base_job_template, heartbeat_seconds)
        if template == pool.base_job_template:
            return "ready"
        await client.update_work_pool(name, WorkPoolUpdate(base_job_template=template))
        return "updated"


def with_heartbeat(template: dict[str, Any], heartbeat_seconds: int) -> dict[str, Any]:
    """A copy of a base job template whose `env` default sets the heartbeat frequency."""
    from prefect.workers.process import ProcessWorker

    template = copy.deepcopy(template)
    variables = template.setdefault("variables", {"type": "object", "properties": {}})
    properties = variables.setdefault("properties", {})
    if "env" not in properties:  # a hand-made template: give it the default's `env` variable
        default = ProcessWorker.get_default_base_job_template()
        properties["env"] = {
            k: v for k, v in default["variables"]["properties"]["env"].items() if k != "default"
        }
        template.setdefault("job_configuration", {}).setdefault("env", "{{ env }}")
    env = properties["env"]
    env["default"] = {**(env.get("default") or {}), HEARTBEAT_VARIABLE: str(heartbeat_seconds)}
    return template


async def ensure_provider_limits() -> list[str]:
    """Create the global concurrency limit of every provider account the settings name.

    Mailchimp's accounts are its connections' (stored, not configured): each limit is created
    by the first run that uses it.
    """
    names = [
        global_limit_name(cls.provider, account, lane)
        for cls in PROVIDERS
        if not cls.accounts_per_connection
        for account in [cls().account]
        for lane in (None, *cls.lanes)
    ]
    for name in names:
        await ensure_global_limit(name)
    return names


async def _alerts(settings: Settings) -> str:
    from shared.alerts import AlertsNotConfigured, ensure_alert_automation

    try:
        return await ensure_alert_automation(settings)
    except AlertsNotConfigured as off:
        return str(off)


def deploy() -> int:
    """Run the whole deploy against the configured Prefect API; returns the exit code."""
    settings = load_settings()
    if not settings.prefect_api_configured:
        print(  # noqa: T201
            "make deploy needs a Prefect server: set PREFECT_API_URL "
            "(e.g. http://127.0.0.1:4200/api) or `prefect config set PREFECT_API_URL=…`.",
            file=sys.stderr,
        )
        return 2
    pool = asyncio.run(ensure_work_pool(settings.heartbeat_seconds))
    limits = asyncio.run(ensure_provider_limits())
    print(f"work pool {WORK_POOL!r} {pool}; limits: {', '.join(limits)}")  # noqa: T201
    print(asyncio.run(ensure_crash_automation(settings)))  # noqa: T201
    print(asyncio.run(_alerts(settings)))  # noqa: T201
    env = {**os.environ, "SYNCFLOWS_HOME": str(ROOT)}
    command = [sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--all"]
    return subprocess.run(command, cwd=ROOT, env=env, check=False).returncode
