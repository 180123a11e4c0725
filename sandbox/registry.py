"""Sandboxes by name, so `syncflows sandbox <provider> --port N` can serve any of them.

Each entry names a factory as "module:function", imported only when used, so the registry
never imports every provider. A factory takes keyword options (`sandbox.base.SandboxOptions`
plus its own) with defaults for everything, credentials included, and returns the ASGI app.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import uvicorn

from sandbox.server import listening_socket

SANDBOXES: dict[str, str] = {
    "activecampaign": "sandbox.activecampaign:create_app",
    "selfcheck": "sandbox.selfcheck:create_app",
}


class UnknownSandbox(LookupError):
    """No sandbox is registered under that name."""


def factory(name: str) -> Callable[..., Any]:
    """The app factory registered as `name`."""
    try:
        module_name, function = SANDBOXES[name].split(":")
    except KeyError:
        known = ", ".join(sorted(SANDBOXES))
        raise UnknownSandbox(f"no sandbox called {name!r}; known: {known}") from None
    created: Callable[..., Any] = getattr(importlib.import_module(module_name), function)
    return created


def create_app(name: str, **options: Any) -> Any:
    """A fresh app of the sandbox `name`, built with `options`."""
    return factory(name)(**options)


def main_sandbox(provider: str, port: int, host: str = "127.0.0.1", **options: Any) -> None:
    """Serve the `provider` sandbox on `host:port` (0: a free port) until interrupted.

    Prints one line with the base URL first, so a script can read where to connect.
    """
    app = create_app(provider, **options)
    sock = listening_socket(host, port)
    url = f"http://{host}:{sock.getsockname()[1]}"
    print(f"{provider} sandbox listening on {url}", flush=True)  # noqa: T201 - the CLI's output
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="info", lifespan="off", date_header=False)
    )
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn re-raises Ctrl+C after shutting down cleanly
        pass
    finally:
        sock.close()
