"""Sandbox time: scaled, settable, and reported back to clients in real seconds."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from sandbox.clock import SandboxClock, seconds_text


def test_a_scaled_clock_runs_that_many_times_faster_than_real_time() -> None:
    clock = SandboxClock(scale=60)
    real_start, start = time.monotonic(), clock.now()
    time.sleep(0.05)
    elapsed, real_elapsed = clock.now() - start, time.monotonic() - real_start
    assert 0.05 * 60 <= elapsed <= real_elapsed * 60
    assert clock.real_seconds(60) == 1.0


def test_tests_can_set_and_advance_sandbox_time() -> None:
    clock = SandboxClock(scale=1)
    clock.set(datetime(2026, 3, 1, 12, 0, tzinfo=UTC))
    clock.advance(3600)
    now = clock.now_utc()
    assert now.tzinfo is UTC
    assert datetime(2026, 3, 1, 13, 0, tzinfo=UTC) <= now
    assert (now - datetime(2026, 3, 1, 13, 0, tzinfo=UTC)).total_seconds() < 1


def test_changing_the_scale_keeps_time_continuous() -> None:
    clock = SandboxClock(scale=1, start=datetime(2026, 1, 1, tzinfo=UTC))
    before = clock.now()
    clock.scale = 1000
    assert clock.now() - before < 1.0  # no jump: only the rate changes
    with pytest.raises(ValueError, match="positive"):
        clock.scale = 0


@pytest.mark.parametrize(
    ("seconds", "whole", "text"),
    [
        (0.2, True, "1"),  # never tell a client to come back early
        (59.0, True, "59"),
        (0.87312, False, "0.874"),
        (1.0, False, "1.000"),
        (-0.5, True, "0"),
    ],
)
def test_waits_are_whole_seconds_at_scale_one_and_milliseconds_when_scaled(
    seconds: float, whole: bool, text: str
) -> None:
    assert seconds_text(seconds, whole) == text
