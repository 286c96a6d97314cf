"""Actions: what an agent can do in a turn, and the parsers that read them out of a model's text.

The released parser (the default) follows the paper's code: a turn is a tool call only if it ENDS with
`</tool_call>`; the JSON after the last `<tool_call>` is read with `json.loads`; the tools are
`crop_image_normalized` and `select_frames`. Any other turn is final, and its last `\\boxed{...}` is the answer.
The lenient parser (`parser="lenient"`, pixel-gym's older rule) takes the last `<tool_call>` block anywhere in the
turn, closed or not, accepts tool-name aliases, Python-style dicts and JSON-string arguments, and answers a turn
with neither a tool call nor a `\\boxed{}` with an error message. Classic RL agents send a structured action from
`structured_action_space` instead. All become one of the dataclasses below and go to the same executor.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from gymnasium import spaces

from pixel_gym.ops import BoxConvention, short_repr

TOOL_CALL_BLOCK = re.compile(r"<tool_call>(.*?)(?:</tool_call>|$)", re.DOTALL)
TOOL_START, TOOL_END = "<tool_call>", "</tool_call>"
MAX_TEXT_ACTION = 32_768  # characters of one turn (2048 new tokens rarely exceed 10k)
MAX_ANSWER_TEXT = 256  # characters of a structured answer
Parser = Literal["released", "lenient"]
PARSERS: tuple[str, ...] = ("released", "lenient")

# The released tools, and the aliases the lenient parser also accepts, with the box convention each implies.
RELEASED_TOOLS = ("crop_image_normalized", "select_frames")
ZOOM_TOOLS: dict[str, BoxConvention] = {
    "crop_image_normalized": "auto",  # the paper's tool: normalized, or pixels unless all four values are < 1
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
    text: str  # "" when the final turn holds no \boxed{} (unanswered)


@dataclass(frozen=True)
class Invalid:
    """A turn that asked for nothing executable; `message` tells the model why.

    `tool_call` is True when the turn was a (malformed) tool call: it still counts as a tool call for RaPR and the
    op penalty, as in the paper's released code.
    """

    message: str
    tool_call: bool = False


@dataclass(frozen=True)
class ModelTurn:
    """A model's text turn with the token count the released end rule needs: `context_tokens` = the prompt's tokens
    (the whole conversation so far, images included) + this turn's output tokens."""

    text: str
    context_tokens: int


Action = ZoomIn | SelectFrames | Answer | Invalid


def parse_turn(text: Any, parser: Parser = "released") -> Action:
    """Read one model turn. Never raises: anything unusable becomes `Invalid` with a readable message."""
    if not isinstance(text, str):
        return Invalid(f"an action must be text (a model turn), got {type(text).__name__}")
    if len(text) > MAX_TEXT_ACTION:
        return Invalid(f"the turn is {len(text)} characters long; the limit is {MAX_TEXT_ACTION}")
    if parser == "released":
        return _parse_released(text)
    if parser != "lenient":
        raise ValueError(f"unknown parser {parser!r}; expected one of {PARSERS}")
    blocks = TOOL_CALL_BLOCK.findall(text)
    if blocks:
        action = parse_tool_call(blocks[-1])
        return Invalid(action.message, tool_call=True) if isinstance(action, Invalid) else action
    answer = last_boxed(text)
    if answer is not None:
        return Answer(answer.strip())
    return Invalid("no tool call and no final answer found: call a tool in <tool_call></tool_call> "
                   "or give the answer in \\boxed{}")


def _parse_released(text: str) -> Action:
    if not text.strip().endswith(TOOL_END):
        answer = last_boxed(text)
        return Answer(answer.strip() if answer is not None else "")
    body = text.split(TOOL_START)[-1].split(TOOL_END)[0]
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError) as error:  # ValueError also covers ints of over 4,300 digits
        return Invalid(f"the tool call is not valid JSON ({short_repr(error, 200)}): {body.strip()[:200]!r}", True)
    if not isinstance(payload, dict):
        return Invalid(f"a tool call must be a JSON object with name and arguments, got {short_repr(payload)}", True)
    name, arguments = payload.get("name"), payload.get("arguments")
    if not isinstance(name, str) or name not in RELEASED_TOOLS:
        return Invalid(f"unknown tool {short_repr(name)}; available tools: {', '.join(RELEASED_TOOLS)}", True)
    if not isinstance(arguments, dict):
        return Invalid(f"tool arguments must be a JSON object, got {short_repr(arguments)}", True)
    action = _frames_action(arguments) if name == "select_frames" else _zoom_action(arguments, "auto", None)
    return Invalid(action.message, tool_call=True) if isinstance(action, Invalid) else action


def parse_tool_call(body: str) -> Action:
    """Parse the JSON inside one `<tool_call>` block into an action (the lenient parser's rules)."""
    payload = _load_json_object(body)
    if isinstance(payload, Invalid):
        return payload
    name = payload.get("name")
    if not isinstance(name, str):
        return Invalid(f"a tool call needs a tool name as a string, got {short_repr(name)}")
    arguments = payload.get("arguments", payload.get("parameters", {}))
    if isinstance(arguments, str):
        arguments = _load_json_object(arguments)
        if isinstance(arguments, Invalid):
            return arguments
    if not isinstance(arguments, dict):
        return Invalid(f"tool arguments must be a JSON object, got {type(arguments).__name__}")
    if name in ZOOM_TOOLS:
        return _zoom_action(arguments, ZOOM_TOOLS[name], 1)
    if name in FRAME_TOOLS:
        return _frames_action(arguments)
    known = ", ".join([*ZOOM_TOOLS, *FRAME_TOOLS])
    return Invalid(f"unknown tool {short_repr(name)}; available tools: {known}")


def _zoom_action(arguments: dict[str, Any], convention: BoxConvention, default_target: int | None) -> Action:
    bbox = arguments.get("bbox_2d", arguments.get("bbox"))
    if not isinstance(bbox, (list, tuple)):
        return Invalid(f"bbox_2d must be a list [x1, y1, x2, y2], got {short_repr(bbox)}")
    if "target_image" not in arguments and default_target is None:
        return Invalid("target_image is missing: name the image to crop (1 = the original image)")
    target = arguments.get("target_image", default_target)
    if isinstance(target, float) and target.is_integer():
        target = int(target)
    if isinstance(target, bool) or not isinstance(target, int):
        return Invalid(f"target_image must be an integer image number, got {short_repr(target)}")
    return ZoomIn(tuple(bbox), target, convention)


def _frames_action(arguments: dict[str, Any]) -> Action:
    frames = arguments.get("target_frames")
    if not isinstance(frames, (list, tuple)):
        return Invalid(f"select_frames needs target_frames as a list of frame numbers, got {short_repr(frames)}")
    return SelectFrames(tuple(frames))


def _load_json_object(text: str) -> dict[str, Any] | Invalid:
    cleaned = text.strip().removeprefix("```json").removeprefix("```").removesuffix("```").strip()
    try:
        payload = json.loads(cleaned)
    except (ValueError, RecursionError):  # JSONDecodeError, and ints of over 4,300 digits
        try:  # lenient: python-style dicts with single quotes
            payload = ast.literal_eval(cleaned)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            return Invalid(f"the tool call is not valid JSON: {cleaned[:200]!r}")
    if not isinstance(payload, dict):
        return Invalid(f"a tool call must be a JSON object with name and arguments, got {cleaned[:200]!r}")
    return payload


def last_boxed(text: str) -> str | None:
    """Content of the last `\\boxed{...}` whose braces balance, or None. One pass over the text (linear time)."""
    opened: list[int] = []  # positions of the unmatched "{" so far; -1 - i marks the "{" of a \\boxed at i
    best = None
    for i, char in enumerate(text):
        if char == "{":
            opened.append(-1 - i if i >= 6 and text.startswith("\\boxed", i - 6) else i)
        elif char == "}" and opened:
            start = opened.pop()
            if start < 0 and (best is None or -1 - start > best[0]):
                best = (-1 - start, i)
    return None if best is None else text[best[0] + 1 : best[1]]


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
            spaces.Text(max_length=MAX_ANSWER_TEXT, min_length=1),
        )
    )


def from_structured(action: Any, parser: Parser = "released", max_frames: int = 64) -> Action:
    """Convert a text turn, a `ModelTurn`, an Action, or a `(kind, value)` sample of `structured_action_space` into
    an Action. Never raises on a malformed value: it becomes `Invalid` naming the problem (a malformed zoom or
    frame mask counts as a tool call). A frame mask may have at most `max_frames` entries."""
    if isinstance(action, (ZoomIn, SelectFrames, Answer, Invalid)):
        return action
    if isinstance(action, (str, ModelTurn)):
        return parse_turn(action.text if isinstance(action, ModelTurn) else action, parser)
    if not (isinstance(action, tuple) and len(action) == 2):
        return Invalid(f"an action must be text (a model turn) or a (kind, value) tuple, got {type(action).__name__}")
    kind, value = action
    if isinstance(kind, (bool, np.bool_)) or not isinstance(kind, (int, np.integer)) or kind not in range(4):
        return Invalid(f"unknown structured action kind {short_repr(kind)}; expected 0 (text), 1 (zoom), 2 (frames), "
                       "3 (answer)")
    if kind == TEXT:
        return parse_turn(value, parser)
    if kind == ANSWER:
        if not isinstance(value, str) or len(value) > MAX_ANSWER_TEXT:
            return Invalid(f"a structured answer must be text of at most {MAX_ANSWER_TEXT} characters")
        return Answer(value)
    try:
        return _zoom_from_structured(value) if kind == ZOOM else _frames_from_structured(value, max_frames)
    except (TypeError, ValueError, OverflowError) as error:
        return Invalid(f"malformed structured action {int(kind)}: {short_repr(error, 200)}", tool_call=True)


def _zoom_from_structured(value: Any) -> ZoomIn:
    if not isinstance(value, Mapping) or "bbox" not in value or "target_image" not in value:
        raise TypeError(f"a zoom needs a dict with 'bbox' (4 numbers) and 'target_image', got {short_repr(value)}")
    count = _count(value["bbox"])
    if count != 4:
        raise ValueError(f"bbox must be an array of 4 numbers, got {short_repr(value['bbox'])}")
    bbox = np.asarray(value["bbox"], dtype=np.float64)
    target = value["target_image"]
    if isinstance(target, (bool, np.bool_)) or not isinstance(target, (int, np.integer, float, np.floating)):
        raise TypeError(f"target_image must be a 0-based image index, got {short_repr(target)}")
    if not float(target).is_integer():
        raise ValueError(f"target_image must be a whole number, got {short_repr(target)}")
    return ZoomIn(tuple(float(v) for v in bbox.reshape(-1)), int(target) + 1, "normalized")


def _frames_from_structured(value: Any, max_frames: int) -> SelectFrames:
    size = _count(value)
    if size is None:
        raise TypeError(f"a frame mask must be an array of 0/1, got {type(value).__name__}")
    if size > max_frames:
        raise ValueError(f"the frame mask has {size} entries; at most {max_frames}")
    mask = np.asarray(value, dtype=np.float64).reshape(-1)
    return SelectFrames(tuple(int(i) + 1 for i in np.flatnonzero(mask)))


def _count(value: Any) -> int | None:
    """Entries of an array or a list (without converting it), or None for anything else."""
    if isinstance(value, np.ndarray):
        return int(value.size)
    return len(value) if isinstance(value, (list, tuple)) else None
