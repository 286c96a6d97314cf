"""The per-episode fields a rollout reports for the reward function and the advantage estimator.

The agent loop returns them in `AgentLoopOutput.extra_fields`; verl hands them on as `tool_extra_fields` (merged
into the reward function's `extra_info`) and as `non_tensor_batch` columns (or the `extra_fields` record the v1
trainer keeps per sample).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from pixel_gym.episode import Episode

TASK_ID = "pixel_task_id"
NUM_OPS = "pixel_num_ops"
NUM_TOOL_CALLS = "pixel_num_tool_calls"
NUM_ERRORS = "pixel_num_errors"
LAST_OP_FAILED = "pixel_last_op_failed"
IS_VIDEO = "pixel_is_video"
TURNS = "pixel_turns"
ANSWER = "pixel_answer"
ANSWERED = "pixel_answered"
LAST_REPLY = "pixel_last_reply"  # text of the env's last tool result (verl's `tool_agent` route)
ADVANTAGE_FIELDS = (NUM_TOOL_CALLS, IS_VIDEO, LAST_OP_FAILED)
CALL_FIELDS = (TASK_ID, NUM_OPS, NUM_TOOL_CALLS, NUM_ERRORS, LAST_OP_FAILED, IS_VIDEO)


def episode_fields(episode: Episode) -> dict[str, Any]:
    """What happened in an episode: ops (successful pixel operations), calls, errors, the final answer."""
    return {
        TASK_ID: episode.task.id,
        NUM_OPS: episode.num_ops,
        NUM_TOOL_CALLS: episode.num_tool_calls,
        NUM_ERRORS: episode.num_errors,
        LAST_OP_FAILED: episode.last_op_failed,
        IS_VIDEO: episode.task.is_video,
        TURNS: episode.turns,
        ANSWER: episode.answer or "",
        ANSWERED: bool(episode.answer),
    }


def call_fields(episode: Episode, reply_text: str) -> dict[str, Any]:
    """What a tool call can report mid-episode (verl's `tool_agent` route): the call counts and the text of the
    env's reply, never the answer -- the final turn comes after the last call, and `reward.compute_score` reads it.
    """
    fields = episode_fields(episode)
    return {**{key: fields[key] for key in CALL_FIELDS}, LAST_REPLY: reply_text}


def columns(records: Sequence[Mapping[str, Any] | None]) -> dict[str, np.ndarray]:
    """Per-sample records (one `extra_fields` dict per row) as the `non_tensor_batch`-style columns the advantage
    estimator reads (None where a row did not report a field)."""
    return {key: np.array([(record or {}).get(key) for record in records], dtype=object)
            for key in ADVANTAGE_FIELDS}
