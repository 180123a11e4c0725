"""The Magento scenarios' machinery: the correctness check must fail when the consumers are
wrong, and the scenarios run end to end at a small scale."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

import bench.magento as scenario
from bench.magento import expected_pairs, stored_pairs
from shared.db import dispose_engine, ensure_schema, get_engine


def _order(entity_id: int, email: str | None, created_at: str) -> dict[str, object]:
    return {"entity_id": entity_id, "customer_email": email, "created_at": created_at}


def test_expected_pairs_are_distinct_normalised_and_skip_orders_without_email() -> None:
    orders = [
        _order(1, " Ann@X.nl ", "2026-01-02 03:04:05"),
        _order(2, "ann@x.nl", "2026-01-02 03:04:05"),  # the same consumer
        _order(3, "ann@x.nl", "2026-01-03 03:04:05"),  # another purchase day
        _order(4, None, "2026-01-03 03:04:05"),
    ]
    pairs, without = expected_pairs(orders)
    assert pairs == {
        ("ann@x.nl", "2026-01-02T03:04:05+00:00"),
        ("ann@x.nl", "2026-01-03T03:04:05+00:00"),
    }
    assert without == 1


def test_stored_pairs_see_a_wrong_or_duplicated_consumer(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/c.db"
    ensure_schema(url)
    with get_engine(url).begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO consumer (email, purchase_date, source, order_entity_id, created_at) "
                "VALUES ('ann@x.nl', '2026-01-02 03:04:05.000000', 'magento_sync', 1, "
                "'2026-11-21 00:00:00.000000')"
            )
        )
    pairs, rows = stored_pairs(url)
    dispose_engine(url)
    assert pairs == {("ann@x.nl", "2026-01-02T03:04:05+00:00")}
    assert rows == 1
    assert pairs != {("ann@x.nl", "2026-01-03T03:04:05+00:00")}


@pytest.mark.usefixtures("prefect_harness")
def test_both_scenarios_run_correctly_at_a_small_scale(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scenario, "ORDERS", 1_500)
    monkeypatch.setattr(scenario, "NEW_ORDERS", 250)
    monkeypatch.setattr(scenario, "LATENCY", 0.01)
    full = scenario.full_sync()
    assert full.correct, full.details
    # The newest order, ⌈1,500/100⌉ pages, store views, and one short page where the first of
    # the two id ranges ends (ids have gaps, so a range rarely holds whole pages).
    assert full.requests == 1 + 15 + 1 + 1
    incremental = scenario.incremental()
    assert incremental.correct, incremental.details
    assert incremental.details["no_new_orders_requests"] == 1
    assert incremental.requests == 3 + 1  # ⌈250/100⌉ pages, store views
