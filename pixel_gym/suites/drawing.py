"""Drawing helpers shared by the suites: smooth backgrounds, clutter, bitmap text, symbol tags, box placement.

Everything is drawn from an explicit `numpy.random.Generator`, so the same stream gives the same pixels.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from pixel_gym.suites.glyphs import text_mask

Color = tuple[int, int, int]
PixelBox = tuple[int, int, int, int]

INK: Color = (20, 20, 20)
PAPER: Color = (246, 246, 240)
NEUTRAL: Color = (150, 150, 150)
# Saturated frame colours, far from the muted backgrounds; each names a tag in a question.
NAMED_COLORS: dict[str, Color] = {
    "red": (225, 30, 30),
    "orange": (255, 140, 0),
    "yellow": (245, 220, 0),
    "green": (20, 165, 60),
    "cyan": (0, 200, 225),
    "blue": (30, 80, 235),
    "purple": (135, 40, 195),
    "pink": (255, 105, 190),
    "brown": (125, 70, 20),
}
FRAME_COLORS: dict[str, Color] = {**NAMED_COLORS, "gray": NEUTRAL, "white": (255, 255, 255)}
FRAME_CELLS = 2  # cells of a tag's coloured frame, unless a suite asks for another

TEXTURE_STEP = 4  # backgrounds are computed at 1/4 resolution, then enlarged (smooth, so no visible blocks)


def smooth_background(
    rng: np.random.Generator, size: tuple[int, int], level: tuple[int, int] = (80, 180), tint: int = 25
) -> Image.Image:
    """Muted low-frequency colour noise with some mid-frequency texture, as an RGB image of `size`."""
    width, height = size
    small = (max(1, math.ceil(width / TEXTURE_STEP)), max(1, math.ceil(height / TEXTURE_STEP)))
    coarse = rng.uniform(*level, (4, 4, 1)) + rng.uniform(-tint, tint, (4, 4, 3))
    detail = rng.uniform(-18, 18, (24, 24, 3)) + 128
    base = _enlarge(coarse, small).astype(np.int16) + _enlarge(detail, small) - 128
    image = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))
    return image.resize(size, Image.Resampling.NEAREST)


def _enlarge(values: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    image = Image.fromarray(np.clip(values, 0, 255).astype(np.uint8))
    return np.asarray(image.resize(size, Image.Resampling.BICUBIC))


def muted_color(rng: np.random.Generator, level: tuple[int, int] = (50, 210), tint: int = 30) -> Color:
    red, green, blue = np.clip(rng.integers(*level) + rng.integers(-tint, tint + 1, 3), 0, 255)
    return int(red), int(green), int(blue)


def draw_clutter(draw: ImageDraw.ImageDraw, rng: np.random.Generator, size: tuple[int, int], count: int,
                 extent: tuple[int, int] = (30, 320)) -> None:
    """Scatter `count` muted ellipses, rectangles, triangles and thick lines over an image of `size`."""
    width, height = size
    for _ in range(count):
        w, h = (int(v) for v in rng.integers(*extent, 2))
        x, y = int(rng.integers(-w // 2, width)), int(rng.integers(-h // 2, height))
        color = muted_color(rng)
        kind = int(rng.integers(4))
        if kind == 0:
            draw.ellipse((x, y, x + w, y + h), fill=color)
        elif kind == 1:
            draw.rectangle((x, y, x + w, y + h), outline=color, width=int(rng.integers(2, 9)))
        elif kind == 2:
            draw.polygon([(x, y + h), (x + w // 2, y), (x + w, y + h)], fill=color)
        else:
            draw.line((x, y, x + w, y + h), fill=color, width=int(rng.integers(2, 7)))


@lru_cache(maxsize=2048)
def _mask_image(text: str, cell: int) -> Image.Image:
    return Image.fromarray(text_mask(text, cell).astype(np.uint8) * 255, "L")


def stamp_text(draw: ImageDraw.ImageDraw, text: str, x: int, y: int, cell: int, color: Color = INK) -> None:
    """Draw `text` in the bitmap font with its top-left at (x, y)."""
    draw.bitmap((x, y), _mask_image(text, cell), fill=color)


def tag_size(cell: int, frame: int = FRAME_CELLS) -> tuple[int, int]:
    """(width, height) of a tag: a 5x7 glyph, one cell of paper around it and a `frame`-cell coloured frame."""
    return (7 + 2 * frame) * cell, (9 + 2 * frame) * cell


def draw_tag(draw: ImageDraw.ImageDraw, symbol: str, x: int, y: int, cell: int, color: Color,
             frame: int = FRAME_CELLS) -> None:
    """A small plate at (x, y): coloured frame, paper panel and `symbol` in ink (see `tag_annotation`)."""
    width, height = tag_size(cell, frame)
    draw.rectangle((x, y, x + width - 1, y + height - 1), fill=color)
    border = frame * cell
    draw.rectangle((x + border, y + border, x + width - 1 - border, y + height - 1 - border), fill=PAPER)
    stamp_text(draw, symbol, x + (frame + 1) * cell, y + (frame + 1) * cell, cell)


def tag_annotation(x: int, y: int, cell: int, frame: int = FRAME_CELLS, **extra: Any) -> dict[str, Any]:
    """Where a tag drawn at (x, y) lies: "box" (pixels), "glyph" (origin x, origin y, cell) of its symbol and
    "frame" (cells of its coloured frame)."""
    width, height = tag_size(cell, frame)
    origin = (frame + 1) * cell
    return {"box": [x, y, x + width, y + height], "glyph": [x + origin, y + origin, cell], "frame": frame, **extra}


def free_spot(
    rng: np.random.Generator,
    size: tuple[int, int],
    area: PixelBox,
    taken: list[PixelBox],
    gap: int,
    tries: int = 300,
) -> tuple[int, int] | None:
    """A random top-left corner for a box of `size` inside `area` that keeps `gap` pixels from every taken box."""
    width, height = size
    x_max, y_max = area[2] - width, area[3] - height
    if x_max < area[0] or y_max < area[1]:
        return None
    xs = rng.integers(area[0], x_max + 1, tries)
    ys = rng.integers(area[1], y_max + 1, tries)
    if not taken:
        return int(xs[0]), int(ys[0])
    boxes = np.asarray(taken)
    for x, y in zip(xs, ys):
        clear = ((x + width + gap <= boxes[:, 0]) | (boxes[:, 2] + gap <= x)
                 | (y + height + gap <= boxes[:, 1]) | (boxes[:, 3] + gap <= y))
        if clear.all():
            return int(x), int(y)
    return None


def tag_scene(size: tuple[int, int], tags: list[dict[str, Any]], clutter: int, seed: int) -> Image.Image:
    """A cluttered background of `size` with tags drawn on top; each tag has "box", "symbol" and "color"."""
    rng = np.random.default_rng(seed)
    image = smooth_background(rng, size)
    draw = ImageDraw.Draw(image)
    draw_clutter(draw, rng, size, clutter)
    for tag in tags:
        x, y = tag["box"][:2]
        draw_tag(draw, tag["symbol"], x, y, tag["glyph"][2], FRAME_COLORS[tag["color"]],
                 tag.get("frame", FRAME_CELLS))
    return image
