"""ActiveCampaign scenarios: a full sync of the seed account, and an incremental run after one.

* `ac-full`: the seed account (82,000 contacts, 75,000 deals) served by `syncflows sandbox` in
  a process of its own, so `peak_rss_mb` is the flow's alone; the sandbox admits 10 requests/s
  and answers after 250 ms. The database is then compared, record by record, with the same
  account generated again here.
* `ac-incremental`: the same account in-process. A fast full sync fills the database; then 500
  contacts and 300 deals change (10 in their cursor's own second) and an incremental run is
  timed at 10/s and 250 ms, while 5 more contacts change under it.

Both report `least_requests`, what the documented endpoints need at the least for the data
(pull §1), so `requests_per_least` is the flow's overhead in requests as `ratio` is in time.
"""

from __future__ import annotations

import asyncio
import math
import os
import resource
import tempfile
import time
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from starlette.requests import Request

from bench.harness import (
    BenchResult,
    SandboxProcess,
    Scenario,
    peak_rss_mb,
    serve_in_process,
    warm_prefect,
)
from flows.activecampaign.flow import PROVIDER, activecampaign_sync
from flows.activecampaign.tables import AcContact, AcDeal
from sandbox.activecampaign import ActiveCampaignSandbox, create_app
from sandbox.activecampaign_data import Field
from sandbox.base import Latency
from sandbox.registry import request_stats
from sandbox.server import serve
from shared.db import dispose_engine, session_scope
from shared.runs import get_cursor

KEY = "bench-activecampaign-key-3f9d"
RATE = 10  # requests/s: the flow's default pace (the seed's design card), enforced by the sandbox
LATENCY = 0.25  # seconds before each answer
UNPACED = 1_000_000  # the flow's "no cap": far above what loopback reaches
PAGE = 100  # the documented maximum `limit` (pull §1.2)
DEFINITION_LISTS = 5  # /fields, /dealCustomFieldMeta, /dealGroups, /dealStages, /users
MULTI_VALUE_TYPES = frozenset({"checkbox", "listbox", "multiselect"})  # `||a||b||` (§1.5, §1.7)
AT_CURSOR = 5  # changes per stream stamped with the cursor's own second
MID_RUN = 5  # contacts changed while the measured run is in progress …
MID_RUN_REQUEST = 100  # … as its 100th request arrives


def _configure(url: str, base_url: str, rate: float) -> None:
    """Point the flow at the database and the sandbox, paced at `rate` requests per second."""
    os.environ.update(
        DATABASE_URL=url,
        AC_API_URL=f"{base_url}/api/3",
        AC_API_KEY=KEY,
        AC_RATE_PER_SECOND=str(rate),
        SYNCFLOWS_ENV_FILE=os.devnull,
    )


def _ceil_pages(count: int) -> int:
    return math.ceil(count / PAGE)


def sandbox_process(
    folder: Path, *, preset: str, per_second: int | None, latency: float
) -> AbstractContextManager[SandboxProcess]:
    """The ActiveCampaign sandbox serving a generated account from a child process."""
    return serve_in_process(
        folder,
        "activecampaign",
        "--preset", preset, "--per-second", str(per_second or 0), "--latency", str(latency),
        "--api-key", KEY,
    )  # fmt: skip


# ---- does the database hold what the sandbox does? ------------------------------------------


@dataclass
class Comparison:
    """How the live rows of one table agree with the records the sandbox holds."""

    checked: int = 0  # in both
    missing: int = 0  # in the sandbox, not live in the database
    extra: int = 0  # live in the database, not in the sandbox
    different: int = 0
    examples: list[int] = field(default_factory=list)  # the first ids that disagree

    @property
    def ok(self) -> bool:
        return not (self.missing or self.extra or self.different)

    def disagree(self, record_id: int) -> None:
        if len(self.examples) < 5:
            self.examples.append(record_id)

    def summary(self) -> dict[str, Any]:
        return asdict(self)


Keyed = Iterator[tuple[int, dict[str, Any]]]


def compare(stored: Keyed, expected: Keyed) -> Comparison:
    """Merge two id-ordered streams of records, counting what agrees and what does not."""
    result = Comparison()
    have, want = next(stored, None), next(expected, None)
    while have is not None or want is not None:
        if want is None or (have is not None and have[0] < want[0]):
            assert have is not None
            result.extra += 1
            result.disagree(have[0])
            have = next(stored, None)
        elif have is None or want[0] < have[0]:
            result.missing += 1
            result.disagree(want[0])
            want = next(expected, None)
        else:
            result.checked += 1
            if have[1] != want[1]:
                result.different += 1
                result.disagree(have[0])
            have, want = next(stored, None), next(expected, None)
    return result


def stored_records(
    url: str,
    model: type[AcContact] | type[AcDeal],
    ids: Collection[int] | None = None,
    chunk: int = 5_000,
) -> Keyed:
    """Live rows (all, or those of `ids`) by ascending id as (id, `record` minus `raw`),
    read `chunk` rows at a time so the seed's 157,000 never sit in memory at once."""
    table: sa.Table = model.__table__  # type: ignore[union-attr]
    query = sa.select(table.c.id, table.c.record).where(table.c.deleted_at.is_(None))
    with session_scope(url) as session:
        if ids is not None:
            ordered = sorted(ids)
            for start in range(0, len(ordered), chunk):
                part = query.where(table.c.id.in_(ordered[start : start + chunk]))
                for record_id, record in session.execute(part.order_by(table.c.id)):
                    yield record_id, _without_raw(record)
            return
        last = 0
        while rows := session.execute(
            query.where(table.c.id > last).order_by(table.c.id).limit(chunk)
        ).all():
            for record_id, record in rows:
                yield record_id, _without_raw(record)
            last = rows[-1][0]


def _without_raw(record: Mapping[str, Any] | None) -> dict[str, Any]:
    return {k: v for k, v in (record or {}).items() if k != "raw"}


def expected_records(records: Iterable[dict[str, Any]], fields: Sequence[Field]) -> Keyed:
    """The sandbox's records as the flow should store them, by id."""
    types = {f.title: f.type for f in fields}
    for record in records:
        yield record["id"], as_stored(record, types)


def as_stored(record: Mapping[str, Any], types: Mapping[str, str]) -> dict[str, Any]:
    """Dates as UTC ISO text; multi-value custom fields (`||a||b||`) as lists (pull §1.5)."""
    stored = {k: v.isoformat() if isinstance(v, datetime) else v for k, v in record.items()}
    if "fields" in record:
        stored["fields"] = {
            title: _decoded(types.get(title, ""), value)
            for title, value in record["fields"].items()
        }
    return stored


def _decoded(field_type: str, value: Any) -> Any:
    wrapped = isinstance(value, str) and value.startswith("||") and value.endswith("||")
    if field_type in MULTI_VALUE_TYPES and wrapped:
        return [part for part in value[2:-2].split("||") if part]
    return value


def database_matches(url: str, sandbox: ActiveCampaignSandbox) -> dict[str, Comparison]:
    """Every live contact and deal against the sandbox's, and nothing else live."""
    account = sandbox.account
    return {
        "contacts": compare(
            stored_records(url, AcContact),
            expected_records(sandbox.iter_contacts(), account.fields),
        ),
        "deals": compare(
            stored_records(url, AcDeal), expected_records(sandbox.iter_deals(), account.deal_fields)
        ),
    }


def changes_present(
    url: str, sandbox: ActiveCampaignSandbox, contacts: Collection[int], deals: Collection[int]
) -> dict[str, Comparison]:
    """Only the given records, each as the sandbox holds it now."""
    account, contact_ids, deal_ids = sandbox.account, set(contacts), set(deals)
    return {
        "contacts": compare(
            stored_records(url, AcContact, contact_ids),
            expected_records(
                (c for c in sandbox.iter_contacts() if c["id"] in contact_ids), account.fields
            ),
        ),
        "deals": compare(
            stored_records(url, AcDeal, deal_ids),
            expected_records(
                (d for d in sandbox.iter_deals() if d["id"] in deal_ids), account.deal_fields
            ),
        ),
    }


def _all_ok(*checks: Mapping[str, Comparison]) -> bool:
    return all(c.ok for check in checks for c in check.values())


# ---- ac-full ----------------------------------------------------------------------------------


def full_sync_least(sandbox: ActiveCampaignSandbox) -> tuple[int, str]:
    """The fewest requests a full sync of the account needs, and the arithmetic."""
    shape, account = sandbox.shape, sandbox.account
    lists = [
        ("/contacts keyset pages", shape.contacts),
        ("/fieldValues pages", len(account.field_values)),
        ("/deals pages", shape.deals),
        ("/dealCustomFieldData pages", len(account.deal_values)),
    ]
    total = DEFINITION_LISTS + sum(_ceil_pages(n) for _, n in lists)
    terms = [f"⌈{n:,}/{PAGE}⌉ = {_ceil_pages(n):,} {what}" for what, n in lists]
    return total, " + ".join([*terms, f"{DEFINITION_LISTS} definition lists"]) + f" = {total:,}"


def _cpu_seconds() -> float:
    """User + system CPU time of this process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def full_sync(preset: str = "seed") -> BenchResult:
    """A full sync of the `preset` account from a sandbox process at 10/s and 250 ms."""
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/bench.db"
        asyncio.run(warm_prefect())
        with sandbox_process(Path(tmp), preset=preset, per_second=RATE, latency=LATENCY) as remote:
            _configure(url, remote.base_url, RATE)
            started, cpu = time.perf_counter(), _cpu_seconds()
            summary = asyncio.run(activecampaign_sync(full_sync=True))
            wall, cpu = time.perf_counter() - started, _cpu_seconds() - cpu
            # Now: the check below builds the whole account in this process (~40 MB more).
            peak = peak_rss_mb()
            stats = remote.stop()
        # Same factory, preset, key and seed as the sandbox process: the same records.
        sandbox: ActiveCampaignSandbox = create_app(
            KEY, preset=preset, per_second=None
        ).state.sandbox
        matches = database_matches(url, sandbox)
        dispose_engine(url)
    least, arithmetic = full_sync_least(sandbox)
    requests = summary.requests
    return BenchResult(
        scenario="ac-full",
        records=sandbox.shape.contacts + sandbox.shape.deals,
        requests=requests,
        wall_s=wall,
        floor_s=requests / RATE,
        http_429=int(stats["by_status"].get("429", 0)),
        correct=summary.mode == "full" and summary.state == "completed" and _all_ok(matches),
        peak_rss_mb=peak,
        details={
            "preset": preset,
            "contacts": sandbox.shape.contacts,
            "deals": sandbox.shape.deals,
            "contact_values": len(sandbox.account.field_values),
            "deal_values": len(sandbox.account.deal_values),
            "rate_per_second": RATE,
            "latency_ms": LATENCY * 1000,
            "mode": summary.mode,
            "records_read": summary.counts.records_read,
            # Near wall_s, the flow's own work (one interpreter) bounds it, not the cap.
            "flow_cpu_s": round(cpu, 1),
            "requests_seen_by_sandbox": stats["requests"],
            "requests_by_endpoint": stats["by_endpoint"],
            "requests_by_status": stats["by_status"],
            "least_requests": least,
            "least_arithmetic": arithmetic,
            "requests_per_least": round(requests / least, 3),
            "contacts_check": matches["contacts"].summary(),
            "deals_check": matches["deals"].summary(),
        },
    )


# ---- ac-incremental -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Changes:
    """Records changed between two runs."""

    contacts: list[int]
    deals: list[int]
    at_cursor: int  # how many of them carry their stream's cursor second


def _spread(items: Sequence[int], count: int) -> list[int]:
    """`count` of `items`, evenly spaced (changes land on every page, in every id range)."""
    step = len(items) / count
    return [items[int(n * step)] for n in range(count)]


def _cursor_second(url: str, stream: str) -> datetime:
    """Where the stream's next incremental pass starts (the last pass's start)."""
    with session_scope(url) as session:
        mark = get_cursor(session, PROVIDER, "default", f"{stream}:since")
    if mark is None:
        raise RuntimeError(f"no cursor for {stream}: the full sync did not complete")
    return datetime.fromisoformat(mark)


def change_records(sandbox: ActiveCampaignSandbox, url: str, contacts: int, deals: int) -> Changes:
    """Change contacts and visible deals with their custom field values; the first few of
    each in the second their stream's cursor names (whole-second timestamps tie there)."""
    account = sandbox.account
    contact_ids = _spread(range(1, len(account.contacts.flags) + 1), contacts)
    visible = [i + 1 for i in range(len(account.deals.flags)) if not account.restricted(i)]
    deal_ids = _spread(visible, deals)
    contact_mark, deal_mark = _cursor_second(url, "contacts"), _cursor_second(url, "deals")
    for n, contact_id in enumerate(contact_ids):
        fields: dict[int | str, str | None] = {"Company": f"Changed {n} Ltd"}
        if n % 4 == 1:
            fields["Interests"] = "||Events||Webinars||"  # a multi-value field
        if n % 10 == 2:
            fields["Notes"] = None  # a value removed
        at = contact_mark if n < AT_CURSOR else None
        sandbox.update_contact(contact_id, firstName=f"Changed{n}", fields=fields, at=at)
    for n, deal_id in enumerate(deal_ids):
        deal_fields: dict[int | str, str | None] = {"Close Reason": f"changed {n}"}
        if n % 3 == 1:
            deal_fields["Products"] = "||Pro||Training||"
        at = deal_mark if n < AT_CURSOR else None
        sandbox.update_deal(deal_id, title=f"Changed deal {n}", fields=deal_fields, at=at)
    return Changes(contact_ids, deal_ids, 2 * AT_CURSOR)


class MidRunChanges:
    """An `on_request` hook: as the `at`-th request arrives, change the contacts `ids`."""

    def __init__(self, sandbox: ActiveCampaignSandbox, ids: list[int], at: int) -> None:
        self.sandbox, self.ids, self.at = sandbox, ids, at
        self.seen = 0
        self.done = False

    def __call__(self, request: Request) -> None:  # noqa: ARG002 - the hook's signature
        self.seen += 1  # hooks run on the server's one event loop: no race
        if self.seen == self.at:
            for n, contact_id in enumerate(self.ids):
                self.sandbox.update_contact(
                    contact_id, lastName=f"MidRun{n}", fields={"Company": "Mid-run Co"}
                )
            self.done = True


def incremental_least(contacts: int, deals: int) -> tuple[int, str]:
    """The fewest requests an incremental run needs for the changed records, and the sum."""
    total = DEFINITION_LISTS + _ceil_pages(contacts) + _ceil_pages(deals) + contacts + deals
    text = (
        f"{DEFINITION_LISTS} definition lists + ⌈{contacts}/{PAGE}⌉ contact pages"
        f" + ⌈{deals}/{PAGE}⌉ deal pages + {contacts} /contacts/{{id}}/fieldValues"
        f" + {deals} /deals/{{id}}/dealCustomFieldData = {total}"
    )
    return total, text


def incremental(
    preset: str = "seed",
    contacts: int = 500,
    deals: int = 300,
    mid_run_at: int = MID_RUN_REQUEST,
) -> BenchResult:
    """An incremental run at 10/s and 250 ms after `contacts` + `deals` changed; more change
    as its `mid_run_at`-th request arrives."""
    app = create_app(KEY, preset=preset, per_second=RATE)
    sandbox: ActiveCampaignSandbox = app.state.sandbox
    # The sandbox's own account limit, off while priming: the measured run meets it, so a flow
    # that outpaced the documented cap would show as 429s, not as a fast run.
    account_limit, sandbox.limits = sandbox.limits, []
    with tempfile.TemporaryDirectory() as tmp, serve(app) as base_url:
        url = f"sqlite:///{tmp}/bench.db"
        _configure(url, base_url, UNPACED)
        asyncio.run(warm_prefect())
        started = time.perf_counter()
        priming = asyncio.run(activecampaign_sync())
        priming_wall = time.perf_counter() - started

        changes = change_records(sandbox, url, contacts, deals)
        untouched = sorted(
            set(range(1, len(sandbox.account.contacts.flags) + 1)) - set(changes.contacts)
        )
        mid_run = MidRunChanges(sandbox, _spread(untouched, MID_RUN), mid_run_at)
        sandbox.on_request(mid_run)
        sandbox.limits, sandbox.latency = account_limit, Latency(LATENCY)
        _configure(url, base_url, RATE)
        seen = len(sandbox.log)
        started = time.perf_counter()
        summary = asyncio.run(activecampaign_sync())
        wall = time.perf_counter() - started
        stats = request_stats(sandbox.log[seen:])
        present = changes_present(url, sandbox, changes.contacts, changes.deals)

        # The next run, fast again, must bring the changes made during the measured one.
        sandbox.hooks.remove(mid_run)
        sandbox.limits, sandbox.latency = [], Latency()
        _configure(url, base_url, UNPACED)
        after = asyncio.run(activecampaign_sync())
        mid_present = changes_present(url, sandbox, mid_run.ids, ())
        matches = database_matches(url, sandbox)
        dispose_engine(url)
    least, arithmetic = incremental_least(len(changes.contacts), len(changes.deals))
    requests = summary.requests
    runs_ok = (priming.mode, summary.mode, after.mode) == ("full", "incremental", "incremental")
    runs_ok = runs_ok and all(r.state == "completed" for r in (priming, summary, after))
    return BenchResult(
        scenario="ac-incremental",
        records=len(changes.contacts) + len(changes.deals),
        requests=requests,
        wall_s=wall,
        floor_s=requests / RATE,
        http_429=int(stats["by_status"].get("429", 0)),
        correct=runs_ok and mid_run.done and _all_ok(present, mid_present, matches),
        details={
            "preset": preset,
            "changed_contacts": len(changes.contacts),
            "changed_deals": len(changes.deals),
            "changed_in_cursor_second": changes.at_cursor,
            "changed_mid_run": f"{len(mid_run.ids)} contacts at request {mid_run_at}",
            "rate_per_second": RATE,
            "sandbox_limit_per_second": RATE,
            "latency_ms": LATENCY * 1000,
            "mode": summary.mode,
            "records_read": summary.counts.records_read,
            "requests_by_route": stats["by_route"],
            "requests_by_status": stats["by_status"],
            "least_requests": least,
            "least_arithmetic": arithmetic,
            "requests_per_least": round(requests / least, 3),
            "changes_check": {k: c.summary() for k, c in present.items()},
            "mid_run_check_after_next_run": mid_present["contacts"].summary(),
            "next_run_requests": after.requests,
            "full_sync_requests": priming.requests,
            "full_sync_wall_s_unpaced_no_latency": round(priming_wall, 1),
            "full_sync_floor_s_at_10_per_s": priming.requests / RATE,
            "contacts_check": matches["contacts"].summary(),
            "deals_check": matches["deals"].summary(),
            "peak_rss_note": "this process holds the sandbox and its account too",
        },
    )


SCENARIOS = (
    Scenario(
        "ac-full",
        "82k contacts + 75k deals (preset seed), cap 10/s, 250 ms latency: a full sync",
        full_sync,
    ),
    Scenario(
        "ac-incremental",
        "500 contacts + 300 deals changed after a full sync; cap 10/s, 250 ms latency",
        incremental,
    ),
)
