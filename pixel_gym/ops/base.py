"""What the pixel operations share: the error they raise, Qwen2.5-VL's resize rule, pixel budgets, argument checks."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

PATCH = 28  # Qwen2.5-VL: 14-px patches merged 2x2
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


def short_repr(value: object, limit: int = 80) -> str:
    """A repr for error messages, cut to `limit` characters (a model may send megabytes)."""
    if isinstance(value, int) and value.bit_length() > 200:  # repr of an int over 4,300 digits raises
        return f"<an integer of about {int(value.bit_length() * math.log10(2)) + 1} digits>"
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def integer_argument(value: object, name: str) -> int:
    """A whole-number tool argument (an integral float such as 2.0 is accepted, as JSON writes numbers)."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise OpError(f"{name} must be an integer, got {short_repr(value)}")
    return value


def array_length(value: object) -> int | None:
    """Entries of an array or a list (without converting it), or None for anything else."""
    if isinstance(value, np.ndarray):
        return int(value.size)
    return len(value) if isinstance(value, (list, tuple)) else None
