"""Error reporting: one scrubbed Sentry event per failed run; secrets never in logs."""

from __future__ import annotations

import logging

import pytest
from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from shared.observability import Refusal, init_observability, report_run_failure
from shared.redact import install_log_redaction, register_secret
from shared.settings import SelfcheckSettings, load_provider_settings

SECRET = "sc-live-7d1e0c55a9b2f4"


@task(retries=1, retry_delay_seconds=0, cache_policy=NO_CACHE)
async def call_provider(key: str) -> None:
    raise RuntimeError(f"provider rejected credentials {key}")


@flow(name="exploding-sync", on_failure=[report_run_failure], on_crashed=[report_run_failure])
async def exploding_sync(full_sync: bool = True) -> None:
    init_observability()
    settings = await load_provider_settings(SelfcheckSettings)
    assert settings.api_key is not None
    await call_provider(settings.api_key.get_secret_value())


@pytest.mark.usefixtures("prefect_harness")
async def test_failed_run_sends_exactly_one_scrubbed_event(
    sentry_events, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SELFCHECK_API_KEY", SECRET)
    monkeypatch.setenv("SELFCHECK_BASE_URL", "http://127.0.0.1:9")
    state = await exploding_sync(return_state=True)
    assert state.is_failed()

    assert len(sentry_events.events) == 1  # not one per retry, not one per ERROR log line
    event = sentry_events.events[0]
    assert event["tags"]["prefect.flow"] == "exploding-sync"
    assert event["tags"]["syncflows.mode"] == "full"
    assert event["tags"]["prefect.flow_run_id"]
    assert event["exception"]["values"][-1]["type"] == "RuntimeError"
    assert "provider rejected credentials ***" in event["exception"]["values"][-1]["value"]
    assert all(SECRET not in text for text in sentry_events.raw)


@pytest.mark.usefixtures("prefect_harness")
async def test_a_run_failing_before_its_body_is_reported_too(sentry_events) -> None:
    from flows.selfcheck import selfcheck_sync

    state = await selfcheck_sync(records="many", return_state=True)  # bad parameter
    assert state.is_failed()
    assert len(sentry_events.events) == 1
    assert sentry_events.events[0]["tags"]["prefect.flow"] == "selfcheck-sync"


@flow(name="refusing-sync", on_failure=[report_run_failure])
async def refusing_sync() -> None:
    init_observability()
    raise Refusal("Sync Now is allowed again at 14:03 UTC")


@pytest.mark.usefixtures("prefect_harness")
async def test_a_refused_run_fails_with_its_message_and_is_not_reported(sentry_events) -> None:
    state = await refusing_sync(return_state=True)
    assert state.is_failed()
    assert "allowed again at 14:03 UTC" in (state.message or "")
    assert sentry_events.events == []


def test_log_records_are_redacted_for_every_logger(caplog: pytest.LogCaptureFixture) -> None:
    install_log_redaction()
    register_secret("log-secret-5550123")
    caplog.set_level(logging.INFO)
    logging.getLogger("some.library").info("token=%s", "log-secret-5550123")
    try:
        raise ValueError("bad log-secret-5550123")
    except ValueError:
        logging.getLogger("another").exception("failed")
    assert "log-secret-5550123" not in caplog.text
    assert "token=***" in caplog.text
    assert "bad ***" in caplog.text
