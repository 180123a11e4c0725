"""Alerting: Prefect automations that tell people when a syncflows run fails or crashes.

Sentry gets one event per failed run (`shared.observability`); this is the second channel, in
Prefect itself, so a crash that never reached our code (a worker killed, a pod evicted) is
reported too. `make deploy` installs one automation, idempotently:

* trigger: the events `prefect.flow-run.Failed` and `prefect.flow-run.Crashed` of any flow run
  tagged `syncflows` (every deployment in prefect.yaml carries the tag, and its runs inherit it);
* action: a notification through a Prefect notification block: the one named in
  `SYNCFLOWS_ALERT_BLOCK` as `<block type>/<name>` (a Slack, Teams or email block made in the
  UI, e.g. `slack-webhook/ops`), or a webhook block
  `syncflows-alerts` that deploy makes from `SYNCFLOWS_ALERT_WEBHOOK_URL` (a Slack incoming
  webhook URL works: the JSON carries `text`).

With neither set, deploy says so and installs nothing: an automation needs somewhere to send.

A run whose process is SIGKILLed (out of memory, a node lost) never reports anything: Prefect
leaves it Running for ever. `make deploy` therefore always installs a second automation, the
zombie-flow pattern of https://docs.prefect.io/v3/advanced/detect-zombie-flows: every
`syncflows` run emits `prefect.flow-run.heartbeat` each `SYNCFLOWS_HEARTBEAT_SECONDS` (the work
pool sets `PREFECT_FLOWS_HEARTBEAT_FREQUENCY`, shared.deploy), and one that goes three beats
without a heartbeat or a final state is marked Crashed. That Crashed state reaches the alert
automation above, and the next run of the same provider account reports it to Sentry
(shared.runs).
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from shared.settings import Settings

if TYPE_CHECKING:
    from prefect.automations import AutomationCore

AUTOMATION = "syncflows: a run failed or crashed"
CRASH_AUTOMATION = "syncflows: mark unresponsive runs crashed"
HEARTBEATS_MISSED = 3  # a late or dropped heartbeat is not a crash; three in a row is
WEBHOOK_BLOCK = "syncflows-alerts"
TAG = "syncflows"
SUBJECT = "syncflows: {{ flow.name }} run {{ flow_run.name }} {{ flow_run.state.name }}"
BODY = (
    "{{ flow.name }} / {{ deployment.name }}: run {{ flow_run.name }} ended "
    "{{ flow_run.state.name }}.\n{{ flow_run.state.message }}\n{{ flow_run|ui_url }}"
)


class AlertsNotConfigured(RuntimeError):
    """Neither SYNCFLOWS_ALERT_BLOCK nor SYNCFLOWS_ALERT_WEBHOOK_URL is set."""


async def notification_block_id(settings: Settings) -> Any:
    """The notification block the automation sends through (made from the webhook URL)."""
    block_name = settings.alert_block
    webhook = settings.alert_webhook_url.get_secret_value() if settings.alert_webhook_url else None
    if block_name:  # "<block type>/<name>", e.g. "slack-webhook/ops"
        from prefect.blocks.core import Block

        try:
            loaded: Any = await Block.aload(block_name)
        except ValueError:  # Prefect: "Unable to find block document named …"
            raise AlertsNotConfigured(
                f"SYNCFLOWS_ALERT_BLOCK: there is no notification block {block_name!r} "
                "(write it as <block type>/<name>, e.g. slack-webhook/ops)"
            ) from None
        return loaded._block_document_id
    if not webhook:
        raise AlertsNotConfigured(
            "alerts are off: set SYNCFLOWS_ALERT_BLOCK (a Prefect notification block's name) or "
            "SYNCFLOWS_ALERT_WEBHOOK_URL to be told of failed and crashed runs"
        )
    from prefect.blocks.notifications import CustomWebhookNotificationBlock

    block = CustomWebhookNotificationBlock(
        name="syncflows alerts",
        url=webhook,
        json_data={"text": "{{subject}}\n{{body}}"},
        allow_private_urls=True,  # an on-premises relay is a private address
    )
    return await block.save(WEBHOOK_BLOCK, overwrite=True)


async def ensure_alert_automation(settings: Settings) -> str:
    """Create or update the automation; returns what was done, for deploy's output.

    Raises:
        AlertsNotConfigured: with the variables to set.
    """
    from prefect.automations import AutomationCore, EventTrigger, Posture, SendNotification

    block_id = await notification_block_id(settings)
    automation = AutomationCore(
        name=AUTOMATION,
        description="Notifies on every failed or crashed run of a syncflows deployment.",
        enabled=True,
        trigger=EventTrigger(
            expect={"prefect.flow-run.Failed", "prefect.flow-run.Crashed"},
            match={"prefect.resource.id": "prefect.flow-run.*"},
            match_related={
                "prefect.resource.role": "tag",
                "prefect.resource.id": f"prefect.tag.{TAG}",
            },
            posture=Posture.Reactive,
            threshold=1,
            within=0,
        ),
        actions=[SendNotification(block_document_id=block_id, subject=SUBJECT, body=BODY)],
    )
    return f"alert automation {AUTOMATION!r} {await _install(automation)}"


async def ensure_crash_automation(settings: Settings) -> str:
    """Create or update the automation that marks silent syncflows runs Crashed.

    Only runs tagged `syncflows` are watched: they carry our heartbeat frequency (the work
    pool's), whereas a run started elsewhere beats every 180 s by default and would look dead.
    Returns what was done, for deploy's output.
    """
    from prefect.automations import AutomationCore, EventTrigger, Posture
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState

    window = HEARTBEATS_MISSED * settings.heartbeat_seconds
    automation = AutomationCore(
        name=CRASH_AUTOMATION,
        description=(
            f"Marks a syncflows run Crashed when it sends no heartbeat for {window} s "
            f"({HEARTBEATS_MISSED} x SYNCFLOWS_HEARTBEAT_SECONDS): its process was killed or lost."
        ),
        enabled=True,
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat"},
            expect={
                "prefect.flow-run.heartbeat",
                "prefect.flow-run.Completed",
                "prefect.flow-run.Failed",
                "prefect.flow-run.Cancelled",
                "prefect.flow-run.Crashed",
            },
            match={"prefect.resource.id": "prefect.flow-run.*"},
            match_related={
                "prefect.resource.role": "tag",
                "prefect.resource.id": f"prefect.tag.{TAG}",
            },
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=window),
        ),
        actions=[
            ChangeFlowRunState(
                state=StateType.CRASHED,
                message=(
                    f"No heartbeat for {window} s ({HEARTBEATS_MISSED} heartbeat intervals): the "
                    f"run's process was killed or lost (automation {CRASH_AUTOMATION!r})."
                ),
            )
        ],
    )
    done = await _install(automation)
    return f"crash detection {CRASH_AUTOMATION!r} {done} (runs silent for {window} s end Crashed)"


async def _install(automation: AutomationCore) -> str:
    """Create the automation, or bring the one of that name up to date; one copy only.

    Returns "created", "updated" or "unchanged".
    """
    from prefect import get_client
    from prefect.automations import AutomationCore

    async with get_client() as client:
        existing = await client.read_automations_by_name(automation.name)
        for extra in existing[1:]:  # two deploys at once: keep one
            await client.delete_automation(extra.id)
        if not existing:
            await client.create_automation(automation)
            return "created"
        # Read back through the same model, so only the definition is compared (not the id);
        # Python-mode dumps keep sets as sets, which the server returns in its own order.
        current = AutomationCore.model_validate(existing[0].model_dump()).model_dump()
        if current == automation.model_dump():
            return "unchanged"
        await client.update_automation(existing[0].id, automation)
        return "updated"
