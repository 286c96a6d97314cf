"""Held-out evaluation that shows whether a policy *looks*: accuracy against two controls, and where it zooms.

Per evaluation, on the same held-out episodes (greedy, no constrained decoding):
- `eval_accuracy`, `eval_rapr` (share of episodes with a tool call), `eval_valid_call_rate` (tool calls that
  executed), `eval_answered_rate`, ...: the policy as it plays;
- `eval_blind_accuracy`: what answering without looking earns (a uniform guess among the options: its exact
  expectation for multiple choice, the scripted guess otherwise);
- `eval_no_tool_accuracy`: the same policy with the tool disabled (every call answered with an execution error,
  so it must answer from the global view): close to the blind level when the task needs the zoom;
- `eval_target_hit_rate`: over the episodes whose target can be located from the global view
  (`Task.annotations["locatable"]`, `eval_locatable_episodes` of them), the share whose first crop contains the
  annotated target and covers at most `MAX_CROP_AREA` of the image.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from agents.scripted import guess
from pixel_gym.episode import Episode
from pixel_gym.gallery import save_gallery
from pixel_gym.recording import Played, record_episodes
from pixel_gym.render import render_episode
from pixel_gym.reward import RewardParts, score_answer
from pixel_gym.tasks import Box, Task
from rl_runner.rollout import EpisodeRecord, RolloutStats

GALLERY = "gallery.png"  # each evaluation's zoom gallery, in its episodes folder
GALLERY_PANELS, GALLERY_HEIGHT = 4, 320
MAX_CROP_AREA = 0.25  # a first crop that covers more than this share of the image is not a zoom
DISABLED_TOOL = "tool_disabled"
_TOOL_NAME = re.compile(r'("name"\s*:\s*)"[^"]*"')


def blind_accuracy(tasks: Sequence[Task], seed: int = 0) -> float:
    """Expected accuracy of answering without looking: 1/k for k options, a scripted guess otherwise."""
    rng = np.random.default_rng(seed)
    scores = [1 / len(t.choices) if t.choices else score_answer(guess(t, rng), t) for t in tasks]
    return float(np.mean(scores)) if scores else 0.0


def first_crop_hits(episode: Episode) -> bool:
    """Whether the episode's first tool call is a crop of the original that frames the annotated target."""
    if not episode.ops or not episode.task.target_boxes:
        return False
    first = episode.ops[0]
    if not first.ok or first.region is None or first.view != 0:
        return False
    width, height = episode.source_size(0)
    x1, y1, x2, y2 = first.region
    target = Box.union(episode.task.target_boxes)
    inside = x1 <= target.x1 and y1 <= target.y1 and x2 >= target.x2 and y2 >= target.y2
    return inside and (x2 - x1) * (y2 - y1) <= MAX_CROP_AREA * width * height


def disable_tool_calls(text: str) -> str:
    """The turn with every tool call renamed to a tool that does not exist, so the env answers with an error."""
    if "<tool_call>" not in text:
        return text
    head, _, calls = text.partition("<tool_call>")
    return head + "<tool_call>" + _TOOL_NAME.sub(rf'\1"{DISABLED_TOOL}"', calls)


class ToolsDisabled:
    """A batch agent whose tool calls all fail: the control that must answer from the global view."""

    def __init__(self, agent: Any) -> None:
        self.agent = agent

    def act_batch(self, observations: Sequence[dict[str, Any]]) -> list[str]:
        turns = self.agent.act_batch(observations)
        return [disable_tool_calls(turn.text if hasattr(turn, "text") else str(turn)) for turn in turns]


def looking_metrics(stats: RolloutStats, episodes: Sequence[Episode]) -> dict[str, float]:
    """Valid-call and target-hit rates of played episodes (`episodes` as the envs hold them at the end)."""
    calls = sum(e.num_tool_calls for e in stats.episodes)
    locatable = [ep for ep in episodes if ep.task.annotations.get("locatable", False)]
    return {
        "valid_call_rate": sum(e.num_ops for e in stats.episodes) / calls if calls else 0.0,
        "target_hit_rate": float(np.mean([first_crop_hits(ep) for ep in locatable])) if locatable else float("nan"),
        "locatable_episodes": len(locatable),
        "episodes": len(stats.episodes),
    }


def format_eval(record: dict[str, Any]) -> str:
    """The eval keys of a record as one JSON line (what the main job prints at the end)."""
    return json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in record.items()
                       if k.startswith("eval_") or k in ("stage", "step")})


def keep_episodes(folder: Path, stats: RolloutStats, episodes: Sequence[Episode], parts: Sequence[RewardParts],
                  suite: str) -> None:
    """Keep an evaluation's first episodes (`pixel_gym.recording`, for `benchmarks.view`) in `folder` and draw its
    zoom gallery (episodes that made a tool call first, none when no episode played) into `folder/gallery.png`."""
    played = [i for i, record in enumerate(stats.episodes) if not record.error]
    record_episodes(folder, [Played(episodes[i], suite, stats.episodes[i].correctness, reward_parts(parts[i]))
                             for i in played], fresh=True)
    shown = sorted(played, key=lambda i: stats.episodes[i].num_tool_calls == 0)[:GALLERY_PANELS]
    panels = [(render_episode(episodes[i], GALLERY_HEIGHT), caption(episodes[i], stats.episodes[i])) for i in shown]
    if panels:
        save_gallery(panels, folder / GALLERY)


def reward_parts(parts: RewardParts) -> dict[str, float]:
    return {"correctness": parts.correctness, "curiosity": parts.curiosity, "penalty": parts.penalty,
            "total": parts.total}


def caption(episode: Episode, record: EpisodeRecord) -> str:
    return (f"{episode.task.id} [{episode.task.category}]  answer {(episode.answer or '')[:40]!r}  gold "
            f"{episode.task.answers[0][:40]!r}  score {record.correctness:.2f}  ops {episode.num_ops}  "
            f"turns {episode.turns}")
