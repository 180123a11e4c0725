"""Documented provider limits, enforced the way each provider reports them.

A `RateLimit` holds one or more `Window`s that all apply at once (Brevo: 10 per second AND
36,000 per hour). Windows slide: at most `limit` admitted requests in ANY interval of `seconds`
of sandbox time. Sliding is the strict reading of a documented limit, so a client that stays
inside it also stays inside a provider that counts in fixed windows; it also agrees with how the
tests measure pacing (the worst rolling second). Only admitted requests count.

A `ConcurrencyLimit` caps requests in flight (Mailchimp: more than 10 simultaneous → 429).

Both are scoped to path prefixes and carry the provider's own voice: a `HeaderWriter` that turns
a `Quota` into response headers (written on every response the rule covers) and a `Rejection`
that builds the 429. Waits in a `Quota` are real seconds (see `sandbox.clock`); writers format
them with `Quota.text`: whole seconds at scale 1, milliseconds when the clock is scaled.
"""

from __future__ import annotations

import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from starlette.responses import JSONResponse, Response

from sandbox.clock import seconds_text
from sandbox.paths import in_scope


@dataclass(frozen=True)
class Window:
    """At most `limit` requests in any `seconds` of sandbox time."""

    limit: int
    seconds: float

    def __post_init__(self) -> None:
        if self.limit < 1 or self.seconds <= 0:
            raise ValueError(f"a window needs limit ≥ 1 and seconds > 0, not {self}")


@dataclass(frozen=True)
class Quota:
    """What a rule tells the client: its limit, what is left, and waits in real seconds.

    `reset` is the wait until the oldest counted request leaves the window (one more slot
    frees); `retry_after` is set only on a rejection: the wait until a request would pass.
    """

    limit: int
    remaining: int
    reset: float
    retry_after: float | None = None
    whole: bool = True

    def text(self, seconds: float) -> str:
        """`seconds` as a header value: whole seconds rounded up, or decimals when scaled."""
        return seconds_text(seconds, self.whole)


HeaderWriter = Callable[[Quota], Mapping[str, str]]
Rejection = Callable[[Quota], Response]


def x_ratelimit_headers(quota: Quota) -> dict[str, str]:
    """Laravel style (MailerLite): `X-RateLimit-Limit/Remaining`, `Retry-After` on 429."""
    headers = {"X-RateLimit-Limit": str(quota.limit), "X-RateLimit-Remaining": str(quota.remaining)}
    if quota.retry_after is not None:
        headers["Retry-After"] = quota.text(quota.retry_after)
    return headers


def ratelimit_headers(quota: Quota) -> dict[str, str]:
    """IETF draft names (ActiveCampaign): `RateLimit-Limit/Remaining`, `Retry-After` on 429."""
    headers = {"RateLimit-Limit": str(quota.limit), "RateLimit-Remaining": str(quota.remaining)}
    if quota.retry_after is not None:
        headers["Retry-After"] = quota.text(quota.retry_after)
    return headers


def sib_ratelimit_headers(quota: Quota) -> dict[str, str]:
    """Brevo: `x-sib-ratelimit-limit/remaining/reset` on every response and NO `Retry-After`."""
    reset = quota.retry_after if quota.retry_after is not None else quota.reset
    return {
        "x-sib-ratelimit-limit": str(quota.limit),
        "x-sib-ratelimit-remaining": str(quota.remaining),
        "x-sib-ratelimit-reset": quota.text(reset),
    }


def no_headers(quota: Quota) -> dict[str, str]:  # noqa: ARG001 - a HeaderWriter
    """Providers that send no limit headers at all (Mailchimp, Magento)."""
    return {}


def json_rejection(body: Any, status: int = 429) -> Rejection:
    """A fixed JSON body, e.g. MailerLite `{"message": "Too Many Attempts."}`."""

    def reject(quota: Quota) -> Response:  # noqa: ARG001 - the body does not depend on it
        return JSONResponse(body, status_code=status)

    return reject


def problem_rejection(
    title: str = "Too Many Requests",
    detail: str = "You have exceeded the limit of simultaneous connections.",
    type_: str = "https://mailchimp.com/developer/marketing/docs/errors/",
) -> Rejection:
    """An RFC 7807 problem document (Mailchimp), `application/problem+json`."""

    def reject(quota: Quota) -> Response:  # noqa: ARG001 - the body does not depend on it
        body = {"type": type_, "title": title, "status": 429, "detail": detail}
        return JSONResponse(
            {**body, "instance": str(uuid.uuid4())}, 429, media_type="application/problem+json"
        )

    return reject


TOO_MANY_REQUESTS = json_rejection({"message": "Too Many Requests"})


class RateLimit:
    """Sliding windows that apply together to the requests under `paths` (all when empty)."""

    def __init__(
        self,
        *windows: Window,
        paths: tuple[str, ...] = (),
        exclude: tuple[str, ...] = (),
        headers: HeaderWriter = no_headers,
        reject: Rejection = TOO_MANY_REQUESTS,
    ) -> None:
        if not windows:
            raise ValueError("a RateLimit needs at least one Window")
        self.windows = windows
        self.paths, self.exclude = paths, exclude
        self.headers, self.reject = headers, reject
        # Sandbox times of admitted requests, oldest first, per window.
        self._admitted: list[deque[float]] = [deque() for _ in windows]

    def applies(self, path: str) -> bool:
        """Whether this rule counts requests to `path`."""
        return in_scope(path, self.paths, self.exclude)

    def wait(self, now: float) -> float:
        """Sandbox seconds until a request at `now` would pass every window (0 when it passes)."""
        return max(self._waits(now))

    def admit(self, now: float) -> None:
        """Count a request at `now` in every window (call after `wait` returned 0)."""
        for admitted in self._admitted:
            admitted.append(now)

    def quota(self, now: float, scale: float, rejected: bool = False) -> Quota:
        """What the client is told, waits converted to real seconds at `scale`.

        Admitted: the tightest window (fewest remaining, then the longest until a slot frees).
        Rejected: the window that blocks longest, with its wait as `retry_after`.
        """
        whole = scale == 1
        waits = self._waits(now)
        if rejected:
            wait, window = max(zip(waits, self.windows, strict=True), key=lambda w: w[0])
            return Quota(window.limit, 0, wait / scale, wait / scale, whole)
        states = [
            (window.limit - len(admitted), self._reset(window, admitted, now), window.limit)
            for window, admitted in zip(self.windows, self._admitted, strict=True)
        ]
        remaining, reset, limit = min(states, key=lambda s: (s[0], -s[1]))
        return Quota(limit, max(remaining, 0), reset / scale, None, whole)

    def _waits(self, now: float) -> list[float]:
        """Per window: sandbox seconds until it has room (expired requests are dropped first)."""
        waits = []
        for window, admitted in zip(self.windows, self._admitted, strict=True):
            cutoff = now - window.seconds
            while admitted and admitted[0] <= cutoff:
                admitted.popleft()
            full = len(admitted) >= window.limit
            waits.append(admitted[-window.limit] + window.seconds - now if full else 0.0)
        return waits

    @staticmethod
    def _reset(window: Window, admitted: deque[float], now: float) -> float:
        """Sandbox seconds until the oldest counted request leaves `window` (0 when empty)."""
        return admitted[0] + window.seconds - now if admitted else 0.0

    def clear(self) -> None:
        """Forget every counted request (a fresh account)."""
        for admitted in self._admitted:
            admitted.clear()


class ConcurrencyLimit:
    """At most `max_in_flight` admitted requests under `paths` at once; one more gets a 429."""

    def __init__(
        self,
        max_in_flight: int,
        *,
        paths: tuple[str, ...] = (),
        exclude: tuple[str, ...] = (),
        headers: HeaderWriter = no_headers,
        reject: Rejection = TOO_MANY_REQUESTS,
    ) -> None:
        self.max_in_flight = max_in_flight
        self.paths, self.exclude = paths, exclude
        self.headers, self.reject = headers, reject
        self.in_flight = 0

    def applies(self, path: str) -> bool:
        """Whether this rule counts requests to `path`."""
        return in_scope(path, self.paths, self.exclude)

    def quota(self) -> Quota:
        """The cap and the free places; there is no wait to announce."""
        return Quota(self.max_in_flight, max(self.max_in_flight - self.in_flight, 0), 0.0)


Limit = RateLimit | ConcurrencyLimit
