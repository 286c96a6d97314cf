"""verl reward function (`reward.custom_reward_function`): correctness of the final answer, per trajectory.

The answer is the one the env read (`pixel_answer`, reported by `PixelGymAgentLoop` and merged into `extra_info`
by verl's reward manager); without it (verl's stock `tool_agent` loop) the last `\\boxed{}` of the response.
Scoring is `pixel_gym.reward.score_answer` under the task's metric. The curiosity bonus and the op penalty depend
on the question's whole group and are added by the `grpo_curiosity` advantage estimator.
"""

from __future__ import annotations

from typing import Any

from pixel_gym.actions import last_boxed
from pixel_gym.reward import score_answer
from rl_runner.verl_backend.fields import ANSWER, ANSWERED, NUM_ERRORS, NUM_OPS, NUM_TOOL_CALLS
from rl_runner.verl_backend.specs import answer_task


def compute_score(data_source: str, solution_str: str, ground_truth: str, extra_info: dict[str, Any] | None = None,
                  **kwargs: Any) -> dict[str, Any]:
    """{"score": correctness in [0, 1], plus the episode's answer and op counts for verl's reward logs}."""
    info = extra_info or {}
    if ANSWERED in info:
        answer = info[ANSWER] if info[ANSWERED] else None
    else:
        boxed = last_boxed(solution_str)
        answer = boxed.strip() if boxed is not None else None
    correctness = score_answer(answer, answer_task(ground_truth)) if answer else 0.0
    return {
        "score": correctness,
        "correctness": correctness,
        "answered": answer is not None,
        "num_ops": int(info.get(NUM_OPS, 0)),
        "num_tool_calls": int(info.get(NUM_TOOL_CALLS, 0)),
        "num_errors": int(info.get(NUM_ERRORS, 0)),
    }
