"""Magento 2 → database: orders become consumers, one per (email, purchase date), creates only.

API: https://developer.adobe.com/commerce/webapi/rest/ (facts in `shared/api/pull-providers.md`
§2). The seed's semantics are kept (consumers keyed by email and purchase date, a watermark on
the order `entity_id`, `fullSync` / `testMode` / `batchSize` / `maxPages` / `storeMapping`);
the seed's pages of 10 with 500 ms sleeps and no retries are not:

* **Incremental** (default): keyset pages `entity_id > watermark`, ascending (pull §2.11), so
  neither Magento's default DESC sort nor its past-the-last-page behaviour can loop. Orders that
  failed before (no email, …) are OR'ed into the first page's filter group, at no extra request.
* **Full** (`full_sync`, or no watermark yet, or an unfinished full pass to resume): the
  entity_id space up to the newest order is split into ranges read side by side.
* **Watermark race** (pull §2.11 point 2): an order's entity_id is taken at insert, before its
  transaction commits, so an order can appear below ids already read. The watermark therefore
  never passes an order created less than `MAGENTO_SETTLE_SECONDS` before the shop's clock
  (`Date`); the next run reads those again, harmlessly (creates only).

Every page commits its consumers, failures and status row (`magento_sync_status`) with its
watermark or checkpoint in one transaction, so a killed run resumes where it stopped. A run that
created consumers emits the Prefect event `magento.consumers.created` (count and id ranges), so
an automation can start the mail flow for new consumers instead of polling.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TypeVar

from sqlmodel import Session

from flows.magento.api import (
    MAX_PAGE_SIZE,
    Magento,
    OrderPage,
    magento_time,
    rest_root,
)
from flows.magento.store import (
    PROVIDER,
    Stored,
    add_to_status,
    expect_orders,
    failed_orders,
    finish_status,
    start_status,
    store_orders,
    watermark,
)
from shared.db import ensure_schema, in_thread, session_scope
from shared.flowkit import fan_out, io_task, sync_flow
from shared.http import provider_client
from shared.observability import get_logger
from shared.ranges import id_ranges
from shared.runs import (
    Counts,
    RunSummary,
    RunTracker,
    clear_checkpoints,
    delete_cursor,
    get_cursor,
    load_checkpoints,
    save_checkpoint,
    set_cursor,
    tracked_run,
)
from shared.settings import MagentoSettings, load_provider_settings, load_settings

PAGES_PER_TASK = 10  # one task reads up to this many pages: tens of tasks, not thousands
FULL_RANGES = 8  # keyset walks side by side in a full sync
RETRIED_PER_RUN = 100  # earlier failures OR'ed into an incremental run's first page
PASS_CURSOR = "orders:pass"  # an unfinished full pass: its ranges, for the next run to resume
STREAM = "orders"
EVENT = "magento.consumers.created"

T = TypeVar("T")


@dataclass
class Sync:
    """What every task of one run shares."""

    magento: Magento
    url: str
    account: str
    run: RunTracker
    batch_size: int
    max_pages: int | None
    store_mapping: Mapping[str, str]
    settle: timedelta
    sync_type: str | None  # the status row this run updates (None: test and single runs)
    pages: int = 0  # stored
    pages_asked: int = 0
    pages_expected: int = 0
    held: bool = False  # a recent order was seen: the watermark stays (see module doc)
    mark: int | None = None  # the full pass's watermark so far (its open range)
    # Consumers this run created: how many, and their id range. Plain numbers: Prefect walks
    # every task parameter (this object too), so a growing list would cost O(pages * ids).
    created: int = 0
    first_consumer: int | None = None
    last_consumer: int | None = None
    _codes: dict[int, str | None] | None = None
    _codes_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def write(self, work: Callable[[Session], T]) -> Awaitable[T]:
        """Run `work(session)` in one transaction, off the event loop."""
        return in_thread(self.url, work)

    def take_page(self) -> bool:
        """Count a page against `max_pages` before asking for it; False when none is left.
        (Synchronous, so walkers running side by side cannot overdraw it.)"""
        if self.max_pages is not None and self.pages_asked >= self.max_pages:
            return False
        self.pages_asked += 1
        return True

    async def store_codes(self) -> dict[int, str | None]:
        """Store view id → store code: `store_mapping` first (a store view id as
        `store:<id>`, or a website id as the seed's `storeMapping` has it), else the view's own
        code. Read once per run, and only by runs that have orders to store."""
        async with self._codes_lock:
            if self._codes is None:
                views = await self.magento.store_codes()
                mapping = self.store_mapping
                self._codes = {
                    view_id: mapping.get(f"store:{view_id}") or mapping.get(str(website)) or code
                    for view_id, (code, website) in views.items()
                }
            return self._codes

    def advance(self, page: OrderPage) -> int | None:
        """The watermark `page` allows (pages come in entity_id order): the last order before
        the first one younger than `settle`, since ids between them may belong to orders not
        committed yet. None when it allows no move; once held, no later page moves it."""
        if self.held:
            return None
        cutoff = page.date - self.settle if page.date is not None else None
        mark = None
        for order in page.items:
            try:
                recent = cutoff is not None and magento_time(order.get("created_at")) >= cutoff
            except ValueError:  # an unreadable date fails that order, not the page
                recent = False
            if recent:
                self.held = True
                return mark
            mark = int(order["entity_id"])
        return mark

    async def store(self, page: OrderPage, finish: Callable[[Session], None]) -> None:
        """One page: consumers, failures, status row and `finish` (watermark or checkpoint)."""
        codes = await self.store_codes() if page.items else {}

        def work(session: Session) -> Stored:
            stored = store_orders(
                session, page.items, codes, account=self.account, run_id=self.run.run_id
            )
            if self.sync_type is not None:
                add_to_status(session, self.account, self.sync_type, stored.counts)
            finish(session)
            return stored

        stored = await self.write(work)  # awaited first: other pages add to the counts meanwhile
        self.run.counts = self.run.counts + stored.counts
        if stored.consumer_ids:
            self.created += len(stored.consumer_ids)
            low, high = min(stored.consumer_ids), max(stored.consumer_ids)
            self.first_consumer = min(low, self.first_consumer or low)
            self.last_consumer = max(high, self.last_consumer or high)
        self.pages += 1
        await self.run.progress(self.pages, max(self.pages_expected, self.pages))


# ---- incremental ------------------------------------------------------------------------------


@io_task(retries=2, retry_delay_seconds=2)
async def read_new_pages(sync: Sync, after: int, floor: int, retry: list[int]) -> int | None:
    """Up to `PAGES_PER_TASK` pages of orders above the watermark `floor`, plus the earlier
    failures `retry`, from keyset position `after`; each page moves the watermark with its
    consumers. Returns where to go on, None at the end."""
    for _ in range(PAGES_PER_TASK):
        if not sync.take_page():
            return None
        also = [i for i in retry if i > after]  # failures a page already brought are dropped
        page = await sync.magento.orders_after(
            max(after, floor), page_size=sync.batch_size, also=also
        )
        mark = sync.advance(page)

        total = page.total if after == -1 else None  # what is left, as the first answer says

        def finish(session: Session, mark: int | None = mark, total: int | None = total) -> None:
            if sync.sync_type is None:
                return
            if total is not None:
                expect_orders(session, sync.account, sync.sync_type, total)
            if mark is not None:
                add_to_status(session, sync.account, sync.sync_type, Counts(), last_entity_id=mark)

        await sync.store(page, finish)
        if _last_page(sync, page):
            return None
        after = max(int(order["entity_id"]) for order in page.items)
    return after


def _last_page(sync: Sync, page: OrderPage) -> bool:
    """A short page, or `total_count` (what is left above `after`) all on this one (§2.5)."""
    return len(page.items) < sync.batch_size or page.total <= len(page.items)


async def incremental(sync: Sync) -> None:
    def start(session: Session) -> tuple[int, list[int]]:
        return watermark(session, sync.account) or 0, failed_orders(
            session, sync.account, RETRIED_PER_RUN
        )

    floor, retry = await sync.write(start)
    get_logger().info("incremental from entity_id %d, retrying %d failed orders", floor, len(retry))
    position: int | None = -1  # nothing read yet: the failures come first, being older
    while position is not None:
        position = await read_new_pages(sync, position, floor, retry)


# ---- full: id ranges side by side -------------------------------------------------------------


async def full(sync: Sync) -> bool:
    """Read every order; True when the pass finished (`max_pages` can stop it early)."""

    def resume(session: Session) -> tuple[list[tuple[int, int | None]] | None, dict[str, str]]:
        saved = get_cursor(session, PROVIDER, sync.account, PASS_CURSOR)
        ranges = [(lo, hi) for lo, hi in json.loads(saved)["ranges"]] if saved else None
        return ranges, load_checkpoints(session, PROVIDER, sync.account, STREAM)

    ranges, done = await sync.write(resume)
    if ranges is None:
        newest = await sync.magento.newest()
        top = int(newest.items[0]["entity_id"]) if newest.items else 0
        parts = min(FULL_RANGES, math.ceil(newest.total / (sync.batch_size * PAGES_PER_TASK)))
        ranges = id_ranges(top, parts, sync.batch_size)
        sync.pages_expected = math.ceil(newest.total / sync.batch_size)
        text = json.dumps({"run_id": sync.run.run_id, "ranges": ranges})

        def open_pass(session: Session) -> None:
            set_cursor(session, PROVIDER, sync.account, PASS_CURSOR, text)
            expect_orders(session, sync.account, "full", newest.total)

        await sync.write(open_pass)
        get_logger().info("full pass over %d orders in %d ranges", newest.total, len(ranges))
    else:
        get_logger().info("resuming the full pass: %d of %d ranges done", len(done), len(ranges))

    async def walk(bounds: tuple[int, int | None]) -> None:
        after, through = bounds
        mark = done.get(f"range:{after}")
        if mark == "done":
            return
        if through is None and mark and "top" in done:  # resuming the open range
            sync.mark = int(done["top"])
            sync.held = sync.mark < int(mark)  # it stopped short of a recent order
        position: int | None = int(mark) if mark else after
        while position is not None:
            position = await read_range_pages(sync, after, through, position)

    await fan_out(ranges, walk, limit=len(ranges))
    finished: dict[str, str] = await sync.write(
        lambda s: load_checkpoints(s, PROVIDER, sync.account, STREAM)
    )
    return all(finished.get(f"range:{after}") == "done" for after, _ in ranges)


@io_task(retries=2, retry_delay_seconds=2)
async def read_range_pages(sync: Sync, start: int, through: int | None, after: int) -> int | None:
    """Up to `PAGES_PER_TASK` pages of the range that starts at `start`; each page commits with
    the range's checkpoint. Returns where to go on, None at the range's end (or when
    `max_pages` is used up)."""
    for _ in range(PAGES_PER_TASK):
        if not sync.take_page():
            return None  # out of pages: the checkpoint says where the next run goes on
        page = await sync.magento.orders_after(after, page_size=sync.batch_size, through=through)
        last = max((int(order["entity_id"]) for order in page.items), default=after)
        ended = _last_page(sync, page)
        top = None
        if through is None:  # the open range reaches the newest order: it alone sets `top`
            top = sync.mark = max(sync.mark or after, sync.advance(page) or 0)
        checkpoint = "done" if ended else str(last)

        def finish(session: Session, checkpoint: str = checkpoint, top: int | None = top) -> None:
            save_checkpoint(session, PROVIDER, sync.account, STREAM, f"range:{start}", checkpoint)
            if top is not None:  # with the page that moved it, so a resumed pass keeps it
                save_checkpoint(session, PROVIDER, sync.account, STREAM, "top", str(top))

        await sync.store(page, finish)
        if ended:
            return None
        after = last
    return after


def _close_full(sync: Sync) -> Callable[[Session], None]:
    """The pass is done: the open range's watermark (`top`) becomes the account's."""

    def work(session: Session) -> None:
        marks = load_checkpoints(session, PROVIDER, sync.account, STREAM)
        top = int(marks.get("top", "0"))
        finish_status(session, sync.account, "full", "stopped", last_entity_id=top)
        clear_checkpoints(session, PROVIDER, sync.account, STREAM)
        delete_cursor(session, PROVIDER, sync.account, PASS_CURSOR)

    return work


# ---- one page, one order ----------------------------------------------------------------------


async def sample(sync: Sync) -> None:
    """`test_mode`: the first page after the watermark, stored; no watermark moves."""
    after = await sync.write(lambda s: watermark(s, sync.account) or 0)
    page = await sync.magento.orders_after(after, page_size=sync.batch_size)
    await sync.store(page, lambda _: None)


async def one_order(sync: Sync, entity_id: int) -> None:
    """Read and store one order by entity_id (a consumer for it, if it makes a new one)."""
    page = await sync.magento.orders([[("entity_id", "eq", str(entity_id))]], page_size=1)
    if not page.items:
        raise LookupError(f"Magento has no order with entity_id {entity_id}")
    await sync.store(page, lambda _: None)


# ---- the flow ---------------------------------------------------------------------------------


def _full_due(url: str, account: str) -> bool:
    """No watermark yet, or an unfinished full pass to resume."""
    with session_scope(url) as session:
        pending = get_cursor(session, PROVIDER, account, PASS_CURSOR)
        return pending is not None or watermark(session, account) is None


def check_parameters(batch_size: int, max_pages: int | None) -> None:
    """Refuse bad parameters before any work, in words a user can act on."""
    if not 1 <= batch_size <= MAX_PAGE_SIZE:
        raise ValueError(
            f"batch_size must be between 1 and {MAX_PAGE_SIZE} (Magento refuses larger pages: "
            f"'Maximum SearchCriteria pageSize is {MAX_PAGE_SIZE}'), not {batch_size}"
        )
    if max_pages is not None and max_pages < 1:
        raise ValueError(f"max_pages must be at least 1, or empty for all pages, not {max_pages}")


async def emit_created(sync: Sync) -> None:
    """One Prefect event for the consumers this run created (none when it created none)."""
    if not sync.created:
        return
    from prefect.events import emit_event  # deferred: importing prefect is slow

    emit_event(
        EVENT,
        resource={
            "prefect.resource.id": f"syncflows.magento.{sync.account}",
            "prefect.resource.name": f"magento ({sync.account})",
        },
        payload={
            "count": sync.created,
            "consumer_ids": [sync.first_consumer, sync.last_consumer],
            "run_id": sync.run.run_id,
        },
    )


@sync_flow(name="magento-sync")
async def magento_sync(
    full_sync: bool = False,
    test_mode: bool = False,
    batch_size: int = 100,
    max_pages: int | None = None,
    store_mapping: dict[str, str] | None = None,
    order_id: int | None = None,
) -> RunSummary:
    """Pull Magento orders into `consumer` rows, one per (email, purchase date).

    Args:
        full_sync: Read every order (also automatic when there is no watermark yet).
        test_mode: Read and store one page of `batch_size` orders; move no watermark.
        batch_size: Orders per page, 1 to 300 (Magento's cap).
        max_pages: Stop after this many pages (empty: all); the next run goes on from there.
        store_mapping: Store code per website id (`{"1": "nl"}`, the seed's `storeMapping`)
            or per store view (`{"store:3": "be_fr"}`); default: the store view's own code.
        order_id: Read only the order with this entity_id.
    """
    check_parameters(batch_size, max_pages)
    settings = load_settings()
    provider = await load_provider_settings(MagentoSettings)
    assert provider.api_key is not None
    url, account = settings.database_url, provider.account
    await asyncio.to_thread(ensure_schema, url)
    single = order_id is not None
    is_full = False
    if test_mode:
        mode = "test"
    elif single:
        mode = "single"
    else:
        is_full = full_sync or await asyncio.to_thread(_full_due, url, account)
        mode = "full" if is_full else "incremental"
    sync_type = mode if mode in ("full", "incremental") else None
    async with tracked_run(url, PROVIDER, account, mode) as run:
        client = provider_client(
            provider,
            settings,
            headers={"Authorization": f"Bearer {provider.api_key.get_secret_value()}"},
            base_url=rest_root(provider.base_url),
        )
        try:
            async with client:
                sync = Sync(
                    Magento(client),
                    url,
                    account,
                    run,
                    batch_size,
                    max_pages,
                    store_mapping or {},
                    timedelta(seconds=provider.settle_seconds),
                    sync_type,
                )
                await _run(sync, mode, order_id)
        finally:
            run.requests = client.requests
        await emit_created(sync)
    assert run.summary is not None
    return run.summary


async def _run(sync: Sync, mode: str, order_id: int | None) -> None:
    if mode == "test":
        await sample(sync)
        return
    if order_id is not None:
        await one_order(sync, order_id)
        return
    sync_type = mode
    await sync.write(lambda s: start_status(s, sync.account, sync_type, sync.run.run_id))
    try:
        if mode == "full":
            if await full(sync):
                await sync.write(_close_full(sync))
            else:
                await sync.write(lambda s: finish_status(s, sync.account, "full", "stopped"))
        else:
            await incremental(sync)
            await sync.write(lambda s: finish_status(s, sync.account, sync_type, "stopped"))
    except BaseException:
        await asyncio.shield(
            sync.write(lambda s: finish_status(s, sync.account, sync_type, "error"))
        )
        raise


if __name__ == "__main__":
    print(asyncio.run(magento_sync()).row())  # noqa: T201
