"""Faults a test queues for the next matching request: the failures a provider client must survive.

| kind        | what the client sees                                                              |
| ----------- | --------------------------------------------------------------------------------- |
| `429`       | 429 in the provider's voice: its rate-limit rule's headers and body for the path,  |
|             | with `retry_after` as the wait (a bare `Retry-After` when no rule covers the path) |
| `500`…`504` | that status with `body` (default: a JSON message, or a proxy's HTML for 502/504)  |
| `timeout`   | no answer for `seconds` (see `Sandbox.handle` for how each mode ends it)          |
| `reset`     | the connection dropped without a response                                         |
| `malformed` | the request is handled (its effects happen), then 200 with the body cut in half  |

Faults are taken in the order queued; a fault with `path`/`method` waits for a request that
matches, while other requests pass it by. Faulted requests other than `malformed` skip auth and
limits and do not count against them: they stand for failures in front of the provider's app.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from typing import Any, Literal, get_args

from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response

from sandbox.paths import under

FaultKind = Literal["429", "500", "502", "503", "504", "timeout", "reset", "malformed"]
KINDS = frozenset(get_args(FaultKind))
STATUS_KINDS = frozenset({"500", "502", "503", "504"})

_DEFAULT_BODIES: dict[str, Any] = {
    "500": {"message": "Server Error"},
    "502": "<html><head><title>502 Bad Gateway</title></head><body>Bad Gateway</body></html>",
    "503": {"message": "Service Unavailable"},
    "504": "<html><head><title>504 Gateway Time-out</title></head><body>Timeout</body></html>",
}


@dataclass(frozen=True)
class Fault:
    """One queued failure; `path` is a prefix (whole segments), `method` e.g. "PUT"."""

    kind: FaultKind
    path: str | None = None
    method: str | None = None
    retry_after: float = 1.0  # `429`: real seconds the client is told to wait
    body: Any = None  # `5xx`: dict/list → JSON, str starting with "<" → HTML, other str → text
    seconds: float | None = None  # `timeout`: real seconds to hold; None → the sandbox default

    def matches(self, method: str, path: str) -> bool:
        """Whether a request to `method path` takes this fault."""
        if self.method is not None and self.method.upper() != method:
            return False
        return self.path is None or under(path, self.path)

    def error_response(self) -> Response:
        """The 5xx this fault answers with."""
        status = int(self.kind)
        body = _DEFAULT_BODIES[self.kind] if self.body is None else self.body
        if not isinstance(body, str):
            return JSONResponse(body, status_code=status)
        if body.lstrip().startswith("<"):
            return HTMLResponse(body, status_code=status)
        return PlainTextResponse(body, status_code=status)


class FaultQueue:
    """FIFO of faults; safe to fill from a test thread while a loopback server takes from it."""

    def __init__(self) -> None:
        self._faults: deque[Fault] = deque()
        self._lock = threading.Lock()

    def add(
        self,
        kind: FaultKind,
        *,
        times: int = 1,
        path: str | None = None,
        method: str | None = None,
        retry_after: float = 1.0,
        body: Any = None,
        seconds: float | None = None,
    ) -> None:
        """Queue `kind` for the next `times` matching requests."""
        if kind not in KINDS:
            raise ValueError(f"unknown fault kind {kind!r}")
        fault = Fault(kind, path, method, retry_after, body, seconds)
        with self._lock:
            self._faults.extend([fault] * times)

    def take(self, method: str, path: str) -> Fault | None:
        """Remove and return the first fault this request matches, if any."""
        if not self._faults:  # the common case: no lock, no scan
            return None
        with self._lock:
            for index, fault in enumerate(self._faults):
                if fault.matches(method, path):
                    del self._faults[index]
                    return fault
        return None

    def clear(self) -> None:
        """Drop every queued fault."""
        with self._lock:
            self._faults.clear()

    def __len__(self) -> int:
        return len(self._faults)
