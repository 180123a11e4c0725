"""Local infrastructure that the benchmarks and the end-to-end tests start and watch: fresh
PostgreSQL databases, a real `prefect server start` on loopback backed by one of them, and the
machine's process table."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import sqlalchemy as sa

POSTGRES_ADMIN_URL = os.environ.get(
    "TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


@contextmanager
def fresh_database(prefix: str = "syncflows_test") -> Iterator[str]:
    """A new, empty database on the admin URL's server; yields its psycopg URL."""
    from shared.db import dispose_engine

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        dispose_engine(url)
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def free_port() -> int:
    """A free port below Linux's ephemeral range (32768+).

    The server binds it only seconds later; a port from the ephemeral range could meanwhile be
    taken by a connection another test opens (under xdist, tests run side by side).
    """
    while True:
        port = random.randrange(20_000, 32_000)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port


def stop_group(process: subprocess.Popen[bytes], timeout: float = 15) -> None:
    """SIGTERM the process group started with `start_new_session`; SIGKILL if it lingers."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:  # prefect-notes §3: workers may ignore SIGTERM
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@dataclass(frozen=True)
class PrefectServer:
    api_url: str
    pid: int


@contextmanager
def prefect_server(
    database_url: str, home: Path, timeout: float = 180, env: Mapping[str, str] | None = None
) -> Iterator[PrefectServer]:
    """Start a Prefect server on `database_url` (a psycopg URL), with `env` on top of the
    settings below; its log is `home/server.log`."""
    port = free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    asyncpg_url = sa.make_url(database_url).set(drivername="postgresql+asyncpg")
    server_env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_API_DATABASE_CONNECTION_URL": asyncpg_url.render_as_string(hide_password=False),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "false",
        # Leases on disk survive a server restart (README: Deploy); the default keeps them in
        # memory, and a restart would leave a held baton taken for good.
        "PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE": (
            "prefect.server.concurrency.lease_storage.filesystem"
        ),
        "PREFECT_API_URL": api_url,
        **(env or {}),
    }
    command = [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1"]
    with (home / "server.log").open("w") as log:
        process = subprocess.Popen(
            [*command, "--port", str(port)],
            env=server_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"prefect server: {(home / 'server.log').read_text()[-3000:]}")
            try:
                if httpx.get(f"{api_url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.25)
        yield PrefectServer(api_url, process.pid)
    finally:
        stop_group(process)


def process_table() -> dict[int, tuple[str, int, int]]:
    """pid → (command name, parent pid, CPU ticks used) of every process."""
    table = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            text = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        name, _, rest = text.partition(" (")[2].rpartition(") ")
        fields = rest.split()
        table[int(entry.name)] = (name, int(fields[1]), int(fields[11]) + int(fields[12]))
    return table
