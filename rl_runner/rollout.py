"""Rollouts: G episodes per task through the real env, generated in batches across all live episodes.

The envs score correctness only (no shaping); the trainer shapes rewards per group with the group's exact RaPR.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from pixel_gym.env import PixelVQAEnv
from pixel_gym.tasks import Task


class BatchAgent(Protocol):
    def act_batch(self, observations: Sequence[dict[str, Any]]) -> Sequence[Any]: ...


@dataclass
class EpisodeRecord:
    """One finished episode: the full chat and what the reward needs."""

    task_id: str
    group: str  # rollouts of the same task in the same step share a group id (verl's uid)
    messages: list[dict[str, Any]]
    correctness: float
    num_ops: int
    num_tool_calls: int
    num_errors: int
    last_op_failed: bool
    is_video: bool
    turns: int
    answered: bool
    generated_tokens: int


@dataclass
class RolloutStats:
    env_seconds: float = 0.0
    generation_seconds: float = 0.0
    generated_tokens: int = 0
    episodes: list[EpisodeRecord] = field(default_factory=list)

    @property
    def tokens_per_second(self) -> float:
        return self.generated_tokens / self.generation_seconds if self.generation_seconds else 0.0


def run_episodes(
    agent: BatchAgent,
    envs: Sequence[PixelVQAEnv],
    tasks: Sequence[Task],
    groups: Sequence[str],
    seed: int,
    on_turn: Callable[[int], None] | None = None,
) -> RolloutStats:
    """Play `tasks[i]` in `envs[i]` until every episode ends; each turn is one batched generation call."""
    stats = RolloutStats()
    observations: dict[int, dict[str, Any]] = {}
    tokens = [0] * len(tasks)
    started = time.perf_counter()
    for i, (env, task) in enumerate(zip(envs, tasks)):
        observations[i], _ = env.reset(seed=seed + i, options={"task": task})
    stats.env_seconds += time.perf_counter() - started
    finished: dict[int, EpisodeRecord] = {}
    while observations:
        live = sorted(observations)
        started = time.perf_counter()
        turns = agent.act_batch([observations[i] for i in live])
        stats.generation_seconds += time.perf_counter() - started
        started = time.perf_counter()
        for i, turn in zip(live, turns):
            text, count = (turn.text, len(turn.response_ids)) if hasattr(turn, "text") else (str(turn), 0)
            tokens[i] += count
            obs, _, terminated, truncated, info = envs[i].step(text)
            if terminated or truncated:
                finished[i] = _record(envs[i], tasks[i], groups[i], obs, info, terminated, tokens[i])
                del observations[i]
            else:
                observations[i] = obs
        stats.env_seconds += time.perf_counter() - started
        if on_turn:
            on_turn(len(observations))
    stats.episodes = [finished[i] for i in range(len(tasks))]
    stats.generated_tokens = sum(tokens)
    return stats


def _record(
    env: PixelVQAEnv, task: Task, group: str, obs: dict[str, Any], info: dict[str, Any], answered: bool,
    tokens: int,
) -> EpisodeRecord:
    episode = env._require_episode()
    return EpisodeRecord(
        task_id=task.id,
        group=group,
        messages=obs["messages"],
        correctness=float(info["correctness"]),
        num_ops=int(info["num_ops"]),
        num_tool_calls=int(info["num_tool_calls"]),
        num_errors=int(info["num_errors"]),
        last_op_failed=episode.last_op_failed,
        is_video=task.is_video,
        turns=int(info["turn"]),
        answered=answered,
        generated_tokens=tokens,
    )
