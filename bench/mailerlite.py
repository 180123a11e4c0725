"""MailerLite scenarios: a first push of 20,000 users, a rerun with nothing changed, 1 % changed.

MailerLite allows 120 requests and 5 imports (batches of 50 upserts) per minute (push §1.6,
§1.8), so a first push of ~19,000 users takes about 52 minutes of real time. The sandbox runs
`SCALE` (10) times faster than the wall clock and the flow's pace is set to match
(`MAILER_LITE_RATE_PER_SECOND` = 2 * SCALE, `MAILER_LITE_IMPORTS_PER_MINUTE` = 5 * SCALE), so
both limits hold in sandbox time and the run takes about 5.5 minutes. Figures are in real
seconds; `users_per_sandbox_minute` is the throughput at the documented limits. (At 20 times
the flow's own CPU per request, squeezed into a twentieth of the time, starts to cost 1-2 %.)

**Floor of the strategy** (flow module doc): each minute, 5 imports carry 250 users and the
other 115 requests one user each: 365 users per minute. With `E` other requests (listing groups
and fields, creating fields), `N` users take at least (N + E) / 365 minutes: 115 T singles and
5 T imports fill 120 T requests when 250 T + 115 T = N + E.

* `mailerlite-first`: 20,000 application users (≈ 95 % production), nothing pushed before; the
  sandbox in its own process. `correct`: every production user is a subscriber of the group
  with exactly the expected fields (read back through the API), no one else is.
* `mailerlite-rerun`: after a first push (made unpaced, in-process), a run with nothing changed:
  zero requests.
* `mailerlite-1pct`: after that, 1 % of the users get a new conversation; the run should send
  exactly the production users among them.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.harness import BenchResult, Scenario, peak_rss_mb, serve_in_process, warm_prefect
from flows.mailerlite.flow import mailerlite_sync
from flows.mailerlite.users import excluded_patterns, select_users
from sandbox.app_users import seed_users, touch_users
from sandbox.mailerlite import create_app
from sandbox.registry import request_stats
from sandbox.server import serve
from shared.db import dispose_engine, ensure_schema, session_scope
from shared.settings import MailerLiteSettings

KEY = "bench-mailerlite-key-1618"
USERS = 20_000
SCALE = 10.0  # sandbox seconds per real second
USERS_PER_MINUTE = 5 * 50 + 115  # the strategy's throughput at the documented limits
CHANGED_SHARE = 0.01


def _configure(url: str, api_url: str, group: str, scale: float) -> None:
    os.environ.update(
        DATABASE_URL=url,
        MAILER_LITE_BASE_URL=api_url,
        MAILER_LITE_API_KEY=KEY,
        MAILER_LITE_GROUP_ID=group,
        MAILER_LITE_RATE_PER_SECOND=str(2.0 * scale),
        MAILER_LITE_IMPORTS_PER_MINUTE=str(5.0 * scale),
        SYNCFLOWS_ENV_FILE=os.devnull,
    )


def expected_subscribers(url: str) -> dict[str, dict[str, Any]]:
    """email → fields, by the production rule and field definitions (`flows.mailerlite.users`)."""
    patterns = excluded_patterns(MailerLiteSettings(_env_file=None).excluded_emails)  # type: ignore[call-arg]
    with session_scope(url) as session:
        chosen = select_users(session, patterns)
    return {c.email: c.fields for c in chosen.candidates}


def read_back(api_url: str, per_second: float) -> tuple[dict[str, dict[str, Any]], int]:
    """Every subscriber through `GET /api/subscribers`, paced under the sandbox's limit; and
    how many requests that took."""
    found: dict[str, dict[str, Any]] = {}
    pages = 0
    headers = {"Authorization": f"Bearer {KEY}", "Accept": "application/json"}
    with httpx.Client(base_url=api_url, headers=headers, timeout=30) as client:
        cursor: str | None = None
        while True:
            params = {"limit": 100, **({"cursor": cursor} if cursor else {})}
            time.sleep(1.0 / per_second)
            body = client.get("subscribers", params=params).raise_for_status().json()
            pages += 1
            for item in body["data"]:
                groups = [g["id"] for g in item.get("groups") or []]
                found[item["email"]] = {**item["fields"], "_groups": groups}
            cursor = body["meta"].get("next_cursor")
            if not cursor:
                return found, pages


def matches(want: dict[str, dict[str, Any]], got: dict[str, dict[str, Any]], group: str) -> bool:
    if set(want) != set(got):
        return False
    return all(
        got[email]["_groups"] == [group]
        and all(got[email].get(name) == value for name, value in fields.items())
        for email, fields in want.items()
    )


def first_push() -> BenchResult:
    """20,000 users, none pushed before, through the documented limits (time-scaled)."""
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/bench.db"
        ensure_schema(url)
        made = seed_users(url, USERS, seed=1)
        want = expected_subscribers(url)
        asyncio.run(warm_prefect())
        options = ("--scale", str(SCALE), "--api-key", KEY)
        with serve_in_process(Path(tmp), "mailerlite", *options) as remote:
            api_url = f"{remote.base_url}/api"
            group = _first_group(api_url)
            _configure(url, api_url, group, SCALE)
            started = time.perf_counter()
            summary = asyncio.run(mailerlite_sync())
            wall = time.perf_counter() - started
            peak = peak_rss_mb()
            got, pages = read_back(api_url, per_second=SCALE)  # half the 2/s cap, scaled
            stats = remote.stop()
        dispose_engine(url)
    routes = stats["by_route"]
    sent = summary.counts.created + summary.counts.updated + summary.counts.failed
    imports = routes.get("batch", 0)
    singles = routes.get("subscribers", 0) - pages  # the read-back was GETs of that route
    extra = summary.requests - imports - singles
    floor = (sent + extra) / USERS_PER_MINUTE * 60.0 / SCALE
    correct = summary.state == "completed" and summary.counts.created == len(want)
    correct = correct and matches(want, got, group)
    return BenchResult(
        scenario="mailerlite-first",
        records=sent,
        requests=summary.requests,
        wall_s=wall,
        floor_s=floor,
        http_429=int(stats["by_status"].get("429", 0)),
        correct=correct,
        peak_rss_mb=peak,
        details={
            "app_users": made.users,
            "production_users": made.production,
            "scale": SCALE,
            "users_per_sandbox_minute": round(sent / (wall * SCALE / 60.0), 1),
            "strategy": "5 imports x 50 + 115 single upserts per minute = 365 users/min",
            "floor": f"({sent} users + {extra} other requests) / 365 per minute, / scale",
            "imports": imports,
            "single_upserts": singles,
            "other_requests": extra,
            "imports_per_sandbox_minute": round(imports / (wall * SCALE / 60.0), 2),
            "counts": summary.counts.__dict__,
            "requests_by_route": routes,
        },
    )


def _first_group(api_url: str) -> str:
    headers = {"Authorization": f"Bearer {KEY}", "Accept": "application/json"}
    body = httpx.get(f"{api_url}/groups", headers=headers, timeout=30).raise_for_status().json()
    return str(body["data"][0]["id"])


def _pushed_account(tmp: str) -> tuple[str, Any, str]:
    """A database with 20,000 users and an in-process sandbox they were pushed to (unpaced)."""
    url = f"sqlite:///{tmp}/bench.db"
    ensure_schema(url)
    seed_users(url, USERS, seed=1)
    app = create_app(KEY, scale=SCALE)
    return url, app, app.state.sandbox.add_group("App users")


def rerun_and_changes(scenario: str) -> BenchResult:
    """A first push unpaced, then the measured run: nothing changed, or 1 % changed."""
    with tempfile.TemporaryDirectory() as tmp:
        url, app, group = _pushed_account(tmp)
        sandbox = app.state.sandbox
        asyncio.run(warm_prefect())
        with serve(app) as base_url:
            limits, imports = sandbox.limits, sandbox.imports
            sandbox.limits, sandbox.imports = [], None  # the setup push goes unpaced
            _configure(url, f"{base_url}/api", group, 1000.0)
            asyncio.run(mailerlite_sync())
            sandbox.limits, sandbox.imports = limits, imports
            _configure(url, f"{base_url}/api", group, SCALE)
            touched: list[int] = []
            if scenario == "mailerlite-1pct":
                touched = touch_users(url, CHANGED_SHARE, seed=2)
            want = expected_subscribers(url)
            changed = {e for e in want if want[e] != _fields(sandbox.subscriber(e))}
            before = len(sandbox.log)
            started = time.perf_counter()
            summary = asyncio.run(mailerlite_sync())
            wall = time.perf_counter() - started
            peak = peak_rss_mb()
            log = sandbox.log[before:]
            sent = _sent_emails(log)
            stats = request_stats(log)
            correct = all(want[e] == _fields(sandbox.subscriber(e)) for e in want)
        dispose_engine(url)
    writes = [e for e in log if e.method != "GET"]
    correct = correct and sorted(sent) == sorted(changed) and summary.state == "completed"
    if scenario == "mailerlite-rerun":
        correct = correct and not writes
    floor = len(changed) / USERS_PER_MINUTE * 60.0 / SCALE
    return BenchResult(
        scenario=scenario,
        records=len(sent),
        requests=summary.requests,
        wall_s=wall,
        floor_s=floor,
        http_429=int(stats["by_status"].get("429", 0)),
        correct=correct,
        peak_rss_mb=peak,
        details={
            "app_users": USERS,
            "users_touched": len(touched),
            "production_users_changed": len(changed),
            "users_sent": len(sent),
            "write_requests": len(writes),
            "counts": summary.counts.__dict__,
            "requests_by_route": stats["by_route"],
            "scale": SCALE,
        },
    )


def _fields(subscriber: dict[str, Any] | None) -> dict[str, Any]:
    if subscriber is None:
        return {}
    fields: dict[str, Any] = subscriber["fields"]
    return {k: v for k, v in fields.items() if v is not None}


def _sent_emails(log: list[Any]) -> list[str]:
    emails: list[str] = []
    for entry in log:
        if entry.method == "POST" and entry.path == "/api/subscribers":
            emails.append(entry.body["email"])
        elif entry.method == "POST" and entry.path == "/api/batch":
            emails += [r["body"]["email"] for r in entry.body["requests"]]
    return emails


SCENARIOS = (
    Scenario(
        "mailerlite-first",
        "20,000 users, first push, documented limits (time-scaled x10)",
        first_push,
    ),
    Scenario(
        "mailerlite-rerun",
        "20,000 users pushed before, nothing changed: zero writes",
        lambda: rerun_and_changes("mailerlite-rerun"),
    ),
    Scenario(
        "mailerlite-1pct",
        "20,000 users pushed before, 1 % changed: only they are sent",
        lambda: rerun_and_changes("mailerlite-1pct"),
    ),
)
