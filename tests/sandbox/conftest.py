"""Every sandbox test can run its client in-process and over loopback: same app, same answers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Unpack

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from sandbox.base import Sandbox, SandboxOptions
from sandbox.limits import Limit
from sandbox.server import serve

Connect = Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]
MODES = ("in-process", "loopback")


@asynccontextmanager
async def connected(mode: str, app: Any, **client_options: Any) -> AsyncIterator[httpx.AsyncClient]:
    """A client for `app`: through `httpx.ASGITransport`, or over a real socket to uvicorn."""
    if mode == "in-process":
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://sandbox", **client_options
        ) as client:
            yield client
    else:
        with serve(app) as base_url:
            async with httpx.AsyncClient(base_url=base_url, **client_options) as client:
                yield client


@pytest.fixture(params=MODES)
def connect(request: pytest.FixtureRequest) -> Connect:
    """`async with connect(app) as client:` in the mode under test."""

    def connect(app: Any, **client_options: Any) -> AbstractAsyncContextManager[httpx.AsyncClient]:
        return connected(request.param, app, **client_options)

    return connect


class PathSandbox(Sandbox):
    """Open (no auth) sandbox where every path answers its method and path, for limit tests."""

    def __init__(self, *limits: Limit, **options: Unpack[SandboxOptions]) -> None:
        super().__init__(limits=limits, **options)

    def routes(self) -> list[BaseRoute]:
        return [Route("/{path:path}", self.answer, methods=["GET", "POST", "PUT", "DELETE"])]

    async def answer(self, request: Request) -> JSONResponse:
        return JSONResponse({"method": request.method, "path": request.url.path})
