"""ActiveCampaign → database: every contact and deal, with custom fields, every 15 minutes.

API: https://developers.activecampaign.com/reference (facts in `shared/api/pull-providers.md`
§1). Auth `Api-Token`; 5 req/s per account documented (we pace at `AC_RATE_PER_SECOND`, 10 by
default as the seed's design card says; a 429 halves the pace, never fails the run).

A run reads the definitions (fields, pipelines, stages, users, deal fields), then *passes*
over streams, concurrently, under the one shared limiter:

* `contacts`: keyset pages (`orders[id]=ASC&id_greater`, pull §1.2) in up to 8 id ranges;
* `deals`: offset pages, oldest created first (deals have no keyset, pull §1.6);
* `contact_values`, `deal_values` (full passes): offset scans of `/fieldValues` and
  `/dealCustomFieldData`, which have no date filter (pull §1.5, §1.7).

Incremental passes filter on `filters[updated_after]` from the last pass's start (provider
clock, from `Date`) minus `AC_OVERLAP_SECONDS`; re-reading the overlap is harmless (upserts).
Records whose custom field values may have changed since they were read are then read one by
one (`/contacts/{id}/fieldValues`), or by a scan when that costs fewer requests. A full pass
(`full_sync`, no cursor yet, or the last full one older than `AC_FULL_SYNC_HOURS`) reads
everything and soft-deletes what the provider no longer has.

Each page's rows commit with its checkpoint (`sync_checkpoint`); a pass left unfinished by a
crash is resumed by the next run, skipping the pages it already stored.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from functools import partial
from typing import Any, TypeVar

from sqlmodel import Session

from flows.activecampaign.api import (
    PAGE_SIZE,
    ActiveCampaign,
    Catalog,
    Page,
    contact_value,
    deal_value,
)
from flows.activecampaign.store import (
    CONTACT,
    DEAL,
    Family,
    count_values,
    failed_records,
    finish_value_scan,
    mark_deleted,
    needing_values,
    replace_values,
    save_catalog,
    store_records,
    store_values,
    unseen,
)
from shared.db import ensure_schema, in_thread, session_scope
from shared.flowkit import fan_out, io_task, sync_flow
from shared.http import provider_client
from shared.models import utcnow
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
from shared.settings import ActiveCampaignSettings, load_provider_settings, load_settings

PROVIDER = "activecampaign"
PAGES_PER_TASK = 10  # one task reads up to this many pages: hundreds of tasks, not thousands
CONTACT_RANGES = 8  # keyset walks side by side over the contact id space
OFFSET_WORKERS = 4  # tasks side by side per offset stream
RECORDS_PER_TASK = 10  # records read one by one per task
VERIFY_LIMIT = 1_000  # deals missing from a full pass are checked one by one up to this many
FULL_CURSOR = "full:completed"
FORBIDDEN_RETRIES = frozenset({403})  # intermittent 403s once the key has worked (pull §1.10)

T = TypeVar("T")


@dataclass
class Pass:
    """One traversal of a stream with fixed parameters; saved so a crash can resume it."""

    stream: str
    id: int
    full: bool
    since: datetime | None
    started: datetime
    ranges: list[tuple[int, int | None]] | None = None  # contacts: (after id, below id)

    def dump(self) -> str:
        return json.dumps(
            {
                "id": self.id,
                "full": self.full,
                "since": self.since.isoformat() if self.since else None,
                "started": self.started.isoformat(),
                "ranges": self.ranges,
            }
        )

    @classmethod
    def load(cls, stream: str, text: str) -> Pass:
        data = json.loads(text)
        ranges = data.get("ranges")
        return cls(
            stream,
            int(data["id"]),
            bool(data["full"]),
            datetime.fromisoformat(data["since"]) if data.get("since") else None,
            datetime.fromisoformat(data["started"]),
            [(lo, hi) for lo, hi in ranges] if ranges is not None else None,
        )


@dataclass
class Sync:
    """What every task of one run shares."""

    ac: ActiveCampaign
    url: str
    account: str
    run: RunTracker
    catalog: Catalog
    started: datetime  # provider time at the run's first answer
    pages_done: int = 0
    pages_expected: int = 0

    def write(self, family: Family, work: Callable[[Session], T]) -> Awaitable[T]:
        """Run `work(session)` in one transaction, off the event loop, one writer per family."""

        def transaction() -> T:
            with family.lock, session_scope(self.url) as session:
                return work(session)

        return asyncio.to_thread(transaction)

    def read(self, work: Callable[[Session], T]) -> Awaitable[T]:
        """Run `work(session)` in one transaction off the event loop (reads, cursor moves)."""
        return in_thread(self.url, work)

    def store(
        self,
        session: Session,
        family: Family,
        raws: Sequence[dict[str, Any]],
        seen_pass: int | None = None,
    ) -> Counts:
        """Upsert listed records (`store_records`) with this run's ledger details."""
        return store_records(
            session,
            family,
            self.catalog,
            raws,
            seen_pass=seen_pass,
            account=self.account,
            run_id=self.run.run_id,
        )

    async def page_done(self, counts: Counts | None = None) -> None:
        if counts is not None:
            self.run.counts = self.run.counts + counts
        self.pages_done += 1
        await self.run.progress(self.pages_done, max(self.pages_expected, self.pages_done))


@dataclass
class Window:
    """Where an offset walk ends, once a short page (or a total) has told."""

    end: int | None = None

    def limit(self, end: int) -> None:
        self.end = end if self.end is None else min(self.end, end)

    def past(self, offset: int) -> bool:
        return self.end is not None and offset >= self.end


# ---- definitions ----------------------------------------------------------------------------


@io_task(retries=2, retry_delay_seconds=2)
async def read_catalog(ac: ActiveCampaign, url: str) -> tuple[Catalog, datetime | None]:
    """Fields, deal fields, pipelines, stages, users: small lists, read in full every run."""
    (
        (fields, date),
        (deal_fields, _),
        (pipelines, _),
        (stages, _),
        (users, _),
    ) = await asyncio.gather(
        ac.every("/fields", "fields"),
        ac.every("/dealCustomFieldMeta", "dealCustomFieldMeta"),
        ac.every("/dealGroups", "dealGroups"),
        ac.every("/dealStages", "dealStages"),
        ac.every("/users", "users"),
    )

    def save() -> Catalog:
        with CONTACT.lock, DEAL.lock, session_scope(url) as session:
            return save_catalog(session, fields, deal_fields, pipelines, stages, users)

    return await asyncio.to_thread(save), date


# ---- passes -------------------------------------------------------------------------------


def _get(session: Session, *, account: str, stream: str) -> str | None:
    return get_cursor(session, PROVIDER, account, stream)


def _pass_cursor(stream: str) -> str:
    return f"{stream}:pass"


def _since_cursor(stream: str) -> str:
    return f"{stream}:since"


async def open_passes(
    sync: Sync, settings: ActiveCampaignSettings, *, full: bool, streams: Sequence[str]
) -> list[Pass]:
    """Resume each stream's unfinished pass, or start a new one from its cursor."""

    def work(session: Session) -> list[Pass]:
        opened = []
        for stream in streams:
            saved = get_cursor(session, PROVIDER, sync.account, _pass_cursor(stream))
            if saved is not None:
                pending = Pass.load(stream, saved)
                if pending.full or not full:
                    opened.append(pending)
                    continue
                clear_checkpoints(session, PROVIDER, sync.account, stream)  # full supersedes
            since = None
            if not full:
                mark = get_cursor(session, PROVIDER, sync.account, _since_cursor(stream))
                if mark is not None:
                    overlap = timedelta(seconds=settings.overlap_seconds)
                    since = datetime.fromisoformat(mark) - overlap
            fresh = Pass(stream, sync.run.run_id, full or since is None, since, sync.started)
            set_cursor(session, PROVIDER, sync.account, _pass_cursor(stream), fresh.dump())
            opened.append(fresh)
        return opened

    opened: list[Pass] = await sync.read(work)
    for p in opened:
        get_logger().info(
            "%s: %s pass %d%s",
            p.stream,
            "full" if p.full else "incremental",
            p.id,
            f" from {p.since.isoformat()}" if p.since else "",
        )
    return opened


def _complete(session: Session, account: str, p: Pass) -> None:
    """Close a pass: drop its checkpoints; a list stream's next pass starts from its start."""
    clear_checkpoints(session, PROVIDER, account, p.stream)
    delete_cursor(session, PROVIDER, account, _pass_cursor(p.stream))
    if p.stream in ("contacts", "deals"):
        set_cursor(session, PROVIDER, account, _since_cursor(p.stream), p.started.isoformat())


async def run_pass(sync: Sync, p: Pass) -> None:
    """Read every page of a pass that is not checkpointed yet."""
    done: dict[str, str] = await sync.read(
        lambda s: load_checkpoints(s, PROVIDER, sync.account, p.stream)
    )
    if p.stream == "contacts":
        await _walk_contacts(sync, p, done)
    else:
        await _walk_offsets(sync, p, done)


# ---- contacts: keyset ranges ----------------------------------------------------------------


async def _walk_contacts(sync: Sync, p: Pass, done: dict[str, str]) -> None:
    if p.ranges is None:
        newest = await sync.ac.contacts(since=p.since, after_id=0, below_id=None, newest=True)
        p.ranges = _split(newest)
        await sync.read(
            lambda s: set_cursor(s, PROVIDER, sync.account, _pass_cursor(p.stream), p.dump())
        )
        sync.pages_expected += math.ceil((newest.total or 0) / PAGE_SIZE)

    async def walk(bounds: tuple[int, int | None]) -> None:
        after, below = bounds
        mark = done.get(f"range:{after}")
        if mark == "done":
            return
        position = int(mark) if mark else after
        while position is not None:
            position = await read_contact_pages(sync, p, after, below, position)

    await fan_out(p.ranges, walk, limit=len(p.ranges) or 1)


def _split(newest: Page) -> list[tuple[int, int | None]]:
    """Contact id ranges `(after, below)` for `id_greater`/`id_less`, from the newest contact."""
    items = newest.items("contacts")
    if not items:
        return []
    total = newest.total or 1
    parts = min(CONTACT_RANGES, math.ceil(total / (PAGE_SIZE * PAGES_PER_TASK)))
    ranges = id_ranges(int(items[0]["id"]), parts, PAGE_SIZE)
    return [(after, None if through is None else through + 1) for after, through in ranges]


@io_task(retries=2, retry_delay_seconds=2)
async def read_contact_pages(
    sync: Sync, p: Pass, after: int, below: int | None, position: int
) -> int | None:
    """Up to `PAGES_PER_TASK` keyset pages of one id range; where to go on, None at its end."""
    for _ in range(PAGES_PER_TASK):
        page = await sync.ac.contacts(since=p.since, after_id=position, below_id=below)
        items = page.items("contacts")
        last = int(items[-1]["id"]) if items else position
        # `meta.total` counts what is left from `id_greater` on (pull §1.2); a short page ends.
        finished = len(items) < PAGE_SIZE or (page.total is not None and page.total <= len(items))
        mark = "done" if finished else str(last)

        def work(session: Session, items: list[dict[str, Any]] = items, mark: str = mark) -> Counts:
            counts = sync.store(session, CONTACT, items, p.id if p.full else None)
            save_checkpoint(session, PROVIDER, sync.account, p.stream, f"range:{after}", mark)
            return counts

        await sync.page_done(await sync.write(CONTACT, work))
        if finished:
            return None
        position = last
    return position


# ---- offset streams ---------------------------------------------------------------------------

_OFFSET_STREAMS: dict[str, tuple[Family, str, str]] = {
    "deals": (DEAL, "/deals", "deals"),
    "contact_values": (CONTACT, "/fieldValues", "fieldValues"),
    "deal_values": (DEAL, "/dealCustomFieldData", "dealCustomFieldData"),
}


async def _walk_offsets(sync: Sync, p: Pass, done: dict[str, str]) -> None:
    window = Window()
    for part, count in done.items():  # a short page stored earlier still marks the end
        if int(count) < PAGE_SIZE:
            window.limit(int(part) + int(count))
    finished = {int(part) for part in done}
    chunk = PAGE_SIZE * PAGES_PER_TASK

    def chunks() -> Any:
        start = 0
        while not window.past(start):
            offsets = [o for o in range(start, start + chunk, PAGE_SIZE) if o not in finished]
            if offsets:
                yield offsets
            start += chunk

    if 0 not in finished:  # alone first: its total bounds the fan-out (no wasted pages)
        await read_offset_pages(sync, p, [0], window)
        finished.add(0)
    source = chunks()
    lock = asyncio.Lock()

    async def worker(_: int) -> None:
        while True:
            async with lock:
                offsets = next(source, None)
            if offsets is None:
                return
            await read_offset_pages(sync, p, offsets, window)

    await fan_out(range(OFFSET_WORKERS), worker, limit=OFFSET_WORKERS)


@io_task(retries=2, retry_delay_seconds=2)
async def read_offset_pages(sync: Sync, p: Pass, offsets: list[int], window: Window) -> None:
    """Consecutive offset pages of one stream, each stored with its checkpoint."""
    family, path, key = _OFFSET_STREAMS[p.stream]
    for offset in offsets:
        if window.past(offset):
            return
        if p.stream == "deals":
            page = await sync.ac.deals(since=p.since, offset=offset)
        else:
            page = await sync.ac.scan(path, offset)
        items = page.items(key)
        if len(items) < PAGE_SIZE:
            window.limit(offset + len(items))
        elif page.total is not None:
            if window.end is None:
                sync.pages_expected += math.ceil(page.total / PAGE_SIZE)
            window.limit(max(page.total, offset + len(items)))

        def work(
            session: Session, items: list[dict[str, Any]] = items, offset: int = offset
        ) -> Counts | None:
            counts = None
            if p.stream == "deals":
                counts = sync.store(session, DEAL, items, p.id if p.full else None)
            else:
                read = contact_value if family is CONTACT else deal_value
                store_values(
                    session, family, sync.catalog, [read(i) for i in items], seen_pass=p.id
                )
            save_checkpoint(
                session, PROVIDER, sync.account, p.stream, f"{offset:09d}", str(len(items))
            )
            return counts

        await sync.page_done(await sync.write(family, work))


# ---- closing passes -----------------------------------------------------------------------------


async def finish_pass(sync: Sync, p: Pass) -> list[int]:
    """Complete a pass in one transaction with what it implies; returns records to re-read."""
    if p.stream == "deals" and p.full:
        await _verify_missing_deals(sync, p)
    family = CONTACT if p.stream in ("contacts", "contact_values") else DEAL

    def work(session: Session) -> list[int]:
        again: list[int] = []
        if p.stream in ("contacts", "deals") and p.full:
            gone = mark_deleted(session, family, unseen(session, family, p.id), utcnow())
            if gone:
                get_logger().info(
                    "%s: %d no longer in ActiveCampaign, soft-deleted", p.stream, gone
                )
        elif p.stream.endswith("_values"):
            again = finish_value_scan(session, family, p.id, p.started)
        _complete(session, sync.account, p)
        return again

    again: list[int] = await sync.write(family, work)
    return again


async def _verify_missing_deals(sync: Sync, p: Pass) -> None:
    """Deals a full pass did not list may only have been skipped (offset pages shift when a
    deal is deleted mid-pass): read each; what is really gone is soft-deleted by the caller."""
    missing: list[int] = await sync.read(lambda s: unseen(s, DEAL, p.id))
    if not missing or len(missing) > VERIFY_LIMIT:
        return
    batches = [missing[i : i + RECORDS_PER_TASK] for i in range(0, len(missing), RECORDS_PER_TASK)]

    async def verify(ids: list[int]) -> None:
        await read_deals(sync, ids, p.id)

    await fan_out(batches, verify)


@io_task(retries=2, retry_delay_seconds=2)
async def read_deals(sync: Sync, ids: list[int], seen_pass: int | None) -> None:
    """Read deals one by one (`GET /deals/{id}`); a 404 leaves them unseen."""
    found = [page.body["deal"] for i in ids if (page := await sync.ac.find(f"/deals/{i}"))]
    await sync.write(DEAL, lambda s: sync.store(s, DEAL, found, seen_pass))


# ---- values one by one --------------------------------------------------------------------------

_ONE_BY_ONE = {
    "contact_values": (CONTACT, "/contacts/{}/fieldValues", "fieldValues", contact_value),
    "deal_values": (DEAL, "/deals/{}/dealCustomFieldData", "dealCustomFieldData", deal_value),
}


@io_task(retries=2, retry_delay_seconds=2)
async def read_values_one_by_one(sync: Sync, stream: str, ids: list[int]) -> None:
    """Each record's whole value set; a record AC no longer has (404) is soft-deleted."""
    family, path, key, read = _ONE_BY_ONE[stream]
    values: dict[int, list[tuple[int, int, str | None]]] = {}
    read_at: dict[int, datetime] = {}
    gone: list[int] = []
    for record_id in ids:
        page = await sync.ac.find(path.format(record_id))
        if page is None:
            gone.append(record_id)
        else:
            values[record_id] = [read(item) for item in page.items(key)]
            read_at[record_id] = page.date or sync.started

    def work(session: Session) -> None:
        replace_values(session, family, sync.catalog, values, read_at)
        mark_deleted(session, family, gone, utcnow())

    await sync.write(family, work)
    await sync.page_done()


async def refresh_values(sync: Sync, stream: str, doubtful: Sequence[int] = ()) -> None:
    """Read, one by one, the values of records that may be stale (and of `doubtful` ones)."""
    family = _ONE_BY_ONE[stream][0]
    ids: list[int] = await sync.read(lambda s: needing_values(s, family))
    ids = sorted(set(ids) | set(doubtful))
    if not ids:
        return
    get_logger().info("%s: reading the values of %d records one by one", stream, len(ids))
    sync.pages_expected += math.ceil(len(ids) / RECORDS_PER_TASK)
    batches = [ids[i : i + RECORDS_PER_TASK] for i in range(0, len(ids), RECORDS_PER_TASK)]

    async def read(batch: list[int]) -> None:
        await read_values_one_by_one(sync, stream, batch)

    await fan_out(batches, read)


async def values_to_scan(sync: Sync, stream: str) -> bool:
    """Whether reading stale values one by one would cost more requests than a scan."""
    family = _ONE_BY_ONE[stream][0]
    stale = len(await sync.read(lambda s: needing_values(s, family)))
    scan_pages = math.ceil(await sync.read(lambda s: count_values(s, family)) / PAGE_SIZE) + 1
    return stale > scan_pages


# ---- one run ----------------------------------------------------------------------------------


async def sync_passes(sync: Sync, settings: ActiveCampaignSettings, *, full: bool) -> None:
    """Retry earlier runs' unreadable records; run the list passes and any value scans, close
    them, then read stale values."""
    await retry_failed(sync)
    lists = await open_passes(sync, settings, full=full, streams=("contacts", "deals"))
    full = full or any(p.full for p in lists)
    scans: list[str] = []
    for stream in ("contact_values", "deal_values"):
        cursor = _pass_cursor(stream)
        pending = await sync.read(partial(_get, account=sync.account, stream=cursor))
        if full or pending is not None:  # a full run scans; an unfinished scan is resumed
            scans.append(stream)
    scan_passes = await open_passes(sync, settings, full=True, streams=scans) if scans else []
    passes = lists + scan_passes
    await fan_out(passes, lambda p: run_pass(sync, p), limit=len(passes))
    doubtful: dict[str, list[int]] = {}
    for p in passes:  # lists first: a scan's close must see this run's deletions
        again = await finish_pass(sync, p)
        if p.stream.endswith("_values"):
            doubtful[p.stream] = again
    for stream in ("contact_values", "deal_values"):
        if stream not in doubtful and await values_to_scan(sync, stream):
            get_logger().info("%s: a scan costs fewer requests than reading one by one", stream)
            (scan,) = await open_passes(sync, settings, full=True, streams=(stream,))
            await run_pass(sync, scan)
            doubtful[stream] = await finish_pass(sync, scan)
    await fan_out(
        ["contact_values", "deal_values"],
        lambda stream: refresh_values(sync, stream, doubtful.get(stream, ())),
        limit=2,
    )
    if all(p.full for p in passes) and len(passes) == 4:
        started = min(p.started for p in passes)
        await sync.read(
            lambda s: set_cursor(s, PROVIDER, sync.account, FULL_CURSOR, started.isoformat())
        )


async def sample(sync: Sync) -> None:
    """`test_mode`: the first page of each stream, stored; no cursor or checkpoint moves."""
    contacts, deals, contact_values, deal_values_page = await asyncio.gather(
        sync.ac.contacts(since=None, after_id=0, below_id=None),
        sync.ac.deals(since=None, offset=0),
        sync.ac.scan("/fieldValues", 0),
        sync.ac.scan("/dealCustomFieldData", 0),
    )
    samples = (
        (
            CONTACT,
            contacts.items("contacts"),
            map(contact_value, contact_values.items("fieldValues")),
        ),
        (
            DEAL,
            deals.items("deals"),
            map(deal_value, deal_values_page.items("dealCustomFieldData")),
        ),
    )
    for family, records, values in samples:

        def store(
            session: Session, family: Family = family, records: Any = records, values: Any = values
        ) -> Counts:
            store_values(session, family, sync.catalog, list(values), seen_pass=None)
            return sync.store(session, family, records)

        await sync.page_done(await sync.write(family, store))


async def refresh_one(sync: Sync, *, contact_id: int | None, deal_id: int | None) -> None:
    """One contact and/or deal, with its values; 404 soft-deletes it."""
    if contact_id is not None:
        page = await sync.ac.find(f"/contacts/{contact_id}")  # sideloads fieldValues (pull §1.4)
        found = [page.body["contact"]] if page else []

        def save_contact(session: Session) -> Counts:
            counts = sync.store(session, CONTACT, found)
            if page is None:
                mark_deleted(session, CONTACT, [contact_id], utcnow())
            else:
                values = [contact_value(i) for i in page.items("fieldValues")]
                read_at = {contact_id: page.date or sync.started}
                replace_values(session, CONTACT, sync.catalog, {contact_id: values}, read_at)
            return counts

        await sync.page_done(await sync.write(CONTACT, save_contact))
    if deal_id is not None:
        await read_deals(sync, [deal_id], None)
        await read_values_one_by_one(sync, "deal_values", [deal_id])


async def retry_failed(sync: Sync) -> None:
    """Read again, by id, the records earlier pages could not store (`sync_failure`)."""
    contacts = await sync.read(partial(failed_records, family=CONTACT, account=sync.account))
    deals = await sync.read(partial(failed_records, family=DEAL, account=sync.account))
    for contact_id in contacts:
        await refresh_one(sync, contact_id=contact_id, deal_id=None)
    if deals:
        await read_deals(sync, deals, None)


def _full_due(url: str, account: str, hours: float) -> bool:
    """No full sync yet, the last is older than `hours`, or an unfinished one awaits."""
    with session_scope(url) as session:
        last = get_cursor(session, PROVIDER, account, FULL_CURSOR)
        pending = [
            get_cursor(session, PROVIDER, account, _pass_cursor(stream))
            for stream in ("contacts", "deals", "contact_values", "deal_values")
        ]
    if any(text and Pass.load("", text).full for text in pending):
        return True
    return last is None or utcnow() - datetime.fromisoformat(last) > timedelta(hours=hours)


@sync_flow(name="activecampaign-sync")
async def activecampaign_sync(
    full_sync: bool = False,
    test_mode: bool = False,
    contact_id: int | None = None,
    deal_id: int | None = None,
) -> RunSummary:
    """Pull ActiveCampaign contacts and deals, with custom fields, into the database.

    Args:
        full_sync: Read everything and soft-delete what ActiveCampaign no longer has (also
            automatic with no cursor yet, or when the last full sync is older than
            `AC_FULL_SYNC_HOURS`).
        test_mode: Read and store the first page of each stream; move no cursor.
        contact_id: Refresh only this contact (and `deal_id`, if given).
        deal_id: Refresh only this deal.
    """
    settings = load_settings()
    provider = await load_provider_settings(ActiveCampaignSettings)
    assert provider.api_key is not None
    url, account = settings.database_url, provider.account
    await asyncio.to_thread(ensure_schema, url)
    single = contact_id is not None or deal_id is not None
    full = False
    if test_mode:
        mode = "test"
    elif single:
        mode = "single"
    else:
        full = full_sync or await asyncio.to_thread(
            _full_due, url, account, provider.full_sync_hours
        )
        mode = "full" if full else "incremental"
    async with tracked_run(url, PROVIDER, account, mode) as run:
        client = provider_client(
            provider, settings, headers={"Api-Token": provider.api_key.get_secret_value()}
        )
        try:
            async with client:
                ac = ActiveCampaign(client)
                catalog, date = await read_catalog(ac, url)
                # The key works: from now on a 403 is AC's intermittent one, worth a retry.
                client.policy = replace(
                    client.policy, retry_statuses=client.policy.retry_statuses | FORBIDDEN_RETRIES
                )
                sync = Sync(ac, url, account, run, catalog, date or utcnow())
                if test_mode:
                    await sample(sync)
                elif single:
                    await refresh_one(sync, contact_id=contact_id, deal_id=deal_id)
                else:
                    await sync_passes(sync, provider, full=full)
        finally:
            run.requests = client.requests
    assert run.summary is not None
    return run.summary


if __name__ == "__main__":
    print(asyncio.run(activecampaign_sync()).row())  # noqa: T201
