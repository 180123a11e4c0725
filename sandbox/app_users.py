"""The application's side of the MailerLite demo: users, subscriptions and conversations.

`seed_users` fills the application tables (`flows.mailerlite.tables`) with a deterministic
population: the same seed gives the same rows. Production users get addresses on `.example`
domains (RFC 2606: never a real mailbox) that the default production rule keeps; demo users
carry `is_demo`, test users `is_test` or a `+test` / `test.example` address. Some addresses
are upper-case or padded, as typed by people; `invalid_share` of them are not addresses at all
(MailerLite refuses them with a 422). `touch_users` changes some users the way a day does
(a new conversation), for the "1 % changed" bench.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from flows.mailerlite.tables import TIERS, AppUser, Conversation, Subscription
from shared.db import get_engine

DOMAINS = ("mail.example", "inbox.example", "post.example", "acme.example", "studio.example")
PLANS = {"premium": "Premium yearly", "standard": "Standard monthly", "starter": "Starter"}
SUBSCRIPTION_STATUSES = ("active", "canceled", "past_due", "trialing")
DAY = timedelta(days=1)


@dataclass
class Population:
    """How many of each kind `seed_users` made."""

    users: int = 0
    production: int = 0
    demo: int = 0
    test: int = 0
    invalid: int = 0
    subscriptions: int = 0
    conversations: int = 0


def seed_users(
    url: str,
    count: int,
    *,
    seed: int = 0,
    first_id: int = 1,
    invalid_share: float = 0.0,
    now: datetime | None = None,
) -> Population:
    """Insert `count` users (ids from `first_id`) with their subscriptions and conversations."""
    rng = random.Random(seed)
    now = now or datetime.now(UTC)
    users: list[dict[str, Any]] = []
    subscriptions: list[dict[str, Any]] = []
    conversations: list[dict[str, Any]] = []
    made = Population(users=count)
    for user_id in range(first_id, first_id + count):
        kind = rng.random()
        email = f"user{user_id}@{rng.choice(DOMAINS)}"
        is_demo = is_test = False
        if kind < 0.03:
            is_demo, email = True, f"demo-session-{user_id}@{rng.choice(DOMAINS)}"
            made.demo += 1
        elif kind < 0.04:
            is_test = True
            made.test += 1
        elif kind < 0.05:
            email = f"user{user_id}+test@{rng.choice(DOMAINS)}"  # the pattern rule's half
            made.test += 1
        elif rng.random() < invalid_share:
            email = f"user{user_id}@localhost"  # no domain dot: not an address MailerLite takes
            made.invalid += 1
        else:
            made.production += 1
        if rng.random() < 0.03:  # typed by a person: capitals, spaces around
            email = f"  {email.upper()} "
        created = now - timedelta(seconds=rng.randrange(2 * 365 * 86_400))
        never = rng.random() < 0.1
        login = None if never else created + (now - created) * rng.random()
        users.append(
            {
                "id": user_id,
                "email": email,
                "subscription_status": rng.choice(("active", "canceled", None, None)),
                "created_at": created,
                "last_login_at": login,
                "is_demo": is_demo,
                "is_test": is_test,
            }
        )
        for _ in range(rng.choice((0, 0, 1, 1, 1, 2, 3))):
            tier = rng.choices(TIERS, weights=(2, 3, 5))[0]
            started = created + (now - created) * rng.random()
            status = rng.choice(SUBSCRIPTION_STATUSES)
            subscriptions.append(
                {
                    "user_id": user_id,
                    "plan": PLANS[tier],
                    "tier": tier,
                    "status": status,
                    "started_at": started,
                    "ended_at": None if status == "active" else started + 30 * DAY,
                }
            )
        for _ in range(min(40, int(rng.expovariate(1 / 5)))):
            conversations.append(
                {"user_id": user_id, "created_at": created + (now - created) * rng.random()}
            )
    made.subscriptions, made.conversations = len(subscriptions), len(conversations)
    with get_engine(url).begin() as connection:
        for table, rows in (
            (AppUser.__table__, users),  # type: ignore[attr-defined]
            (Subscription.__table__, subscriptions),  # type: ignore[attr-defined]
            (Conversation.__table__, conversations),  # type: ignore[attr-defined]
        ):
            if rows:
                connection.execute(sa.insert(table), rows)
    _advance_sequences(url)
    return made


def touch_users(url: str, share: float, *, seed: int = 1, now: datetime | None = None) -> list[int]:
    """A day's change to `share` of the users (demo and test ones included): one new
    conversation each, so their `conversation_count` moves. Returns their ids."""
    rng = random.Random(seed)
    now = now or datetime.now(UTC)
    with get_engine(url).begin() as connection:
        ids = list(connection.scalars(sa.text("SELECT id FROM users ORDER BY id")))
        chosen = sorted(rng.sample(ids, round(len(ids) * share)))
        rows = [{"user_id": user_id, "created_at": now} for user_id in chosen]
        if rows:
            connection.execute(sa.insert(Conversation.__table__), rows)  # type: ignore[attr-defined]
    return chosen


def _advance_sequences(url: str) -> None:
    """PostgreSQL: rows inserted with explicit ids leave `users_id_seq` behind; move it on."""
    engine = get_engine(url)
    if engine.dialect.name != "postgresql":
        return
    with engine.begin() as connection:
        for table in ("users", "subscriptions", "conversations"):
            connection.execute(
                sa.text(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                    f"COALESCE((SELECT MAX(id) FROM {table}), 1))"
                )
            )
