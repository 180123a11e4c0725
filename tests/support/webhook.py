"""A local webhook that keeps what it is sent (the alert automation's notifications)."""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


def alert_receiver() -> Starlette:
    """A webhook that keeps the JSON bodies posted to `/hook` (`app.state.posts`)."""
    posts: list[dict[str, Any]] = []

    async def hook(request: Request) -> JSONResponse:
        posts.append(await request.json())
        return JSONResponse({"ok": True})

    app = Starlette(routes=[Route("/hook", hook, methods=["POST"])])
    app.state.posts = posts
    return app
