"""The `syncflows` commands as a person runs them."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]


def _syncflows(*args: str, env: dict[str, str]) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "shared.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def _row(table: str, flow: str) -> dict[str, str]:
    lines = [line for line in table.splitlines() if line.strip()]
    header = next(line for line in lines if line.startswith("flow"))
    row = next(line for line in lines if line.startswith(flow))
    return dict(zip(header.split(), row.split(), strict=True))


@pytest.mark.e2e
def test_demo_twice_shows_the_incremental_run(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path}/demo.db",
        "PREFECT_HOME": str(tmp_path / "prefect"),
    }
    first_output, second_output = _syncflows("demo", env=env), _syncflows("demo", env=env)
    first, second = _row(first_output, "selfcheck"), _row(second_output, "selfcheck")
    # ActiveCampaign: a full pull of the small account, then an incremental one (7 requests).
    ac_first, ac_second = (
        _row(first_output, "activecampaign"),
        _row(second_output, "activecampaign"),
    )
    assert (ac_first["mode"], ac_first["records_read"], ac_first["created"]) == (
        "full",
        "550",
        "550",
    )
    assert (ac_second["mode"], ac_second["records_read"], ac_second["requests"]) == (
        "incremental",
        "0",
        "7",
    )
    assert (first["records_read"], first["created"], first["failed"], first["requests"]) == (
        "40",
        "39",
        "1",
        "40",
    )
    assert (second["unchanged"], second["created"], second["failed"], second["requests"]) == (
        "39",
        "0",
        "1",
        "1",
    )
    # MailerLite: 300 users, 288 of them production (2 with invalid addresses); then only
    # those 2 are sent again.
    ml_first, ml_second = _row(first_output, "mailerlite"), _row(second_output, "mailerlite")
    assert (ml_first["records_read"], ml_first["created"], ml_first["failed"]) == (
        "288",
        "286",
        "2",
    )
    assert (ml_second["unchanged"], ml_second["failed"], ml_second["requests"]) == (
        "286",
        "2",
        "2",
    )
    # Brevo: 200 customers, 157 opted in, one bulk import; then nothing to send.
    br_first, br_second = _row(first_output, "brevo"), _row(second_output, "brevo")
    assert (br_first["created"], br_second["unchanged"], br_second["requests"]) == (
        "157",
        "157",
        "1",
    )
    # Mailchimp: 150 contacts (5 without email) reconciled into the audience; then 5 edited
    # contacts drained from the outbox.
    mc_first, mc_second = _row(first_output, "mailchimp"), _row(second_output, "mailchimp")
    assert (mc_first["mode"], mc_first["created"], mc_first["skipped"]) == ("full", "145", "5")
    assert (mc_second["mode"], mc_second["records_read"], mc_second["updated"]) == (
        "incremental",
        "5",
        "5",
    )
    status = _syncflows("status", env=env)
    assert "selfcheck / default" in status
    assert "runs       2 (100% succeeded" in status


def test_sandbox_command_serves_a_provider_on_loopback() -> None:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "shared.cli",
            "sandbox",
            "selfcheck",
            "--port",
            "0",
            "--latency",
            "0.01",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        url = re.search(r"listening on (http://\S+)", process.stdout.readline()).group(1)  # type: ignore[union-attr]
        response = httpx.get(f"{url}/echo", headers={"X-Api-Key": "selfcheck-sandbox-key"})
        denied = httpx.get(f"{url}/echo", headers={"X-Api-Key": "wrong"})
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert (response.status_code, response.json()) == (200, {"ok": True})
    assert (denied.status_code, denied.json()) == (401, {"message": "Unauthenticated."})
