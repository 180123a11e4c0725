"""A small stateful API for the self-check flow: the path settings → DB → HTTP → ledger.

`X-Api-Key` auth (401 `{"message": "Unauthenticated."}`), `PUT /items/{key}` upserts an item
(201 created, 200 updated, 422 with field errors for an invalid email), `GET /items` pages
through them, `GET /echo` answers `{"ok": true}`. Laravel-flavoured, like MailerLite. Built on
`sandbox.base`, so it logs every request and takes faults, latency and a time scale; it has no
rate limit unless `per_second` is given (the limit tests measure the client's own pacing).
"""

from __future__ import annotations

from typing import Any, Unpack

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from sandbox.base import Sandbox, SandboxApp, SandboxOptions
from sandbox.limits import RateLimit, Window, json_rejection, x_ratelimit_headers

DEFAULT_API_KEY = "selfcheck-sandbox-key"  # for `syncflows sandbox selfcheck`; tests pass their own
PAGE_SIZE = 100


class SelfcheckSandbox(Sandbox):
    """The self-check API; `items` maps each key to the stored item."""

    def __init__(
        self, api_key: str, *, per_second: int | None = None, **options: Unpack[SandboxOptions]
    ) -> None:
        limits = []
        if per_second is not None:
            limits.append(
                RateLimit(
                    Window(per_second, 1.0),
                    headers=x_ratelimit_headers,
                    reject=json_rejection({"message": "Too Many Attempts."}),
                )
            )
        super().__init__(limits=limits, **options)
        self.api_key = api_key
        self.items: dict[str, dict[str, Any]] = {}

    def authenticate(self, request: Request) -> Response | None:
        if request.headers.get("X-Api-Key") != self.api_key:
            return JSONResponse({"message": "Unauthenticated."}, status_code=401)
        return None

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/items/{key}", self.put_item, methods=["PUT"]),
            Route("/items", self.list_items, methods=["GET"]),
            Route("/echo", self.echo, methods=["GET"]),
        ]

    async def put_item(self, request: Request) -> JSONResponse:
        """Upsert: 201 when new, 200 when replaced, 422 when the email has no @."""
        key = request.path_params["key"]
        body = await request.json()
        if "@" not in body.get("email", ""):
            return JSONResponse(
                {
                    "message": "The given data was invalid.",
                    "errors": {"email": ["The email must be a valid email address."]},
                },
                status_code=422,
            )
        created = key not in self.items
        self.items[key] = {"id": f"sc-{key}", **body}
        return JSONResponse(self.items[key], status_code=201 if created else 200)

    async def list_items(self, request: Request) -> JSONResponse:
        """One page of items in key order, with the total."""
        page = int(request.query_params.get("page", 1))
        keys = sorted(self.items)[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
        return JSONResponse({"data": [self.items[k] for k in keys], "total": len(self.items)})

    async def echo(self, request: Request) -> JSONResponse:  # noqa: ARG002 - a route handler
        """A cheap authenticated request, for load and limit tests."""
        return JSONResponse({"ok": True})


def create_app(
    api_key: str = DEFAULT_API_KEY,
    *,
    per_second: int | None = None,
    **options: Unpack[SandboxOptions],
) -> SandboxApp:
    """A fresh sandbox; its state is `app.state.sandbox` (a `SelfcheckSandbox`)."""
    return SelfcheckSandbox(api_key, per_second=per_second, **options).app
