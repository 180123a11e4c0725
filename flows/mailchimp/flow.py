"""Contacts → each owner's Mailchimp audience: the outbox every minute, Sync Now on request.

The seed (a PRD) mirrors every owner's contacts one way into the Mailchimp audience they chose.
Each run, for every connection (or the one `owner` names):

1. a connection never reconciled (just connected, or a new audience chosen) is reconciled in
   full first; `full_sync` asks for that too (Sync Now), at most once an hour
   (`flows.mailchimp.full`);
2. the outbox is drained (`flows.mailchimp.outbox`): due events are claimed, collapsed per
   contact and sent: `PUT` member with `status_if_new` (an existing member's status is never
   forced), `POST …/tags` when tags changed, `DELETE` (archive) or `delete-permanent` for
   deleted contacts (push §3.3 to §3.5). Failures wait 1 s, 2 s, 4 s… (at most 5 min) and the
   run keeps draining while the next one is due within `WAIT_IN_RUN_SECONDS`; five failed
   attempts pause the connection, and its next success resumes it.

Every connection to one Mailchimp account shares that account's 10 simultaneous connections
(push §3.11) through one limiter, held across workers by a Prefect global concurrency limit.
Each connection's work is its own row in the run ledger (account `owner-<id>`).
"""

from __future__ import annotations

import asyncio
import functools
import random
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from flows.mailchimp.api import PAGE, Mailchimp, is_permanent, subscriber_hash
from flows.mailchimp.connections import (
    PAUSED_NOTICE,
    Connection,
    claim_full_sync,
    keyring,
    load_connections,
    mark_synced,
    release_full_sync,
    set_status,
)
from flows.mailchimp.full import (
    FullPlan,
    Known,
    Member,
    member_from,
    plan_full,
    read_known,
    subscribe_chunks,
    tag_operations,
)
from flows.mailchimp.members import FIELD_DEFINITIONS, PROVIDER, same_email, tag_changes
from flows.mailchimp.outbox import (
    CLAIM_SIZE,
    Delete,
    Done,
    Event,
    Failed,
    Outcome,
    Refused,
    Round,
    Upsert,
    claim,
    collapse,
    next_due,
    peek,
    record,
    release,
    save_done,
    save_refused,
)
from shared.db import ensure_schema, in_thread
from shared.flowkit import fan_out, io_task, sync_flow
from shared.http import Answer, ProviderError, ProviderHTTPError, RetryPolicy
from shared.models import utcnow
from shared.observability import Refusal, get_logger
from shared.runs import (
    Counts,
    RunSummary,
    RunTracker,
    describe_error,
    publish_table,
    tracked_run,
)
from shared.settings import MailchimpSettings, Settings, load_provider_settings, load_settings

WAIT_IN_RUN_SECONDS = 30.0  # a retry due this soon is waited for; later ones are the next run's
PAGES_AT_ONCE = 4
SUBSCRIBES_AT_ONCE = 3
RESULT_ROWS = 100


class SyncNowRefused(Refusal):
    """Sync Now was asked for within an hour of the previous one; says when it is allowed."""


class ConnectionBroken(RuntimeError):
    """Mailchimp refused the connection itself (credentials revoked, audience gone)."""


@dataclass
class Context:
    """One connection's run: where to write, how to send, what happened."""

    url: str
    connection: Connection
    run: RunTracker
    mailchimp: Mailchimp
    permanent_delete: bool
    drainer: str = field(default_factory=lambda: uuid.uuid4().hex)
    # Contacts this run's full sync already counted: their queued events, drained right
    # after it, are not counted again when they need nothing.
    counted: set[str] = field(default_factory=set)
    fields_checked: bool = False
    rows: list[dict[str, Any]] = field(default_factory=list)  # the run's artifact

    def write(self, work: Any) -> Any:
        return in_thread(self.url, work)

    @property
    def owner(self) -> str:
        return self.connection.owner_id

    @property
    def account(self) -> str:
        return self.connection.label


# ---- sending one contact -------------------------------------------------------------------------


def _refusal(contact_id: str, answer: Answer) -> Outcome:
    if answer.code == 401 or (answer.code == 403 and answer.body):
        # The token was revoked or the account closed: the owner must connect again.
        raise ConnectionBroken(f"Mailchimp answered {answer.code}: {answer.message}")
    if answer.code == 403 or answer.code >= 500 or answer.code == 429:
        return Failed(contact_id, f"{answer.code}: {answer.message or 'no body'}")  # §3.11
    return Refused(contact_id, answer.code, answer.message, answer.body, is_permanent(answer.body))


async def _delete(mailchimp: Mailchimp, email: str, permanent: bool) -> Answer:
    answer = await (mailchimp.forget(email) if permanent else mailchimp.archive(email))
    return Answer(204, None) if answer.code == 404 else answer  # already gone: done


async def send_upsert(ctx: Context, item: Upsert) -> Outcome:
    want, before = item.want, item.before
    mailchimp = ctx.mailchimp
    if before is not None and before.email and not same_email(before.email, want.email):
        moved = await _delete(mailchimp, before.email, ctx.permanent_delete)
        if not moved.ok:
            return _refusal(want.contact_id, moved)
    answer = await mailchimp.upsert(want.email, want.merge_fields)
    if answer.code == 404:  # a PUT creates members: only a missing audience answers 404
        raise ConnectionBroken(f"the audience is gone (Mailchimp: {answer.message})")
    if not answer.ok:
        return _refusal(want.contact_id, answer)
    present = member_from(answer.body).tags if isinstance(answer.body, dict) else None
    active, inactive = tag_changes(want.tags, before.tags if before else (), present)
    if active or inactive:
        tagged = await mailchimp.tag(want.email, active, inactive)
        if not tagged.ok:
            return _refusal(want.contact_id, tagged)
    return Done(want.contact_id, want, created=before is None)


async def send_delete(ctx: Context, item: Delete) -> Outcome:
    answer = await _delete(ctx.mailchimp, item.email, ctx.permanent_delete)
    return Done(item.contact_id, None) if answer.ok else _refusal(item.contact_id, answer)


async def send_one(ctx: Context, item: Upsert | Delete) -> Outcome:
    contact_id = item.want.contact_id if isinstance(item, Upsert) else item.contact_id
    try:
        if isinstance(item, Upsert):
            return await send_upsert(ctx, item)
        return await send_delete(ctx, item)
    except ProviderHTTPError:
        raise  # writes answer refusals; a refused read is a bug worth its traceback
    except ProviderError as error:  # 5xx, transport, 429s the client gave up on: retry later
        return Failed(contact_id, error.message)


@io_task(retries=2, retry_delay_seconds=5)
async def ensure_merge_fields(ctx: Context) -> None:
    """Put back FNAME, LNAME or PHONE when the audience lacks them (push §3.10): without
    them every member would be refused, or its name dropped. Once a run, before its first
    write (after its first claim, so a concurrent drainer's claim is never delayed by it)."""
    if ctx.fields_checked:
        return
    ctx.fields_checked = True
    present = set(await ctx.mailchimp.merge_fields())
    for tag, (name, kind) in FIELD_DEFINITIONS.items():
        if tag not in present:
            await ctx.mailchimp.add_merge_field(tag, name, kind)
            get_logger().info("owner %s: created the merge field %s (%s)", ctx.owner, tag, kind)


# ---- the outbox ----------------------------------------------------------------------------------


@io_task()
async def drain_round(ctx: Context, work: Round) -> bool:
    """Send one claim's actions, record the outcomes; False when the connection paused."""
    items: list[Upsert | Delete] = [*work.upserts, *work.deletes]
    try:
        outcomes = await fan_out(items, lambda item: send_one(ctx, item), limit=10)
    except ConnectionBroken as broken:
        reason = str(broken)

        def stop(session: Any) -> None:
            release(session, work.events)
            set_status(session, ctx.owner, "error", reason)

        await ctx.write(stop)
        raise
    recorded = await ctx.write(
        lambda s: record(s, ctx.owner, ctx.account, ctx.run.run_id, work, outcomes, utcnow())
    )
    again = (set(work.unchanged) | set(work.skipped)) & ctx.counted
    ctx.run.counts = (
        ctx.run.counts
        + recorded.counts
        + Counts(
            records_read=-len(again),
            unchanged=-len(again & set(work.unchanged)),
            skipped=-len(again & set(work.skipped)),
        )
    )
    for outcome in outcomes:
        if not isinstance(outcome, Done):
            ctx.rows.append(
                {"contact": outcome.contact_id, "result": "failed", "detail": outcome.message}
            )
    if recorded.resumed:
        get_logger().info("owner %s: Mailchimp answers again; email sync is active", ctx.owner)
    if recorded.paused is not None:
        get_logger().warning(
            "owner %s: %s (5 failed attempts; the next run tries again): %s",
            ctx.owner,
            PAUSED_NOTICE,
            recorded.paused,
        )
        return False
    return True


async def drain(ctx: Context, paused: bool) -> None:
    """Claim, collapse and send due events until none is due within `WAIT_IN_RUN_SECONDS`.

    A paused connection sends one event first, as a probe: its success resumes the connection.
    """
    while True:
        events = await ctx.write(
            functools.partial(_claim, ctx=ctx, limit=1 if paused else CLAIM_SIZE)
        )
        if not events:
            due = await ctx.write(lambda s: next_due(s, ctx.owner, utcnow()))
            wait = None if due is None else (due - utcnow()).total_seconds()
            if paused or wait is None or wait > WAIT_IN_RUN_SECONDS:
                return
            await asyncio.sleep(max(wait, 0.0) + 0.01)
            continue
        work = await ctx.write(functools.partial(collapse, account=ctx.account, events=events))
        if work.upserts:
            await ensure_merge_fields(ctx)
        if not await drain_round(ctx, work):
            return
        paused = False


def _claim(session: Any, ctx: Context, limit: int) -> list[Event]:
    return claim(session, ctx.owner, ctx.drainer, utcnow(), limit)


# ---- Sync Now ------------------------------------------------------------------------------------


async def list_members(mailchimp: Mailchimp) -> dict[str, Member]:
    """The whole audience, every status, keyed by subscriber hash (pages read concurrently)."""
    first, total = await mailchimp.members(0)
    pages = [first]
    if total > len(first):
        offsets = list(range(PAGE, total, PAGE))
        pages += [p for p, _ in await fan_out(offsets, mailchimp.members, limit=PAGES_AT_ONCE)]
    members = [member_from(m) for page in pages for m in page]
    return {subscriber_hash(m.email): m for m in members}


@io_task(retries=2, retry_delay_seconds=10)
async def plan_full_sync(ctx: Context) -> FullPlan:
    """List the audience and compare it with the owner's contacts."""
    known: Known = await ctx.write(lambda s: read_known(s, ctx.owner, ctx.account))
    members = await list_members(ctx.mailchimp)
    plan = plan_full(known, members)
    get_logger().info(
        "owner %s: %d contacts, %d members; %d to subscribe or update, %d tag changes, "
        "%d to archive, %d already match, %d without email",
        ctx.owner,
        plan.contacts,
        len(members),
        len(plan.subscribe),
        len(plan.tags),
        len(plan.deletes),
        len(plan.unchanged),
        len(plan.skipped),
    )
    return plan


@io_task(retries=2, retry_delay_seconds=10)
async def send_full_sync(ctx: Context, plan: FullPlan) -> None:
    """Batch-subscribe what differs, tag through `/batches`, archive; record it all at once."""
    refused: dict[str, Refused] = {}
    by_email = {w.email.lower(): w for w, _ in plan.subscribe}
    created: set[str] = set()

    async def subscribe(chunk: list[dict[str, Any]]) -> None:
        answer = await ctx.mailchimp.subscribe(chunk)
        for member in answer.get("new_members") or []:
            found = by_email.get(str(member.get("email_address", "")).lower())
            if found is not None:
                created.add(found.contact_id)
        for error in answer.get("errors") or []:
            found = by_email.get(str(error.get("email_address", "")).lower())
            if found is not None:
                text = str(error.get("error", ""))
                refused[found.contact_id] = Refused(
                    found.contact_id, 400, text, error, is_permanent(text)
                )

    await fan_out(subscribe_chunks(plan), subscribe, limit=SUBSCRIBES_AT_ONCE)
    changes = [c for cid, c in plan.tags.items() if cid not in refused]
    for operations in tag_operations(ctx.mailchimp.list_id, changes):
        for result in await ctx.mailchimp.run_batch(operations):
            code = int(result.get("status_code") or 0)
            if code >= 400:
                contact_id = str(result.get("operation_id"))
                answer = Answer(code, result.get("response"))
                refused[contact_id] = Refused(
                    contact_id, code, answer.message, answer.body, is_permanent(answer.body)
                )
    outcomes = await fan_out(plan.deletes, lambda d: send_delete(ctx, d), limit=10)
    refused.update({o.contact_id: o for o in outcomes if isinstance(o, Refused)})
    failed = [o for o in outcomes if isinstance(o, Failed)]
    if failed:  # a delete that may pass: the task's retry lists the audience again
        raise RuntimeError(f"{len(failed)} archives failed, e.g. {failed[0].message}")
    sent = {w.contact_id: w for w, _ in plan.subscribe}
    sent.update({w.contact_id: w for w, _, _ in plan.tags.values()})
    done = [
        Done(w.contact_id, w, created=w.contact_id in created)
        for w in [*sent.values(), *plan.unchanged]
        if w.contact_id not in refused
    ]
    done += [o for o in outcomes if isinstance(o, Done)]

    def write(session: Any) -> None:
        save_done(session, ctx.account, done)
        for refusal in refused.values():
            save_refused(session, ctx.account, ctx.run.run_id, refusal)
        mark_synced(session, ctx.owner, utcnow())

    await ctx.write(write)
    unchanged = {w.contact_id for w in plan.unchanged}
    ctx.run.counts = ctx.run.counts + Counts(
        records_read=plan.contacts,
        created=sum(1 for d in done if d.created),
        updated=sum(1 for d in done if not d.created and d.contact_id not in unchanged),
        unchanged=len(unchanged),
        skipped=len(plan.skipped),
        failed=len(refused),
    )
    ctx.rows += [
        {"contact": r.contact_id, "result": "failed", "detail": r.message} for r in refused.values()
    ]
    ctx.counted |= unchanged | {d.contact_id for d in done} | set(plan.skipped)


# ---- what the UI shows ---------------------------------------------------------------------------


async def _table(ctx: Context, what: str, rows: list[dict[str, Any]], description: str) -> None:
    await publish_table(PROVIDER, ctx.account, what, rows[:RESULT_ROWS], description)


def dry_run_rows(plan: FullPlan | None, work: Round | None) -> list[dict[str, Any]]:
    """What a real run would send: Sync Now's plan, or the outbox's next round."""
    rows: list[dict[str, Any]] = []
    if plan is not None:
        rows += [
            {"contact": w.contact_id, "action": "subscribe" if new else "update",
             "detail": f"{w.email} {w.merge_fields}"}
            for w, new in plan.subscribe
        ]  # fmt: skip
        rows += [
            {"contact": w.contact_id, "action": "tags", "detail": f"active {a}, inactive {i}"}
            for w, a, i in plan.tags.values()
        ]
        rows += [
            {"contact": d.contact_id, "action": "archive", "detail": d.email} for d in plan.deletes
        ]
        rows += [{"contact": c, "action": "skip", "detail": "no email"} for c in plan.skipped]
    if work is not None:
        rows += [
            {"contact": u.want.contact_id, "action": "upsert",
             "detail": f"{u.want.email} {u.want.merge_fields} tags {list(u.want.tags)}"}
            for u in work.upserts
        ]  # fmt: skip
        rows += [
            {"contact": d.contact_id, "action": "archive", "detail": d.email} for d in work.deletes
        ]
        rows += [{"contact": c, "action": "skip", "detail": "no email"} for c in work.skipped]
    return rows


# ---- one connection ------------------------------------------------------------------------------


def _policy(settings: Settings) -> RetryPolicy:
    # Only a 429 (too many connections: every start pauses, push §3.11) is retried inside a
    # request. A 5xx or timeout goes back to the outbox, whose 1 s, 2 s, 4 s… and pause are
    # the seed's failure handling; in Sync Now, the task's retry.
    return RetryPolicy(
        max_attempts=settings.http_max_attempts,
        backoff_max=settings.http_backoff_max_seconds,
        retry_statuses=frozenset({429}),
    )


async def sync_connection(
    connection: Connection,
    provider: MailchimpSettings,
    settings: Settings,
    full_sync: bool,
    test_mode: bool,
) -> ConnectionRun:
    """Reconcile (when asked, or never done) and drain one connection.

    A connection with nothing due gets no run (a ledger row a minute per owner would be
    noise); one that cannot sync (no audience chosen, credentials refused) says why.
    """
    url, owner = settings.database_url, connection.owner_id
    if connection.audience_id is None:
        return ConnectionRun(
            owner, blocked="no audience chosen: `syncflows mailchimp select-audience`"
        )
    if connection.status == "error":
        return ConnectionRun(owner, blocked="Mailchimp refused the credentials: connect again")
    full = full_sync or connection.last_full_sync_at is None
    taken: datetime | None = None
    if full and not test_mode:
        now = utcnow()
        allowed = await in_thread(url, lambda s: claim_full_sync(s, owner, now))
        if allowed is None:
            taken = now
        elif full_sync:
            return ConnectionRun(
                owner,
                refused=f"Sync Now for owner {owner} is allowed again at "
                f"{allowed:%Y-%m-%d %H:%M} UTC (once an hour)",
            )
        else:
            full = False  # another run took the first reconciliation a moment ago
    if not full:
        due = await in_thread(url, lambda s: next_due(s, owner, utcnow()))
        if due is None or due > utcnow():
            return ConnectionRun(owner)
    mode = "test" if test_mode else "full" if full else "incremental"
    async with tracked_run(url, PROVIDER, connection.label, mode) as run:
        client = connection.client(provider, settings, policy=_policy(settings))
        try:
            async with client:
                ctx = Context(
                    url,
                    connection,
                    run,
                    Mailchimp(client, connection.audience_id),
                    provider.permanent_delete,
                )
                if test_mode:
                    await _dry_run(ctx, full)
                else:
                    if full:
                        plan = await plan_full_sync(ctx)
                        if plan.subscribe:
                            await ensure_merge_fields(ctx)
                        await send_full_sync(ctx, plan)
                    await drain(ctx, paused=connection.status == "paused")
                    await _table(
                        ctx, "failures", ctx.rows, "Contacts Mailchimp refused in this run"
                    )
        except BaseException:
            if taken is not None:  # a failed Sync Now gives its hour back
                before = connection.last_full_sync_at
                await in_thread(url, lambda s: release_full_sync(s, owner, taken, before))
            raise
        finally:
            run.requests = client.requests
    return ConnectionRun(owner, summary=run.summary)


async def _isolated(run: Awaitable[ConnectionRun], owner: str) -> ConnectionRun:
    """One owner's failure must not stop the others' syncs: it is noted, and raised at the end."""
    try:
        return await run
    except Exception as error:
        get_logger().error("owner %s: the sync failed: %s", owner, describe_error(error))
        return ConnectionRun(owner, error=describe_error(error))


async def _dry_run(ctx: Context, full: bool) -> None:
    """Count and list what would be sent; send nothing, claim nothing."""
    plan = await plan_full_sync(ctx) if full else None
    now = utcnow()
    events = await ctx.write(lambda s: peek(s, ctx.owner, now))
    work = await ctx.write(lambda s: collapse(s, ctx.account, events))
    rows = dry_run_rows(plan, work)
    counts = Counts(
        records_read=(plan.contacts if plan else 0) + len({e.contact_id for e in events})
    )
    if plan is not None:
        counts.unchanged += len(plan.unchanged)
        counts.skipped += len(plan.skipped)
    counts.unchanged += len(work.unchanged)
    counts.skipped += len(work.skipped)
    ctx.run.counts = ctx.run.counts + counts
    await _table(ctx, "dry-run", rows, "mailchimp-sync test_mode: what a real run would send")
    get_logger().info("owner %s: dry run, %d actions listed, nothing sent", ctx.owner, len(rows))


# ---- the flow ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConnectionRun:
    """How one connection's part of a run ended (a summary only when it had work)."""

    owner: str
    summary: RunSummary | None = None
    refused: str | None = None  # Sync Now within the hour: when it is allowed
    blocked: str | None = None  # why it cannot sync until its owner acts
    error: str | None = None


@dataclass
class MailchimpResult:
    """Summaries of the connections that had work; refusals, blocked and failed owners."""

    summaries: list[RunSummary] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)  # owner → message
    idle: dict[str, str] = field(default_factory=dict)  # owner → why it cannot sync
    failed: dict[str, str] = field(default_factory=dict)  # owner → error


@sync_flow(name="mailchimp-sync")
async def mailchimp_sync(
    owner: str | None = None, full_sync: bool = False, test_mode: bool = False
) -> MailchimpResult:
    """Push contact changes to each owner's Mailchimp audience.

    Args:
        owner: Only this owner's connection (the Settings page's Sync Now passes it).
        full_sync: Sync Now: reconcile the whole audience (list it, send what differs), at
            most once an hour per connection; a refusal says when it is allowed again.
        test_mode: Dry run: list what would be sent (a table artifact), send nothing.
    """
    settings = load_settings()
    provider = await load_provider_settings(MailchimpSettings)
    url = settings.database_url
    ring = keyring(provider)
    await asyncio.to_thread(ensure_schema, url)
    connections = await in_thread(url, lambda s: load_connections(s, ring, owner))
    if owner is not None and not connections:
        raise LookupError(f"owner {owner!r} has no Mailchimp connection")
    # In random order: two runs at once (a second drainer deployment on another worker) then
    # mostly drive different accounts instead of sharing each account's 10 connections.
    position = {c.owner_id: n for n, c in enumerate(connections)}
    runs = await fan_out(
        random.sample(connections, len(connections)),
        lambda c: _isolated(
            sync_connection(c, provider, settings, full_sync, test_mode), c.owner_id
        ),
        limit=provider.connections_at_once,
    )
    runs.sort(key=lambda each: position[each.owner])
    result = MailchimpResult()
    for each in runs:
        if each.summary is not None:
            result.summaries.append(each.summary)
        if each.refused is not None:
            result.refused[each.owner] = each.refused
            get_logger().warning("%s", each.refused)
        if each.blocked is not None:
            result.idle[each.owner] = each.blocked
            get_logger().warning("owner %s: %s", each.owner, each.blocked)
        if each.error is not None:
            result.failed[each.owner] = each.error
    if result.failed:
        first = next(iter(result.failed.items()))
        raise RuntimeError(
            f"{len(result.failed)} of {len(connections)} Mailchimp connections failed "
            f"(the others synced), e.g. owner {first[0]}: {first[1]}"
        )
    if owner is not None and result.refused:
        raise SyncNowRefused(result.refused[owner])
    return result
