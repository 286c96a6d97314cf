"""`rotate_image` (off by default): turn an image by 90, 180 or 270 degrees, for sideways or upside-down content."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from PIL import Image

from pixel_gym.ops.base import OpError, integer_argument, short_repr
from pixel_gym.ops.registry import DiscreteChoice, NormBox, OpCall, OpResult, image_result, register_op

if TYPE_CHECKING:
    from pixel_gym.executor import OpContext

NAME = "rotate_image"
TURNS = {90: Image.Transpose.ROTATE_90, 180: Image.Transpose.ROTATE_180, 270: Image.Transpose.ROTATE_270}

ROTATE_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": NAME,
        "description": "Rotate an image counter-clockwise by 90, 180 or 270 degrees. It is useful when text or "
        "objects in the image are sideways or upside down.",
        "parameters": {
            "type": "object",
            "properties": {
                "target_image": {
                    "type": "number",
                    "description": "The index of the image to rotate. Index from 1 to the number of images.",
                },
                "angle": {"type": "integer", "description": "Degrees counter-clockwise.", "enum": list(TURNS)},
            },
            "required": ["target_image", "angle"],
        },
    },
}


def apply(context: OpContext, call: OpCall) -> OpResult:
    """The image as kept, turned losslessly (its sides swap for 90 and 270)."""
    angle = integer_argument(call.arguments["angle"], "angle")
    if angle not in TURNS:
        raise OpError(f"angle must be 90, 180 or 270, got {short_repr(call.arguments['angle'])}")
    target = context.target(call.arguments["target_image"])
    return image_result(context, target, target.image.transpose(TURNS[angle]), "rotated")


def discrete(cells: Sequence[NormBox]) -> list[DiscreteChoice]:
    """Rotate image 1 by each angle."""
    return [DiscreteChoice(OpCall(NAME, {"target_image": 1, "angle": angle})) for angle in TURNS]


ROTATE = register_op(NAME, ROTATE_TOOL, apply, discrete=discrete)
