"""Rendering an episode as one RGB frame: the overview with every zoom box drawn, beside the latest view."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from pixel_gym.episode import Episode

PANEL_HEIGHT = 448
BOX_COLORS = [(255, 64, 64), (64, 200, 64), (64, 128, 255), (255, 190, 0), (220, 64, 220), (0, 200, 200)]
SELECTED_COLOR = (255, 64, 64)


def render_episode(episode: Episode, height: int = PANEL_HEIGHT) -> np.ndarray:
    """The overview panel (zoom boxes / selected frames marked) and the most recent view, side by side."""
    overview = _video_overview(episode, height) if episode.task.is_video else _image_overview(episode, height)
    latest = _scale_to_height(episode.views[-1].image, height)
    canvas = Image.new("RGB", (overview.width + 8 + latest.width, height), (24, 24, 24))
    canvas.paste(overview, (0, 0))
    canvas.paste(latest, (overview.width + 8, 0))
    return np.asarray(canvas, dtype=np.uint8)


def _image_overview(episode: Episode, height: int) -> Image.Image:
    first = episode.views[0]
    panel = _scale_to_height(first.image, height)
    draw = ImageDraw.Draw(panel)
    scale_x = panel.width / first.frame_size[0]
    scale_y = panel.height / first.frame_size[1]
    crops = [op for op in episode.ops if op.ok and op.region is not None]
    for number, op in enumerate(crops):
        x1, y1, x2, y2 = op.region
        color = BOX_COLORS[number % len(BOX_COLORS)]
        draw.rectangle((x1 * scale_x, y1 * scale_y, x2 * scale_x, y2 * scale_y), outline=color, width=3)
        draw.text((x1 * scale_x + 4, y1 * scale_y + 2), str(number + 1), fill=color)
    return panel


def _video_overview(episode: Episode, height: int) -> Image.Image:
    frames = [v for v in episode.views if v.kind == "frame"]
    selected = {f for op in episode.ops if op.ok for f in op.frames}
    columns = int(np.ceil(np.sqrt(len(frames))))
    rows = int(np.ceil(len(frames) / columns))
    cell_h = height // rows
    cell_w = int(cell_h * frames[0].image.width / frames[0].image.height)
    panel = Image.new("RGB", (cell_w * columns, height), (24, 24, 24))
    draw = ImageDraw.Draw(panel)
    for number, view in enumerate(frames):
        x, y = (number % columns) * cell_w, (number // columns) * cell_h
        panel.paste(view.image.resize((cell_w - 2, cell_h - 2)), (x + 1, y + 1))
        if view.source in selected:
            draw.rectangle((x, y, x + cell_w - 1, y + cell_h - 1), outline=SELECTED_COLOR, width=3)
        draw.text((x + 4, y + 2), str(number + 1), fill=(255, 255, 255))
    return panel


def _scale_to_height(image: Image.Image, height: int) -> Image.Image:
    width = max(1, round(image.width * height / image.height))
    return image.resize((width, height), Image.Resampling.BILINEAR)

