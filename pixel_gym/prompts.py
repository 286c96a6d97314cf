"""Texts the environment shows a model: the tool system prompt, the user turn and the error message.

The system prompt lists the schemas of the offered operations (`pixel_gym.ops`; by default the paper's released
tools) the way Qwen2.5's chat template renders tools (Hermes style), so a model trained with the paper's code, or
any Qwen2.5-VL, sees what it expects. Each op writes its own result text; the released ones are re-exported here.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from pixel_gym.ops import Operation, resolve_ops
from pixel_gym.ops.crop import CROP_TOOL, crop_result_text
from pixel_gym.ops.frames import SELECT_FRAMES_TOOL, frames_result_text

__all__ = [
    "ANSWER_INSTRUCTION", "CROP_TOOL", "QUESTION_SEPARATOR", "SELECT_FRAMES_TOOL", "crop_result_text", "error_text",
    "frames_result_text", "image_header", "system_prompt", "tools_for", "user_text",
]

# The released user turn: the question as given, then this guidelines paragraph (its `vcot` template, which the
# released code appends after "\n\n" to a template that itself starts with "\n\n").
ANSWER_INSTRUCTION = (
    "Guidelines: Understand the given visual information and the user query. Determine if it is beneficial to "
    "employ the given visual operations (tools). For a video, we can look closer by `select_frames`. For an image, "
    "we can look closer by `crop_image`. Reason with the visual information step by step, and put your final answer "
    "within \\boxed{}."
)
QUESTION_SEPARATOR = "\n\n\n\n"


def tools_for(is_video: bool, ops: Sequence[str | Operation] | None = None) -> list[dict[str, Any]]:
    """The tools of the system prompt: the schemas of the offered `ops` (None: the released two), for image and
    video questions alike, as the released prompt lists them."""
    del is_video  # kept in the signature: callers ask per kind, the released protocol answers the same
    return [op.schema for op in resolve_ops(ops)]


def user_text(question: str) -> str:
    """The text part of the first user turn (after the images or the video), as the released code writes it."""
    return f"{question}{QUESTION_SEPARATOR}{ANSWER_INSTRUCTION}"


def system_prompt(tools: list[dict[str, Any]], preamble: str = "You are a helpful assistant.") -> str:
    """Qwen2.5's tool-calling system prompt for `tools`."""
    signatures = "\n".join(json.dumps(tool) for tool in tools)
    return (
        f"{preamble}\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
        "You are provided with function signatures within <tools></tools> XML tags:\n"
        f"<tools>\n{signatures}\n</tools>\n\n"
        "For each function call, return a json object with function name and arguments within "
        "<tool_call></tool_call> XML tags:\n<tool_call>\n"
        '{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>'
    )


def error_text(message: str) -> str:
    return f"\nExecution error:\n{message}\n"


def image_header(index: int, width: int, height: int) -> str:
    return f"Image {index} (Image Size: {width}x{height}):"
