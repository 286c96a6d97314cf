"""The released correctness rule (`pixel_reasoner`) on hand-made answers, and the metric registry."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from pixel_gym.datasets.metrics import benchmark_score, released_score
from pixel_gym.env import PixelVQAEnv
from pixel_gym.reward import METRIC_SCORERS, NO_CURIOSITY, score_answer
from pixel_gym.scores import MAX_VERIFY_CHARS, pixel_reasoner_score, released_golds
from pixel_gym.tasks import METRICS, Task

IMAGE = (np.zeros((64, 64, 3), np.uint8),)


@pytest.mark.parametrize(("response", "golds", "expected"), [
    ("So the answer is \\boxed{1/2}.", ["0.5"], 1.0),  # math_verify: 1/2 == 0.5
    ("\\boxed{\\frac{1}{2}}", ["0.5"], 1.0),
    ("\\boxed{\\dfrac{1}{2}}", ["\\frac{1}{2}"], 1.0),  # dfrac -> frac
    ("\\boxed{0.25}", ["0.5"], 0.0),
    ("\\boxed{1,000}", ["1000"], 1.0),
    ("\\boxed{45}", ["45%"], 1.0),  # a gold "45%" also accepts "45"
    ("\\boxed{45%}", ["45%"], 1.0),
    ("\\boxed{46}", ["45%"], 0.0),
    ("\\boxed{Red}", ["RED"], 1.0),  # both sides lower-cased
    ("\\boxed{blue}", ["red"], 0.0),
    ("\\boxed{B}", ["b"], 1.0),
    ("\\boxed{3} at first, but looking again \\boxed{4}", ["4"], 1.0),  # the last box wins
    ("\\boxed{3} at first, but looking again \\boxed{4}", ["3"], 0.0),
    ("\\boxed{the siege of krishnapur and troubles}", ["troubles, the siege of krishnapur"], 1.0),  # every part
    ("\\boxed{troubles}", ["troubles, the siege of krishnapur"], 0.0),  # one part of two
    ("\\boxed{12 cm}", ["12"], 1.0),  # the released normalization drops "cm"
    ("\\boxed{no}", ["yes", "no"], 1.0),  # any gold
    ("red", ["red"], 1.0),  # an already extracted answer (no box) is the answer itself
    ("\\boxed{}", ["red"], 0.0),
    ("", ["red"], 0.0),
])
def test_released_rule_on_hand_made_answers(response: str, golds: list[str], expected: float) -> None:
    assert pixel_reasoner_score(response, golds) == expected


def test_percent_gold_is_tried_first_and_only_once() -> None:
    assert released_golds(["45%", "50%"]) == ["45", "45%", "50%"]
    assert released_golds(["45", "45%"]) == ["45", "45%"]
    assert released_golds(["Red"]) == ["red"]


def test_bad_answers_score_zero_without_raising() -> None:
    assert pixel_reasoner_score("\\boxed{" + "(" * 300 + "}", ["1"]) == 0.0
    assert pixel_reasoner_score("\\boxed{1" + "0" * 400 + "}", ["1"]) == 0.0
    assert pixel_reasoner_score("\\boxed{" + "x" * (MAX_VERIFY_CHARS + 1) + "}", ["x"]) == 0.0  # string match only


def test_works_outside_the_main_thread() -> None:
    results: list[float] = []
    worker = threading.Thread(target=lambda: results.append(pixel_reasoner_score("\\boxed{1/2}", ["0.5"])))
    worker.start()
    worker.join()
    assert results == [1.0]  # math_verify's SIGALRM timeout would raise here


def test_metric_registry_and_task_scores() -> None:
    assert set(METRIC_SCORERS) == set(METRICS)  # every valid task metric has its scorer
    paper = Task("p", "What share?", ("45%",), "pixel_reasoner", images=IMAGE, source="pixelreasoner")
    assert score_answer("45", paper) == 1.0 and benchmark_score("45", paper) == 1.0
    exact = Task("e", "What share?", ("0.5",), "exact", images=IMAGE)
    assert score_answer("1/2", exact) == 0.0 and released_score("1/2", exact) == 1.0
    choice = Task("c", "Which?", ("B",), "choice", images=IMAGE, choices=("cat", "dog"))
    assert released_score("(B)", choice) == 1.0 and released_score("dog", choice) == 0.0


def test_env_rewards_pixel_reasoner_tasks_with_the_released_rule() -> None:
    task = Task("p", "What is half of one?", ("0.5",), "pixel_reasoner", images=IMAGE)
    env = PixelVQAEnv(tasks=[task], curiosity=NO_CURIOSITY)
    env.reset(seed=0)
    _, reward, terminated, _, info = env.step("Half of one is \\boxed{\\frac{1}{2}}")
    assert terminated and reward == 1.0 and info["correctness"] == 1.0
