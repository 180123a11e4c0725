"""The ActiveCampaign scenarios' machinery: the sandbox process and its request counts, the
record-by-record check (it must fail when the database is wrong), the least-request sums."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from bench.activecampaign import (
    KEY,
    as_stored,
    database_matches,
    incremental_least,
    sandbox_process,
)
from flows.activecampaign.flow import activecampaign_sync
from flows.activecampaign.tables import AcContact, AcDeal
from sandbox.activecampaign import ActiveCampaignSandbox, create_app
from sandbox.server import serve
from shared.db import dispose_engine, session_scope


def test_the_sandbox_process_counts_its_requests_when_terminated(tmp_path: Path) -> None:
    with sandbox_process(tmp_path, preset="default", per_second=None, latency=0.0) as remote:
        me = httpx.get(f"{remote.base_url}/api/3/users/me", headers={"Api-Token": KEY})
        denied = httpx.get(f"{remote.base_url}/api/3/contacts/7", headers={"Api-Token": "x"})
        stats = remote.stop()
    assert (me.status_code, denied.status_code) == (200, 403)
    assert stats == {
        "requests": 2,
        "by_status": {"200": 1, "403": 1},
        "by_endpoint": {"contacts": 1, "users": 1},
        "by_route": {"contacts/{id}": 1, "users/me": 1},
    }


def test_multi_value_fields_are_expected_as_lists_by_their_type() -> None:
    record = {
        "id": 1,
        "updated_at": datetime(2024, 5, 1, 12, tzinfo=UTC),
        "fields": {"Interests": "||Events||Webinars||", "Company": "||not a list||"},
    }
    assert as_stored(record, {"Interests": "checkbox", "Company": "text"}) == {
        "id": 1,
        "updated_at": "2024-05-01T12:00:00+00:00",
        "fields": {"Interests": ["Events", "Webinars"], "Company": "||not a list||"},
    }


def test_the_least_an_incremental_run_needs_is_spelled_out() -> None:
    assert incremental_least(500, 300) == (
        813,
        "5 definition lists + ⌈500/100⌉ contact pages + ⌈300/100⌉ deal pages"
        " + 500 /contacts/{id}/fieldValues + 300 /deals/{id}/dealCustomFieldData = 813",
    )


@pytest.fixture
def synced(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, prefect_harness: None
) -> Iterator[tuple[str, ActiveCampaignSandbox]]:
    """A small account and a database the flow has fully synced from it."""
    app = create_app(KEY, contacts=120, deals=90, per_second=None)
    url = f"sqlite:///{tmp_path}/synced.db"
    with serve(app) as base_url:
        monkeypatch.setenv("DATABASE_URL", url)
        monkeypatch.setenv("AC_API_URL", f"{base_url}/api/3")
        monkeypatch.setenv("AC_API_KEY", KEY)
        monkeypatch.setenv("AC_RATE_PER_SECOND", "1000")
        asyncio.run(activecampaign_sync())
    yield url, app.state.sandbox
    dispose_engine(url)


def test_the_check_passes_a_synced_database_and_names_what_differs(
    synced: tuple[str, ActiveCampaignSandbox],
) -> None:
    url, sandbox = synced
    matches = database_matches(url, sandbox)
    assert [(c.checked, c.ok) for c in matches.values()] == [(120, True), (90, True)]

    contacts, deals = AcContact.__table__, AcDeal.__table__  # type: ignore[attr-defined]
    with session_scope(url) as session:
        record = session.execute(sa.select(contacts.c.record).where(contacts.c.id == 7)).scalar()
        altered = {**record, "fields": {**record["fields"], "Company": "Someone Else"}}
        session.execute(sa.update(contacts).where(contacts.c.id == 7).values(record=altered))
        gone = sa.update(deals).where(deals.c.id == 11).values(deleted_at=datetime.now(UTC))
        session.execute(gone)
    matches = database_matches(url, sandbox)
    contact_check, deal_check = matches["contacts"], matches["deals"]
    assert (contact_check.different, contact_check.examples) == (1, [7])
    assert (deal_check.missing, deal_check.examples) == (1, [11])
    assert not contact_check.ok
    assert not deal_check.ok
