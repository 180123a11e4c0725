"""Application users → MailerLite subscribers of one group, sending only what changed.

The seed posted every user one by one, every night, 100 ms apart (600/min against a limit of
120/min). Here each run:

1. reads the production users and their five fields (`flows.mailerlite.users`), hashes each
   payload and compares it with `push_state`: only new or changed users are sent (`full_sync`
   sends all; `user` sends one, whatever its state);
2. makes sure the five fields exist (created once with their types; their keys are cached in
   `sync_cursor` with the group they were checked with, so later runs ask nothing);
3. sends the users through both documented limits at once (push §1.6, §1.8):

   * **imports**: batches of 50 upserts, as fast as 5 imports per minute allow: 250 users/min;
   * **single upserts** in the other 115 requests of each minute: 115 users/min.

   So 365 users per minute, against the seed's 120 at best. 20,000 users take
   20,000 / 365 ≈ 54.8 minutes (the floor the `mailerlite-first` bench measures against).
   A batch mixing in another request would escape the import limit, but that is the import
   throttle's loophole, not its documented use, so the flow does not rely on it.

Users go out in chunks of `CHUNK` (one Prefect task each, two at a time). Inside a chunk one
lane takes 50 users and waits for the next import; the others send one user per request slot.
A chunk's last users (fewer than 50) go one by one, while the other chunk keeps importing.
Answers are recorded per import and per 25 single upserts (201 created, 200 updated,
unsubscribed/bounced/junk skipped, anything else a failure with MailerLite's message, sent
again next run).

`test_mode` is a dry run: it reads, compares and publishes a table artifact of what would be
created, updated, left unchanged or skipped, and sends nothing.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from sqlmodel import Session

from flows.mailerlite.api import INACTIVE_STATUSES, MAX_BATCH, Answer, MailerLite
from flows.mailerlite.store import (
    PROVIDER,
    Pending,
    forget_field_keys,
    load_field_keys,
    record_answers,
    record_key,
    record_no_email,
    save_field_keys,
    skip_reason,
    still_due,
)
from flows.mailerlite.users import (
    FIELDS,
    Selection,
    excluded_patterns,
    find_user,
    select_users,
)
from shared.db import in_thread
from shared.flowkit import fan_out, io_task, sync_flow
from shared.http import provider_client
from shared.limits import LimitSpec, shared_limiter
from shared.models import utcnow
from shared.names import global_limit_name
from shared.observability import get_logger
from shared.runs import (
    Counts,
    RunSummary,
    RunTracker,
    payload_hash,
    publish_table,
    push_hashes,
    remote_statuses,
    tracked_run,
)
from shared.settings import MailerLiteSettings, load_provider_settings, load_settings

T = TypeVar("T")
CHUNK = 2_000  # users per task: 10 tasks for 20,000 users; few tails (see below)
CHUNKS_AT_ONCE = 2  # while one chunk sends its tail one by one, the other imports
SINGLE_LANES = 3  # per chunk; (3 + 1 import lane) x 2 chunks: 8 of the 12 in flight
DRY_RUN_ROWS = 200  # per action in the test-mode artifact


@dataclass
class Plan:
    """What this run would send, and what it leaves."""

    selection: Selection
    sends: list[Pending]
    new: set[int]  # user ids never pushed before (a dry run's "create")
    unchanged: int
    inactive: dict[str, str]  # record key → status MailerLite last reported (unsubscribed, …)

    def counts(self) -> Counts:
        chosen = self.selection
        return Counts(
            records_read=len(chosen.candidates) + len(chosen.skipped) + len(chosen.no_email),
            unchanged=self.unchanged,
            skipped=len(chosen.skipped),
            failed=len(chosen.no_email),
        )


@dataclass
class Push:
    """What every task of one run shares."""

    url: str
    account: str
    group_id: str
    run: RunTracker
    api: MailerLite | None = None
    keys: dict[str, str] = field(default_factory=dict)
    started: datetime = field(default_factory=utcnow)
    done: int = 0
    total: int = 0

    def write(self, work: Callable[[Session], T]) -> Awaitable[T]:
        """Run `work(session)` in one transaction, off the event loop."""
        return in_thread(self.url, work)


# ---- what to send -----------------------------------------------------------------------------


def digest(group_id: str, email: str, fields: dict[str, Any]) -> str:
    """The hash of a payload by field *name*: a new field key alone does not resend anyone."""
    return payload_hash({"email": email, "fields": fields, "groups": [group_id]})


@io_task()  # its errors (no such user, not a production user) would fail again
async def plan_push(push: Push, patterns: list[str], user: str | None, force: bool) -> Plan:
    """Read the production users (or the one named) and compare with what was pushed."""

    def read(session: Session) -> Plan:
        only = find_user(session, user) if user is not None else None
        selection = select_users(session, patterns, only)
        if only is not None and not selection.candidates:
            why = (
                selection.skipped[0].reason
                if selection.skipped
                else "a demo or test user, or an address MAILER_LITE_EXCLUDED_EMAILS leaves out"
            )
            if selection.no_email:
                why = "the user has no email address"
            raise ValueError(f"user {only.id} is not pushed: {why}")
        hashes = push_hashes(session, PROVIDER, push.account)
        sends, new, unchanged = [], set(), 0
        for candidate in selection.candidates:
            key = record_key(candidate.user_id)
            item = Pending(
                candidate.user_id,
                candidate.email,
                candidate.fields,
                digest(push.group_id, candidate.email, candidate.fields),
            )
            if key not in hashes:
                new.add(candidate.user_id)
            if force or hashes.get(key) != item.digest:
                sends.append(item)
            else:
                unchanged += 1
        inactive = remote_statuses(session, PROVIDER, push.account)
        if selection.no_email and push.run.mode != "test":
            record_no_email(session, push.account, push.run.run_id, selection.no_email)
        return Plan(selection, sends, new, unchanged, inactive)

    plan = await push.write(read)
    get_logger().info(
        "%d production users (%d demo/test left out): %d to send, %d unchanged",
        len(plan.selection.candidates),
        plan.selection.excluded,
        len(plan.sends),
        plan.unchanged,
    )
    for skipped in plan.selection.skipped:
        get_logger().info("user %d skipped: %s", skipped.user_id, skipped.reason)
    return plan


# ---- fields and group ---------------------------------------------------------------------------


@io_task()  # requests retry on their own; a wrong group would fail again
async def ensure_fields(push: Push) -> dict[str, str]:
    """The field name → key map: from the cache, else listed, with missing fields created and
    the group checked; the map is cached for later runs."""
    names = [name for name, _ in FIELDS]
    cached = await push.write(lambda s: load_field_keys(s, push.account, push.group_id, names))
    if cached is not None:
        return cached
    assert push.api is not None
    groups = await push.api.groups()
    if not any(str(g.get("id")) == push.group_id for g in groups):
        raise LookupError(
            f"MAILER_LITE_GROUP_ID={push.group_id} is not a group of this MailerLite account "
            f"(it has {len(groups)} groups)"
        )
    existing = {str(f.get("key")): f for f in await push.api.fields()}
    by_name = {str(f.get("name", "")).lower(): f for f in existing.values()}
    keys: dict[str, str] = {}
    for name, kind in FIELDS:
        found = existing.get(name) or by_name.get(name)
        if found is None:
            found = await push.api.create_field(name, kind)
            get_logger().info("created the MailerLite field %s (%s)", name, kind)
        elif found.get("type") != kind:
            get_logger().warning(
                "the MailerLite field %s is of type %s, not %s", name, found.get("type"), kind
            )
        keys[name] = str(found["key"])
    await push.write(lambda s: save_field_keys(s, push.account, push.group_id, keys))
    return keys


# ---- sending ------------------------------------------------------------------------------------


async def _record(push: Push, results: list[tuple[Pending, Answer]]) -> None:
    if not results:
        return
    counts = await push.write(lambda s: record_answers(s, push.account, push.run.run_id, results))
    push.run.counts = push.run.counts + counts
    if any(key.startswith(("fields.", "groups.")) for _, a in results for key in a.invalid_keys()):
        await push.write(lambda s: forget_field_keys(s, push.account))
    for item, answer in results:
        if answer.ok and answer.status in INACTIVE_STATUSES:
            get_logger().info("user %d skipped: %s", item.user_id, skip_reason(answer.status))
    push.done += len(results)
    await push.run.progress(push.done, push.total)


@io_task(retries=2, retry_delay_seconds=5)
async def push_chunk(push: Push, chunk: list[Pending]) -> None:
    """Send one chunk: an import lane and `SINGLE_LANES` single lanes drain one queue."""
    assert push.api is not None
    api = push.api
    queue = deque(await push.write(lambda s: still_due(s, push.account, chunk, push.started)))
    push.done += len(chunk) - len(queue)  # recorded by an earlier attempt

    def body(item: Pending) -> dict[str, Any]:
        return item.payload(push.keys, push.group_id)

    async def import_lane() -> None:
        while len(queue) >= MAX_BATCH:  # a shorter tail goes faster one by one
            batch = [queue.popleft() for _ in range(MAX_BATCH)]
            answers = await api.import_batch([body(item) for item in batch])
            await _record(push, list(zip(batch, answers, strict=True)))

    async def single_lane() -> None:
        done: list[tuple[Pending, Answer]] = []
        while queue:
            item = queue.popleft()
            done.append((item, await api.upsert(body(item))))
            if len(done) >= 25:
                await _record(push, done)
                done = []
        await _record(push, done)

    # In a task group: a lane that fails stops the others, so a retry never races them.
    lanes = [import_lane, *[single_lane] * SINGLE_LANES]
    await fan_out(lanes, lambda lane: lane(), limit=len(lanes))


def chunks(items: list[T], size: int) -> list[list[T]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


async def send(push: Push, items: list[Pending], single: bool) -> None:
    push.total = len(items)
    if single:  # the seed's single-user sync: one request, no import
        assert push.api is not None
        answer = await push.api.upsert(items[0].payload(push.keys, push.group_id))
        await _record(push, [(items[0], answer)])
        return
    await fan_out(chunks(items, CHUNK), lambda chunk: push_chunk(push, chunk), limit=CHUNKS_AT_ONCE)


# ---- test mode ----------------------------------------------------------------------------------


def dry_run_rows(plan: Plan) -> list[dict[str, Any]]:
    """What a real run would do, per user: counts first, then up to `DRY_RUN_ROWS` per action."""
    actions: dict[str, list[dict[str, Any]]] = {
        "create": [],
        "update": [],
        "skip": [],
        "fail": [],
    }
    for item in plan.sends:
        status = plan.inactive.get(item.key)
        if status is not None:
            actions["skip"].append({"user": item.user_id, "email": item.email,
                                    "detail": skip_reason(status)})  # fmt: skip
            continue
        action = "create" if item.user_id in plan.new else "update"
        actions[action].append({"user": item.user_id, "email": item.email, "detail": item.fields})
    for skipped in plan.selection.skipped:
        actions["skip"].append({"user": skipped.user_id, "email": skipped.email,
                                "detail": skipped.reason})  # fmt: skip
    for user_id in plan.selection.no_email:
        actions["fail"].append({"user": user_id, "email": "",
                                "detail": "the user has no email address"})  # fmt: skip
    rows: list[dict[str, Any]] = [
        {"action": f"{name} (count)", "user": len(found), "email": "", "detail": ""}
        for name, found in actions.items()
    ]
    rows.append({"action": "unchanged (count)", "user": plan.unchanged, "email": "", "detail": ""})
    for name, found in actions.items():
        rows += [{"action": name, **row} for row in found[:DRY_RUN_ROWS]]
    return rows


async def publish_dry_run(push: Push, plan: Plan) -> list[dict[str, Any]]:
    rows = dry_run_rows(plan)
    await publish_table(
        PROVIDER,
        push.account,
        "dry-run",
        [{**row, "detail": str(row["detail"])} for row in rows],
        "mailerlite-sync test_mode: what a real run would send (nothing was sent)",
    )
    return rows


# ---- the flow -----------------------------------------------------------------------------------


@sync_flow(name="mailerlite-sync")
async def mailerlite_sync(
    user: str | None = None, full_sync: bool = False, test_mode: bool = False
) -> RunSummary:
    """Push production users to MailerLite subscribers in the group `MAILER_LITE_GROUP_ID`.

    Args:
        user: Send only this user (id or email), changed or not: the seed's single-user sync.
        full_sync: Send every production user, changed or not.
        test_mode: Dry run: count and list what would be sent, send nothing.
    """
    settings = load_settings()
    provider = await load_provider_settings(MailerLiteSettings)
    assert provider.group_id is not None  # required: load_provider_settings checked
    url, account = settings.database_url, provider.account
    if test_mode:
        mode = "test"
    elif user is not None:
        mode = "single"
    else:
        mode = "full" if full_sync else "incremental"
    async with tracked_run(url, PROVIDER, account, mode) as run:
        push = Push(url, account, provider.group_id, run)
        patterns = excluded_patterns(provider.excluded_emails)
        plan = await plan_push(push, patterns, user, force=full_sync or user is not None)
        run.counts = run.counts + plan.counts()
        if test_mode:
            await publish_dry_run(push, plan)
        elif plan.sends:
            await _send(push, provider, settings, plan.sends, single=user is not None)
    assert run.summary is not None
    return run.summary


async def _send(
    push: Push, provider: MailerLiteSettings, settings: Any, items: list[Pending], single: bool
) -> None:
    assert provider.api_key is not None
    token = provider.api_key.get_secret_value()
    client = provider_client(provider, settings, headers={"Authorization": f"Bearer {token}"})
    imports = shared_limiter(
        LimitSpec(
            name=global_limit_name(PROVIDER, push.account, "imports"),
            rate_per_second=provider.imports_per_minute / 60.0,
        ),
        coordinate=settings.coordinate_limits,
        lease_seconds=settings.lease_seconds,
        # An import may start one account interval early: its wait for the account's next
        # start then lands its write on its slot. Six imports still span 5 x 12.24 s less
        # 0.5 s, over the minute (the imports' 2 % margin is 1.2 s over five intervals).
        tolerance=client.limiter.interval,
    )
    imports.attach()
    try:
        async with client:
            push.api = MailerLite(client, imports)
            push.keys = await ensure_fields(push)
            await send(push, items, single)
    finally:
        push.run.requests = client.requests
        await imports.detach()


if __name__ == "__main__":
    print(asyncio.run(mailerlite_sync()).row())  # noqa: T201
