"""The Brevo flow end to end over loopback, on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlmodel import select

import flows.brevo.flow
from flows.brevo.flow import brevo_sync
from flows.brevo.reconcile import load_reconciliation
from flows.brevo.tables import Customer
from sandbox.brevo import create_app
from sandbox.server import serve
from shared.db import ensure_schema, session_scope
from shared.models import SyncFailure
from shared.settings import MissingConfiguration
from shared.status import collect_status, format_status

pytestmark = pytest.mark.usefixtures("prefect_harness")
KEY = "xkeysib-brevo-test-key-1729"
LIST = 2  # the sandbox's "Customers" list
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


@pytest.fixture
def brevo(monkeypatch: pytest.MonkeyPatch, database_url: str) -> Iterator[Any]:
    app = create_app(KEY, import_seconds=0.2)
    ensure_schema(database_url)
    monkeypatch.setattr(flows.brevo.flow, "POLL_SECONDS", (0.05,))
    with serve(app) as base_url:
        monkeypatch.setenv("DATABASE_URL", database_url)
        monkeypatch.setenv("BREVO_BASE_URL", f"{base_url}/v3")
        monkeypatch.setenv("BREVO_API_KEY", KEY)
        monkeypatch.setenv("BREVO_LIST_ID", str(LIST))
        monkeypatch.setenv("BREVO_DEFAULT_COUNTRY", "NL")
        monkeypatch.setenv("HTTP_TIMEOUT_SECONDS", "5")
        yield app.state.sandbox


def add_customers(url: str, count: int, start: int = 0, **columns: Any) -> list[str]:
    ids = []
    with session_scope(url) as session:
        for n in range(start, start + count):
            customer_id = str(uuid.UUID(int=n + 1))
            values = {
                "email": f"customer{n}@shop.example",
                "first_name": f"First{n}",
                "last_name": f"Last{n}",
                "phone": f"06 {10_000_000 + n:08d}",
                "marketing_opt_in": True,
                "used_welcome_offer": n % 3 == 0,
                "updated_at": NOW,
                **columns,
            }
            session.add(Customer(id=customer_id, **values))
            ids.append(customer_id)
    return ids


def customers(url: str) -> dict[str, Customer]:
    with session_scope(url) as session:
        return {c.id: c for c in session.exec(select(Customer))}


def writes(sandbox: Any, since: int = 0) -> list[Any]:
    return [e for e in sandbox.log[since:] if e.method != "GET"]


def open_failures(url: str) -> dict[str, SyncFailure]:
    with session_scope(url) as session:
        rows = session.exec(select(SyncFailure).where(SyncFailure.resolved_at == None))  # noqa: E711
        return {f.record_key: f for f in rows}


def assert_in_brevo(sandbox: Any, url: str) -> None:
    """Every opted-in customer is a contact with the right attributes and the id written back."""
    for customer in customers(url).values():
        if not customer.marketing_opt_in:
            continue
        found = sandbox.contact(customer.email.strip().lower())
        assert found is not None, customer.email
        assert found["id"] == customer.brevo_contact_id
        attributes = found["attributes"]
        assert attributes["FIRSTNAME"] == customer.first_name
        assert attributes["LASTNAME"] == customer.last_name
        assert bool(attributes.get("USED_WELCOME_OFFER")) is customer.used_welcome_offer
        assert LIST in found["listIds"]


async def test_many_go_by_import_ids_come_back_and_a_rerun_writes_nothing(
    brevo: Any, database_url: str
) -> None:
    add_customers(database_url, 150)
    first = await brevo_sync()
    assert first.counts.created == 150
    assert [e.path for e in writes(brevo) if e.path == "/v3/contacts/import"] == [
        "/v3/contacts/import"
    ]
    assert not [e for e in writes(brevo) if e.path == "/v3/contacts"]  # no upsert needed
    assert_in_brevo(brevo, database_url)
    sms = brevo.contact("customer7@shop.example")["attributes"]["SMS"]
    assert sms.lstrip("+") == "31610000007"  # 06 1000 0007 in the Netherlands, E.164

    before = len(brevo.log)
    second = await brevo_sync()
    assert writes(brevo, before) == []
    assert second.counts.unchanged == 150


async def test_few_changes_go_as_upserts_without_reading_known_ids(
    brevo: Any, database_url: str
) -> None:
    ids = add_customers(database_url, 120)
    await brevo_sync()
    with session_scope(database_url) as session:
        for customer_id in ids[:3]:
            session.get_one(Customer, customer_id).last_name = "Changed"
    before = len(brevo.log)
    summary = await brevo_sync()
    sent = brevo.log[before:]
    assert [e.path for e in writes(brevo, before)] == ["/v3/contacts"] * 3
    assert not [e for e in sent if e.method == "GET" and "@" in e.path]  # ids were known
    assert summary.counts.updated == 3
    assert brevo.contact("customer0@shop.example")["attributes"]["LASTNAME"] == "Changed"


async def test_a_shared_phone_fails_the_second_customer_with_brevos_message(
    brevo: Any, database_url: str
) -> None:
    add_customers(database_url, 118)
    clash = add_customers(database_url, 2, start=500, phone="+31 6 12345678")
    summary = await brevo_sync()
    assert summary.counts.failed == 1
    failures = open_failures(database_url)
    assert len(failures) == 1
    (failure,) = failures.values()
    assert failure.status_code == 400
    assert "already associated with another Contact" in failure.message
    assert failure.record_key == f"customer:{clash[1]}"  # the first took the phone
    assert brevo.contact("customer500@shop.example") is not None
    assert summary.counts.created == 119


async def test_customers_who_opt_out_leave_the_list(
    brevo: Any, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BREVO_IMPORT_THRESHOLD", "10")  # one import, not 40 upserts at 10/s
    ids = add_customers(database_url, 40)
    await brevo_sync()
    assert len(brevo.list_members(LIST)) == 40
    with session_scope(database_url) as session:
        for customer_id in ids[:10]:
            session.get_one(Customer, customer_id).marketing_opt_in = False
    await brevo_sync()
    members = brevo.list_members(LIST)
    assert len(members) == 30
    assert not {f"customer{n}@shop.example" for n in range(10)} & members
    before = len(brevo.log)
    await brevo_sync()  # done once: not again
    assert writes(brevo, before) == []


async def test_reconciliation_counts_all_five_views_case_insensitively(
    brevo: Any, database_url: str
) -> None:
    add_customers(database_url, 5)  # pushed: matched
    add_customers(database_url, 2, start=100, marketing_opt_in=False)  # never pushed: unmatched
    add_customers(database_url, 1, start=200, email="  Mixed.Case@Shop.Example ")
    brevo.add_contact("mixed.case@shop.example")  # already in Brevo, other case: matched
    brevo.add_contact("only.in.brevo@shop.example")
    brevo.add_contact("also.only@shop.example")
    await brevo_sync()
    with session_scope(database_url) as session:
        found = load_reconciliation(session, "default")
    assert found is not None
    assert {k: found[k] for k in ("source", "brevo", "matched", "unmatched", "brevo_only")} == {
        "source": 8,
        "brevo": 8,
        "matched": 6,
        "unmatched": 2,
        "brevo_only": 2,
    }
    assert (found["total"], found["synced"], found["pending"]) == (6, 6, 0)
    report = format_status(collect_status(database_url, "brevo"), database_url)
    assert "matched 6, unmatched 2, only in the provider 2" in report
    assert "total 6, synced 6, pending 0" in report


async def test_one_customer_by_id_or_email_and_a_clear_refusal(
    brevo: Any, database_url: str
) -> None:
    ids = add_customers(database_url, 3)
    out = add_customers(database_url, 1, start=50, marketing_opt_in=False)
    by_id = await brevo_sync(customer=ids[0])
    by_email = await brevo_sync(customer="  CUSTOMER1@shop.example")
    assert (by_id.mode, by_id.counts.created, by_email.counts.created) == ("single", 1, 1)
    assert brevo.contact("customer2@shop.example") is None
    with pytest.raises(ValueError, match="has not opted in to marketing"):
        await brevo_sync(customer=out[0])


async def test_an_impossible_phone_is_left_out_with_a_warning(
    brevo: Any, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    add_customers(database_url, 1, phone="12")
    summary = await brevo_sync()
    assert summary.counts.created == 1
    assert "SMS" not in brevo.contact("customer0@shop.example")["attributes"]
    assert "is not a valid number" in caplog.text


async def test_test_mode_and_missing_configuration_send_nothing(
    brevo: Any, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_customers(database_url, 5)
    dry = await brevo_sync(test_mode=True)
    assert (dry.mode, dry.requests) == ("test", 0)
    monkeypatch.delenv("BREVO_API_KEY")
    with pytest.raises(MissingConfiguration, match="BREVO_API_KEY"):
        await brevo_sync()
    assert brevo.log == []
