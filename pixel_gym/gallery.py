"""A gallery PNG of example episodes: each rendered by `pixel_gym.render.render_episode` under a caption line."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

CAPTION_HEIGHT = 22
BACKGROUND = (24, 24, 24)
TEXT_COLOR = (235, 235, 235)


def save_gallery(panels: Sequence[tuple[np.ndarray, str]], path: str | Path) -> Path:
    """Stack (rendered episode, caption) panels vertically into one PNG at `path`."""
    if not panels:
        raise ValueError("a gallery needs at least one panel")
    images = [Image.fromarray(frame) for frame, _ in panels]
    width = max(image.width for image in images)
    canvas = Image.new("RGB", (width, sum(image.height + CAPTION_HEIGHT for image in images)), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    top = 0
    for image, (_, caption) in zip(images, panels):
        draw.text((6, top + 5), caption, fill=TEXT_COLOR)
        canvas.paste(image, (0, top + CAPTION_HEIGHT))
        top += CAPTION_HEIGHT + image.height
    path = Path(path)
    canvas.save(path)
    return path
