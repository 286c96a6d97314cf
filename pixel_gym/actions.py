"""Actions: what an agent can do in a turn, and the parsers that read them out of a model's text.

The released parser (the default) follows the paper's code: a turn is a tool call only if it ENDS with
`</tool_call>`; the JSON after the last `<tool_call>` is read with `json.loads`; the tools are the offered
operations (`pixel_gym.ops`; by default the released two), each reading its own arguments. Any other turn is final,
and its last `\\boxed{...}` is the answer. The lenient parser (`parser="lenient"`, pixel-gym's older rule) takes the
last `<tool_call>` block anywhere in the turn, closed or not, accepts the ops' aliases, Python-style dicts and
JSON-string arguments, and answers a turn with neither a tool call nor a `\\boxed{}` with an error message. Classic
RL agents send a structured action from `structured_action_space` instead. All become an op's action (`OpAction`:
`ZoomIn`, `SelectFrames`, `OpCall`, ...), `Answer` or `Invalid`, and go to the same executor.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from gymnasium import spaces

from pixel_gym.ops import (
    OpAction,
    OpCall,
    Operation,
    OpError,
    SelectFrames,
    ZoomIn,
    format_tool_call,
    resolve_ops,
    short_repr,
)

TOOL_CALL_BLOCK = re.compile(r"<tool_call>(.*?)(?:</tool_call>|$)", re.DOTALL)
TOOL_START, TOOL_END = "<tool_call>", "</tool_call>"
MAX_TEXT_ACTION = 32_768  # characters of one turn (2048 new tokens rarely exceed 10k)
MAX_ANSWER_TEXT = 256  # characters of a structured answer
Parser = Literal["released", "lenient"]
PARSERS: tuple[str, ...] = ("released", "lenient")
Ops = Sequence[str | Operation] | None  # the offered operations (names or `Operation`s); None: the default two
__all__ = [
    "ANSWER", "FRAMES", "MAX_ANSWER_TEXT", "MAX_TEXT_ACTION", "PARSERS", "TEXT", "ZOOM", "Action", "Answer", "Invalid",
    "ModelTurn", "OpAction", "OpCall", "Parser", "SelectFrames", "ZoomIn", "action_to_text", "format_tool_call",
    "from_structured", "last_boxed", "parse_tool_call", "parse_turn", "structured_action_space",
]


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


Action = OpAction | Answer | Invalid


def parse_turn(text: Any, parser: Parser = "released", ops: Ops = None) -> Action:
    """Read one model turn calling one of `ops`. Never raises: anything unusable becomes `Invalid` with a readable
    message."""
    if not isinstance(text, str):
        return Invalid(f"an action must be text (a model turn), got {type(text).__name__}")
    if len(text) > MAX_TEXT_ACTION:
        return Invalid(f"the turn is {len(text)} characters long; the limit is {MAX_TEXT_ACTION}")
    offered = resolve_ops(ops)
    if parser == "released":
        return _parse_released(text, offered)
    if parser != "lenient":
        raise ValueError(f"unknown parser {parser!r}; expected one of {PARSERS}")
    blocks = TOOL_CALL_BLOCK.findall(text)
    if blocks:
        action = parse_tool_call(blocks[-1], offered)
        return Invalid(action.message, tool_call=True) if isinstance(action, Invalid) else action
    answer = last_boxed(text)
    if answer is not None:
        return Answer(answer.strip())
    return Invalid("no tool call and no final answer found: call a tool in <tool_call></tool_call> "
                   "or give the answer in \\boxed{}")


def _parse_released(text: str, ops: Sequence[Operation]) -> Action:
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
    by_name = {op.name: op for op in ops}
    if not isinstance(name, str) or name not in by_name:
        return Invalid(f"unknown tool {short_repr(name)}; available tools: {', '.join(by_name)}", True)
    if not isinstance(arguments, dict):
        return Invalid(f"tool arguments must be a JSON object, got {short_repr(arguments)}", True)
    return _read(by_name[name], arguments, name, lenient=False)


def _read(op: Operation, arguments: dict[str, Any], name: str, lenient: bool) -> Action:
    try:
        return op.read(arguments, name, lenient)
    except OpError as error:
        return Invalid(str(error), tool_call=True)


def parse_tool_call(body: str, ops: Ops = None) -> Action:
    """Parse the JSON inside one `<tool_call>` block into a call of one of `ops` (the lenient parser's rules)."""
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
    by_name = {alias: op for op in resolve_ops(ops) for alias in (op.name, *op.aliases)}
    if name in by_name:
        return _read(by_name[name], arguments, name, lenient=True)
    return Invalid(f"unknown tool {short_repr(name)}; available tools: {', '.join(by_name)}")


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


def action_to_text(action: Action) -> str:
    """The text a model would have written for an action (used to log structured actions in the chat)."""
    if isinstance(action, OpAction):
        return format_tool_call(action.op, action.call_arguments())
    if isinstance(action, Answer):
        return f"\\boxed{{{action.text}}}"
    return f"(invalid action: {action.message})"


# --- structured actions for classic RL agents -------------------------------------------------------------

TEXT, ZOOM, FRAMES, ANSWER = range(4)  # the kinds with the default ops; ANSWER is always the last kind


def structured_action_space(
    max_images: int, max_frames: int, max_text: int = MAX_TEXT_ACTION, ops: Ops = None
) -> spaces.OneOf:
    """`OneOf` over: a text turn, the structured form of each offered op that has one (the default ops: a
    normalized zoom box on an image, a frame mask), and a final answer."""
    forms = [op.structured.space(max_images, max_frames) for op in resolve_ops(ops) if op.structured is not None]
    return spaces.OneOf(
        (spaces.Text(max_length=max_text, min_length=0), *forms, spaces.Text(max_length=MAX_ANSWER_TEXT, min_length=1))
    )


def from_structured(action: Any, parser: Parser = "released", max_frames: int = 64, ops: Ops = None) -> Action:
    """Convert a text turn, a `ModelTurn`, an Action, or a `(kind, value)` sample of `structured_action_space` into
    an Action. Never raises on a malformed value: it becomes `Invalid` naming the problem (a malformed op value
    counts as a tool call). A frame mask may have at most `max_frames` entries."""
    if isinstance(action, (OpAction, Answer, Invalid)):
        return action
    offered = resolve_ops(ops)
    if isinstance(action, (str, ModelTurn)):
        return parse_turn(action.text if isinstance(action, ModelTurn) else action, parser, offered)
    if not (isinstance(action, tuple) and len(action) == 2):
        return Invalid(f"an action must be text (a model turn) or a (kind, value) tuple, got {type(action).__name__}")
    forms = [op.structured for op in offered if op.structured is not None]
    answer = len(forms) + 1
    kind, value = action
    if isinstance(kind, (bool, np.bool_)) or not isinstance(kind, (int, np.integer)) or kind not in range(answer + 1):
        kinds = ", ".join(f"{i} ({label})" for i, label in enumerate(["text", *(f.label for f in forms), "answer"]))
        return Invalid(f"unknown structured action kind {short_repr(kind)}; expected {kinds}")
    if kind == TEXT:
        return parse_turn(value, parser, offered)
    if kind == answer:
        if not isinstance(value, str) or len(value) > MAX_ANSWER_TEXT:
            return Invalid(f"a structured answer must be text of at most {MAX_ANSWER_TEXT} characters")
        return Answer(value)
    try:
        return forms[kind - 1].convert(value, max_frames)
    except (TypeError, ValueError, OverflowError) as error:
        return Invalid(f"malformed structured action {int(kind)}: {short_repr(error, 200)}", tool_call=True)
