"""`make deploy`'s automations (alerts, crash detection), against a temporary Prefect API."""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from prefect import get_client
from prefect.client.schemas.objects import StateType
from prefect.events.schemas.automations import Posture

from shared import deploy
from shared.alerts import (
    AUTOMATION,
    CRASH_AUTOMATION,
    WEBHOOK_BLOCK,
    AlertsNotConfigured,
    ensure_alert_automation,
    ensure_crash_automation,
)
from shared.settings import Settings

pytestmark = pytest.mark.usefixtures("prefect_harness")
HOOK = "https://hooks.example.com/services/T000/B000/alerts-secret-path"


async def _automations(name: str = AUTOMATION) -> list[Any]:
    async with get_client() as client:
        return [a for a in await client.read_automations() if a.name == name]


@pytest.fixture
async def no_crash_automation() -> AsyncIterator[None]:
    """Each test starts without the crash automation, and leaves none behind in the shared
    harness (it would mark silent runs of other tests Crashed)."""

    async def delete() -> None:
        async with get_client() as client:
            for automation in await client.read_automations_by_name(CRASH_AUTOMATION):
                await client.delete_automation(automation.id)

    await delete()
    yield
    await delete()


async def test_without_a_target_deploy_says_how_to_switch_alerts_on() -> None:
    names = r"SYNCFLOWS_ALERT_BLOCK.*SYNCFLOWS_ALERT_WEBHOOK_URL"
    with pytest.raises(AlertsNotConfigured, match=names):
        await ensure_alert_automation(Settings(alert_block=None, alert_webhook_url=None))


async def test_a_missing_block_is_named() -> None:
    settings = Settings(alert_block="slack-webhook/nowhere", alert_webhook_url=None)
    with pytest.raises(AlertsNotConfigured, match=r"no notification block 'slack-webhook/nowhere'"):
        await ensure_alert_automation(settings)


async def test_one_automation_on_failed_and_crashed_syncflows_runs_however_often_deployed() -> None:
    settings = Settings(alert_block=None, alert_webhook_url=HOOK)
    assert "created" in await ensure_alert_automation(settings)
    assert "unchanged" in await ensure_alert_automation(settings)

    [automation] = await _automations()
    trigger = automation.trigger  # type: ignore[attr-defined]
    assert trigger.expect == {"prefect.flow-run.Failed", "prefect.flow-run.Crashed"}
    assert trigger.match_related.get("prefect.resource.id") == ["prefect.tag.syncflows"]
    assert automation.enabled  # type: ignore[attr-defined]
    assert HOOK not in automation.model_dump_json()  # type: ignore[attr-defined]  # in the block
    from prefect.blocks.notifications import CustomWebhookNotificationBlock

    block = await CustomWebhookNotificationBlock.aload(WEBHOOK_BLOCK)
    assert block.url == HOOK


def test_make_deploy_installs_one_crash_automation_however_often_even_without_alerts(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], no_crash_automation: None
) -> None:
    import asyncio

    deployed: list[list[str]] = []

    def prefect_deploy(command: list[str], **_: Any) -> subprocess.CompletedProcess[str]:
        deployed.append(command)  # `prefect deploy --all`: not what this test is about
        return subprocess.CompletedProcess(command, 0)

    monkeypatch.setattr(deploy.subprocess, "run", prefect_deploy)
    monkeypatch.setenv("SYNCFLOWS_HEARTBEAT_SECONDS", "40")
    assert deploy.deploy() == 0
    assert deploy.deploy() == 0

    output = capsys.readouterr().out
    assert f"crash detection {CRASH_AUTOMATION!r} created (runs silent for 120 s end" in output
    assert f"crash detection {CRASH_AUTOMATION!r} unchanged" in output
    assert "alerts are off" in output  # alerts are optional; crash detection is not
    assert len(deployed) == 2
    [automation] = asyncio.run(_automations(CRASH_AUTOMATION))
    trigger = automation.trigger
    assert trigger.posture == Posture.Proactive
    assert trigger.after == {"prefect.flow-run.heartbeat"}
    assert trigger.expect == {
        "prefect.flow-run.heartbeat",
        "prefect.flow-run.Completed",
        "prefect.flow-run.Failed",
        "prefect.flow-run.Cancelled",
        "prefect.flow-run.Crashed",
    }
    assert trigger.for_each == {"prefect.resource.id"}
    assert trigger.threshold == 1
    assert trigger.within == timedelta(seconds=120)  # three heartbeats of 40 s
    # Only our runs: others beat every 180 s (Prefect's default) and would look dead.
    assert trigger.match_related.get("prefect.resource.id") == ["prefect.tag.syncflows"]
    assert trigger.match_related.get("prefect.resource.role") == ["tag"]
    [action] = automation.actions
    assert action.type == "change-flow-run-state"
    assert action.state == StateType.CRASHED
    assert "No heartbeat for 120 s" in action.message
    assert automation.enabled


async def test_a_changed_heartbeat_updates_the_crash_automation_in_place(
    no_crash_automation: None,
) -> None:
    assert "created" in await ensure_crash_automation(Settings(heartbeat_seconds=30))
    [before] = await _automations(CRASH_AUTOMATION)
    assert before.trigger.within == timedelta(seconds=90)

    assert "updated" in await ensure_crash_automation(Settings(heartbeat_seconds=60))
    [after] = await _automations(CRASH_AUTOMATION)
    assert after.id == before.id
    assert after.trigger.within == timedelta(seconds=180)
    assert "No heartbeat for 180 s" in after.actions[0].message


def test_a_heartbeat_under_prefects_minimum_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import ValidationError

    monkeypatch.setenv("SYNCFLOWS_HEARTBEAT_SECONDS", "10")
    with pytest.raises(ValidationError, match="SYNCFLOWS_HEARTBEAT_SECONDS"):
        Settings()
    monkeypatch.setenv("SYNCFLOWS_HEARTBEAT_SECONDS", "45")
    assert Settings().heartbeat_seconds == 45
