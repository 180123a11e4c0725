"""A small stateful API for the self-check flow: the path settings → DB → HTTP → ledger.

`X-Api-Key` auth (401 `{"message": "Unauthenticated."}`), `PUT /items/{key}` upserts an item
(201 created, 200 updated, 422 with field errors for an invalid email), `GET /items` pages
through them. Every request is logged with its arrival time for assertions.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


@dataclass
class Arrival:
    method: str
    path: str
    at: float


@dataclass
class SelfcheckState:
    api_key: str
    items: dict[str, dict[str, Any]] = field(default_factory=dict)
    log: list[Arrival] = field(default_factory=list)


def create_app(api_key: str) -> Starlette:
    """A fresh sandbox; its state is `app.state.sandbox`."""
    state = SelfcheckState(api_key=api_key)

    async def authorised(request: Request) -> JSONResponse | None:
        state.log.append(Arrival(request.method, request.url.path, time.time()))
        if request.headers.get("X-Api-Key") != state.api_key:
            return JSONResponse({"message": "Unauthenticated."}, status_code=401)
        return None

    async def put_item(request: Request) -> JSONResponse:
        if denied := await authorised(request):
            return denied
        key = request.path_params["key"]
        body = await request.json()
        email = body.get("email", "")
        if "@" not in email:
            return JSONResponse(
                {
                    "message": "The given data was invalid.",
                    "errors": {"email": ["The email must be a valid email address."]},
                },
                status_code=422,
            )
        created = key not in state.items
        state.items[key] = {"id": f"sc-{key}", **body}
        return JSONResponse(state.items[key], status_code=201 if created else 200)

    async def list_items(request: Request) -> JSONResponse:
        if denied := await authorised(request):
            return denied
        page, per_page = int(request.query_params.get("page", 1)), 100
        keys = sorted(state.items)[(page - 1) * per_page : page * per_page]
        return JSONResponse({"data": [state.items[k] for k in keys], "total": len(state.items)})

    async def echo(request: Request) -> JSONResponse:
        if denied := await authorised(request):
            return denied
        return JSONResponse({"ok": True})

    app = Starlette(
        routes=[
            Route("/items/{key}", put_item, methods=["PUT"]),
            Route("/items", list_items, methods=["GET"]),
            Route("/echo", echo, methods=["GET"]),
        ]
    )
    app.state.sandbox = state
    return app
