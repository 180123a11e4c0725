"""Sandbox time: a settable clock that can run faster than real time.

A sandbox measures its rate-limit windows and stamps its records with this clock. With
`scale=60` one real second is one sandbox minute, so a 120-per-minute limit admits 120 requests
per real second and every limit keeps its ratio to the others. Whatever the sandbox tells a
client to wait (Retry-After, reset headers) is converted back to real seconds with
`real_seconds`, because the client sleeps on its own, unscaled clock.
"""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime


class SandboxClock:
    """Epoch seconds running `scale` times faster than real time; tests may set or advance it."""

    def __init__(self, scale: float = 1.0, start: datetime | None = None) -> None:
        if scale <= 0:
            raise ValueError(f"scale must be positive, not {scale}")
        self._scale = scale
        self._real_anchor = time.monotonic()  # monotonic: a wall-clock step must not skew windows
        self._anchor = time.time() if start is None else start.timestamp()

    @property
    def scale(self) -> float:
        """How many sandbox seconds pass per real second."""
        return self._scale

    @scale.setter
    def scale(self, scale: float) -> None:
        if scale <= 0:
            raise ValueError(f"scale must be positive, not {scale}")
        self._anchor, self._real_anchor = self.now(), time.monotonic()
        self._scale = scale

    def now(self) -> float:
        """Sandbox time in epoch seconds."""
        return self._anchor + (time.monotonic() - self._real_anchor) * self._scale

    def now_utc(self) -> datetime:
        """Sandbox time as an aware UTC datetime, for record timestamps."""
        return datetime.fromtimestamp(self.now(), UTC)

    def set(self, when: datetime) -> None:
        """Jump to `when` (aware); time runs on from there at the same scale.

        Requests a limit has counted stay counted until sandbox time passes them again, so
        setting the clock back lengthens the current windows.
        """
        self._anchor, self._real_anchor = when.timestamp(), time.monotonic()

    def advance(self, seconds: float) -> None:
        """Move sandbox time forward by `seconds` sandbox seconds, e.g. past a rate-limit window."""
        self._anchor += seconds

    def real_seconds(self, sandbox_seconds: float) -> float:
        """How long `sandbox_seconds` of sandbox time takes in real time."""
        return sandbox_seconds / self._scale


def seconds_text(seconds: float, whole: bool) -> str:
    """A wait for a header: whole seconds rounded up, or milliseconds rounded up when scaled.

    Rounding up means a client that waits exactly what it is told is never early.
    """
    seconds = max(0.0, seconds)
    if whole:
        return str(math.ceil(seconds))
    return f"{math.ceil(seconds * 1000) / 1000:.3f}"
