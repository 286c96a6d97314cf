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

ANSWER_INSTRUCTION = "Reason step by step. When you are sure, put your final answer in \\boxed{}."


def tools_for(is_video: bool) -> list[dict[str, Any]]:
    return [CROP_TOOL, SELECT_FRAMES_TOOL] if is_video else [CROP_TOOL]


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
    return f"Here is the cropped image (Image Size: {width}x{height}):"


def frames_result_text(frame_numbers: list[int]) -> str:
    listed = ", ".join(str(n) for n in frame_numbers)
    return f"Here are the selected frames (Frame {listed}):"


def error_text(message: str) -> str:
    return f"Execution error:\n{message}"


def image_header(index: int, width: int, height: int) -> str:
    return f"Image {index} (Image Size: {width}x{height}):"


def frame_header(number: int) -> str:
    return f"Frame {number}:"
