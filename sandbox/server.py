"""Serve an ASGI app on loopback from a background thread (tests, demo, bench)."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn


def listening_socket(host: str, port: int) -> socket.socket:
    """A TCP socket listening on `host:port` (0: a free port), for uvicorn to serve on.

    It listens at once, so a client told the address early is queued, not refused, until the
    server starts accepting.
    """
    # IPPROTO_TCP, not the default 0: asyncio sets TCP_NODELAY only on sockets whose proto is
    # TCP, and without it Nagle's algorithm holds each response body until the client's delayed
    # ACK, adding ~40 ms to every loopback request.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen()
    return sock


@contextmanager
def serve(app: Any, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Run `app` under uvicorn until the block exits; yields its base URL (a free port if 0)."""
    sock = listening_socket(host, port)
    # The sandbox sends its own `Date`, from its clock.
    config = uvicorn.Config(
        app, log_level="warning", access_log=False, lifespan="off", date_header=False
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])), daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("sandbox server did not start")
        time.sleep(0.01)
    try:
        yield f"http://{host}:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=5)
        sock.close()
