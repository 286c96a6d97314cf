"""Texts the environment shows a model: the tool system prompt and the tool-result messages.

The tool schemas are those of the paper's released tools (`crop_image_normalized`, `select_frames`); the system
prompt renders them the way Qwen2.5's chat template renders tools (Hermes style), so a model trained with the
paper's code, or any Qwen2.5-VL, sees what it expects.
"""

from __future__ import annotations

import json
from typing import Any

CROP_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "crop_image_normalized",
        "description": "Zoom in on the image based on the bounding box coordinates. It is useful when the object "
        "or text in the image is too small to be seen.",
        "parameters": {
            "type": "object",
            "properties": {
                "bbox_2d": {
                    "type": "array",
                    "description": "coordinates for bounding box of the area you want to zoom in. Values should "
                    "be within [0.0,1.0].",
                    "items": {"type": "number"},
                },
                "target_image": {
                    "type": "number",
                    "description": "The index of the image to crop. Index from 1 to the number of images. "
                    "Choose 1 to operate on original image.",
                },
            },
            "required": ["bbox_2d", "target_image"],
        },
    },
}

SELECT_FRAMES_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "select_frames",
        "description": "Select frames from a video.",
        "parameters": {
            "type": "object",
            "properties": {
                "target_frames": {
                    "type": "array",
                    "description": "List of frame indices to select from the video (no more than 8 frames in "
                    "total).",
                    "items": {"type": "integer", "description": "Frame index from 1 to 16."},
                }
            },
            "required": ["target_frames"],
        },
    },
}

# The released user turn: the question as given, then this guidelines paragraph (its `vcot` template, which the
# released code appends after "\n\n" to a template that itself starts with "\n\n").
ANSWER_INSTRUCTION = (
    "Guidelines: Understand the given visual information and the user query. Determine if it is beneficial to "
    "employ the given visual operations (tools). For a video, we can look closer by `select_frames`. For an image, "
    "we can look closer by `crop_image`. Reason with the visual information step by step, and put your final answer "
    "within \\boxed{}."
)
QUESTION_SEPARATOR = "\n\n\n\n"


def tools_for(is_video: bool) -> list[dict[str, Any]]:
    """The tools of the system prompt: the released prompt lists both for image and video questions alike."""
    del is_video  # kept in the signature: callers ask per kind, the released protocol answers the same
    return [CROP_TOOL, SELECT_FRAMES_TOOL]


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


def crop_result_text(width: int, height: int) -> str:
    """The released crop result; `width` x `height` is the crop as kept (before any serving re-resize)."""
    return f"\nHere is the cropped image (Image Size: {width}x{height}):"


def frames_result_text(width: int, height: int, first: int, last: int) -> str:
    """The released select_frames result; the frames are numbered `first` to `last` for `target_image`."""
    return f"\nHere are the selected frames (Frame Size: {width}x{height}, Numbered {first} to {last}):"


def error_text(message: str) -> str:
    return f"\nExecution error:\n{message}\n"


def image_header(index: int, width: int, height: int) -> str:
    return f"Image {index} (Image Size: {width}x{height}):"
