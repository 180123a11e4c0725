"""ActiveCampaign writes: each function is one transaction's worth of work on a caller's session.

A page's rows and its checkpoint commit together (the caller adds the checkpoint). Contacts and
their custom field values arrive on different streams, in any order: whichever lands second
rebuilds the enriched `record` from what is stored, so a record is complete once both have
landed. Two writers of the same family must not interleave (a contact page could miss values
committed between its read and its write): `CONTACTS` and `DEALS` serialise them per process,
and a deployment never runs twice at once.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, SQLModel, col, select

from flows.activecampaign.api import (
    Catalog,
    build_catalog,
    contact_row,
    deal_row,
    named_fields,
    person_name,
)
from flows.activecampaign.tables import (
    AcContact,
    AcContactValue,
    AcDeal,
    AcDealField,
    AcDealValue,
    AcField,
    AcPipeline,
    AcStage,
    AcUser,
)
from shared.db import upsert
from shared.runs import Counts, open_failure_keys, record_failure, resolve_failures

CONTACTS = threading.Lock()
DEALS = threading.Lock()
CHUNK = 500  # ids per IN (…) list
PROVIDER = "activecampaign"
PULL = "pull"  # the operation of a record that failed to store


@dataclass(frozen=True)
class Family:
    """Contacts or deals: the record table, its value table, and how a row is built."""

    name: str
    table: type[AcContact] | type[AcDeal]
    values: type[AcContactValue] | type[AcDealValue]
    owner: str  # the value table's column naming the record
    lock: threading.Lock

    def row(
        self, raw: Mapping[str, Any], values: Mapping[int, str | None], catalog: Catalog
    ) -> dict[str, Any]:
        build = contact_row if self.table is AcContact else deal_row
        return build(raw, values, catalog)


CONTACT = Family("contact", AcContact, AcContactValue, "contact_id", CONTACTS)
DEAL = Family("deal", AcDeal, AcDealValue, "deal_id", DEALS)


def _chunks(ids: Iterable[int]) -> Iterable[list[int]]:
    ordered = sorted(set(ids))
    for start in range(0, len(ordered), CHUNK):
        yield ordered[start : start + CHUNK]


def _column(model: type[SQLModel], name: str) -> Any:
    return getattr(model, name)


# ---- definitions ---------------------------------------------------------------------------


def save_catalog(
    session: Session,
    fields: list[dict[str, Any]],
    deal_fields: list[dict[str, Any]],
    pipelines: list[dict[str, Any]],
    stages: list[dict[str, Any]],
    users: list[dict[str, Any]],
) -> Catalog:
    """Replace the definition tables; re-enrich stored records whose names changed."""
    before = load_catalog(session)
    catalog = build_catalog(fields, deal_fields, pipelines, stages, users)
    _replace(session, AcField, [
        {"id": int(f["id"]), "title": f.get("title") or "", "type": f.get("type") or "",
         "perstag": f.get("perstag"), "options": None}
        for f in fields
    ])  # fmt: skip
    _replace(session, AcDealField, [
        {"id": int(f["id"]), "label": f.get("fieldLabel") or "", "type": f.get("fieldType") or "",
         "options": f.get("fieldOptions")}
        for f in deal_fields
    ])  # fmt: skip
    _replace(session, AcPipeline, [
        {"id": int(p["id"]), "title": p.get("title") or "", "currency": p.get("currency")}
        for p in pipelines
    ])  # fmt: skip
    _replace(session, AcStage, [
        {"id": int(s["id"]), "title": s.get("title") or "", "pipeline_id": int(s["group"]),
         "order": int(s["order"]) if s.get("order") else None}
        for s in stages
    ])  # fmt: skip
    _replace(session, AcUser, [
        {"id": int(u["id"]), "username": u.get("username"), "first_name": u.get("firstName"),
         "last_name": u.get("lastName"), "email": u.get("email")}
        for u in users
    ])  # fmt: skip
    if before.fields and before.fields != catalog.fields:
        changed = _changed(before.fields, catalog.fields)
        owners = session.exec(
            select(AcContactValue.contact_id).where(col(AcContactValue.field_id).in_(changed))
        )
        rebuild(session, CONTACT, catalog, set(owners))
    if (before.pipelines, before.stages, before.users, before.deal_fields) != (
        catalog.pipelines, catalog.stages, catalog.users, catalog.deal_fields
    ):  # fmt: skip
        deals = select(AcDeal.id).where(
            col(AcDeal.pipeline_id).in_(_changed(before.pipelines, catalog.pipelines))
            | col(AcDeal.stage_id).in_(_changed(before.stages, catalog.stages))
            | col(AcDeal.owner_id).in_(_changed(before.users, catalog.users))
        )
        ids = set(session.exec(deals))
        changed_fields = _changed(before.deal_fields, catalog.deal_fields)
        ids |= set(
            session.exec(
                select(AcDealValue.deal_id).where(col(AcDealValue.field_id).in_(changed_fields))
            )
        )
        rebuild(session, DEAL, catalog, ids)
    return catalog


def _changed(before: Mapping[int, Any], after: Mapping[int, Any]) -> list[int]:
    return [key for key in set(before) | set(after) if before.get(key) != after.get(key)]


def _replace(session: Session, model: type[SQLModel], rows: list[dict[str, Any]]) -> None:
    upsert(session, model, rows, keys=("id",))
    table: sa.Table = model.__table__  # type: ignore[attr-defined]
    session.execute(sa.delete(table).where(table.c.id.not_in([r["id"] for r in rows])))


def load_catalog(session: Session) -> Catalog:
    """The definitions as stored."""
    return Catalog(
        fields={f.id: (f.title, f.type) for f in session.exec(select(AcField))},
        deal_fields={f.id: (f.label, f.type) for f in session.exec(select(AcDealField))},
        pipelines={p.id: p.title for p in session.exec(select(AcPipeline))},
        stages={s.id: (s.title, s.pipeline_id) for s in session.exec(select(AcStage))},
        users={u.id: person_name(u.first_name, u.last_name) for u in session.exec(select(AcUser))},
    )


# ---- records -------------------------------------------------------------------------------


def _stored_values(
    session: Session, family: Family, ids: Iterable[int]
) -> dict[int, dict[int, str | None]]:
    owner = _column(family.values, family.owner)
    found: dict[int, dict[int, str | None]] = defaultdict(dict)
    for chunk in _chunks(ids):
        rows = session.execute(
            sa.select(
                owner, _column(family.values, "field_id"), _column(family.values, "value")
            ).where(owner.in_(chunk))
        )
        for record_id, field_id, value in rows:
            found[record_id][field_id] = value
    return found


def store_records(
    session: Session,
    family: Family,
    catalog: Catalog,
    raws: Sequence[Mapping[str, Any]],
    *,
    seen_pass: int | None = None,
    account: str = "default",
    run_id: int | None = None,
) -> Counts:
    """Upsert listed records, enriched with their stored values; count what changed.

    `seen_pass` marks them listed by a full pass. A record that is new gets no
    `values_as_of`, so its values are read (or come with the values scan). A record that
    cannot be read becomes a `sync_failure` row (operation `pull`) and the page goes on; the
    flow reads it again by id on later runs until it stores.
    """
    counts = Counts(records_read=len(raws))
    ids = [int(raw["id"]) for raw in raws if str(raw.get("id", "")).isdigit()]
    values = _stored_values(session, family, ids)
    rows = {}
    for raw in raws:
        try:
            row = family.row(raw, values.get(int(raw["id"]), {}), catalog)
        except (KeyError, TypeError, ValueError) as error:
            counts.failed += 1
            record_failure(
                session,
                provider=PROVIDER,
                account=account,
                record_key=f"{family.name}:{raw.get('id')}",
                operation=PULL,
                message=f"unreadable {family.name}: {type(error).__name__}: {error}",
                detail={"record": dict(raw)},
                run_id=run_id,
            )
            continue
        if seen_pass is not None:
            row["seen_pass"] = seen_pass
        rows[row["id"]] = row
    table = family.table
    before = dict(
        session.execute(
            sa.select(_column(table, "id"), _column(table, "record")).where(
                _column(table, "id").in_(list(rows))
            )
        ).all()
    )
    for record_id, row in rows.items():
        if record_id not in before:
            counts.created += 1
        elif before[record_id] == row["record"]:
            counts.unchanged += 1
        else:
            counts.updated += 1
    ordered = [rows[i] for i in sorted(rows)]  # one lock order for every writer
    upsert(session, table, ordered, keys=("id",))
    resolve_failures(
        session,
        provider=PROVIDER,
        account=account,
        operation=PULL,
        record_keys=[f"{family.name}:{i}" for i in rows],
    )
    return counts


def failed_records(session: Session, family: Family, account: str) -> list[int]:
    """Ids of records of `family` that could not be stored; later runs read them again."""
    keys = open_failure_keys(session, provider=PROVIDER, account=account, operation=PULL)
    prefix = f"{family.name}:"
    return sorted(
        int(k[len(prefix) :]) for k in keys if k.startswith(prefix) and k[len(prefix) :].isdigit()
    )


def store_values(
    session: Session,
    family: Family,
    catalog: Catalog,
    values: Sequence[tuple[int, int, str | None]],
    *,
    seen_pass: int | None,
) -> None:
    """Upsert a page of a value scan and re-enrich the records it touches."""
    rows = {
        (owner, field_id): {
            family.owner: owner,
            "field_id": field_id,
            "value": value,
            "seen_pass": seen_pass,
        }
        for owner, field_id, value in values
    }
    upsert(session, family.values, [rows[k] for k in sorted(rows)], keys=(family.owner, "field_id"))
    refresh_fields(session, family, catalog, {owner for owner, _ in rows})


def replace_values(
    session: Session,
    family: Family,
    catalog: Catalog,
    values: Mapping[int, Sequence[tuple[int, int, str | None]]],
    as_of: Mapping[int, datetime],
) -> None:
    """Replace the whole value set of each record read one by one.

    `as_of` is per record the provider's time (`Date`, whole seconds) of the answer that
    carried its values: a change stamped before that second is in them.
    """
    owner = _column(family.values, family.owner)
    ids = sorted(values)
    for chunk in _chunks(ids):
        session.execute(sa.delete(family.values).where(owner.in_(chunk)))
    rows = {
        (o, f): {family.owner: o, "field_id": f, "value": v, "seen_pass": None}
        for record_id in ids
        for o, f, v in values[record_id]
        if o == record_id
    }
    upsert(session, family.values, [rows[k] for k in sorted(rows)], keys=(family.owner, "field_id"))
    refresh_fields(session, family, catalog, ids)
    by_time: dict[datetime, list[int]] = defaultdict(list)
    for record_id in ids:
        by_time[as_of[record_id]].append(record_id)
    for when, same in sorted(by_time.items()):
        _set_values_as_of(session, family, same, when)


def _set_values_as_of(
    session: Session, family: Family, ids: Iterable[int], as_of: datetime | None
) -> None:
    table = family.table
    for chunk in _chunks(ids):
        session.execute(
            sa.update(table).where(_column(table, "id").in_(chunk)).values(values_as_of=as_of)
        )


def refresh_fields(session: Session, family: Family, catalog: Catalog, ids: Iterable[int]) -> None:
    """Rewrite the `fields` of stored records whose values changed (a value page landed).

    Only the `record` of rows whose fields differ is written: this runs for every value page
    of a scan, so it must stay cheap (one select of records, one of values, one batch update).
    """
    table: sa.Table = family.table.__table__  # type: ignore[union-attr]
    definitions = catalog.fields if family is CONTACT else catalog.deal_fields
    statement = (
        sa.update(table)
        .where(table.c.id == sa.bindparam("record_id"))
        .values(record=sa.bindparam("new_record"))
    )
    for chunk in _chunks(ids):
        stored = session.execute(
            sa.select(table.c.id, table.c.record).where(table.c.id.in_(chunk))
        ).all()
        if not stored:
            continue
        values = _stored_values(session, family, chunk)
        updates = []
        for record_id, record in stored:
            fields = named_fields(values.get(record_id, {}), definitions)
            if record and record.get("fields") != fields:
                updates.append({"record_id": record_id, "new_record": {**record, "fields": fields}})
        if updates:
            session.execute(statement, sorted(updates, key=lambda u: u["record_id"]))


def rebuild(session: Session, family: Family, catalog: Catalog, ids: Iterable[int]) -> None:
    """Recompute the enriched `record` of stored records from their raw record and values."""
    table = family.table
    for chunk in _chunks(ids):
        stored = session.execute(
            sa.select(_column(table, "id"), _column(table, "record")).where(
                _column(table, "id").in_(chunk)
            )
        ).all()
        if not stored:
            continue
        values = _stored_values(session, family, chunk)
        updates = []
        for record_id, record in stored:
            if not record or "raw" not in record:
                continue
            # `raw` keeps the provider's record with dates already in UTC ISO: `utc()` reads
            # those as well as AC's own offsets, so the same mapping applies.
            row = family.row(record["raw"], values.get(record_id, {}), catalog)
            row.pop("deleted_at")
            updates.append(row)
        if updates:
            session.execute(sa.update(table), sorted(updates, key=lambda r: r["id"]))


def mark_deleted(session: Session, family: Family, ids: Iterable[int], when: datetime) -> int:
    """Soft-delete the given records; returns how many were live."""
    table = family.table
    count = 0
    for chunk in _chunks(ids):
        result = session.execute(
            sa.update(table)
            .where(_column(table, "id").in_(chunk), _column(table, "deleted_at").is_(None))
            .values(deleted_at=when)
        )
        count += result.rowcount or 0  # type: ignore[attr-defined]
    return count


def unseen(session: Session, family: Family, seen_pass: int) -> list[int]:
    """Live records a full pass did not list."""
    table = family.table
    seen = _column(table, "seen_pass")
    return list(
        session.scalars(
            sa.select(_column(table, "id")).where(
                _column(table, "deleted_at").is_(None), (seen.is_(None)) | (seen != seen_pass)
            )
        )
    )


def finish_value_scan(
    session: Session, family: Family, seen_pass: int, as_of: datetime
) -> list[int]:
    """Close a complete value scan; returns the records that must be read one by one.

    Every live record's values are now known as of `as_of`, except where a stored value was
    not listed: offset pages shift when rows are deleted during the scan, so an unlisted
    value may be gone or may have been skipped. Those records lose their `values_as_of` and
    are read one by one, which settles it.
    """
    values, table = family.values, family.table
    seen = _column(values, "seen_pass")
    owner = _column(values, family.owner)
    doubtful = set(
        session.scalars(sa.select(owner).where(seen.is_(None) | (seen != seen_pass)).distinct())
    )
    as_of_column = _column(table, "values_as_of")
    session.execute(
        sa.update(table)
        .where(
            _column(table, "deleted_at").is_(None),
            as_of_column.is_(None) | (as_of_column < as_of),
        )
        .values(values_as_of=as_of)
    )
    _set_values_as_of(session, family, doubtful, None)
    return sorted(doubtful)


def needing_values(session: Session, family: Family, limit: int | None = None) -> list[int]:
    """Live records whose values may be stale: never read, or changed since (pull §1.5)."""
    table = family.table
    as_of, updated = _column(table, "values_as_of"), _column(table, "updated_at")
    query = (
        sa.select(_column(table, "id"))
        .where(_column(table, "deleted_at").is_(None), as_of.is_(None) | (updated >= as_of))
        .order_by(_column(table, "id"))
    )
    if family is DEAL:
        query = query.where(_column(table, "disabled").is_(False))
    if limit is not None:
        query = query.limit(limit)
    return list(session.scalars(query))


def count_values(session: Session, family: Family) -> int:
    """Stored values: what a scan would read, to choose between a scan and reads one by one."""
    return int(session.scalar(sa.select(sa.func.count()).select_from(family.values)) or 0)
