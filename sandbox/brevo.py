"""Brevo (API v3) sandbox: contacts, imports, processes, attributes and lists under `/v3`.

Follows `shared/api/push-providers.md` §2 (cited as "push §2.x"); bodies follow the official
OpenAPI (`shared/specs/brevo-swagger_definition_v3.yml`). Every route wants `api-key: <key>`
(push §2.1). `POST /v3/contacts` creates (201 `{id}`) or, with `updateEnabled`, updates (204)
the contact owning the email, else the SMS, else the ext_id (push §2.2); `PUT
/v3/contacts/{identifier}` updates one (push §2.3); `GET /v3/contacts` pages by limit/offset
(push §2.4). `POST /v3/contacts/import` answers 202 at once and applies the rows later on the
sandbox clock: queued, in_process, then completed `import_seconds` after (push §2.5).
`/v3/contacts/**` shares one bucket of 10 per second AND 36,000 per hour, everything else 100 per
hour, with `x-sib-ratelimit-*` headers and no Retry-After (push §2.7). Errors are `errorModel`
or `contactErrorModel` bodies (push §2.8). Where push §2 is silent, the choice is marked
"assumed" below.
"""

from __future__ import annotations

import bisect
import csv
import io
import json
import math
import re
import secrets
import threading
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Unpack

from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from sandbox.base import Sandbox, SandboxApp, SandboxOptions
from sandbox.limits import RateLimit, Window, json_rejection, sib_ratelimit_headers

DEFAULT_KEY = "xkeysib-sandbox-key"  # push §2.1: keys start `xkeysib-`; tests pass their own
BASE_PATH = "/v3"
CONTACTS_PATH = "/v3/contacts"  # push §2.7: one bucket for everything below it
DEFAULT_LIMIT, MAX_LIMIT = 50, 1000  # push §2.4
LISTS_DEFAULT_LIMIT, LISTS_MAX_LIMIT = 10, 50  # push §2.6; the default 10 is the spec's
MAX_LIST_ITEMS = 150  # spec: `emails`/`ids` of the list add/remove bodies have maxItems 150
# push §2.5 "10 MB"; assumed: decimal megabytes of the whole body, the stricter reading.
MAX_IMPORT_BYTES = 10_000_000
DEFAULT_IMPORT_SECONDS = 2.0  # assumed: how long an import takes, in sandbox seconds
# push §2.6: the default attributes of an English-language account; SMS's category and type
# are assumed (the spec's served `type` enum has no phone type).
DEFAULT_ATTRIBUTES = (("FIRSTNAME", "normal", "text"), ("LASTNAME", "normal", "text"))
SMS_ATTRIBUTE = ("SMS", "normal", "text")
CATEGORIES = frozenset({"normal", "transactional", "category", "calculated", "global"})
# The spec's createAttribute rules, narrowed to the types `getAttributes` can serve; the
# category/calculated/global categories and multiple-choice are not emulated (assumed 400).
ATTRIBUTE_TYPES = {
    "normal": frozenset({"text", "date", "float", "boolean"}),
    "transactional": frozenset({"text", "date", "float", "id"}),
}
IDENTIFIER_TYPES = frozenset(
    {"email_id", "contact_id", "ext_id", "phone_id", "whatsapp_id", "landline_number_id"}
)  # push §2.3
SEED_FOLDER_ID, SEED_FOLDER_NAME = 1, "Your first folder"  # assumed name
SEED_LIST_ID, SEED_LIST_NAME = 2, "Customers"
UNAUTHORIZED = {"code": "unauthorized", "message": "Key not found"}  # assumed text
TOO_MANY = {"code": "too_many_requests", "message": "Too many requests"}  # push §2.7, assumed
CONTACT_NOT_FOUND = "Contact does not exist"  # push §2.3
NO_IDENTIFIER = "Please provide Email or SMS attribute value to create user"  # push §2.8
# Where an identifier lives on a contact: email on the record, the others as attributes.
IDENTIFIER_ATTRIBUTES = {"SMS": "SMS", "EXT_ID": "ext_id"}  # attribute → duplicate name
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")  # assumed: a plain address check
# push §2.6: a country code is required (`+91…`, `0091…`); the rest of the rule is assumed:
# separators are dropped, and 6 to 15 digits must remain, the first not 0 (no code starts with 0).
_PHONE_SEPARATORS = re.compile(r"[\s().-]")
_PHONE_DIGITS = re.compile(r"[1-9][0-9]{5,14}")
_BOOLEAN_TEXT = {"true": True, "false": False, "yes": True, "no": False, "1": True, "0": False}
_ATTRIBUTE_NAME = re.compile(r"[A-Z][A-Z0-9_]*")  # assumed: Brevo's naming rule
IMPORT_OUTCOMES = ("created", "updated", "skipped")  # counted per import process (assumed)

Record = dict[str, Any]


def stamp(ms: int) -> str:
    """A Brevo date-time, `YYYY-MM-DDTHH:mm:ss.SSSZ` in UTC (spec getContactDetails)."""
    moment = datetime.fromtimestamp(ms // 1000, UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{ms % 1000:03d}Z"


class ApiError(Exception):
    """A request Brevo refuses: its status and `errorModel` / `contactErrorModel` body."""

    def __init__(
        self, status: int, code: str, message: str, metadata: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body: dict[str, Any] = {"code": code, "message": message}
        if metadata is not None:
            self.body["metadata"] = metadata


def invalid(message: str, code: str = "invalid_parameter") -> ApiError:
    """A 400 in the `errorModel` voice."""
    return ApiError(400, code, message)


def duplicate(names: list[str], *, creating: bool) -> ApiError:
    """Identifiers that belong to another contact (push §2.2); texts other than email assumed."""
    verb = "create" if creating else "update"
    noun = ", ".join(names)
    message = f"Unable to {verb} contact, {noun} is already associated with another Contact"
    return ApiError(400, "duplicate_parameter", message, {"duplicate_identifiers": names})


def normalise_sms(value: Any) -> str:
    """An SMS number as Brevo stores it, digits without `+` (push §2.6), or a 400."""
    text = ""
    if isinstance(value, str | int) and not isinstance(value, bool):
        text = _PHONE_SEPARATORS.sub("", str(value))
    if text.startswith("+"):
        text = text[1:]
    elif text.startswith("00"):
        text = text[2:]
    if not _PHONE_DIGITS.fullmatch(text):
        raise ApiError(400, "invalid_parameter", "Invalid phone number")  # assumed text
    return text


@dataclass
class Change:
    """What a request does to one contact, checked and normalised before anything is applied.

    `attributes` holds the values to set (SMS and EXT_ID included: they are identifiers),
    `erase` the attribute names to clear, `email` the address to set (None: keep it).
    """

    email: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    erase: set[str] = field(default_factory=set)
    email_blacklisted: bool | None = None
    sms_blacklisted: bool | None = None
    link: list[int] = field(default_factory=list)
    unlink: list[int] = field(default_factory=list)

    def identifiers(self) -> dict[str, str]:
        """The identifiers it sets, named as in `duplicate_identifiers`, in matching order."""
        found = {"email": self.email} if self.email is not None else {}
        for attribute, name in IDENTIFIER_ATTRIBUTES.items():
            if attribute in self.attributes:
                found[name] = self.attributes[attribute]
        return found


@dataclass(frozen=True)
class Call:
    """One request as a handler sees it."""

    query: QueryParams
    raw: bytes
    params: dict[str, str]

    def body(self) -> dict[str, Any]:
        """The JSON body; assumed: an empty body reads as `{}`, a non-object is a 400."""
        if not self.raw:
            return {}
        try:
            body = json.loads(self.raw)
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise invalid("Input must be a valid JSON object")
        return body


@dataclass
class ImportJob:
    """An accepted import waiting for its process to complete."""

    rows: list[Any]
    list_ids: list[int]
    update_existing: bool
    erase_empty: bool
    email_blacklist: bool
    sms_blacklist: bool
    process: Record = field(default_factory=dict)  # given once the import is accepted


Handler = Callable[[Call], tuple[int, Any]]


class BrevoSandbox(Sandbox):
    """One Brevo account.

    `contacts` maps each id to its record (`email`, flags, `createdAt`/`modifiedAt` in epoch
    ms, `listIds` as an ordered set, `attributes`); `by_email` maps each lower-cased email to
    an id. `lists` maps ids to records whose `members` are contact ids kept sorted, so that a
    list reads page by page without a scan; `attributes` maps names to definitions;
    `processes` maps ids to records.
    """

    def __init__(
        self,
        api_key: str = DEFAULT_KEY,
        *,
        per_second: int | None = 10,
        per_hour: int | None = 36_000,
        other_per_hour: int | None = 100,
        import_seconds: float = DEFAULT_IMPORT_SECONDS,
        **options: Unpack[SandboxOptions],
    ) -> None:
        super().__init__(limits=_limits(per_second, per_hour, other_per_hour), **options)
        self.api_key = api_key
        self.import_seconds = import_seconds
        self.contacts: dict[int, Record] = {}
        self.by_email: dict[str, int] = {}
        self.lists: dict[int, Record] = {}
        self.folders: dict[int, Record] = {
            SEED_FOLDER_ID: {"id": SEED_FOLDER_ID, "name": SEED_FOLDER_NAME}
        }
        self.attributes: dict[str, Record] = {}
        self.processes: dict[int, Record] = {}
        # Handlers and test threads (loopback mode) share the records.
        self.lock = threading.RLock()
        self._ids: list[int] = []  # contact ids, ascending: creation order, pages by slicing
        self._indexes: dict[str, dict[str, int]] = {"email": self.by_email, "SMS": {}, "ext_id": {}}
        self._pending: deque[ImportJob] = deque()  # accepted imports, in the order they run
        self._version = 0  # bumped by every contact change: the cached query's key
        self._query: tuple[Any, list[int]] | None = None  # the last filtered GET's matches
        self._next = {"contact": 0, "list": SEED_LIST_ID - 1, "process": 0}
        for name, category, kind in (*DEFAULT_ATTRIBUTES, SMS_ATTRIBUTE):
            self.attributes[name] = {"name": name, "category": category, "type": kind}
        self._add_list(SEED_LIST_NAME, SEED_FOLDER_ID)
        self._endpoints: list[tuple[re.Pattern[str], dict[str, Handler]]] = [
            (re.compile(r"contacts"), {"GET": self.list_contacts, "POST": self.create_contact}),
            (re.compile(r"contacts/import"), {"POST": self.import_contacts}),
            (re.compile(r"contacts/batch"), {"POST": self.update_batch}),
            (re.compile(r"contacts/attributes"), {"GET": self.list_attributes}),
            (
                re.compile(r"contacts/attributes/(?P<category>[^/]+)/(?P<name>[^/]+)"),
                {"POST": self.create_attribute},
            ),
            (re.compile(r"contacts/lists"), {"GET": self.list_lists, "POST": self.create_list}),
            (
                re.compile(r"contacts/lists/(?P<list_id>[^/]+)/contacts/(?P<action>add|remove)"),
                {"POST": self.change_members},
            ),
            (
                re.compile(r"contacts/(?P<identifier>[^/]+)"),
                {"GET": self.get_contact, "PUT": self.update_contact},
            ),
            (re.compile(r"processes/(?P<process_id>[^/]+)"), {"GET": self.get_process}),
        ]

    def routes(self) -> list[BaseRoute]:
        return [Route("/{path:path}", self.serve, methods=["GET", "POST", "PUT", "DELETE"])]

    def authenticate(self, request: Request) -> Response | None:
        key = request.headers.get("api-key", "")
        if secrets.compare_digest(key.encode(), self.api_key.encode()):
            return None
        return JSONResponse(UNAUTHORIZED, status_code=401)

    # ---- helpers for tests ---------------------------------------------------------------------

    def contact(self, email_or_id: str | int) -> dict[str, Any] | None:
        """The contact as `GET /v3/contacts/{identifier}` serves it, or None."""
        with self.lock:
            self._settle()
            if isinstance(email_or_id, int):
                record = self.contacts.get(email_or_id)
            else:
                record = self.contacts.get(self.by_email.get(email_or_id.strip().lower(), -1))
            return None if record is None else self._render(record, statistics=True)

    def add_contact(
        self,
        email: str,
        attributes: dict[str, Any] | None = None,
        list_ids: Iterable[int] = (),
        sms: str | None = None,
    ) -> int:
        """Create a contact that exists only in Brevo (as if added in its UI); returns its id.

        The API's checks apply: `ApiError` for a taken email or SMS or a bad SMS.
        """
        attributes = {**(attributes or {}), **({"SMS": sms} if sms is not None else {})}
        body = {"email": email, "attributes": attributes, "listIds": list(list_ids)}
        with self.lock:
            self._settle()
            _, created = self._upsert(body)
            contact_id: int = created["id"]
            return contact_id

    def list_members(self, list_id: int) -> set[str]:
        """The emails of the contacts in a list."""
        with self.lock:
            self._settle()
            members = (self.contacts[i]["email"] for i in self.lists[list_id]["members"])
            return {email for email in members if email is not None}

    # ---- dispatch ------------------------------------------------------------------------------

    async def serve(self, request: Request) -> Response:
        """Every route: find the endpoint, run it under the lock, answer JSON or nothing."""
        raw = await request.body()
        try:
            handler, params = self._route(request.method, request.scope["path"])
            with self.lock:
                self._settle()
                status, body = handler(Call(request.query_params, raw, params))
        except ApiError as error:
            return JSONResponse(error.body, status_code=error.status)
        if body is None:
            return Response(status_code=status)
        return JSONResponse(body, status_code=status)

    def _route(self, method: str, path: str) -> tuple[Handler, dict[str, str]]:
        relative = path.rstrip("/").removeprefix(BASE_PATH + "/")
        for pattern, handlers in self._endpoints:
            if (match := pattern.fullmatch(relative)) is None:
                continue
            if method not in handlers:  # the spec's example text
                message = f"{method} Method is not allowed on this path"
                raise ApiError(405, "method_not_allowed", message)
            return handlers[method], match.groupdict()
        raise ApiError(404, "document_not_found", "Invalid route")  # assumed text

    # ---- contacts ------------------------------------------------------------------------------

    def create_contact(self, call: Call) -> tuple[int, Any]:
        """`POST /v3/contacts` (createContact, push §2.2): 201 `{id}` or 204 when updated."""
        return self._upsert(call.body())

    def _upsert(self, body: dict[str, Any]) -> tuple[int, Any]:
        change = self._change(body, email=_email(body.get("email")))
        found = change.identifiers()
        if not found:
            raise invalid(NO_IDENTIFIER, "missing_parameter")
        target = None
        if body.get("updateEnabled") is True:  # the first identifier given picks the contact
            name, value = next(iter(found.items()))
            target = self._indexes[name].get(value)
        if clashes := self._clashes(target, change, {}):
            raise duplicate(clashes, creating=target is None)
        if target is not None:
            self._apply(self.contacts[target], change, self._now())
            return 204, None
        return 201, {"id": self._create(change, self._now())["id"]}

    def update_contact(self, call: Call) -> tuple[int, Any]:
        """`PUT /v3/contacts/{identifier}` (updateContact, push §2.3): 204, 404 or 400."""
        record = self._find(call.params["identifier"], call.query.get("identifierType"))
        body = call.body()
        change = self._change(body, email=_new_email(body))
        if clashes := self._clashes(record["id"], change, {}):
            raise duplicate(clashes, creating=False)
        self._apply(record, change, self._now())
        return 204, None

    def get_contact(self, call: Call) -> tuple[int, Any]:
        """`GET /v3/contacts/{identifier}` (push §2.4): the contact and its statistics."""
        record = self._find(call.params["identifier"], call.query.get("identifierType"))
        return 200, self._render(record, statistics=True)

    def list_contacts(self, call: Call) -> tuple[int, Any]:
        """`GET /v3/contacts` (getContacts, push §2.4): one page by creation, `count` of all."""
        query = call.query
        for unsupported in ("segmentId", "filter"):  # assumed: refused, not silently ignored
            if unsupported in query:
                raise invalid(f"{unsupported} is not supported by the sandbox")
        limit = _integer(query, "limit", DEFAULT_LIMIT, MAX_LIMIT)
        offset = _integer(query, "offset", 0)
        descending = _descending(query)
        list_ids = self._list_ids(_query_ids(query))
        modified, created = _since(query, "modifiedSince"), _since(query, "createdSince")
        ids = self._matching(list_ids, modified, created)
        page = _page(ids, offset, limit, descending)
        return 200, {"contacts": [self._render(self.contacts[i]) for i in page], "count": len(ids)}

    def update_batch(self, call: Call) -> tuple[int, Any]:
        """`POST /v3/contacts/batch` (push §2.5): update only, all or nothing.

        Unknown contacts: 404 naming their 0-based indexes, as observed (push §2.5); nothing is
        applied then, nor on any 400 (assumed). Each item is checked against the contacts
        before the batch and the identifiers claimed by the items before it.
        """
        items = call.body().get("contacts")
        if not isinstance(items, list) or not items:
            raise invalid("contacts is missing", "missing_parameter")  # assumed text
        found = [self._batch_target(index, item) for index, item in enumerate(items)]
        missing = [str(index) for index, target in enumerate(found) if target is None]
        if missing:
            message = f"No contact found for indexes {','.join(missing)}"
            raise ApiError(404, "document_not_found", message)
        targets = [target for target in found if target is not None]  # all of them
        claims: dict[tuple[str, str], int] = {}
        changes = []
        for target, item in zip(targets, items, strict=True):
            change = self._change(item, email=_new_email(item))
            if clashes := self._clashes(target, change, claims):
                raise duplicate(clashes, creating=False)
            claims.update(dict.fromkeys(change.identifiers().items(), target))
            changes.append((target, change))
        now = self._now()
        for target, change in changes:
            self._apply(self.contacts[target], change, now)
        return 204, None

    def _batch_target(self, index: int, item: Any) -> int | None:
        """The id of the contact a batch item names by exactly one of email, id or sms."""
        if not isinstance(item, dict):
            raise invalid(f"contacts[{index}] should be an object")  # assumed text
        given = [key for key in ("email", "id", "sms") if item.get(key) is not None]
        if len(given) != 1:  # assumed text
            raise invalid(f"contacts[{index}] needs exactly one of email, id or sms")
        key, value = given[0], item[given[0]]
        if key == "id":
            return value if _is_int(value) and value in self.contacts else None
        if key == "email":
            return self.by_email.get(value.strip().lower()) if isinstance(value, str) else None
        try:
            return self._indexes["SMS"].get(normalise_sms(value))
        except ApiError:  # assumed: a malformed number finds nobody
            return None

    # ---- import and processes ------------------------------------------------------------------

    def import_contacts(self, call: Call) -> tuple[int, Any]:
        """`POST /v3/contacts/import` (requestContactImport, push §2.5): 202 `{processId}`.

        Rows are read now and applied when the process completes (see `_settle`).
        """
        if len(call.raw) > MAX_IMPORT_BYTES:  # assumed text
            raise invalid("Maximum allowed body size is 10MB, please use fileUrl instead")
        body = call.body()
        sources = [key for key in ("fileUrl", "fileBody", "jsonBody") if body.get(key)]
        if len(sources) != 1:  # assumed text
            raise invalid("Exactly one of fileUrl, fileBody or jsonBody is required")
        if sources == ["fileUrl"]:  # assumed: the sandbox fetches nothing
            raise invalid("fileUrl is not supported by the sandbox, send fileBody or jsonBody")
        rows = _csv_rows(body["fileBody"]) if sources == ["fileBody"] else body["jsonBody"]
        if not isinstance(rows, list):
            raise invalid("jsonBody should be an array")  # assumed text
        update_existing = _flag(body, "updateExistingContacts", default=True)
        job = ImportJob(
            rows,
            self._list_ids(body.get("listIds")),
            update_existing=update_existing,
            # spec: emptyContactsAttributes only counts when updating existing contacts
            erase_empty=update_existing and _flag(body, "emptyContactsAttributes"),
            email_blacklist=_flag(body, "emailBlacklist"),
            sms_blacklist=_flag(body, "smsBlacklist"),
        )
        if body.get("newList") is not None:  # last: a refused import creates no list
            job.list_ids.append(self._new_list_for_import(body["newList"]))
        if not job.list_ids:
            raise invalid("listIds or newList is required", "missing_parameter")  # assumed
        job.process = self._new_process("IMPORTUSER", self.import_seconds)
        self.processes[job.process["id"]] = job.process
        self._pending.append(job)
        return 202, {"processId": job.process["id"]}

    def get_process(self, call: Call) -> tuple[int, Any]:
        """`GET /v3/processes/{processId}` (getProcess, push §2.5)."""
        text = call.params["process_id"]
        process = self.processes.get(int(text)) if text.isascii() and text.isdigit() else None
        if process is None:
            raise ApiError(404, "invalid_parameter", "processId is invalid")  # push §2.5
        return 200, {
            "id": process["id"],
            "status": self._status(process),
            "name": process["name"],
            "export_url": None,  # assumed: null until an export exists (imports have none)
        }

    def _new_process(self, name: str, seconds: float = 0.0, *, done: bool = False) -> Record:
        """A process record, not yet registered in `processes` (the caller does that)."""
        self._next["process"] += 1
        now = self.clock.now()
        return {
            "id": self._next["process"],
            "name": name,
            "accepted": now,
            "due": now + seconds,
            "done": done,
        }

    def _status(self, process: Record) -> str:
        """queued for the first half of the process's time, in_process for the second."""
        if process["done"]:
            return "completed"
        halfway = (process["accepted"] + process["due"]) / 2
        return "queued" if self.clock.now() < halfway else "in_process"

    def _settle(self) -> None:
        """Apply the imports whose time has come, in the order they were accepted.

        Called before every request and helper, so an import shows all at once, exactly when
        its process turns completed. Its contacts are stamped with its due time, so what a
        client sees does not depend on when the next request happens to arrive.
        """
        now = self.clock.now()
        while self._pending and self._pending[0].process["due"] <= now:
            job = self._pending.popleft()
            at = _ms(job.process["due"])
            counts = Counter(self._import_row(job, row, at) for row in job.rows)
            # Not served (getProcess has no counts): for tests and benchmarks.
            job.process.update(done=True, **{kind: counts[kind] for kind in IMPORT_OUTCOMES})

    def _import_row(self, job: ImportJob, row: Any, at: int) -> str:
        """Apply one row: "created", "updated" or "skipped" (assumed: a bad email or SMS, or
        an identifier of another contact, skips the row; push §2.5: unknown attributes are
        ignored)."""
        if not isinstance(row, dict):
            return "skipped"
        try:
            email = _email(row.get("email"))
            values, erase = self._attribute_values(row.get("attributes"), job.erase_empty)
        except ApiError:
            return "skipped"
        change = Change(
            email,
            values,
            erase,
            email_blacklisted=True if job.email_blacklist else None,
            sms_blacklisted=True if job.sms_blacklist else None,
            link=job.list_ids,
        )
        found = change.identifiers()
        if not found:
            return "skipped"
        name, value = next(iter(found.items()))
        target = self._indexes[name].get(value)
        if self._clashes(target, change, {}):
            return "skipped"
        if target is None:
            self._create(change, at)
            return "created"
        if not job.update_existing:  # assumed: the contact still joins the import's lists
            change = Change(link=job.list_ids)
        self._apply(self.contacts[target], change, at)
        return "updated"

    # ---- attributes ----------------------------------------------------------------------------

    def list_attributes(self, _call: Call) -> tuple[int, Any]:
        """`GET /v3/contacts/attributes` (getAttributes, push §2.6)."""
        return 200, {"attributes": [dict(a) for a in self.attributes.values()]}

    def create_attribute(self, call: Call) -> tuple[int, Any]:
        """`POST /v3/contacts/attributes/{category}/{name}` `{"type"}` → 201 (push §2.6)."""
        category, name = call.params["category"], call.params["name"].upper()  # assumed upper
        if category not in CATEGORIES:
            raise invalid("attributeCategory is invalid")  # assumed text
        if category not in ATTRIBUTE_TYPES:
            raise invalid(f"{category} attributes are not supported by the sandbox")
        if not _ATTRIBUTE_NAME.fullmatch(name):
            raise invalid("attributeName is invalid")  # assumed text
        kind = call.body().get("type", "text")  # assumed: text when not given
        if kind not in ATTRIBUTE_TYPES[category]:
            raise invalid(f"type {kind} is not valid for {category} attributes")  # assumed
        if name in self.attributes or name in ("EMAIL", "EXT_ID"):
            raise invalid("Attribute name already exists", "duplicate_parameter")  # assumed
        self.attributes[name] = {"name": name, "category": category, "type": kind}
        return 201, None

    def _attribute_values(
        self, raw: Any, erase_empty: bool = True
    ) -> tuple[dict[str, Any], set[str]]:
        """The account's attributes among `raw`, each as its type stores it, and the names to
        erase (empty values). Assumed: names are matched exactly (upper case) and unknown ones
        ignored (push §2.5 for imports; the spec wants them defined); an empty value (`""`,
        null) erases. The spec: values that do not fit the type are ignored."""
        if raw is None:
            return {}, set()
        if not isinstance(raw, dict):
            raise invalid("attributes should be an object")  # assumed text
        values: dict[str, Any] = {}
        erase: set[str] = set()
        for name, value in raw.items():
            definition = self.attributes.get(name)
            if definition is None:
                continue
            if value is None or value == "":
                if erase_empty:
                    erase.add(name)
            elif name == "SMS":
                values[name] = normalise_sms(value)
            elif (coerced := _coerce(value, definition["type"])) is not None:
                values[name] = coerced
        return values, erase

    # ---- lists ---------------------------------------------------------------------------------

    def list_lists(self, call: Call) -> tuple[int, Any]:
        """`GET /v3/contacts/lists` (getLists, push §2.6): limit ≤ 50, offset, sort."""
        query = call.query
        limit = _integer(query, "limit", LISTS_DEFAULT_LIMIT, LISTS_MAX_LIMIT)
        page = _page(sorted(self.lists), _integer(query, "offset", 0), limit, _descending(query))
        return 200, {"lists": [self._render_list(i) for i in page], "count": len(self.lists)}

    def create_list(self, call: Call) -> tuple[int, Any]:
        """`POST /v3/contacts/lists` `{"name", "folderId"}` (both required) → 201 `{id}`."""
        body = call.body()
        name, folder = body.get("name"), body.get("folderId")
        if not isinstance(name, str) or not name or folder is None:
            raise invalid("name and folderId are required", "missing_parameter")  # assumed
        return 201, {"id": self._add_list(name, folder)}

    def change_members(self, call: Call) -> tuple[int, Any]:
        """`POST /v3/contacts/lists/{listId}/contacts/add|remove` (spec addContactToList,
        removeContactFromList) → 201 `{"contacts": {"success", "failure"}}`: failures are the
        unknown contacts and those already in (or out of) the list."""
        text = call.params["list_id"]
        list_id = int(text) if text.isascii() and text.isdigit() else -1
        if list_id not in self.lists:
            raise ApiError(404, "document_not_found", "List ID does not exist")  # assumed text
        body, adding = call.body(), call.params["action"] == "add"
        if not adding and body.get("all") is True:
            return 201, {"contacts": self._empty_list(list_id)}
        given = [key for key in ("emails", "ids") if body.get(key) is not None]
        items = body.get(given[0]) if len(given) == 1 else None
        if not isinstance(items, list) or not items:  # assumed text
            raise invalid("Exactly one of emails or ids is required", "missing_parameter")
        if len(items) > MAX_LIST_ITEMS:  # assumed text
            raise invalid(f"{given[0]} accepts at most {MAX_LIST_ITEMS} items", "out_of_range")
        success, failure = [], []
        move = self._link if adding else self._unlink
        now = self._now()
        for item in items:
            record = self._member(item, by_email=given[0] == "emails")
            if record is not None and move(record, list_id):
                self._touch(record, now)  # assumed: a list change modifies the contact
                success.append(item)
            else:
                failure.append(item)
        return 201, {"contacts": {"success": success, "failure": failure}}

    def _member(self, item: Any, *, by_email: bool) -> Record | None:
        if by_email:
            found = self.by_email.get(item.strip().lower()) if isinstance(item, str) else None
            return None if found is None else self.contacts[found]
        return self.contacts.get(item) if _is_int(item) else None

    def _empty_list(self, list_id: int) -> dict[str, Any]:
        """Remove every member (spec: `all: true`); assumed: done at once, the process it
        answers with is already completed."""
        members, now = self.lists[list_id]["members"], self._now()
        for contact_id in members:
            record = self.contacts[contact_id]
            del record["listIds"][list_id]
            self._touch(record, now)
        total = len(members)
        self.lists[list_id].update(members=[], blacklisted=0)
        process = self._new_process("REMOVE_LIST_CONTACTS", done=True)  # assumed name
        self.processes[process["id"]] = process
        return {"total": total, "processId": process["id"]}

    def _add_list(self, name: str, folder_id: Any) -> int:
        if not _is_int(folder_id) or folder_id not in self.folders:
            raise invalid("Folder ID does not exist")  # assumed text; createList has no 404
        self._next["list"] += 1
        list_id = self._next["list"]
        self.lists[list_id] = {
            "id": list_id,
            "name": name,
            "folderId": folder_id,
            "members": [],
            "blacklisted": 0,
        }
        return list_id

    def _new_list_for_import(self, new_list: Any) -> int:
        """`newList: {listName, folderId}`; assumed: created when the import is accepted, in
        the seed folder when `folderId` is not given."""
        name = new_list.get("listName") if isinstance(new_list, dict) else None
        if not isinstance(name, str) or not name:
            raise invalid("newList.listName is required", "missing_parameter")  # assumed text
        return self._add_list(name, new_list.get("folderId", SEED_FOLDER_ID))

    def _render_list(self, list_id: int) -> dict[str, Any]:
        """A list (getLists item). The spec's example adds up as unique = subscribers +
        blacklisted, so `totalSubscribers` leaves the email-blacklisted out (assumed)."""
        record = self.lists[list_id]
        members, blacklisted = len(record["members"]), record["blacklisted"]
        return {
            "id": list_id,
            "name": record["name"],
            "totalBlacklisted": blacklisted,
            "totalSubscribers": members - blacklisted,
            "uniqueSubscribers": members,
            "folderId": record["folderId"],
        }

    def _list_ids(self, value: Any) -> list[int]:
        """Existing list ids, deduplicated; assumed: an unknown one is a 400 (createContact
        declares no 404)."""
        if value is None:
            return []
        if not isinstance(value, list) or not all(_is_int(v) for v in value):
            raise invalid("listIds should be an array of integers")  # assumed text
        for list_id in value:
            if list_id not in self.lists:
                raise invalid(f"List ID {list_id} does not exist")  # assumed text
        return list(dict.fromkeys(value))

    # ---- contact records -----------------------------------------------------------------------

    def _change(self, body: Any, *, email: str | None) -> Change:
        """The change a createContact / updateContact / batch item body asks for."""
        values, erase = self._attribute_values(body.get("attributes"))
        ext_id = body.get("ext_id")
        if ext_id is not None:
            if not isinstance(ext_id, str) or not ext_id:
                raise invalid("ext_id should be a string")  # assumed text
            values["EXT_ID"] = ext_id  # assumed: served among the attributes as EXT_ID
        return Change(
            email,
            values,
            erase,
            email_blacklisted=_flag(body, "emailBlacklisted", None),
            sms_blacklisted=_flag(body, "smsBlacklisted", None),
            link=self._list_ids(body.get("listIds")),
            unlink=self._list_ids(body.get("unlinkListIds")),
        )

    def _clashes(
        self, target: int | None, change: Change, claims: dict[tuple[str, str], int]
    ) -> list[str]:
        """The identifiers of `change` that belong to a contact other than `target`."""
        names = []
        for name, value in change.identifiers().items():
            owner = claims.get((name, value), self._indexes[name].get(value))
            if owner is not None and owner != target:
                names.append(name)
        return names

    def _find(self, identifier: str, kind: str | None) -> Record:
        """The contact a path names (push §2.3). Without `identifierType`: an address with @
        is an email, digits are an id, anything else an SMS number (assumed)."""
        if kind is None:
            digits = identifier.isascii() and identifier.isdigit()
            kind = "email_id" if "@" in identifier else "contact_id" if digits else "phone_id"
        if kind not in IDENTIFIER_TYPES:
            raise invalid("identifierType is invalid")  # assumed text
        found: int | None = None
        if kind == "contact_id" and identifier.isascii() and identifier.isdigit():
            found = int(identifier)
        elif kind == "email_id":
            found = self.by_email.get(identifier.strip().lower())
        elif kind == "ext_id":
            found = self._indexes["ext_id"].get(identifier)
        elif kind == "phone_id":
            try:
                found = self._indexes["SMS"].get(normalise_sms(identifier))
            except ApiError:
                found = None
        record = self.contacts.get(found) if found is not None else None
        if record is None:  # WhatsApp and landline numbers are not emulated: never found
            raise ApiError(404, "document_not_found", CONTACT_NOT_FOUND)
        return record

    def _create(self, change: Change, at: int) -> Record:
        self._next["contact"] += 1
        record: Record = {
            "id": self._next["contact"],
            "email": None,
            "emailBlacklisted": False,
            "smsBlacklisted": False,
            "createdAt": at,
            "modifiedAt": at,
            "listIds": {},  # an ordered set: list id → None
            "attributes": {},
        }
        self.contacts[record["id"]] = record
        self._ids.append(record["id"])
        self._apply(record, change, at)
        return record

    def _apply(self, record: Record, change: Change, at: int) -> None:
        """Apply a checked change, keeping the identifier indexes and list counts in step."""
        if change.email is not None:
            self._identify(record, "email", change.email)
        for name, value in change.attributes.items():
            if name in IDENTIFIER_ATTRIBUTES:
                self._identify(record, IDENTIFIER_ATTRIBUTES[name], value)
            else:
                record["attributes"][name] = value
        for name in change.erase:
            if name in IDENTIFIER_ATTRIBUTES:
                self._identify(record, IDENTIFIER_ATTRIBUTES[name], None)
            else:
                record["attributes"].pop(name, None)
        if change.email_blacklisted is not None:
            self._blacklist(record, change.email_blacklisted)
        if change.sms_blacklisted is not None:
            record["smsBlacklisted"] = change.sms_blacklisted
        for list_id in change.link:
            self._link(record, list_id)
        for list_id in change.unlink:  # after the links: both given, the unlink wins (assumed)
            self._unlink(record, list_id)
        self._touch(record, at)  # assumed: any applied update stamps, even with equal values

    def _identify(self, record: Record, name: str, value: str | None) -> None:
        """Set (None: clear) an identifier of `record` and its index entry."""
        attribute = next((a for a, n in IDENTIFIER_ATTRIBUTES.items() if n == name), None)
        old = record["email"] if attribute is None else record["attributes"].get(attribute)
        index = self._indexes[name]
        if old is not None and index.get(old) == record["id"]:
            del index[old]
        if value is not None:
            index[value] = record["id"]
        if attribute is None:
            record["email"] = value
        elif value is None:
            record["attributes"].pop(attribute, None)
        else:
            record["attributes"][attribute] = value

    def _blacklist(self, record: Record, flag: bool) -> None:
        if record["emailBlacklisted"] == flag:
            return
        record["emailBlacklisted"] = flag
        for list_id in record["listIds"]:
            self.lists[list_id]["blacklisted"] += 1 if flag else -1

    def _link(self, record: Record, list_id: int) -> bool:
        """Put a contact in a list; False when it was already there."""
        if list_id in record["listIds"]:
            return False
        record["listIds"][list_id] = None
        target = self.lists[list_id]
        bisect.insort(target["members"], record["id"])  # new contacts land at the end: cheap
        target["blacklisted"] += record["emailBlacklisted"]
        return True

    def _unlink(self, record: Record, list_id: int) -> bool:
        """Take a contact out of a list; False when it was not in it."""
        if list_id not in record["listIds"]:
            return False
        del record["listIds"][list_id]
        target = self.lists[list_id]
        members = target["members"]
        del members[bisect.bisect_left(members, record["id"])]
        target["blacklisted"] -= record["emailBlacklisted"]
        return True

    def _touch(self, record: Record, at: int) -> None:
        record["modifiedAt"] = at
        self._version += 1

    def _matching(
        self, list_ids: list[int], modified: int | None, created: int | None
    ) -> Sequence[int]:
        """The ids a `GET /v3/contacts` query matches, ascending.

        Unfiltered and single-list queries read a kept sorted list: a page costs its own size.
        Date filters scan once per change of the contacts and keep the matches, so a client
        paging through them costs O(n) in all, not O(n) per page.
        """
        if modified is None and created is None:
            if not list_ids:
                return self._ids
            if len(list_ids) == 1:
                members: list[int] = self.lists[list_ids[0]]["members"]
                return members
        key = (tuple(list_ids), modified, created, self._version)
        if self._query is not None and self._query[0] == key:
            return self._query[1]
        candidates: Iterable[int] = self._ids
        if list_ids:  # assumed: a contact in any of the lists matches
            candidates = sorted({i for n in list_ids for i in self.lists[n]["members"]})
        matches = [
            i
            for i in candidates
            if (modified is None or self.contacts[i]["modifiedAt"] > modified)
            and (created is None or self.contacts[i]["createdAt"] > created)
        ]
        self._query = (key, matches)
        return matches

    def _render(self, record: Record, *, statistics: bool = False) -> dict[str, Any]:
        """A contact as served (getContactDetails; with `statistics`, getExtendedContactDetails).

        Assumed: a contact without email (SMS or ext_id only) has no `email` key; statistics
        are empty, the sandbox sends no campaigns.
        """
        body: dict[str, Any] = {} if record["email"] is None else {"email": record["email"]}
        body.update(
            id=record["id"],
            emailBlacklisted=record["emailBlacklisted"],
            smsBlacklisted=record["smsBlacklisted"],
            createdAt=stamp(record["createdAt"]),
            modifiedAt=stamp(record["modifiedAt"]),
            listIds=list(record["listIds"]),
            listUnsubscribed=[],
            attributes=dict(record["attributes"]),
        )
        if statistics:
            body["statistics"] = {}
        return body

    def _now(self) -> int:
        return _ms(self.clock.now())


def _limits(
    per_second: int | None, per_hour: int | None, other_per_hour: int | None
) -> list[RateLimit]:
    """push §2.7: `/v3/contacts/**` 10/s AND 36,000/h in one bucket, the rest 100/h; headers
    on both (assumed for the rest), `errorModel` 429 bodies."""
    voice: dict[str, Any] = {"headers": sib_ratelimit_headers, "reject": json_rejection(TOO_MANY)}
    windows = [Window(n, s) for n, s in ((per_second, 1.0), (per_hour, 3600.0)) if n is not None]
    limits = [RateLimit(*windows, paths=(CONTACTS_PATH,), **voice)] if windows else []
    if other_per_hour is not None:
        rest = Window(other_per_hour, 3600.0)
        limits.append(RateLimit(rest, paths=(BASE_PATH,), exclude=(CONTACTS_PATH,), **voice))
    return limits


def _ms(seconds: float) -> int:
    return math.floor(seconds * 1000)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _email(value: Any) -> str | None:
    """A lower-cased address (assumed: matched and served lower-case), None when not given."""
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not _EMAIL.match(value.strip()):
        raise invalid("Invalid email address")  # assumed text
    return value.strip().lower()


def _new_email(body: Any) -> str | None:
    """The address an update moves to: `attributes.EMAIL` (push §2.3)."""
    attributes = body.get("attributes")
    return _email(attributes.get("EMAIL")) if isinstance(attributes, dict) else None


def _flag(body: dict[str, Any], name: str, default: bool | None = False) -> Any:
    """A boolean body field (assumed: anything else is a 400)."""
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise invalid(f"{name} should be a boolean")
    return value


def _coerce(value: Any, kind: str) -> Any:
    """`value` as an attribute of type `kind` stores it, or None when it does not fit.

    Assumed beyond the spec's "ignored": CSV-style text is read for booleans, numbers and
    dates; numbers are accepted as text.
    """
    if isinstance(value, bool):
        return value if kind == "boolean" else None
    if kind == "boolean":
        return _BOOLEAN_TEXT.get(value.strip().lower()) if isinstance(value, str) else None
    if kind == "float":
        return _number(value)
    if kind == "date":
        try:
            return date.fromisoformat(value[:10]).isoformat() if isinstance(value, str) else None
        except ValueError:
            return None
    if isinstance(value, str):
        return value
    return str(value) if isinstance(value, int | float) else None


def _number(value: Any) -> float | None:
    """A finite number, also written as text (a CSV cell); None otherwise."""
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return None
    if isinstance(value, int | float) and math.isfinite(value):
        return value
    return None


def _csv_rows(text: Any) -> list[dict[str, Any]]:
    """`fileBody`: `;`-separated with a header row (push §2.5), as jsonBody-style rows.

    Assumed: headers are matched upper-cased, EMAIL is the address, every other column an
    attribute.
    """
    if not isinstance(text, str):
        raise invalid("fileBody should be a string")  # assumed text
    reader = csv.reader(io.StringIO(text), delimiter=";")
    header = [name.strip().upper() for name in next(reader, [])]
    rows = []
    for cells in reader:
        if not any(cell.strip() for cell in cells):
            continue
        values = dict(zip(header, (cell.strip() for cell in cells), strict=False))
        email = values.pop("EMAIL", None)
        rows.append({"email": email, "attributes": values})
    return rows


def _integer(query: QueryParams, name: str, default: int, maximum: int | None = None) -> int:
    """A non-negative integer query parameter (texts assumed)."""
    text = query.get(name)
    if text is None or text == "":
        return default
    if not (text.isascii() and text.isdigit()):
        raise invalid(f"{name} should be a non-negative integer")
    value = int(text)
    if maximum is not None and value > maximum:
        raise invalid(f"{name} should be between 0 and {maximum}", "out_of_range")
    return value


def _descending(query: QueryParams) -> bool:
    """`sort=asc|desc` by creation; the spec's default is desc."""
    sort = query.get("sort", "desc")
    if sort not in ("asc", "desc"):
        raise invalid("sort should be asc or desc")  # assumed text
    return sort == "desc"


def _query_ids(query: QueryParams) -> list[int] | None:
    """`listIds` as repeated parameters or comma-separated (both read, assumed)."""
    texts = [part for value in query.getlist("listIds") for part in value.split(",") if part]
    if not texts:
        return None
    if not all(t.isascii() and t.isdigit() for t in texts):
        raise invalid("listIds should be integers")  # assumed text
    return [int(t) for t in texts]


def _since(query: QueryParams, name: str) -> int | None:
    """An ISO 8601 date-time filter as epoch ms. Assumed: without an offset it is UTC, and
    "after" is strict (a record stamped at that very ms is left out)."""
    text = query.get(name)
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise invalid(f"{name} should be a date-time (YYYY-MM-DDTHH:mm:ss.SSSZ)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return _ms(moment.timestamp())


def _page(ids: Sequence[int], offset: int, limit: int, descending: bool) -> Sequence[int]:
    """One page of ascending `ids`, read from the end when descending."""
    if not descending:
        return ids[offset : offset + limit]
    end = len(ids) - offset
    return ids[max(end - limit, 0) : max(end, 0)][::-1]


def create_app(
    api_key: str = DEFAULT_KEY,
    *,
    per_second: int | None = 10,
    per_hour: int | None = 36_000,
    other_per_hour: int | None = 100,
    import_seconds: float = DEFAULT_IMPORT_SECONDS,
    **options: Unpack[SandboxOptions],
) -> SandboxApp:
    """A fresh sandbox app (`app.state.sandbox` is the `BrevoSandbox`).

    `per_second` and `per_hour`: the `/v3/contacts/**` windows, `other_per_hour`: the other
    endpoints' (push §2.7; None: off). `import_seconds`: sandbox seconds from an import's 202
    to its completion (0: completed at the next request).
    """
    return BrevoSandbox(
        api_key,
        per_second=per_second,
        per_hour=per_hour,
        other_per_hour=other_per_hour,
        import_seconds=import_seconds,
        **options,
    ).app
