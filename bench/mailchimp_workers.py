"""Mailchimp scale-out: 50 connections x 1,000 contacts drained by one worker, then by two.

The first day of 50 owners: each connected an account of its own (reconciled while its audience
was still empty), then imported 1,000 contacts, so the outbox holds 50,000 `create` events. The
drain runs as it does in production: a `prefect server start` on PostgreSQL, a `process` work
pool, deployments of `flows/mailchimp/flow.py:mailchimp_sync` (one at a time each, like
`mailchimp-outbox`) and `prefect worker start --limit 1` processes with
`SYNCFLOWS_GLOBAL_LIMITS=on`. One worker runs one deployment; two workers run two deployments of
the same entrypoint, triggered together, which split the outbox (`FOR UPDATE SKIP LOCKED`) and
share each account's 10 connections through its Prefect limit. The sandbox (200 ms latency, as
in `mailchimp-outbox`) runs in a process of its own and writes its state when it stops.

`wall_s`: from triggering the run(s) to the last run's end (every run Completed, the outbox
empty). `floor_s`: the requests at 10 in flight and 200 ms per account,
`MAILCHIMP_CONNECTIONS_AT_ONCE` accounts per run, one run per worker. `correct`: every contact
is a subscribed member with its merge fields and tags, no other member, the outbox empty, every
run Completed, and no account ever had more than 10 requests in flight. Needs PostgreSQL
(`TEST_DATABASE_URL`, default `postgresql+psycopg://postgres@127.0.0.1:5432/postgres`).
"""

from __future__ import annotations

import asyncio
import gc
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, redirect_stdout
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlmodel import select

from bench.harness import ROOT, BenchResult, Scenario, report, save
from bench.local import fresh_database, prefect_server, process_table, stop_group

CONNECTIONS = 50
CONTACTS = 1_000  # per connection
LATENCY = 0.2  # seconds, as in `mailchimp-outbox`
MAX_CONNECTIONS = 10  # per Mailchimp account (push §3.11)
POOL = "syncflows-bench"
FLOW = "mailchimp-sync"
ENTRYPOINT = "flows/mailchimp/flow.py:mailchimp_sync"
CASE_TIMEOUT = 20 * 60.0  # seconds from trigger; a case that takes longer is reported incorrect
STARTUP_TIMEOUT = 180.0
SAMPLE_SECONDS = 1.0
HEARTBEAT_SECONDS = 30  # the pool's, as `make deploy` sets it (SYNCFLOWS_HEARTBEAT_SECONDS)


def owner_ids(count: int) -> list[str]:
    return [f"mc{n:02d}" for n in range(count)]


# ---- the correctness check ---------------------------------------------------------------------


def expected_members(url: str) -> dict[str, dict[str, dict[str, Any]]]:
    """owner → subscriber hash → the member each live contact with an email should be."""
    from flows.mailchimp.members import wanted
    from flows.mailchimp.tables import Contact
    from sandbox.mailchimp import subscriber_hash
    from shared.db import session_scope

    members: dict[str, dict[str, dict[str, Any]]] = {}
    with session_scope(url) as session:
        for contact in session.exec(select(Contact).where(Contact.deleted == False)):  # noqa: E712
            want = wanted(contact)
            if want is not None:
                members.setdefault(contact.owner_id, {})[subscriber_hash(want.email)] = {
                    "email": want.email,
                    "merge_fields": want.merge_fields,
                    "tags": list(want.tags),
                }
    return members


def check(
    expected: dict[str, dict[str, dict[str, Any]]],
    audiences: dict[str, dict[str, dict[str, Any]]],
    peaks: dict[str, int],
    left_in_outbox: int,
    run_states: list[str],
) -> list[str]:
    """What is wrong, one line per finding (empty: correct).

    `expected` and `audiences` map owner → subscriber hash → member (`status` in the
    audience's, `merge_fields` and `tags` in both); `peaks` is each account's most requests in
    flight at once; `run_states` the final Prefect state of every run.
    """
    problems: list[str] = []
    for owner in sorted(set(expected) | set(audiences)):
        want, got = expected.get(owner, {}), audiences.get(owner, {})
        missing = [m["email"] for key, m in want.items() if key not in got]
        if missing:
            problems.append(f"{owner}: {len(missing)} contacts are not members, e.g. {missing[0]}")
        strangers = sorted(set(got) - set(want))
        if strangers:
            problems.append(f"{owner}: {len(strangers)} members no contact asked for")
        for key in sorted(set(want) & set(got)):
            member, wanted = got[key], want[key]
            if member["status"] != "subscribed":
                problems.append(f"{owner}: {wanted['email']} is {member['status']}")
            elif member["merge_fields"] != wanted["merge_fields"]:
                problems.append(
                    f"{owner}: {wanted['email']} has {member['merge_fields']}, "
                    f"not {wanted['merge_fields']}"
                )
            elif sorted(member["tags"]) != sorted(wanted["tags"]):
                problems.append(
                    f"{owner}: {wanted['email']} is tagged {sorted(member['tags'])}, "
                    f"not {sorted(wanted['tags'])}"
                )
    over = {owner: peak for owner, peak in peaks.items() if peak > MAX_CONNECTIONS}
    if over:
        problems.append(f"more than {MAX_CONNECTIONS} requests in flight at once: {over}")
    if left_in_outbox:
        problems.append(f"{left_in_outbox} events left in the outbox")
    if not run_states or any(state != "COMPLETED" for state in run_states):
        problems.append(f"runs ended {run_states}, not all COMPLETED")
    return problems


# ---- the sandbox, in a process of its own --------------------------------------------------------


def serve_sandbox(database_url: str, state_file: str, connections: int) -> None:
    """Child process: an account and audience per owner, each owner connected to it in the
    database; serve until SIGTERM, then write every audience's members and each account's
    peak of requests in flight to `state_file`."""
    import uvicorn

    from sandbox.app_contacts import connect_owner
    from sandbox.mailchimp import create_app
    from sandbox.registry import request_stats
    from sandbox.server import listening_socket
    from shared.crypto import Keyring
    from shared.db import dispose_engine

    app = create_app(default_account=False, latency=LATENCY)
    sandbox = app.state.sandbox
    sock = listening_socket("127.0.0.1", 0)
    base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    ring = Keyring(os.environ["MAILCHIMP_TOKEN_KEYS"], "MAILCHIMP_TOKEN_KEYS")
    audiences = {
        owner: connect_owner(database_url, sandbox, base_url, ring, owner)
        for owner in owner_ids(connections)
    }
    dispose_engine(database_url)
    gc.freeze()  # the accounts live as long as the process: keep them out of full collections
    print(f"mailchimp sandbox listening on {base_url}", flush=True)  # noqa: T201
    config = uvicorn.Config(
        app, log_level="warning", access_log=False, lifespan="off", date_header=False
    )

    def interrupt(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    try:
        uvicorn.Server(config).run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()
        owner_of = {list_id: owner for owner, list_id in audiences.items()}
        per_account = Counter(owner_of.get(_list_id(entry.path), "") for entry in sandbox.log)
        state = {
            "members": {
                owner: _audience(sandbox, owner, list_id) for owner, list_id in audiences.items()
            },
            "peaks": {owner: sandbox.accounts[f"{owner} account"].peak for owner in audiences},
            "requests_per_account": dict(per_account),
            "stats": request_stats(sandbox.log),
        }
        Path(state_file).write_text(json.dumps(state))


def _list_id(path: str) -> str:
    """The audience a request went to: `/3.0/lists/<id>/…` ("" for other paths)."""
    parts = path.split("/")
    return parts[3] if len(parts) > 3 and parts[2] == "lists" else ""


def _audience(sandbox: Any, owner: str, list_id: str) -> dict[str, dict[str, Any]]:
    """An audience as `check` reads it: subscriber hash → status, merge fields, tag names."""
    found = {}
    for key, member in sandbox.accounts[f"{owner} account"].audiences[list_id].members.items():
        shown = sandbox.member(list_id, member.email) or {}
        found[key] = {
            "status": shown.get("status"),
            "merge_fields": shown.get("merge_fields"),
            "tags": sorted(member.tags),
        }
    return found


@contextmanager
def sandbox_process(
    folder: Path, database_url: str, token_keys: str, connections: int
) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """The sandbox child (see `serve_sandbox`), once it listens; yields it and its state file."""
    state, out, err = (folder / name for name in ("sandbox.json", "sandbox.out", "sandbox.err"))
    command = [
        *(sys.executable, "-m", "bench.mailchimp_workers", "sandbox"),
        *(database_url, str(state), str(connections)),
    ]
    env = {**os.environ, "MAILCHIMP_TOKEN_KEYS": token_keys, "SYNCFLOWS_ENV_FILE": os.devnull}
    with out.open("wb") as stdout, err.open("wb") as stderr:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=stdout, stderr=stderr)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while "listening on" not in out.read_text():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the sandbox did not start:\n{err.read_text()[-3000:]}")
            time.sleep(0.2)
        yield process, state
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def stop_sandbox(process: subprocess.Popen[bytes], state: Path) -> dict[str, Any]:
    """SIGTERM, then the state it wrote on the way out."""
    process.terminate()
    process.wait(timeout=120)
    loaded: dict[str, Any] = json.loads(state.read_text())
    return loaded


def deploy(api_url: str, names: list[str]) -> None:
    """The pool, then one deployment per name, each one at a time like `mailchimp-outbox`."""
    from prefect import Flow
    from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from shared.deploy import ensure_work_pool

    with temporary_settings({PREFECT_API_URL: api_url}):
        asyncio.run(ensure_work_pool(HEARTBEAT_SECONDS, POOL))  # what `make deploy` creates
        flow: Any = Flow.from_source(source=str(ROOT), entrypoint=ENTRYPOINT)
        for name in names:
            with redirect_stdout(io.StringIO()):  # deploy prints a table of what it applied
                flow.deploy(
                    name=name,
                    work_pool_name=POOL,
                    parameters={"full_sync": False, "test_mode": False},
                    concurrency_limit=ConcurrencyLimitConfig(
                        limit=1, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW
                    ),
                    build=False,
                    push=False,
                    print_next_steps=False,
                    ignore_warnings=True,
                )


@contextmanager
def workers(
    count: int, env: dict[str, str], folder: Path
) -> Iterator[list[subprocess.Popen[bytes]]]:
    """`count` processes of `prefect worker start --pool POOL --limit 1`."""
    started: list[subprocess.Popen[bytes]] = []
    try:
        for n in range(count):
            home = folder / f"worker-{n}"
            home.mkdir()
            command = [sys.executable, "-m", "prefect", "worker", "start", "--pool", POOL]
            with (home / "worker.log").open("wb") as log:
                started.append(
                    subprocess.Popen(
                        [*command, "--limit", "1", "--name", f"bench-worker-{n}"],
                        cwd=ROOT,
                        env={**env, "PREFECT_HOME": str(home)},
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                )
        yield started
    finally:
        for process in started:
            stop_group(process)


# ---- CPU and memory, sampled from /proc --------------------------------------------------------


def _machine_ticks() -> tuple[int, int]:
    """(busy, total) CPU ticks of the whole machine since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    total = sum(values[:8])
    return total - idle, total


class Sampler:
    """CPU seconds by role (our process trees, PostgreSQL, the rest of the machine) and the
    flow-run processes' peak memory, sampled once a second while the runs go."""

    def __init__(self, roots: dict[int, str]) -> None:
        self.roots = roots  # pid → role; a worker's children are "flow_runs"
        self.ticks: dict[int, int] = {}
        self.baseline: dict[int, int] = {}
        self.role: dict[int, str] = {}
        self.peak_rss_kb: dict[int, int] = {}
        self._machine = (0, 0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> Sampler:
        self._machine = _machine_ticks()
        self.baseline = {pid: ticks for pid, (_, _, ticks) in process_table().items()}
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()
        busy, total = _machine_ticks()
        self._machine = (busy - self._machine[0], total - self._machine[1])

    def _loop(self) -> None:
        while not self._stop.wait(SAMPLE_SECONDS):
            self._sample()

    def _role(self, pid: int, table: dict[int, tuple[str, int, int]]) -> str | None:
        if table[pid][0] == "postgres":
            return "postgres"
        child = None
        for _ in range(12):
            if pid in self.roots:
                role = self.roots[pid]
                return "flow_runs" if role == "workers" and child is not None else role
            if pid not in table:
                return None
            child, pid = pid, table[pid][1]
        return None

    def _sample(self) -> None:
        table = process_table()
        for pid, (_, _, ticks) in table.items():
            role = self.role.get(pid) or self._role(pid, table)
            if role is None:
                continue
            self.role[pid], self.ticks[pid] = role, ticks
            if role == "flow_runs":
                with_status = Path(f"/proc/{pid}/status")
                try:
                    lines = with_status.read_text().splitlines()
                except OSError:
                    continue
                for line in lines:
                    if line.startswith("VmHWM:"):
                        self.peak_rss_kb[pid] = int(line.split()[1])

    def cpu_seconds(self) -> dict[str, float]:
        """Seconds of CPU per role over the window, and the machine's busy and total."""
        hz = os.sysconf("SC_CLK_TCK")
        used: Counter[str] = Counter()
        for pid, role in self.role.items():
            used[role] += self.ticks[pid] - self.baseline.get(pid, 0)
        seconds = {role: round(ticks / hz, 1) for role, ticks in sorted(used.items())}
        busy, total = self._machine
        cores = os.cpu_count() or 1
        seconds["machine_busy"] = round(busy / hz, 1)
        seconds["machine_available"] = round(total / hz, 1)
        seconds["other_processes"] = round((busy - sum(used.values())) / hz, 1)
        seconds["cores"] = cores
        return seconds

    @property
    def peak_rss_mb(self) -> float:
        return max(self.peak_rss_kb.values(), default=0) / 1024


# ---- one case ------------------------------------------------------------------------------------


def _seed(url: str, connections: int) -> int:
    """Every connection reconciled a day ago (its audience empty), then 1,000 contacts imported
    per owner: one `create` event each. Returns the events queued."""
    from flows.mailchimp.outbox import pending
    from flows.mailchimp.tables import MailchimpConnection
    from sandbox.app_contacts import seed_contacts
    from shared.db import session_scope

    with session_scope(url) as session:
        session.execute(
            sa.update(MailchimpConnection).values(
                last_full_sync_at=datetime.now(UTC) - timedelta(days=1)
            )
        )
    for owner in owner_ids(connections):
        seed_contacts(url, owner, CONTACTS)
    with session_scope(url) as session:
        return sum(pending(session, owner) for owner in owner_ids(connections))


def _outbox(url: str) -> int:
    from shared.db import get_engine

    with get_engine(url).connect() as connection:
        return int(connection.scalar(sa.text("SELECT COUNT(*) FROM mailchimp_sync_queue")) or 0)


async def _wait_for_workers(
    api_url: str, count: int, processes: list[subprocess.Popen[bytes]]
) -> None:
    from prefect import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: api_url}):
        async with get_client() as client:
            deadline = time.monotonic() + STARTUP_TIMEOUT
            while time.monotonic() < deadline:
                online = await client.read_workers_for_work_pool(POOL)
                if len({w.name for w in online}) >= count:
                    return
                if any(process.poll() is not None for process in processes):
                    raise RuntimeError("a worker exited before it came online")
                await asyncio.sleep(0.5)
    raise RuntimeError(f"{count} workers did not come online in {STARTUP_TIMEOUT} s")


async def _trigger_and_wait(
    api_url: str, url: str, deployments: list[str]
) -> tuple[float, datetime, list[Any], float]:
    """Trigger every deployment at once; wait until each run is final and the outbox empty.

    Returns (seconds until then, as polled; when triggered; the runs; seconds until the
    outbox was first seen empty).
    """
    from prefect import get_client
    from prefect.deployments.flow_runs import arun_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: api_url}):
        async with get_client() as client:
            triggered = datetime.now(UTC)
            started = time.perf_counter()
            runs = await asyncio.gather(
                *(arun_deployment(f"{FLOW}/{name}", timeout=0) for name in deployments)
            )
            emptied: float | None = None
            while time.perf_counter() - started < CASE_TIMEOUT:
                runs = [await client.read_flow_run(run.id) for run in runs]
                if emptied is None and await asyncio.to_thread(_outbox, url) == 0:
                    emptied = time.perf_counter() - started
                if all(run.state is not None and run.state.is_final() for run in runs):
                    break
                await asyncio.sleep(0.5)
            polled = time.perf_counter() - started
    return polled, triggered, runs, polled if emptied is None else emptied


def _ledger(url: str) -> dict[str, dict[str, Any]]:
    """Per flow run: the connections it synced and what it did (from `sync_run`)."""
    from shared.db import get_engine

    query = sa.text(
        "SELECT flow_run_id, COUNT(*), SUM(created), SUM(updated), SUM(skipped), SUM(failed), "
        "SUM(requests), string_agg(DISTINCT state, ',') FROM sync_run "
        "WHERE provider = 'mailchimp' GROUP BY flow_run_id"
    )
    with get_engine(url).connect() as connection:
        rows = connection.execute(query).all()
    fields = ("connections", "created", "updated", "skipped", "failed", "requests", "states")
    return {str(row[0]): dict(zip(fields, row[1:], strict=True)) for row in rows}


async def _limits(api_url: str) -> list[str]:
    from prefect import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: api_url}):
        async with get_client() as client:
            limits = await client.read_global_concurrency_limits(limit=200)
    return sorted(limit.name for limit in limits if limit.name.startswith("syncflows-mailchimp-"))


def run_case(worker_count: int, connections: int | None = None) -> BenchResult:
    """Drain `connections` x CONTACTS events with `worker_count` workers (one deployment each)."""
    from shared.crypto import new_key
    from shared.db import dispose_engine, ensure_schema
    from shared.settings import MailchimpSettings

    connections = CONNECTIONS if connections is None else connections
    at_once = MailchimpSettings.model_fields["connections_at_once"].default
    names = [f"bench-outbox-{chr(ord('a') + n)}" for n in range(worker_count)]
    key = new_key()
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(_tempdir()))
        url = stack.enter_context(fresh_database("syncflows_bench_app"))
        prefect_url = stack.enter_context(fresh_database("syncflows_bench_prefect"))
        ensure_schema(url)
        sandbox, state_file = stack.enter_context(sandbox_process(tmp, url, key, connections))
        (tmp / "prefect").mkdir()
        server = stack.enter_context(prefect_server(prefect_url, tmp / "prefect"))
        api_url, server_pid = server.api_url, server.pid
        seeded = time.perf_counter()
        events = _seed(url, connections)
        seed_s = time.perf_counter() - seeded
        deploy(api_url, names)
        env = {
            **os.environ,
            "SYNCFLOWS_ENV_FILE": os.devnull,
            "DATABASE_URL": url,
            "MAILCHIMP_TOKEN_KEYS": key,
            "SYNCFLOWS_GLOBAL_LIMITS": "on",
            "PREFECT_API_URL": api_url,
            "PREFECT_WORKER_QUERY_SECONDS": "1",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        }
        started = stack.enter_context(workers(worker_count, env, tmp))
        asyncio.run(_wait_for_workers(api_url, worker_count, started))
        roots = {server_pid: "prefect_server", sandbox.pid: "sandbox", os.getpid(): "bench"}
        roots.update(dict.fromkeys((process.pid for process in started), "workers"))
        with Sampler(roots) as sampler:
            polled, triggered, runs, emptied = asyncio.run(_trigger_and_wait(api_url, url, names))
        left = _outbox(url)
        ledger = _ledger(url)
        limits = asyncio.run(_limits(api_url))
        state = stop_sandbox(sandbox, state_file)
        expected = expected_members(url)
        dispose_engine(url)
    ends = [run.end_time for run in runs if run.end_time is not None]
    wall = (max(ends) - triggered).total_seconds() if len(ends) == len(runs) else polled
    states = [run.state.type.value if run.state else "NONE" for run in runs]
    problems = check(expected, state["members"], state["peaks"], left, states)
    stats = state["stats"]
    per_account = state["requests_per_account"]
    # Least time: each account's requests 10 at a time at LATENCY, `at_once` accounts
    # per run, one run per worker (and never less than the busiest account alone).
    lane = LATENCY / MAX_CONNECTIONS
    floor = max(
        stats["requests"] * lane / (min(at_once, connections) * worker_count),
        max(per_account.values(), default=0) * lane,
    )
    run_rows = [
        {
            "deployment": name,
            "state": state_name,
            "started_after_s": _offset(run.start_time, triggered),
            "ended_after_s": _offset(run.end_time, triggered),
            **ledger.get(str(run.id), {}),
        }
        for name, run, state_name in zip(names, runs, states, strict=True)
    ]
    return BenchResult(
        scenario=f"mailchimp-workers-{worker_count}",
        records=events,
        requests=stats["requests"],
        wall_s=wall,
        floor_s=floor,
        http_429=int(stats["by_status"].get("429", 0)),
        correct=not problems,
        peak_rss_mb=sampler.peak_rss_mb,
        details={
            "workers": worker_count,
            "connections": connections,
            "contacts_per_connection": CONTACTS,
            "latency_s": LATENCY,
            "connections_at_once_per_run": at_once,
            "outbox_empty_seen_after_s": round(emptied, 1),
            "runs": run_rows,
            "peak_in_flight_max": max(state["peaks"].values(), default=0),
            "prefect_account_limits": len(limits),
            "cpu_seconds": sampler.cpu_seconds(),
            "requests_by_route": stats["by_route"],
            "seed_s": round(seed_s, 1),
            "problems": problems[:10],
            "peak_rss": "the largest flow-run process (VmHWM)",
            "floor": "requests x 20 ms per account lane / (accounts at once per run x runs)",
        },
    )


@contextmanager
def _tempdir() -> Iterator[str]:
    import tempfile

    with tempfile.TemporaryDirectory(prefix="bench-mailchimp-workers-") as folder:
        yield folder


def _offset(moment: datetime | None, since: datetime) -> float | None:
    return None if moment is None else round((moment - since).total_seconds(), 1)


def run_both() -> BenchResult:
    """One worker, then two; prints and saves the first, returns the second with the ratio."""
    one = run_case(1)
    save(one)
    print(f"== mailchimp-workers (1 worker)\n{report(one)}", flush=True)  # noqa: T201
    two = run_case(2)
    two.details["one_worker"] = {**one.line(), "cpu_seconds": one.details["cpu_seconds"]}
    two.details["wall_two_over_one"] = round(two.wall_s / one.wall_s, 3)
    two.correct = two.correct and one.correct
    return two


SCENARIOS = (
    Scenario(
        "mailchimp-workers",
        "50 connections x 1,000 contacts through 1 worker, then 2 (PostgreSQL, ~16 min)",
        run_both,
    ),
)


if __name__ == "__main__":
    if sys.argv[1:2] == ["sandbox"]:
        serve_sandbox(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        sys.exit("usage: python -m bench.mailchimp_workers sandbox DATABASE_URL STATE CONNECTIONS")
