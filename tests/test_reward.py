"""Answer metrics and the curiosity shaping, on hand-computed values."""

from __future__ import annotations

import pickle

import gymnasium as gym
import numpy as np
import pytest

from pixel_gym.reward import (
    NO_CURIOSITY,
    CuriosityConfig,
    RunningRaPR,
    anls,
    count_match,
    exact_match,
    parse_choice,
    rapr,
    score_answer,
    shape_group,
    shape_reward,
)
from pixel_gym.tasks import Task

IMAGE = (np.zeros((4, 4, 3), np.uint8),)


def test_anls_hand_computed() -> None:
    assert anls("47.3", ["47.3"]) == 1.0
    assert anls("47.8", ["47.3"]) == pytest.approx(0.75)  # one edit in four characters
    assert anls("4", ["47.3"]) == 0.0  # similarity 0.25 < tau 0.5
    assert anls(" Forty  Seven ", ["forty seven", "47"]) == 1.0  # case and whitespace normalized, best gold
    assert anls("", ["x"]) == 0.0


def test_choice_by_letter_or_option_text() -> None:
    choices = ("red", "green", "blue")
    for prediction in ["B", "(B)", "b", "B. green", "B) green", "Green"]:
        assert parse_choice(prediction, choices) == "B", prediction
    assert parse_choice("D", choices) is None
    assert parse_choice("purple", choices) is None


def test_count_parsing() -> None:
    assert count_match("There are 7 apples", ["7"]) == 1.0
    assert count_match("seven", ["7"]) == 1.0
    assert count_match("1,024", ["1024"]) == 1.0
    assert count_match("6", ["7"]) == 0.0
    assert count_match("many", ["7"]) == 0.0
    assert count_match("2.5", ["2"]) == 0.0  # not a whole number
    assert count_match("There are none.", ["0"]) == 1.0


def test_exact_match_normalization() -> None:
    assert exact_match("The Eiffel Tower.", ["eiffel tower"]) == 1.0
    assert exact_match("tower", ["eiffel tower"]) == 0.0
    assert exact_match("the", ["A"]) == 0.0  # golds that normalize to nothing compare case-folded
    assert exact_match("a", ["A"]) == 1.0


def test_score_answer_dispatches_on_metric() -> None:
    choice = Task("c", "q?", ("B",), "choice", images=IMAGE, choices=("cat", "dog"))
    count = Task("n", "how many?", ("3",), "count", images=IMAGE)
    doc = Task("d", "value?", ("1,250",), "anls", images=IMAGE)
    assert score_answer("dog", choice) == 1.0 and score_answer("A", choice) == 0.0
    assert score_answer("3", count) == 1.0
    assert score_answer("1,250", doc) == 1.0


def test_paper_hinge_on_hand_made_groups() -> None:
    config = CuriosityConfig()  # the paper's hinge: alpha 0.5, beta 0.05, H 0.3, N 1
    assert config.form == "paper"
    # 8 rollouts, 2 called a tool (RaPR 0.25): callers get 0.5 * (0.3 - 0.25) = 0.025; 3 calls pay 0.05 * (1 - 3)
    parts = shape_group([1, 0, 1, 1, 0, 0, 1, 0], [1, 3, 0, 0, 0, 0, 0, 0], config)
    assert [p.curiosity for p in parts] == pytest.approx([0.025, 0.025, 0, 0, 0, 0, 0, 0])
    assert [p.total for p in parts] == pytest.approx([1.025, -0.075, 1, 1, 0, 0, 1, 0])
    # 1 of 8 (RaPR 0.125): 0.5 * 0.175 = 0.0875, the hinge grows as RaPR falls
    parts = shape_group([0, 1, 0, 0, 0, 0, 0, 0], [1, 0, 0, 0, 0, 0, 0, 0], config)
    assert [p.total for p in parts] == pytest.approx([0.0875, 1, 0, 0, 0, 0, 0, 0])
    # RaPR 0.375 >= H: no bonus, the penalty stays (3 calls: -0.1, 2 calls: -0.05)
    parts = shape_group([1, 0, 1, 0, 0, 0, 0, 0], [1, 3, 2, 0, 0, 0, 0, 0], config)
    assert [p.total for p in parts] == pytest.approx([1, -0.1, 0.95, 0, 0, 0, 0, 0])
    # every rollout called (RaPR 1): no bonus at all
    assert [p.curiosity for p in shape_group([1, 0], [1, 1], config)] == [0.0, 0.0]


def test_step_form_keeps_the_indicator_bonus() -> None:
    config = CuriosityConfig(form="step")
    # RaPR 0.25 < 0.3: every caller gets the full alpha 0.5, whatever the distance to H
    parts = shape_group([1, 0, 1, 1, 0, 0, 1, 0], [1, 3, 0, 0, 0, 0, 0, 0], config)
    assert [p.total for p in parts] == pytest.approx([1.5, 0.4, 1, 1, 0, 0, 1, 0])
    parts = shape_group([1, 0, 1, 0, 0, 0, 0, 0], [1, 3, 2, 0, 0, 0, 0, 0], config)  # RaPR 0.375: none
    assert [p.total for p in parts] == pytest.approx([1, -0.1, 0.95, 0, 0, 0, 0, 0])


def test_reference_code_shaping_matches_released_formula() -> None:
    config = CuriosityConfig(form="reference_code")
    rate = 1 / 8
    image = shape_reward(1.0, 2, rate, config)
    assert image.curiosity == pytest.approx((0.3 - rate) / 2.0 / rate * 0.25)
    assert image.penalty == pytest.approx(-0.05)
    video = shape_reward(0.0, 1, rate, config, is_video=True)
    assert video.curiosity == pytest.approx((0.3 - rate) / 1.5 / rate * 0.25)
    failed_last = shape_reward(1.0, 1, rate, config, last_op_failed=True)
    assert failed_last.correctness == 0.0
    assert shape_reward(1.0, 1, rate, CuriosityConfig(), last_op_failed=True).correctness == 1.0


def test_no_curiosity_config_leaves_correctness_alone() -> None:
    assert [p.total for p in shape_group([1, 0], [4, 1], NO_CURIOSITY)] == [1, 0]


def test_running_rapr_window() -> None:
    running = RunningRaPR(window=4)
    rates = [running.update("q", used) for used in [True, False, False, False, False]]
    assert rates == [1.0, 0.5, pytest.approx(1 / 3), 0.25, 0.0]
    assert running.current("other") == 0.0
    assert rapr([]) == 0.0


def test_invalid_config() -> None:
    with pytest.raises(ValueError, match="shaping form 'other'; use one of paper, step, reference_code"):
        CuriosityConfig(form="other")  # type: ignore[arg-type]


def test_running_rapr_and_the_env_pickle() -> None:
    running = RunningRaPR(window=2)
    running.update("q", True)
    copy = pickle.loads(pickle.dumps(running))
    assert copy.update("q", False) == 0.5 and copy.update("q", False) == 0.0  # window 2 survives the round trip
    env = gym.make("PixelVQA-v0")
    env.reset(seed=0)
    restored = pickle.loads(pickle.dumps(env))
    assert restored.unwrapped.running_rapr.window == env.unwrapped.running_rapr.window
    (observation, info), (expected, expected_info) = restored.reset(seed=3), env.reset(seed=3)
    assert info["task_id"] == expected_info["task_id"]
    assert np.array_equal(observation["images"][0], expected["images"][0])
