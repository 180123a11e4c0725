"""Magento writes: consumers (create only), per-order failures, and the sync status rows.

Each page is one transaction: its consumers, its failures, the status row's totals and, where
the run keeps one, the watermark or checkpoint that says the page is done.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from flows.magento.api import BadOrder, consumer_row
from flows.magento.tables import Consumer, MagentoSyncStatus
from shared.db import insert_for
from shared.models import SyncFailure, utcnow
from shared.runs import Counts, record_failure, resolve_failures

PROVIDER = "magento"
OPERATION = "pull"


def order_key(entity_id: int) -> str:
    return f"order:{entity_id}"


@dataclass
class Stored:
    """What one page did."""

    counts: Counts
    consumer_ids: list[int] = field(default_factory=list)  # created by this page


def store_orders(
    session: Session,
    orders: Sequence[Mapping[str, Any]],
    store_code: Mapping[int, str | None],
    *,
    account: str,
    run_id: int | None,
) -> Stored:
    """Create the consumers of `orders`; an existing (email, purchase_date) is a duplicate.

    An order that cannot become a consumer (`BadOrder`) is recorded in `sync_failure` with
    its reason; unless that is permanent, the next incremental run reads it again. Orders that
    now succeed close theirs.
    """
    rows: list[dict[str, Any]] = []
    failed = 0
    now = utcnow()
    for order in orders:
        entity_id = int(order["entity_id"])
        try:
            row = consumer_row(order, store_code.get(int(order.get("store_id") or 0)))
        except BadOrder as bad:
            failed += 1
            record_failure(
                session,
                provider=PROVIDER,
                account=account,
                record_key=order_key(entity_id),
                operation=OPERATION,
                message=str(bad),
                detail={"entity_id": entity_id, "increment_id": order.get("increment_id")},
                run_id=run_id,
                permanent=bad.permanent,
            )
            continue
        rows.append({**row, "created_at": now})
    created = _create(session, rows)
    resolve_failures(
        session,
        provider=PROVIDER,
        account=account,
        operation=OPERATION,
        record_keys=[order_key(row["order_entity_id"]) for row in rows],
    )
    counts = Counts(
        records_read=len(orders),
        created=len(created),
        skipped=len(rows) - len(created),  # duplicates: the pair exists already
        failed=failed,
    )
    return Stored(counts, created)


def _create(session: Session, rows: list[dict[str, Any]]) -> list[int]:
    """`INSERT … ON CONFLICT (email, purchase_date) DO NOTHING RETURNING id`: the new ids."""
    if not rows:
        return []
    table: sa.Table = Consumer.__table__  # type: ignore[attr-defined]
    statement = (
        insert_for(session)(table)
        .on_conflict_do_nothing(index_elements=["email", "purchase_date"])
        .returning(table.c.id)
    )
    return list(session.execute(statement, rows).scalars())


def failed_orders(session: Session, account: str, limit: int) -> list[int]:
    """Entity ids of orders whose failure is open and still retried, oldest first."""
    keys = session.exec(
        select(SyncFailure.record_key)
        .where(
            SyncFailure.provider == PROVIDER,
            SyncFailure.account == account,
            SyncFailure.operation == OPERATION,
            col(SyncFailure.resolved_at).is_(None),
            col(SyncFailure.permanent).is_(False),
        )
        .order_by(col(SyncFailure.record_key))
    ).all()
    ids = sorted(int(key.split(":", 1)[1]) for key in keys if key.startswith("order:"))
    return ids[:limit]


# ---- sync status ------------------------------------------------------------------------------


def watermark(session: Session, account: str) -> int | None:
    """The highest entity_id known read, over the account's full and incremental rows."""
    value = session.exec(
        select(sa.func.max(MagentoSyncStatus.last_entity_id)).where(
            MagentoSyncStatus.account == account
        )
    ).one()
    return int(value) if value is not None else None


def _status(session: Session, account: str, sync_type: str) -> MagentoSyncStatus:
    row = session.get(MagentoSyncStatus, (account, sync_type))
    if row is None:
        row = MagentoSyncStatus(account=account, sync_type=sync_type, updated_at=utcnow())
    return row


def start_status(session: Session, account: str, sync_type: str, run_id: int) -> None:
    """The row says `running`, with this run's totals from zero."""
    row = _status(session, account, sync_type)
    row.status, row.run_id, row.updated_at = "running", run_id, utcnow()
    row.total_processed = row.total_created = row.total_duplicates = row.total_errors = 0
    row.total_orders = None
    session.add(row)


def expect_orders(session: Session, account: str, sync_type: str, total: int) -> None:
    """How many orders this run expects to read (the seed's `progress.total`)."""
    row = _status(session, account, sync_type)
    row.total_orders, row.updated_at = total, utcnow()
    session.add(row)


def add_to_status(
    session: Session,
    account: str,
    sync_type: str,
    counts: Counts,
    *,
    last_entity_id: int | None = None,
) -> None:
    """Add a page's figures to the row; move its watermark (never backwards) if given.

    One `UPDATE … SET total = total + n`: pages of a full sync commit side by side, and a
    read-modify-write would lose some of their figures on PostgreSQL.
    """
    table = MagentoSyncStatus.__table__  # type: ignore[attr-defined]
    values: dict[str, Any] = {
        "total_processed": table.c.total_processed + counts.records_read,
        "total_created": table.c.total_created + counts.created,
        "total_duplicates": table.c.total_duplicates + counts.skipped,
        "total_errors": table.c.total_errors + counts.failed,
        "updated_at": utcnow(),
    }
    if last_entity_id is not None:
        current = table.c.last_entity_id
        values["last_entity_id"] = sa.case(
            (sa.or_(current.is_(None), current < last_entity_id), last_entity_id),
            else_=current,
        )
    session.execute(
        sa.update(table)
        .where(table.c.account == account, table.c.sync_type == sync_type)
        .values(values)
    )


def finish_status(
    session: Session,
    account: str,
    sync_type: str,
    status: str,
    *,
    at: datetime | None = None,
    last_entity_id: int | None = None,
) -> None:
    """`stopped` (with the time it finished) or `error`."""
    row = _status(session, account, sync_type)
    row.status, row.updated_at = status, utcnow()
    if status == "stopped":
        row.last_sync_at = at or row.updated_at
    if last_entity_id is not None:
        row.last_entity_id = max(row.last_entity_id or 0, last_entity_id)
    session.add(row)
