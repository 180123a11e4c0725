"""`make deploy`: the work pool, the provider limits, then every deployment in prefect.yaml.

Idempotent: the pool and limits are created only when missing (limits are corrected if they
drifted), and `prefect deploy --all` updates deployments in place.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from contextlib import suppress

from shared.db import ROOT
from shared.limits import ensure_global_limit
from shared.names import global_limit_name
from shared.settings import PROVIDERS, Settings, load_settings

WORK_POOL = "syncflows"


async def ensure_work_pool(name: str = WORK_POOL) -> None:
    """Create the process work pool with Prefect's default job template, unless it exists."""
    from prefect import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
    from prefect.workers.process import ProcessWorker

    async with get_client() as client:
        try:
            await client.read_work_pool(name)
            return
        except ObjectNotFound:
            pass
        template = ProcessWorker.get_default_base_job_template()
        with suppress(ObjectAlreadyExists):  # created by a concurrent `make deploy`
            await client.create_work_pool(
                WorkPoolCreate(name=name, type="process", base_job_template=template)
            )


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
    asyncio.run(ensure_work_pool())
    limits = asyncio.run(ensure_provider_limits())
    print(f"work pool {WORK_POOL!r} ready; limits: {', '.join(limits)}")  # noqa: T201
    print(asyncio.run(_alerts(settings)))  # noqa: T201
    env = {**os.environ, "SYNCFLOWS_HOME": str(ROOT)}
    command = [sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--all"]
    return subprocess.run(command, cwd=ROOT, env=env, check=False).returncode
