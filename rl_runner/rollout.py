"""Rollouts: G episodes per task through the real env, generated in batches across all live episodes.

The envs score correctness only (no shaping); the trainer shapes rewards per group with the group's exact RaPR.
An exception from `env.reset` or `env.step` fails that episode only (recorded with its error, scored 0); the others
play on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from pixel_gym.actions import ModelTurn
from pixel_gym.env import PixelVQAEnv
from pixel_gym.episode import Episode, text_message
from pixel_gym.tasks import Task

logger = logging.getLogger(__name__)


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
    error: str = ""  # why the env failed this episode ("" for an episode that ran to its end)


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
    finished: dict[int, EpisodeRecord] = {}
    started = time.perf_counter()
    for i, (env, task) in enumerate(zip(envs, tasks)):
        try:
            observations[i], _ = env.reset(seed=seed + i, options={"task": task})
        except Exception as error:  # one unusable task must not end the run
            finished[i] = _failed(task, groups[i], [], None, 0, error)
    stats.env_seconds += time.perf_counter() - started
    while observations:
        live = sorted(observations)
        started = time.perf_counter()
        turns = agent.act_batch([observations[i] for i in live])
        stats.generation_seconds += time.perf_counter() - started
        started = time.perf_counter()
        for i, turn in zip(live, turns):
            text, count = (turn.text, len(turn.response_ids)) if hasattr(turn, "text") else (str(turn), 0)
            tokens[i] += count
            # with token ids the env can apply the released prompt + output token limit
            action = ModelTurn(text, len(turn.prompt_ids) + count) if hasattr(turn, "prompt_ids") else text
            try:
                obs, _, terminated, truncated, info = envs[i].step(action)
            except Exception as error:  # one crashing turn fails its episode, not the run
                messages = [*observations.pop(i)["messages"], text_message("assistant", text)]
                finished[i] = _failed(tasks[i], groups[i], messages, envs[i].episode, tokens[i], error)
                continue
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


def _failed(
    task: Task, group: str, messages: list[dict[str, Any]], episode: Episode | None, tokens: int, error: Exception
) -> EpisodeRecord:
    """The record of an episode the env raised in: scored 0, with the error and the counters reached so far."""
    logger.warning("episode of task %s failed: %s: %s", task.id, type(error).__name__, error, exc_info=error)
    return EpisodeRecord(
        task_id=task.id,
        group=group,
        messages=messages,
        correctness=0.0,
        num_ops=episode.num_ops if episode else 0,
        num_tool_calls=episode.num_tool_calls if episode else 0,
        num_errors=episode.num_errors if episode else 0,
        last_op_failed=episode.last_op_failed if episode else False,
        is_video=task.is_video,
        turns=episode.turns if episode else 0,
        answered=False,
        generated_tokens=tokens,
        error=f"{type(error).__name__}: {error}",
    )
