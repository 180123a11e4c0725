"""The self-check flow end to end over loopback: settings → DB → HTTP → ledger, run twice."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlmodel import select

from flows.selfcheck import selfcheck_sync
from sandbox.selfcheck import create_app
from sandbox.server import serve
from shared.db import session_scope
from shared.models import PushState, SyncFailure, SyncRun
from shared.settings import MissingConfiguration

pytestmark = pytest.mark.usefixtures("prefect_harness")
KEY = "selfcheck-key-3141592"


@pytest.fixture
def sandbox(monkeypatch: pytest.MonkeyPatch, database_url: str) -> Iterator[object]:
    app = create_app(api_key=KEY)
    with serve(app) as base_url:
        monkeypatch.setenv("DATABASE_URL", database_url)
        monkeypatch.setenv("SELFCHECK_BASE_URL", base_url)
        monkeypatch.setenv("SELFCHECK_API_KEY", KEY)
        yield app.state.sandbox


async def test_first_run_pushes_all_and_second_run_only_retries_the_failure(
    sandbox, database_url: str
) -> None:
    first = (await selfcheck_sync(records=40, batch_size=10)).row()
    assert (first["records_read"], first["created"], first["failed"], first["requests"]) == (
        40,
        39,
        1,
        40,
    )
    assert len(sandbox.items) == 39

    second = (await selfcheck_sync(records=40, batch_size=10)).row()
    assert (second["unchanged"], second["created"], second["failed"], second["requests"]) == (
        39,
        0,
        1,
        1,
    )
    assert len(sandbox.log) == 41

    with session_scope(database_url) as session:
        runs = session.exec(select(SyncRun).order_by(SyncRun.id)).all()
        failure = session.exec(select(SyncFailure)).one()
        pushed = session.exec(select(PushState)).all()
    assert [(r.state, r.requests) for r in runs] == [("completed", 40), ("completed", 1)]
    assert all(r.flow_run_id for r in runs)
    assert (failure.record_key, failure.status_code, failure.attempts) == ("demo-013", 422, 2)
    assert "The email must be a valid email address." in failure.message
    assert failure.resolved_at is None
    assert len(pushed) == 39
    assert all(p.remote_id == f"sc-{p.record_key}" for p in pushed)


async def test_growing_the_record_set_pushes_only_the_new_records(sandbox) -> None:
    await selfcheck_sync(records=20, batch_size=5)
    grown = (await selfcheck_sync(records=30, batch_size=5)).row()
    assert (grown["created"], grown["unchanged"], grown["failed"]) == (10, 19, 1)


async def test_missing_configuration_fails_before_any_request_or_write(
    sandbox, monkeypatch: pytest.MonkeyPatch, database_url: str
) -> None:
    monkeypatch.delenv("SELFCHECK_API_KEY")
    monkeypatch.delenv("SELFCHECK_BASE_URL")
    with pytest.raises(MissingConfiguration, match="SELFCHECK_API_KEY, SELFCHECK_BASE_URL"):
        await selfcheck_sync()
    assert sandbox.log == []
    with session_scope(database_url) as session:
        import sqlalchemy as sa

        tables = sa.inspect(session.get_bind()).get_table_names()
        assert "sync_run" not in tables or session.exec(select(SyncRun)).all() == []


async def test_run_publishes_a_summary_artifact_with_the_failure(sandbox) -> None:
    from prefect import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterKey,
        FlowRunFilter,
        FlowRunFilterId,
    )

    state = await selfcheck_sync(records=20, batch_size=5, return_state=True)
    this_run = FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id]))
    async with get_client() as client:
        summaries = await client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=["selfcheck-default-sync-summary"])
            ),
            flow_run_filter=this_run,
        )
        progress = await client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=["selfcheck-default-progress"])
            ),
            flow_run_filter=this_run,
        )
    assert len(summaries) == 1
    assert len(progress) == 1
    table = summaries[0].data
    assert '"failed upsert demo-013"' in table
    assert "The email must be a valid email address." in table
    assert float(progress[0].data) == 100.0
