"""Pixel operations: pure functions on PIL images.

`zoom_in` crops a box and resizes it into a pixel budget; `select_frames` returns chosen video frames fitted to a
budget. The box rules are those of the paper's released `crop_image_normalized` tool: the values are normalized
coordinates only if all four are < 1, anything else is absolute pixels of the image being cropped; a fixed
normalized padding (0.1) widens the box on each side, the box is clamped to [0, 1] and cut as PIL cuts a float box
(coordinates rounded); a crop must be wider and taller than 28 pixels. Point and inverted boxes are not refused
before padding (`refuse_degenerate=True` and `normalized_if="all_at_most_1"` are pixel-gym's older, stricter rules).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image

from pixel_gym.tasks import ImageRef

PATCH = 28  # Qwen2.5-VL: 14-px patches merged 2x2
MIN_CROP_SIDE = 28
MAX_SELECTED_FRAMES = 8

BoxConvention = Literal["auto", "normalized", "pixels"]
PixelBox = tuple[int, int, int, int]


class OpError(ValueError):
    """A pixel operation that cannot run; the message is shown to the model as an execution error."""


@dataclass(frozen=True)
class PixelBudget:
    """Bounds on the pixel count of an image after resizing (multiples of the 28-px patch grid)."""

    min_pixels: int
    max_pixels: int

    def __post_init__(self) -> None:
        if not 0 < self.min_pixels <= self.max_pixels:
            raise ValueError(f"need 0 < min_pixels <= max_pixels, got {self.min_pixels}, {self.max_pixels}")

    @classmethod
    def tokens(cls, min_tokens: int, max_tokens: int) -> PixelBudget:
        """A budget in visual tokens of Qwen2.5-VL (one token per 28x28 pixels)."""
        return cls(min_tokens * PATCH * PATCH, max_tokens * PATCH * PATCH)


def smart_resize(
    height: int, width: int, budget: PixelBudget, factor: int = PATCH
) -> tuple[int, int]:
    """Qwen2.5-VL's resize rule: sides rounded to `factor`, pixel count brought into the budget, aspect kept."""
    if height <= 0 or width <= 0:
        raise OpError(f"image has no pixels ({width}x{height})")
    if max(height, width) / min(height, width) > 200:
        raise OpError(f"aspect ratio of {width}x{height} is over 200:1")
    new_h = max(factor, round(height / factor) * factor)
    new_w = max(factor, round(width / factor) * factor)
    if new_h * new_w > budget.max_pixels:
        scale = math.sqrt(height * width / budget.max_pixels)
        new_h = max(factor, math.floor(height / scale / factor) * factor)
        new_w = max(factor, math.floor(width / scale / factor) * factor)
    elif new_h * new_w < budget.min_pixels:
        scale = math.sqrt(budget.min_pixels / (height * width))
        new_h = math.ceil(height * scale / factor) * factor
        new_w = math.ceil(width * scale / factor) * factor
    return new_h, new_w


def fit_to_budget(image: Image.Image, budget: PixelBudget) -> Image.Image:
    """Resize an image with `smart_resize` (bicubic); returns the same object when no resize is needed."""
    new_h, new_w = smart_resize(image.height, image.width, budget)
    if (new_w, new_h) == image.size:
        return image
    return image.resize((new_w, new_h), Image.Resampling.BICUBIC)


NormalizedRule = Literal["all_below_1", "all_at_most_1"]


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


def short_repr(value: object, limit: int = 80) -> str:
    """A repr for error messages, cut to `limit` characters (a model may send megabytes)."""
    if isinstance(value, int) and value.bit_length() > 200:  # repr of an int over 4,300 digits raises
        return f"<an integer of about {int(value.bit_length() * math.log10(2)) + 1} digits>"
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


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


def sample_frame_indices(num_frames: int, num_shown: int) -> list[int]:
    """Uniformly spaced frame indices (segment midpoints), as video VLMs subsample a clip."""
    if num_frames <= 0:
        raise ValueError("a video needs at least one frame")
    count = min(num_frames, num_shown)
    return [int((i + 0.5) * num_frames / count) for i in range(count)]


def validate_frame_indices(
    indices: Sequence[int], num_frames: int, max_selected: int = MAX_SELECTED_FRAMES
) -> list[int]:
    """Check 1-based frame indices; returns them 0-based, in order, duplicates kept (the released tool's rule)."""
    if isinstance(indices, (str, bytes)) or not isinstance(indices, (Sequence, np.ndarray)):
        raise OpError(f"target_frames must be a list of frame numbers, got {short_repr(indices)}")
    if len(indices) == 0:
        raise OpError("target_frames is empty: name at least one frame")
    if len(indices) > max_selected:
        raise OpError(f"You have selected {len(indices)} frames in total. Think again which frames you need to "
                      f"check in details (no more than {max_selected} frames)")
    chosen: list[int] = []
    for value in indices:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            else:
                raise OpError(f"frame numbers must be integers, got {short_repr(value)}")
        if not 1 <= value <= num_frames:
            raise OpError(f"There are {num_frames} frames numbered in range [1,{num_frames}]. "
                          "Your selection is out of range.")
        chosen.append(int(value) - 1)
    return chosen


def select_frames(
    frames: Sequence[ImageRef | Image.Image],
    indices: Sequence[int],
    budget: PixelBudget,
    max_selected: int = MAX_SELECTED_FRAMES,
) -> list[Image.Image]:
    """Return the frames named by 1-based `indices`, decoded at full resolution and fitted to `budget`."""
    chosen = validate_frame_indices(indices, len(frames), max_selected)
    return [fit_to_budget(_decode(frames[i]), budget) for i in chosen]


def _decode(frame: ImageRef | Image.Image) -> Image.Image:
    return frame if isinstance(frame, Image.Image) else frame.open()
