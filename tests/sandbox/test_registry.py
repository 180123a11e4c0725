"""Sandboxes by name, and `main_sandbox` serving one on a real port in its own process."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from sandbox.registry import UnknownSandbox, create_app
from sandbox.selfcheck import SelfcheckSandbox

ROOT = Path(__file__).resolve().parents[2]


def test_a_registered_sandbox_is_built_with_the_options_given() -> None:
    app = create_app("selfcheck", api_key="k", scale=60, latency=0.01)
    sandbox = app.state.sandbox
    assert isinstance(sandbox, SelfcheckSandbox)
    assert (sandbox.api_key, sandbox.clock.scale, sandbox.latency.fixed) == ("k", 60, 0.01)


def test_an_unknown_sandbox_names_the_known_ones() -> None:
    with pytest.raises(UnknownSandbox, match=r"no sandbox called 'nope'; known: .*selfcheck"):
        create_app("nope")


def test_main_sandbox_serves_on_loopback_until_interrupted() -> None:
    code = "from sandbox.registry import main_sandbox; main_sandbox('selfcheck', 0, per_second=1)"
    process = subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        first_line = process.stdout.readline()
        assert first_line.startswith("selfcheck sandbox listening on http://127.0.0.1:")
        base_url = first_line.split()[-1]
        with httpx.Client(base_url=base_url, timeout=5) as client:
            answered = client.get("/echo", headers={"X-Api-Key": "selfcheck-sandbox-key"})
            limited = client.get("/echo", headers={"X-Api-Key": "selfcheck-sandbox-key"})
        process.send_signal(signal.SIGINT)  # Ctrl+C
        _, stderr = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert (answered.status_code, answered.json()) == (200, {"ok": True})
    assert (limited.status_code, limited.headers["retry-after"]) == (429, "1")
    assert process.returncode == 0, stderr[-2000:]
