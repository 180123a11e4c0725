"""Load generator for the limit tests: N concurrent tasks through the real HTTP core."""

from __future__ import annotations

import asyncio
import time

from shared.http import provider_client
from shared.settings import SelfcheckSettings, Settings


async def run_load(
    base_url: str, api_key: str, seconds: float, tasks: int, settings: Settings
) -> dict[str, int]:
    provider = SelfcheckSettings(base_url=base_url, rate_per_second=10.0, max_in_flight=tasks)
    client = provider_client(provider, settings, headers={"X-Api-Key": api_key})
    end = time.monotonic() + seconds

    async def worker() -> None:
        while time.monotonic() < end:
            await client.get_json("/echo")

    async with client:
        await asyncio.gather(*(worker() for _ in range(tasks)))
        return {"requests": client.requests, "windows": client.limiter.windows}
