"""Sandboxes by name, so `syncflows sandbox <provider> --port N` can serve any of them.

Each entry names a factory as "module:function", imported only when used, so the registry
never imports every provider. A factory takes keyword options (`sandbox.base.SandboxOptions`
plus its own) with defaults for everything, credentials included, and returns the ASGI app.

A sandbox served in its own process (benchmarks, so the client's memory is measured alone)
can leave a summary of its request log in a JSON file when it stops (`request_stats`).
"""

from __future__ import annotations

import gc
import importlib
import json
import re
import signal
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import uvicorn

from sandbox.request_log import LogEntry
from sandbox.server import listening_socket

SANDBOXES: dict[str, str] = {
    "activecampaign": "sandbox.activecampaign:create_app",
    "mailerlite": "sandbox.mailerlite:create_app",
    "mailchimp": "sandbox.mailchimp:create_app",
    "brevo": "sandbox.brevo:create_app",
    "magento": "sandbox.magento:create_app",
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


# `/api/3/contacts/7` → "contacts": a versioned API prefix is not an endpoint.
# `/api`, with a version segment when there is one (`/api/3`, `/api/v2`): MailerLite has none.
_API_PREFIX = re.compile(r"^/api(?:/v?\d[^/]*)?(?=/|$)")


def endpoint(path: str) -> str:
    """The first path segment after any `/api[/<version>]` prefix ("" for the root)."""
    return _API_PREFIX.sub("", path).strip("/").split("/")[0]


# Hex ids: Mailchimp's list and batch ids (10 characters) and subscriber hashes (32).
_HEX_ID = re.compile(r"^(?=.*\d)[0-9a-f]{8,}$")


def route(path: str) -> str:
    """The path after any `/api[/<version>]` prefix with numeric and hex ids as `{id}`."""
    parts = _API_PREFIX.sub("", path).strip("/").split("/")
    return "/".join("{id}" if part.isdigit() or _HEX_ID.match(part) else part for part in parts)


def request_stats(log: Iterable[LogEntry]) -> dict[str, Any]:
    """A request log in numbers: total, by status (`none`: no answer sent), by endpoint
    (first path segment, see `endpoint`) and by route (`contacts/{id}/fieldValues`)."""
    statuses: Counter[str] = Counter()
    endpoints: Counter[str] = Counter()
    routes: Counter[str] = Counter()
    for entry in log:
        statuses[str(entry.status) if entry.status is not None else "none"] += 1
        endpoints[endpoint(entry.path)] += 1
        routes[route(entry.path)] += 1
    return {
        "requests": sum(statuses.values()),
        "by_status": dict(sorted(statuses.items())),
        "by_endpoint": dict(sorted(endpoints.items())),
        "by_route": dict(sorted(routes.items())),
    }


def _interrupt(*_: object) -> None:
    """A signal handler that unwinds like Ctrl+C."""
    raise KeyboardInterrupt


def main_sandbox(
    provider: str,
    port: int,
    host: str = "127.0.0.1",
    *,
    stats_file: str | Path | None = None,
    **options: Any,
) -> None:
    """Serve the `provider` sandbox on `host:port` (0: a free port) until interrupted.

    Prints one line with the base URL first, so a script can read where to connect. With
    `stats_file`, writes `request_stats` of everything served there on the way out, after
    SIGINT or SIGTERM alike.
    """
    app = create_app(provider, **options)
    # The generated account lives as long as the process. Frozen, it is left out of full
    # collections, which otherwise pause the loop (24 ms for the seed account, more as the
    # request log grows) and stamp the requests that arrive meanwhile late: bunched stamps
    # read as a burst to the rate limit.
    gc.freeze()
    sock = listening_socket(host, port)
    url = f"http://{host}:{sock.getsockname()[1]}"
    print(f"{provider} sandbox listening on {url}", flush=True)  # noqa: T201 - the CLI's output
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="info", lifespan="off", date_header=False)
    )
    main = threading.current_thread() is threading.main_thread()
    # uvicorn shuts down cleanly on SIGTERM, then raises the signal again; by default that kills
    # the process before `finally` runs. Unwinding as from Ctrl+C, the stats are still written.
    previous = signal.signal(signal.SIGTERM, _interrupt) if main else None
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn re-raises Ctrl+C after shutting down cleanly
        pass
    finally:
        sock.close()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        if stats_file is not None:
            stats = request_stats(app.state.sandbox.log)
            Path(stats_file).write_text(json.dumps(stats, indent=2) + "\n")
