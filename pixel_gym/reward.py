"""Rewards: answer metrics and the curiosity-driven shaping of Pixel Reasoner.

Answer metrics live in `METRIC_SCORERS` (a task's `metric` names its entry): "choice", "count", "anls", "exact"
and "pixel_reasoner", the released code's correctness rule (`pixel_gym.scores`).

Shaped reward (paper, Sec. 4; the same lab's verl port, TIGER-AI-Lab/verl-tool, implements the same hinge):
    r' = r + alpha * max(H - RaPR(q), 0) * 1[the rollout called a tool] + beta * min(N - n_calls, 0)
with alpha 0.5, beta 0.05, H 0.3, N 1 (`CuriosityConfig` defaults, `form="paper"`). RaPR(q) is the share of the
question's group of rollouts with at least one tool call. `form="step"` keeps an earlier reading of the bonus as a
step, alpha * 1[RaPR(q) < H] for rollouts that called a tool.

The released training code (TIGER-AI-Lab/Pixel-Reasoner, curiosity_driven_rl/openrlhf/trainer/ppo_utils/
experience_maker.py, `_generate_vllm`) shapes differently, and `form="reference_code"` reproduces it: for a
rollout with at least one call it adds max(0.3 - RaPR, 0) / 2.0 / RaPR * 0.25 (video: / 1.5) and
-0.05 * (n_calls - 1), and it zeroes a correct answer when the last tool call failed.
"""

from __future__ import annotations

import re
import string
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from pixel_gym.scores import pixel_reasoner_score
from pixel_gym.tasks import Task, choice_letters

ANLS_TAU = 0.5

# ---------------------------------------------------------------------------------------------- metrics


def normalize_text(text: str) -> str:
    """Lowercase, drop punctuation and articles, collapse whitespace (SQuAD-style normalization)."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in string.punctuation)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def exact_match(prediction: str, golds: Sequence[str]) -> float:
    """Normalized exact match; a gold that normalizes to nothing (e.g. "A") is compared case-folded instead."""
    pred = normalize_text(prediction)
    return float(any(
        pred == normalize_text(g) if normalize_text(g) else prediction.strip().lower() == g.strip().lower()
        for g in golds
    ))


def levenshtein(a: str, b: str) -> int:
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def anls(prediction: str, golds: Sequence[str], tau: float = ANLS_TAU) -> float:
    """Average Normalized Levenshtein Similarity for one question: best over the gold answers, 0 under tau."""
    pred = " ".join(prediction.strip().lower().split())
    best = 0.0
    for gold in golds:
        ref = " ".join(str(gold).strip().lower().split())
        length = max(len(pred), len(ref))
        similarity = 1.0 if length == 0 else 1.0 - levenshtein(pred, ref) / length
        best = max(best, similarity if similarity >= tau else 0.0)
    return best


_NUMBERS = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen twenty"
)
NUMBER_WORDS = {word: value for value, word in enumerate(_NUMBERS.split())} | {"no": 0, "none": 0}


def parse_count(text: str) -> int | None:
    """The first number in `text` if it is a whole number (digits, or an English word up to twenty, "no"/"none")."""
    match = re.search(r"-?\d+(?:\.\d+)?", text.replace(",", ""))
    if match:
        value = float(match.group())
        return int(value) if value.is_integer() else None
    for word in re.findall(r"[a-z]+", text.lower()):
        if word in NUMBER_WORDS:
            return NUMBER_WORDS[word]
    return None


def count_match(prediction: str, golds: Sequence[str]) -> float:
    value = parse_count(prediction)
    return float(value is not None and any(value == parse_count(g) for g in golds))


def parse_choice(prediction: str, choices: Sequence[str]) -> str | None:
    """The option letter a prediction names: "B", "(B)", "B. text", "B) text", or the option's own text."""
    letters = choice_letters(len(choices))
    text = prediction.strip()
    match = re.fullmatch(r"\(?([A-Za-z])\)?(?:[.:)]\s*.*)?", text, flags=re.DOTALL)
    if match and match.group(1).upper() in letters:
        return match.group(1).upper()
    normalized = normalize_text(text)
    for letter, option in zip(letters, choices):
        if normalized and normalized == normalize_text(option):
            return letter
    return None


def choice_match(prediction: str, golds: Sequence[str], choices: Sequence[str]) -> float:
    letter = parse_choice(prediction, choices)
    gold_letters = {parse_choice(g, choices) for g in golds}
    return float(letter is not None and letter in gold_letters)


# A metric: (final answer, task) -> correctness in [0, 1]. A new metric is one entry here (and its name in
# `pixel_gym.tasks.METRICS`, which validates tasks without importing this module).
METRIC_SCORERS: dict[str, Callable[[str, Task], float]] = {
    "choice": lambda prediction, task: choice_match(prediction, task.answers, task.choices),
    "count": lambda prediction, task: count_match(prediction, task.answers),
    "anls": lambda prediction, task: anls(prediction, task.answers),
    "exact": lambda prediction, task: exact_match(prediction, task.answers),
    "pixel_reasoner": lambda prediction, task: pixel_reasoner_score(prediction, task.answers),
}


def score_answer(prediction: str, task: Task) -> float:
    """Correctness in [0, 1] of a final answer under the task's metric."""
    return METRIC_SCORERS[task.metric](prediction, task)


# --------------------------------------------------------------------------------------------- curiosity

ShapingForm = Literal["paper", "step", "reference_code"]
SHAPING_FORMS: tuple[str, ...] = ("paper", "step", "reference_code")
REFERENCE_CODE_SCALE = 0.25  # the released code's bonus scale (replaces alpha in that form)


@dataclass(frozen=True)
class CuriosityConfig:
    """Coefficients of the curiosity bonus and the operation-count penalty (paper defaults)."""

    alpha: float = 0.5  # scale of the bonus for calling a tool while RaPR < H
    beta: float = 0.05  # penalty per op beyond N
    threshold: float = 0.3  # H, the target rate of pixel-space reasoning
    free_ops: int = 1  # N, ops allowed before the penalty
    form: ShapingForm = "paper"

    def __post_init__(self) -> None:
        if self.form not in SHAPING_FORMS:
            raise ValueError(f"unknown shaping form {self.form!r}; use one of {', '.join(SHAPING_FORMS)}")


NO_CURIOSITY = CuriosityConfig(alpha=0.0, beta=0.0)


@dataclass(frozen=True)
class RewardParts:
    correctness: float
    curiosity: float
    penalty: float

    @property
    def total(self) -> float:
        return self.correctness + self.curiosity + self.penalty


def rapr(used_op: Sequence[bool]) -> float:
    """Rate of pixel-space reasoning: share of a question's rollouts that used at least one op."""
    return sum(bool(u) for u in used_op) / len(used_op) if used_op else 0.0


def curiosity_bonus(n_ops: int, rate: float, config: CuriosityConfig, is_video: bool = False) -> float:
    """The bonus of a rollout with `n_ops` tool calls in a group of RaPR `rate`, under `config.form`."""
    if n_ops <= 0:
        return 0.0
    if config.form == "paper":
        return config.alpha * max(config.threshold - rate, 0.0)
    if config.form == "step":
        return config.alpha if rate < config.threshold else 0.0
    if rate <= 0.0:
        return 0.0
    divisor = 1.5 if is_video else 2.0
    return max(config.threshold - rate, 0.0) / divisor / rate * REFERENCE_CODE_SCALE


def op_penalty(n_ops: int, config: CuriosityConfig) -> float:
    return config.beta * min(config.free_ops - n_ops, 0)


def shape_reward(
    correctness: float,
    n_ops: int,
    rate: float,
    config: CuriosityConfig,
    is_video: bool = False,
    last_op_failed: bool = False,
) -> RewardParts:
    """Correctness plus the curiosity bonus and op penalty for one rollout, given its question's RaPR."""
    if config.form == "reference_code" and last_op_failed and correctness > 0.5:
        correctness = 0.0
    return RewardParts(correctness, curiosity_bonus(n_ops, rate, config, is_video), op_penalty(n_ops, config))


def shape_group(
    correctness: Sequence[float],
    n_ops: Sequence[int],
    config: CuriosityConfig,
    is_video: bool = False,
    last_op_failed: Sequence[bool] | None = None,
) -> list[RewardParts]:
    """Shape the rewards of one question's group of rollouts with the group's exact RaPR."""
    if len(correctness) != len(n_ops):
        raise ValueError("correctness and n_ops must have one entry per rollout")
    failed = last_op_failed if last_op_failed is not None else [False] * len(n_ops)
    rate = rapr([n > 0 for n in n_ops])
    return [shape_reward(c, n, rate, config, is_video, f) for c, n, f in zip(correctness, n_ops, failed)]


class RunningRaPR:
    """Per-question RaPR over the last `window` episodes, for shaping inside a single env.

    The current episode is counted before its bonus is computed, as a group member counts itself.
    """

    def __init__(self, window: int = 8) -> None:
        if window < 1:
            raise ValueError("window must be >= 1")
        self.window = window
        self._history: dict[str, deque[bool]] = {}  # a plain dict (no lambda factory), so that envs pickle

    def update(self, question_id: str, used_op: bool) -> float:
        history = self._history.setdefault(question_id, deque(maxlen=self.window))
        history.append(bool(used_op))
        return rapr(list(history))

    def current(self, question_id: str) -> float:
        return rapr(list(self._history.get(question_id, ())))
