"""The released Pixel Reasoner protocol for image questions, point by point, with numbers worked out by hand.

smart_resize (factor 28): sides rounded to multiples of 28; over the max the pixel count is scaled down by
beta = sqrt(h * w / max) and the sides floored, under the min scaled up by beta = sqrt(min / (h * w)) and the
sides ceiled. Budgets below are in 28x28 tokens (1 token = 784 px).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pixel_gym import prompts
from pixel_gym.actions import FRAMES, TEXT, ZOOM, ModelTurn, format_tool_call
from pixel_gym.env import PixelVQAEnv
from pixel_gym.ops import fit_to_budget
from pixel_gym.tasks import Task

VSTAR = np.random.default_rng(0).integers(0, 256, (1582, 2246, 3), dtype=np.uint8)  # a V*-size image


def crop(bbox: list[float], target: int = 1) -> str:
    return "Let me zoom in.\n" + format_tool_call("crop_image_normalized", {"bbox_2d": bbox, "target_image": target})


def task(images: tuple = (VSTAR,), question: str = "What is written on the sign?") -> Task:
    return Task("t/0", question, ("B",), "choice", images=images, choices=("red", "blue"))


def result_text(obs: dict) -> str:
    return obs["messages"][-1]["content"][0]["text"]


# --- prompt --------------------------------------------------------------------------------------------------


def test_prompt_system_tools_images_first_then_question_and_guidelines() -> None:
    small = np.zeros((100, 120, 3), np.uint8)
    env = PixelVQAEnv(tasks=[task(images=(small, small))])
    obs, _ = env.reset(seed=0)
    system, user = obs["messages"]
    text = system["content"][0]["text"]
    assert text.startswith("You are a helpful assistant.\n\n# Tools\n")
    assert '"name": "crop_image_normalized"' in text and '"name": "select_frames"' in text  # both, for an image
    assert [part["type"] for part in user["content"]] == ["image", "image", "text"]  # no per-image headers
    assert user["content"][-1]["text"] == (
        "What is written on the sign?\nOptions:\n(A) red\n(B) blue\n\n\n\nGuidelines: Understand the given visual "
        "information and the user query. Determine if it is beneficial to employ the given visual operations "
        "(tools). For a video, we can look closer by `select_frames`. For an image, we can look closer by "
        "`crop_image`. Reason with the visual information step by step, and put your final answer within \\boxed{}."
    )


def test_tool_template_is_qwens_hermes_format() -> None:
    text = prompts.system_prompt(prompts.tools_for(False))
    signatures = text.split("<tools>\n")[1].split("\n</tools>")[0].split("\n")
    assert [json.loads(line)["function"]["name"] for line in signatures] == ["crop_image_normalized", "select_frames"]
    assert text.endswith('<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>')


# --- crops and resizing under paper_eval -------------------------------------------------------------------------


def test_paper_eval_crops_of_the_view_as_kept_and_the_serving_re_resize() -> None:
    env = PixelVQAEnv(tasks=[task()], budgets="paper_eval")
    obs, _ = env.reset(seed=0)
    # 2246x1582: 1582 / 28 = 56.5 -> 56 (round half to even) -> 1568; 2246 / 28 = 80.2 -> 2240; 3,512,320 px lies
    # in 256..8000 tokens, and in the serving 512..5120 (401,408..4,014,080 px): unchanged
    kept = env.episode.views[0].image
    assert kept.size == (2240, 1568) and obs["images"][0].shape == (1568, 2240, 3)

    # [0.62, 0.35, 0.7, 0.43] + 0.1 padding = [0.52, 0.25, 0.8, 0.53] of 2240x1568 = (1164.8, 392, 1792, 831.04),
    # rounded (1165, 392, 1792, 831): 627x439 -> 22 x 15.68 -> 616x448 (275,968 px, inside 256..5120 tokens)
    obs, *_, info = env.step(crop([0.62, 0.35, 0.7, 0.43]))
    assert result_text(obs) == "\nHere is the cropped image (Image Size: 616x448):"
    expected = fit_to_budget(kept.crop((1165, 392, 1792, 831)), env.budgets.crop)
    assert np.array_equal(np.asarray(env.episode.views[1].image), np.asarray(expected))
    # the serving engine: 275,968 < 401,408 px, beta = sqrt(401408 / 275968) = 1.2060; 448 * 1.2060 / 28 = 19.3 -> 20
    # -> 560, 616 * 1.2060 / 28 = 26.5 -> 27 -> 756; the text keeps 616x448
    assert obs["images"][1].shape == (560, 756, 3)

    # crop of that crop, from the 616x448 view as kept: (320.32, 112, 492.8, 237.44) -> (320, 112, 493, 237),
    # 173x125 = 21,625 px < 200,704: beta = 3.0465, 125 * 3.0465 / 28 = 13.6 -> 14 -> 392, 173 * ... = 18.8 -> 532
    obs, *_ = env.step(crop([0.62, 0.35, 0.7, 0.43], target=2))
    assert result_text(obs) == "\nHere is the cropped image (Image Size: 532x392):"
    expected = fit_to_budget(env.episode.views[1].image.crop((320, 112, 493, 237)), env.budgets.crop)
    assert np.array_equal(np.asarray(env.episode.views[2].image), np.asarray(expected))

    # [0.5, 0.5, 1.0, 1.0]: not all < 1, so pixels of image 1: (0.5/2240 - 0.1 -> 0, 0, 1/2240 + 0.1 = 0.10045
    # -> 225.0, 1/1568 + 0.1 = 0.10064 -> 157.8 -> 158): 225x158, beta = 2.376: 13.4 -> 392, 19.09 -> 560
    obs, *_ = env.step(crop([0.5, 0.5, 1.0, 1.0]))
    assert result_text(obs) == "\nHere is the cropped image (Image Size: 560x392):"
    expected = fit_to_budget(kept.crop((0, 0, 225, 158)), env.budgets.crop)
    assert np.array_equal(np.asarray(env.episode.views[3].image), np.asarray(expected))

    # a point box is padded, not refused: (896, 627.2, 1344, 940.8) -> 448x314 -> beta = 1.1945 -> 560x392
    obs, *_, info = env.step(crop([0.5, 0.5, 0.5, 0.5]))
    assert result_text(obs) == "\nHere is the cropped image (Image Size: 560x392):"
    expected = fit_to_budget(kept.crop((896, 627, 1344, 941)), env.budgets.crop)
    assert np.array_equal(np.asarray(env.episode.views[4].image), np.asarray(expected))
    assert info["num_tool_calls"] == 4 and info["num_ops"] == 4

    # the 5th tool call ends the episode, unanswered
    obs, reward, terminated, truncated, info = env.step(crop([0.1, 0.1, 0.2, 0.2]))
    assert truncated and not terminated and info["end"] == "tool_calls" and info["answer"] == ""
    assert info["num_tool_calls"] == 5 and info["num_ops"] == 4 and len(obs["images"]) == 5
    assert info["correctness"] == 0.0


def test_inverted_box_is_padded_then_cropped() -> None:
    env = PixelVQAEnv(tasks=[task()], budgets="paper_eval")
    env.reset(seed=0)
    # [0.5, 0.5, 0.45, 0.6] -> [0.4, 0.4, 0.55, 0.7] -> (896, 627.2, 1232, 1097.6) -> (896, 627, 1232, 1098):
    # 336x471 = 158,256 px < 200,704: beta = 1.1262; 471 * 1.1262 / 28 = 18.9 -> 532, 336 * 1.1262 / 28 = 13.5 -> 392
    obs, *_, info = env.step(crop([0.5, 0.5, 0.45, 0.6]))
    assert result_text(obs) == "\nHere is the cropped image (Image Size: 392x532):" and info["last_error"] == ""
    # inverted beyond the padding: [0.9 - 0.1, 0.1 + 0.1] is still inverted, an execution error
    obs, *_, info = env.step(crop([0.9, 0.5, 0.1, 0.6]))
    assert "inverted even after padding" in info["last_error"]
    assert result_text(obs) == f"\nExecution error:\n{info['last_error']}\n"


def test_paper_train_budgets_are_the_default() -> None:
    env = PixelVQAEnv(tasks=[task()])
    env.reset(seed=0)
    # 3,553,172 px > 2000 tokens (1,568,000): beta = 1.5053; 1582 / 1.5053 / 28 = 37.5 -> 1036, 2246 / ... = 53.3
    # -> 1484
    assert env.episode.views[0].image.size == (1484, 1036)
    # [0.52, 0.25, 0.8, 0.53] of 1484x1036 = (771.68, 259, 1187.2, 549.08) -> 415x290 -> 14.8 x 10.4 -> 420x280
    obs, *_ = env.step(crop([0.62, 0.35, 0.7, 0.43]))
    assert result_text(obs) == "\nHere is the cropped image (Image Size: 420x280):"
    assert obs["images"][-1].shape == (280, 420, 3)  # no serving re-resize in training


def test_too_small_crop_is_an_execution_error() -> None:
    env = PixelVQAEnv(tasks=[task(images=(np.zeros((100, 100, 3), np.uint8),))], padding=0.0)
    env.reset(seed=0)
    _, *_, info = env.step(crop([10, 10, 38, 60]))  # 28 px wide: must exceed 28
    assert info["last_error"].startswith("Cropped image is too small: 28x50")


# --- turns and ends ------------------------------------------------------------------------------------------


def test_a_tool_call_followed_by_text_is_a_final_answer() -> None:
    env = PixelVQAEnv(tasks=[task()])
    env.reset(seed=0)
    obs, reward, terminated, truncated, info = env.step(crop([0.1, 0.1, 0.2, 0.2]) + " So the answer is \\boxed{B}")
    assert terminated and info["answer"] == "B" and info["num_tool_calls"] == 0 and info["end"] == "answer"
    env.reset(seed=0)
    *_, info = env.step(crop([0.1, 0.1, 0.2, 0.2]) + "\n\n")  # trailing whitespace: still a tool call
    assert info["num_ops"] == 1
    _, _, terminated, _, info = env.step("It is blue, I think.")  # no \boxed{}: final, unanswered
    assert terminated and info["answer"] == "" and info["correctness"] == 0.0


def test_missing_target_image_and_other_tools_are_counted_errors() -> None:
    env = PixelVQAEnv(tasks=[task()])
    env.reset(seed=0)
    *_, info = env.step(format_tool_call("crop_image_normalized", {"bbox_2d": [0.1, 0.1, 0.5, 0.5]}))
    assert "target_image is missing" in info["last_error"] and info["num_tool_calls"] == 1
    *_, info = env.step(format_tool_call("crop_image", {"bbox_2d": [1, 1, 500, 500], "target_image": 1}))
    assert "unknown tool 'crop_image'" in info["last_error"] and info["num_tool_calls"] == 2


def test_a_result_beyond_16_images_ends_the_episode() -> None:
    small = np.zeros((280, 280, 3), np.uint8)
    env = PixelVQAEnv(tasks=[task(images=(small,) * 15)], budgets="compact")
    obs, _ = env.reset(seed=0)
    obs, _, _, truncated, info = env.step(crop([0.2, 0.2, 0.6, 0.6]))
    assert len(obs["images"]) == 16 and not truncated
    obs, _, terminated, truncated, info = env.step(crop([0.2, 0.2, 0.6, 0.6]))
    assert truncated and not terminated and info["end"] == "images" and len(obs["images"]) == 16
    assert info["num_tool_calls"] == 2 and info["num_ops"] == 1


def test_the_token_limit_ends_a_tool_call_turn_not_an_answer() -> None:
    env = PixelVQAEnv(tasks=[task()])
    env.reset(seed=0)
    *_, info = env.step(ModelTurn(crop([0.1, 0.1, 0.3, 0.3]), context_tokens=12_088))  # at the limit: runs
    assert info["num_ops"] == 1
    _, _, terminated, truncated, info = env.step(ModelTurn(crop([0.1, 0.1, 0.3, 0.3]), context_tokens=12_089))
    assert truncated and info["end"] == "tokens" and info["num_tool_calls"] == 2 and info["num_ops"] == 1
    env.reset(seed=0)
    _, _, terminated, _, info = env.step(ModelTurn("\\boxed{B}", context_tokens=50_000))
    assert terminated and info["correctness"] == 1.0
    env.reset(seed=0)
    with pytest.raises(ValueError, match="context_tokens"):
        env.step(ModelTurn("\\boxed{B}", context_tokens=-1))
    assert env.episode.turns == 0  # refused before anything changed
    env = PixelVQAEnv(tasks=[task()], max_context_tokens=None)
    env.reset(seed=0)
    *_, info = env.step(ModelTurn(crop([0.1, 0.1, 0.3, 0.3]), context_tokens=10**6))
    assert info["num_ops"] == 1


# --- our older, stricter rules as named options --------------------------------------------------------------


def test_named_options_restore_the_older_rules() -> None:
    env = PixelVQAEnv(tasks=[task()], refuse_degenerate_boxes=True)
    env.reset(seed=0)
    *_, info = env.step(crop([0.5, 0.5, 0.5, 0.5]))
    assert "empty or inverted" in info["last_error"]
    env = PixelVQAEnv(tasks=[task()], parser="lenient", end_at_limits=False, max_ops=1)
    env.reset(seed=0)
    _, _, terminated, _, info = env.step(crop([0.1, 0.1, 0.3, 0.3]) + " So the answer is \\boxed{B}")
    assert not terminated and info["num_ops"] == 1  # the lenient parser takes the call anywhere
    _, _, _, truncated, info = env.step(crop([0.1, 0.1, 0.3, 0.3]))
    assert not truncated and "limit of 1 tool calls" in info["last_error"]
    env = PixelVQAEnv(tasks=[task()], crop_from="source", normalized_if="all_at_most_1", budgets="paper_eval")
    env.reset(seed=0)
    # the full-resolution source: [0.52, 0.25, 0.8, 0.53] of 2246x1582 = (1167.9, 395.5, 1796.8, 838.5); in floats
    # 0.35 - 0.1 = 0.24999999999999997, so 395.4999 -> 395 (as PIL rounds it too): 629x443 -> 616x448
    obs, *_ = env.step(crop([0.62, 0.35, 0.7, 0.43]))
    assert env.episode.ops[-1].region == (1168, 395, 1797, 838)
    assert result_text(obs) == "\nHere is the cropped image (Image Size: 616x448):"
    with pytest.raises(ValueError, match="parser"):
        PixelVQAEnv(tasks=[task()], parser="loose")  # type: ignore[arg-type]


# --- fuzz (issue 11 item 2) ----------------------------------------------------------------------------------

_HUGE = st.integers(300, 5000).map(lambda n: "9" * n) | st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999"])
_NUMBER = st.one_of(st.floats(-2, 3000), st.integers(-10, 5000).map(str), _HUGE)
_BOX = st.lists(_NUMBER.map(str), min_size=0, max_size=6).map(lambda values: "[" + ", ".join(values) + "]")
_ARGS = st.builds(
    lambda box, target, frames: f'{{"bbox_2d": {box}, "target_image": {target}, "target_frames": {frames}}}',
    _BOX, _NUMBER.map(str), _BOX,
)
_TOOL_TEXT = st.builds(
    lambda name, args, tail: f'<tool_call>\n{{"name": "{name}", "arguments": {args}}}\n</tool_call>{tail}',
    st.sampled_from(["crop_image_normalized", "select_frames", "crop_image"]), _ARGS, st.sampled_from(["", "\n", " x"]),
)
_VALUE = st.one_of(
    st.none(), st.text(max_size=20), st.floats(), st.integers(), st.integers(-(10**400), 10**400),
    st.lists(st.floats(), max_size=6).map(np.array), st.lists(st.integers(0, 1), max_size=40),
    st.fixed_dictionaries({"bbox": st.lists(st.floats(), max_size=5), "target_image": st.floats() | st.integers()}),
)
_STRUCTURED = st.tuples(st.sampled_from([TEXT, ZOOM, FRAMES, 3, 7, -1]), _VALUE)
_FUZZ_ENV = PixelVQAEnv(tasks=[task(images=(np.zeros((300, 400, 3), np.uint8),))], budgets="compact")


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(st.text(max_size=200), _TOOL_TEXT, _STRUCTURED), min_size=1, max_size=4))
def test_fuzz_every_turn_ends_in_an_observation_never_an_exception(turns: list) -> None:
    env = _FUZZ_ENV
    env.reset(seed=0)
    for turn in turns:
        obs, reward, terminated, truncated, info = env.step(turn)
        last = obs["messages"][-1]
        if terminated or truncated:
            assert info["end"] in ("answer", "tool_calls", "images", "tokens", "max_turns")
            break
        assert last["role"] == "user"
        shown = last["content"]
        assert shown[0]["text"] == f"\nExecution error:\n{info['last_error']}\n" or shown[-1]["type"] == "image"
        assert len(shown[0]["text"]) < 1000
