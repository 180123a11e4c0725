"""MailerLite (new API) sandbox: subscribers, fields, groups and batches under `/api`.

Follows `shared/api/push-providers.md` §1 (cited as "push §1.x"). Every route wants
`Authorization: Bearer <api key>`, else 401 `{"message": "Unauthenticated."}` (push §1.1).
`POST /api/subscribers` is a non-destructive upsert by email: 201 created, 200 updated, fields
merged and groups added (push §1.2). `GET /api/subscribers` pages by opaque cursor (push §1.3);
fields and groups page by number (push §1.4, §1.5). `POST /api/batch` runs ≤ 50 inner requests
and counts as ONE request; a batch of upserts only is an import, 5 per minute (push §1.6).
The account allows 120 requests per minute with `X-RateLimit-*` headers and `Retry-After`
on 429 (push §1.8). Errors are Laravel-style `{"message", "errors"}`. Where push §1 is silent,
the choice is marked "assumed" below.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import json
import re
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Unpack
from urllib.parse import parse_qsl, urlsplit

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from sandbox.base import Sandbox, SandboxApp, SandboxOptions
from sandbox.limits import RateLimit, Window, json_rejection, x_ratelimit_headers

DEFAULT_KEY = "mailerlite-sandbox-key"  # for `syncflows sandbox mailerlite`; tests pass their own
BASE_PATH = "/api"
# push §1.2 lists the default keys; their display names are assumed.
DEFAULT_FIELDS = {
    "name": "Name",
    "last_name": "Last name",
    "company": "Company",
    "country": "Country",
    "city": "City",
    "phone": "Phone",
    "state": "State",
    "z_i_p": "ZIP",
}
DEFAULT_GROUPS = ("Customers", "Newsletter", "VIP")  # assumed: any few groups will do
STATUSES = frozenset({"active", "unsubscribed", "unconfirmed", "bounced", "junk"})  # push §1.2
FIELD_TYPES = frozenset({"text", "number", "date"})  # push §1.4
BATCH_METHODS = frozenset({"GET", "POST", "PUT", "DELETE", "PATCH"})  # push §1.6
MAX_BATCH = 50  # push §1.6
DEFAULT_LIMIT, MAX_LIMIT = 25, 100  # push §1.3; the maximum is UNCONFIRMED (a 3p says 100)
INVALID = "The given data was invalid."  # push §1.8
UNAUTHENTICATED = {"message": "Unauthenticated."}  # push §1.1
TOO_MANY = {"message": "Too Many Attempts."}  # push §1.8
IMPORT_LIMITED = {"message": "You're being rate limited on import creation."}  # push §1.6
NOT_FOUND = {"message": "No query results for model [App\\Models\\Subscriber\\Subscriber]."}
CANNOT_IMPORT = "This subscriber is unsubscribed and cannot be imported"  # push §1.2
# Subscriber fields a request may set besides email/fields/groups/status (push §1.2).
PLAIN_ATTRIBUTES = ("subscribed_at", "ip_address", "opted_in_at", "optin_ip", "unsubscribed_at")
# Assumed: a plain address check; Laravel's `email` rule is looser, never stricter.
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_BEARER = re.compile(r"^\s*Bearer\s+(\S+)\s*$", re.IGNORECASE)


def stamp(epoch: float) -> str:
    """MailerLite's timestamp format, `yyyy-MM-dd HH:mm:ss` in UTC (push §1.2)."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S")


def field_key(name: str) -> str:
    """The key of a field called `name`: "My Field" → `my_field`, "ZIP" → `z_i_p` (push §1.4).

    Both documented examples are what Laravel's `Str::snake` gives; the clean-up of other
    characters afterwards is assumed.
    """
    if not (name.isalpha() and name.islower()):  # PHP's `ctype_lower`: letters a-z only
        name = re.sub(r"\s+", "", _ucwords(name))
        name = re.sub(r"(.)(?=[A-Z])", r"\1_", name)
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def _ucwords(text: str) -> str:
    """PHP's `ucwords`: upper-case the first letter of each word, leave the rest as is."""
    return re.sub(r"(^|\s)(\S)", lambda m: m.group(1) + m.group(2).upper(), text)


class ApiError(Exception):
    """A request MailerLite refuses: its status, Laravel-style body and extra headers."""

    def __init__(
        self,
        status: int,
        message: str,
        errors: dict[str, list[str]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.headers = status, headers or {}
        self.body: dict[str, Any] = {"message": message}
        if errors is not None:
            self.body["errors"] = errors


def invalid(key: str, message: str) -> ApiError:
    """A 422 for one attribute (push §1.8)."""
    return ApiError(422, INVALID, {key: [message]})


@dataclass(frozen=True)
class Call:
    """One request to an endpoint, from the app or from inside a batch."""

    method: str
    path: str  # without the leading slash, e.g. "api/subscribers"
    query: dict[str, str]
    body: Any
    base_url: str  # where `links` point, e.g. "http://127.0.0.1:8000"
    params: dict[str, str] = field(default_factory=dict)


Handler = Callable[[Call], tuple[int, Any]]


class MailerLiteSandbox(Sandbox):
    """One MailerLite account; `subscribers` maps each lower-cased email to its record.

    A record holds what was set: `fields` only the values given (the answer fills in null for
    the others) and `groups` as group ids. `fields` maps each field key to its definition and
    `groups` each group id to its record.
    """

    def __init__(
        self,
        api_key: str = DEFAULT_KEY,
        *,
        per_minute: int | None = 120,
        imports_per_minute: int | None = 5,
        per_second: int | None = None,
        **options: Unpack[SandboxOptions],
    ) -> None:
        windows = [Window(per_minute, 60.0)] if per_minute is not None else []
        if per_second is not None:  # not MailerLite's: for `syncflows sandbox --per-second`
            windows.append(Window(per_second, 1.0))
        limits = []
        if windows:
            limits.append(
                RateLimit(
                    *windows,
                    paths=(BASE_PATH,),
                    headers=x_ratelimit_headers,
                    reject=json_rejection(TOO_MANY),
                )
            )
        super().__init__(limits=limits, **options)
        self.api_key = api_key
        # Decided by the batch handler, not the pipeline: only the body tells an import apart.
        self.imports = (
            RateLimit(Window(imports_per_minute, 60.0)) if imports_per_minute is not None else None
        )
        self.subscribers: dict[str, dict[str, Any]] = {}
        self.fields: dict[str, dict[str, Any]] = {}
        self.groups: dict[str, dict[str, Any]] = {}
        # Handlers and test threads (loopback mode) share the records; re-entrant for batches.
        self.lock = threading.RLock()
        self._ids: list[int] = []  # subscriber ids, ascending: the cursor order
        self._emails: dict[str, str] = {}  # subscriber id → lower-cased email
        # group id → status → members: kept as subscribers change, since every subscriber
        # answer shows its groups' counts (counting them per answer made a push O(n²)).
        self._members: dict[str, dict[str, int]] = {}
        # Numeric-string ids of the magnitudes MailerLite serves (push §1.1, §1.4, §1.5).
        self._next = {"subscriber": 165968862226941797, "field": 947147, "group": 4243829086487936}
        for key, name in DEFAULT_FIELDS.items():
            self._add_field(name, "text", key, default=True)
        for name in DEFAULT_GROUPS:
            self.add_group(name)
        self._endpoints: list[tuple[re.Pattern[str], dict[str, Handler]]] = [
            (re.compile(r"api/subscribers"), {"GET": self.list_subscribers, "POST": self.upsert}),
            (re.compile(r"api/subscribers/(?P<id>[^/]+)"), {"GET": self.get_subscriber}),
            (re.compile(r"api/fields"), {"GET": self.list_fields, "POST": self.create_field}),
            (re.compile(r"api/groups"), {"GET": self.list_groups, "POST": self.create_group}),
        ]

    def routes(self) -> list[BaseRoute]:
        methods = sorted(BATCH_METHODS)
        return [Route("/{path:path}", self.serve, methods=methods)]

    def authenticate(self, request: Request) -> Response | None:
        match = _BEARER.match(request.headers.get("Authorization", ""))
        if match is not None and secrets.compare_digest(match.group(1), self.api_key):
            return None
        return JSONResponse(UNAUTHENTICATED, status_code=401)

    # ---- helpers for tests ---------------------------------------------------------------------

    def subscriber(self, email: str) -> dict[str, Any] | None:
        """The subscriber as the API serves it, or None when there is none."""
        with self.lock:
            record = self.subscribers.get(email.strip().lower())
            return None if record is None else self._render(record)

    def unsubscribe(self, email: str) -> None:
        """Mark a subscriber unsubscribed, as if they clicked the link; KeyError if unknown."""
        with self.lock:
            record = self.subscribers[email.strip().lower()]
            now = stamp(self.clock.now())
            self._count(record, -1)
            record.update(status="unsubscribed", unsubscribed_at=now, updated_at=now)
            self._count(record, +1)

    def add_group(self, name: str) -> str:
        """Create a group; returns its id."""
        with self.lock:
            group_id = self._new_id("group")
            self.groups[group_id] = {
                "id": group_id,
                "name": name,
                "created_at": stamp(self.clock.now()),
            }
            return group_id

    # ---- dispatch ------------------------------------------------------------------------------

    async def serve(self, request: Request) -> Response:
        """Every route: parse the request, run the endpoint, answer JSON."""
        raw = await request.body()
        call = Call(
            request.method,
            request.url.path.lstrip("/"),
            dict(request.query_params),
            _json(raw),
            str(request.base_url).rstrip("/"),
        )
        try:
            status, body = self.batch(call) if call.path == "api/batch" else self.call(call)
        except ApiError as error:
            return JSONResponse(error.body, status_code=error.status, headers=error.headers)
        if status == 204:
            return Response(status_code=204)
        return JSONResponse(body, status_code=status)

    def call(self, call: Call) -> tuple[int, Any]:
        """Run one endpoint; raises `ApiError` for what MailerLite refuses."""
        path = call.path.rstrip("/")
        for pattern, handlers in self._endpoints:
            if (match := pattern.fullmatch(path)) is None:
                continue
            handler = handlers.get(call.method)
            if handler is None:  # Laravel's MethodNotAllowedHttpException text (assumed)
                allowed = ", ".join(handlers)
                message = f"The {call.method} method is not supported for route {path}."
                raise ApiError(405, f"{message} Supported methods: {allowed}.")
            inner = Call(call.method, path, call.query, call.body, call.base_url, match.groupdict())
            with self.lock:
                return handler(inner)
        raise ApiError(404, f"The route {path} could not be found.")  # push §1.6

    # ---- subscribers ---------------------------------------------------------------------------

    def upsert(self, call: Call) -> tuple[int, Any]:
        """`POST /api/subscribers`: create (201) or merge into the existing one (200), push §1.2."""
        body = call.body if isinstance(call.body, dict) else {}
        email = body.get("email")
        if email is None or email == "":
            raise invalid("email", "The email field is required.")
        if not isinstance(email, str) or not _EMAIL.match(email.strip()):
            raise invalid("email", "The email must be a valid email address.")
        fields = body.get("fields", {})
        if fields is None:
            fields = {}
        if not isinstance(fields, dict):
            raise invalid("fields", "The fields must be an array.")
        for key in fields:
            if key not in self.fields:  # push §1.9: field keys are validated (message assumed)
                raise invalid(f"fields.{key}", f"The field {key} does not exist.")
        groups = body.get("groups", [])
        if groups is None:
            groups = []
        if not isinstance(groups, list):
            raise invalid("groups", "The groups must be an array.")
        for index, group_id in enumerate(groups):
            if str(group_id) not in self.groups:  # Laravel's `exists` message (assumed)
                raise invalid(f"groups.{index}", f"The selected groups.{index} is invalid.")
        status = body.get("status")
        if status is not None and status not in STATUSES:
            raise invalid("status", "The selected status is invalid.")
        key = email.strip().lower()
        record = self.subscribers.get(key)
        now = stamp(self.clock.now())
        # push §1.2: an unsubscribed address cannot be re-activated (the 422 is assumed).
        reactivating = status is not None and status != "unsubscribed"
        if record is not None and record["status"] == "unsubscribed" and reactivating:
            raise invalid("status", CANNOT_IMPORT)
        created = record is None
        if record is None:
            record = self._new_subscriber(key, now)
        self._count(record, -1)  # and back in below, with its new status and groups
        for name in PLAIN_ATTRIBUTES:
            if name in body:
                record[name] = body[name]
        if status is not None and status != record["status"]:
            record["status"] = status
            if status == "unsubscribed":
                record["unsubscribed_at"] = now
        record["fields"].update(fields)  # non-destructive: keys not sent keep their values
        record["groups"].extend(g for g in map(str, groups) if g not in record["groups"])
        record["updated_at"] = now
        self._count(record, +1)
        return (201 if created else 200), {"data": self._render(record)}

    def list_subscribers(self, call: Call) -> tuple[int, Any]:
        """`GET /api/subscribers`: one cursor page, ascending by id (order assumed), push §1.3."""
        limit = _limit(call.query)
        wanted = call.query.get("filter[status]")
        start = 0
        if cursor := call.query.get("cursor"):
            start = bisect.bisect_right(self._ids, _decode_cursor(cursor))
        page: list[dict[str, Any]] = []
        more = False
        for subscriber_id in self._ids[start:]:
            record = self.subscribers[self._emails[str(subscriber_id)]]
            if wanted is not None and record["status"] != wanted:
                continue
            if len(page) == limit:
                more = True
                break
            page.append(record)
        next_cursor = _encode_cursor(int(page[-1]["id"])) if more else None
        prev_cursor = None  # assumed: paging back is not modelled
        path = f"{call.base_url}/api/subscribers"
        return 200, {
            "data": [self._render(record) for record in page],
            "links": {
                "first": None,
                "last": None,
                "prev": None,
                "next": f"{path}?cursor={next_cursor}" if next_cursor else None,
            },
            "meta": {
                "path": path,
                "per_page": limit,
                "next_cursor": next_cursor,
                "prev_cursor": prev_cursor,
            },
        }

    def get_subscriber(self, call: Call) -> tuple[int, Any]:
        """`GET /api/subscribers/{id|email}` (push §1.2)."""
        wanted = call.params["id"]
        key = self._emails.get(wanted, wanted.strip().lower())
        record = self.subscribers.get(key)
        if record is None:
            raise ApiError(404, NOT_FOUND["message"])
        return 200, {"data": self._render(record)}

    def _new_subscriber(self, key: str, now: str) -> dict[str, Any]:
        subscriber_id = self._new_id("subscriber")
        record: dict[str, Any] = {
            "id": subscriber_id,
            "email": key,  # assumed: served lower-cased, as the address is matched
            "status": "active",  # push §1.2: omitted on create → active
            "source": "api",
            "ip_address": None,
            "subscribed_at": now,
            "unsubscribed_at": None,
            "created_at": now,
            "updated_at": now,
            "opted_in_at": None,
            "optin_ip": None,
            "fields": {},
            "groups": [],
        }
        self.subscribers[key] = record
        self._ids.append(int(subscriber_id))
        self._emails[subscriber_id] = key
        return record

    def _render(self, record: dict[str, Any]) -> dict[str, Any]:
        """A subscriber as served (push §1.2): every field key present, groups as objects."""
        return {
            "id": record["id"],
            "email": record["email"],
            "status": record["status"],
            "source": record["source"],
            "sent": 0,
            "opens_count": 0,
            "clicks_count": 0,
            "open_rate": 0,
            "click_rate": 0,
            "ip_address": record["ip_address"],
            "subscribed_at": record["subscribed_at"],
            "unsubscribed_at": record["unsubscribed_at"],
            "created_at": record["created_at"],
            "updated_at": record["updated_at"],
            "fields": {key: record["fields"].get(key) for key in self.fields},
            # Assumed: group objects as `GET /api/groups` serves them.
            "groups": [self._render_group(self.groups[g]) for g in record["groups"]],
            "opted_in_at": record["opted_in_at"],
            "optin_ip": record["optin_ip"],
        }

    # ---- fields and groups ---------------------------------------------------------------------

    def list_fields(self, call: Call) -> tuple[int, Any]:
        """`GET /api/fields?limit=&page=&sort=` (push §1.4), page-based."""
        items = [{**f, "used_in_automations": False} for f in self.fields.values()]
        items = _sorted(items, call.query.get("sort"), {"name"})
        return 200, _paginate(items, call)

    def create_field(self, call: Call) -> tuple[int, Any]:
        """`POST /api/fields` `{"name", "type"}` → 201; the key is the slug of the name."""
        body = call.body if isinstance(call.body, dict) else {}
        name, kind = _check_name(body.get("name")), body.get("type")
        if kind is None or kind == "":
            raise invalid("type", "The type field is required.")
        if kind not in FIELD_TYPES:
            raise invalid("type", "The selected type is invalid.")
        key = field_key(name)
        taken = {f["name"].lower() for f in self.fields.values()}
        if name.lower() in taken or key in self.fields or not key:  # assumed: unique by key too
            raise invalid("name", "The name has already been taken.")
        return 201, {"data": self._add_field(name, kind, key)}

    def list_groups(self, call: Call) -> tuple[int, Any]:
        """`GET /api/groups?limit=&page=&filter[name]=&sort=` (push §1.5), page-based."""
        items = [self._render_group(group) for group in self.groups.values()]
        if part := call.query.get("filter[name]"):
            items = [g for g in items if part.lower() in g["name"].lower()]
        sortable = {"name", "total", "open_rate", "click_rate", "created_at"}
        return 200, _paginate(_sorted(items, call.query.get("sort"), sortable), call)

    def create_group(self, call: Call) -> tuple[int, Any]:
        """`POST /api/groups` `{"name"}` → 201 (push §1.5)."""
        body = call.body if isinstance(call.body, dict) else {}
        name = _check_name(body.get("name"))
        return 201, {"data": self._render_group(self.groups[self.add_group(name)])}

    def _add_field(
        self, name: str, kind: str, key: str, *, default: bool = False
    ) -> dict[str, Any]:
        definition = {
            "id": self._new_id("field"),
            "name": name,
            "key": key,
            "type": kind,
            "is_default": default,
        }
        self.fields[key] = definition
        return dict(definition)

    def _count(self, record: dict[str, Any], step: int) -> None:
        """Take a subscriber out of (-1) or into (+1) its groups' live counts by status."""
        for group_id in record["groups"]:
            counts = self._members.setdefault(group_id, {})
            counts[record["status"]] = counts.get(record["status"], 0) + step

    def _render_group(self, group: dict[str, Any]) -> dict[str, Any]:
        """A group with its counts (push §1.5); subscriber counts are live, the rest zero."""
        members = self._members.get(group["id"], {})

        def count(status: str) -> int:
            return members.get(status, 0)

        zero_rate = {"float": 0, "string": "0%"}
        return {
            "id": group["id"],
            "name": group["name"],
            "active_count": count("active"),
            "sent_count": 0,
            "opens_count": 0,
            "open_rate": zero_rate,
            "clicks_count": 0,
            "click_rate": zero_rate,
            "unsubscribed_count": count("unsubscribed"),
            "unconfirmed_count": count("unconfirmed"),
            "bounced_count": count("bounced"),
            "junk_count": count("junk"),
            "created_at": group["created_at"],
        }

    def _new_id(self, kind: str) -> str:
        self._next[kind] += 1
        return str(self._next[kind])

    # ---- batch ---------------------------------------------------------------------------------

    def batch(self, call: Call) -> tuple[int, Any]:
        """`POST /api/batch` (push §1.6): inner requests in order, each with its own code."""
        if call.method != "POST":
            message = f"The {call.method} method is not supported for route api/batch."
            raise ApiError(405, f"{message} Supported methods: POST.")
        body = call.body if isinstance(call.body, dict) else {}
        requests = _check_batch(body.get("requests"))
        if self.imports is not None and all(_is_upsert(r) for r in requests):
            self._count_import(self.imports)
        responses = [self._inner(request, call.base_url) for request in requests]
        successful = sum(1 for r in responses if 200 <= r["code"] < 300)
        return 200, {
            "total": len(responses),
            "successful": successful,
            "failed": len(responses) - successful,
            "responses": responses,
        }

    def _count_import(self, imports: RateLimit) -> None:
        """Admit one import or refuse the whole batch with the import 429 (push §1.6)."""
        with self.lock:
            now = self.clock.now()
            if imports.wait(now) > 0:
                quota = imports.quota(now, self.clock.scale, rejected=True)
                wait = quota.text(quota.retry_after or 0.0)
                # Assumed: `Retry-After` as on the account's 429 (push §1.8).
                raise ApiError(429, IMPORT_LIMITED["message"], headers={"Retry-After": wait})
            imports.admit(now)

    def _inner(self, request: dict[str, Any], base_url: str) -> dict[str, Any]:
        parts = urlsplit(request["path"])
        inner = Call(
            request["method"].upper(),
            parts.path,
            dict(parse_qsl(parts.query)),
            request.get("body"),
            base_url,
        )
        try:
            if inner.path.rstrip("/") == "api/batch":  # assumed: no batch inside a batch
                raise ApiError(404, "The route api/batch could not be found.")
            code, answer = self.call(inner)
        except ApiError as error:
            code, answer = error.status, error.body
        return {"code": code, "body": answer}


def _json(raw: bytes) -> Any:
    """The request body; assumed: what is not JSON reads as no input (Laravel's behaviour)."""
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return None


def _limit(query: dict[str, str], default: int = DEFAULT_LIMIT) -> int:
    text = query.get("limit")
    if text is None or text == "":
        return default
    if not text.isdigit():
        raise invalid("limit", "The limit must be an integer.")
    limit = int(text)
    if limit < 1:
        raise invalid("limit", "The limit must be at least 1.")
    if limit > MAX_LIMIT:
        raise invalid("limit", f"The limit must not be greater than {MAX_LIMIT}.")
    return limit


def _encode_cursor(subscriber_id: int) -> str:
    """Laravel's cursor: base64 JSON `{"id": …, "_pointsToNextItems": true}` (push §1.3)."""
    raw = json.dumps({"id": subscriber_id, "_pointsToNextItems": True}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> int:
    """The id after which the page starts; assumed: a bad cursor is a 422, not page one."""
    try:
        decoded = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if decoded.get("_pointsToNextItems") is not True:
            raise ValueError("only forward cursors are served")
        return int(decoded["id"])
    except (ValueError, TypeError, KeyError, AttributeError, binascii.Error):
        raise invalid("cursor", "The cursor is invalid.") from None


def _sorted(items: list[dict[str, Any]], sort: str | None, allowed: set[str]) -> list[Any]:
    """`sort=name` / `sort=-name` (push §1.4, §1.5); by id when not given."""
    if not sort:
        return items
    key = sort.removeprefix("-")
    if key not in allowed:
        raise invalid("sort", "The selected sort is invalid.")
    column = "active_count" if key == "total" else key

    def value(item: dict[str, Any]) -> Any:
        found = item.get(column, 0)
        return found["float"] if isinstance(found, dict) else found

    return sorted(items, key=value, reverse=sort.startswith("-"))


def _paginate(items: list[Any], call: Call) -> dict[str, Any]:
    """A Laravel length-aware page (push §1.3: fields and groups page by number)."""
    limit = _limit(call.query)
    text = call.query.get("page", "1")
    page = int(text) if text.isdigit() and int(text) > 0 else 1
    last = max(1, -(-len(items) // limit))
    chunk = items[(page - 1) * limit : page * limit]
    path = f"{call.base_url}/{call.path}"

    def url(number: int) -> str | None:
        return f"{path}?page={number}" if 1 <= number <= last else None

    frm = (page - 1) * limit + 1 if chunk else None
    links = [{"url": url(page - 1), "label": "&laquo; Previous", "active": False}]
    links += [{"url": url(n), "label": str(n), "active": n == page} for n in range(1, last + 1)]
    links.append({"url": url(page + 1), "label": "Next &raquo;", "active": False})
    return {
        "data": chunk,
        "links": {"first": url(1), "last": url(last), "prev": url(page - 1), "next": url(page + 1)},
        "meta": {
            "current_page": page,
            "from": frm,
            "last_page": last,
            "links": links,
            "path": path,
            "per_page": limit,
            "to": frm + len(chunk) - 1 if frm is not None else None,
            "total": len(items),
        },
    }


def _check_name(name: Any) -> str:
    if name is None or name == "":
        raise invalid("name", "The name field is required.")
    if not isinstance(name, str):
        raise invalid("name", "The name must be a string.")
    if len(name) > 255:  # push §1.4
        raise invalid("name", "The name must not be greater than 255 characters.")
    return name


def _check_batch(requests: Any) -> list[dict[str, Any]]:
    """The batch envelope, or a 422 with indexed keys (push §1.6; messages assumed)."""
    if not requests:
        raise invalid("requests", "The requests field is required.")
    if not isinstance(requests, list):
        raise invalid("requests", "The requests must be an array.")
    if len(requests) > MAX_BATCH:
        raise invalid("requests", f"The requests must not have more than {MAX_BATCH} items.")
    errors: dict[str, list[str]] = {}
    for index, request in enumerate(requests):
        key = f"requests.{index}"
        if not isinstance(request, dict):
            errors[key] = [f"The {key} must be an array."]
            continue
        method, path = request.get("method"), request.get("path")
        if not method:
            errors[f"{key}.method"] = [f"The {key}.method field is required."]
        elif not isinstance(method, str) or method.upper() not in BATCH_METHODS:
            errors[f"{key}.method"] = [f"The selected {key}.method is invalid."]
        if not path:
            errors[f"{key}.path"] = [f"The {key}.path field is required."]
        elif not isinstance(path, str) or not path.startswith("api/"):
            errors[f"{key}.path"] = [f"The {key}.path must start with one of the following: api/."]
        if request.get("body") is not None and not isinstance(request["body"], dict):
            errors[f"{key}.body"] = [f"The {key}.body must be an array."]
    if errors:
        raise ApiError(422, INVALID, errors)
    return requests


def _is_upsert(request: dict[str, Any]) -> bool:
    """Whether an inner request is `POST api/subscribers`: a batch of only these is an import."""
    path = urlsplit(str(request["path"])).path.rstrip("/")
    return str(request["method"]).upper() == "POST" and path == "api/subscribers"


def create_app(
    api_key: str = DEFAULT_KEY,
    *,
    per_minute: int | None = 120,
    imports_per_minute: int | None = 5,
    per_second: int | None = None,
    **options: Unpack[SandboxOptions],
) -> SandboxApp:
    """A fresh sandbox app (`app.state.sandbox` is the `MailerLiteSandbox`).

    `per_minute`: the account limit (push §1.8; None: off); `imports_per_minute`: batches of
    upserts only (push §1.6; None: off); `per_second`: an extra window for the CLI's
    `--per-second`, not MailerLite's.
    """
    return MailerLiteSandbox(
        api_key,
        per_minute=per_minute,
        imports_per_minute=imports_per_minute,
        per_second=per_second,
        **options,
    ).app
