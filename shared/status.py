"""`syncflows status`: what each provider account last did, where it stands, what is failing.

Reads the `sync_run_latest` and `sync_run_stats` views, `sync_cursor`, `sync_failure` and the
seed-shaped `magento_sync_status`; when a Prefect API is configured, adds each deployment's
schedule and next scheduled run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, func, select

from shared.db import ensure_schema, get_engine
from shared.models import SyncCursor, SyncFailure, UTCDateTime

_LATEST = sa.text("SELECT * FROM sync_run_latest").columns(
    started_at=UTCDateTime(), finished_at=UTCDateTime()
)
_STATS = sa.text("SELECT * FROM sync_run_stats")
# Cursor streams that are state, not positions: shown their own way, or not at all.
RECONCILIATION = "reconciliation"
NOT_CURSORS = frozenset({RECONCILIATION, "field_keys"})
# The seed's `SyncStatus` rows (Magento), read as rows: shared code does not import a flow.
_MAGENTO = sa.text("SELECT * FROM magento_sync_status ORDER BY account, sync_type").columns(
    last_sync_at=UTCDateTime(), updated_at=UTCDateTime()
)


@dataclass
class AccountStatus:
    """Everything `syncflows status` says about one provider account."""

    provider: str
    account: str
    latest: dict[str, Any] | None = None
    stats: dict[str, Any] | None = None
    cursors: dict[str, str] = field(default_factory=dict)
    open_failures: int = 0
    permanent_failures: int = 0
    sync_status: list[dict[str, Any]] = field(default_factory=list)
    schedules: list[str] = field(default_factory=list)
    next_run: datetime | None = None


def collect_status(url: str, provider: str | None = None) -> list[AccountStatus]:
    """Status per provider account from the state store (migrating an empty database first)."""
    ensure_schema(url)
    found: dict[tuple[str, str], AccountStatus] = {}

    def entry(p: str, a: str) -> AccountStatus:
        return found.setdefault((p, a), AccountStatus(p, a))

    with Session(get_engine(url)) as session:
        for row in session.execute(_LATEST).mappings():
            entry(row["provider"], row["account"]).latest = dict(row)
        for row in session.execute(_STATS).mappings():
            entry(row["provider"], row["account"]).stats = dict(row)
        for row in session.execute(_MAGENTO).mappings():
            entry("magento", row["account"]).sync_status.append(dict(row))
        for cursor in session.exec(select(SyncCursor)):
            entry(cursor.provider, cursor.account).cursors[cursor.stream] = cursor.value
        failures = session.exec(
            select(SyncFailure.provider, SyncFailure.account, SyncFailure.permanent, func.count())
            .where(col(SyncFailure.resolved_at).is_(None))
            .group_by(
                col(SyncFailure.provider), col(SyncFailure.account), col(SyncFailure.permanent)
            )
        )
        for p, a, permanent, count in failures:
            status = entry(p, a)
            if permanent:
                status.permanent_failures = count
            else:
                status.open_failures = count
    statuses = sorted(found.values(), key=lambda s: (s.provider, s.account))
    return [s for s in statuses if provider in (None, s.provider)]


async def add_schedules(statuses: list[AccountStatus], provider: str | None = None) -> None:
    """Attach each `<provider>-sync` deployment's schedules and next scheduled run."""
    from prefect import get_client
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterId,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import FlowRunSort

    async with get_client() as client:
        for deployment in await client.read_deployments():
            flow = await client.read_flow(deployment.flow_id)
            name = flow.name.removesuffix("-sync")
            if provider not in (None, name):
                continue
            accounts = [s for s in statuses if s.provider == name]
            if not accounts:  # deployed, never run
                accounts = [AccountStatus(name, "default")]
                statuses.extend(accounts)
            schedules = [
                f"{deployment.name}: {getattr(s.schedule, 'cron', None) or s.schedule} "
                f"{getattr(s.schedule, 'timezone', None) or 'UTC'}"
                + ("" if s.active else " (paused)")
                for s in deployment.schedules
            ]
            upcoming = await client.read_flow_runs(
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id])),
                flow_run_filter=FlowRunFilter(
                    state=FlowRunFilterState(
                        type=FlowRunFilterStateType(any_=[StateType.SCHEDULED])
                    )
                ),
                sort=FlowRunSort.EXPECTED_START_TIME_ASC,
                limit=1,
            )
            start = upcoming[0].expected_start_time if upcoming else None
            for status in accounts:
                status.schedules.extend(schedules)
                if start and (status.next_run is None or start < status.next_run):
                    status.next_run = start
    statuses.sort(key=lambda s: (s.provider, s.account))


def format_status(statuses: list[AccountStatus], database: str) -> str:
    """A person-readable report, one block per provider account."""
    if not statuses:
        return (
            f"No sync runs recorded yet in {database}.\n"
            "Run `make demo`, or start a deployment: "
            "prefect deployment run '<provider>-sync/<deployment>'."
        )
    blocks = []
    for s in statuses:
        lines = [f"{s.provider} / {s.account}"]
        if s.latest:
            r = s.latest
            if r["duration_seconds"] is not None:
                took = f"{r['duration_seconds']:.1f} s"
            elif r["state"] == "crashed":  # killed outright; a later run closed its row
                took = "never finished"
            else:
                took = "running"
            lines.append(
                f"  last run   {r['state']} at {_when(r['started_at'])} ({r['mode']}, {took}): "
                f"read {r['records_read']}, created {r['created']}, updated {r['updated']}, "
                f"unchanged {r['unchanged']}, skipped {r['skipped']}, failed {r['failed']}, "
                f"requests {r['requests']}"
            )
            if r["error"]:
                lines.append(f"  error      {r['error'][:200]}")
        else:
            lines.append("  last run   never")
        if s.stats:
            rate = s.stats["success_rate"]
            avg = s.stats["avg_duration_seconds"]
            lines.append(
                f"  runs       {s.stats['runs']} ("
                + (f"{rate:.0%} succeeded" if rate is not None else "none finished")
                + (f", {avg:.1f} s on average" if avg is not None else "")
                + ")"
            )
        for row in s.sync_status:
            lines.append(
                f"  {row['sync_type']:<12}{row['status']}, watermark entity_id "
                f"{row['last_entity_id'] if row['last_entity_id'] is not None else '-'}, "
                f"last finished {_when(row['last_sync_at'])}: "
                f"processed {row['total_processed']} of {_known(row['total_orders'])}, "
                f"created {row['total_created']}, duplicates {row['total_duplicates']}, "
                f"errors {row['total_errors']}"
            )
        lines += _reconciliation(s.cursors.get(RECONCILIATION))
        shown = {k: v for k, v in s.cursors.items() if k not in NOT_CURSORS}
        cursors = ", ".join(f"{k}={v}" for k, v in sorted(shown.items())) or "none"
        lines.append(f"  cursor     {cursors}")
        lines.append(
            f"  failures   {s.open_failures} open (retried next run), "
            f"{s.permanent_failures} permanent"
        )
        for schedule in s.schedules:
            lines.append(f"  schedule   {schedule}")
        if s.schedules or s.next_run:
            lines.append(f"  next run   {_when(s.next_run) if s.next_run else 'none scheduled'}")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def _reconciliation(saved: str | None) -> list[str]:
    """A push flow's last reconciliation (Brevo's Clients Manager views), when it keeps one."""
    if not saved:
        return []
    r = json.loads(saved)
    return [
        f"  reconcile  at {r['at'][:19].replace('T', ' ')} UTC: customers {r['source']}, "
        f"contacts {r['brevo']}, matched {r['matched']}, unmatched {r['unmatched']}, "
        f"only in the provider {r['brevo_only']}",
        f"  opted in   total {r['total']}, synced {r['synced']}, pending {r['pending']}",
    ]


def _known(value: Any) -> str:
    return "?" if value is None else str(value)


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC") if moment else "-"
