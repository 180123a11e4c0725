"""Magento 2 / Adobe Commerce REST sandbox: orders, store views, websites, admin tokens.

Follows `shared/api/pull-providers.md` §2 (cited as "pull §2.x") and the official OpenAPI
(`shared/specs/magento2-admin-rest-schema-2.4.9.yaml`). Routes answer under `/rest/V1/…` and
`/rest/<store_code>/V1/…`; the store code does not scope orders (pull §2.1), and a segment that
is no store code is part of the path, so Magento finds no route (404). Every route but
the token one wants `Authorization: Bearer <token>`: the integration token or an admin token
from `POST /V1/integration/admin/token`, valid 4 h on the sandbox clock (pull §2.2); anything
else is 401 "The consumer isn't authorized to access %resources.".

`GET /V1/orders` reads the bracketed `searchCriteria[...]` grammar, snake or camel case (pull
§2.3), and answers `{items, search_criteria, total_count}` (pull §2.4), trimmed by `fields=`.
Switches: `version` "2.4" (past the last page: no items) or "2.3" (the last page again, pull
§2.5); `input_limits` (pageSize ≤ 300, default 20; off: no cap, all matches, pull §2.6);
`two_factor` (the token route refuses, as with Magento_TwoFactorAuth). No rate limit unless
`per_second` is given (pull §2.7). Tests add and change orders with the mutation methods,
re-enact the watermark race of pull §2.11 with `add_orders(visible=False)` + `reveal`, run code
as requests arrive (`on_request`) and read what a consumer should have seen (`iter_orders`).
"""

from __future__ import annotations

import json
import math
import random
import re
import secrets
import threading
from collections.abc import Awaitable, Callable, Collection, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Unpack

from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from sandbox.base import Sandbox, SandboxApp, SandboxOptions
from sandbox.limits import RateLimit, Window, json_rejection, no_headers
from sandbox.magento_data import (
    COLUMNS,
    STORE_VIEWS,
    TIME,
    WEBSITES,
    Filter,
    Group,
    Shop,
    Sort,
    UnknownField,
    day_start,
    generate,
    stamp,
)

DEFAULT_TOKEN = "sandbox0integration0token0mage2x"  # 32 characters, like Magento's
DEFAULT_ADMIN_USERS = {"admin": "sandbox-admin-123"}
PRESETS = {"default": 2_000, "large": 100_000}  # orders; "large" is the benchmark's shop
Version = Literal["2.3", "2.4"]
ADMIN_TOKEN_SECONDS = 4 * 3600  # pull §2.2
MAX_PAGE_SIZE, DEFAULT_PAGE_SIZE = 300, 20  # with input limits on (pull §2.6)
ORDERS_ACL = "Magento_Sales::actions_view"  # Magento/Sales/etc/webapi.xml (pull §2.2)
STORE_ACL = "Magento_Backend::store"  # Magento/Store/etc/webapi.xml
STORE_CODES = frozenset({view.code for view in STORE_VIEWS} | {"all"})
NO_ROUTE = {"message": "Request does not match any route."}  # pull §2.10
SIGN_IN_FAILED = (
    "The account sign-in was incorrect or your account is disabled temporarily. "
    "Please wait and try again later."
)
TWO_FACTOR = "Please use the 2fa provider-specific endpoints to obtain a token."  # pull §2.2
TOO_MANY = {"message": "Too Many Requests", "trace": None}  # pull §2.7
# `/rest/<code>/V1/<route>`; a path segment that is no store code stays part of the path, so
# an unknown store answers "no route" (Magento\Webapi\Controller\PathProcessor::process).
_PATH = re.compile(r"^/rest(?:/(?P<store>[^/]+))?/V1/(?P<route>.+)$")
_CRITERIA_KEY = re.compile(r"^searchCriteria((?:\[[^\[\]]*\])+)$")
_BRACKETS = re.compile(r"\[([^\[\]]*)\]")
_BEARER = re.compile(r"^\s*Bearer\s+(\S+)\s*$", re.IGNORECASE)
Hook = Callable[[Request], None]
Handler = Callable[[Request], Awaitable[Response]]


class ApiError(Exception):
    """A request Magento refuses: its status and `error-response` body."""

    def __init__(self, status: int, message: str, parameters: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.body: dict[str, Any] = {"message": message}
        if parameters is not None:
            self.body["parameters"] = parameters

    def response(self) -> Response:
        """The JSON answer."""
        return JSONResponse(self.body, status_code=self.status)


@dataclass(frozen=True)
class Endpoint:
    """A modelled route: its handler and the ACL resource a token needs (None: public)."""

    handler: Handler
    resource: str | None


@dataclass(frozen=True)
class Criteria:
    """A parsed `searchCriteria`: what to search and what to echo back."""

    groups: tuple[Group, ...] = ()
    sorts: tuple[Sort, ...] = ()
    sort_echo: tuple[tuple[str, str | None], ...] = ()  # direction as given (None: none)
    page_size: int | None = None
    current_page: int | None = None

    def echo(self) -> dict[str, Any]:
        """`search_criteria` of the answer: the request read back, values as strings.

        Required-but-missing fields come back null, optional ones are left out (Magento's
        serializer); a sort order without a direction therefore echoes `"direction": null`.
        """
        groups = []
        for group in self.groups:
            filters = []
            for f in group:
                echoed: dict[str, Any] = {"field": f.field, "value": f.value}
                if f.condition is not None:
                    echoed["condition_type"] = f.condition
                filters.append(echoed)
            groups.append({"filters": filters})
        echo: dict[str, Any] = {"filter_groups": groups}
        if self.sort_echo:
            echo["sort_orders"] = [{"field": f, "direction": d} for f, d in self.sort_echo]
        if self.page_size is not None:
            echo["page_size"] = self.page_size
        if self.current_page is not None:
            echo["current_page"] = self.current_page
        return echo


class MagentoSandbox(Sandbox):
    """One generated shop behind the Magento 2 admin REST API; `shop` holds its orders."""

    def __init__(
        self,
        api_key: str = DEFAULT_TOKEN,
        *,
        orders: int = PRESETS["default"],
        version: Version = "2.4",
        input_limits: bool = True,
        admin_users: dict[str, str] | None = None,
        two_factor: bool = False,
        per_second: int | None = None,
        now: datetime | None = None,
        **options: Unpack[SandboxOptions],
    ) -> None:
        if version not in ("2.3", "2.4"):
            raise ValueError(f"version must be '2.3' or '2.4', not {version!r}")
        limits = []
        if per_second is not None:  # not Magento's (pull §2.7): a CDN or WAF in front of it
            limits.append(
                RateLimit(
                    Window(per_second, 1.0),
                    paths=("/rest",),
                    headers=no_headers,
                    reject=json_rejection(TOO_MANY),
                )
            )
        super().__init__(limits=limits, **options)
        if now is not None:
            self.clock.set(now)
        self.api_key = api_key
        self.version: Version = version
        self.input_limits = input_limits
        self.admin_users = dict(DEFAULT_ADMIN_USERS if admin_users is None else admin_users)
        self.two_factor = two_factor
        self.shop: Shop = generate(orders, self.seed, day_start(self.clock.now()))
        self.tokens: dict[str, float] = {}  # admin token → expiry, sandbox epoch seconds
        self.hooks: list[Hook] = []
        # Handlers read and tests write from different threads in loopback mode; re-entrant
        # so a hook may call the mutation methods.
        self.lock = threading.RLock()
        self._additions = random.Random(f"{self.seed}:additions")
        self._endpoints = {
            ("GET", "orders"): Endpoint(self.list_orders, ORDERS_ACL),
            ("GET", "store/storeViews"): Endpoint(self.list_store_views, STORE_ACL),
            ("GET", "store/websites"): Endpoint(self.list_websites, STORE_ACL),
            ("POST", "integration/admin/token"): Endpoint(self.admin_token, None),
        }

    def routes(self) -> list[BaseRoute]:
        methods = ["GET", "POST", "PUT", "PATCH", "DELETE"]
        return [Route("/{path:path}", self.dispatch, methods=methods)]

    def endpoint(self, method: str, path: str) -> Endpoint | None:
        """The modelled route `method path` reaches; None where Magento has no route."""
        match = _PATH.match(path)
        if match is None:
            return None
        store = match.group("store")
        if store is not None and store not in STORE_CODES:
            return None
        return self._endpoints.get((method, match.group("route")))

    def authenticate(self, request: Request) -> Response | None:
        endpoint = self.endpoint(request.method, request.url.path)
        if endpoint is None or endpoint.resource is None:
            return None  # Magento matches the route first: no route is a 404, not a 401
        match = _BEARER.match(request.headers.get("Authorization", ""))
        if match is not None and self._valid(match.group(1)):
            return None
        # An unknown or expired token is a guest, and guests fail the ACL check (pull §2.10).
        message = "The consumer isn't authorized to access %resources."
        return ApiError(401, message, {"resources": endpoint.resource}).response()

    def _valid(self, token: str) -> bool:
        if secrets.compare_digest(token, self.api_key):
            return True
        expires = self.tokens.get(token)
        return expires is not None and expires > self.clock.now()

    # ---- hooks and mutations for tests -----------------------------------------------------

    def on_request(self, hook: Hook) -> Hook:
        """Call `hook(request)` as each authenticated request reaches its endpoint, before the
        answer is built: the place to add or reveal orders "during a run"."""
        self.hooks.append(hook)
        return hook

    def add_orders(
        self,
        count: int = 1,
        *,
        created_at: datetime | None = None,
        email: str | None = None,
        visible: bool = True,
        **fields: Any,
    ) -> list[int]:
        """Place `count` new orders (new ascending entity ids), stamped `created_at` or now.

        `email`: the buyer's address exactly as given (else a new generated buyer each);
        `fields`: top-level order fields to set, e.g. `status="canceled"`,
        `customer_is_guest=1`, `store_id=3`, `customer_email=None` (no email), or a dict
        merged into a nested object (`billing_address={"city": "Gent"}`). With
        `visible=False` the ids are taken but no query sees the orders until `reveal`: a
        checkout whose transaction commits after later ids were read (pull §2.11).
        """
        with self.lock:
            when = math.floor(self.clock.now() if created_at is None else created_at.timestamp())
            indices = self.shop.place(count, when, email=email, rnd=self._additions)
            for index in indices:
                if fields:
                    self.shop.set_fields(index, fields)
                if not visible:
                    self.shop.hide(index)
            self.shop.version += 1
            return [self.shop.ids[i] for i in indices]

    def reveal(self, entity_ids: Iterable[int]) -> None:
        """Let queries see orders added with `visible=False`."""
        with self.lock:
            for entity_id in entity_ids:
                self.shop.reveal(self.shop.index(entity_id))
            self.shop.version += 1

    def update_order(self, entity_id: int, *, at: datetime | None = None, **fields: Any) -> None:
        """Change an order's fields (as `add_orders` takes them); `updated_at` becomes `at` or
        now unless `fields` set it."""
        with self.lock:
            index = self.shop.index(entity_id)
            when = math.floor(self.clock.now() if at is None else at.timestamp())
            self.shop.set_fields(index, {"updated_at": stamp(when), **fields})
            self.shop.version += 1

    def order(self, entity_id: int) -> dict[str, Any]:
        """The full order as served (also a hidden one); KeyError when there is none."""
        with self.lock:
            return self.shop.order(self.shop.index(entity_id))

    def iter_orders(self, fields: Collection[str] | None = None) -> Iterator[dict[str, Any]]:
        """The visible orders by entity id: what a consumer of the API should have seen.

        With `fields`, only those top-level fields, from the columns where possible: much
        faster than whole orders over a large shop. Read it between runs, not during one.
        """
        shop = self.shop
        for index in shop.iter_visible():
            if fields is None:
                yield shop.order(index)
            else:
                yield {name: _served(shop, index, name) for name in fields}

    @property
    def store_views(self) -> list[dict[str, Any]]:
        """`GET /V1/store/storeViews`: every store view, the admin one (id 0) included."""
        return [view.json() for view in STORE_VIEWS]

    @property
    def websites(self) -> list[dict[str, Any]]:
        """`GET /V1/store/websites`: every website, the admin one (id 0) included."""
        return [website.json() for website in WEBSITES]

    # ---- endpoints -------------------------------------------------------------------------

    async def dispatch(self, request: Request) -> Response:
        """Route by method and path after the store code; Magento's 404 otherwise."""
        endpoint = self.endpoint(request.method, request.url.path)
        if endpoint is None:
            return JSONResponse(NO_ROUTE, status_code=404)
        return await endpoint.handler(request)

    def _answer(self, request: Request, build: Callable[[], Any]) -> Response:
        for hook in list(self.hooks):
            hook(request)
        try:
            with self.lock:
                body = build()
        except ApiError as error:
            return error.response()
        except UnknownField:
            # MySQL "Unknown column": masked in production mode (pull §2.10).
            report = f"webapi-{secrets.token_hex(7)[:13]}"
            message = (
                f"Internal Error. Details are available in Magento log file. Report ID: {report}"
            )
            return JSONResponse({"message": message}, status_code=500)
        if isinstance(body, Response):
            return body
        fields = request.query_params.get("fields")
        if fields not in (None, "", "0") and isinstance(body, dict | list):  # PHP's falsy
            body = project(body, fields)
        return JSONResponse(body)

    async def list_orders(self, request: Request) -> Response:
        """`GET /V1/orders` (pull §2.3 to §2.6)."""
        query = request.query_params

        def build() -> dict[str, Any]:
            criteria = parse_criteria(query)
            size = self._page_size(criteria.page_size)
            matches = self.shop.search(criteria.groups, criteria.sorts)
            total = matches.total
            page = max(criteria.current_page or 1, 1)
            if size is None:  # no LIMIT at all: currentPage means nothing
                rows = matches.slice(0, total)
            else:
                if self.version == "2.3" and total:  # the collection clamps to the last page
                    page = min(page, math.ceil(total / size))
                rows = matches.slice((page - 1) * size, page * size)
            return {
                "items": [self.shop.order(i) for i in rows],
                "search_criteria": criteria.echo(),
                "total_count": total,
            }

        return self._answer(request, build)

    def _page_size(self, given: int | None) -> int | None:
        """The LIMIT: the given size, the default or none; 400 over the maximum (pull §2.6)."""
        if given is None or given <= 0:
            return DEFAULT_PAGE_SIZE if self.input_limits else None
        if self.input_limits and given > MAX_PAGE_SIZE:
            raise ApiError(400, f"Maximum SearchCriteria pageSize is {MAX_PAGE_SIZE}")
        return given

    async def list_store_views(self, request: Request) -> Response:
        """`GET /V1/store/storeViews`: a bare array (pull §2.9)."""
        return self._answer(request, lambda: self.store_views)

    async def list_websites(self, request: Request) -> Response:
        """`GET /V1/store/websites`: a bare array (pull §2.9)."""
        return self._answer(request, lambda: self.websites)

    async def admin_token(self, request: Request) -> Response:
        """`POST /V1/integration/admin/token`: a bare JSON string, valid 4 h (pull §2.2)."""
        try:
            body = json.loads(await request.body() or b"null")
        except ValueError:
            body = None

        def build() -> Any:
            credentials = body if isinstance(body, dict) else {}
            for name in ("username", "password"):
                if not isinstance(credentials.get(name), str):
                    raise ApiError(400, "%fieldName is a required field.", {"fieldName": name})
            username, password = credentials["username"], credentials["password"]
            known = self.admin_users.get(username)
            if known is None or not secrets.compare_digest(known, password):
                raise ApiError(401, SIGN_IN_FAILED)
            if self.two_factor:  # the credentials are checked first, then 2FA refuses
                raise ApiError(401, TWO_FACTOR, {"active_providers": ["google"]})
            token = secrets.token_hex(16)  # 32 characters, like Magento's oauth tokens
            self.tokens[token] = self.clock.now() + ADMIN_TOKEN_SECONDS
            return token

        return self._answer(request, build)


# ---- searchCriteria ----------------------------------------------------------------------------


def parse_criteria(query: QueryParams) -> Criteria:
    """The `searchCriteria[...]` parameters of `query` (pull §2.3); ApiError when Magento
    would refuse them. Unknown keys inside `searchCriteria` are ignored."""
    tree = _criteria_tree(query)
    if tree is None:
        raise ApiError(400, "%fieldName is a required field.", {"fieldName": "searchCriteria"})
    groups = []
    for group in _entries(_get(tree, "filter_groups")):
        filters = tuple(
            Filter(
                _text(_get(f, "field")), _text(_get(f, "value")), _text(_get(f, "condition_type"))
            )
            for f in _entries(_get(group, "filters"))
        )
        if filters:
            groups.append(filters)
    sorts, sort_echo = [], []
    for order in _entries(_get(tree, "sort_orders")):
        name, direction = _text(_get(order, "field")), _text(_get(order, "direction"))
        if name is None:
            continue
        if direction is not None:
            direction = direction.upper()
            if direction not in ("ASC", "DESC"):
                message = (
                    "The sort order has to be specified as %1 for ascending order or %2 for "
                    "descending order."
                )
                raise ApiError(400, message, ["ASC", "DESC"])
        if re.search(r"[^a-z0-9_]", name, re.IGNORECASE):  # SortOrder::validateField
            raise ApiError(400, "Sort order field %1 contains restricted symbols", [name])
        sorts.append((name, direction != "ASC"))  # no direction: DESC (pull §2.3)
        sort_echo.append((name, direction))
    return Criteria(
        tuple(groups),
        tuple(sorts),
        tuple(sort_echo),
        _integer(tree, "page_size"),
        _integer(tree, "current_page"),
    )


def _criteria_tree(query: QueryParams) -> dict[str, Any] | None:
    """The bracketed keys as nested dicts (PHP's parsing: the last repeat wins, first-seen
    order kept); None when the query has no `searchCriteria` at all."""
    tree: dict[str, Any] = {}
    present = False
    for key, value in query.multi_items():
        if key == "searchCriteria":  # `searchCriteria=`: present, nothing in it
            present = True
            continue
        match = _CRITERIA_KEY.match(key)
        if match is None:
            continue
        present = True
        *path, last = _BRACKETS.findall(match.group(1))
        node = tree
        for part in path:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[last] = value
    return tree if present else None


def _get(node: Any, snake: str) -> Any:
    """`node[snake]` or its camelCase twin (the webapi layer maps one to the other)."""
    if not isinstance(node, dict):
        return None
    camel = re.sub(r"_([a-z])", lambda m: m.group(1).upper(), snake)
    return node.get(camel, node.get(snake))


def _entries(node: Any) -> list[Any]:
    """The members of a list-valued parameter (`[0]`, `[1]`, … in the order given)."""
    return list(node.values()) if isinstance(node, dict) else []


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _integer(tree: dict[str, Any], snake: str) -> int | None:
    camel = re.sub(r"_([a-z])", lambda m: m.group(1).upper(), snake)
    name = camel if camel in tree else snake
    value = _get(tree, snake)
    if value is None:
        return None
    if isinstance(value, str) and re.fullmatch(r"\s*[-+]?\d+\s*", value):
        return int(value)
    # ASSUMPTION: the wording of Magento's TypeProcessor error, prefixed with the field name
    # as ServiceInputProcessor does for nested values; seen on other routes, not this one.
    shown = value if isinstance(value, str) else "array"
    raise ApiError(
        400,
        f'Error occurred during "{name}" processing. The "{shown}" value\'s type is invalid. '
        'The "int" type was expected. Verify and try again.',
    )


# ---- fields= (Magento\Framework\Webapi\Rest\Response\FieldsFilter) --------------------------


def parse_fields(text: str) -> dict[str, Any] | None:
    """`items[entity_id,billing_address[city]],total_count` as nested dicts (True: keep the
    whole value); None when malformed (characters other than word, `[`, `]`, `,`, or
    unbalanced brackets)."""
    if not text or re.search(r"[^\w\[\],]", text, re.ASCII):
        return None
    current: dict[str, Any] = {}
    stack: list[dict[str, Any]] = []
    parents: list[str] = []
    start: int | None = None
    element = ""
    for position, char in enumerate(text):
        if char in "[],":
            if start is not None:
                element = text[start:position]
                current[element] = True
            start = None
        if char == "[":
            parents.append(element)
            stack.append(current)
            current = {}
        elif char == "]":
            if not stack:
                return None
            inner, current = current, stack.pop()
            current[parents.pop()] = inner
        elif char != "," and start is None:
            start = position
    if stack:
        return None
    if start is not None:
        current[text[start:]] = True
    return current


def project(body: Any, fields: str) -> Any:
    """The partial response `fields=` asks for (pull §2.3), with Magento's quirks: a malformed
    filter answers `[]`; keys not listed go, at every level; an empty list under a nested
    filter becomes null (`"items": null` on an empty page); an emptied object shows as `[]`."""
    spec = parse_fields(fields)
    if spec is None:
        return []
    return _apply(body, spec)


def _apply(data: dict[str, Any] | list[Any], spec: dict[str, Any]) -> Any:
    """FieldsFilter::applyFilter: a list (PHP: an array without string keys) per member."""
    if isinstance(data, list) or not data:
        members = data if isinstance(data, list) else []
        if not members:
            return None  # PHP: the loop never assigns its result
        return [_intersect(m, spec) if isinstance(m, dict) else m for m in members]
    return _intersect(data, spec)


def _intersect(data: dict[str, Any], spec: dict[str, Any]) -> Any:
    kept: dict[str, Any] = {}
    for key, value in data.items():
        if key in spec:
            inner = spec[key]
            if isinstance(inner, dict) and isinstance(value, dict | list):
                value = _apply(value, inner)
            kept[key] = value
    return kept or []  # PHP's json_encode writes an empty array as []


def _served(shop: Shop, index: int, name: str) -> Any:
    """A top-level field as served, read from the columns when it has one."""
    if name not in COLUMNS:
        return shop.order(index).get(name)
    value = shop.value(index, name)
    if COLUMNS[name] == TIME and isinstance(value, int):
        return stamp(value)
    return value


def create_app(
    api_key: str = DEFAULT_TOKEN,
    *,
    orders: int | None = None,
    preset: str = "default",
    version: Version = "2.4",
    input_limits: bool = True,
    admin_users: dict[str, str] | None = None,
    two_factor: bool = False,
    per_second: int | None = None,
    now: datetime | None = None,
    **options: Unpack[SandboxOptions],
) -> SandboxApp:
    """A fresh sandbox app (`app.state.sandbox` is the `MagentoSandbox`).

    `orders` (default: the preset's, "default" 2,000 or "large" 100,000), generated from
    `seed` over the two years before `now` (the sandbox clock's start; default: real time).
    `per_second` puts a rate limit in front (Magento has none for reads, pull §2.7; a CDN
    might): 429 `{"message": "Too Many Requests", "trace": null}` without limit headers.
    """
    return MagentoSandbox(
        api_key,
        orders=PRESETS[preset] if orders is None else orders,
        version=version,
        input_limits=input_limits,
        admin_users=admin_users,
        two_factor=two_factor,
        per_second=per_second,
        now=now,
        **options,
    ).app
