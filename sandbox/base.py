"""The base every provider sandbox builds on: one ASGI pipeline in front of the provider's routes.

A provider sandbox subclasses `Sandbox`, keeps its records as attributes, returns its routes
from `routes()` and checks credentials in `authenticate()`. Its `app` (a Starlette app whose
`state.sandbox` is the sandbox) runs every HTTP request through the same steps:

1. log the arrival (`log`: method, path, query, body, time, requests in flight, status);
2. take a queued fault for the request, if one matches (`faults`, see `sandbox.faults`);
3. `authenticate()`; then the `limits` covering the path: 429 in the provider's voice, or pass
   and add the provider's limit headers to the response;
4. wait the `latency` (fixed + uniform jitter, real seconds), then answer.

The same app serves in-process (`httpx.ASGITransport`) and on loopback (uvicorn, see
`sandbox.server`). Only two faults differ by mode, because in-process there is no socket:

* `reset` — loopback: the socket is closed with an RST before any response, so the client gets
  `httpx.ReadError` (connection reset by peer). In-process: the app raises `httpx.ReadError`,
  which `ASGITransport` passes to the client as is.
* `timeout` — the request is held for the fault's `seconds`. Loopback: a client whose read
  timeout is shorter gives up with `httpx.ReadTimeout` and the sandbox stops holding at once;
  if the client is still waiting when the time is up, the connection is closed without a
  response. In-process: `ASGITransport` has no timeouts, so after the hold the app raises
  `httpx.ReadTimeout`, as the client's own timeout would have.

Faults and limits are decided synchronously at arrival, under a lock, so they hold under any
concurrency, also when a test thread changes them while a loopback server is running.
"""

from __future__ import annotations

import abc
import asyncio
import random
import socket
import struct
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from email.utils import formatdate
from functools import cached_property
from typing import Any, TypedDict, Unpack

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sandbox.clock import SandboxClock
from sandbox.faults import STATUS_KINDS, Fault, FaultQueue
from sandbox.limits import TOO_MANY_REQUESTS, ConcurrencyLimit, Limit, Quota, RateLimit
from sandbox.request_log import LogEntry


class SandboxOptions(TypedDict, total=False):
    """Knobs every sandbox takes (and `syncflows sandbox` passes on)."""

    scale: float  # sandbox seconds per real second (see `sandbox.clock`); default 1
    latency: float  # fixed real seconds before every answer; default 0
    jitter: float  # plus uniform 0…jitter real seconds; default 0
    seed: int  # for generated records and jitter; default 0
    timeout_seconds: float  # how long a `timeout` fault holds a request; default 60


@dataclass(frozen=True)
class Latency:
    """Real seconds every answer waits: `fixed` plus a uniform draw from 0…`jitter`."""

    fixed: float = 0.0
    jitter: float = 0.0


@dataclass
class _Admission:
    """What the arrival checks decided for one request."""

    response: Response | None = None  # answer this instead of the routes (fault, 401, 429)
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)  # limit headers to add
    held: list[ConcurrencyLimit] = field(default_factory=list)  # places to free at the end
    fault: Fault | None = None


class Sandbox(abc.ABC):
    """Shared state and behaviour of a provider emulator; subclasses add records and routes."""

    def __init__(self, *, limits: Iterable[Limit] = (), **options: Unpack[SandboxOptions]) -> None:
        self.clock = SandboxClock(options.get("scale", 1.0))
        self.latency = Latency(options.get("latency", 0.0), options.get("jitter", 0.0))
        self.seed = options.get("seed", 0)
        self.timeout_seconds = options.get("timeout_seconds", 60.0)
        self.limits: list[Limit] = list(limits)
        self.faults = FaultQueue()
        self.log: list[LogEntry] = []
        self._in_flight = 0
        self._lock = threading.Lock()
        self._jitter = random.Random(self.seed)

    @abc.abstractmethod
    def routes(self) -> list[BaseRoute]:
        """The provider's endpoints; handlers are usually bound methods of the subclass."""

    def authenticate(self, request: Request) -> Response | None:  # noqa: ARG002 - a hook
        """The provider's answer to missing or wrong credentials, or None to let it pass."""
        return None

    @cached_property
    def app(self) -> SandboxApp:
        """The ASGI app, built once."""
        return SandboxApp(self)

    @property
    def in_flight(self) -> int:
        """Requests being handled right now."""
        return self._in_flight

    def clear_log(self) -> None:
        """Forget the requests seen so far (the list object stays the same)."""
        self.log.clear()

    async def handle(self, scope: Scope, receive: Receive, send: Send, app: ASGIApp) -> None:
        """Run one HTTP request through log → fault → auth → limits → latency → `app`."""
        entry = LogEntry(
            scope["method"],
            scope["path"],
            scope["query_string"].decode("latin-1"),
            time.time(),
            scope["headers"],
        )
        with self._lock:
            self._in_flight += 1
            entry.concurrency = self._in_flight
            self.log.append(entry)
        admission = _Admission()
        try:
            entry.raw_body = await _read_body(receive)
            admission = self._admit(entry, scope)
            if delay := self._delay():
                await asyncio.sleep(delay)
            await self._respond(admission, entry, scope, receive, send, app)
        finally:
            with self._lock:
                self._in_flight -= 1
                for cap in admission.held:
                    cap.in_flight -= 1

    def _admit(self, entry: LogEntry, scope: Scope) -> _Admission:
        fault = self.faults.take(entry.method, entry.path)
        if fault is not None:
            entry.fault = fault.kind
            if fault.kind == "429":
                return self._fault_429(fault, entry.path)
            if fault.kind in STATUS_KINDS:
                return _Admission(response=fault.error_response(), fault=fault)
            if fault.kind != "malformed":
                return _Admission(fault=fault)
        if (denied := self.authenticate(Request(scope))) is not None:
            return _Admission(response=denied, fault=fault)
        admission = self._limit(entry.path)
        admission.fault = fault
        return admission

    def _limit(self, path: str) -> _Admission:
        if not self.limits:
            return _Admission()
        with self._lock:  # `now` inside: counted times must stay in arrival order
            now, scale = self.clock.now(), self.clock.scale
            rates = [r for r in self.limits if isinstance(r, RateLimit) and r.applies(path)]
            caps = [c for c in self.limits if isinstance(c, ConcurrencyLimit) and c.applies(path)]
            for cap in caps:
                if cap.in_flight >= cap.max_in_flight:
                    quota = cap.quota()
                    return _Admission(cap.reject(quota), _encode(cap.headers(quota)))
            for rate in rates:
                if rate.wait(now) > 0:
                    quota = rate.quota(now, scale, rejected=True)
                    return _Admission(rate.reject(quota), _encode(rate.headers(quota)))
            for rate in rates:
                rate.admit(now)
            for cap in caps:
                cap.in_flight += 1
            headers = [h for r in rates for h in _encode(r.headers(r.quota(now, scale)))]
            headers += [h for c in caps for h in _encode(c.headers(c.quota()))]
            return _Admission(headers=headers, held=caps)

    def _fault_429(self, fault: Fault, path: str) -> _Admission:
        """A queued 429, in the voice of the limit covering `path` when there is one."""
        wait, whole = fault.retry_after, float(fault.retry_after).is_integer()
        rule = next((r for r in self.limits if r.applies(path)), None)
        if rule is None:
            quota = Quota(0, 0, wait, wait, whole)
            return _Admission(
                TOO_MANY_REQUESTS(quota), _encode({"Retry-After": quota.text(wait)}), fault=fault
            )
        limit = rule.windows[0].limit if isinstance(rule, RateLimit) else rule.max_in_flight
        quota = Quota(limit, 0, wait, wait, whole)
        return _Admission(rule.reject(quota), _encode(rule.headers(quota)), fault=fault)

    def _delay(self) -> float:
        latency = self.latency
        if latency.jitter:
            return latency.fixed + self._jitter.uniform(0.0, latency.jitter)
        return latency.fixed

    async def _respond(
        self,
        admission: _Admission,
        entry: LogEntry,
        scope: Scope,
        receive: Receive,
        send: Send,
        app: ASGIApp,
    ) -> None:
        send = _recording(entry, send, admission.headers, self.clock)
        fault = admission.fault
        kind = fault.kind if fault else None
        if fault is not None and fault.kind == "timeout":
            seconds = self.timeout_seconds if fault.seconds is None else fault.seconds
            await self._hold(receive, seconds)
            return
        if kind == "reset":
            if not await _drop_connection(receive, reset=True):
                raise httpx.ReadError("sandbox fault: connection reset by peer")
            return
        if kind == "malformed":
            send = _truncating(send)
        if admission.response is not None:
            await admission.response(scope, receive, send)
        else:
            await app(scope, _replaying(entry.raw_body, receive), send)

    async def _hold(self, receive: Receive, seconds: float) -> None:
        """Answer nothing for `seconds`, or until the client gives up (see module docstring)."""
        if await _disconnected_within(receive, seconds):
            return
        if not await _drop_connection(receive, reset=False):
            raise httpx.ReadTimeout(f"sandbox fault: no response within {seconds} s")


class SandboxApp(Starlette):
    """A sandbox's routes behind its pipeline; `app.state.sandbox` is the `Sandbox`."""

    def __init__(self, sandbox: Sandbox) -> None:
        super().__init__(routes=sandbox.routes())
        self.sandbox = sandbox
        self.state.sandbox = sandbox

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self.sandbox.handle(scope, receive, send, super().__call__)
        else:
            await super().__call__(scope, receive, send)


def _encode(headers: Mapping[str, str]) -> list[tuple[bytes, bytes]]:
    return [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replaying(body: bytes, receive: Receive) -> Receive:
    """`receive` for the routes: the body already read, then the server's own messages."""
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if replayed:
            return await receive()
        replayed = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


def _recording(
    entry: LogEntry, send: Send, headers: list[tuple[bytes, bytes]], clock: SandboxClock
) -> Send:
    """`send` that notes the status in the log and adds the limit headers and `Date`.

    `Date` (RFC 9110 §6.6.1; real providers send it) tells the sandbox clock's time, which is
    what clients must use to reason about the provider's timestamps.
    """

    async def record(message: Message) -> None:
        if message["type"] == "http.response.start":
            entry.status = message["status"]
            date = (b"date", formatdate(clock.now(), usegmt=True).encode("latin-1"))
            message = {**message, "headers": [*message.get("headers", ()), *headers, date]}
        await send(message)

    return record


def _truncating(send: Send) -> Send:
    """`send` that answers 200 with the first half of the routes' body (never valid JSON)."""
    start: dict[str, Any] = {}
    chunks: list[bytes] = []

    async def truncate(message: Message) -> None:
        if message["type"] == "http.response.start":
            start.update(message)
            return
        if message["type"] != "http.response.body":
            await send(message)
            return
        chunks.append(message.get("body", b""))
        if message.get("more_body", False):
            return
        body = b"".join(chunks)
        cut = body[: len(body) // 2] if len(body) > 1 else b"{"
        headers = [(k, v) for k, v in start.get("headers", ()) if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(cut)).encode()))
        await send({**start, "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": cut, "more_body": False})

    return truncate


async def _disconnected_within(receive: Receive, seconds: float) -> bool:
    """Whether the client hangs up within `seconds` (in-process it never does)."""
    try:
        async with asyncio.timeout(seconds):
            while (await receive())["type"] != "http.disconnect":
                pass
    except TimeoutError:
        return False
    return True


async def _drop_connection(receive: Receive, *, reset: bool) -> bool:
    """Close the client's connection without a response; False when there is no socket.

    uvicorn's `receive` is a method of its request cycle, which holds the asyncio transport;
    reaching it is the only way an ASGI app can drop a connection instead of sending a 500.
    SO_LINGER 0 makes the close an RST (connection reset) rather than an orderly FIN.
    """
    transport: Any = getattr(getattr(receive, "__self__", None), "transport", None)
    if transport is None or not hasattr(transport, "abort"):
        return False
    sock = transport.get_extra_info("socket")
    if reset and sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()
    await receive()  # returns once uvicorn has seen the connection go, so it sends no 500
    return True
