"""`enhance_contrast` (off by default): stretch an image's contrast, for faint text and low-contrast details."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from PIL import ImageOps

from pixel_gym.ops.registry import DiscreteChoice, NormBox, OpCall, OpResult, image_result, register_op

if TYPE_CHECKING:
    from pixel_gym.executor import OpContext

NAME = "enhance_contrast"
CUTOFF = 1.0  # percent of the darkest and of the brightest pixels clipped before the stretch

CONTRAST_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": NAME,
        "description": "Enhance the contrast of an image: its darkest pixels become black and its brightest white. "
        "It is useful when text or details in the image are faint.",
        "parameters": {
            "type": "object",
            "properties": {
                "target_image": {
                    "type": "number",
                    "description": "The index of the image to enhance. Index from 1 to the number of images.",
                },
            },
            "required": ["target_image"],
        },
    },
}


def apply(context: OpContext, call: OpCall) -> OpResult:
    """The image as kept, each channel stretched to the full range (PIL's autocontrast)."""
    target = context.target(call.arguments["target_image"])
    return image_result(context, target, ImageOps.autocontrast(target.image.convert("RGB"), CUTOFF), "enhanced")


def discrete(cells: Sequence[NormBox]) -> list[DiscreteChoice]:
    """Enhance image 1."""
    return [DiscreteChoice(OpCall(NAME, {"target_image": 1}))]


CONTRAST = register_op(NAME, CONTRAST_TOOL, apply, discrete=discrete)
