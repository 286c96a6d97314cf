"""A quick local-trainer RL step benchmark with the tiny model: the JSON report, its time split and ratios."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from benchmarks.perf_train import PARTS, QUICK, generated_tokens, main, split_time


def test_quick_run_reports_a_consistent_step(tmp_path: Path, tiny_model_path: Path, capsys) -> None:
    out = tmp_path / "perf_train.json"
    returned = main(["--quick", "--model", str(tiny_model_path), "--out", str(out)])
    report = json.loads(out.read_text())
    assert report == json.loads(json.dumps(returned))
    assert len(report["steps"]) == QUICK.steps
    for step in report["steps"]:
        seconds, record = step["seconds"], step["trainer_record"]
        assert set(seconds) == set(PARTS) == set(step["share"])
        assert all(value >= 0 for value in seconds.values())
        assert sum(seconds.values()) == pytest.approx(step["wall_s"])
        assert sum(step["share"].values()) == pytest.approx(1.0)
        # the trainer's own timers agree with the wrapped ones (both time the same calls)
        assert record["step_seconds"] == pytest.approx(step["wall_s"], rel=0.05)
        agent = seconds["generation"] + seconds["processor"] + seconds["agent_other"]
        assert record["generation_seconds"] == pytest.approx(agent, rel=0.05)
        assert record["update_seconds"] == pytest.approx(seconds["update"], rel=0.05)
        assert record["updated_episodes"] == QUICK.tasks_per_step * QUICK.group_size  # no group filter
        assert seconds["generation"] > 0 and seconds["processor"] > 0 and seconds["env"] > 0
        # 4 episodes, each turn at most 16 tokens, at most 2 turns
        assert step["generate_calls"] >= 1 and 0 < step["generated_tokens"] <= 4 * 16 * 2
        assert step["rollout_tokens_per_s"] == pytest.approx(step["generated_tokens"] / agent)
        assert step["rollout_tokens_per_s"] <= step["generate_tokens_per_s"]
        bare, again = step["bare"], step["agent_kwargs_replay"]
        for replayed in (bare, again):
            assert replayed["calls"] == step["generate_calls"]
            assert 0 <= replayed["same_token_count_calls"] <= replayed["calls"]
            assert 0 < replayed["tokens"] <= 4 * 16 * 2
            assert replayed["tokens_per_s"] == pytest.approx(replayed["tokens"] / replayed["seconds"])
        # the agent's own kwargs and RNG state sample the agent's tokens again
        assert again["tokens"] == step["generated_tokens"] and again["same_token_count_calls"] == again["calls"]
        assert step["bare_over_rollout"] == pytest.approx(bare["tokens_per_s"] / step["rollout_tokens_per_s"])
        assert step["bare_over_agent_kwargs"] == pytest.approx(bare["tokens_per_s"] / again["tokens_per_s"])
        assert step["bare_over_rollout"] > 0
    memory = report["memory"]
    assert 0 < memory["start_mb"] <= memory["model_loaded_mb"] <= memory["rollout_mb"] <= memory["update_mb"]
    assert memory["update_mb"] <= memory["peak_mb"]
    assert report["summary"]["bare_over_rollout"] > 0 and report["meta"]["torch_threads"] == 1
    assert "bare/rollout" in capsys.readouterr().out


def test_generated_tokens_count_up_to_each_stop() -> None:
    rows = torch.tensor([[5, 1, 0, 0], [5, 6, 7, 8], [1, 0, 0, 0]])
    assert generated_tokens(rows, [1]) == 2 + 4 + 1


def test_split_time_makes_disjoint_parts() -> None:
    measured = {"generation": 2.0, "processor": 1.0, "agent": 4.0, "env": 1.0, "encode": 0.5, "optimize": 1.5}
    assert split_time(measured, 10.0) == {"generation": 2.0, "processor": 1.0, "agent_other": 1.0, "env": 1.0,
                                          "update": 2.0, "other": 3.0}


def test_threads_must_be_positive() -> None:
    with pytest.raises(SystemExit):
        main(["--quick", "--threads", "0"])
