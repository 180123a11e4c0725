"""The production-user rule and the tier rule, and the application tables' migration."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from flows.mailerlite.tables import Subscription
from flows.mailerlite.users import current_tier, excluded_patterns, is_excluded
from shared.db import migrate
from shared.settings import MailerLiteSettings

DEFAULT = excluded_patterns(MailerLiteSettings(_env_file=None).excluded_emails)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("email", "excluded"),
    [
        ("ann@mail.example", False),
        ("ann+test@mail.example", True),
        ("ann+demo@gmail.com", True),
        ("qa@test.acme.io", True),
        ("bob@example.com", True),
        ("bob@sub.example.com", False),  # only the reserved second-level names themselves
        ("carol@host.test", True),
        ("dave@contest.io", False),
        ("erin@latest.example", False),
    ],
)
def test_default_excluded_addresses(email: str, excluded: bool) -> None:
    assert is_excluded(email, DEFAULT) is excluded


def sub(tier: str, status: str, day: int) -> Subscription:
    started = datetime(2026, 1, day, tzinfo=UTC)
    return Subscription(id=day, user_id=1, plan=tier, tier=tier, status=status, started_at=started)


def test_the_best_active_tier_wins_and_cancelled_ones_do_not_count() -> None:
    subs = [
        sub("premium", "canceled", 1),
        sub("starter", "active", 2),
        sub("standard", "active", 3),
    ]
    assert current_tier(user_active=False, subscriptions=subs) == "standard"


def test_an_active_user_without_active_subscriptions_keeps_the_latest_tier() -> None:
    subs = [sub("premium", "canceled", 5), sub("standard", "past_due", 2)]
    assert current_tier(user_active=True, subscriptions=subs) == "premium"
    assert current_tier(user_active=False, subscriptions=subs) == "starter"


def test_no_subscriptions_or_unknown_tiers_are_the_free_tier() -> None:
    assert current_tier(user_active=True, subscriptions=[]) == "starter"
    assert current_tier(user_active=True, subscriptions=[sub("enterprise", "active", 1)]) == (
        "starter"
    )


def test_an_application_database_keeps_its_own_users_table(database_url: str) -> None:
    engine = sa.create_engine(database_url)
    with engine.begin() as connection:
        connection.execute(
            sa.text("CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT, nickname TEXT)")
        )
    engine.dispose()
    migrate(database_url)
    engine = sa.create_engine(database_url)
    inspector = sa.inspect(engine)
    assert {c["name"] for c in inspector.get_columns("users")} == {"id", "email", "nickname"}
    assert "subscriptions" in inspector.get_table_names()
    engine.dispose()
