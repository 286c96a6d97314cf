"""Benchmark scores as the official evaluations compute them, on top of `pixel_gym.reward`'s metrics.

- InfographicsVQA: ANLS of the RRC/DocVQA evaluation script (`infographicsvqa_eval.py`): edit distance between
  the stripped, lowercased, whitespace-collapsed strings, divided by the longer of the two *raw* strings'
  lengths; best over the gold answers; 0 below tau = 0.5.
- MVBench: `check_ans` of MVBench's evaluation: the first token of the whole stripped prediction, split at
  single spaces only ("A\nbecause" is one token), lowercased and without dots, must be contained in the gold
  option token "(a)", or contain it; a token without any of the letters a-g scores 0 (the "model doesn't follow
  instructions" guard of the later versions of that script).
- V* Bench: option letter ("B", "(B)", "B. text") or the option's text (`reward.choice_match`).
- TallyQA: exact integer (`reward.count_match`).
- The paper's own data (`pixelreasoner`, `pixelreasoner_sft`): the released rule, its tasks' metric
  "pixel_reasoner" (`pixel_gym.scores`).
Everything else falls back to `reward.score_answer` (the task's metric). An empty prediction scores 0 everywhere.
`released_score` scores any task with the released rule, the number to set beside the paper's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from pixel_gym.reward import ANLS_TAU, levenshtein, score_answer
from pixel_gym.scores import pixel_reasoner_score
from pixel_gym.tasks import Task

OPTION_LETTERS = "abcdefg"  # the guard of MVBench's check_ans


def infovqa_anls(prediction: str, golds: Sequence[str], tau: float = ANLS_TAU) -> float:
    """ANLS of one question exactly as the InfographicsVQA / DocVQA evaluation script computes it."""
    det = _collapse(prediction)
    distances = []
    for gold in golds:
        length = max(len(gold.upper()), len(prediction.upper()))
        distances.append(0.0 if length == 0 else levenshtein(_collapse(gold), det) / length)
    score = 1.0 - min(distances)
    return score if score >= tau else 0.0


def mvbench_match(prediction: str, gold_letter: str) -> float:
    """MVBench's `check_ans` on the whole prediction, the gold answer being "(X) option"."""
    pred_option = prediction.strip().lower().split(" ")[0]
    gold_option = f"({gold_letter.lower()})"
    if not any(letter in pred_option for letter in OPTION_LETTERS):
        return 0.0
    return float(pred_option.replace(".", "") in gold_option or gold_option in pred_option)


SCORERS: dict[str, Callable[[str, Task], float]] = {
    "infovqa": lambda prediction, task: infovqa_anls(prediction, task.answers),
    "mvbench": lambda prediction, task: mvbench_match(prediction, task.answers[0]),
}


def benchmark_score(prediction: str, task: Task) -> float:
    """A final answer's score under the official metric of the task's benchmark (`task.source`)."""
    if not prediction.strip():
        return 0.0
    return SCORERS.get(task.source, score_answer)(prediction, task)


def released_score(prediction: str, task: Task) -> float:
    """A final answer's score under the released evaluation's one rule for every benchmark (`pixel_reasoner`)."""
    return pixel_reasoner_score(prediction, task.answers)


def _collapse(text: str) -> str:
    return " ".join(text.strip().lower().split())
