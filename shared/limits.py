"""Provider request caps that hold across tasks, flow runs and workers, and are used in full.

Two mechanisms, one per scale (measured in prefect-notes §2 and its addendum):

* **Local pacing** (one process): request starts pass one at a time through a lock and are
  scheduled like cells in the Generic Cell Rate Algorithm (ATM Forum TM 4.0; a token bucket of
  depth one). Each start books a slot `interval = (1 + margin) / rate` after the previous slot,
  and may run up to `tolerance` (half the margin's slack in a second: 10 ms) ahead of it, so a
  few milliseconds of event-loop lag per start do not add up: at 10/s, lagging 1.5 ms per
  start cost 1.5 % of the cap. A start that comes later than its slot books from its own time,
  so a stalled loop releases one overdue request, not a queue. When a request's bytes leave
  later than its slot (httpx's `trace` extension reports the write), the next slot is booked
  from the write. So any `rate + 1` consecutive requests leave at least
  `rate * interval - tolerance` (1.01 s at 10/s) apart: a rolling second never holds more than
  `rate` of them, with 10 ms to spare for arrival jitter.
* **Windows** (several processes): a Prefect global concurrency limit with `limit=1` and no
  decay is a baton. The process that holds it owns the account's whole cap for
  `lease_seconds`, pacing locally, and releases no earlier than one interval after its last
  start. The next holder is granted after that release, so consecutive starts stay `interval`
  apart across processes too. One server round trip per window (not per request) keeps
  Prefect's own latency out of the pace. `rate_limit(occupy=K)` was not used: in Prefect 3.8.8
  a denied request resets the bucket's decay clock (`bulk_update_denied_slots` bumps
  `updated`), so waiting processes stall it.

A 429 halves the pace once per episode (429s from requests that started before the last halving
do not halve it again) and pauses every start until its Retry-After; each success recovers the
pace by a small step. A connection cap (Mailchimp's 10 simultaneous) is a semaphore; with no
rate cap, a window holder also waits for its requests in flight before releasing, so the cap
holds across processes.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from typing import Any
from uuid import UUID

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

DEFAULT_MARGIN = 0.02  # 2 % slack: 10 req/s cap → one slot per 102 ms → at most 10 per second
DEFAULT_TOLERANCE = 0.01  # seconds a start may run ahead of its slot: half that margin at 10/s
MIN_PACE_FACTOR = 0.25
RECOVERY_STEP = 0.01  # per successful request after a 429: half pace back to full in ~50
LEASE_TTL_SECONDS = 60  # Prefect's minimum; a crashed holder frees the baton after this
POLL_SECONDS = 0.25  # how often a process waiting for the baton asks again


@dataclass(frozen=True)
class LimitSpec:
    """A provider account's documented caps."""

    name: str
    rate_per_second: float | None = None
    max_in_flight: int | None = None


@dataclass
class Start:
    """One request let go by a `Limiter`: when, and a `trace` hook for when its bytes left."""

    at: float
    limiter: Limiter

    async def trace(self, event: str, info: Mapping[str, Any]) -> None:  # noqa: ARG002
        """httpx `trace` extension (`extensions={"trace": start.trace}`): see `Limiter.sent`."""
        if event.endswith("send_request_headers.complete"):
            self.limiter.sent()


class Limiter:
    """Paces request starts and caps requests in flight for one provider account."""

    def __init__(
        self,
        spec: LimitSpec,
        *,
        coordinator: WindowCoordinator | None = None,
        margin: float = DEFAULT_MARGIN,
        tolerance: float | None = None,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.spec = spec
        self._base_interval = (1.0 + margin) / spec.rate_per_second if spec.rate_per_second else 0.0
        # How far a start may run ahead of its slot; it never adds up (see the module doc), so
        # any n + 1 starts span at least n intervals less this once.
        early = DEFAULT_TOLERANCE if tolerance is None else tolerance
        self._tolerance = min(early, self._base_interval / 2) if spec.rate_per_second else 0.0
        self._factor = 1.0
        self._clock = clock
        self._sleep = sleep
        self._next_slot = -1e18  # far in the past: the first start never waits
        self._last_sent = -1e18
        self._last_halving = -1e18
        self._paused_until = 0.0
        self._turns = asyncio.Lock()
        self._in_flight = asyncio.Semaphore(spec.max_in_flight) if spec.max_in_flight else None
        self._waiting = 0  # inside slot(), not yet started
        self._sending = 0  # started, response not yet back
        self._users = 0
        self._coordinator = coordinator
        self.throttles = 0

    @property
    def interval(self) -> float:
        """Seconds between request starts at the current pace."""
        return self._base_interval / self._factor

    @property
    def tolerance(self) -> float:
        """Seconds a start may run ahead of its slot."""
        return self._tolerance

    @property
    def last_sent(self) -> float:
        """When the latest request started or, if later, its bytes left."""
        return self._last_sent

    @property
    def next_start(self) -> float:
        """When another process may start without breaking this one's spacing: one interval
        after our latest request left, and not before our next slot."""
        return max(self._next_slot, self._last_sent + self.interval)

    @property
    def waiting(self) -> int:
        return self._waiting

    @property
    def sending(self) -> int:
        return self._sending

    @property
    def windows(self) -> int:
        """How many windows this process has held (0 when not coordinated)."""
        return self._coordinator.windows if self._coordinator else 0

    @asynccontextmanager
    async def slot(self, *, first: bool = False) -> AsyncIterator[Start]:
        """Hold one request slot: in-flight cap first, then the paced start; yields the start.

        `first` books the next free start at once, ahead of the requests queued for one: for
        a request that has already waited for a cap of its own and must not drift from it.
        """
        if self._in_flight is not None:
            await self._in_flight.acquire()
        try:
            self._waiting += 1
            try:
                if first:
                    started = await self._reserve()
                else:
                    async with self._turns:
                        started = await self._book()
            finally:
                self._waiting -= 1
            self._sending += 1
            try:
                yield started
            finally:
                self._sending -= 1
        finally:
            if self._in_flight is not None:
                self._in_flight.release()

    async def _reserve(self) -> Start:
        """Book the next free start now, then sleep until it. A queued request asleep for the
        same start finds it taken when it wakes, and books the one after."""
        now, start = await self._earliest()
        self._next_slot = max(self._next_slot, start) + self.interval
        if start > now:
            await self._sleep(start - now)
        now = self._clock()
        self._last_sent = max(self._last_sent, now)
        return Start(now, self)

    async def _book(self) -> Start:
        while True:
            now, start = await self._earliest()
            if start > now:
                await self._sleep(start - now)
                continue  # re-check: a 429 pause, the window or a `first` start may have moved
            self._next_slot = max(self._next_slot, now) + self.interval
            self._last_sent = max(self._last_sent, now)
            return Start(now, self)

    async def _earliest(self) -> tuple[float, float]:
        """(now, the earliest start allowed), once this process holds the shared window."""
        while True:
            now = self._clock()
            start = max(now, self._next_slot - self._tolerance, self._paused_until)
            if self._coordinator is not None:
                window_end = self._coordinator.window_end
                if window_end is None or start > window_end:
                    await self._coordinator.wait_for_window(self)
                    continue
            return now, start

    def sent(self) -> None:
        """A request's bytes just left: book the next slot no earlier than one interval on.

        Usually a no-op (the write follows its slot within a millisecond or two); it matters
        when something held the write back (a garbage collection, a busy loop) while the next
        slot came due, which would otherwise leave the two requests bunched on the wire.
        """
        now = self._clock()
        self._next_slot = max(self._next_slot, now + self.interval)
        self._last_sent = max(self._last_sent, now)

    def throttled(self, retry_after: float | None, started: float) -> None:
        """A 429 came back: pause every start until Retry-After; halve the pace once per episode."""
        self.throttles += 1
        if started >= self._last_halving:
            self._factor = max(MIN_PACE_FACTOR, self._factor / 2)
            self._last_halving = self._clock()
        if retry_after:
            self._paused_until = max(self._paused_until, self._clock() + retry_after)

    def succeeded(self) -> None:
        """A request went through: recover the pace a little."""
        if self._factor < 1.0:
            self._factor = min(1.0, self._factor + RECOVERY_STEP)

    def attach(self) -> None:
        """A client starts using this limiter."""
        self._users += 1

    async def detach(self) -> None:
        """A client is done; the last one out gives the window back to other processes."""
        self._users = max(0, self._users - 1)
        if self._users == 0 and self._coordinator is not None:
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
        self._granted = 0.0
        self._opened = asyncio.Event()
        self._closing = asyncio.Event()
        self._holder: asyncio.Task[None] | None = None
        self._acquiring = False
        self._ensured = False

    @property
    def window_end(self) -> float | None:
        """When the window this process holds ends (monotonic clock), None when it holds none."""
        return self._window_end

    async def wait_for_window(self, limiter: Limiter) -> None:
        """Block until this process holds a window; start acquiring one if nobody is."""
        if self._window_end is not None and self._opened.is_set():
            # The window is open but ends before our start: wait for the next one.
            await asyncio.sleep(max(0.0, self._window_end - self._clock()))
        if self._holder is not None and self._holder.done():
            finished, self._holder = self._holder, None
            if not finished.cancelled() and finished.exception() is not None:
                raise finished.exception()  # type: ignore[misc]  # once; the next call tries again
        if self._holder is None:
            self._opened.clear()
            self._closing.clear()
            self._acquiring = True  # until the lease is granted, closing means cancelling
            self._holder = asyncio.create_task(self._hold(limiter))
        holder = self._holder
        opened = asyncio.create_task(self._opened.wait())
        try:
            await asyncio.wait({opened, holder}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            opened.cancel()

    async def _hold(self, limiter: Limiter) -> None:
        from prefect import get_client  # deferred: importing prefect is slow

        try:
            if not self._ensured:
                await ensure_global_limit(self.limit_name)
                self._ensured = True
            async with get_client() as client:
                lease_id = await self._acquire(client)
                self._acquired()
                try:
                    await self._use_window(limiter)
                finally:
                    await client.release_concurrency_slots_with_lease(lease_id)
        finally:
            self._acquired()

    def _acquired(self) -> None:
        # Only this holder's own flag: after an aclose, a newer holder may be acquiring.
        if self._holder is None or self._holder is asyncio.current_task():
            self._acquiring = False

    async def _acquire(self, client: Any) -> UUID:
        """Take the baton, polling every POLL_SECONDS while another process holds it.

        The client's lease calls are used directly: Prefect's `concurrency()` helper logs an
        ERROR for every refusal and waits the server's Retry-After, which grows with each denial
        (up to 30 s) and would leave the cap idle long after its holder is done. A window ends
        well inside the lease TTL, so the lease never needs renewing.
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
                raise RuntimeError(f"Prefect concurrency limit {self.limit_name!r} is missing")
            return UUID(granted["lease_id"])

    async def _use_window(self, limiter: Limiter) -> None:
        self.windows += 1
        self._granted = self._clock()
        self._window_end = self._granted + self.lease_seconds
        self._opened.set()
        try:
            await self._hold_until_done(limiter)
        finally:
            self._window_end = None
            self._opened.clear()
            # Release no earlier than one interval after our last start, so the next holder's
            # first start keeps the spacing.
            await asyncio.sleep(max(0.0, limiter.next_start - self._clock()))
            # A 10 ms poll is simpler than an Event here, and runs once per window. It stops in
            # time for the release to land inside the lease TTL whatever the requests do.
            deadline = self._granted + LEASE_TTL_SECONDS - 5
            while self.drain_before_release and limiter.sending and self._clock() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.01)

    async def _hold_until_done(self, limiter: Limiter) -> None:
        assert self._window_end is not None
        idle_after = max(0.2, 2 * limiter.interval)
        while True:
            now = self._clock()
            if now >= self._window_end:
                return
            idle_for = now - limiter.last_sent
            if limiter.waiting == 0 and limiter.sending == 0 and idle_for >= idle_after:
                return  # nobody here wants the cap: let other processes have it
            with suppress(TimeoutError):
                await asyncio.wait_for(
                    self._closing.wait(), timeout=min(self._window_end - now, idle_after / 2)
                )
                return

    async def aclose(self) -> None:
        """Stop holding: cancel a pending acquisition, or end the current window now.

        A held window is ended, not cancelled: cancelling would cut short the wait that keeps
        the next holder's first start one interval after our last one, or the release itself.
        (A cancel that lands while the server grants a lease leaves it to expire after the
        lease TTL.)
        """
        holder, self._holder = self._holder, None
        if holder is None or holder.done():
            return
        if self._acquiring:
            holder.cancel()
        else:
            self._closing.set()
        try:
            await holder
        except asyncio.CancelledError:
            pass
        except Exception as error:  # the sync is done; an unreleased lease expires on its own
            logging.getLogger("syncflows.limits").warning(
                "could not release %s cleanly (it expires after %d s): %s",
                self.limit_name,
                LEASE_TTL_SECONDS,
                error,
            )


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
    """The process-wide limiter for `spec.name` on the running loop, created on first use.

    A limiter whose caps differ from `spec` is replaced only once nobody uses it.
    """
    per_loop = _limiters.setdefault(asyncio.get_running_loop(), {})
    limiter = per_loop.get(spec.name)
    if limiter is None or (limiter.spec != spec and limiter._users == 0):
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
