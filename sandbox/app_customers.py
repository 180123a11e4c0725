"""The application's side of the Brevo demo: the `customers` table, seeded deterministically.

Most customers opt in to marketing; some did not; phones are written as people write them
(national format, spaces, a country code or not), a few are not numbers at all; addresses are
on `.example` domains (RFC 2606). `touch_customers` changes a share of them, as an hour does.
"""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from flows.brevo.tables import Customer
from sandbox.generate import FIRST_NAMES, LAST_NAMES
from shared.db import get_engine


def customer_id(n: int) -> str:
    return str(uuid.UUID(int=n))


def seed_customers(
    url: str, count: int, *, seed: int = 0, opt_in_share: float = 0.8, first: int = 1
) -> int:
    """Insert `count` customers (ids from `customer_id(first)`); returns how many opted in."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    rows = []
    for n in range(first, first + count):
        phone: str | None = None
        style = rng.random()
        number = 12_000_000 + n  # unique: Brevo refuses a phone another contact has
        if style < 0.4:
            phone = f"06 {number}"  # Dutch mobile, national format
        elif style < 0.7:
            phone = f"+31 6 {number}"
        elif style < 0.72:
            phone = "n/a"
        rows.append(
            {
                "id": customer_id(n),
                "email": f"customer{n}@shop.example",
                "first_name": rng.choice(FIRST_NAMES),
                "last_name": rng.choice(LAST_NAMES),
                "phone": phone,
                "marketing_opt_in": rng.random() < opt_in_share,
                "used_welcome_offer": rng.random() < 0.3,
                "brevo_contact_id": None,
                "updated_at": now - timedelta(minutes=rng.randrange(60 * 24 * 90)),
            }
        )
    with get_engine(url).begin() as connection:
        connection.execute(sa.insert(Customer.__table__), rows)  # type: ignore[attr-defined]
    return sum(1 for r in rows if r["marketing_opt_in"])


def touch_customers(url: str, share: float, *, seed: int = 1) -> list[str]:
    """A change of name for `share` of the customers; returns their ids."""
    rng = random.Random(seed)
    with get_engine(url).begin() as connection:
        ids = list(connection.scalars(sa.text("SELECT id FROM customers ORDER BY id")))
        chosen = sorted(rng.sample(ids, round(len(ids) * share)))
        table = Customer.__table__  # type: ignore[attr-defined]
        for cid in chosen:
            connection.execute(
                table.update()
                .where(table.c.id == cid)
                .values(last_name="Changed", updated_at=datetime.now(UTC))
            )
    return chosen
