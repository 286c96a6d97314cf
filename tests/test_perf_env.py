"""The env benchmark's quick mode runs and writes complete JSON; timing targets are not asserted here."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks import perf_env


def test_quick_benchmark_writes_complete_json(tmp_path: Path) -> None:
    out = tmp_path / "perf.json"
    returned = perf_env.main(["--quick", "--out", str(out)])
    results = json.loads(out.read_text())
    assert results == json.loads(json.dumps(returned))
    settings = {"fine_detail", "vstar_jpeg"}
    assert set(results["steps_per_s"]) == settings and set(results["zoom_overhead"]) == settings
    for row in results["steps_per_s"].values():
        assert row["steps_per_s"] > 0 and row["reset_ms"] > 0 and row["zoom_step_ms"] > 0
        assert len(row["runs"]) == perf_env.QUICK.repeats
    for row in results["zoom_overhead"].values():
        assert row["ratio"] > 0 and row["env_step_ms"] > 0 and row["bare_ms"] > 0
        assert row["target"] == perf_env.OVERHEAD_TARGET
    assert results["zoom_overhead"]["vstar_jpeg"]["first_zoom_ms"] > 0  # the JPEG is decoded by the first zoom
    assert results["zoom_overhead"]["fine_detail"]["first_zoom_ms"] is None
    vector = results["async_vector"]
    assert vector["workers"] == 2 and vector["target"] == perf_env.SPEEDUP_TARGET
    assert vector["speedup"] > 0 and vector["single_steps_per_s"] > 0 and vector["vector_steps_per_s"] > 0
    # images shared by "images" and "messages" are pickled once
    assert vector["observation_image_bytes"] <= vector["observation_pickle_bytes"] < 1.1 * vector[
        "observation_image_bytes"
    ]
    if vector["cpu_ms_per_step"] is not None:
        assert all(value >= 0 for value in vector["cpu_ms_per_step"].values())
        assert vector["idle_cores_estimate"] > 0
    hostile = results["hostile"]
    assert set(hostile["step_ms"]) == set(perf_env.HOSTILE_TURNS) and hostile["worst"] in hostile["step_ms"]
    assert hostile["ratio"] == hostile["worst_ms"] / hostile["zoom_step_ms"] and hostile["worst_ms"] > 0
    assert results["meta"]["config"] == {
        "zooms": 2, "episodes": 2, "repeats": 2, "num_images": 1, "suite_size": 8,
    }
