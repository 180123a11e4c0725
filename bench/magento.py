"""Magento scenarios: a full sync of 100,000 orders, and incremental runs after one.

* `magento-full`: 100,000 orders served by `syncflows sandbox magento` in a process of its own
  (so `peak_rss_mb` is the flow's alone), each answer after 150 ms. The consumers are then
  compared with the distinct (email, purchase date) pairs of the same orders generated again
  here. Magento has no read rate limit (pull §2.7), so `floor_s` is latency-bound: the pages
  made, `MAGENTO_MAX_IN_FLIGHT` at a time, 150 ms each.
* `magento-incremental`: after a full sync of the same shop in-process, an incremental run with
  no new orders (it should send one orders request), then 1,000 new orders placed during the
  previous day and an incremental run that should read only those.
"""

from __future__ import annotations

import asyncio
import math
import os
import tempfile
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bench.harness import BenchResult, Scenario, peak_rss_mb, serve_in_process, warm_prefect
from flows.magento.flow import magento_sync
from sandbox.magento import create_app
from sandbox.registry import request_stats
from sandbox.server import serve
from shared.db import dispose_engine, get_engine
from shared.settings import MagentoSettings

TOKEN = "bench-magento-token-2718"
ORDERS = 100_000
LATENCY = 0.15  # seconds before each answer
NEW_ORDERS = 1_000
BATCH = 100  # the flow's default page size


def _configure(url: str, base_url: str) -> None:
    os.environ.update(
        DATABASE_URL=url,
        MAGENTO_BASE_URL=base_url,
        MAGENTO_ACCESS_TOKEN=TOKEN,
        SYNCFLOWS_ENV_FILE=os.devnull,
    )


def expected_pairs(orders: Iterable[Mapping[str, Any]]) -> tuple[set[tuple[str, str]], int]:
    """Distinct (email, purchase date) over orders with an email, and how many have none."""
    pairs: set[tuple[str, str]] = set()
    without = 0
    for order in orders:
        billing = order.get("billing_address") or {}
        email = (order.get("customer_email") or "").strip() or (billing.get("email") or "").strip()
        if not email:
            without += 1
            continue
        when = datetime.fromisoformat(order["created_at"].replace(" ", "T")).replace(tzinfo=UTC)
        pairs.add((email.lower(), when.isoformat()))
    return pairs, without


def stored_pairs(url: str) -> tuple[set[tuple[str, str]], int]:
    """The consumers' (email, purchase date) pairs, and how many rows there are."""
    with get_engine(url).connect() as connection:
        rows = connection.execute(sa.text("SELECT email, purchase_date FROM consumer")).all()
    pairs = set()
    for email, when in rows:
        moment = when if isinstance(when, datetime) else datetime.fromisoformat(str(when))
        moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
        pairs.add((email, moment.isoformat()))
    return pairs, len(rows)


def full_sync() -> BenchResult:
    """A full sync of 100,000 orders from a sandbox process answering after 150 ms."""
    in_flight = MagentoSettings(_env_file=None).max_in_flight  # type: ignore[call-arg]
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/bench.db"
        asyncio.run(warm_prefect())
        with serve_in_process(
            Path(tmp),
            "magento",
            *("--orders", str(ORDERS), "--latency", str(LATENCY), "--api-key", TOKEN),
        ) as remote:
            _configure(url, remote.base_url)
            started = time.perf_counter()
            summary = asyncio.run(magento_sync(full_sync=True))
            wall = time.perf_counter() - started
            peak = peak_rss_mb()
            stats = remote.stop()
        shop = create_app(TOKEN, orders=ORDERS).state.sandbox  # the same orders, same seed
        want, without_email = expected_pairs(shop.iter_orders())
        got, rows = stored_pairs(url)
        dispose_engine(url)
    requests = summary.requests
    correct = (
        summary.state == "completed" and got == want and rows == len(want)
        and summary.counts.failed == without_email
    )  # fmt: skip
    pages = math.ceil(ORDERS / BATCH)
    return BenchResult(
        scenario="magento-full",
        records=ORDERS,
        requests=requests,
        wall_s=wall,
        floor_s=math.ceil(requests / in_flight) * LATENCY,
        http_429=int(stats["by_status"].get("429", 0)),
        correct=correct,
        peak_rss_mb=peak,
        details={
            "orders": ORDERS,
            "latency_ms": LATENCY * 1000,
            "max_in_flight": in_flight,
            "batch_size": BATCH,
            "consumers_expected": len(want),
            "consumers_stored": rows,
            "orders_without_email": without_email,
            "counts": summary.counts.__dict__,
            "requests_by_route": stats["by_route"],
            "least_requests": f"⌈{ORDERS:,}/{BATCH}⌉ = {pages:,} order pages + 1 store views",
        },
    )


def incremental() -> BenchResult:
    """No new orders, then 1,000 new ones, each followed by an incremental run."""
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/bench.db"
        asyncio.run(warm_prefect())
        app = create_app(TOKEN, orders=ORDERS)
        shop = app.state.sandbox
        with serve(app) as base_url:
            _configure(url, base_url)
            asyncio.run(magento_sync())  # the first run: full, unpaced, no latency
            shop.latency = type(shop.latency)(LATENCY)
            before = len(shop.log)
            idle = asyncio.run(magento_sync())
            idle_requests = request_stats(shop.log[before:])
            yesterday = datetime.fromtimestamp(shop.clock.now() - 86_400, UTC)
            shop.add_orders(NEW_ORDERS, created_at=yesterday)
            before = len(shop.log)
            started = time.perf_counter()
            new = asyncio.run(magento_sync())
            wall = time.perf_counter() - started
            new_requests = request_stats(shop.log[before:])
            peak = peak_rss_mb()
        want, _ = expected_pairs(shop.iter_orders())
        got, rows = stored_pairs(url)
        dispose_engine(url)
    pages = math.ceil(NEW_ORDERS / BATCH)
    correct = (
        got == want and rows == len(want) and idle.requests == 1
        and new.counts.records_read == NEW_ORDERS
    )  # fmt: skip
    return BenchResult(
        scenario="magento-incremental",
        records=NEW_ORDERS,
        requests=new.requests,
        wall_s=wall,
        floor_s=pages * LATENCY,  # keyset pages follow one another
        http_429=0,
        correct=correct,
        peak_rss_mb=peak,
        details={
            "no_new_orders_requests": idle.requests,
            "no_new_orders_by_route": idle_requests["by_route"],
            "new_orders": NEW_ORDERS,
            "new_orders_read": new.counts.records_read,
            "new_orders_by_route": new_requests["by_route"],
            "least_requests": f"⌈{NEW_ORDERS:,}/{BATCH}⌉ = {pages} order pages + 1 store views",
            "peak_rss_note": "this process holds the sandbox and its 100,000 orders too",
        },
    )


SCENARIOS = (
    Scenario("magento-full", "100,000 orders, 150 ms latency: a full sync", full_sync),
    Scenario(
        "magento-incremental",
        "after a full sync: no new orders, then 1,000 new orders; 150 ms latency",
        incremental,
    ),
)
