"""ActiveCampaign API v3 sandbox: contacts, deals, custom fields, pipelines, stages, users.

Follows `shared/api/pull-providers.md` §1 (cited as "pull §…"). Everything lives under
`/api/3`; the `Api-Token` header must carry the key, else 403 `{"message": "Forbidden"}`.
Lists take `limit` (default 20, clamped to 100) and `offset`; unknown parameters and filters
are ignored, as AC does. `meta.total` is a string except on `/deals` (an int); the deal custom
field endpoints send no `meta`. `/contacts` adds `orders[...]`, `id_greater`/`id_less`
(keyset) and `filters[created|updated_after|before]`; `/deals` the same filters (on `mdate`),
`filters[group|stage|status|owner]` and `orders[...]`. After-filters are `>=`, before-filters
`<`, at whole seconds. One account-wide rate limit (5/s by default) answers 429 with
`Retry-After`; `RateLimit-Limit`/`RateLimit-Remaining` go on every response.

Undocumented sideloads (`include=fieldValues` on `/contacts`, `include=dealCustomFieldData`
on `/deals`) are answered only when switched on. Tests change records with the mutation
methods (stamped with the sandbox clock, or `at=`), and can run code as each request arrives
with `on_request`. `iter_contacts`/`iter_deals` give what a consumer should have stored.
"""

from __future__ import annotations

import hashlib
import math
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any, Unpack

from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from sandbox.activecampaign_data import (
    CURRENCIES,
    DEFAULT_SHAPE,
    LEGACY,
    LIVE,
    SEED_SHAPE,
    TASK_ZERO,
    ZERO_EDATE,
    Account,
    AccountShape,
    DateFilters,
    Field,
    Orders,
    Pipeline,
    Stage,
    User,
    generate,
    iso,
    parse_when,
    wall,
)
from sandbox.base import Sandbox, SandboxApp, SandboxOptions
from sandbox.limits import RateLimit, Window, json_rejection, ratelimit_headers

DEFAULT_API_KEY = "ac-sandbox-key"
PRESETS = {"default": DEFAULT_SHAPE, "seed": SEED_SHAPE}
PREFIX = "/api/3"
MAX_LIMIT = 100
FORBIDDEN = {"message": "Forbidden"}  # pull §1.10 / §1.13
# ASSUMPTION: AC does not document the 429 body (pull §1.11, §6); this mirrors its 403 shape.
TOO_MANY = {"message": "Too Many Requests"}
CONTACT_ORDERS = frozenset({"id", "cdate", "email", "first_name", "last_name", "name"})
DEAL_ORDERS = frozenset({"id", "title", "value", "cdate", "contact_name"})
CONTACT_LINKS = (
    "bounceLogs", "contactAutomations", "contactData", "contactGoals", "contactLists",
    "contactLogs", "contactTags", "contactDeals", "deals", "fieldValues", "geoIps", "notes",
    "organization", "plusAppend", "trackingLogs", "scoreValues", "accountContacts",
    "automationEntryCounts",
)  # fmt: skip
DEAL_LINKS = (
    "dealActivities", "contact", "contactDeals", "group", "nextTask", "notes", "account",
    "customerAccount", "organization", "owner", "scoreValues", "stage", "tasks",
    "dealCustomFieldData",
)  # fmt: skip
Hook = Callable[[Request], None]
FieldChanges = Mapping[int | str, str | None]


class ActiveCampaignSandbox(Sandbox):
    """One generated AC account behind the v3 API; `account` holds its records."""

    def __init__(
        self,
        api_key: str = DEFAULT_API_KEY,
        *,
        shape: AccountShape = DEFAULT_SHAPE,
        per_second: int | None = 5,
        sideload_field_values: bool = False,
        sideload_deal_custom_fields: bool = False,
        **options: Unpack[SandboxOptions],
    ) -> None:
        limits = []
        if per_second is not None:  # one budget per account, shared by every key (pull §1.11)
            limits.append(
                RateLimit(
                    Window(per_second, 1.0),
                    paths=(PREFIX,),
                    headers=ratelimit_headers,
                    reject=json_rejection(TOO_MANY),
                )
            )
        super().__init__(limits=limits, **options)
        self.api_key = api_key
        self.shape = shape
        self.sideload_field_values = sideload_field_values
        self.sideload_deal_custom_fields = sideload_deal_custom_fields
        self.account: Account = generate(shape, self.seed)
        self.hooks: list[Hook] = []
        # Handlers read and tests write from different threads in loopback mode; re-entrant
        # so a hook may call the mutation methods.
        self.lock = threading.RLock()

    def authenticate(self, request: Request) -> Response | None:
        if request.headers.get("Api-Token") != self.api_key:
            return JSONResponse(FORBIDDEN, status_code=403)
        return None

    def routes(self) -> list[BaseRoute]:
        get = ["GET"]
        return [
            Mount(
                PREFIX,
                routes=[
                    Route("/contacts", self.list_contacts, methods=get),
                    Route("/contacts/{id:int}", self.get_contact, methods=get),
                    Route("/contacts/{id:int}/fieldValues", self.contact_values, methods=get),
                    Route("/fields", self.list_fields, methods=get),
                    Route("/fieldValues", self.list_field_values, methods=get),
                    Route("/deals", self.list_deals, methods=get),
                    Route("/deals/{id:int}", self.get_deal, methods=get),
                    Route("/deals/{id:int}/dealCustomFieldData", self.deal_data, methods=get),
                    Route("/dealCustomFieldMeta", self.list_deal_fields, methods=get),
                    Route("/dealCustomFieldData", self.list_deal_data, methods=get),
                    Route("/dealGroups", self.list_pipelines, methods=get),
                    Route("/dealStages", self.list_stages, methods=get),
                    Route("/users", self.list_users, methods=get),
                    Route("/users/me", self.me, methods=get),
                ],
            )
        ]

    # ---- hooks and mutations for tests -----------------------------------------------------

    def on_request(self, hook: Hook) -> Hook:
        """Call `hook(request)` as each authenticated, admitted request reaches its endpoint,
        before the answer is built: the place to change records "during a run"."""
        self.hooks.append(hook)
        return hook

    def _now(self, at: datetime | None) -> int:
        return math.floor(self.clock.now() if at is None else at.timestamp())

    def update_contact(
        self,
        contact_id: int,
        *,
        fields: FieldChanges | None = None,
        at: datetime | None = None,
        **changes: str,
    ) -> None:
        """Change a contact (email, firstName, lastName, phone) and its custom field values
        (by field id or title; None removes one); `udate` becomes `at` or the clock's now."""
        with self.lock:
            self.account.update_contact(contact_id, self._now(at), changes, fields)

    def create_contact(
        self,
        email: str,
        *,
        fields: FieldChanges | None = None,
        at: datetime | None = None,
        **values: str,
    ) -> int:
        """Add a contact (it gets the next id, so a keyset walk meets it at the end)."""
        with self.lock:
            return self.account.create_contact(self._now(at), {"email": email, **values}, fields)

    def delete_contact(self, contact_id: int) -> None:
        """Delete a contact: gone from every list, 404 on `/contacts/{id}`."""
        with self.lock:
            self.account.delete_contact(contact_id)

    def update_deal(
        self,
        deal_id: int,
        *,
        fields: FieldChanges | None = None,
        at: datetime | None = None,
        **changes: Any,
    ) -> None:
        """Change a deal (title, description, value in cents, currency, status, stage, owner,
        contact) and its custom field values (by id or label); `mdate` becomes now."""
        with self.lock:
            self.account.update_deal(deal_id, self._now(at), changes, fields)

    def create_deal(
        self,
        title: str,
        *,
        fields: FieldChanges | None = None,
        at: datetime | None = None,
        **values: Any,
    ) -> int:
        """Add a deal (first pipeline, first stage, owner 1 unless `values` say otherwise)."""
        with self.lock:
            return self.account.create_deal(self._now(at), {"title": title, **values}, fields)

    def delete_deal(self, deal_id: int) -> None:
        """Delete a deal and its custom field data."""
        with self.lock:
            self.account.delete_deal(deal_id)

    def iter_contacts(self) -> Iterator[dict[str, Any]]:
        """What a consumer should hold per contact (see `Account.iter_contacts`); read it
        between runs, not while requests change records."""
        return self.account.iter_contacts()

    def iter_deals(self) -> Iterator[dict[str, Any]]:
        """What a consumer should hold per deal (see `Account.iter_deals`)."""
        return self.account.iter_deals()

    def contacts_by_id(self) -> dict[int, dict[str, Any]]:
        """`iter_contacts` by id."""
        return {c["id"]: c for c in self.iter_contacts()}

    def deals_by_id(self) -> dict[int, dict[str, Any]]:
        """`iter_deals` by id."""
        return {d["id"]: d for d in self.iter_deals()}

    # ---- endpoints -------------------------------------------------------------------------

    def _answer(self, request: Request, build: Callable[[], Any]) -> Response:
        for hook in list(self.hooks):
            hook(request)
        with self.lock:
            body = build()
        if isinstance(body, Response):
            return body
        return JSONResponse(body)

    async def list_contacts(self, request: Request) -> Response:
        """`GET /contacts` (pull §1.3, §1.4)."""
        q = request.query_params
        limit, offset = _page(q)
        sideload = self.sideload_field_values and "fieldValues" in _includes(q)

        def build() -> dict[str, Any]:
            rows = self.account.contact_rows(
                _dates(q),
                _orders(q, CONTACT_ORDERS),
                id_greater=_int(q.get("id_greater")),
                id_less=_int(q.get("id_less")),
                email=q.get("email"),
            )
            page = rows[offset : offset + limit]
            base = _origin(request)
            body: dict[str, Any] = {
                "scoreValues": [],
                "contacts": [self._contact(i, base) for i in page],
            }
            if sideload:  # UNCONFIRMED on the real API (pull §1.5): behind a switch
                table = self.account.field_values
                body["fieldValues"] = [
                    self._field_value(r, base) for i in page for r in table.rows_of(i + 1)
                ]
            body["meta"] = {
                "page_input": _page_input(q, limit, offset),
                "total": str(len(rows)),
                "sortable": True,
            }
            return body

        return self._answer(request, build)

    async def get_contact(self, request: Request) -> Response:
        """`GET /contacts/{id}` with its documented sideloads; 404 when missing or deleted."""
        contact_id: int = request.path_params["id"]

        def build() -> Any:
            try:
                index = self.account.contact_index(contact_id)
            except KeyError:
                return _no_result("Subscriber", contact_id)
            base, d = _origin(request), self.account.deals
            deals = [
                self._deal(i)
                for i, c in enumerate(d.contact)
                if c == contact_id and d.flags[i] & LIVE
            ]
            values = self.account.field_values.rows_of(contact_id)
            return {
                "contactAutomations": [],
                "contactData": [],
                "contactLists": [],
                "deals": deals,
                "fieldValues": [self._field_value(r, base, by=True) for r in values],
                "geoAddresses": [],
                "geoIps": [],
                "contact": self._contact(index, base),
            }

        return self._answer(request, build)

    async def contact_values(self, request: Request) -> Response:
        """`GET /contacts/{id}/fieldValues` (the per-contact fallback, pull §1.5)."""
        contact_id: int = request.path_params["id"]

        def build() -> Any:
            try:
                self.account.contact_index(contact_id)
            except KeyError:
                return _no_result("Subscriber", contact_id)
            rows = self.account.field_values.rows_of(contact_id)
            base = _origin(request)
            return {"fieldValues": [self._field_value(r, base, by=True) for r in rows]}

        return self._answer(request, build)

    async def list_fields(self, request: Request) -> Response:
        """`GET /fields`, sideloading `fieldOptions` and `fieldRels` (pull §1.5)."""
        q = request.query_params
        limit, offset = _page(q, default=100)  # `/fields` documents limit default 100

        def build() -> dict[str, Any]:
            fields = self.account.fields
            if (perstag := q.get("filters[perstag]")) is not None:
                fields = [f for f in fields if _perstag(f) == perstag.upper()]
            page, base = fields[offset : offset + limit], _origin(request)
            options = [(f, n, o) for f in page for n, o in enumerate(f.options, 1)]
            return {
                "fieldOptions": [_field_option(f, n, o, base) for f, n, o in options],
                "fieldRels": [_field_rel(f) for f in page],
                "fields": [_field(f, base) for f in page],
                "meta": {"total": str(len(fields))},
            }

        return self._answer(request, build)

    async def list_field_values(self, request: Request) -> Response:
        """`GET /fieldValues`: every contact's values by id; `filters[fieldid]`, `[val]`."""
        q = request.query_params
        limit, offset = _page(q)

        def build() -> dict[str, Any]:
            rows = self.account.field_value_rows(
                _int(q.get("filters[fieldid]")), q.get("filters[val]")
            )
            base = _origin(request)
            return {
                "fieldValues": [self._field_value(r, base) for r in rows[offset : offset + limit]],
                "meta": {"total": str(len(rows))},
            }

        return self._answer(request, build)

    async def list_deals(self, request: Request) -> Response:
        """`GET /deals` (pull §1.6): stubs for hidden pipelines, `meta.total` an int."""
        q = request.query_params
        limit, offset = _page(q)
        sideload = self.sideload_deal_custom_fields and "dealCustomFieldData" in _includes(q)

        def build() -> dict[str, Any]:
            equals = {
                name: value
                for name in ("group", "stage", "status", "owner")
                if (value := _int(q.get(f"filters[{name}]"))) is not None
            }
            match = self.account.deal_rows(_dates(q), _orders(q, DEAL_ORDERS), **equals)
            page, base = match.rows[offset : offset + limit], _origin(request)
            body: dict[str, Any] = {"deals": [self._deal(i, listed=True) for i in page]}
            if sideload:  # UNCONFIRMED (pull §1.7): behind a switch
                body["dealCustomFieldData"] = [
                    self._deal_value(r, base)
                    for i in page
                    if not self.account.restricted(i)
                    for r in self.account.deal_values.rows_of(i + 1)
                ]
            currencies = {
                code: {"total": str(n), "value": str(v), "currency": code, "isDisabled": False}
                for code, (n, v) in match.currencies.items()
            }
            body["meta"] = {"currencies": currencies, "total": len(match.rows)}
            return body

        return self._answer(request, build)

    async def get_deal(self, request: Request) -> Response:
        """`GET /deals/{id}`: the deal, or its stub when its pipeline is hidden."""
        deal_id: int = request.path_params["id"]

        def build() -> Any:
            try:
                index = self.account.deal_index(deal_id)
            except KeyError:
                return _no_result("Deal", deal_id)
            return {"deal": self._deal(index)}

        return self._answer(request, build)

    async def deal_data(self, request: Request) -> Response:
        """`GET /deals/{id}/dealCustomFieldData`."""
        deal_id: int = request.path_params["id"]

        def build() -> Any:
            try:
                self.account.deal_index(deal_id)
            except KeyError:
                return _no_result("Deal", deal_id)
            rows, base = self.account.deal_value_rows(deal_id), _origin(request)
            return {"dealCustomFieldData": [self._deal_value(r, base) for r in rows]}

        return self._answer(request, build)

    async def list_deal_fields(self, request: Request) -> Response:
        """`GET /dealCustomFieldMeta` (pull §1.7): no `meta` in the documented answer."""
        limit, offset = _page(request.query_params, default=100)

        def build() -> dict[str, Any]:
            base = _origin(request)
            page = self.account.deal_fields[offset : offset + limit]
            return {"dealCustomFieldMeta": [_deal_field(f, base) for f in page]}

        return self._answer(request, build)

    async def list_deal_data(self, request: Request) -> Response:
        """`GET /dealCustomFieldData`, `filters[dealId]` (capital I); no `meta` (pull §1.7)."""
        q = request.query_params
        limit, offset = _page(q)

        def build() -> dict[str, Any]:
            rows = self.account.deal_value_rows(_int(q.get("filters[dealId]")))
            base = _origin(request)
            page = rows[offset : offset + limit]
            return {"dealCustomFieldData": [self._deal_value(r, base) for r in page]}

        return self._answer(request, build)

    async def list_pipelines(self, request: Request) -> Response:
        """`GET /dealGroups`, always sideloading the stages of the pipelines listed."""
        q = request.query_params
        limit, offset = _page(q)

        def build() -> dict[str, Any]:
            pipelines = self.account.pipelines
            if (title := q.get("filters[title]")) is not None:
                pipelines = [p for p in pipelines if title.lower() in p.title.lower()]
            page = pipelines[offset : offset + limit]
            stages = [self.account.stage(s) for p in page for s in p.stages]
            return {
                "dealGroups": [_pipeline(p) for p in page],
                "dealStages": [_stage(s) for s in stages],
                "meta": {"total": str(len(pipelines))},
            }

        return self._answer(request, build)

    async def list_stages(self, request: Request) -> Response:
        """`GET /dealStages`, `filters[d_groupid]`, `filters[title]`."""
        q = request.query_params
        limit, offset = _page(q)

        def build() -> dict[str, Any]:
            stages = self.account.stages
            if (group := _int(q.get("filters[d_groupid]"))) is not None:
                stages = [s for s in stages if s.pipeline == group]
            if (title := q.get("filters[title]")) is not None:
                stages = [s for s in stages if title.lower() in s.title.lower()]
            return {
                "dealStages": [_stage(s) for s in stages[offset : offset + limit]],
                "meta": {"total": str(len(stages))},
            }

        return self._answer(request, build)

    async def list_users(self, request: Request) -> Response:
        """`GET /users`."""
        limit, offset = _page(request.query_params)

        def build() -> dict[str, Any]:
            users, base = self.account.users, _origin(request)
            return {
                "users": [_user(u, base) for u in users[offset : offset + limit]],
                "meta": {"total": str(len(users))},
            }

        return self._answer(request, build)

    async def me(self, request: Request) -> Response:
        """`GET /users/me`: the key's user (the cheap token check, pull §1.1)."""
        return self._answer(
            request, lambda: {"user": _user(self.account.users[0], _origin(request))}
        )

    # ---- JSON of one record ----------------------------------------------------------------

    def _contact(self, index: int, base: str) -> dict[str, Any]:
        c = self.account.contacts
        contact_id, email = str(index + 1), c.email[index]
        created, updated = c.created[index], c.updated[index]
        # Legacy rows show MySQL zero dates where newer ones have null (list-contacts example).
        legacy = bool(c.flags[index] & LEGACY)
        zero_date = "0000-00-00" if legacy else None
        zero_time = "0000-00-00 00:00:00" if legacy else None
        links = f"{base}/contacts/{contact_id}/"
        return {
            "cdate": iso(created),
            "email": email,
            "phone": c.phone[index],
            "firstName": c.first[index],
            "lastName": c.last[index],
            "orgid": "0",
            "orgname": "",
            "segmentio_id": "",
            "bounced_hard": "0",
            "bounced_soft": "0",
            "bounced_date": zero_date,
            "ip": "0",
            "ua": "" if legacy else None,
            "hash": hashlib.md5(email.encode(), usedforsecurity=False).hexdigest(),
            "socialdata_lastcheck": zero_time,
            "email_local": "",
            "email_domain": email.rpartition("@")[2],
            "sentcnt": "0",
            "rating_tstamp": zero_date,
            "gravatar": "0",
            "deleted": "0",
            "anonymized": "0",
            "adate": None,
            "udate": iso(updated),
            "edate": None,
            "deleted_at": zero_time,
            # Named UTC but local wall-clock time in the recorded response (pull §1.4).
            "created_utc_timestamp": wall(created),
            "updated_utc_timestamp": wall(updated),
            "created_timestamp": wall(created),
            "updated_timestamp": wall(updated),
            "created_by": None,
            "updated_by": None,
            "mpp_tracking": "0",
            "last_click_date": None,
            "last_open_date": None,
            "last_mpp_open_date": None,
            "best_send_hour": None,
            "sms_consent": None,
            "sms_consent_updated_at": None,
            "whatsapp_id": None,
            "whatsapp_username": None,
            "scoreValues": [],
            "accountContacts": [],
            "links": {name: links + name for name in CONTACT_LINKS},
            "id": contact_id,
            "organization": None,
        }

    def _field_value(self, row: int, base: str, by: bool = False) -> dict[str, Any]:
        table = self.account.field_values
        row_id, owner = str(row + 1), str(table.owner[row])
        value: dict[str, Any] = {
            "contact": owner,
            "field": str(table.field[row]),
            "value": table.value[row],
            "cdate": iso(table.created[row]),
            "udate": iso(table.updated[row]),
        }
        if by:  # only the per-contact example shows these
            value |= {"created_by": "0", "updated_by": "0"}
        links = f"{base}/fieldValues/{row_id}/"
        return value | {
            "links": {"owner": links + "owner", "field": links + "field"},
            "id": row_id,
            "owner": owner,
        }

    def _deal(self, index: int, listed: bool = False) -> dict[str, Any]:
        d = self.account.deals
        deal_id, status = str(index + 1), str(d.status[index])
        if self.account.restricted(index):
            # A deal in a pipeline the key's user cannot see (pull §1.6): the list's stub
            # carries its status (recorded), the single deal's does not (documented).
            if listed:
                return {
                    "title": d.title[index],
                    "status": status,
                    "id": deal_id,
                    "isDisabled": True,
                }
            return {"id": deal_id, "isDisabled": True, "title": d.title[index]}
        stage = self.account.stage(d.stage[index])
        flags, win, contact = d.flags[index], d.win[index], d.contact[index]
        created, updated = d.created[index], d.updated[index]
        links = f"{PREFIX}/deals/{deal_id}/"  # relative, as in the documented deals
        return {
            "hash": hashlib.md5(deal_id.encode(), usedforsecurity=False).hexdigest()[:8],
            "owner": str(d.owner[index]),
            "contact": str(contact) if contact else None,
            "organization": None,
            "group": str(stage.pipeline),
            "stage": str(stage.id),
            "title": d.title[index],
            "description": d.description[index],
            "percent": "0",
            "cdate": iso(created),
            "mdate": iso(updated),
            "nextdate": None,
            "nexttaskid": "0" if flags & TASK_ZERO else None,  # both seen (pull §1.6)
            "value": str(d.value[index]),  # cents, as a string
            "currency": CURRENCIES[d.currency[index]],
            "winProbability": None if win == 255 else win,
            "winProbabilityMdate": None if win == 255 else iso(updated),
            "status": status,
            "activitycount": str((index * 7) % 13),
            "nextdealid": deal_id,
            "edate": "0000-00-00 00:00:00" if flags & ZERO_EDATE else None,  # /deals example
            "links": {name: links + name for name in DEAL_LINKS},
            "id": deal_id,
            "isDisabled": False,
            "account": None,
            "customerAccount": None,
        }

    def _deal_value(self, row: int, base: str) -> dict[str, Any]:
        table = self.account.deal_values
        field_id, row_id = table.field[row], str(row + 1)
        links = f"{base}/dealCustomFieldData/{row_id}/"
        value: dict[str, Any] = {
            "id": row_id,
            "dealCustomFieldMetumId": field_id,  # ints here, unlike everywhere else (pull §1.7)
            "dealId": table.owner[row],
            "customFieldId": field_id,
            "createdTimestamp": wall(table.created[row]),
            "updatedTimestamp": wall(table.updated[row]),
            "fieldValue": table.value[row],
        }
        if self.account.deal_fields[field_id - 1].type == "currency":
            value["fieldCurrency"] = "usd"
        value["links"] = {
            "deal": links + "deal",
            "dealCustomFieldMetum": links + "dealCustomFieldMetum",
        }
        return value


# ---- JSON of the small tables ------------------------------------------------------------------


def _perstag(f: Field) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in f.title.upper())


def _field(f: Field, base: str) -> dict[str, Any]:
    links = f"{base}/fields/{f.id}/"
    return {
        "title": f.title,
        "descript": None,
        "type": f.type,
        "isrequired": "0",
        "perstag": _perstag(f),
        "defval": None,
        "show_in_list": "0",
        "rows": "2" if f.type == "textarea" else "0",
        "cols": "2" if f.type == "textarea" else "0",
        "visible": "1",
        "service": "",
        "ordernum": str(f.id),
        "cdate": iso(f.created),
        "udate": iso(f.updated),
        "options": [_option_id(f, n) for n in range(1, len(f.options) + 1)],
        "relations": [str(f.id)],
        "links": {"options": links + "options", "relations": links + "relations"},
        "id": str(f.id),
    }


def _option_id(f: Field, n: int) -> str:
    return str(f.id * 100 + n)  # stable and unique without a table


def _field_option(f: Field, n: int, label: str, base: str) -> dict[str, Any]:
    option_id = _option_id(f, n)
    return {
        "orderid": n,
        "value": label,
        "label": label,
        "isdefault": 0,
        "field": str(f.id),
        "cdate": iso(f.created),
        "udate": iso(f.updated),
        "links": {"field": f"{base}/fieldOptions/{option_id}/field"},
        "id": option_id,
    }


def _field_rel(f: Field) -> dict[str, Any]:
    # relid 0: the field belongs to every list, as in the `/fields/{id}` example.
    return {
        "field": str(f.id),
        "relid": "0",
        "dorder": "0",
        "cdate": iso(f.created),
        "links": [],
        "id": str(f.id),
    }


def _deal_field(f: Field, base: str) -> dict[str, Any]:
    return {
        "id": str(f.id),
        "fieldLabel": f.title,
        "fieldType": f.type,
        "fieldOptions": list(f.options) if f.options else None,
        "fieldDefault": None,
        "fieldDefaultCurrency": "usd" if f.type == "currency" else None,
        "isFormVisible": 1,
        "isRequired": 0,
        "displayOrder": f.id,
        "personalization": "",
        "knownFieldId": None,
        "hideFieldFlag": 0,
        "createdTimestamp": wall(f.created),
        "updatedTimestamp": wall(f.updated),
        "links": {"dealCustomFieldData": f"{base}/dealCustomFieldMeta/{f.id}/dealCustomFieldData"},
    }


def _pipeline(p: Pipeline) -> dict[str, Any]:
    links = f"{PREFIX}/dealGroups/{p.id}/"
    return {
        "allgroups": "1",
        "allusers": "0" if p.restricted else "1",
        "autoassign": "1",
        "cdate": iso(p.created),
        "currency": p.currency,
        "id": str(p.id),
        "links": {name: links + name for name in ("dealGroupGroups", "dealGroupUsers", "stages")},
        "stages": [str(s) for s in p.stages],
        "title": p.title,
        "udate": iso(p.updated),
    }


def _stage(s: Stage) -> dict[str, Any]:
    return {
        "cardRegion1": "title",
        "cardRegion2": "next-action",
        "cardRegion3": "show-avatar",
        "cardRegion4": "contact-fullname-orgname",
        "cardRegion5": "value",
        "cdate": None if s.created is None else iso(s.created),
        "color": s.color,
        "dealOrder": "next-action DESC",
        "group": str(s.pipeline),
        "id": str(s.id),
        "links": {"group": f"{PREFIX}/dealStages/{s.id}/group"},
        "order": str(s.order),
        "title": s.title,
        "udate": None if s.updated is None else iso(s.updated),
        "width": "280",
    }


def _user(u: User, base: str) -> dict[str, Any]:
    links = f"{base}/users/{u.id}/"
    names = ("lists", "userGroup", "dealGroupTotals", "dealGroupUsers", "configs")
    return {
        "username": u.username,
        "firstName": u.first_name,
        "lastName": u.last_name,
        "email": u.email,
        "phone": "",
        "signature": None,
        "links": {name: links + name for name in names},
        "id": str(u.id),
    }


# ---- query parameters --------------------------------------------------------------------------


def _int(text: str | None) -> int | None:
    try:
        return None if text is None else int(text)
    except ValueError:
        return None


def _page(q: QueryParams, default: int = 20) -> tuple[int, int]:
    """`limit` (default 20, ≤ 0 or unreadable → default, > 100 → 100) and `offset` (≥ 0)."""
    limit = _int(q.get("limit"))
    limit = default if limit is None or limit <= 0 else min(limit, MAX_LIMIT)
    return limit, max(_int(q.get("offset")) or 0, 0)


def _dates(q: QueryParams) -> DateFilters:
    """The date filters; an unreadable date is ignored like an unknown filter."""

    def when(name: str) -> int | None:
        text = q.get(f"filters[{name}]")
        return None if text is None else parse_when(text)

    return DateFilters(
        when("created_after"), when("created_before"), when("updated_after"), when("updated_before")
    )


def _orders(q: QueryParams, known: frozenset[str]) -> Orders:
    """`orders[field]=ASC|DESC` in query-string order; fields the endpoint lacks are ignored."""
    orders = []
    for key, value in q.multi_items():
        if key.startswith("orders[") and key.endswith("]") and key[7:-1] in known:
            orders.append((key[7:-1], value.strip().upper() == "DESC"))
    return tuple(orders)


def _includes(q: QueryParams) -> set[str]:
    return {name.strip() for name in q.get("include", "").split(",")}


def _page_input(q: QueryParams, limit: int, offset: int) -> dict[str, Any]:
    cache = hashlib.md5(str(sorted(q.multi_items())).encode(), usedforsecurity=False)
    return {
        "segmentid": None,
        "formid": 0,
        "listid": 0,
        "tagid": 0,
        "limit": limit,
        "offset": offset,
        "search": q.get("search"),
        "sort": None,
        "seriesid": 0,
        "waitid": 0,
        "status": -1 if (status := _int(q.get("status"))) is None else status,
        "forceQuery": 0,
        "cacheid": cache.hexdigest(),
    }


def _origin(request: Request) -> str:
    """Absolute base of the `links` that AC writes absolute (contacts, fields, users)."""
    return f"{request.url.scheme}://{request.url.netloc}{PREFIX}"


def _no_result(kind: str, record_id: int) -> Response:
    return JSONResponse({"message": f"No Result found for {kind} with id {record_id}"}, 404)


def create_app(
    api_key: str = DEFAULT_API_KEY,
    *,
    preset: str = "default",
    contacts: int | None = None,
    deals: int | None = None,
    per_second: int | None = 5,
    sideload_field_values: bool = False,
    sideload_deal_custom_fields: bool = False,
    **options: Unpack[SandboxOptions],
) -> SandboxApp:
    """A fresh sandbox app (`app.state.sandbox` is the `ActiveCampaignSandbox`).

    `preset` "default" (2,000 contacts, 1,500 deals) or "seed" (the original account's
    82,000 / 75,000); `contacts`/`deals` override its counts.
    """
    shape = PRESETS[preset]
    if contacts is not None:
        shape = replace(shape, contacts=contacts)
    if deals is not None:
        shape = replace(shape, deals=deals)
    return ActiveCampaignSandbox(
        api_key,
        shape=shape,
        per_second=per_second,
        sideload_field_values=sideload_field_values,
        sideload_deal_custom_fields=sideload_deal_custom_fields,
        **options,
    ).app
