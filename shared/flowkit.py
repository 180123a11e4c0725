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

import asyncio
import functools
import inspect
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, ParamSpec, TypeVar

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.tasks import _generate_task_key
from prefect.utilities.hashing import file_hash

from shared.observability import init_observability, report_run_failure
from shared.redact import redact

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")
TASK_RUNNER_WORKERS = 8


class RedactedError(RuntimeError):
    """Stands in for an exception whose text held a secret that could not be masked in place."""


def scrub_exception(error: BaseException) -> BaseException:
    """Redact an exception and its causes in place; return what may safely be raised.

    Most exceptions build their text from `args`, which are rewritten. Some build it from other
    state (pydantic's `ValidationError` shows the input); if a secret is still in the text, a
    `RedactedError` carrying only the masked text replaces the exception.
    """
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        current.args = tuple(redact(a) if isinstance(a, str) else a for a in current.args)
        current = current.__cause__ or current.__context__
    text = str(error)
    if redact(text) != text:
        return RedactedError(f"{type(error).__name__}: {redact(text)}")
    return error


def scrubbed(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Wrap an async function so exceptions leave it with their text redacted."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await fn(*args, **kwargs)
        except BaseException as error:
            safe = scrub_exception(error)
            if safe is error:
                raise
            raise safe from None

    return wrapper


async def fan_out(
    items: Iterable[T], run: Callable[[T], Awaitable[R]], limit: int = TASK_RUNNER_WORKERS
) -> list[R]:
    """Run `run` over `items`, at most `limit` at a time; results in the order of `items`.

    Awaited tasks do not go through the flow's task runner, so this is where fan-out is bounded
    (prefect-notes §1: thousands of simultaneous task runs drop the UI's events). The first
    failure cancels the rest and is raised as itself, not as a one-item exception group.
    """
    gate = asyncio.Semaphore(limit)

    async def bounded(item: T) -> R:
        async with gate:
            return await run(item)

    try:
        async with asyncio.TaskGroup() as group:
            started = [group.create_task(bounded(item)) for item in items]
    except BaseExceptionGroup as failures:
        if len(failures.exceptions) == 1:
            raise failures.exceptions[0] from None
        raise
    return [task.result() for task in started]


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
            # Prefect derives the version from the decorated function's file, which would be
            # this one for every flow; the flow's own file is what changes with it.
            version=file_hash(inspect.getsourcefile(fn) or ""),
            on_failure=[report_run_failure],
            on_crashed=[report_run_failure],
            task_runner=runner,
            **options,
        )(scrubbed(body))

    return decorate


def io_task(**options: Any) -> Callable[[Callable[P, Awaitable[R]]], Any]:
    """Decorate an async task that reads or writes: never cached, errors redacted."""

    def decorate(fn: Callable[P, Awaitable[R]]) -> Any:
        created = task(cache_policy=NO_CACHE, **options)(scrubbed(fn))
        # The key Prefect derives from the wrapper would be the same for every task of every
        # provider; derive it from the task's own code instead (Prefect has no parameter).
        created.task_key = _generate_task_key(fn)
        return created

    return decorate
