"""The main job end to end on a very small budget, and resume after a kill giving the same results."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_checkpoints import kill_mid_write
from tqdm import tqdm
from transformers import AutoModelForImageTextToText

from agents.chat import load_processor
from rl_runner.checkpoints import latest_complete
from rl_runner.config import load_config
from rl_runner.train import finished_episodes

SMALL = [
    "--sft-tasks", "6", "--sft-epochs", "1", "--rl-steps", "3", "--tasks-per-step", "2", "--group-size", "2",
    "--eval-tasks", "2", "--eval-every", "2", "--checkpoint-every", "1", "--max-new-tokens", "24", "--threads", "1",
    "--suite-kwargs", '{"image_size": [600, 700]}', "--model", "tiny-random",
]
# fields that depend on wall-clock time, not on the computation
TIMING = {"tokens_per_s", "env_time_share", "generation_seconds", "update_seconds", "step_seconds"}


def train(out_dir: Path, name: str, *extra: str, wait: bool = True) -> subprocess.Popen:
    command = [sys.executable, "-m", "rl_runner.train", "--out-dir", str(out_dir), "--name", name, *SMALL, *extra]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                               cwd=Path(__file__).resolve().parents[1])
    if wait:
        output, _ = process.communicate(timeout=600)
        assert process.returncode == 0, output
        process.output = output  # type: ignore[attr-defined]
    return process


def comparable(run_dir: Path) -> list[dict]:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in TIMING} for r in records]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs")
    process = train(out, "full")
    assert "run folder" in process.output  # type: ignore[attr-defined]
    return out / "full"


def test_main_job_writes_metrics_plot_and_loadable_checkpoints(uninterrupted: Path) -> None:
    records = comparable(uninterrupted)
    stages = [r["stage"] for r in records]
    assert stages.count("rl") == 3 and "sft" in stages and stages.count("eval") == 3
    assert stages.count("sft_blind") == stages.count("sft")  # the blind control trains the same steps
    sft = [r for r in records if r["stage"] == "sft"]
    assert all(key in r for r in sft for key in ("loss_template", "loss_coordinate", "loss_answer"))
    evals = [r for r in records if r["stage"] == "eval"]
    for key in ("eval_accuracy", "eval_blind_accuracy", "eval_no_tool_accuracy", "eval_valid_call_rate",
                "eval_target_hit_rate", "eval_rapr", "eval_episodes"):
        assert all(key in r for r in evals), key
    rl = [r for r in records if r["stage"] == "rl"]
    for key in ("accuracy", "rapr", "ops_per_episode", "reward", "reward_correctness", "reward_curiosity",
                "reward_penalty", "invalid_call_rate", "updated_episodes"):
        assert all(key in r for r in rl), key
    assert (uninterrupted / "learning_curve.png").stat().st_size > 10_000
    last = uninterrupted / "checkpoints" / "step_00002"
    assert AutoModelForImageTextToText.from_pretrained(last) is not None
    assert hasattr(load_processor(last), "image_processor")
    assert load_config(["--config", str(uninterrupted / "config.yaml")]).rl_steps == 3


def test_resume_after_kill_gives_the_same_results(uninterrupted: Path) -> None:
    """Killed after its first RL checkpoint and again in the middle of writing the next one, the run resumes from the
    last complete checkpoint and ends with the metrics of the uninterrupted run."""
    out = uninterrupted.parent
    process = train(out, "killed", wait=False)
    checkpoints = out / "killed" / "checkpoints"
    deadline = time.time() + 300
    while latest_complete(checkpoints) is None and process.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    last = latest_complete(checkpoints)
    assert last is not None and last.name in ("step_00000", "step_00001"), "the run finished before it was killed"
    step = int(last.name.removeprefix("step_"))
    partial = kill_mid_write(checkpoints / f"step_{step + 1:05d}")  # the real write function, killed mid-way
    assert (partial / "trainer_state.pt").read_bytes() == b"half a pickle"
    resumed = train(out, "killed", "--resume")
    assert f"removed the incomplete checkpoint {partial}" in resumed.output  # type: ignore[attr-defined]
    assert f"resuming after RL step {step} from {last}" in resumed.output  # type: ignore[attr-defined]
    assert not partial.exists()
    assert comparable(out / "killed") == comparable(uninterrupted)


def test_config_file_and_flags(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("rl_steps: 7\nalgorithm: ppo\ncuriosity_alpha: 0.2\n")
    config = load_config(["--config", str(path), "--rl-steps", "9"])
    assert (config.rl_steps, config.algorithm, config.curiosity.alpha) == (9, "ppo", 0.2)
    path.write_text("rl_stepz: 7\n")
    with pytest.raises(ValueError, match="unknown config keys"):
        load_config(["--config", str(path)])
    with pytest.raises(ValueError, match="algorithm"):
        load_config(["--algorithm", "dqn"])


def test_the_eval_bar_counts_the_episodes_that_have_ended() -> None:
    bar = tqdm(total=5, file=io.StringIO())
    advance = finished_episodes(bar)
    advance(3)  # 3 of 5 still playing after a turn
    assert bar.n == 2
    advance(3)
    assert bar.n == 2
    advance(0)
    assert bar.n == 5
