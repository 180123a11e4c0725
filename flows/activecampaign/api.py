"""ActiveCampaign API v3: the typed client the flow reads through, and the record mapping.

Docs: https://developers.activecampaign.com/reference — facts used here are in
`shared/api/pull-providers.md` §1 ("pull §…"). Auth is the `Api-Token` header; lists take
`limit` (≤ 100) and `offset`; `/contacts` alone has the `id_greater`/`id_less` keyset (§1.2);
`meta.total` is a string, an int on `/deals`, and absent on the deal custom field endpoints
(§1.2, §1.7), so every walk also stops on a short page. Ids and most scalars are strings;
`cdate`/`udate`/`mdate` carry the account's offset and legacy rows hold `0000-00-00` (§1.4).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from shared.http import HttpClient, ProviderHTTPError, response_date

PAGE_SIZE = 100  # the documented maximum `limit` (pull §1.2)
CONTACT_DATES = ("cdate", "udate", "adate", "edate", "deleted_at", "bounced_date")
DEAL_DATES = ("cdate", "mdate", "edate", "nextdate", "winProbabilityMdate")
# Field types whose values are several options encoded `||a||b||` (pull §1.5, §1.7).
MULTI_VALUE_TYPES = frozenset({"checkbox", "listbox", "multiselect"})


@dataclass(frozen=True)
class Page:
    """One answer: its JSON body and the provider's clock (`Date`) when it answered."""

    body: dict[str, Any]
    date: datetime | None

    def items(self, key: str) -> list[dict[str, Any]]:
        items = self.body.get(key) or []
        return list(items)

    @property
    def total(self) -> int | None:
        """`meta.total`, a string or an int, or None when the endpoint sends no meta."""
        total = (self.body.get("meta") or {}).get("total")
        return None if total in (None, "") else int(str(total))


@dataclass(frozen=True)
class Catalog:
    """The account's definitions, for naming custom fields, pipelines, stages and owners."""

    fields: Mapping[int, tuple[str, str]]  # contact field id → (title, type)
    deal_fields: Mapping[int, tuple[str, str]]  # deal field id → (label, type)
    pipelines: Mapping[int, str]
    stages: Mapping[int, tuple[str, int | None]]  # stage id → (title, pipeline id)
    users: Mapping[int, str]


class ActiveCampaign:
    """Typed reads over the run's `HttpClient` (limits, retries, redaction live there)."""

    def __init__(self, http: HttpClient) -> None:
        self.http = http

    async def get(self, path: str, params: Mapping[str, Any] | None = None) -> Page:
        response = await self.http.request("GET", path, params=params, parse_json=True)
        body = response.json()
        if not isinstance(body, dict):
            body = {}
        return Page(body, response_date(response))

    async def find(self, path: str) -> Page | None:
        """A single record's answer, or None when AC says it does not exist (404)."""
        try:
            return await self.get(path)
        except ProviderHTTPError as error:
            if error.status == 404:
                return None
            raise

    async def every(self, path: str, key: str) -> tuple[list[dict[str, Any]], datetime | None]:
        """All items of a small list (definitions): offset pages until a short page."""
        items: list[dict[str, Any]] = []
        date = None
        while True:
            page = await self.get(path, {"limit": PAGE_SIZE, "offset": len(items)})
            date = date or page.date
            batch = page.items(key)
            items += batch
            total = page.total
            if len(batch) < PAGE_SIZE or (total is not None and len(items) >= total):
                return items, date

    async def contacts(
        self, *, since: datetime | None, after_id: int, below_id: int | None, newest: bool = False
    ) -> Page:
        """A keyset page of contacts by ascending id (pull §1.2), or the newest one."""
        params: dict[str, Any] = {"limit": 1 if newest else PAGE_SIZE}
        params["orders[id]"] = "DESC" if newest else "ASC"
        if after_id:
            params["id_greater"] = after_id
        if below_id is not None:
            params["id_less"] = below_id
        if since is not None:
            params["filters[updated_after]"] = filter_time(since)
        return await self.get("/contacts", params)

    async def deals(self, *, since: datetime | None, offset: int) -> Page:
        """An offset page of deals, oldest created first (deals have no keyset, pull §1.6).

        `orders[cdate]` is documented; `orders[id]` breaks ties where AC honours it and is
        ignored (as unknown parameters are) where it does not.
        """
        params: dict[str, Any] = {
            "limit": PAGE_SIZE,
            "offset": offset,
            "orders[cdate]": "ASC",
            "orders[id]": "ASC",
        }
        if since is not None:
            params["filters[updated_after]"] = filter_time(since)
        return await self.get("/deals", params)

    async def scan(self, path: str, offset: int) -> Page:
        """An offset page of a value table (`/fieldValues`, `/dealCustomFieldData`)."""
        return await self.get(path, {"limit": PAGE_SIZE, "offset": offset})


def filter_time(when: datetime) -> str:
    """A `filters[...]` value: ISO 8601 with an explicit offset (pull §1.3)."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")


def utc(value: Any) -> datetime | None:
    """An AC timestamp as aware UTC; None for null, empty and MySQL zero dates (pull §1.4)."""
    if not isinstance(value, str) or not value or value.startswith("0000-00-00"):
        return None
    when = datetime.fromisoformat(value)
    if when.tzinfo is None:  # only offset-less legacy fields; their zone is not documented
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _int(value: Any) -> int | None:
    if value in (None, "", "0", 0):
        return None
    return int(value)


def decode(field_type: str, value: str | None) -> Any:
    """A custom field value for reading: multi-value options as a list (pull §1.5)."""
    if value is not None and field_type in MULTI_VALUE_TYPES and value.startswith("||"):
        return [part for part in value.strip("|").split("||") if part]
    return value


def _without_links(raw: Mapping[str, Any], dates: Iterable[str]) -> dict[str, Any]:
    """The provider's record as stored under `raw`: no `links` (URLs only), dates in UTC."""
    kept = {k: v for k, v in raw.items() if k != "links"}
    for key in dates:
        if key in kept:
            kept[key] = _iso(utc(kept[key]))
    return kept


def named_fields(
    values: Mapping[int, str | None], definitions: Mapping[int, tuple[str, str]]
) -> dict[str, Any]:
    """Custom field values keyed by the field's name (`field_<id>` if it is not defined)."""
    named = {}
    for field_id in sorted(values):
        title, field_type = definitions.get(field_id, (f"field_{field_id}", "text"))
        named[title] = decode(field_type, values[field_id])
    return named


def contact_row(
    raw: Mapping[str, Any], values: Mapping[int, str | None], catalog: Catalog
) -> dict[str, Any]:
    """An `ac_contact` row from a listed contact and its custom field values."""
    created, updated = utc(raw.get("cdate")), utc(raw.get("udate"))
    email = raw.get("email") or None
    record = {
        "id": int(raw["id"]),
        "email": email,
        "first_name": raw.get("firstName"),
        "last_name": raw.get("lastName"),
        "phone": raw.get("phone"),
        "created_at": _iso(created),
        "updated_at": _iso(updated),
        "fields": named_fields(values, catalog.fields),
        "raw": _without_links(raw, CONTACT_DATES),
    }
    return {
        "id": record["id"],
        "email": email.strip().lower() if email else None,
        "first_name": record["first_name"],
        "last_name": record["last_name"],
        "phone": record["phone"],
        "created_at": created,
        "updated_at": updated,
        "deleted_at": None,
        "record": record,
    }


def deal_row(
    raw: Mapping[str, Any], values: Mapping[int, str | None], catalog: Catalog
) -> dict[str, Any]:
    """An `ac_deal` row from a listed deal; a stub (pull §1.6) keeps only what it tells."""
    deal_id, status = int(raw["id"]), raw.get("status")
    status = None if status in (None, "") else int(status)  # 0 open, 1 won, 2 lost
    if raw.get("isDisabled") in (True, 1, "1"):
        record = {"id": deal_id, "title": raw.get("title"), "status": status, "disabled": True}
        return {
            **_empty_deal(),
            "id": deal_id,
            "title": raw.get("title"),
            "status": status,
            "disabled": True,
            "deleted_at": None,
            "record": {**record, "raw": _without_links(raw, DEAL_DATES)},
        }
    stage_id, owner_id = _int(raw.get("stage")), _int(raw.get("owner"))
    stage_title, stage_pipeline = catalog.stages.get(stage_id or 0, (None, None))
    pipeline_id = _int(raw.get("group")) or stage_pipeline
    created, updated = utc(raw.get("cdate")), utc(raw.get("mdate"))
    value = raw.get("value")
    record = {
        "id": deal_id,
        "title": raw.get("title"),
        "status": status,
        "value_cents": None if value in (None, "") else int(value),
        "currency": raw.get("currency"),
        "pipeline_id": pipeline_id,
        "pipeline": catalog.pipelines.get(pipeline_id or 0),
        "stage_id": stage_id,
        "stage": stage_title,
        "owner_id": owner_id,
        "owner": catalog.users.get(owner_id or 0),
        "contact_id": _int(raw.get("contact")),
        "created_at": _iso(created),
        "updated_at": _iso(updated),
        "fields": named_fields(values, catalog.deal_fields),
        "raw": _without_links(raw, DEAL_DATES),
    }
    columns = {k: record[k] for k in _DEAL_COLUMNS}
    return {
        **columns,
        "disabled": False,
        "created_at": created,
        "updated_at": updated,
        "deleted_at": None,
        "record": record,
    }


_DEAL_COLUMNS = (
    "id", "title", "status", "value_cents", "currency", "pipeline_id", "pipeline", "stage_id",
    "stage", "owner_id", "owner", "contact_id",
)  # fmt: skip


def _empty_deal() -> dict[str, Any]:
    return dict.fromkeys(_DEAL_COLUMNS) | {"created_at": None, "updated_at": None}


def contact_value(raw: Mapping[str, Any]) -> tuple[int, int, str | None]:
    """(contact id, field id, value) of a `/fieldValues` item."""
    return int(raw["contact"]), int(raw["field"]), raw.get("value")


def deal_value(raw: Mapping[str, Any]) -> tuple[int, int, str | None]:
    """(deal id, field id, value) of a `/dealCustomFieldData` item; the undocumented sideload
    spells the keys `deal_id`/`custom_field_id`/`custom_field_text_value` (pull §1.7)."""
    deal = raw.get("dealId", raw.get("deal_id"))
    field = raw.get("customFieldId", raw.get("custom_field_id"))
    value = raw.get("fieldValue", raw.get("custom_field_text_value"))
    return int(deal), int(field), None if value is None else str(value)


def person_name(first: str | None, last: str | None) -> str:
    """A deal owner's name as shown: first and last name, either may be missing."""
    return f"{first or ''} {last or ''}".strip()


def build_catalog(
    fields: list[dict[str, Any]],
    deal_fields: list[dict[str, Any]],
    pipelines: list[dict[str, Any]],
    stages: list[dict[str, Any]],
    users: list[dict[str, Any]],
) -> Catalog:
    """The catalog from the five definition lists."""
    return Catalog(
        fields={
            int(f["id"]): (str(f.get("title") or ""), str(f.get("type") or "")) for f in fields
        },
        deal_fields={
            int(f["id"]): (str(f.get("fieldLabel") or ""), str(f.get("fieldType") or ""))
            for f in deal_fields
        },
        pipelines={int(p["id"]): str(p.get("title") or "") for p in pipelines},
        stages={int(s["id"]): (str(s.get("title") or ""), _int(s.get("group"))) for s in stages},
        users={int(u["id"]): person_name(u.get("firstName"), u.get("lastName")) for u in users},
    )
