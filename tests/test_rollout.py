"""The rollout loop survives an env that raises: that episode fails and is recorded, the others play on."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from pixel_gym.env import PixelVQAEnv
from pixel_gym.tasks import Task
from rl_runner.rollout import run_episodes
from rl_runner.train import summarize


class FaultyEnv(PixelVQAEnv):
    """The real env with an injected fault: `step` raises on the tasks in `crash_on`. It stands in for any bug an
    env may have (the crashes the fuzz found are fixed, so no real input is known to raise any more)."""

    def __init__(self, crash_on: set[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.crash_on = crash_on

    def step(self, action: Any) -> tuple[dict[str, Any], float, bool, bool, dict[str, Any]]:
        if self._require_episode().task.id in self.crash_on:
            raise OverflowError("int too large to convert to float")
        return super().step(action)


class Scripted:
    """Answers "cat" at once."""

    def act_batch(self, observations: Sequence[dict[str, Any]]) -> list[str]:
        return [r"\boxed{cat}" for _ in observations]


def test_an_env_exception_fails_one_episode_and_the_rest_play_on(tmp_path: Path) -> None:
    image = tmp_path / "cat.png"
    Image.new("RGB", (300, 200), (10, 120, 10)).save(image)
    tasks = [
        Task("ok", "What animal?", ("cat",), "exact", images=(str(image),)),
        Task("missing", "What animal?", ("cat",), "exact", images=(str(tmp_path / "gone.png"),)),
        Task("crash", "What animal?", ("cat",), "exact", images=(str(image),)),
        Task("ok2", "What animal?", ("dog",), "exact", images=(str(image),)),
    ]
    envs = [FaultyEnv(crash_on={"crash"}, tasks=tasks, max_turns=3) for _ in tasks]
    stats = run_episodes(Scripted(), envs, tasks, ["a", "b", "c", "d"], seed=0)
    ok, missing, crash, ok2 = stats.episodes
    assert [e.task_id for e in stats.episodes] == ["ok", "missing", "crash", "ok2"]
    assert (ok.correctness, ok.answered, ok.error, ok2.correctness, ok2.error) == (1.0, True, "", 0.0, "")
    assert missing.error.startswith("ImageLoadError: image file not found")
    assert (missing.messages, missing.correctness, missing.answered, missing.turns) == ([], 0.0, False, 0)
    assert crash.error == "OverflowError: int too large to convert to float"
    assert (crash.correctness, crash.answered, crash.num_tool_calls) == (0.0, False, 0)
    assert [m["role"] for m in crash.messages] == ["system", "user", "assistant"]  # the crashing turn is kept
    assert crash.messages[-1]["content"][0]["text"] == r"\boxed{cat}"
    assert summarize(stats)["failed_episodes"] == 2
    assert summarize(stats)["accuracy"] == 0.25
