"""`make deploy`'s alert automation, against a temporary Prefect API."""

from __future__ import annotations

import pytest
from prefect import get_client

from shared.alerts import AUTOMATION, WEBHOOK_BLOCK, AlertsNotConfigured, ensure_alert_automation
from shared.settings import Settings

pytestmark = pytest.mark.usefixtures("prefect_harness")
HOOK = "https://hooks.example.com/services/T000/B000/alerts-secret-path"


async def _automations() -> list[object]:
    async with get_client() as client:
        return [a for a in await client.read_automations() if a.name == AUTOMATION]


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
    assert "updated" in await ensure_alert_automation(settings)

    [automation] = await _automations()
    trigger = automation.trigger  # type: ignore[attr-defined]
    assert trigger.expect == {"prefect.flow-run.Failed", "prefect.flow-run.Crashed"}
    assert trigger.match_related.get("prefect.resource.id") == ["prefect.tag.syncflows"]
    assert automation.enabled  # type: ignore[attr-defined]
    assert HOOK not in automation.model_dump_json()  # type: ignore[attr-defined]  # in the block
    from prefect.blocks.notifications import CustomWebhookNotificationBlock

    block = await CustomWebhookNotificationBlock.aload(WEBHOOK_BLOCK)
    assert block.url == HOOK
