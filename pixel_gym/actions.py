"""Actions: what an agent can do in a turn, and the parser that reads them out of a model's text.

A model turn is free text with either a Hermes-style tool call, `<tool_call>{"name": ..., "arguments": ...}
</tool_call>` (the last block counts, as in the paper's code), or a final answer in `\\boxed{...}`. Classic RL
agents send a structured action from `structured_action_space` instead. Both become one of the dataclasses
below and go to the same executor.
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
from gymnasium import spaces

from pixel_gym.ops import BoxConvention

TOOL_CALL_BLOCK = re.compile(r"<tool_call>(.*?)(?:</tool_call>|$)", re.DOTALL)
MAX_TEXT_ACTION = 16_384

# Tool names a model may emit, and the box convention each implies.
ZOOM_TOOLS: dict[str, BoxConvention] = {
    "crop_image_normalized": "auto",  # the paper's tool: normalized, or pixels when any value exceeds 1
    "crop_image": "pixels",  # Qwen2.5-VL grounding style: absolute pixels
    "image_zoom_in_tool": "pixels",  # DeepEyes / verl-tool name
    "zoom_in": "auto",
}
FRAME_TOOLS = ("select_frames",)


@dataclass(frozen=True)
class ZoomIn:
    bbox: tuple[float, ...]
    target_image: int = 1  # 1-based over all images shown so far
    convention: BoxConvention = "auto"


@dataclass(frozen=True)
class SelectFrames:
    frames: tuple[int, ...]  # 1-based over the frames shown at reset


@dataclass(frozen=True)
class Answer:
    text: str


@dataclass(frozen=True)
class Invalid:
    """A turn that asked for nothing executable; `message` tells the model why.

    `tool_call` is True when the turn did hold a `<tool_call>` block (malformed): it still counts as a tool call
    for RaPR and the op penalty, as in the paper's released code.
    """

    message: str
    tool_call: bool = False


Action = ZoomIn | SelectFrames | Answer | Invalid
PIXEL_OPS = (ZoomIn, SelectFrames)


def parse_turn(text: Any) -> Action:
    """Read one model turn. Never raises: anything unusable becomes `Invalid` with a readable message."""
    if not isinstance(text, str):
        return Invalid(f"an action must be text (a model turn), got {type(text).__name__}")
    if len(text) > MAX_TEXT_ACTION:
        return Invalid(f"the turn is {len(text)} characters long; the limit is {MAX_TEXT_ACTION}")
    blocks = TOOL_CALL_BLOCK.findall(text)
    if blocks:
        action = parse_tool_call(blocks[-1])
        return Invalid(action.message, tool_call=True) if isinstance(action, Invalid) else action
    answer = last_boxed(text)
    if answer is not None:
        return Answer(answer.strip())
    return Invalid("no tool call and no final answer found: call a tool in <tool_call></tool_call> "
                   "or give the answer in \\boxed{}")


def parse_tool_call(body: str) -> Action:
    """Parse the JSON inside one `<tool_call>` block into an action."""
    payload = _load_json_object(body)
    if isinstance(payload, Invalid):
        return payload
    name = payload.get("name")
    if not isinstance(name, str):
        return Invalid(f"a tool call needs a tool name as a string, got {name!r}"[:300])
    arguments = payload.get("arguments", payload.get("parameters", {}))
    if isinstance(arguments, str):
        arguments = _load_json_object(arguments)
        if isinstance(arguments, Invalid):
            return arguments
    if not isinstance(arguments, dict):
        return Invalid(f"tool arguments must be a JSON object, got {type(arguments).__name__}")
    if name in ZOOM_TOOLS:
        return _zoom_action(arguments, ZOOM_TOOLS[name])
    if name in FRAME_TOOLS:
        frames = arguments.get("target_frames")
        if not isinstance(frames, (list, tuple)):
            return Invalid(f"select_frames needs target_frames as a list of frame numbers, got {frames!r}")
        return SelectFrames(tuple(frames))
    known = ", ".join([*ZOOM_TOOLS, *FRAME_TOOLS])
    return Invalid(f"unknown tool {name!r}; available tools: {known}")


def _zoom_action(arguments: dict[str, Any], convention: BoxConvention) -> Action:
    bbox = arguments.get("bbox_2d", arguments.get("bbox"))
    if not isinstance(bbox, (list, tuple)):
        return Invalid(f"bbox_2d must be a list [x1, y1, x2, y2], got {bbox!r}")
    target = arguments.get("target_image", 1)
    if isinstance(target, float) and target.is_integer():
        target = int(target)
    if isinstance(target, bool) or not isinstance(target, int):
        return Invalid(f"target_image must be an integer image number, got {target!r}")
    return ZoomIn(tuple(bbox), target, convention)


def _load_json_object(text: str) -> dict[str, Any] | Invalid:
    cleaned = text.strip().removeprefix("```json").removeprefix("```").removesuffix("```").strip()
    try:
        payload = json.loads(cleaned)
    except (json.JSONDecodeError, RecursionError):
        try:  # lenient: python-style dicts with single quotes
            payload = ast.literal_eval(cleaned)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            return Invalid(f"the tool call is not valid JSON: {cleaned[:200]!r}")
    if not isinstance(payload, dict):
        return Invalid(f"a tool call must be a JSON object with name and arguments, got {cleaned[:200]!r}")
    return payload


def last_boxed(text: str) -> str | None:
    """Content of the last `\\boxed{...}` (balanced braces), or None."""
    start = text.rfind("\\boxed{")
    while start != -1:
        depth, i = 0, start + len("\\boxed")
        for i in range(start + len("\\boxed"), len(text)):
            if text[i] == "{":
                depth += 1
            elif text[i] == "}":
                depth -= 1
                if depth == 0:
                    return text[start + len("\\boxed{") : i]
        start = text.rfind("\\boxed{", 0, start)
    return None


def format_tool_call(name: str, arguments: dict[str, Any]) -> str:
    """The text a model writes to call a tool (Hermes style, as in the paper's traces)."""
    return f"<tool_call>\n{json.dumps({'name': name, 'arguments': arguments})}\n</tool_call>"


def action_to_text(action: Action) -> str:
    """The text a model would have written for an action (used to log structured actions in the chat)."""
    if isinstance(action, ZoomIn):
        bbox = [round(v, 4) for v in action.bbox]
        return format_tool_call("crop_image_normalized", {"bbox_2d": bbox, "target_image": action.target_image})
    if isinstance(action, SelectFrames):
        return format_tool_call("select_frames", {"target_frames": list(action.frames)})
    if isinstance(action, Answer):
        return f"\\boxed{{{action.text}}}"
    return f"(invalid action: {action.message})"


# --- structured actions for classic RL agents -------------------------------------------------------------

TEXT, ZOOM, FRAMES, ANSWER = range(4)


def structured_action_space(max_images: int, max_frames: int, max_text: int = MAX_TEXT_ACTION) -> spaces.OneOf:
    """`OneOf` over: a text turn, a normalized zoom box on an image, a frame mask, and a final answer."""
    return spaces.OneOf(
        (
            spaces.Text(max_length=max_text, min_length=0),
            spaces.Dict(
                {
                    "bbox": spaces.Box(0.0, 1.0, shape=(4,), dtype=np.float32),
                    "target_image": spaces.Discrete(max_images),
                }
            ),
            spaces.MultiBinary(max_frames),
            spaces.Text(max_length=256, min_length=1),
        )
    )


def from_structured(action: Any) -> Action:
    """Convert a `(kind, value)` sample of `structured_action_space` (or an Action) into an Action."""
    if isinstance(action, (ZoomIn, SelectFrames, Answer, Invalid)):
        return action
    if isinstance(action, str):
        return parse_turn(action)
    if not (isinstance(action, tuple) and len(action) == 2):
        return Invalid(f"an action must be text (a model turn) or a (kind, value) tuple, got {type(action).__name__}")
    kind, value = action
    try:
        if kind == TEXT:
            return parse_turn(value)
        if kind == ZOOM:
            bbox = tuple(float(v) for v in np.asarray(value["bbox"], dtype=np.float64).reshape(-1))
            return ZoomIn(bbox, int(value["target_image"]) + 1, "normalized")
        if kind == FRAMES:
            mask = np.asarray(value).reshape(-1)
            return SelectFrames(tuple(int(i) + 1 for i in np.flatnonzero(mask)))
        if kind == ANSWER:
            return Answer(str(value))
    except (KeyError, TypeError, ValueError) as error:
        return Invalid(f"malformed structured action {kind!r}: {error}")
    return Invalid(f"unknown structured action kind {kind!r}; expected 0 (text), 1 (zoom), 2 (frames), 3 (answer)")
