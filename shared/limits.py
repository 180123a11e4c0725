"""Provider request caps that hold across tasks, flow runs and workers, and are used in full.

Two mechanisms, one per scale (measured in prefect-notes §2 and its addendum):

* **Local pacing** (one process): every request start is reserved at least
  `interval = (1 + margin) / rate` seconds after the previous one, so no rolling second holds
  more than `rate` starts even with a few milliseconds of arrival jitter. Reservations are made
  under the event loop, so any number of concurrent tasks share one pace.
* **Windows** (several processes): a Prefect global concurrency limit with `limit=1` and no
  decay is a baton. The process that holds it owns the account's whole cap for
  `lease_seconds`, pacing locally; it stops reserving one interval before the window ends and
  releases only after its last reserved start plus one interval. The next holder is granted
  after that release, so consecutive starts stay `interval` apart across processes too. One
  server round trip per window (not per request) keeps Prefect's own latency out of the pace.
  `rate_limit(occupy=K)` was not used: in Prefect 3.8.8 a denied request resets the bucket's
  decay clock (`bulk_update_denied_slots` bumps `updated`), so waiting processes stall it.

A 429 halves the pace and pauses every request until its Retry-After; each success then
recovers the pace by a small step. A connection cap (Mailchimp's 10 simultaneous) is a
semaphore; under windows the holder also waits for its requests in flight before releasing.
"""

from __future__ import annotations

import asyncio
import re
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from typing import Any
from uuid import UUID

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

DEFAULT_MARGIN = 0.02  # 2 % slack: 10 req/s cap → one start per 102 ms → at most 10 per second
MIN_PACE_FACTOR = 0.1
RECOVERY_STEP = 0.01  # per successful request after a 429: half pace back to full in ~50
LEASE_TTL_SECONDS = 60  # Prefect's minimum; a crashed holder frees the baton after this
POLL_SECONDS = 0.25  # how often a process waiting for the baton asks again


@dataclass(frozen=True)
class LimitSpec:
    """A provider account's documented caps."""

    name: str
    rate_per_second: float | None = None
    max_in_flight: int | None = None


def global_limit_name(provider: str, account: str) -> str:
    """The Prefect global concurrency limit name for one provider account."""
    slug = re.sub(r"[^a-z0-9-]+", "-", f"{provider}-{account}".lower()).strip("-")
    return f"syncflows-{slug}"


class Limiter:
    """Paces request starts and caps requests in flight for one provider account."""

    def __init__(
        self,
        spec: LimitSpec,
        *,
        coordinator: WindowCoordinator | None = None,
        margin: float = DEFAULT_MARGIN,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.spec = spec
        self._base_interval = (1.0 + margin) / spec.rate_per_second if spec.rate_per_second else 0.0
        self._factor = 1.0
        self._clock = clock
        self._sleep = sleep
        self._next_start = 0.0
        self._paused_until = 0.0
        self._in_flight = asyncio.Semaphore(spec.max_in_flight) if spec.max_in_flight else None
        self._waiting = 0  # inside slot(), not yet started
        self._sending = 0  # started, response not yet back
        self._coordinator = coordinator
        self.throttles = 0

    @property
    def interval(self) -> float:
        """Seconds between request starts at the current pace."""
        return self._base_interval / self._factor

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one request slot: in-flight cap first, then the paced start."""
        if self._in_flight is not None:
            await self._in_flight.acquire()
        try:
            self._waiting += 1
            try:
                await self._turn()
            finally:
                self._waiting -= 1
            self._sending += 1
            try:
                yield
            finally:
                self._sending -= 1
        finally:
            if self._in_flight is not None:
                self._in_flight.release()

    async def _turn(self) -> None:
        while True:
            now = self._clock()
            start = max(now, self._next_start, self._paused_until)
            if self._coordinator is not None:
                window_end = self._coordinator.window_end
                if window_end is None or start > window_end - self.interval:
                    await self._coordinator.wait_for_window(self)
                    continue
            self._next_start = start + self.interval
            if start > now:
                await self._sleep(start - now)
            if self._paused_until <= start or self._paused_until <= self._clock():
                return
            # A 429 arrived while we slept: our reserved start is inside the pause, so queue again.

    def throttled(self, retry_after: float | None) -> None:
        """A 429 came back: slow the pace and hold every start until Retry-After has passed."""
        self.throttles += 1
        self._factor = max(MIN_PACE_FACTOR, self._factor / 2)
        if retry_after:
            self._paused_until = max(self._paused_until, self._clock() + retry_after)

    def succeeded(self) -> None:
        """A request went through: recover the pace a little."""
        if self._factor < 1.0:
            self._factor = min(1.0, self._factor + RECOVERY_STEP)

    # What the window coordinator needs to know to release at the right moment.
    @property
    def next_start(self) -> float:
        return self._next_start

    @property
    def waiting(self) -> int:
        return self._waiting

    @property
    def sending(self) -> int:
        return self._sending

    async def aclose(self) -> None:
        """Give the window back to other processes."""
        if self._coordinator is not None:
            await self._coordinator.aclose()


class WindowCoordinator:
    """Holds the provider's Prefect global concurrency limit as a baton, a window at a time."""

    def __init__(
        self,
        limit_name: str,
        lease_seconds: float,
        *,
        drain_before_release: bool = False,
        clock: Clock = time.monotonic,
    ) -> None:
        if not 0 < lease_seconds <= LEASE_TTL_SECONDS - 10:
            raise ValueError(f"lease_seconds must be in (0, {LEASE_TTL_SECONDS - 10}]")
        self.limit_name = limit_name
        self.lease_seconds = lease_seconds
        self.drain_before_release = drain_before_release
        self.windows = 0
        self._clock = clock
        self._window_end: float | None = None
        self._opened = asyncio.Event()
        self._closing = asyncio.Event()
        self._holder: asyncio.Task[None] | None = None
        self._ensured = False

    @property
    def window_end(self) -> float | None:
        """When the window this process holds ends (monotonic clock), None when it holds none."""
        return self._window_end

    async def wait_for_window(self, limiter: Limiter) -> None:
        """Block until this process holds a window; start acquiring one if nobody is."""
        if self._window_end is not None and self._opened.is_set():
            # The window is open but too short for another start: wait for the next one.
            await asyncio.sleep(max(0.0, self._window_end - self._clock()))
        if self._holder is not None and self._holder.done():
            failed, self._holder = self._holder, None
            if not failed.cancelled() and failed.exception() is not None:
                raise failed.exception()  # type: ignore[misc]  # once; the next call tries again
        if self._holder is None:
            self._opened.clear()
            self._closing.clear()
            self._holder = asyncio.create_task(self._hold(limiter))
        holder = self._holder
        opened = asyncio.create_task(self._opened.wait())
        done, _ = await asyncio.wait({opened, holder}, return_when=asyncio.FIRST_COMPLETED)
        if opened not in done:
            opened.cancel()
            holder.result()  # re-raise the holder's failure (e.g. Prefect unreachable)

    async def _hold(self, limiter: Limiter) -> None:
        from prefect import get_client  # deferred: importing prefect is slow

        if not self._ensured:
            await ensure_global_limit(self.limit_name)
            self._ensured = True
        async with get_client() as client:
            lease_id = await self._acquire(client)
            try:
                await self._use_window(limiter)
            finally:
                await client.release_concurrency_slots_with_lease(lease_id)

    async def _acquire(self, client: Any) -> UUID:
        """Take the baton, polling every POLL_SECONDS while another process holds it.

        The client's lease calls are used directly: Prefect's `concurrency()` helper logs an
        ERROR for every refusal and waits the server's Retry-After, which grows with each denial
        (up to 30 s) and would leave the cap idle long after its holder is done. A window is
        shorter than the lease TTL, so the lease never needs renewing.
        """
        from prefect.exceptions import PrefectHTTPStatusError

        while True:
            try:
                response = await client.increment_concurrency_slots_with_lease(
                    names=[self.limit_name],
                    slots=1,
                    mode="concurrency",
                    lease_duration=LEASE_TTL_SECONDS,
                )
            except PrefectHTTPStatusError as refused:
                if refused.response.status_code != 423:
                    raise
                await asyncio.sleep(POLL_SECONDS)
                continue
            granted = response.json()
            if not granted.get("limits"):
                raise RuntimeError(
                    f"Prefect global concurrency limit {self.limit_name!r} is missing"
                )
            return UUID(granted["lease_id"])

    async def _use_window(self, limiter: Limiter) -> None:
        self.windows += 1
        self._window_end = self._clock() + self.lease_seconds
        self._opened.set()
        try:
            await self._hold_until_done(limiter)
        finally:
            self._window_end = None
            self._opened.clear()
            # Release no earlier than one interval after our last reserved start, so the next
            # holder's first start keeps the spacing.
            await asyncio.sleep(max(0.0, limiter.next_start - self._clock()))
            # A 10 ms poll is simpler than an Event here, and runs once per window.
            while self.drain_before_release and limiter.sending:  # noqa: ASYNC110
                await asyncio.sleep(0.01)

    async def _hold_until_done(self, limiter: Limiter) -> None:
        assert self._window_end is not None
        idle_after = max(0.2, 2 * limiter.interval)
        while True:
            now = self._clock()
            if now >= self._window_end:
                return
            idle_for = now - (limiter.next_start - limiter.interval)
            if limiter.waiting == 0 and limiter.sending == 0 and idle_for >= idle_after:
                return  # nobody here wants the cap: let other processes have it
            with suppress(TimeoutError):
                await asyncio.wait_for(
                    self._closing.wait(), timeout=min(self._window_end - now, idle_after / 2)
                )
                return

    async def aclose(self) -> None:
        """Stop holding: end the current window now, or cancel a pending acquisition.

        A held window is ended, not cancelled: cancelling would cut short the wait that keeps
        the next holder's first start one interval after our last one.
        """
        holder, self._holder = self._holder, None
        if holder is None or holder.done():
            return
        if self._opened.is_set():
            self._closing.set()
            await holder
        else:
            holder.cancel()
            with suppress(asyncio.CancelledError):
                await holder


async def ensure_global_limit(name: str) -> None:
    """Create (or correct) the baton limit: `limit=1`, no slot decay. Idempotent."""
    from prefect import get_client
    from prefect.client.schemas.actions import (
        GlobalConcurrencyLimitCreate,
        GlobalConcurrencyLimitUpdate,
    )
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    async with get_client() as client:
        try:
            limit = await client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            with suppress(ObjectAlreadyExists):  # another worker created it a moment ago
                await client.create_global_concurrency_limit(
                    GlobalConcurrencyLimitCreate(name=name, limit=1, slot_decay_per_second=0.0)
                )
            return
        if limit.limit != 1 or limit.slot_decay_per_second or not limit.active:
            await client.update_global_concurrency_limit(
                name,
                GlobalConcurrencyLimitUpdate(limit=1, slot_decay_per_second=0.0, active=True),
            )


# One limiter per (event loop, limit name): every client of an account in this process shares
# one pace. Keyed by loop because asyncio primitives belong to the loop that first uses them.
_limiters: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, Limiter]] = (
    weakref.WeakKeyDictionary()
)


def shared_limiter(
    spec: LimitSpec, *, coordinate: bool, lease_seconds: float, **kwargs: Any
) -> Limiter:
    """The process-wide limiter for `spec.name` on the running loop, created on first use."""
    per_loop = _limiters.setdefault(asyncio.get_running_loop(), {})
    limiter = per_loop.get(spec.name)
    if limiter is None or limiter.spec != spec:
        coordinator = (
            WindowCoordinator(
                spec.name,
                lease_seconds,
                drain_before_release=spec.rate_per_second is None,
            )
            if coordinate
            else None
        )
        limiter = per_loop[spec.name] = Limiter(spec, coordinator=coordinator, **kwargs)
    return limiter
