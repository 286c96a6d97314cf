"""verl reward function (`reward.custom_reward_function`): correctness of the final answer, per trajectory.

`pixel_gym_agent` rows: the answer is the one the env read (`pixel_answer`, reported by `PixelGymAgentLoop` and
merged into `extra_info` by verl's reward manager). verl's stock `tool_agent` loop: the env's own rule
(`pixel_gym.actions.parse_turn`) on the final turn, the response text after the env's last tool result
(`pixel_last_reply`, reported by the tools); a final turn that ends in a tool call has no answer.
Scoring is `pixel_gym.reward.score_answer` under the task's metric. The curiosity bonus and the op penalty depend
on the question's whole group and are added by the `grpo_curiosity` advantage estimator.
"""

from __future__ import annotations

from typing import Any

from pixel_gym.actions import Answer, parse_turn
from pixel_gym.reward import score_answer
from rl_runner.verl_backend.fields import ANSWER, ANSWERED, LAST_REPLY, NUM_ERRORS, NUM_OPS, NUM_TOOL_CALLS
from rl_runner.verl_backend.specs import answer_task


def compute_score(data_source: str, solution_str: str, ground_truth: str, extra_info: dict[str, Any] | None = None,
                  **kwargs: Any) -> dict[str, Any]:
    """{"score": correctness in [0, 1], plus the episode's answer and op counts for verl's reward logs}."""
    info = extra_info or {}
    if ANSWERED in info:
        answer = info[ANSWER] if info[ANSWERED] else None
    else:
        answer = final_answer(solution_str, info.get(LAST_REPLY))
    correctness = score_answer(answer, answer_task(ground_truth)) if answer else 0.0
    return {
        "score": correctness,
        "correctness": correctness,
        "answered": answer is not None,
        "num_ops": int(info.get(NUM_OPS, 0)),
        "num_tool_calls": int(info.get(NUM_TOOL_CALLS, 0)),
        "num_errors": int(info.get(NUM_ERRORS, 0)),
    }


def final_answer(response: str, last_reply: str | None) -> str | None:
    """The answer of a response the env did not read: its final turn (after `last_reply`, the env's last tool
    result, when a tool was called) read by the env's rule; None when it holds none or is itself a tool call."""
    final = response.rsplit(last_reply, 1)[-1] if last_reply else response
    action = parse_turn(final)
    return action.text if isinstance(action, Answer) and action.text else None
