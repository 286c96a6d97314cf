"""The rollout loop survives an env that raises: that episode fails and is recorded, the others play on."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from pixel_gym.actions import format_tool_call
from pixel_gym.env import PixelVQAEnv
from pixel_gym.tasks import Task
from rl_runner.rollout import run_episodes
from rl_runner.train import summarize


class FlakyFrame:
    """A video frame source whose decoder works once, then raises an error type the env does not expect."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> Image.Image:
        self.calls += 1
        if self.calls > 1:
            raise RuntimeError("frame decoder crashed")
        return Image.new("RGB", (224, 224), (200, 30, 30))


class Scripted:
    """Zooms into the video's first frame on turn 1 (image tasks answer at once), then answers."""

    def act_batch(self, observations: Sequence[dict[str, Any]]) -> list[str]:
        return [
            format_tool_call("select_frames", {"target_frames": [1]}) if "frame" in obs["question"] else r"\boxed{cat}"
            for obs in observations
        ]


def test_an_env_exception_fails_one_episode_and_the_rest_play_on(tmp_path: Path) -> None:
    image = tmp_path / "cat.png"
    Image.new("RGB", (300, 200), (10, 120, 10)).save(image)
    frames = (FlakyFrame(), FlakyFrame())
    tasks = [
        Task("ok", "What animal?", ("cat",), "exact", images=(str(image),)),
        Task("missing", "What animal?", ("cat",), "exact", images=(str(tmp_path / "gone.png"),)),
        Task("video", "Which frame is red?", ("1",), "exact", video=frames),
        Task("ok2", "What animal?", ("dog",), "exact", images=(str(image),)),
    ]
    envs = [PixelVQAEnv(tasks=tasks, max_turns=3) for _ in tasks]
    stats = run_episodes(Scripted(), envs, tasks, ["a", "b", "c", "d"], seed=0)
    ok, missing, video, ok2 = stats.episodes
    assert [e.task_id for e in stats.episodes] == ["ok", "missing", "video", "ok2"]
    assert (ok.correctness, ok.answered, ok.error, ok2.correctness, ok2.error) == (1.0, True, "", 0.0, "")
    assert missing.error.startswith("ImageLoadError: image file not found")
    assert (missing.messages, missing.correctness, missing.answered, missing.turns) == ([], 0.0, False, 0)
    assert video.error == "RuntimeError: frame decoder crashed"
    assert (video.correctness, video.answered, video.turns) == (0.0, False, 1)
    assert video.messages[-1]["role"] == "assistant"  # the turn that crashed the env is kept for the update
    assert "select_frames" in video.messages[-1]["content"][0]["text"]
    assert summarize(stats)["failed_episodes"] == 2
    assert summarize(stats)["accuracy"] == 0.25
