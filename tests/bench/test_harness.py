"""The bench command: its JSON line, its result file, and its exit status."""

from __future__ import annotations

import json

import pytest

import bench.__main__ as bench_main
from bench import harness
from bench.harness import BenchResult, Scenario


def _result(correct: bool) -> BenchResult:
    return BenchResult(
        scenario="fake",
        records=10,
        requests=20,
        wall_s=4.0,
        floor_s=2.0,
        http_429=1,
        correct=correct,
        details={"note": "x"},
    )


@pytest.mark.parametrize(("correct", "status"), [(True, 0), (False, 1)])
def test_run_prints_the_json_line_last_and_fails_on_an_incorrect_result(
    monkeypatch: pytest.MonkeyPatch, tmp_path, capsys, correct: bool, status: int
) -> None:
    monkeypatch.setattr(harness, "RESULTS", tmp_path)
    monkeypatch.setattr(
        bench_main, "SCENARIOS", {"fake": Scenario("fake", "a fake", lambda: _result(correct))}
    )
    assert bench_main.main(["run", "fake"]) == status
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert list(last) == [
        "scenario",
        "records",
        "requests",
        "wall_s",
        "floor_s",
        "ratio",
        "http_429",
        "peak_rss_mb",
        "correct",
    ]
    assert (last["ratio"], last["correct"]) == (2.0, correct)
    assert last["peak_rss_mb"] > 0
    saved = json.loads((tmp_path / "fake.json").read_text())
    assert saved["details"] == {"note": "x"}
