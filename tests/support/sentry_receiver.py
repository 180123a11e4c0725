"""A local Sentry DSN endpoint that keeps every event it is sent."""

from __future__ import annotations

import gzip
import json
import zlib
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


def create_receiver() -> Starlette:
    """`app.state.events` collects decoded events; `app.state.raw` the raw envelope text."""
    events: list[dict[str, Any]] = []
    raw: list[str] = []

    async def envelope(request: Request) -> JSONResponse:
        body = await request.body()
        encoding = request.headers.get("content-encoding", "")
        if encoding == "gzip":
            body = gzip.decompress(body)
        elif encoding == "deflate":
            body = zlib.decompress(body)
        elif encoding == "br":
            import brotli  # type: ignore[import-not-found]

            body = brotli.decompress(body)
        text = body.decode()
        raw.append(text)
        lines = text.split("\n")
        for header, payload in zip(lines[1::2], lines[2::2], strict=False):
            if json.loads(header).get("type") == "event":
                events.append(json.loads(payload))
        return JSONResponse({"id": "ok"})

    app = Starlette(routes=[Route("/api/{project}/envelope/", envelope, methods=["POST"])])
    app.state.events, app.state.raw = events, raw
    return app
