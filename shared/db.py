"""Engines, sessions, migrations and dialect-neutral upserts for the state store.

`DATABASE_URL` picks the database: a SQLite file by default, `postgresql+psycopg://…` for
PostgreSQL. `ensure_schema` migrates to the newest revision on first use in a process, so a first
run on an empty database needs no extra step.
"""

from __future__ import annotations

import asyncio
import fcntl
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, SQLModel

T = TypeVar("T")

ROOT = Path(__file__).resolve().parent.parent
_engines: dict[str, sa.Engine] = {}
_engines_lock = threading.Lock()
_migrated: set[str] = set()
_migrate_lock = threading.Lock()


def get_engine(url: str) -> sa.Engine:
    """One engine per database URL per process."""
    with _engines_lock:
        engine = _engines.get(url)
        if engine is None:
            engine = _engines[url] = _create_engine(url)
        return engine


def dispose_engine(url: str) -> None:
    """Close the pooled connections of `url` (before dropping a database, in tests)."""
    with _engines_lock:
        engine = _engines.pop(url, None)
    if engine is not None:
        engine.dispose()


def _prepare_sqlite_path(url: str) -> Path | None:
    """For a SQLite file URL, create its folder (a fresh checkout has none) and return the path."""
    parsed = sa.make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    path = Path(parsed.database)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _create_engine(url: str) -> sa.Engine:
    parsed = sa.make_url(url)
    _prepare_sqlite_path(url)
    if parsed.get_backend_name() == "sqlite":
        engine = sa.create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 30}, hide_parameters=True
        )
        sa.event.listen(engine, "connect", sqlite_pragmas)
        return engine
    # hide_parameters: SQL errors must not carry row values (tokens, personal data) into logs.
    return sa.create_engine(url, pool_pre_ping=True, hide_parameters=True)


def sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """Connection setup for SQLite: WAL, a busy timeout, foreign keys."""
    # WAL lets readers (status, tests) work while a flow writes; busy_timeout makes concurrent
    # writers from two flow runs wait instead of failing with "database is locked".
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


@contextmanager
def session_scope(url: str) -> Iterator[Session]:
    """A session whose work commits on success and rolls back on any exception."""
    with Session(get_engine(url), expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


async def in_thread(url: str, work: Callable[[Session], T]) -> T:
    """Run `work(session)` in one transaction on a worker thread: a busy database must never
    stall the event loop that paces requests."""

    def transaction() -> T:
        with session_scope(url) as session:
            return work(session)

    return await asyncio.to_thread(transaction)


def alembic_config(url: str) -> Config:
    """An Alembic config for `url` that works from any working directory."""
    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(ROOT / "migrations"))
    config.attributes["database_url"] = url
    return config


def migrate(url: str) -> None:
    """Upgrade the database at `url` to the newest revision.

    Two first runs may migrate at once: PostgreSQL serialises them with an advisory lock (in
    migrations/env.py); SQLite has none, so a lock file beside the database does it here.
    """
    path = _prepare_sqlite_path(url)
    if path is None:
        command.upgrade(alembic_config(url), "head")
        return
    with open(f"{path}.migrate.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        command.upgrade(alembic_config(url), "head")


def ensure_schema(url: str) -> None:
    """Migrate once per process and URL; later calls return at once."""
    with _migrate_lock:
        if url not in _migrated:
            migrate(url)
            _migrated.add(url)


def insert_for(session: Session) -> Any:
    """The dialect's `insert` (PostgreSQL or SQLite), the one that has `on_conflict_do_*`."""
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert


def upsert(
    session: Session,
    model: type[SQLModel],
    rows: Sequence[dict[str, Any]],
    *,
    keys: Sequence[str],
    update: Sequence[str] | None = None,
) -> None:
    """Insert `rows`, updating `update` columns (default: all non-key) where `keys` collide.

    Uses `INSERT … ON CONFLICT` on both PostgreSQL and SQLite; an empty `update` means
    "insert if absent" (`DO NOTHING`).
    """
    if not rows:
        return
    table: sa.Table = model.__table__  # type: ignore[attr-defined]
    statement = insert_for(session)(table)
    columns = [c for c in rows[0] if c not in keys] if update is None else list(update)
    if columns:
        statement = statement.on_conflict_do_update(
            index_elements=list(keys),
            set_={column: statement.excluded[column] for column in columns},
        )
    else:
        statement = statement.on_conflict_do_nothing(index_elements=list(keys))
    # Rows as parameters, not `.values(rows)`: the statement then compiles once and is cached,
    # and SQLAlchemy still sends batched multi-row INSERTs ("insertmanyvalues"). Compiling a
    # 100-row VALUES clause on every page cost more CPU than the rest of the page together.
    session.execute(statement, list(rows))
