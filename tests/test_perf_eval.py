"""A quick end-to-end evaluation throughput run with the tiny model: the JSON report and its time split."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.perf_eval import PARTS, Timers, main


def test_quick_run_writes_the_report(tmp_path: Path, tiny_model_path: Path, capsys) -> None:
    out = tmp_path / "perf_eval.json"
    returned = main(["--quick", "--model", str(tiny_model_path), "--out", str(out)])
    report = json.loads(out.read_text())
    assert report == json.loads(json.dumps(returned))
    assert set(report["workloads"]) == {"fine_detail", "vstar_jpeg"}
    for row in report["workloads"].values():
        assert row["tasks"] == 4 and row["turns"] >= 4 and row["generated_tokens"] > 0
        assert row["episodes_per_s"] > 0 and row["turns_per_s"] >= row["episodes_per_s"] and row["tokens_per_s"] > 0
        assert set(row["seconds"]) == set(PARTS) == set(row["share"])
        assert all(value >= 0 for value in row["seconds"].values())
        assert sum(row["seconds"].values()) == pytest.approx(row["wall_s"])
        assert sum(row["share"].values()) == pytest.approx(1.0)
        assert row["seconds"]["model"] > 0 and row["seconds"]["processor"] > 0 and row["seconds"]["decode"] > 0
        assert row["calls"]["agent"] == row["calls"]["model"] and row["calls"]["processor"] == row["turns"]
    assert report["meta"]["config"]["tasks"] == 4 and report["meta"]["device"]
    assert "| vstar_jpeg |" in capsys.readouterr().out


def test_timers_count_nested_calls_once_and_restore() -> None:
    class Worker:
        def work(self, depth: int) -> int:
            return depth if depth == 0 else self.work(depth - 1)

    timers, results, original = Timers(), [], Worker.work
    with timers.wrap(Worker, "work", "work", results.append):
        assert Worker().work(3) == 0
    assert timers.calls["work"] == 1 and timers.seconds["work"] > 0 and results == [0, 0, 0, 0]
    assert Worker.work is original
