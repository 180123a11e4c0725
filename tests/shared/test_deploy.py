"""Deployments: prefect.yaml is valid offline (tests/e2e runs `make deploy` and the workers)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from prefect.client.schemas.schedules import CronSchedule
from prefect.flows import load_flow_from_entrypoint

ROOT = Path(__file__).resolve().parents[2]
SPEC = yaml.safe_load((ROOT / "prefect.yaml").read_text())


def test_every_deployment_loads_its_flow_with_valid_parameters() -> None:
    for deployment in SPEC["deployments"]:
        flow = load_flow_from_entrypoint(str(ROOT / deployment["entrypoint"]))
        schema = flow.parameters.model_dump()["properties"]
        assert set(deployment.get("parameters", {})) <= set(schema), deployment["name"]
        assert all(prop.get("description") for prop in schema.values()), "parameters need docs"
        assert deployment["concurrency_limit"] == {"limit": 1, "collision_strategy": "CANCEL_NEW"}
        assert deployment["work_pool"]["name"] == "syncflows"


def test_schedules_follow_the_seeds_and_avoid_dst_gaps() -> None:
    schedules = SPEC["definitions"]["schedules"]
    assert schedules["mailerlite_daily"] == {"cron": "0 3 * * *", "timezone": "America/New_York"}
    assert schedules["brevo_hourly"]["cron"] == "0 * * * *"
    assert schedules["activecampaign_every_15_minutes"]["cron"] == "*/15 * * * *"
    assert schedules["mailchimp_outbox_every_minute"]["cron"] == "* * * * *"
    for name, schedule in schedules.items():
        CronSchedule(cron=schedule["cron"], timezone=schedule["timezone"])  # parses
        runs_more_than_daily = not re.fullmatch(r"\d+ \d+ \* \* \*", schedule["cron"])
        if runs_more_than_daily:
            assert schedule["timezone"] == "UTC", f"{name}: sub-daily crons must run in UTC"
