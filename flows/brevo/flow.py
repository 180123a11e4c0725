"""Opted-in customers → Brevo contacts, hourly, sending only what changed; ids written back.

The seed pushed every opted-in customer one request at a time, every hour, and left customers
who opted out on the list. Each run here:

1. reads the opted-in customers (`flows.brevo.customers`) and compares each contact's hash
   with `push_state`: only new or changed customers (or ones without a `brevo_contact_id`) are
   sent; `full_sync` sends all, `customer` sends one;
2. makes sure the `USED_WELCOME_OFFER` attribute exists (boolean);
3. sends them: from `BREVO_IMPORT_THRESHOLD` (100) changes on, as bulk imports of up to ~8 MB
   (push §2.5; one request per import, then the ids are read back with `GET /contacts`
   pages of 1,000 modified since the import); fewer go as upserts, one request each (two when
   an update's id is not known yet: a 204 carries none). A customer an import skipped is sent
   again as an upsert, which answers with Brevo's own reason (a duplicate phone, say);
4. writes every contact id back to `customers.brevo_contact_id`, with the push state;
5. handles customers who opted out since their last push (`BREVO_OPT_OUT`: unlink them from
   `BREVO_LIST_ID`, blacklist them, or nothing);
6. reconciles: every Brevo contact against every customer (the seed's Clients Manager views:
   source, Brevo, matched, unmatched, Brevo-only), as a table artifact and in
   `syncflows status brevo`.

All `/contacts/**` calls share Brevo's 10 per second and 36,000 per hour (push §2.7); the
import's process is polled under the 100 per hour of other endpoints, so sparingly.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlmodel import Session

from flows.brevo.api import REMOVE_LIMIT, Brevo
from flows.brevo.customers import Selection, Wanted, find_customer, select_customers
from flows.brevo.reconcile import FIRST_ROWS, Reconciliation, reconcile, save_reconciliation
from flows.brevo.store import (
    PROVIDER,
    Refused,
    Synced,
    opted_out_since_push,
    record_key,
    record_opt_outs,
    record_results,
)
from shared.db import in_thread
from shared.flowkit import fan_out, io_task, sync_flow
from shared.http import provider_client
from shared.models import utcnow
from shared.observability import get_logger
from shared.runs import (
    Counts,
    RunSummary,
    RunTracker,
    payload_hash,
    publish_table,
    push_hashes,
    tracked_run,
)
from shared.settings import BrevoSettings, load_provider_settings, load_settings

IMPORT_BYTES = 8_000_000  # per import body: Brevo takes 10 MB and advises ~8 (push §2.5)
POLL_SECONDS = (1, 2, 4, 8, 15, 30, 60)  # then every 60 s: 100 process reads an hour (§2.7)
IMPORT_WAIT_SECONDS = 30 * 60  # half the hourly schedule
UPSERTS_AT_ONCE = 8
WELCOME = ("USED_WELCOME_OFFER", "boolean")  # FIRSTNAME, LASTNAME, SMS exist by default


@dataclass
class Plan:
    selection: Selection
    sends: list[tuple[Wanted, str]]  # (contact, its hash)
    unchanged: int
    opted_out: list[tuple[str, str]]  # (customer id, email) to take off

    def counts(self) -> Counts:
        chosen = self.selection
        return Counts(
            records_read=len(chosen.wanted) + len(chosen.skipped) + len(chosen.no_email),
            unchanged=self.unchanged,
            skipped=len(chosen.skipped),
            failed=len(chosen.no_email),
        )


@dataclass
class Push:
    url: str
    account: str
    list_id: int | None
    run: RunTracker
    brevo: Brevo | None = None
    results: list[dict[str, Any]] = field(default_factory=list)  # the seed's per-customer list

    def write(self, work: Any) -> Any:
        return in_thread(self.url, work)


def contact(item: Wanted, list_id: int | None) -> dict[str, Any]:
    body: dict[str, Any] = {"email": item.email, "attributes": item.attributes}
    if list_id is not None:
        body["listIds"] = [list_id]
    return body


# ---- plan ---------------------------------------------------------------------------------------


@io_task()
async def plan_push(push: Push, country: str | None, customer: str | None, force: bool) -> Plan:
    """Read the opted-in customers (or the one named) and compare with what was pushed."""

    def read(session: Session) -> Plan:
        only = find_customer(session, customer) if customer is not None else None
        if only is not None and not only.marketing_opt_in:
            raise ValueError(
                f"customer {only.id} has not opted in to marketing (marketing_opt_in is false): "
                "it is not pushed to Brevo"
            )
        selection = select_customers(session, country, only)
        hashes = push_hashes(session, PROVIDER, push.account)
        sends, unchanged = [], 0
        for item in selection.wanted:
            digest = payload_hash(contact(item, push.list_id))
            known = hashes.get(record_key(item.customer_id)) == digest
            if force or not known or item.brevo_contact_id is None:
                sends.append((item, digest))
            else:
                unchanged += 1
        opted_out = [] if only is not None else opted_out_since_push(session, push.account)
        return Plan(selection, sends, unchanged, opted_out)

    plan: Plan = await push.write(read)
    get_logger().info(
        "%d opted-in customers: %d to send, %d unchanged, %d opted out since their last push",
        len(plan.selection.wanted),
        len(plan.sends),
        plan.unchanged,
        len(plan.opted_out),
    )
    for item in plan.selection.wanted:
        if item.warning:
            get_logger().warning("customer %s: %s", item.customer_id, item.warning)
    return plan


# ---- sending ------------------------------------------------------------------------------------


async def _record(
    push: Push, synced: list[Synced], refused: list[Refused], emails: dict[str, str]
) -> None:
    counts = await push.write(
        lambda s: record_results(s, push.account, push.run.run_id, synced, refused)
    )
    push.run.counts = push.run.counts + counts
    push.results += [
        {"customerId": s.customer_id, "email": emails[s.customer_id], "success": True,
         "brevoId": s.contact_id}
        for s in synced
    ]  # fmt: skip
    push.results += [
        {"customerId": r.customer_id, "email": emails[r.customer_id], "success": False,
         "error": r.message}
        for r in refused
    ]  # fmt: skip


@io_task(retries=2, retry_delay_seconds=5)
async def upsert_all(push: Push, items: list[tuple[Wanted, str]]) -> None:
    """One upsert per customer, `UPSERTS_AT_ONCE` in flight, under the shared pace."""
    assert push.brevo is not None
    brevo = push.brevo

    async def one(entry: tuple[Wanted, str]) -> Synced | Refused:
        item, digest = entry
        answer = await brevo.upsert(contact(item, push.list_id))
        if not answer.ok:
            return Refused(item.customer_id, answer.code, answer.message)
        contact_id = answer.contact_id or item.brevo_contact_id
        if contact_id is None:  # a 204 update of a contact we have no id for yet
            contact_id = await brevo.contact_id(item.email)
        if contact_id is None:
            return Refused(item.customer_id, None, "Brevo accepted the contact but has no id")
        return Synced(item.customer_id, contact_id, digest, created=answer.code == 201)

    outcomes = await fan_out(items, one, limit=UPSERTS_AT_ONCE)
    synced = [o for o in outcomes if isinstance(o, Synced)]
    refused = [o for o in outcomes if isinstance(o, Refused)]
    await _record(push, synced, refused, {i.customer_id: i.email for i, _ in items})


def import_bodies(items: list[tuple[Wanted, str]]) -> list[list[tuple[Wanted, str]]]:
    """Split into imports whose JSON stays under `IMPORT_BYTES`."""
    parts: list[list[tuple[Wanted, str]]] = [[]]
    size = 0
    for entry in items:
        row = len(json.dumps({"email": entry[0].email, "attributes": entry[0].attributes}))
        if parts[-1] and size + row + 1 > IMPORT_BYTES:
            parts.append([])
            size = 0
        parts[-1].append(entry)
        size += row + 1
    return parts


@io_task(retries=1, retry_delay_seconds=10)
async def import_part(push: Push, items: list[tuple[Wanted, str]]) -> list[tuple[Wanted, str]]:
    """One bulk import, waited for, its ids read back; returns the customers it skipped."""
    assert push.brevo is not None
    brevo = push.brevo
    since = utcnow() - timedelta(minutes=5)  # clocks differ; a wider window only costs a page
    rows = [{"email": i.email, "attributes": i.attributes} for i, _ in items]
    process = await brevo.import_contacts(rows, [push.list_id] if push.list_id else [])
    await wait_for(brevo, process)
    wanted = {i.email: (i, d) for i, d in items}
    found: dict[str, int] = {}
    offset = 0
    while len(found) < len(wanted):
        page, total = await brevo.contacts(offset, modified_since=since)
        for entry in page:
            email = str(entry.get("email", "")).lower()
            if email in wanted:
                found[email] = int(entry["id"])
        offset += len(page)
        if not page or offset >= total:
            break
    synced = [
        Synced(item.customer_id, found[email], digest, created=item.brevo_contact_id is None)
        for email, (item, digest) in wanted.items()
        if email in found
    ]
    await _record(push, synced, [], {i.customer_id: i.email for i, _ in items})
    return [entry for email, entry in wanted.items() if email not in found]


async def wait_for(brevo: Brevo, process: int) -> None:
    """Poll the import's process until it is completed (sparingly: §2.7), at most
    `IMPORT_WAIT_SECONDS`; the next run sends whatever a stuck import did not take."""
    waited, attempt = 0.0, 0
    while waited < IMPORT_WAIT_SECONDS:
        pause = POLL_SECONDS[min(attempt, len(POLL_SECONDS) - 1)]
        await asyncio.sleep(pause)
        waited, attempt = waited + pause, attempt + 1
        if await brevo.process_status(process) == "completed":
            return
    raise TimeoutError(f"Brevo import process {process} did not complete in {waited:.0f} s")


async def send(push: Push, items: list[tuple[Wanted, str]], bulk: bool) -> None:
    if not bulk:
        await upsert_all(push, items)
        return
    skipped: list[tuple[Wanted, str]] = []
    for part in import_bodies(items):
        skipped += await import_part(push, part)
    if skipped:  # upserted one by one: Brevo then says why it would not take them
        get_logger().info("%d customers were not imported; sending them one by one", len(skipped))
        await upsert_all(push, skipped)


# ---- opt-outs -----------------------------------------------------------------------------------


@io_task(retries=2, retry_delay_seconds=5)
async def take_off(push: Push, mode: str, opted_out: list[tuple[str, str]]) -> None:
    """Customers who opted out leave the list (or are blacklisted); recorded as such."""
    assert push.brevo is not None
    emails = [email for _, email in opted_out]
    if mode == "unlink" and push.list_id is not None:
        for start in range(0, len(emails), REMOVE_LIMIT):
            await push.brevo.unlink(push.list_id, emails[start : start + REMOVE_LIMIT])
    elif mode == "blacklist":
        for email in emails:
            await push.brevo.blacklist(email)
    await push.write(lambda s: record_opt_outs(s, push.account, [c for c, _ in opted_out]))
    get_logger().info("%d customers opted out: %s", len(opted_out), mode)


# ---- what the UI shows ---------------------------------------------------------------------------

RESULT_ROWS = 100


async def _table(push: Push, what: str, rows: list[dict[str, Any]], description: str) -> None:
    await publish_table(PROVIDER, push.account, what, rows, description)


def dry_run_rows(plan: Plan) -> list[dict[str, Any]]:
    """What a real run would do: counts, then the customers it would send or skip."""
    chosen = plan.selection
    rows: list[dict[str, Any]] = [
        {"action": "send (count)", "customer": len(plan.sends), "email": "", "detail": ""},
        {"action": "unchanged (count)", "customer": plan.unchanged, "email": "", "detail": ""},
        {"action": "skip (count)", "customer": len(chosen.skipped), "email": "", "detail": ""},
        {"action": "opt out (count)", "customer": len(plan.opted_out), "email": "", "detail": ""},
    ]
    rows += [
        {"action": "send", "customer": i.customer_id, "email": i.email,
         "detail": json.dumps(i.attributes) + (f"; {i.warning}" if i.warning else "")}
        for i, _ in plan.sends[:RESULT_ROWS]
    ]  # fmt: skip
    rows += [
        {"action": "skip", "customer": cid, "email": "", "detail": reason}
        for cid, reason in chosen.skipped[:RESULT_ROWS]
    ]
    rows += [
        {"action": "opt out", "customer": cid, "email": email, "detail": ""}
        for cid, email in plan.opted_out[:RESULT_ROWS]
    ]
    return rows


async def publish_dry_run(push: Push, plan: Plan) -> None:
    description = "brevo-sync test_mode: what a real run would send (nothing was sent)"
    await _table(push, "dry-run", dry_run_rows(plan), description)


async def publish_reconciliation(push: Push, found: Reconciliation) -> None:
    rows: list[dict[str, Any]] = [
        {"view": name, "count": count, "first": ""} for name, count in found.counts().items()
    ]
    for view, emails in found.first.items():
        rows += [{"view": view, "count": "", "first": email} for email in emails[:FIRST_ROWS]]
    description = "Customers against Brevo contacts, by email (the Clients Manager views)"
    await _table(push, "reconciliation", rows, description)


def sync_result(push: Push, plan: Plan) -> dict[str, Any]:
    """The run as the seed's `POST /api/admin/customers/sync-all` answered it."""
    synced = sum(1 for r in push.results if r["success"])
    failed = len(push.results) - synced
    total = len(push.results)
    return {
        "success": failed == 0,
        "message": f"Synced {synced} of {total} customers to Brevo",
        "synced": synced,
        "failed": failed,
        "total": total,
        "unchanged": plan.unchanged,
        "results": push.results,
    }


async def publish_results(push: Push, plan: Plan) -> None:
    result = sync_result(push, plan)
    rows = [
        {"customerId": r["customerId"], "email": r["email"], "success": r["success"],
         "brevoId": r.get("brevoId"), "error": r.get("error", "")}
        for r in result["results"][:RESULT_ROWS]
    ]  # fmt: skip
    description = result["message"] + (f", {result['failed']} failed" if result["failed"] else "")
    await _table(push, "sync-result", rows, description)


# ---- the flow -----------------------------------------------------------------------------------


async def ensure_attributes(brevo: Brevo) -> None:
    names = {str(a.get("name", "")).upper() for a in await brevo.attributes()}
    name, kind = WELCOME
    if name not in names:
        await brevo.create_attribute(name, kind)
        get_logger().info("created the Brevo attribute %s (%s)", name, kind)


@sync_flow(name="brevo-sync")
async def brevo_sync(
    customer: str | None = None, full_sync: bool = False, test_mode: bool = False
) -> RunSummary:
    """Push opted-in customers to Brevo contacts and write their ids back.

    Args:
        customer: Push only this customer (id or email), changed or not: the seed's "Push to
            Brevo". Refused when the customer has not opted in.
        full_sync: Send every opted-in customer, changed or not.
        test_mode: Dry run: count and list what would be sent, send nothing.
    """
    settings = load_settings()
    provider = await load_provider_settings(BrevoSettings)
    assert provider.api_key is not None
    url, account = settings.database_url, provider.account
    mode = "test" if test_mode else "single" if customer else "full" if full_sync else "incremental"
    force = full_sync or customer is not None
    async with tracked_run(url, PROVIDER, account, mode) as run:
        push = Push(url, account, provider.list_id, run)
        plan = await plan_push(push, provider.default_country, customer, force)
        run.counts = run.counts + plan.counts()
        if test_mode:
            await publish_dry_run(push, plan)
        else:
            await _push(push, provider, settings, plan, single=customer is not None)
    assert run.summary is not None
    return run.summary


async def _push(
    push: Push, provider: BrevoSettings, settings: Any, plan: Plan, single: bool
) -> None:
    assert provider.api_key is not None
    client = provider_client(
        provider, settings, headers={"api-key": provider.api_key.get_secret_value()}
    )
    try:
        async with client:
            push.brevo = Brevo(client)
            if plan.sends:
                await ensure_attributes(push.brevo)
                bulk = not single and len(plan.sends) >= provider.import_threshold
                await send(push, plan.sends, bulk)
            if plan.opted_out and provider.opt_out != "none":
                await take_off(push, provider.opt_out, plan.opted_out)
            if not single:
                found = await reconcile(push.brevo, push.url)
                await push.write(lambda s: save_reconciliation(s, push.account, found))
                await publish_reconciliation(push, found)
    finally:
        push.run.requests = client.requests
    await publish_results(push, plan)
