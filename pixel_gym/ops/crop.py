"""`crop_image_normalized`: the released zoom-in tool, registered like any other operation.

The box rules are those of the paper's released tool: the values are normalized coordinates only if all four are
< 1, anything else is absolute pixels of the image being cropped; a fixed normalized padding (0.1) widens the box
on each side, the box is clamped to [0, 1] and cut as PIL cuts a float box (coordinates rounded); a crop must be
wider and taller than 28 pixels. Point and inverted boxes are not refused before padding (`refuse_degenerate=True`
and `normalized_if="all_at_most_1"` are pixel-gym's older, stricter rules). The lenient parser also reads
`crop_image` and `image_zoom_in_tool` (pixels) and `zoom_in`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache, partial
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
from gymnasium import spaces
from PIL import Image

from pixel_gym.ops.base import OpError, PixelBox, PixelBudget, array_length, fit_to_budget, short_repr
from pixel_gym.ops.registry import DiscreteChoice, NormBox, OpAction, OpResult, StructuredForm, register_op

if TYPE_CHECKING:
    from pixel_gym.episode import Episode, View
    from pixel_gym.executor import Limits, OpContext

NAME = "crop_image_normalized"
MIN_CROP_SIDE = 28
BoxConvention = Literal["auto", "normalized", "pixels"]
NormalizedRule = Literal["all_below_1", "all_at_most_1"]
# The names a call may use (the aliases only with the lenient parser), with the box convention each implies.
CONVENTIONS: dict[str, BoxConvention] = {
    NAME: "auto",  # the paper's tool: normalized, or pixels unless all four values are < 1
    "crop_image": "pixels",  # Qwen2.5-VL grounding style: absolute pixels
    "image_zoom_in_tool": "pixels",  # DeepEyes / verl-tool name
    "zoom_in": "auto",
}

CROP_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": NAME,
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


@dataclass(frozen=True)
class ZoomIn(OpAction):
    """A crop of `bbox` (normalized or pixels, by `convention`) from image `target_image`."""

    op: ClassVar[str] = NAME
    bbox: tuple[float, ...]
    target_image: int = 1  # 1-based over all images shown so far
    convention: BoxConvention = "auto"

    def call_arguments(self) -> dict[str, Any]:
        return {"bbox_2d": [round(v, 4) for v in self.bbox], "target_image": self.target_image}


def crop_result_text(width: int, height: int) -> str:
    """The released crop result; `width` x `height` is the crop as kept (before any serving re-resize)."""
    return f"\nHere is the cropped image (Image Size: {width}x{height}):"


def resolve_box(
    bbox: Sequence[float],
    size: tuple[int, int],
    convention: BoxConvention = "auto",
    padding: float = 0.1,
    min_side: int = MIN_CROP_SIDE,
    normalized_if: NormalizedRule = "all_below_1",
    refuse_degenerate: bool = False,
) -> PixelBox:
    """The pixel box the released tool cuts from an image of `size` (width, height) for a requested box.

    Normalized (convention "auto": when the `normalized_if` rule holds) or pixels of this image; `padding` added
    on each side in normalized units; clamped to [0, 1]; scaled and rounded as PIL rounds a float crop box. The
    crop must exceed `min_side` pixels in width and height. Raises `OpError` with a readable message.
    """
    values = _four_finite_numbers(bbox)
    width, height = size
    x1, y1, x2, y2 = values
    if refuse_degenerate and (x2 <= x1 or y2 <= y1):
        raise OpError(f"bbox_2d {list(values)} is empty or inverted: need x1 < x2 and y1 < y2")
    if not _is_normalized(values, convention, normalized_if):
        x1, y1, x2, y2 = x1 / width, y1 / height, x2 / width, y2 / height
    nx1, ny1 = _clamp01(x1 - padding), _clamp01(y1 - padding)
    nx2, ny2 = _clamp01(x2 + padding), _clamp01(y2 + padding)
    if nx2 < nx1 or ny2 < ny1:
        raise OpError(f"bbox_2d {list(values)} is inverted even after padding: need x1 <= x2 and y1 <= y2")
    box = (round(nx1 * width), round(ny1 * height), round(nx2 * width), round(ny2 * height))
    crop_w, crop_h = box[2] - box[0], box[3] - box[1]
    if crop_w <= min_side or crop_h <= min_side:
        raise OpError(f"Cropped image is too small: {crop_w}x{crop_h} (both sides must exceed {min_side} pixels)")
    return box


def _clamp01(value: float) -> float:
    return min(max(0.0, value), 1.0)


def _four_finite_numbers(bbox: Sequence[float]) -> tuple[float, float, float, float]:
    if isinstance(bbox, (str, bytes)) or not isinstance(bbox, (Sequence, np.ndarray)):
        raise OpError(f"bbox_2d must be a list of 4 numbers [x1, y1, x2, y2], got {short_repr(bbox)}")
    if len(bbox) != 4:
        raise OpError(f"bbox_2d must have 4 numbers [x1, y1, x2, y2], got {len(bbox)}")
    values = []
    for value in bbox:
        if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
            raise OpError(f"bbox_2d values must be numbers, got {short_repr(value)}")
        try:
            number = float(value)
        except OverflowError:  # an int of more than ~309 digits
            number = math.inf
        if not math.isfinite(number):
            raise OpError(f"bbox_2d values must be finite numbers, got {short_repr(value)}")
        values.append(number)
    return (values[0], values[1], values[2], values[3])


def _is_normalized(values: Sequence[float], convention: BoxConvention, rule: NormalizedRule) -> bool:
    if convention == "normalized":
        return True
    if convention == "pixels":
        return False
    if convention != "auto":
        raise ValueError(f"unknown box convention {convention!r}")
    if rule == "all_below_1":
        return all(v < 1.0 for v in values)
    if rule == "all_at_most_1":
        return all(v <= 1.0 for v in values)
    raise ValueError(f"unknown normalized_if rule {rule!r}; expected 'all_below_1' or 'all_at_most_1'")


def crop_to_budget(image: Image.Image, box: PixelBox, budget: PixelBudget) -> Image.Image:
    """Crop a pixel box and resize it into the budget (enlarging small crops)."""
    return fit_to_budget(image.crop(box), budget)


@dataclass(frozen=True)
class ZoomResult:
    image: Image.Image
    box: PixelBox


def zoom_in(
    image: Image.Image,
    bbox: Sequence[float],
    budget: PixelBudget,
    convention: BoxConvention = "auto",
    padding: float = 0.1,
) -> ZoomResult:
    """Crop `bbox` (normalized or pixels, see `resolve_box`) and resize the crop into `budget`."""
    box = resolve_box(bbox, image.size, convention, padding)
    return ZoomResult(crop_to_budget(image, box, budget), box)


# --- the operation's parts ---------------------------------------------------------------------------------


def parse(arguments: dict[str, Any], name: str, lenient: bool) -> ZoomIn:
    """A call's arguments as a `ZoomIn` (`bbox` is read where `bbox_2d` is absent), in the box convention of the
    name called; the lenient parser defaults a missing `target_image` to 1."""
    bbox = arguments.get("bbox_2d", arguments.get("bbox"))
    if not isinstance(bbox, (list, tuple)):
        raise OpError(f"bbox_2d must be a list [x1, y1, x2, y2], got {short_repr(bbox)}")
    if "target_image" not in arguments and not lenient:
        raise OpError("target_image is missing: name the image to crop (1 = the original image)")
    target = arguments.get("target_image", 1)
    if isinstance(target, float) and target.is_integer():
        target = int(target)
    if isinstance(target, bool) or not isinstance(target, int):
        raise OpError(f"target_image must be an integer image number, got {short_repr(target)}")
    return ZoomIn(tuple(bbox), target, CONVENTIONS[name])


def apply(context: OpContext, action: ZoomIn) -> OpResult:
    """Cut the box from the view as the released code keeps it (or the full-resolution source, `crop_from`)."""
    target = context.target(action.target_image)
    box = crop_box(target, action.bbox, action.convention, context.limits)
    context.check_room(1)
    view = context.episode.crop_view(target, box, context.limits.crop_from == "source")
    return OpResult(crop_result_text(*view.image.size), [view], source=target, region=view.region)


def crop_box(target: View, bbox: Sequence[float], convention: BoxConvention, limits: Limits) -> PixelBox:
    """The pixel box a zoom on `bbox` cuts from `target` under the env's `limits` (`Episode.crop_view`'s `box`):
    in pixels of the view as kept, or of its full-resolution region with `crop_from="source"`."""
    size = target.frame_size if limits.crop_from == "source" else target.image.size
    return resolve_box(bbox, size, convention, limits.padding, normalized_if=limits.normalized_if,
                       refuse_degenerate=limits.refuse_degenerate)


def discrete(cells: Sequence[NormBox]) -> list[DiscreteChoice]:
    """One zoom into each grid cell of image 1, allowed while the cell is large enough to crop."""
    return [DiscreteChoice(ZoomIn(cell, 1, "normalized"), partial(_cell_croppable, tuple(cell))) for cell in cells]


def _cell_croppable(cell: NormBox, episode: Episode, limits: Limits) -> bool:
    return croppable(cell, episode.views[0].frame_size, limits.padding)


@lru_cache(maxsize=4096)
def croppable(cell: NormBox, size: tuple[int, int], padding: float) -> bool:
    """Whether the normalized box `cell` can be cropped from an image of `size` (crops under 28 px are refused)."""
    try:
        resolve_box(cell, size, "normalized", padding)
    except OpError:
        return False
    return True


def _structured_space(max_images: int, max_frames: int) -> spaces.Space:
    return spaces.Dict(
        {"bbox": spaces.Box(0.0, 1.0, shape=(4,), dtype=np.float32), "target_image": spaces.Discrete(max_images)}
    )


def _from_structured(value: Any, max_frames: int) -> ZoomIn:
    """A `{"bbox": 4 normalized numbers, "target_image": 0-based index}` sample as a `ZoomIn`."""
    if not isinstance(value, Mapping) or "bbox" not in value or "target_image" not in value:
        raise TypeError(f"a zoom needs a dict with 'bbox' (4 numbers) and 'target_image', got {short_repr(value)}")
    if array_length(value["bbox"]) != 4:
        raise ValueError(f"bbox must be an array of 4 numbers, got {short_repr(value['bbox'])}")
    bbox = np.asarray(value["bbox"], dtype=np.float64)
    target = value["target_image"]
    if isinstance(target, (bool, np.bool_)) or not isinstance(target, (int, np.integer, float, np.floating)):
        raise TypeError(f"target_image must be a 0-based image index, got {short_repr(target)}")
    if not float(target).is_integer():
        raise ValueError(f"target_image must be a whole number, got {short_repr(target)}")
    return ZoomIn(tuple(float(v) for v in bbox.reshape(-1)), int(target) + 1, "normalized")


CROP = register_op(
    NAME, CROP_TOOL, apply, parse=parse, trace="rl_runner.traces:zoom_turns", discrete=discrete,
    structured=StructuredForm("zoom", _structured_space, _from_structured), aliases=tuple(CONVENTIONS)[1:],
)
