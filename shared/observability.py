"""Logging and error reporting for flow runs.

Logs go through Prefect's run logger inside a run (they reach the UI) and a plain logger
outside one. Sentry is initialised once per process from `SENTRY_DSN` with its default
integrations off, so a failed run sends exactly one event, from the flow's `on_failure` /
`on_crashed` hook (prefect-notes §9: with the integration on, one failure made four events,
including one for a retry that later succeeded). A run killed outright runs no hook: the next run
of its provider account reports it (`report_abandoned_run`). `before_send` redacts every
registered secret.
"""

from __future__ import annotations

import logging
from typing import Any

import sentry_sdk

from shared.redact import install_log_redaction, redact_data
from shared.settings import load_settings

_sentry_dsn: str | None = None


class Refusal(RuntimeError):
    """A run a rule turned down (Sync Now within the hour): it fails with the rule's message,
    shown in the UI and CLI, and is not reported to Sentry: nothing is broken."""


def get_logger(name: str = "syncflows") -> logging.Logger | logging.LoggerAdapter[Any]:
    """Prefect's run logger inside a flow or task run; a standard logger elsewhere."""
    from prefect.exceptions import MissingContextError
    from prefect.logging import get_run_logger

    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger(name)


def scrub_event(event: Any, _hint: Any = None) -> Any:
    """Sentry `before_send`: mask registered secrets anywhere in the event."""
    return redact_data(event)


def init_observability() -> None:
    """Install log redaction and start Sentry (when `SENTRY_DSN` is set) once per process."""
    global _sentry_dsn
    install_log_redaction()
    settings = load_settings()
    dsn = settings.sentry_dsn.get_secret_value() if settings.sentry_dsn else None
    if not dsn or dsn == _sentry_dsn:
        return
    sentry_sdk.init(
        dsn=dsn,
        environment=settings.sentry_environment,
        # Only the flow hooks report. Default integrations would add events (logging,
        # excepthook), breadcrumbs with request URLs (httpx) and trace headers on every
        # provider request.
        default_integrations=False,
        auto_enabling_integrations=False,
        trace_propagation_targets=[],
        before_send=scrub_event,
        include_local_variables=False,  # locals hold clients, settings and keys
    )
    _sentry_dsn = dsn


async def report_run_failure(flow: Any, flow_run: Any, state: Any) -> None:
    """Flow `on_failure` / `on_crashed` hook: one Sentry event per failed run, with context."""
    init_observability()  # a run can fail before its body starts (e.g. bad parameters)
    if _sentry_dsn is None:
        return
    error = await state.aresult(raise_on_failure=False)
    if isinstance(error, Refusal):
        return
    parameters = dict(flow_run.parameters or {})
    with sentry_sdk.new_scope() as scope:
        scope.set_tag("prefect.flow", flow.name)
        scope.set_tag("prefect.flow_run_id", str(flow_run.id))
        scope.set_tag("syncflows.provider", flow.name.removesuffix("-sync"))
        scope.set_tag("syncflows.mode", str(parameters.get("mode", _mode(parameters))))
        scope.set_context(
            "prefect",
            {"parameters": parameters, "state": state.type.value, "flow_run_name": flow_run.name},
        )
        if isinstance(error, BaseException):
            sentry_sdk.capture_exception(error)
        else:
            sentry_sdk.capture_message(
                f"{flow.name} run {flow_run.name} ended {state.type.value}", level="error"
            )
    sentry_sdk.flush(timeout=5)  # the worker's subprocess exits right after the run


def report_abandoned_run(
    provider: str, account: str, flow_run_id: str, *, mode: str, prefect_state: str
) -> None:
    """One Sentry event for a run whose process died before it could report (SIGKILL, a lost
    node: no hook runs), sent by the next run of the same provider account, which found the
    dead run's ledger row still `running` (shared.runs)."""
    init_observability()
    if _sentry_dsn is None:
        return
    with sentry_sdk.new_scope() as scope:
        scope.set_tag("prefect.flow_run_id", flow_run_id)
        scope.set_tag("syncflows.provider", provider)
        scope.set_tag("syncflows.account", account)
        scope.set_tag("syncflows.mode", mode)
        scope.set_context("prefect", {"state": prefect_state})
        # One Sentry issue per provider account, however many runs die.
        scope.fingerprint = ["syncflows-abandoned-run", provider, account]
        sentry_sdk.capture_message(
            f"{provider} run {flow_run_id} (account {account}) ended without finishing: its "
            "process was killed or lost; this run picks up its work",
            level="error",
        )
    sentry_sdk.flush(timeout=5)


def _mode(parameters: dict[str, Any]) -> str:
    if parameters.get("test_mode"):
        return "test"
    if parameters.get("full_sync"):
        return "full"
    return "incremental"
