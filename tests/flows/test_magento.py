"""The Magento flow end to end over loopback, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl

import pytest
import sqlalchemy as sa
from sqlmodel import select

from flows.magento.flow import EVENT, magento_sync
from flows.magento.tables import Consumer, MagentoSyncStatus
from sandbox.magento import create_app
from sandbox.server import serve
from shared.db import ROOT, get_engine, session_scope
from shared.models import SyncCheckpoint, SyncFailure
from shared.ranges import id_ranges
from shared.settings import MissingConfiguration

pytestmark = pytest.mark.usefixtures("prefect_harness")
TOKEN = "magento-test-token-314159"
ORDERS = 1_200  # 12 pages of 100, in 2 ranges on a full sync


def _env(monkeypatch: pytest.MonkeyPatch, database_url: str, base_url: str) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("MAGENTO_BASE_URL", base_url)
    monkeypatch.setenv("MAGENTO_ACCESS_TOKEN", TOKEN)
    monkeypatch.setenv("HTTP_TIMEOUT_SECONDS", "1")


@pytest.fixture
def shop(monkeypatch: pytest.MonkeyPatch, database_url: str) -> Iterator[Any]:
    app = create_app(TOKEN, orders=ORDERS)
    with serve(app) as base_url:
        _env(monkeypatch, database_url, base_url)
        yield app.state.sandbox


# ---- what the database should hold ----------------------------------------------------------


def _email(order: dict[str, Any]) -> str | None:
    billing = order.get("billing_address") or {}
    email = (order.get("customer_email") or "").strip() or (billing.get("email") or "").strip()
    return email.lower() or None


def _purchase(order: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(order["created_at"].replace(" ", "T")).replace(tzinfo=UTC)


def expected_pairs(shop: Any) -> set[tuple[str, datetime]]:
    """Distinct (email, purchase date) over the orders that have an email."""
    return {(e, _purchase(o)) for o in shop.iter_orders() if (e := _email(o)) is not None}


def no_email_orders(shop: Any) -> set[int]:
    return {int(o["entity_id"]) for o in shop.iter_orders() if _email(o) is None}


def stored_pairs(url: str) -> list[tuple[str, datetime]]:
    with session_scope(url) as session:
        return [(c.email, c.purchase_date) for c in session.exec(select(Consumer))]


def assert_consumers_match(url: str, shop: Any) -> None:
    stored = stored_pairs(url)
    assert len(stored) == len(set(stored)), "a pair stored twice"
    assert set(stored) == expected_pairs(shop)


def status_rows(url: str) -> dict[str, MagentoSyncStatus]:
    with session_scope(url) as session:
        return {row.sync_type: row for row in session.exec(select(MagentoSyncStatus))}


def order_requests(shop: Any, since: int = 0) -> list[dict[str, str]]:
    return [
        dict(parse_qsl(e.query_string, keep_blank_values=True))
        for e in shop.log[since:]
        if e.path.endswith("/V1/orders") and e.status == 200
    ]


def _condition(query: dict[str, str], condition: str) -> str:
    """The value of the request's filter with this `condition_type`."""
    for key, value in query.items():
        if key.endswith("[condition_type]") and value == condition:
            return query[key.replace("[condition_type]", "[value]")]
    raise AssertionError(f"no {condition} filter in {query}")


def _gt(query: dict[str, str]) -> int:
    """The `entity_id gt` value of a keyset request."""
    return int(_condition(query, "gt"))


# ---- behaviour --------------------------------------------------------------------------------


async def test_first_run_reads_everything_and_a_rerun_sends_one_request(
    shop: Any, database_url: str
) -> None:
    first = await magento_sync()
    assert first.mode == "full"
    assert_consumers_match(database_url, shop)
    missing = no_email_orders(shop)
    assert missing, "the generator makes orders without email"
    assert first.counts.failed == len(missing)
    assert first.counts.created == len(expected_pairs(shop))
    assert first.counts.skipped == ORDERS - len(missing) - first.counts.created  # same pair
    with session_scope(database_url) as session:
        failures = session.exec(select(SyncFailure)).all()
    assert {f.record_key for f in failures} == {f"order:{i}" for i in missing}
    assert {f.message for f in failures} == {"no email"}
    rows = status_rows(database_url)
    assert rows["full"].status == "stopped"
    assert rows["full"].last_entity_id == max(int(o["entity_id"]) for o in shop.iter_orders())
    assert rows["full"].total_processed == rows["full"].total_orders == ORDERS

    before = len(shop.log)
    second = await magento_sync()
    assert second.mode == "incremental"
    assert len(order_requests(shop, before)) == 1
    assert second.counts.created == 0
    assert status_rows(database_url)["incremental"].status == "stopped"
    assert_consumers_match(database_url, shop)


async def test_the_watermark_is_the_newest_order_whichever_range_ends_last(
    shop: Any, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CI once saw the first range, ending last, store the open range's mark of that moment.
    Here the open range's last page waits 1 s, and the first range's last page 2 s between
    its answer and its write."""
    import flows.magento.api
    import flows.magento.flow

    ids = sorted(int(o["entity_id"]) for o in shop.iter_orders())
    (_, through), (open_start, _) = id_ranges(ids[-1], 2, 100)
    assert through is not None
    first_range = [i for i in ids if i <= through]
    above = [i for i in ids if i > open_start]
    last_after = above[(len(above) - 1) // 100 * 100 - 1]
    read, store = flows.magento.api.Magento.orders_after, flows.magento.flow.store_orders

    async def slow_read(self: Any, after: int, **kw: Any) -> Any:
        if after == last_after and kw.get("through") is None:
            await asyncio.sleep(1.0)
        return await read(self, after, **kw)

    def slow_store(session: Any, orders: Any, *args: Any, **kw: Any) -> Any:
        if any(int(o["entity_id"]) == first_range[-1] for o in orders):
            time.sleep(2.0)  # in the write's thread, before it writes: the loop goes on
        return store(session, orders, *args, **kw)

    monkeypatch.setattr(flows.magento.api.Magento, "orders_after", slow_read)
    monkeypatch.setattr(flows.magento.flow, "store_orders", slow_store)
    await magento_sync()
    assert status_rows(database_url)["full"].last_entity_id == ids[-1]


async def test_an_incremental_run_reads_only_the_new_orders(shop: Any, database_url: str) -> None:
    await magento_sync()
    mark = status_rows(database_url)["full"].last_entity_id
    assert mark is not None
    yesterday = shop.clock.now() - 86_400
    new = shop.add_orders(1_000, created_at=datetime.fromtimestamp(yesterday, UTC))
    before = len(shop.log)
    summary = await magento_sync()
    queries = order_requests(shop, before)
    assert len(queries) == 10  # 1,000 orders in pages of 100, the last one known by total_count
    assert all(_gt(q) >= mark for q in queries)
    assert summary.counts.records_read == 1_000
    assert status_rows(database_url)["incremental"].last_entity_id == max(new)
    assert_consumers_match(database_url, shop)


async def test_magento_2_3_repeating_the_last_page_still_ends_with_exact_counts(
    monkeypatch: pytest.MonkeyPatch, database_url: str
) -> None:
    app = create_app(TOKEN, orders=ORDERS, version="2.3")
    shop = app.state.sandbox
    with serve(app) as base_url:
        _env(monkeypatch, database_url, base_url)
        first = await magento_sync()
        shop.add_orders(250, created_at=datetime.now(UTC) - timedelta(days=1))
        second = await magento_sync()
    assert first.counts.records_read == ORDERS
    assert second.counts.records_read == 250
    assert_consumers_match(database_url, shop)


async def test_test_mode_reads_one_page_and_moves_no_watermark(
    shop: Any, database_url: str
) -> None:
    summary = await magento_sync(test_mode=True, batch_size=10)
    assert summary.mode == "test"
    assert len(order_requests(shop)) == 1
    assert summary.counts.records_read == 10
    assert status_rows(database_url) == {}
    assert (await magento_sync()).mode == "full"  # still no watermark: the first real run is full


async def test_max_pages_stops_the_run_and_the_next_goes_on(shop: Any, database_url: str) -> None:
    await magento_sync(test_mode=True)  # consumers, but no watermark
    first = await magento_sync(max_pages=3)
    assert first.mode == "full"
    assert len(order_requests(shop)) == 1 + 1 + 3  # test page, newest order, 3 pages
    assert first.counts.records_read == 300
    second = await magento_sync()
    assert second.mode == "full"  # resumes the unfinished pass
    assert_consumers_match(database_url, shop)
    assert status_rows(database_url)["full"].status == "stopped"


async def test_a_full_sync_after_an_incremental_creates_no_duplicates(
    shop: Any, database_url: str
) -> None:
    await magento_sync()
    shop.add_orders(150, created_at=datetime.now(UTC) - timedelta(hours=2))
    await magento_sync()
    again = await magento_sync(full_sync=True)
    assert again.mode == "full"
    assert again.counts.created == 0
    assert again.counts.records_read == ORDERS + 150
    assert_consumers_match(database_url, shop)


async def test_an_order_committed_late_below_the_watermark_is_still_read(
    shop: Any, database_url: str
) -> None:
    await magento_sync()
    late = shop.add_orders(1, visible=False)  # its id is taken, its transaction still open
    later = shop.add_orders(3)
    await magento_sync()
    shop.reveal(late)
    summary = await magento_sync()
    assert summary.counts.records_read >= 1
    assert_consumers_match(database_url, shop)
    assert max(later) > late[0]


async def test_a_bad_order_fails_alone_and_is_retried_in_the_first_request(
    shop: Any, database_url: str
) -> None:
    await magento_sync()
    (bad,) = shop.add_orders(1, billing_address={"country_id": "Nederland"})
    first = await magento_sync()
    assert first.counts.failed == 1
    with session_scope(database_url) as session:
        failure = session.exec(
            select(SyncFailure).where(SyncFailure.record_key == f"order:{bad}")
        ).one()
    assert failure.message == "country_id 'Nederland' is not an ISO 3166 two-letter code"
    assert not failure.permanent
    shop.update_order(bad, billing_address={"country_id": "NL"})  # corrected in the shop
    before = len(shop.log)
    second = await magento_sync()
    (query,) = order_requests(shop, before)
    assert _condition(query, "in") == str(bad)  # asked for again, inside the one request
    assert second.counts.created == 1
    with session_scope(database_url) as session:
        assert session.get(SyncFailure, failure.id).resolved_at is not None  # type: ignore[union-attr]
    assert_consumers_match(database_url, shop)


async def test_orders_without_email_are_permanent_failures(shop: Any, database_url: str) -> None:
    await magento_sync()
    before = len(shop.log)
    await magento_sync()
    (query,) = order_requests(shop, before)
    assert not any(value == "in" for value in query.values())  # an order's email never changes
    with session_scope(database_url) as session:
        failures = session.exec(select(SyncFailure)).all()
    assert {f.record_key for f in failures} == {f"order:{i}" for i in no_email_orders(shop)}
    assert all(f.permanent and f.message == "no email" and f.attempts == 1 for f in failures)


async def test_store_mapping_names_the_store_of_each_consumer(shop: Any, database_url: str) -> None:
    views = {view["id"]: view for view in shop.store_views}
    website, store = next(iter(views.values()))["website_id"], max(views)
    mapping = {str(website): "web-mapped", f"store:{store}": "store-mapped"}
    await magento_sync(store_mapping=mapping)
    with session_scope(database_url) as session:
        codes = {c.order_entity_id: c.store_code for c in session.exec(select(Consumer))}
    for order in shop.iter_orders():
        entity_id = int(order["entity_id"])
        if entity_id not in codes:
            continue
        view = views[order["store_id"]]
        want = (
            "store-mapped"
            if view["id"] == store
            else "web-mapped"
            if view["website_id"] == website
            else view["code"]
        )
        assert codes[entity_id] == want, entity_id


async def test_a_run_that_creates_consumers_emits_one_event(
    monkeypatch: pytest.MonkeyPatch, shop: Any, database_url: str
) -> None:
    import prefect.events

    events: list[tuple[str, dict[str, Any]]] = []
    monkeypatch.setattr(
        prefect.events, "emit_event", lambda event, **kw: events.append((event, kw["payload"]))
    )
    summary = await magento_sync()
    await magento_sync()  # creates nothing: no event
    assert [name for name, _ in events] == [EVENT]
    payload = events[0][1]
    assert payload["count"] == summary.counts.created
    with get_engine(database_url).connect() as connection:
        low, high = connection.execute(sa.text("SELECT MIN(id), MAX(id) FROM consumer")).one()
    assert payload["consumer_ids"] == [low, high]


async def test_one_request_in_ten_failing_leaves_the_same_consumers(
    monkeypatch: pytest.MonkeyPatch, database_url: str
) -> None:
    app = create_app(TOKEN, orders=ORDERS)
    shop = app.state.sandbox
    kinds = ["429", "503", "timeout", "reset"]
    arrivals = [0]

    def every_tenth(request: Any) -> None:
        arrivals[0] += 1
        if arrivals[0] % 10 == 0:
            kind = kinds[(arrivals[0] // 10) % len(kinds)]
            shop.faults.add(kind, retry_after=0.2, seconds=2.0)

    shop.on_request(every_tenth)
    with serve(app) as base_url:
        _env(monkeypatch, database_url, base_url)
        summary = await magento_sync(batch_size=10)  # ~125 requests: every kind, often
    faulted = [e.fault for e in shop.log if e.fault]
    assert summary.state == "completed"
    assert set(faulted) == set(kinds)
    assert_consumers_match(database_url, shop)


def test_killed_full_sync_resumes_without_gaps_or_rereading_finished_pages(
    monkeypatch: pytest.MonkeyPatch, database_url: str
) -> None:
    from prefect.settings import PREFECT_API_URL

    app = create_app(TOKEN, orders=6_000, latency=0.05)
    shop = app.state.sandbox
    with serve(app) as base_url:
        _env(monkeypatch, database_url, base_url)
        monkeypatch.setenv("SYNCFLOWS_GLOBAL_LIMITS", "off")
        env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value())}
        code = "import asyncio, flows.magento.flow as f; asyncio.run(f.magento_sync(batch_size=50))"
        process = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env)
        deadline = time.monotonic() + 120
        while len(order_requests(shop)) < 30:
            assert process.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.02)
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        with session_scope(database_url) as session:
            marks = {c.part: c.value for c in session.exec(select(SyncCheckpoint))}
        assert marks, "nothing was checkpointed before the kill"
        before = len(shop.log)
        summary = asyncio.run(magento_sync(batch_size=50))
    assert summary.mode == "full"
    assert_consumers_match(database_url, shop)
    reread = [_gt(q) for q in order_requests(shop, before) if "fields" in q]
    for part, value in marks.items():
        if part.startswith("range:") and value != "done":
            start = int(part.split(":")[1])
            assert not [g for g in reread if start <= g < int(value)], f"range {start} re-read"
    with get_engine(database_url).connect() as connection:
        assert connection.scalar(sa.text("SELECT COUNT(*) FROM sync_checkpoint")) == 0


async def test_bad_parameters_and_missing_configuration_stop_before_any_request(
    shop: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ValueError, match="batch_size must be between 1 and 300"):
        await magento_sync(batch_size=500)
    monkeypatch.delenv("MAGENTO_ACCESS_TOKEN")
    monkeypatch.setenv("MAGENTO_BASE_URL", "")
    with pytest.raises(MissingConfiguration) as missing:
        await magento_sync()
    assert "MAGENTO_ACCESS_TOKEN" in str(missing.value)
    assert "MAGENTO_BASE_URL" in str(missing.value)
    assert shop.log == []


async def test_a_single_order_is_read_by_its_entity_id(shop: Any, database_url: str) -> None:
    order = next(o for o in shop.iter_orders() if _email(o) is not None)
    summary = await magento_sync(order_id=int(order["entity_id"]))
    assert summary.mode == "single"
    assert stored_pairs(database_url) == [(_email(order), _purchase(order))]
    assert status_rows(database_url) == {}


async def test_status_answers_the_seeds_sync_status(shop: Any, database_url: str) -> None:
    from shared.status import collect_status, format_status

    summary = await magento_sync()
    (status,) = collect_status(database_url, "magento")
    report = format_status([status], "db")
    top = max(int(o["entity_id"]) for o in shop.iter_orders())
    assert f"  full        stopped, watermark entity_id {top}" in report
    assert f"processed {ORDERS} of {ORDERS}, created {summary.counts.created}" in report
    with get_engine(database_url).connect() as connection:
        latest = connection.execute(sa.text("SELECT * FROM magento_latest_sync")).mappings().one()
        stats = connection.execute(sa.text("SELECT * FROM magento_sync_statistics")).mappings()
        assert latest["state"] == "completed"
        assert latest["created"] == summary.counts.created
        assert next(iter(stats))["runs"] == 1
