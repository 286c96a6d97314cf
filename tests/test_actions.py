"""The text-turn parsers (released and lenient) and the structured action space."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pixel_gym.actions import (
    ANSWER,
    FRAMES,
    MAX_TEXT_ACTION,
    TEXT,
    ZOOM,
    Answer,
    Invalid,
    ModelTurn,
    SelectFrames,
    ZoomIn,
    action_to_text,
    format_tool_call,
    from_structured,
    last_boxed,
    parse_turn,
    structured_action_space,
)

CROP = '<tool_call>\n{"name": "crop_image_normalized", "arguments": {"bbox_2d": [0.1, 0.2, 0.3, 0.4], "target_image": 1}}\n</tool_call>'  # noqa: E501


def test_paper_style_crop_call_is_parsed() -> None:
    assert parse_turn("The sign is too small to read. Let me zoom in.\n" + CROP) == ZoomIn((0.1, 0.2, 0.3, 0.4), 1)
    frames = format_tool_call("select_frames", {"target_frames": [3, 4, 3]})
    assert parse_turn(frames) == SelectFrames((3, 4, 3))


def test_released_turn_is_a_tool_call_only_if_it_ends_with_the_closing_tag() -> None:
    assert parse_turn(CROP + "\n  \n") == ZoomIn((0.1, 0.2, 0.3, 0.4), 1)  # trailing whitespace is stripped
    assert parse_turn(CROP + " So the answer is \\boxed{3}") == Answer("3")
    assert parse_turn(CROP.removesuffix("</tool_call>")) == Answer("")  # unclosed: final, unanswered
    assert parse_turn("I think it is red.") == Answer("")
    # the JSON after the LAST <tool_call> counts
    two = format_tool_call("select_frames", {"target_frames": [1]}) + "\nno, rather\n" + CROP
    assert parse_turn(two) == ZoomIn((0.1, 0.2, 0.3, 0.4), 1)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("{not json", "not valid JSON"),
        ("{'name': 'crop_image_normalized', 'arguments': {'bbox_2d': [0, 0, 1, 1], 'target_image': 1}}", "JSON"),
        ('["a list"]', "JSON object"),
        ('{"name": "crop_image", "arguments": {"bbox_2d": [0, 0, 9, 9], "target_image": 1}}', "unknown tool"),
        ('{"name": "zoom_in", "arguments": {}}', "unknown tool"),
        ('{"name": {"nested": 1}, "arguments": {}}', "unknown tool"),
        ('{"name": "crop_image_normalized", "arguments": {"bbox_2d": [0, 0, 0.5, 0.5]}}', "target_image is missing"),
        ('{"name": "crop_image_normalized", "arguments": "{\\"bbox_2d\\": [0, 0, 1, 1]}"}', "JSON object"),
        ('{"name": "crop_image_normalized", "parameters": {"bbox_2d": [0, 0, 1, 1], "target_image": 1}}', "object"),
        ('{"name": "crop_image_normalized", "arguments": {"bbox_2d": "0,0,1,1", "target_image": 1}}', "bbox_2d"),
        ('{"name": "crop_image_normalized", "arguments": {"bbox_2d": [0, 0, 1, 1], "target_image": "x"}}', "target"),
        ('{"name": "select_frames", "arguments": {"target_frames": 3}}', "target_frames"),
        ('{"name": "select_frames", "arguments": {"target_frames": [' + "9" * 5000 + "]}}", "not valid JSON"),
    ],
)
def test_released_parser_is_strict_and_every_failure_is_a_counted_tool_call(body: str, message: str) -> None:
    action = parse_turn(f"<tool_call>\n{body}\n</tool_call>")
    assert isinstance(action, Invalid) and action.tool_call and message in action.message, action


def test_lenient_parser_keeps_the_old_rules() -> None:
    crop = format_tool_call("crop_image", {"bbox_2d": [10, 20, 300, 400]})
    assert parse_turn(crop, "lenient") == ZoomIn((10, 20, 300, 400), 1, "pixels")
    unclosed = '<tool_call>{"name": "select_frames", "arguments": {"target_frames": [1]}}'
    assert parse_turn(CROP + "\nthen\n" + unclosed, "lenient") == SelectFrames((1,))
    assert parse_turn(CROP + " So the answer is \\boxed{3}", "lenient") == ZoomIn((0.1, 0.2, 0.3, 0.4), 1)
    openai_style = json.dumps({"name": "select_frames", "arguments": json.dumps({"target_frames": [2]})})
    assert parse_turn(f"<tool_call>{openai_style}</tool_call>", "lenient") == SelectFrames((2,))
    python_style = "<tool_call>{'name': 'zoom_in', 'arguments': {'bbox_2d': [0, 0, 0.5, 0.5]}}</tool_call>"
    assert parse_turn(python_style, "lenient") == ZoomIn((0, 0, 0.5, 0.5), 1, "auto")
    thinking = parse_turn("I think it is red.", "lenient")
    assert isinstance(thinking, Invalid) and not thinking.tool_call and "no tool call" in thinking.message
    huge = parse_turn('<tool_call>{"name": "select_frames", "arguments": {"target_frames": [' + "9" * 5000 + "]}}",
                      "lenient")
    assert isinstance(huge, Invalid) and huge.tool_call


def test_final_answer_in_last_boxed_with_nested_braces() -> None:
    assert parse_turn("so \\boxed{A} no wait \\boxed{\\text{B}}") == Answer("\\text{B}")
    assert last_boxed("\\boxed{unclosed") is None
    assert last_boxed("\\boxed{a} then \\boxed{unclosed") == "a"
    assert last_boxed("\\boxed{a \\boxed{b} c}") == "b"
    assert last_boxed("} { \\boxed{x{y}z}") == "x{y}z"
    assert last_boxed("boxed{1}") is None and last_boxed("{\\boxed{2}") == "2"


def test_last_boxed_is_linear() -> None:
    """Issue 11 item 9: 2,340 unclosed \\boxed{ took ~1 s; 4,000 (the whole turn limit's worth) must take ms."""
    text = "\\boxed{" * (MAX_TEXT_ACTION // 8)
    start = time.perf_counter()
    assert last_boxed(text) is None
    assert time.perf_counter() - start < 0.1


def test_non_string_actions_are_invalid_not_crashes() -> None:
    for value in [None, 3, b"bytes", ["list"], {"name": "crop_image"}]:
        assert isinstance(parse_turn(value), Invalid)
        assert isinstance(from_structured(value), Invalid)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300), st.sampled_from(["released", "lenient"]))
def test_parser_never_raises_on_arbitrary_text(text: str, parser: str) -> None:
    assert isinstance(parse_turn(text, parser), (ZoomIn, SelectFrames, Answer, Invalid))  # type: ignore[arg-type]


def test_structured_actions_map_to_the_same_actions() -> None:
    space = structured_action_space(max_images=4, max_frames=16)
    zoom = from_structured((ZOOM, {"bbox": np.array([0.1, 0.1, 0.4, 0.4], np.float32), "target_image": 0}))
    assert isinstance(zoom, ZoomIn) and zoom.target_image == 1 and zoom.convention == "normalized"
    mask = np.zeros(16, dtype=np.int8)
    mask[[2, 5]] = 1
    assert from_structured((FRAMES, mask)) == SelectFrames((3, 6))
    assert from_structured((ANSWER, "B")) == Answer("B")
    assert from_structured((TEXT, "\\boxed{7}")) == Answer("7")
    assert from_structured(ModelTurn("\\boxed{7}", 100)) == Answer("7")
    for _ in range(50):
        assert isinstance(from_structured(space.sample()), (ZoomIn, SelectFrames, Answer, Invalid))


@pytest.mark.parametrize(
    ("action", "message"),
    [
        ((ZOOM, {"bbox": np.zeros(4), "target_image": float("inf")}), "whole number"),
        ((ZOOM, {"bbox": np.zeros(4), "target_image": float("nan")}), "whole number"),
        ((ZOOM, {"bbox": np.zeros(4), "target_image": 0.5}), "whole number"),
        ((ZOOM, {"bbox": np.zeros(4), "target_image": "1"}), "0-based image index"),
        ((ZOOM, np.zeros(4)), "a dict with 'bbox'"),
        ((ZOOM, {"bbox": "nope", "target_image": 0}), "4 numbers"),
        ((ZOOM, {"bbox": np.zeros(10_000_000), "target_image": 0}), "4 numbers"),
        ((ZOOM, {"bbox": [10**400, 0, 1, 1], "target_image": 0}), "too large"),
        ((FRAMES, np.ones(10_000_000, np.int8)), "at most 16"),
        ((FRAMES, "0101"), "array of 0/1"),
        ((FRAMES, [[1, 0], [1]]), "malformed structured action 2"),
    ],
)
def test_malformed_structured_tool_actions_are_counted_invalid_calls(action: object, message: str) -> None:
    start = time.perf_counter()
    parsed = from_structured(action, max_frames=16)
    assert isinstance(parsed, Invalid) and parsed.tool_call and message in parsed.message, parsed
    assert time.perf_counter() - start < 0.5  # the 10M-entry values are refused before being converted
    assert len(parsed.message) < 400


@pytest.mark.parametrize(
    "action",
    [(ANSWER, "x" * 257), (ANSWER, 12), (9, "x"), (True, "x"), (np.zeros(2), "x"), (TEXT, "x" * (MAX_TEXT_ACTION + 1))],
)
def test_other_malformed_structured_actions_are_invalid_turns(action: object) -> None:
    parsed = from_structured(action)
    assert isinstance(parsed, Invalid) and not parsed.tool_call


def test_action_to_text_round_trips_through_the_parser() -> None:
    for action in [ZoomIn((0.1, 0.2, 0.3, 0.4), 2, "auto"), SelectFrames((1, 4)), Answer("C")]:
        assert parse_turn(action_to_text(action)) == action
