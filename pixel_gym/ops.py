"""Pixel operations: pure functions on PIL images.

`zoom_in` crops a box and resizes it into a pixel budget; `select_frames` returns chosen video frames at full
resolution. The box rules follow the paper's released `crop_image_normalized` tool: values all <= 1 are
normalized coordinates, anything else is absolute pixels of the image being cropped; a fixed normalized padding
(0.1) widens the box on each side before clamping to the image; a crop under 28x28 pixels is refused.
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


def resolve_box(
    bbox: Sequence[float],
    size: tuple[int, int],
    convention: BoxConvention = "auto",
    padding: float = 0.1,
    min_side: int = MIN_CROP_SIDE,
) -> PixelBox:
    """Turn a requested box into an integer pixel box inside an image of `size` (width, height).

    Raises `OpError` with a readable message for malformed, empty, inverted, outside or too-small boxes.
    """
    values = _four_finite_numbers(bbox)
    width, height = size
    x1, y1, x2, y2 = values
    if x2 <= x1 or y2 <= y1:
        raise OpError(f"bbox_2d {list(values)} is empty or inverted: need x1 < x2 and y1 < y2")
    normalized = _is_normalized(values, convention)
    if normalized:
        nx1, ny1, nx2, ny2 = x1, y1, x2, y2
    else:
        nx1, ny1, nx2, ny2 = x1 / width, y1 / height, x2 / width, y2 / height
    if nx2 <= 0 or ny2 <= 0 or nx1 >= 1 or ny1 >= 1:
        frame = "[0, 1]" if normalized else f"the {width}x{height} image"
        raise OpError(f"bbox_2d {list(values)} lies outside {frame}")
    nx1, ny1 = max(0.0, nx1 - padding), max(0.0, ny1 - padding)
    nx2, ny2 = min(1.0, nx2 + padding), min(1.0, ny2 + padding)
    # 1e-6 absorbs float error so that 0.55 * 800 is 440, not 441
    box = (
        int(nx1 * width + 1e-6),
        int(ny1 * height + 1e-6),
        min(math.ceil(nx2 * width - 1e-6), width),
        min(math.ceil(ny2 * height - 1e-6), height),
    )
    crop_w, crop_h = box[2] - box[0], box[3] - box[1]
    if crop_w < min_side or crop_h < min_side:
        raise OpError(f"the crop would be {crop_w}x{crop_h} pixels; it must be at least {min_side}x{min_side}")
    return box


def _four_finite_numbers(bbox: Sequence[float]) -> tuple[float, float, float, float]:
    if isinstance(bbox, (str, bytes)) or not isinstance(bbox, (Sequence, np.ndarray)):
        raise OpError(f"bbox_2d must be a list of 4 numbers [x1, y1, x2, y2], got {bbox!r}")
    if len(bbox) != 4:
        raise OpError(f"bbox_2d must have 4 numbers [x1, y1, x2, y2], got {len(bbox)}")
    values = []
    for value in bbox:
        if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
            raise OpError(f"bbox_2d values must be numbers, got {value!r}")
        if not math.isfinite(float(value)):
            raise OpError(f"bbox_2d values must be finite, got {value!r}")
        values.append(float(value))
    return (values[0], values[1], values[2], values[3])


def _is_normalized(values: Sequence[float], convention: BoxConvention) -> bool:
    if convention == "normalized":
        return True
    if convention == "pixels":
        return False
    if convention != "auto":
        raise ValueError(f"unknown box convention {convention!r}")
    return all(v <= 1.0 for v in values)


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
    """Check 1-based frame indices; returns them 0-based, duplicates dropped, order kept."""
    if isinstance(indices, (str, bytes)) or not isinstance(indices, (Sequence, np.ndarray)):
        raise OpError(f"target_frames must be a list of frame numbers, got {indices!r}")
    if len(indices) == 0:
        raise OpError("target_frames is empty: name at least one frame")
    chosen: list[int] = []
    for value in indices:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            else:
                raise OpError(f"frame numbers must be integers, got {value!r}")
        if not 1 <= value <= num_frames:
            raise OpError(f"frame {value} is out of range: frames are numbered 1 to {num_frames}")
        if value - 1 not in chosen:
            chosen.append(int(value) - 1)
    if len(chosen) > max_selected:
        raise OpError(f"{len(chosen)} frames requested; select at most {max_selected}")
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
