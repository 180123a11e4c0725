"""Fixtures shared by every test: both databases, one Prefect harness, no stray settings."""

from __future__ import annotations

import os
from collections.abc import Generator, Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from bench.local import POSTGRES_ADMIN_URL, fresh_database

# Settings come from each test, never from a developer's .env or shell.
os.environ["SYNCFLOWS_ENV_FILE"] = os.devnull
_PREFIXES = (
    "MAILER_LITE_",
    "BREVO_",
    "MAILCHIMP_",
    "AC_",
    "MAGENTO_",
    "SELFCHECK_",
    "SENTRY_",
    "HTTP_",
)
for _name in list(os.environ):
    if _name.startswith(_PREFIXES) or _name in (
        "DATABASE_URL",
        "PREFECT_API_URL",
        "SYNCFLOWS_GLOBAL_LIMITS",
        "SYNCFLOWS_LEASE_SECONDS",
        "SYNCFLOWS_ALERT_BLOCK",
        "SYNCFLOWS_ALERT_WEBHOOK_URL",
        "SYNCFLOWS_HEARTBEAT_SECONDS",
    ):
        del os.environ[_name]
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"


def _postgres_answers() -> str | None:
    """None when PostgreSQL accepts our connection, else the reason it does not."""
    url = sa.make_url(POSTGRES_ADMIN_URL)
    engine = sa.create_engine(url, connect_args={"connect_timeout": 2})
    try:
        with engine.connect():
            pass
    except sa.exc.OperationalError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        return f"PostgreSQL not usable at {url.host}:{url.port or 5432} ({reason})"
    finally:
        engine.dispose()
    return None


POSTGRES_MISSING = _postgres_answers()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if POSTGRES_MISSING and os.environ.get("SYNCFLOWS_REQUIRE_POSTGRES"):
        raise pytest.UsageError(f"SYNCFLOWS_REQUIRE_POSTGRES is set but {POSTGRES_MISSING}")
    if os.environ.get("PYTEST_XDIST_WORKER"):
        # The minute-long end-to-end tests start first, so that none of them starts last while
        # the other workers have run out of tests.
        items.sort(key=lambda item: item.get_closest_marker("e2e") is None)


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    if POSTGRES_MISSING:
        pytest.skip(POSTGRES_MISSING)
    with fresh_database() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: object) -> str:
    """Each state test runs on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/state.db"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def migrated_url(database_url: str) -> str:
    """`database_url`, migrated to the newest schema."""
    from shared.db import migrate

    migrate(database_url)
    return database_url


@pytest.fixture
def sentry_events(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A local Sentry receiver as `SENTRY_DSN`; yields its state (`.events`, `.raw`)."""
    from sandbox.server import serve
    from shared import observability
    from tests.support.sentry_receiver import create_receiver

    receiver = create_receiver()
    with serve(receiver) as base_url:
        host = base_url.removeprefix("http://")
        monkeypatch.setenv("SENTRY_DSN", f"http://publickey123456@{host}/42")
        yield receiver.state
    import sentry_sdk

    sentry_sdk.get_client().close()
    monkeypatch.setattr(observability, "_sentry_dsn", None)


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """One temporary Prefect API for the whole session (it costs ~10 s to start)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=90):
        yield


_MEASURED: list[str] = []


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport() -> Generator[None, pytest.TestReport, pytest.TestReport]:
    # Figures ride on the test's report: under xdist (make test) the test ran in a worker, and
    # only its reports reach the process that prints the summary.
    from tests.support.measure import MEASUREMENTS

    report = yield
    report.user_properties.extend(("measured", line) for line in MEASUREMENTS)
    MEASUREMENTS.clear()
    return report


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    _MEASURED.extend(str(value) for name, value in report.user_properties if name == "measured")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _MEASURED:
        terminalreporter.section("measured")
        for line in _MEASURED:
            terminalreporter.write_line(line)
