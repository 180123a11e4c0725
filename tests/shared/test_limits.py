"""Limits: a 10/s cap is never exceeded in any rolling second and is used to ≥ 95 %."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import pytest

from sandbox.selfcheck import create_app
from sandbox.server import serve
from shared.limits import Limiter, LimitSpec, WindowCoordinator
from shared.names import global_limit_name
from shared.settings import GlobalLimits, Settings
from tests.support.limit_load import run_load
from tests.support.measure import MEASUREMENTS, analyse

ROOT = Path(__file__).resolve().parents[2]
SECONDS = 30.0
TASKS = 8

pytestmark = pytest.mark.serial  # rates and waits measured on the wall clock


class FakeTime:
    """A discrete-event clock: sleepers wake in time order, instantly, when all are blocked."""

    def __init__(self) -> None:
        self.now = 1000.0
        self._pending: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = 0

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        future = asyncio.get_running_loop().create_future()
        self._seq += 1
        heapq.heappush(self._pending, (self.now + max(0.0, seconds), self._seq, future))
        await future

    async def drive(self, *coroutines: Coroutine[Any, Any, None]) -> None:
        tasks = [asyncio.ensure_future(c) for c in coroutines]
        for _ in range(100_000):
            if all(t.done() for t in tasks):
                break
            for _ in range(10):
                await asyncio.sleep(0)
            if self._pending:
                target, _, future = heapq.heappop(self._pending)
                self.now = max(self.now, target)
                future.set_result(None)
        else:
            for task in tasks:
                task.cancel()
            raise AssertionError("no progress: the limiter is stuck")
        for task in tasks:
            task.result()


def busiest_second(starts: list[float]) -> int:
    """The most starts in any rolling second [s, s + 1)."""
    return max(sum(1 for t in starts if s <= t < s + 1.0) for s in starts)


def tightest_eleven(starts: list[float]) -> float:
    """The shortest time any 11 consecutive starts take."""
    return min(b - a for a, b in zip(starts, starts[10:], strict=False))


async def test_concurrent_starts_are_spaced_by_the_interval() -> None:
    fake = FakeTime()
    limiter = Limiter(LimitSpec("x", rate_per_second=10), clock=fake.clock, sleep=fake.sleep)
    starts: list[float] = []

    async def request() -> None:
        async with limiter.slot():
            starts.append(fake.now)

    await fake.drive(*(request() for _ in range(50)))
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert limiter.tolerance == pytest.approx(0.01)
    assert min(gaps) >= 0.102 - 0.01 - 1e-9  # only the second start uses the tolerance
    assert gaps[1:] == pytest.approx([0.102] * 48)
    assert tightest_eleven(starts) >= 1.01 - 1e-9
    assert sum(1 for t in starts if t < starts[0] + 1.0) == 10


async def test_a_first_start_does_not_queue_and_the_pace_still_holds() -> None:
    """Twenty requests queue; one arriving later with `first` starts within two intervals,
    and all 21 starts keep the spacing."""
    fake = FakeTime()
    limiter = Limiter(LimitSpec("x", rate_per_second=10), clock=fake.clock, sleep=fake.sleep)
    starts: list[tuple[float, str]] = []

    async def request(name: str, first: bool = False, after: float = 0.0) -> None:
        await fake.sleep(after)
        asked = fake.now
        async with limiter.slot(first=first):
            starts.append((fake.now, name))
            if first:
                assert fake.now - asked <= 2 * limiter.interval + 1e-9

    await fake.drive(*(request(f"q{i}") for i in range(20)), request("lane", True, 0.55))
    times = [t for t, _ in starts]
    assert [name for _, name in starts].index("lane") < 10
    assert tightest_eleven(times) >= 1.01 - 1e-9
    assert busiest_second(times) == 10


async def test_event_loop_lag_does_not_add_up() -> None:
    """Every wake-up 5 ms late (a busy loop) still yields the full pace, not 1 per 107 ms."""
    fake = FakeTime()

    async def late_sleep(seconds: float) -> None:
        await fake.sleep(seconds + 0.005)

    limiter = Limiter(LimitSpec("x", rate_per_second=10), clock=fake.clock, sleep=late_sleep)
    starts: list[float] = []

    async def request() -> None:
        async with limiter.slot():
            starts.append(fake.now)

    await fake.drive(*(request() for _ in range(101)))
    assert (starts[-1] - starts[0]) / 100 == pytest.approx(0.102, abs=1e-4)
    assert tightest_eleven(starts) >= 1.01 - 1e-9
    assert busiest_second(starts) == 10


async def test_a_late_write_pushes_the_next_start_back() -> None:
    """A request whose bytes leave 300 ms after its start (a GC pause, say) books the next
    slot from the write, so the two do not reach the provider together."""
    fake = FakeTime()
    limiter = Limiter(LimitSpec("x", rate_per_second=10), clock=fake.clock, sleep=fake.sleep)
    starts: list[float] = []
    written: list[float] = []

    async def request(n: int) -> None:
        async with limiter.slot() as start:
            starts.append(fake.now)
            if n == 3:
                fake.now += 0.3  # held back before the write, while the loop went on
            await start.trace("http11.send_request_headers.started", {})  # not the write yet
            await start.trace("http11.send_request_headers.complete", {})
            written.append(fake.now)

    await fake.drive(*(request(n) for n in range(30)))
    assert starts[4] >= written[3] + 0.102 - 0.01 - 1e-9
    assert tightest_eleven(sorted(written)) >= 1.01 - 1e-9


async def test_throttle_pauses_all_starts_then_pace_recovers() -> None:
    fake = FakeTime()
    limiter = Limiter(LimitSpec("x", rate_per_second=10), clock=fake.clock, sleep=fake.sleep)
    limiter.throttled(retry_after=5.0, started=fake.now)
    paused_at = fake.now

    async def request() -> None:
        async with limiter.slot():
            assert fake.now >= paused_at + 5.0

    await fake.drive(request())
    assert limiter.interval == pytest.approx(0.204)  # half pace after a 429
    for _ in range(8):  # the rest of the burst: requests that started before the halving
        limiter.throttled(retry_after=1.0, started=paused_at - 0.5)
    assert limiter.interval == pytest.approx(0.204)  # one episode halves once
    for _ in range(200):
        limiter.succeeded()
    assert limiter.interval == pytest.approx(0.102)


async def test_a_stalled_event_loop_does_not_release_a_burst() -> None:
    fake = FakeTime()
    limiter = Limiter(LimitSpec("x", rate_per_second=10), clock=fake.clock, sleep=fake.sleep)
    starts: list[float] = []

    async def request(n: int) -> None:
        async with limiter.slot():
            starts.append(fake.now)
            if n == 3:
                fake.now += 0.5  # the loop is blocked for half a second after this start

    await fake.drive(*(request(n) for n in range(30)))
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert min(gaps) >= 0.102 - 0.01 - 1e-9  # after the stall: one start late, then the pace
    assert tightest_eleven(starts) >= 1.01 - 1e-9
    assert busiest_second(starts) == 10


async def test_a_slow_pace_still_starts_in_every_window() -> None:
    """At the slowest pace an interval can exceed the window; a start must still fit."""

    class OpenWindow:
        windows = 1
        window_end: float | None = None

        async def wait_for_window(self, _limiter: Limiter) -> None:
            if self.window_end is not None and fake.now < self.window_end:
                await fake.sleep(self.window_end - fake.now)  # the rest of this window
            self.window_end = fake.now + 1.0  # the next one

        async def aclose(self) -> None:
            pass

    fake = FakeTime()
    window = OpenWindow()
    limiter = Limiter(
        LimitSpec("x", rate_per_second=1), clock=fake.clock, sleep=fake.sleep, coordinator=window
    )  # type: ignore[arg-type]
    for _ in range(3):
        limiter.throttled(None, started=fake.now)
        fake.now += 0.001
    assert limiter.interval > 1.0  # longer than the 1 s window
    starts: list[float] = []

    async def request() -> None:
        async with limiter.slot():
            starts.append(fake.now)

    await fake.drive(*(request() for _ in range(3)))
    assert len(starts) == 3


async def test_in_flight_cap_holds_under_concurrency() -> None:
    limiter = Limiter(LimitSpec("x", max_in_flight=3))
    busy = peak = 0

    async def request() -> None:
        nonlocal busy, peak
        async with limiter.slot():
            busy += 1
            peak = max(peak, busy)
            await asyncio.sleep(0.01)
            busy -= 1

    await asyncio.gather(*(request() for _ in range(20)))
    assert peak == 3


@pytest.mark.usefixtures("prefect_harness")
async def test_closing_a_limiter_hands_the_cap_on_at_once() -> None:
    name = "syncflows-test-handover"
    first = Limiter(
        LimitSpec(name, rate_per_second=50), coordinator=WindowCoordinator(name, lease_seconds=30)
    )
    first.attach()
    async with first.slot():
        pass
    await first.detach()  # the last user leaves mid-window: the cap must be released now
    from prefect import get_client

    async with get_client() as client:
        limit = await client.read_global_concurrency_limit_by_name(name)
    assert limit.active_slots == 0  # released at once, not after the 0.2 s idle timeout

    second = Limiter(
        LimitSpec(name, rate_per_second=50), coordinator=WindowCoordinator(name, lease_seconds=30)
    )
    started = time.monotonic()
    second.attach()
    async with second.slot():
        waited = time.monotonic() - started
    await second.detach()
    assert waited < 5.0


def test_limit_names_are_safe_prefect_names() -> None:
    assert global_limit_name("ActiveCampaign", "acme.api-us1/x") == (
        "syncflows-activecampaign-acme-api-us1-x"
    )


@pytest.mark.e2e
async def test_one_process_eight_tasks_hold_10_per_second_for_30_seconds() -> None:
    app = create_app(api_key="load-key-123456")
    with serve(app) as base_url:
        settings = Settings(global_limits=GlobalLimits.OFF)
        result = await run_load(base_url, "load-key-123456", SECONDS, TASKS, settings)
    report = analyse([a.at for a in app.state.sandbox.log])
    MEASUREMENTS.append(f"limits, 1 process x {TASKS} tasks, cap 10/s, {SECONDS:.0f} s: {report}")
    assert report.requests == result["requests"]
    assert report.max_window <= 10
    assert report.rate >= 9.5


async def test_the_window_is_given_back_only_when_the_last_client_leaves() -> None:
    closed: list[bool] = []

    class CountingCoordinator:
        windows = 0
        window_end = None

        async def aclose(self) -> None:
            closed.append(True)

    limiter = Limiter(LimitSpec("x", rate_per_second=10), coordinator=CountingCoordinator())  # type: ignore[arg-type]
    limiter.attach()
    limiter.attach()
    await limiter.detach()
    assert closed == []  # another client still runs requests through this limiter
    await limiter.detach()
    assert closed == [True]
