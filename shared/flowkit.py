"""The one way to declare a sync flow and its I/O tasks, so every provider gets the same hygiene.

* `sync_flow`: Sentry hooks (one event per failed run), a bounded task runner (prefect-notes §1:
  the default thread pool is unbounded), Sentry started before the body runs.
* `io_task`: `NO_CACHE` (prefect-notes §6: any other policy silently persists results and can
  replay a stale page or skip an upsert).
* Both rewrite an escaping exception's text through `redact` before Prefect records it: a flow
  or task state message is built from `str(exception)` and shown in the UI and API, where the
  log redaction cannot reach.

Fan-out: flows are async and await their tasks with `asyncio.TaskGroup`/`gather` on one event
loop (one `httpx.AsyncClient` per run); `.map`/`.submit` of async tasks costs 4 to 10x more per
task (prefect-notes §1). Every task run costs about 11 ms here (`make bench`,
scenario `task-overhead`), and bursts of thousands drop UI events, so a task is one page or
one batch of records: hundreds of tasks per run, not thousands.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import ThreadPoolTaskRunner

from shared.observability import init_observability, report_run_failure
from shared.redact import redact

P = ParamSpec("P")
R = TypeVar("R")
TASK_RUNNER_WORKERS = 8


def scrub_exception(error: BaseException) -> None:
    """Redact the string arguments of an exception and of its causes, in place."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        current.args = tuple(redact(a) if isinstance(a, str) else a for a in current.args)
        current = current.__cause__ or current.__context__


def scrubbed(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Wrap an async function so exceptions leave it with their text redacted."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await fn(*args, **kwargs)
        except BaseException as error:
            scrub_exception(error)
            raise

    return wrapper


def sync_flow(name: str, **options: Any) -> Callable[[Callable[P, Awaitable[R]]], Any]:
    """Decorate an async flow function as a syncflows flow named `name` (e.g. `brevo-sync`)."""

    def decorate(fn: Callable[P, Awaitable[R]]) -> Any:
        @functools.wraps(fn)
        async def body(*args: P.args, **kwargs: P.kwargs) -> R:
            init_observability()
            return await fn(*args, **kwargs)

        # Typed as Any: Prefect's stubs do not accept the runner's generic parameter.
        runner: Any = ThreadPoolTaskRunner(max_workers=TASK_RUNNER_WORKERS)
        return flow(
            name=name,
            on_failure=[report_run_failure],
            on_crashed=[report_run_failure],
            task_runner=runner,
            **options,
        )(scrubbed(body))

    return decorate


def io_task(**options: Any) -> Callable[[Callable[P, Awaitable[R]]], Any]:
    """Decorate an async task that reads or writes: never cached, errors redacted."""

    def decorate(fn: Callable[P, Awaitable[R]]) -> Any:
        return task(cache_policy=NO_CACHE, **options)(scrubbed(fn))

    return decorate
