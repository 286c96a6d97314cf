"""The text-turn parser and the structured action space."""

from __future__ import annotations

import json

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from pixel_gym.actions import (
    ANSWER,
    FRAMES,
    TEXT,
    ZOOM,
    Answer,
    Invalid,
    SelectFrames,
    ZoomIn,
    action_to_text,
    format_tool_call,
    from_structured,
    last_boxed,
    parse_turn,
    structured_action_space,
)


def test_paper_style_crop_call_is_parsed() -> None:
    turn = (
        "The sign is too small to read. Let me zoom in.\n<tool_call>\n"
        '{"name": "crop_image_normalized", "arguments": {"bbox_2d": [0.1, 0.2, 0.3, 0.4], "target_image": 1}}\n'
        "</tool_call>"
    )
    assert parse_turn(turn) == ZoomIn((0.1, 0.2, 0.3, 0.4), 1, "auto")


def test_absolute_pixel_tools_and_select_frames() -> None:
    crop = format_tool_call("crop_image", {"bbox_2d": [10, 20, 300, 400]})
    assert parse_turn(crop) == ZoomIn((10, 20, 300, 400), 1, "pixels")
    frames = format_tool_call("select_frames", {"target_frames": [3, 4]})
    assert parse_turn(frames) == SelectFrames((3, 4))


def test_last_tool_call_block_counts_and_unclosed_block_is_read() -> None:
    first = format_tool_call("crop_image_normalized", {"bbox_2d": [0, 0, 0.5, 0.5], "target_image": 1})
    second = '<tool_call>{"name": "select_frames", "arguments": {"target_frames": [1]}}'  # stop string stripped
    assert parse_turn(first + "\nthen\n" + second) == SelectFrames((1,))


def test_arguments_as_json_string_and_python_dicts_are_accepted() -> None:
    openai_style = json.dumps({"name": "select_frames", "arguments": json.dumps({"target_frames": [2]})})
    assert parse_turn(f"<tool_call>{openai_style}</tool_call>") == SelectFrames((2,))
    python_style = (
        "<tool_call>{'name': 'crop_image_normalized', 'arguments': {'bbox_2d': [0, 0, 0.5, 0.5]}}</tool_call>"
    )
    assert parse_turn(python_style) == ZoomIn((0, 0, 0.5, 0.5), 1, "auto")


def test_final_answer_in_last_boxed_with_nested_braces() -> None:
    assert parse_turn("so \\boxed{A} no wait \\boxed{\\text{B}}") == Answer("\\text{B}")
    assert last_boxed("\\boxed{unclosed") is None


def test_bad_turns_become_invalid_with_messages() -> None:
    cases = {
        "<tool_call>{not json</tool_call>": "not valid JSON",
        '<tool_call>["a list"]</tool_call>': "JSON object",
        '<tool_call>{"name": "draw", "arguments": {}}</tool_call>': "unknown tool",
        '<tool_call>{"name": "crop_image", "arguments": {"bbox_2d": "0,0,1,1"}}</tool_call>': "bbox_2d",
        '<tool_call>{"name": "crop_image", "arguments": {"bbox_2d": [0,0,1,1], "target_image": "x"}}</tool_call>': (
            "target_image"
        ),
        '<tool_call>{"name": "select_frames", "arguments": {"target_frames": 3}}</tool_call>': "target_frames",
        "I think it is red.": "no tool call",
        '<tool_call>{"name": {"nested": 1}, "arguments": {}}</tool_call>': "tool name",
        '<tool_call>{"arguments": {"bbox_2d": [0, 0, 1, 1]}}</tool_call>': "tool name",
    }
    for text, message in cases.items():
        action = parse_turn(text)
        assert isinstance(action, Invalid) and message in action.message, (text, action)


def test_non_string_actions_are_invalid_not_crashes() -> None:
    for value in [None, 3, b"bytes", ["list"], {"name": "crop_image"}]:
        assert isinstance(parse_turn(value), Invalid)
        assert isinstance(from_structured(value), Invalid)


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=300))
def test_parser_never_raises_on_arbitrary_text(text: str) -> None:
    action = parse_turn(text)
    assert isinstance(action, (ZoomIn, SelectFrames, Answer, Invalid))


@settings(max_examples=200, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=10),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
        max_leaves=12,
    ),
    st.sampled_from(["crop_image_normalized", "crop_image", "select_frames", "other"]),
)
def test_parser_never_raises_on_arbitrary_arguments(arguments: object, name: str) -> None:
    text = f"<tool_call>{json.dumps({'name': name, 'arguments': arguments})}</tool_call>"
    assert isinstance(parse_turn(text), (ZoomIn, SelectFrames, Answer, Invalid))


def test_structured_actions_map_to_the_same_actions() -> None:
    space = structured_action_space(max_images=4, max_frames=16)
    zoom = from_structured((ZOOM, {"bbox": np.array([0.1, 0.1, 0.4, 0.4], np.float32), "target_image": 0}))
    assert isinstance(zoom, ZoomIn) and zoom.target_image == 1 and zoom.convention == "normalized"
    mask = np.zeros(16, dtype=np.int8)
    mask[[2, 5]] = 1
    assert from_structured((FRAMES, mask)) == SelectFrames((3, 6))
    assert from_structured((ANSWER, "B")) == Answer("B")
    assert from_structured((TEXT, "\\boxed{7}")) == Answer("7")
    assert isinstance(from_structured((9, "x")), Invalid)
    assert isinstance(from_structured((ZOOM, {"bbox": "nope"})), Invalid)
    for _ in range(50):
        assert isinstance(from_structured(space.sample()), (ZoomIn, SelectFrames, Answer, Invalid))


def test_action_to_text_round_trips_through_the_parser() -> None:
    for action in [ZoomIn((0.1, 0.2, 0.3, 0.4), 2, "auto"), SelectFrames((1, 4)), Answer("C")]:
        assert parse_turn(action_to_text(action)) == action
