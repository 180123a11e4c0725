"""Flow and task declarations: states never carry secrets; tasks are never cached."""

from __future__ import annotations

import pytest
from prefect import get_client
from prefect.cache_policies import NO_CACHE

from flows.selfcheck import push_batch, selfcheck_sync
from shared.flowkit import TASK_RUNNER_WORKERS, io_task, sync_flow
from shared.redact import register_secret

SECRET = "flowkit-secret-4b1d9e2"


@io_task(retries=0)
async def leaky_task() -> None:
    raise RuntimeError(f"provider echoed {SECRET}") from KeyError(f"inner {SECRET}")


@sync_flow(name="leaky-sync")
async def leaky_flow() -> None:
    await leaky_task()


@pytest.mark.usefixtures("prefect_harness")
async def test_failed_states_in_the_prefect_api_carry_no_secret() -> None:
    register_secret(SECRET)
    state = await leaky_flow(return_state=True)
    assert state.is_failed()
    async with get_client() as client:
        flow_run = await client.read_flow_run(state.state_details.flow_run_id)
        task_runs = await client.read_task_runs()
    messages = [flow_run.state.message] + [
        t.state.message for t in task_runs if t.flow_run_id == flow_run.id
    ]
    assert any("provider echoed ***" in (m or "") for m in messages)
    assert all(SECRET not in (m or "") for m in messages)


def test_every_flow_task_is_uncached_and_every_flow_bounded() -> None:
    assert push_batch.cache_policy is NO_CACHE
    assert selfcheck_sync.task_runner._max_workers == TASK_RUNNER_WORKERS  # no public accessor
    assert selfcheck_sync.on_failure_hooks
    assert selfcheck_sync.on_crashed_hooks


async def test_fan_out_keeps_order_bounds_concurrency_and_raises_the_failure_itself() -> None:
    import asyncio

    from shared.flowkit import fan_out

    busy = peak = 0

    async def work(n: int) -> int:
        nonlocal busy, peak
        busy += 1
        peak = max(peak, busy)
        await asyncio.sleep(0.005)
        busy -= 1
        return n * n

    assert await fan_out(range(20), work, limit=3) == [n * n for n in range(20)]
    assert peak == 3

    async def fail_on_seven(n: int) -> int:
        if n == 7:
            raise ValueError("seven")
        return await work(n)

    with pytest.raises(ValueError, match="seven"):
        await fan_out(range(20), fail_on_seven, limit=3)


def test_an_exception_whose_text_is_not_in_args_is_replaced_when_it_holds_a_secret() -> None:
    from pydantic import BaseModel, ValidationError

    from shared.flowkit import RedactedError, scrub_exception

    class Body(BaseModel):
        count: int

    register_secret(SECRET)
    try:
        Body(count=SECRET)  # type: ignore[arg-type]
    except ValidationError as error:
        safe = scrub_exception(error)
    assert isinstance(safe, RedactedError)
    assert SECRET not in str(safe)
    assert "***" in str(safe)


def test_a_task_group_error_is_described_by_its_leaves() -> None:
    from shared.runs import describe_error

    group = ExceptionGroup(
        "unhandled errors in a TaskGroup", [ValueError("bad row"), KeyError("id")]
    )
    assert describe_error(group) == "ValueError: bad row; KeyError: 'id'"
