"""The run ledger, per-record failures, cursors and push state.

Functions that touch data take the caller's session, so a cursor, a failure or a push-state row
commits in the same transaction as the records it describes. The ledger's own start and finish
rows use short transactions of their own: a crashed run still leaves its `running` row behind.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field, fields
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from prefect.artifacts import (
    acreate_progress_artifact,
    acreate_table_artifact,
    aupdate_progress_artifact,
)
from sqlmodel import Session, col, select

from shared.db import ensure_schema, get_engine, insert_for, session_scope, upsert
from shared.models import PushState, SyncCheckpoint, SyncCursor, SyncFailure, SyncRun, utcnow
from shared.names import artifact_key
from shared.observability import get_logger, report_abandoned_run
from shared.redact import redact, redact_data

DEFAULT_MAX_FAILURE_ATTEMPTS = 10


@dataclass
class Counts:
    """What a run did to records; summed across tasks with `+`."""

    records_read: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: int = 0
    failed: int = 0

    def __add__(self, other: Counts) -> Counts:
        return Counts(
            **{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)}
        )


@dataclass
class RunSummary:
    """What a flow returns and `make demo` prints: one row per flow run."""

    provider: str
    account: str
    mode: str
    state: str
    counts: Counts
    requests: int
    seconds: float
    run_id: int

    def row(self) -> dict[str, Any]:
        return {
            "flow": self.provider,
            "account": self.account,
            "mode": self.mode,
            "state": self.state,
            **asdict(self.counts),
            "requests": self.requests,
            "seconds": round(self.seconds, 2),
        }


def start_run(url: str, provider: str, account: str, mode: str, flow_run_id: str | None) -> int:
    """Insert the run's ledger row (state `running`) and return its id."""
    with session_scope(url) as session:
        run = SyncRun(
            provider=provider,
            account=account,
            mode=mode,
            flow_run_id=flow_run_id,
            started_at=utcnow(),
        )
        session.add(run)
        session.flush()
        assert run.id is not None
        return run.id


def finish_run(
    url: str, run_id: int, *, state: str, counts: Counts, requests: int, error: str | None = None
) -> SyncRun:
    """Close the run's ledger row with its final state, counts and request total."""
    with session_scope(url) as session:
        run = session.get_one(SyncRun, run_id)
        run.state = state
        run.finished_at = utcnow()
        run.requests = requests
        run.error = redact(error)[:4000] if error else None
        for name, value in asdict(counts).items():
            setattr(run, name, value)
        session.add(run)
        return run


# The state of a ledger row whose run died without closing it (found by a later run).
CRASHED = "crashed"
UNKNOWN = "unknown"  # the flow run's state when this Prefect API has no such flow run


@dataclass(frozen=True)
class AbandonedRun:
    """A ledger row a run left `running` although its flow run is over."""

    run_id: int
    flow_run_id: str
    mode: str
    prefect_state: str  # the flow run's final state name (Crashed, Failed…), or UNKNOWN


async def close_abandoned_runs(
    url: str, provider: str, account: str, current_flow_run_id: str | None
) -> list[AbandonedRun]:
    """Mark the account's ledger rows whose run died unseen `crashed`, and report each once.

    A SIGKILLed run never closes its `running` row, and no hook of its reports it. A row of
    another flow run that Prefect knows as over (Crashed, by the automation that watches
    heartbeats, or Failed, Cancelled, Completed) or does not know at all was abandoned: it is
    closed with one conditional UPDATE, and only the run whose UPDATE changed it logs a warning
    and sends the Sentry event, so two runs starting at once report it once. A row of a flow
    run still going (another deployment's run of the account) is left alone. Returns the rows
    this run closed.
    """
    candidates = await asyncio.to_thread(_running_rows, url, provider, account, current_flow_run_id)
    if not candidates:  # the usual case: one indexed SELECT, no Prefect call
        return []
    ended = await _ended_flow_runs([flow_run_id for _, flow_run_id, _ in candidates])
    closed = []
    for run_id, flow_run_id, mode in candidates:
        if flow_run_id not in ended:
            continue
        run = AbandonedRun(run_id, flow_run_id, mode, ended[flow_run_id])
        known = (
            "this Prefect API does not know it"
            if run.prefect_state == UNKNOWN
            else f"Prefect has it {run.prefect_state}"
        )
        error = (
            f"ended without finishing: its process was killed or lost (flow run {flow_run_id}: "
            f"{known}); a later run picked up its work"
        )
        if not await asyncio.to_thread(_mark_crashed, url, run_id, error):
            continue  # another run got there first and reported it
        closed.append(run)
        get_logger().warning(
            "%s (account %s): the run of ledger row %s %s", provider, account, run_id, error
        )
        await asyncio.to_thread(
            report_abandoned_run,
            provider,
            account,
            flow_run_id,
            mode=mode,
            prefect_state=run.prefect_state,
        )
    return closed


def _running_rows(
    url: str, provider: str, account: str, current_flow_run_id: str | None
) -> list[tuple[int, str, str]]:
    """(id, flow_run_id, mode) of the account's `running` rows of other flow runs."""
    query = select(SyncRun.id, SyncRun.flow_run_id, SyncRun.mode).where(
        SyncRun.provider == provider,  # ix_sync_run_provider_account_started
        SyncRun.account == account,
        SyncRun.state == "running",
        col(SyncRun.flow_run_id).is_not(None),
    )
    if current_flow_run_id is not None:
        query = query.where(SyncRun.flow_run_id != current_flow_run_id)
    with session_scope(url) as session:
        return [(i, f, m) for i, f, m in session.exec(query).all() if i is not None and f]


async def _ended_flow_runs(flow_run_ids: list[str]) -> dict[str, str]:
    """Of these flow runs, those that are over: id → final state name, or UNKNOWN when this
    Prefect API has no such flow run."""
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    wanted = {text: _as_uuid(text) for text in flow_run_ids}
    ids = [uuid for uuid in wanted.values() if uuid is not None]
    found: dict[UUID, Any] = {}
    if ids:
        async with get_client() as client:
            runs = await client.read_flow_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids)), limit=len(ids)
            )
        found = {run.id: run.state for run in runs}
    ended = {}
    for text, uuid in wanted.items():
        if uuid not in found:
            ended[text] = UNKNOWN
        elif (state := found[uuid]) is not None and state.is_final():
            ended[text] = state.name
    return ended


def _as_uuid(text: str) -> UUID | None:
    try:
        return UUID(text)
    except ValueError:  # not a Prefect id: no Prefect API knows it
        return None


def _mark_crashed(url: str, run_id: int, error: str) -> bool:
    """Close a `running` row as crashed; False when it was no longer running."""
    statement = (
        sa.update(SyncRun)
        .where(col(SyncRun.id) == run_id, col(SyncRun.state) == "running")
        .values(state=CRASHED, finished_at=utcnow(), error=error[:4000])
    )
    with get_engine(url).begin() as connection:
        return connection.execute(statement).rowcount == 1


def record_failure(
    session: Session,
    *,
    provider: str,
    account: str,
    record_key: str,
    operation: str,
    message: str,
    status_code: int | None = None,
    detail: Any = None,
    run_id: int | None = None,
    permanent: bool = False,
    max_attempts: int = DEFAULT_MAX_FAILURE_ATTEMPTS,
) -> None:
    """Open or bump the failure row of one record; it turns permanent after `max_attempts`.

    One `INSERT … ON CONFLICT` statement, so two runs failing on the same record at once both
    count their attempt instead of one of them hitting the unique constraint.
    """
    now = utcnow()
    if detail is not None and not isinstance(detail, dict):
        detail = {"body": detail}
    table = SyncFailure.__table__  # type: ignore[attr-defined]
    statement = insert_for(session)(table).values(
        provider=provider,
        account=account,
        record_key=record_key,
        operation=operation,
        message=redact(message)[:4000],
        status_code=status_code,
        detail=redact_data(detail),
        attempts=1,
        permanent=permanent or max_attempts <= 1,
        run_id=run_id,
        first_seen_at=now,
        last_seen_at=now,
        resolved_at=None,
    )
    attempts = table.c.attempts + 1
    new = statement.excluded
    session.execute(
        statement.on_conflict_do_update(
            index_elements=["provider", "account", "record_key", "operation"],
            set_={
                "attempts": attempts,
                "message": new.message,
                "status_code": new.status_code,
                "detail": new.detail,
                "run_id": new.run_id,
                "last_seen_at": new.last_seen_at,
                "resolved_at": None,
                "permanent": sa.or_(new.permanent, attempts >= max_attempts),
            },
        )
    )


def resolve_failures(
    session: Session, *, provider: str, account: str, operation: str, record_keys: Iterable[str]
) -> int:
    """Mark the open failures of records that have now succeeded as resolved."""
    keys = list(record_keys)
    if not keys:
        return 0
    now = utcnow()
    rows = session.exec(
        select(SyncFailure).where(
            *_open_failures(provider, account, operation), col(SyncFailure.record_key).in_(keys)
        )
    ).all()
    for row in rows:
        row.resolved_at = now
        session.add(row)
    return len(rows)


def open_failure_keys(
    session: Session, *, provider: str, account: str, operation: str, permanent: bool = False
) -> set[str]:
    """Record keys with an open failure: retryable ones (default) or those given up on."""
    return set(
        session.exec(
            select(SyncFailure.record_key).where(
                *_open_failures(provider, account, operation),
                col(SyncFailure.permanent).is_(permanent),
            )
        ).all()
    )


def _open_failures(provider: str, account: str, operation: str) -> list[Any]:
    return [
        SyncFailure.provider == provider,
        SyncFailure.account == account,
        SyncFailure.operation == operation,
        col(SyncFailure.resolved_at).is_(None),
    ]


def get_cursor(session: Session, provider: str, account: str, stream: str) -> str | None:
    """The saved position of one stream, or None before its first run."""
    row = session.get(SyncCursor, (provider, account, stream))
    return row.value if row else None


def set_cursor(session: Session, provider: str, account: str, stream: str, value: str) -> None:
    """Move a stream's cursor inside the caller's transaction (with the rows it describes)."""
    upsert(
        session,
        SyncCursor,
        [
            {
                "provider": provider,
                "account": account,
                "stream": stream,
                "value": value,
                "updated_at": utcnow(),
            }
        ],
        keys=("provider", "account", "stream"),
    )


def delete_cursor(session: Session, provider: str, account: str, stream: str) -> None:
    """Forget a stream's cursor inside the caller's transaction."""
    session.execute(
        sa.delete(SyncCursor).where(
            col(SyncCursor.provider) == provider,
            col(SyncCursor.account) == account,
            col(SyncCursor.stream) == stream,
        )
    )


def save_checkpoint(
    session: Session, provider: str, account: str, stream: str, part: str, value: str
) -> None:
    """Record a finished part of a pass, inside the transaction that stored its rows."""
    upsert(
        session,
        SyncCheckpoint,
        [
            {
                "provider": provider,
                "account": account,
                "stream": stream,
                "part": part,
                "value": value,
                "updated_at": utcnow(),
            }
        ],
        keys=("provider", "account", "stream", "part"),
    )


def load_checkpoints(session: Session, provider: str, account: str, stream: str) -> dict[str, str]:
    """The finished parts of a stream's unfinished pass: part → value."""
    rows = session.exec(
        select(SyncCheckpoint).where(
            SyncCheckpoint.provider == provider,
            SyncCheckpoint.account == account,
            SyncCheckpoint.stream == stream,
        )
    )
    return {row.part: row.value for row in rows}


def clear_checkpoints(session: Session, provider: str, account: str, stream: str) -> None:
    """Drop a pass's checkpoints (it completed, or was replaced)."""
    session.execute(
        sa.delete(SyncCheckpoint).where(
            col(SyncCheckpoint.provider) == provider,
            col(SyncCheckpoint.account) == account,
            col(SyncCheckpoint.stream) == stream,
        )
    )


def payload_hash(payload: Any) -> str:
    """A stable hash of a JSON-able payload: key order and whitespace do not matter."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def push_hashes(
    session: Session, provider: str, account: str, record_keys: Sequence[str] | None = None
) -> dict[str, str]:
    """Last pushed payload hash per record key (all of the account's, or only `record_keys`)."""
    query = select(PushState.record_key, PushState.payload_hash).where(
        PushState.provider == provider, PushState.account == account
    )
    if record_keys is not None:
        query = query.where(col(PushState.record_key).in_(list(record_keys)))
    return dict(session.exec(query).all())


def remote_statuses(session: Session, provider: str, account: str) -> dict[str, str]:
    """The provider's last noted status per record key, for records that have one."""
    query = select(PushState.record_key, PushState.remote_status).where(
        PushState.provider == provider,
        PushState.account == account,
        col(PushState.remote_status).is_not(None),
    )
    return {key: status for key, status in session.exec(query).all() if status is not None}


def save_push_state(
    session: Session,
    provider: str,
    account: str,
    rows: Sequence[tuple[str, str | None, str]],
    remote_status: Mapping[str, str] | None = None,
    pushed: Mapping[str, dict[str, Any]] | None = None,
) -> None:
    """Record pushes as (record_key, remote_id, payload_hash), in the caller's transaction;
    `remote_status` notes the provider's status of some of them, `pushed` what was sent of
    some of them (the others get none of either)."""
    now = utcnow()
    noted = remote_status or {}
    sent = pushed or {}
    upsert(
        session,
        PushState,
        [
            {
                "provider": provider,
                "account": account,
                "record_key": key,
                "remote_id": remote,
                "payload_hash": digest,
                "remote_status": noted.get(key),
                "pushed": sent.get(key),
                "pushed_at": now,
            }
            for key, remote, digest in rows
        ],
        keys=("provider", "account", "record_key"),
    )


@dataclass
class RunTracker:
    """Counts a run accumulates; `tracked_run` writes them to the ledger when the run ends."""

    url: str
    provider: str
    account: str
    mode: str
    run_id: int
    counts: Counts
    requests: int = 0
    summary: RunSummary | None = None
    _progress_id: UUID | None = None
    _progress_at: float = 0.0
    # Batches finish together; without the lock each would create its own progress artifact.
    _progress_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def progress(self, done: int, total: int) -> None:
        """Show progress in the Prefect UI (a progress artifact), at most once a second."""
        if _flow_run_id() is None:
            return
        async with self._progress_lock:
            now = time.monotonic()
            if self._progress_id is not None and done < total and now - self._progress_at < 1.0:
                return
            percent = min(100.0, 100.0 * done / total) if total else 100.0
            if self._progress_id is None:
                self._progress_id = await acreate_progress_artifact(
                    percent,
                    key=artifact_key(self.provider, self.account, "progress"),
                    description=f"{self.provider} ({self.account}): records processed",
                )
            else:
                await aupdate_progress_artifact(self._progress_id, percent)
            self._progress_at = now


@asynccontextmanager
async def tracked_run(
    url: str,
    provider: str,
    account: str,
    mode: str,
) -> AsyncIterator[RunTracker]:
    """Migrate if needed, open the ledger row, close it as completed or failed, publish a summary.

    First, rows of this provider account that earlier runs left `running` because their process
    died are closed as `crashed` and reported once (`close_abandoned_runs`).

    The summary is a Prefect table artifact with the run's counts and its first failures (the
    provider's own message per record), so the UI shows what happened without a database.
    """
    # Database work runs in a thread: a busy SQLite file must never stall paced requests.
    await asyncio.to_thread(ensure_schema, url)
    started = time.perf_counter()
    flow_run_id = _flow_run_id()
    try:
        await close_abandoned_runs(url, provider, account, flow_run_id)
    except Exception as exc:  # reporting a dead run must never fail this one
        get_logger().warning("could not check for runs that died unseen: %s", describe_error(exc))
    run_id = await asyncio.to_thread(start_run, url, provider, account, mode, flow_run_id)
    tracker = RunTracker(url, provider, account, mode, run_id, Counts())
    try:
        yield tracker
    except BaseException as exc:
        error = describe_error(exc)
        await asyncio.to_thread(
            finish_run,
            url,
            run_id,
            state="failed",
            counts=tracker.counts,
            requests=tracker.requests,
            error=error,
        )
        await _publish_summary(tracker, "failed", error)
        raise
    await asyncio.to_thread(
        finish_run, url, run_id, state="completed", counts=tracker.counts, requests=tracker.requests
    )
    tracker.summary = RunSummary(
        provider,
        account,
        mode,
        "completed",
        tracker.counts,
        tracker.requests,
        time.perf_counter() - started,
        run_id,
    )
    await _publish_summary(tracker, "completed", None)


SUMMARY_FAILURES = 10


def describe_error(error: BaseException) -> str:
    """`Type: message`, looking inside exception groups (a TaskGroup's error says nothing)."""
    if isinstance(error, BaseExceptionGroup):
        leaves = [describe_error(e) for e in error.exceptions[:3]]
        more = len(error.exceptions) - len(leaves)
        return "; ".join(leaves) + (f"; and {more} more" if more > 0 else "")
    return f"{type(error).__name__}: {error}"


async def _publish_summary(tracker: RunTracker, state: str, error: str | None) -> None:
    if _flow_run_id() is None:
        return
    rows: list[dict[str, Any]] = [{"item": "state", "value": state}]
    rows += [{"item": name, "value": value} for name, value in asdict(tracker.counts).items()]
    rows.append({"item": "requests", "value": tracker.requests})
    if error:
        rows.append({"item": "error", "value": redact(error)[:500]})
    failures = await asyncio.to_thread(_first_failures, tracker.url, tracker.run_id)
    rows += [
        {
            "item": f"failed {f.operation} {f.record_key}",
            "value": f"{f.status_code or ''} {f.message}".strip(),
        }
        for f in failures
    ]
    try:
        await acreate_table_artifact(
            rows,
            key=artifact_key(tracker.provider, tracker.account, "sync-summary"),
            description=f"{tracker.provider} ({tracker.account}) {tracker.mode} run: {state}",
        )
    except Exception as exc:  # reporting must never turn a finished run into a failed one
        logging.getLogger("syncflows.runs").warning("could not publish the run summary: %s", exc)


async def publish_table(
    provider: str, account: str, what: str, rows: list[dict[str, Any]], description: str
) -> None:
    """A table artifact keyed by provider account and `what` (a dry run, a reconciliation…),
    when inside a flow run and there is something to show."""
    if _flow_run_id() is not None and rows:
        await acreate_table_artifact(
            rows, key=artifact_key(provider, account, what), description=description
        )


def _first_failures(url: str, run_id: int) -> list[SyncFailure]:
    with session_scope(url) as session:
        return list(
            session.exec(
                select(SyncFailure)
                .where(SyncFailure.run_id == run_id)
                .order_by(col(SyncFailure.record_key))
                .limit(SUMMARY_FAILURES)
            ).all()
        )


def _flow_run_id() -> str | None:
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    return str(context.flow_run.id) if context and context.flow_run else None
