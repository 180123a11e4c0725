"""Alembic environment: the URL comes from the caller or DATABASE_URL, never from alembic.ini."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import context
from sqlmodel import SQLModel

import flows.activecampaign.tables
import flows.brevo.tables
import flows.magento.tables
import flows.mailchimp.tables
import flows.mailerlite.tables  # noqa: F401
import shared.models  # noqa: F401  (registers the tables on SQLModel.metadata)
from shared.db import sqlite_pragmas
from shared.models import UTCDateTime
from shared.settings import load_settings

# An arbitrary constant: the key of the PostgreSQL advisory lock that stops two workers starting
# at once from running the same migration twice.
MIGRATION_LOCK_KEY = 7_305_221_118

config = context.config
url = config.attributes.get("database_url") or load_settings().database_url


def render_item(type_: str, obj: Any, _autogen_context: Any) -> str | bool:
    """Render our UTC timestamp as its plain SQL type, so migrations import nothing of ours."""
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    if type_ == "type" and type(obj).__name__ == "AutoString":
        length = getattr(obj, "length", None)
        return f"sa.String(length={length})" if length else "sa.String()"
    return False


def include_object(
    obj: Any, _name: str | None, type_: str, _reflected: bool, _compare_to: Any
) -> bool:
    """Leave out of comparisons what exists only on another dialect (GIN indexes on PostgreSQL)."""
    ddl_if = getattr(obj, "_ddl_if", None)
    if type_ == "index" and ddl_if is not None and ddl_if.dialect is not None:
        return bool(ddl_if.dialect == context.get_context().dialect.name)
    return True


def run_migrations_offline() -> None:
    context.configure(
        url=url,
        target_metadata=SQLModel.metadata,
        literal_binds=True,
        render_item=render_item,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    if engine.dialect.name == "sqlite":
        sa.event.listen(engine, "connect", sqlite_pragmas)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=SQLModel.metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            render_item=render_item,
            include_object=include_object,
            compare_type=True,
        )
        with context.begin_transaction():
            if connection.dialect.name == "postgresql":
                connection.execute(
                    sa.text("SELECT pg_advisory_xact_lock(:k)"),
                    {"k": MIGRATION_LOCK_KEY},
                )
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
