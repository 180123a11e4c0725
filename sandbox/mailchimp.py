"""Mailchimp Marketing API 3.0 sandbox: the OAuth login host and `/3.0`, told apart by path.

Follows `shared/api/push-providers.md` §3 (cited as "push §3.x"). `/oauth2/authorize` approves
at once (as `approving`, else the first account) and `/oauth2/token` swaps the code for a token
that never expires; `/oauth2/metadata` names the account's `dc` and `api_endpoint` (push §3.1).
`/3.0` wants `Authorization: Bearer <token>` or Basic `anystring:<api key>` (push §3.1). Members
are keyed by md5 of the lower-cased email and upserted with PUT (push §3.2, §3.3); tags change
only through the tags endpoint (push §3.4); DELETE archives and delete-permanent forgets
(push §3.5); unsubscribed and cleaned members are never re-subscribed (push §3.6). Batch
subscribe takes ≤ 500 members (push §3.7); `/3.0/batches` runs operations at submission
(push §3.8). Each account admits 10 requests in flight, the 11th gets a 429 (push §3.11); errors
are problem documents (push §3.12). Where push §3 is silent the choice is marked "assumed".
"""

from __future__ import annotations

import base64
import binascii
import gzip
import hashlib
import io
import json
import re
import secrets
import tarfile
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from itertools import islice
from typing import Any, Unpack
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from sandbox.base import Sandbox, SandboxApp, SandboxOptions
from sandbox.limits import RateLimit, Window, problem_rejection

API = "/3.0"
DEFAULT_DC = "us19"
# For `syncflows sandbox mailchimp`; the SDK reads the dc after the last "-" (push §3.1).
DEFAULT_API_KEY = "0123456789abcdef0123456789abcdef-us19"
DEFAULT_CLIENT_ID = "mailchimp-sandbox-client"
DEFAULT_CLIENT_SECRET = "mailchimp-sandbox-secret"
DEFAULT_ACCOUNT, DEFAULT_AUDIENCE = "Sandbox Account", "Sandbox Audience"
MAX_CONNECTIONS = 10  # push §3.11
DEFAULT_COUNT, MAX_COUNT = 10, 1000  # push §3.9
MAX_BATCH_SUBSCRIBE = 500  # push §3.7
MERGE_FIELDS = ("FNAME", "LNAME", "PHONE")  # assumed: the defaults a sync writes (push §3.10)
DEFAULT_FIELDS = {  # push §3.10: they exist by default, but may have been removed
    "FNAME": {"name": "First Name", "type": "text"},
    "LNAME": {"name": "Last Name", "type": "text"},
    "PHONE": {"name": "Phone Number", "type": "phone"},
}
FIELD_TYPES = (  # spec: Merge Field Type
    "text", "number", "address", "phone", "date", "url", "imageurl", "radio", "dropdown",
    "birthday", "zip",
)  # fmt: skip
WRITABLE = frozenset({"subscribed", "unsubscribed", "cleaned", "pending", "transactional"})
COMPLIANCE = frozenset({"unsubscribed", "cleaned"})  # push §3.6: never back to subscribed
ERRORS_TYPE = "https://mailchimp.com/developer/marketing/docs/errors/"  # push §3.12
PROBLEM = "application/problem+json; charset=utf-8"  # push §3.12
INVALID = (  # assumed wording
    "The resource submitted could not be validated. "
    "For field-specific details, see the 'errors' array."
)
USE_PUT = "Use PUT to insert or update list members."  # push §3.3
NOT_FOUND = "The requested resource could not be found."  # push §3.12
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")  # assumed: a plain address check
_HELD = "mailchimp.account"  # scope key: the account whose connection a request holds


def subscriber_hash(email: str) -> str:
    """md5 hex of the lower-cased email: a member's id and path key (push §3.2)."""
    return hashlib.md5(email.lower().encode()).hexdigest()


class ApiError(Exception):
    """A request Mailchimp refuses, as a problem document (push §3.12)."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        errors: list[dict[str, str]] | None = None,
        code: str = "ERROR_GENERIC",
    ) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail, self.errors = status, title, detail, errors
        self.code = code  # the batch-subscribe `error_code` (push §3.7)


def invalid(field_name: str, message: str) -> ApiError:
    """400 Invalid Resource for one field (push §3.10 shows the `errors` array)."""
    return ApiError(400, "Invalid Resource", INVALID, [{"field": field_name, "message": message}])


def not_found() -> ApiError:
    return ApiError(404, "Resource Not Found", NOT_FOUND)


def forgotten(email: str) -> ApiError:
    """Re-adding a permanently deleted address (push §3.5)."""
    detail = (
        f"{email} was permanently deleted and cannot be re-imported. "
        "The contact must re-subscribe to get back on the list."
    )
    return ApiError(400, "Forgotten Email Not Subscribed", detail)


def in_compliance(email: str) -> ApiError:
    """Subscribing an unsubscribed or cleaned member (push §3.6)."""
    detail = (
        f"{email} is in a compliance state due to unsubscribe, bounce, or compliance review "
        "and cannot be subscribed."
    )
    return ApiError(400, "Member In Compliance State", detail)


@dataclass(eq=False)
class Member:
    """One list member; `tags` maps each tag name to when it was added."""

    email: str
    hash: str
    status: str
    web_id: int
    unique_email_id: str
    contact_id: str
    created: str
    last_changed: str
    timestamp_opt: str = ""
    unsubscribe_reason: str | None = None
    archived_from: str | None = None  # the status before DELETE archived it
    merge_fields: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    language: str = ""
    vip: bool = False
    email_type: str = "html"


@dataclass(eq=False)
class Audience:
    """One list (audience): members by hash, forgotten hashes (→ email), live status counts."""

    id: str
    web_id: int
    name: str
    account: Account
    created: str
    merge_fields: tuple[str, ...]
    members: dict[str, Member] = field(default_factory=dict)
    forgotten: dict[str, str] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    tag_ids: dict[str, int] = field(default_factory=dict)
    field_info: dict[str, dict[str, str]] = field(default_factory=dict)  # added merge fields


@dataclass(eq=False)
class Account:
    """One Mailchimp account (user): its key, data centre, audiences and connection counts."""

    name: str
    dc: str
    api_key: str
    account_id: str
    user_id: int
    audiences: dict[str, Audience] = field(default_factory=dict)
    in_flight: int = 0
    peak: int = 0  # the most requests it had in flight at once


@dataclass(frozen=True)
class Grant:
    """An authorization code waiting to be swapped for a token."""

    account: Account
    redirect_uri: str


@dataclass(frozen=True)
class Call:
    """One `/3.0` request, from the app or from inside a batch."""

    method: str
    path: str  # after `/3.0/`, e.g. "lists/abc/members"
    query: dict[str, str]
    body: Any
    base_url: str
    account: Account
    params: dict[str, str] = field(default_factory=dict)  # from the path, e.g. "list"


Handler = Callable[[Call], tuple[int, Any]]


class MailchimpSandbox(Sandbox):
    """Mailchimp accounts behind one login host; `accounts` maps names to `Account`s."""

    def __init__(
        self,
        api_key: str = DEFAULT_API_KEY,
        *,
        client_id: str = DEFAULT_CLIENT_ID,
        client_secret: str = DEFAULT_CLIENT_SECRET,
        redirect_uris: tuple[str, ...] = (),
        max_connections: int | None = MAX_CONNECTIONS,
        per_second: int | None = None,
        default_account: bool = True,
        **options: Unpack[SandboxOptions],
    ) -> None:
        limits = []
        if per_second is not None:  # not Mailchimp's (push §3.11): for `--per-second`
            limits.append(
                RateLimit(Window(per_second, 1.0), paths=(API,), reject=problem_rejection())
            )
        super().__init__(limits=limits, **options)
        self.client_id, self.client_secret = client_id, client_secret
        self.redirect_uris = redirect_uris  # assumed: empty accepts any redirect_uri
        self.max_connections = max_connections
        self.accounts: dict[str, Account] = {}
        self.approving: Account | None = None  # who `/oauth2/authorize` logs in; None: the first
        self.lock = threading.RLock()  # handlers and test threads (loopback) share the records
        self._keys: dict[str, Account] = {}
        self._tokens: dict[str, Account] = {}
        self._codes: dict[str, Grant] = {}
        self._audiences: dict[str, Audience] = {}
        self._batches: dict[str, dict[str, Any]] = {}
        self._results: dict[str, bytes] = {}
        self._serial = 0
        self._endpoints: list[tuple[re.Pattern[str], dict[str, Handler]]] = [
            (re.compile(r""), {"GET": self.root}),
            (re.compile(r"ping"), {"GET": self.ping}),
            (re.compile(r"lists"), {"GET": self.list_lists}),
            (re.compile(r"lists/(?P<list>[^/]+)"), {"GET": self.get_list, "POST": self.subscribe}),
            (re.compile(r"lists/(?P<list>[^/]+)/members"), {"GET": self.list_members}),
            (
                re.compile(r"lists/(?P<list>[^/]+)/merge-fields"),
                {"GET": self.list_merge_fields, "POST": self.add_merge_field},
            ),
            (
                re.compile(r"lists/(?P<list>[^/]+)/members/(?P<hash>[^/]+)"),
                {"GET": self.get_member, "PUT": self.put_member, "DELETE": self.archive},
            ),
            (
                re.compile(r"lists/(?P<list>[^/]+)/members/(?P<hash>[^/]+)/tags"),
                {"GET": self.list_tags, "POST": self.post_tags},
            ),
            (
                re.compile(
                    r"lists/(?P<list>[^/]+)/members/(?P<hash>[^/]+)/actions/delete-permanent"
                ),
                {"POST": self.delete_permanent},
            ),
            (re.compile(r"batches"), {"POST": self.create_batch}),
            (re.compile(r"batches/(?P<batch>[^/]+)"), {"GET": self.get_batch}),
        ]
        if default_account:
            dc = api_key.rsplit("-", 1)[-1] if "-" in api_key else DEFAULT_DC
            self.add_audience(
                self.add_account(DEFAULT_ACCOUNT, dc, api_key=api_key), DEFAULT_AUDIENCE
            )

    def routes(self) -> list[BaseRoute]:
        methods = ["GET", "POST", "PUT", "PATCH", "DELETE"]
        return [
            Route("/oauth2/authorize", self.authorize, methods=["GET"]),
            Route("/oauth2/token", self.token, methods=["POST"]),
            Route("/oauth2/metadata", self.metadata, methods=["GET"]),
            Route("/batch-results/{batch}", self.batch_results, methods=["GET"]),
            Route(API + "/{path:path}", self.serve, methods=methods),
        ]

    def authenticate(self, request: Request) -> Response | None:
        """Credentials, then the account's connection cap (push §3.1, §3.11); `/3.0` only."""
        path = request.url.path
        if path != API and not path.startswith(API + "/"):
            return None  # the login host and batch results answer on their own terms
        header = request.headers.get("Authorization", "")
        with self.lock:
            account = self._credentials(header)
            if account is None:
                if not header:  # assumed: Mailchimp's usual titles, not in push §3
                    error = ApiError(
                        401, "API Key Missing", "Your request did not include an API key."
                    )
                else:
                    detail = (
                        "Your API key may be invalid, "
                        "or you've attempted to access the wrong datacenter."
                    )
                    error = ApiError(401, "API Key Invalid", detail)
                return self._problem(error)
            if self.max_connections is not None and account.in_flight >= self.max_connections:
                detail = "You have exceeded the limit of 10 simultaneous connections."  # assumed
                return self._problem(ApiError(429, "Too Many Requests", detail))
            account.in_flight += 1
            account.peak = max(account.peak, account.in_flight)
            request.scope[_HELD] = account
        return None

    async def handle(self, scope: Scope, receive: Receive, send: Send, app: ASGIApp) -> None:
        """The base pipeline, then free the connection `authenticate` took for the account."""
        try:
            await super().handle(scope, receive, send, app)
        finally:
            account: Account | None = scope.pop(_HELD, None)
            if account is not None:
                with self.lock:
                    account.in_flight -= 1

    # ---- helpers for tests ---------------------------------------------------------------------

    def add_account(
        self, name: str, dc: str = DEFAULT_DC, *, api_key: str | None = None
    ) -> Account:
        """A new account (its `api_key` ends in `-<dc>`); `mint_token` gives it an OAuth token."""
        with self.lock:
            if name in self.accounts:
                raise ValueError(f"there is already an account called {name!r}")
            key = api_key or f"{self._digest('key', name)}-{dc}"
            account = Account(name, dc, key, self._digest("account", name)[:20], self._next())
            self.accounts[name] = account
            self._keys[key] = account
            return account

    def account(self, ref: Account | str) -> Account:
        """The account `ref` names: itself, its name, its api key or one of its tokens."""
        if isinstance(ref, Account):
            return ref
        with self.lock:
            found = self.accounts.get(ref) or self._keys.get(ref) or self._tokens.get(ref)
        if found is None:
            raise KeyError(ref)
        return found

    def mint_token(self, account: Account | str) -> str:
        """An OAuth access token for `account`, as `/oauth2/token` would give."""
        with self.lock:
            token = self._digest("token", str(self._next()))
            self._tokens[token] = self.account(account)
            return token

    def add_audience(
        self, account: Account | str, name: str, merge_fields: tuple[str, ...] = MERGE_FIELDS
    ) -> str:
        """A new, empty audience of `account`; returns its list id."""
        with self.lock:
            owner = self.account(account)
            serial = self._next()
            list_id = self._digest("list", str(serial))[:10]
            audience = Audience(list_id, serial, name, owner, self._now(), merge_fields)
            owner.audiences[list_id] = audience
            self._audiences[list_id] = audience
            return list_id

    def member(self, list_id: str, email: str) -> dict[str, Any] | None:
        """The member as GET serves it, or None (also when permanently deleted)."""
        with self.lock:
            audience = self._audiences[list_id]
            found = audience.members.get(subscriber_hash(email))
            return None if found is None else self._render(audience, found)

    def set_status(self, list_id: str, email: str, status: str) -> None:
        """Change a member's status from Mailchimp's side (unsubscribed, cleaned…); KeyError
        if unknown."""
        with self.lock:
            audience = self._audiences[list_id]
            self._set_status(audience, audience.members[subscriber_hash(email)], status)

    def tags(self, list_id: str, email: str) -> dict[str, str]:
        """A member's tags: name → date added; KeyError if unknown."""
        with self.lock:
            return dict(self._audiences[list_id].members[subscriber_hash(email)].tags)

    def tag(self, list_id: str, email: str, *names: str) -> None:
        """Tag a member from Mailchimp's side (e.g. a user in the web app); KeyError if unknown."""
        with self.lock:
            audience = self._audiences[list_id]
            member = audience.members[subscriber_hash(email)]
            for name in names:
                self._add_tag(audience, member, name)

    def peak_concurrency(self, account: Account | str) -> int:
        """The most requests `account` had in flight at once."""
        return self.account(account).peak

    # ---- the login host (push §3.1) ------------------------------------------------------------

    async def authorize(self, request: Request) -> Response:
        """Auto-approve and redirect with `code` and `state`."""
        query = request.query_params
        if query.get("response_type") != "code":
            return _oauth_error("unsupported_response_type")
        if query.get("client_id") != self.client_id:
            return _oauth_error("invalid_client")
        redirect_uri = query.get("redirect_uri", "")
        if not redirect_uri or (self.redirect_uris and redirect_uri not in self.redirect_uris):
            return _oauth_error("invalid_request", "redirect_uri is not allowed")  # assumed
        with self.lock:
            account = self.approving or next(iter(self.accounts.values()), None)
            if account is None:
                return _oauth_error("access_denied", "the sandbox has no account")  # assumed
            code = self._digest("code", str(self._next()))
            self._codes[code] = Grant(account, redirect_uri)
        added = {"code": code}
        if "state" in query:
            added["state"] = query["state"]
        parts = urlsplit(redirect_uri)
        joined = "&".join(q for q in (parts.query, urlencode(added)) if q)
        return RedirectResponse(urlunsplit(parts._replace(query=joined)), status_code=302)

    async def token(self, request: Request) -> Response:
        """Swap a code for a token that never expires (`expires_in: 0`, `scope: null`)."""
        form = dict(parse_qsl((await request.body()).decode()))
        if form.get("grant_type") != "authorization_code":
            return _oauth_error("unsupported_grant_type")
        with self.lock:
            grant = self._codes.get(form.get("code", ""))
            right_client = form.get("client_id") == self.client_id and secrets.compare_digest(
                form.get("client_secret", ""), self.client_secret
            )
            # Assumed (the brief's body): every refusal is invalid_grant; a code is spent
            # only by a successful swap.
            if grant is None or not right_client or form.get("redirect_uri") != grant.redirect_uri:
                return _oauth_error("invalid_grant")
            del self._codes[form["code"]]
            token = self.mint_token(grant.account)
        # token_type: assumed, as OAuth clients expect it.
        body = {"access_token": token, "token_type": "bearer", "expires_in": 0, "scope": None}
        return JSONResponse(body)

    async def metadata(self, request: Request) -> Response:
        """The token's account: `dc`, `api_endpoint` (this app) and the login."""
        scheme, _, token = request.headers.get("Authorization", "").strip().partition(" ")
        with self.lock:
            account = (
                self._tokens.get(token.strip()) if scheme.lower() in ("oauth", "bearer") else None
            )
        if account is None:
            return JSONResponse({"error": "invalid_token"})  # push §3.1: 200 with an error
        base = str(request.base_url).rstrip("/")
        email = f"{account.account_id}@sandbox.invalid"  # assumed: any address will do
        return JSONResponse(
            {
                "dc": account.dc,
                "role": "owner",
                "accountname": account.name,
                "account_id": account.account_id,
                "user_id": account.user_id,
                "login": {
                    "email": email,
                    "avatar": None,
                    "login_id": account.user_id,
                    "login_name": account.name,
                    "login_email": email,
                },
                "login_url": base,
                "api_endpoint": base,  # push §3.1: the host, without `/3.0`
            }
        )

    # ---- dispatch ------------------------------------------------------------------------------

    async def serve(self, request: Request) -> Response:
        """Every `/3.0` route: parse, run the endpoint, answer JSON or a problem."""
        account: Account = request.scope[_HELD]
        raw = await request.body()
        try:
            body = json.loads(raw) if raw.strip() else None
        except ValueError:
            detail = "We encountered an unspecified JSON parsing error."  # assumed
            return self._problem(ApiError(400, "JSON Parse Error", detail))
        path = request.url.path.removeprefix(API).strip("/")  # "" is the API root
        call = Call(
            request.method,
            path,
            dict(request.query_params),
            body,
            str(request.base_url).rstrip("/"),
            account,
        )
        try:
            status, answer = self.call(call)
        except ApiError as error:
            return self._problem(error)
        if status == 204:
            return Response(status_code=204)
        return JSONResponse(answer, status_code=status)

    def call(self, call: Call) -> tuple[int, Any]:
        """Run one endpoint for `call.account`; raises `ApiError` for what Mailchimp refuses."""
        for pattern, handlers in self._endpoints:
            if (match := pattern.fullmatch(call.path)) is None:
                continue
            handler = handlers.get(call.method)
            if handler is None:  # assumed wording
                detail = "The requested method and resource are not compatible."
                raise ApiError(405, "Method Not Allowed", detail)
            with self.lock:
                return handler(replace(call, params=match.groupdict()))
        raise not_found()

    def root(self, call: Call) -> tuple[int, Any]:
        """`GET /3.0/` (spec: API Root): the account the credentials belong to."""
        account = call.account
        subscribers = sum(a.counts.get("subscribed", 0) for a in account.audiences.values())
        return 200, {
            "account_id": account.account_id,
            "login_id": str(account.user_id),
            "account_name": account.name,
            "email": f"{account.account_id}@sandbox.invalid",  # assumed: any address will do
            "username": account.name,
            "role": "owner",
            "pricing_plan_type": "monthly",
            "total_subscribers": subscribers,
            "_links": [],
        }

    def ping(self, call: Call) -> tuple[int, Any]:  # noqa: ARG002 - a Handler
        """`GET /3.0/ping` (spec: API health)."""
        return 200, {"health_status": "Everything's Chimpy!"}

    # ---- lists (push §3.9) ---------------------------------------------------------------------

    def list_lists(self, call: Call) -> tuple[int, Any]:
        """`GET /3.0/lists?count=&offset=`."""
        count, offset = _page(call.query)
        audiences = list(call.account.audiences.values())
        return 200, {
            "lists": [self._render_list(a) for a in audiences[offset : offset + count]],
            "total_items": len(audiences),
            "constraints": {
                "may_create": True,
                "max_instances": 100,
                "current_total_instances": len(audiences),
            },
            "_links": [],
        }

    def get_list(self, call: Call) -> tuple[int, Any]:
        """`GET /3.0/lists/{list_id}`."""
        return 200, self._render_list(self._audience(call))

    # ---- members (push §3.2 to §3.6) ----------------------------------------------------------

    def list_members(self, call: Call) -> tuple[int, Any]:
        """`GET /3.0/lists/{id}/members?count=&offset=&status=`, in the order added (assumed)."""
        audience = self._audience(call)
        count, offset = _page(call.query)
        wanted = call.query.get("status")
        if wanted is None:
            members = list(islice(audience.members.values(), offset, offset + count))
            total = len(audience.members)
        else:
            matching = (m for m in audience.members.values() if m.status == wanted)
            members = list(islice(matching, offset, offset + count))
            total = audience.counts.get(wanted, 0)
        return 200, {
            "members": [self._render(audience, m) for m in members],
            "list_id": audience.id,
            "total_items": total,
            "_links": [],
        }

    # ---- merge fields (push §3.10) --------------------------------------------------------------

    def list_merge_fields(self, call: Call) -> tuple[int, Any]:
        """`GET /3.0/lists/{id}/merge-fields?count=&offset=`."""
        audience = self._audience(call)
        count, offset = _page(call.query)
        tags = audience.merge_fields[offset : offset + count]
        return 200, {
            "merge_fields": [self._render_field(audience, tag) for tag in tags],
            "list_id": audience.id,
            "total_items": len(audience.merge_fields),
            "_links": [],
        }

    def add_merge_field(self, call: Call) -> tuple[int, Any]:
        """`POST /3.0/lists/{id}/merge-fields`: `name` and `type` required (spec); the tag is
        given or made from the name (assumed: upper case, at most 10 characters)."""
        audience = self._audience(call)
        body = _object(call.body)
        name, kind = body.get("name"), body.get("type")
        if not isinstance(name, str) or not name.strip():
            raise invalid("name", "This value should not be blank.")  # assumed
        if kind not in FIELD_TYPES:  # spec: Merge Field Type
            raise invalid("type", f"Value must be one of: {', '.join(FIELD_TYPES)}.")  # assumed
        given = body.get("tag")
        tag = (given if isinstance(given, str) and given else re.sub(r"\W", "", name)).upper()
        tag = tag[:10]
        if tag in audience.merge_fields:  # assumed wording
            raise invalid("tag", f'A Merge Field with the tag "{tag}" already exists.')
        audience.merge_fields = (*audience.merge_fields, tag)
        audience.field_info[tag] = {"name": name.strip(), "type": kind}
        return 200, self._render_field(audience, tag)

    def _render_field(self, audience: Audience, tag: str) -> dict[str, Any]:
        info = audience.field_info.get(tag) or DEFAULT_FIELDS.get(tag) or {"name": tag}
        return {
            "merge_id": audience.merge_fields.index(tag) + 1,
            "tag": tag,
            "name": info["name"],
            "type": info.get("type", "text"),
            "required": False,
            "default_value": "",
            "public": False,
            "display_order": audience.merge_fields.index(tag) + 1,
            "options": {"phone_format": "International"} if info.get("type") == "phone" else {},
            "help_text": "",
            "list_id": audience.id,
            "_links": [],
        }

    def get_member(self, call: Call) -> tuple[int, Any]:
        """`GET /3.0/lists/{id}/members/{hash}`: 404 when unknown or forgotten (push §3.2, §3.5)."""
        audience = self._audience(call)
        return 200, self._render(audience, self._member(audience, call.params["hash"]))

    def put_member(self, call: Call) -> tuple[int, Any]:
        """`PUT /3.0/lists/{id}/members/{hash}`: add or update (push §3.3).

        `status_if_new` applies only when the member is new (or archived: PUT brings it back,
        push §3.5); `status` changes an existing member, but never subscribes an unsubscribed
        or cleaned one (push §3.6). Tags in the body count only on creation (push §3.3).
        """
        audience = self._audience(call)
        body = _object(call.body)
        key = _key(call.params["hash"])
        email = body.get("email_address")
        if email is not None:
            email = _email(email)
            if subscriber_hash(email) != key:
                if subscriber_hash(email) in audience.members:  # push §3.3 [3p]
                    detail = f"{email} is already a list member. {USE_PUT}"
                    raise ApiError(400, "Member Exists", detail)
                raise invalid(
                    "email_address", "The email address does not match the subscriber hash."
                )
        if key in audience.forgotten:
            raise forgotten(audience.forgotten[key])
        status = _status(body, "status")
        status_if_new = _status(body, "status_if_new")
        merge_fields = _merge_fields(audience, body.get("merge_fields"))
        member = audience.members.get(key)
        if member is None or member.status == "archived":
            new_status = status or status_if_new
            if new_status is None:  # assumed wording
                raise invalid("status_if_new", "This value should not be blank.")
            if member is None:
                if email is None:
                    raise invalid("email_address", "This value should not be blank.")  # assumed
                member = self._add_member(audience, email, new_status)
                tags = body.get("tags")
                for name in tags if isinstance(tags, list) else ():
                    if isinstance(name, str) and name:
                        self._add_tag(audience, member, name)
            else:
                if member.archived_from in COMPLIANCE and new_status == "subscribed":  # assumed
                    raise in_compliance(member.email)
                self._set_status(audience, member, new_status)
        elif status is not None and status != member.status:
            if member.status in COMPLIANCE and status == "subscribed":
                raise in_compliance(member.email)
            self._set_status(audience, member, status)
        self._update(member, body, merge_fields)
        return 200, self._render(audience, member)

    def archive(self, call: Call) -> tuple[int, Any]:
        """`DELETE /3.0/lists/{id}/members/{hash}` archives (204, push §3.5)."""
        audience = self._audience(call)
        member = self._member(audience, call.params["hash"])
        if member.status != "archived":  # assumed: archiving again is a no-op 204
            member.archived_from = member.status
            self._set_status(audience, member, "archived")
        return 204, None

    def delete_permanent(self, call: Call) -> tuple[int, Any]:
        """`POST …/actions/delete-permanent`: gone for good, never re-imported (push §3.5)."""
        audience = self._audience(call)
        member = self._member(audience, call.params["hash"])
        self._count(audience, member.status, -1)
        del audience.members[member.hash]
        audience.forgotten[member.hash] = member.email
        return 204, None

    # ---- tags (push §3.4) ----------------------------------------------------------------------

    def list_tags(self, call: Call) -> tuple[int, Any]:
        """`GET …/members/{hash}/tags?count=&offset=`."""
        audience = self._audience(call)
        member = self._member(audience, call.params["hash"])
        count, offset = _page(call.query)
        items = list(member.tags.items())
        tags = [
            {"id": audience.tag_ids[name], "name": name, "date_added": added}
            for name, added in items[offset : offset + count]
        ]
        return 200, {"tags": tags, "total_items": len(items), "_links": []}

    def post_tags(self, call: Call) -> tuple[int, Any]:
        """`POST …/members/{hash}/tags`: active adds, inactive removes, others untouched (204)."""
        audience = self._audience(call)
        member = self._member(audience, call.params["hash"])
        tags = _object(call.body).get("tags")
        if not isinstance(tags, list):
            raise invalid("tags", "Schema describes array, object found instead")  # assumed
        changes: list[tuple[str, bool]] = []
        for index, tag in enumerate(tags):  # all checked before any applies (assumed)
            tag = tag if isinstance(tag, dict) else {}
            name, status = tag.get("name"), tag.get("status")
            if not isinstance(name, str) or not name.strip():
                raise invalid(f"tags.{index}.name", "This value should not be blank.")  # assumed
            if status not in ("active", "inactive"):
                raise invalid(f"tags.{index}.status", "Value must be one of: active, inactive.")
            changes.append((name.strip(), status == "active"))
        for name, active in changes:
            if active:
                self._add_tag(audience, member, name)
            else:
                member.tags.pop(name, None)
        return 204, None

    # ---- batch subscribe (push §3.7) -----------------------------------------------------------

    def subscribe(self, call: Call) -> tuple[int, Any]:
        """`POST /3.0/lists/{id}`: ≤ 500 members, each created, updated or an error."""
        audience = self._audience(call)
        body = _object(call.body)
        members = body.get("members")
        if not isinstance(members, list):
            raise invalid("members", "This value should not be blank.")  # assumed
        if len(members) > MAX_BATCH_SUBSCRIBE:  # assumed wording
            raise invalid(
                "members", f"You may not add more than {MAX_BATCH_SUBSCRIBE} members at once."
            )
        update_existing = body.get("update_existing") is True
        skip_duplicates = call.query.get("skip_duplicate_check") == "true"
        seen: set[str] = set()
        created: list[Member] = []
        updated: list[Member] = []
        errors: list[dict[str, Any]] = []
        for item in members:
            item = item if isinstance(item, dict) else {}
            try:
                email = _email(item.get("email_address"))
                key = subscriber_hash(email)
                if key in seen and skip_duplicates:  # push §3.7: the first one wins
                    continue
                seen.add(key)
                outcome = self._subscribe_one(
                    audience, email, item, update_existing=update_existing
                )
            except ApiError as error:
                email_address = item.get("email_address")
                errors.append(
                    {
                        "email_address": email_address if isinstance(email_address, str) else "",
                        "error": error.detail
                        if error.errors is None
                        else error.errors[0]["message"],
                        "error_code": error.code,
                    }
                )
                continue
            (created if outcome[1] else updated).append(outcome[0])
        return 200, {
            "new_members": [self._render(audience, m, batch=True) for m in created],
            "updated_members": [self._render(audience, m, batch=True) for m in updated],
            "errors": errors,
            "total_created": len(created),
            "total_updated": len(updated),
            "error_count": len(errors),
            "_links": [],
        }

    def _subscribe_one(
        self, audience: Audience, email: str, item: dict[str, Any], *, update_existing: bool
    ) -> tuple[Member, bool]:
        """One batch-subscribe member: (the member, whether it was created)."""
        key = subscriber_hash(email)
        if key in audience.forgotten:
            raise forgotten(audience.forgotten[key])
        status = _status(item, "status")
        merge_fields = _merge_fields(audience, item.get("merge_fields"))
        member = audience.members.get(key)
        if member is None or member.status == "archived":  # assumed: archived comes back as new
            status = status or "subscribed"  # assumed: the spec's item has no required status
            if member is None:
                member = self._add_member(audience, email, status)
            else:
                if member.archived_from in COMPLIANCE and status == "subscribed":
                    raise in_compliance(email)
                self._set_status(audience, member, status)
            self._update(member, item, merge_fields)
            return member, True
        if not update_existing:  # assumed wording
            detail = (
                f"{email} is already a list member, do you want to update? "
                "please provide update_existing:true in the request body"
            )
            raise ApiError(400, "Member Exists", detail, code="ERROR_CONTACT_EXISTS")
        if status is not None and status != member.status:
            if member.status in COMPLIANCE and status == "subscribed":
                raise in_compliance(email)
            self._set_status(audience, member, status)
        self._update(member, item, merge_fields)
        return member, False

    # ---- batch operations (push §3.8) ----------------------------------------------------------

    def create_batch(self, call: Call) -> tuple[int, Any]:
        """`POST /3.0/batches`: runs every operation now (assumed), answers `pending`."""
        operations = _object(call.body).get("operations")
        if not isinstance(operations, list):
            raise invalid("operations", "This value should not be blank.")  # assumed
        results = [self._operation(call.account, op, call.base_url) for op in operations]
        batch_id = self._digest("batch", str(self._next()))[:10]
        now = self._now()
        self._batches[batch_id] = {
            "id": batch_id,
            "owner": call.account,
            "total_operations": len(results),
            "errored_operations": sum(1 for r in results if r["status_code"] >= 400),
            "submitted_at": now,
            "completed_at": now,
        }
        self._results[batch_id] = _tar_gz(f"{batch_id}.json", json.dumps(results).encode())
        return 200, self._render_batch(batch_id, call.base_url, finished=False)

    def get_batch(self, call: Call) -> tuple[int, Any]:
        """`GET /3.0/batches/{id}`: `finished` from the first poll on (assumed)."""
        batch = self._batches.get(call.params["batch"])
        if batch is None or batch["owner"] is not call.account:
            raise not_found()
        return 200, self._render_batch(call.params["batch"], call.base_url, finished=True)

    async def batch_results(self, request: Request) -> Response:
        """The results archive `response_body_url` points at (unauthenticated, like S3)."""
        with self.lock:
            archive = self._results.get(request.path_params["batch"])
        if archive is None:
            return Response(status_code=404)
        return Response(archive, media_type="application/gzip")

    def _operation(self, account: Account, op: Any, base_url: str) -> dict[str, Any]:
        """One batch operation: `body` is a JSON string (push §3.8)."""
        op = op if isinstance(op, dict) else {}
        path = str(op.get("path", "")).strip("/").removeprefix("3.0/")
        params = op.get("params")
        query = {str(k): str(v) for k, v in params.items()} if isinstance(params, dict) else {}
        raw = op.get("body")
        try:
            body = json.loads(raw) if isinstance(raw, str) and raw.strip() else None
            if path.startswith("batches"):  # assumed: no batch inside a batch
                raise not_found()
            method = str(op.get("method", "")).upper()
            status, answer = self.call(Call(method, path, query, body, base_url, account))
        except ValueError:
            error = ApiError(
                400, "JSON Parse Error", "We encountered an unspecified JSON parsing error."
            )
            status, answer = error.status, self._problem_body(error)
        except ApiError as error:
            status, answer = error.status, self._problem_body(error)
        return {
            "status_code": status,
            "operation_id": op.get("operation_id"),
            "response": "" if answer is None else json.dumps(answer),
        }

    def _render_batch(self, batch_id: str, base_url: str, *, finished: bool) -> dict[str, Any]:
        batch = self._batches[batch_id]
        total = batch["total_operations"]
        return {
            "id": batch_id,
            "status": "finished" if finished else "pending",
            "total_operations": total,
            "finished_operations": total if finished else 0,
            "errored_operations": batch["errored_operations"] if finished else 0,
            "submitted_at": batch["submitted_at"],
            "completed_at": batch["completed_at"] if finished else "",
            "response_body_url": f"{base_url}/batch-results/{batch_id}" if finished else "",
            "_links": [],
        }

    # ---- records -------------------------------------------------------------------------------

    def _credentials(self, header: str) -> Account | None:
        scheme, _, value = header.strip().partition(" ")
        if scheme.lower() == "bearer":
            return self._tokens.get(value.strip())
        if scheme.lower() == "basic":
            try:
                decoded = base64.b64decode(value.strip(), validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                return None
            return self._keys.get(decoded.partition(":")[2])
        return None

    @staticmethod
    def _audience(call: Call) -> Audience:
        audience = call.account.audiences.get(call.params["list"])
        if audience is None:
            raise not_found()
        return audience

    def _member(self, audience: Audience, param: str) -> Member:
        member = audience.members.get(_key(param))
        if member is None:
            raise not_found()
        return member

    def _add_member(self, audience: Audience, email: str, status: str) -> Member:
        key, now, serial = subscriber_hash(email), self._now(), self._next()
        member = Member(
            email,
            key,
            status,
            serial,
            self._digest("unique", audience.id, key)[:10],
            self._digest("contact", audience.id, key),
            now,
            now,
        )
        audience.members[key] = member
        self._count(audience, status, +1)
        if status == "subscribed":
            member.timestamp_opt = now
        elif status == "unsubscribed":
            member.unsubscribe_reason = "N/A (Unsubscribed by an admin)"  # assumed
        return member

    def _set_status(self, audience: Audience, member: Member, status: str) -> None:
        if status == member.status:
            return
        self._count(audience, member.status, -1)
        self._count(audience, status, +1)
        member.status, member.last_changed = status, self._now()
        if status == "subscribed":
            member.timestamp_opt, member.unsubscribe_reason = member.last_changed, None
        elif status == "unsubscribed":
            member.unsubscribe_reason = "N/A (Unsubscribed by an admin)"  # assumed
        if status != "archived":
            member.archived_from = None

    def _update(self, member: Member, body: dict[str, Any], merge_fields: dict[str, str]) -> None:
        """Merge fields not sent keep their values (assumed: as Mailchimp's PATCH-like PUT)."""
        member.merge_fields.update(merge_fields)
        if isinstance(body.get("language"), str):
            member.language = body["language"]
        if isinstance(body.get("vip"), bool):
            member.vip = body["vip"]
        if body.get("email_type") in ("html", "text"):
            member.email_type = body["email_type"]
        member.last_changed = self._now()

    def _add_tag(self, audience: Audience, member: Member, name: str) -> None:
        if name not in audience.tag_ids:
            audience.tag_ids[name] = self._next()
        member.tags.setdefault(name, self._now())

    @staticmethod
    def _count(audience: Audience, status: str, step: int) -> None:
        if status:
            audience.counts[status] = audience.counts.get(status, 0) + step

    def _render(self, audience: Audience, member: Member, *, batch: bool = False) -> dict[str, Any]:
        """A member as served (spec `List Members_2`; batch subscribe leaves some keys out)."""
        fields = {name: member.merge_fields.get(name, "") for name in audience.merge_fields}
        full_name = f"{fields.get('FNAME', '')} {fields.get('LNAME', '')}".strip()
        rendered: dict[str, Any] = {
            "id": member.hash,
            "email_address": member.email,
            "unique_email_id": member.unique_email_id,
            "email_type": member.email_type,
            "status": member.status,
            "merge_fields": fields,
            "stats": {"avg_open_rate": 0, "avg_click_rate": 0},
            "ip_signup": "",
            "timestamp_signup": "",
            "ip_opt": "",
            "timestamp_opt": member.timestamp_opt,
            "member_rating": 2,
            "last_changed": member.last_changed,
            "language": member.language,
            "vip": member.vip,
            "email_client": "",
            "location": {"latitude": 0, "longitude": 0},
            "tags_count": len(member.tags),
            "tags": [
                {"id": audience.tag_ids[name], "name": name}
                for name in islice(member.tags, 50)  # push §3.3: at most 50
            ],
            "list_id": audience.id,
            "_links": [],
        }
        if not batch:
            rendered.update(
                contact_id=member.contact_id,
                full_name=full_name,
                web_id=member.web_id,
                interests={},
                source="API - Generic",
            )
        if member.unsubscribe_reason is not None and member.status == "unsubscribed":
            rendered["unsubscribe_reason"] = member.unsubscribe_reason
        return rendered

    def _render_list(self, audience: Audience) -> dict[str, Any]:
        """An audience as served (spec `Subscriber List_1`), its counts live."""
        counts = audience.counts
        return {
            "id": audience.id,
            "web_id": audience.web_id,
            "name": audience.name,
            "permission_reminder": "You signed up on our website.",
            "use_archive_bar": False,
            "campaign_defaults": {
                "from_name": audience.account.name,
                "from_email": f"{audience.account.account_id}@sandbox.invalid",
                "subject": "",
                "language": "en",
            },
            "notify_on_subscribe": "",
            "notify_on_unsubscribe": "",
            "date_created": audience.created,
            "list_rating": 0,
            "email_type_option": False,
            "subscribe_url_short": "",
            "subscribe_url_long": "",
            "beamer_address": "",
            "visibility": "prv",
            "double_optin": False,
            "has_welcome": False,
            "marketing_permissions": False,
            "modules": [],
            "stats": {
                "member_count": counts.get("subscribed", 0),
                "unsubscribe_count": counts.get("unsubscribed", 0),
                "cleaned_count": counts.get("cleaned", 0),
                "member_count_since_send": 0,
                "unsubscribe_count_since_send": 0,
                "cleaned_count_since_send": 0,
                "campaign_count": 0,
                "merge_field_count": len(audience.merge_fields),
                "avg_sub_rate": 0,
                "avg_unsub_rate": 0,
                "target_sub_rate": 0,
                "open_rate": 0,
                "click_rate": 0,
                "total_contacts": sum(counts.values()),
            },
            "_links": [],
        }

    def _problem_body(self, error: ApiError) -> dict[str, Any]:
        with self.lock:
            instance = str(uuid.UUID(self._digest("instance", str(self._next()))))
        body: dict[str, Any] = {
            "type": ERRORS_TYPE,
            "title": error.title,
            "status": error.status,
            "detail": error.detail,
            "instance": instance,
        }
        if error.errors is not None:
            body["errors"] = error.errors
        return body

    def _problem(self, error: ApiError) -> Response:
        body = self._problem_body(error)
        headers = {"X-Request-Id": body["instance"]}
        return JSONResponse(body, error.status, headers=headers, media_type=PROBLEM)

    def _digest(self, *parts: str) -> str:
        """A deterministic hex id from the seed and `parts`."""
        text = ":".join((str(self.seed), *parts))
        return hashlib.md5(text.encode()).hexdigest()

    def _next(self) -> int:
        self._serial += 1
        return self._serial

    def _now(self) -> str:
        """Sandbox time as Mailchimp writes it, e.g. `2026-06-01T12:00:00+00:00`."""
        return datetime.fromtimestamp(int(self.clock.now()), UTC).isoformat()


def _oauth_error(error: str, description: str | None = None) -> Response:
    """The login host's 400 (assumed: RFC 6749 §5.2 bodies)."""
    body = (
        {"error": error}
        if description is None
        else {"error": error, "error_description": description}
    )
    return JSONResponse(body, status_code=400)


def _object(body: Any) -> dict[str, Any]:
    return body if isinstance(body, dict) else {}


def _key(param: str) -> str:
    """The member a path names: its hash, or an email (the spec accepts both)."""
    return subscriber_hash(param) if "@" in param else param.lower()


def _email(value: Any) -> str:
    if not isinstance(value, str) or not _EMAIL.match(value.strip()):
        shown = value if isinstance(value, str) else ""
        detail = f"{shown} looks fake or invalid, please enter a real email address."  # assumed
        raise ApiError(400, "Invalid Resource", detail)
    return value.strip()


def _status(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if value not in WRITABLE:  # push §3.2
        raise invalid(name, f"Value must be one of: {', '.join(sorted(WRITABLE))}.")  # assumed
    return str(value)


def _merge_fields(audience: Audience, value: Any) -> dict[str, str]:
    """Known tags with string values, else 400 (assumed: Mailchimp may ignore unknown ones)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise invalid("merge_fields", "Schema describes object, array found instead")  # assumed
    errors = []
    for name, item in value.items():
        if name not in audience.merge_fields:
            errors.append({"field": name, "message": f"Merge field {name} does not exist."})
        elif not isinstance(item, str):  # push §3.10
            errors.append(
                {
                    "field": name,
                    "message": "Data did not match any of the schemas described in anyOf.",
                }
            )
    if errors:
        raise ApiError(400, "Invalid Resource", "Your merge fields were invalid.", errors)
    return dict(value)


def _page(query: dict[str, str]) -> tuple[int, int]:
    """`count` (default 10, ≤ 1000) and `offset` (push §3.9); assumed: more than 1000 is a 400."""
    count_text, offset_text = query.get("count", str(DEFAULT_COUNT)), query.get("offset", "0")
    if not count_text.isdigit() or not 1 <= int(count_text) <= MAX_COUNT:
        raise invalid("count", f"Value must be a whole number from 1 to {MAX_COUNT}.")
    if not offset_text.isdigit():
        raise invalid("offset", "Value must be a whole number.")
    return int(count_text), int(offset_text)


def _tar_gz(name: str, content: bytes) -> bytes:
    """A reproducible .tar.gz holding one file (push §3.8: results are an archive)."""
    tar_bytes = io.BytesIO()
    with tarfile.open(fileobj=tar_bytes, mode="w") as archive:
        info = tarfile.TarInfo(name)
        info.size = len(content)
        archive.addfile(info, io.BytesIO(content))
    return gzip.compress(tar_bytes.getvalue(), mtime=0)


def create_app(
    api_key: str = DEFAULT_API_KEY,
    *,
    client_id: str = DEFAULT_CLIENT_ID,
    client_secret: str = DEFAULT_CLIENT_SECRET,
    redirect_uris: tuple[str, ...] = (),
    max_connections: int | None = MAX_CONNECTIONS,
    per_second: int | None = None,
    default_account: bool = True,
    **options: Unpack[SandboxOptions],
) -> SandboxApp:
    """A fresh sandbox app (`app.state.sandbox` is the `MailchimpSandbox`).

    `api_key`: the default account's (with one audience; `default_account=False` starts
    empty); `client_id`/`client_secret`/`redirect_uris`: the OAuth app (no URIs: any);
    `max_connections`: per account (push §3.11; None: off); `per_second`: not Mailchimp's,
    for the CLI's `--per-second`.
    """
    return MailchimpSandbox(
        api_key,
        client_id=client_id,
        client_secret=client_secret,
        redirect_uris=redirect_uris,
        max_connections=max_connections,
        per_second=per_second,
        default_account=default_account,
        **options,
    ).app
