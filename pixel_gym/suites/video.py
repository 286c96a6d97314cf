"""`video`: MVBench-like clips of moving shapes in which a small symbol plate flashes for a few frames."""

from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from pixel_gym.ops import sample_frame_indices
from pixel_gym.suites.base import SOURCE, IntRange, Suite, check_range, draw_int, symbol_choices
from pixel_gym.suites.drawing import (
    FRAME_COLORS,
    NAMED_COLORS,
    PixelBox,
    draw_tag,
    free_spot,
    smooth_background,
    tag_annotation,
    tag_size,
)
from pixel_gym.suites.glyphs import SYMBOLS
from pixel_gym.tasks import Box, ImageRef, Task

SHAPES = ("circle", "square", "triangle")
EDGE = 10
PLATE_COLOR = "white"


class VideoSuite(Suite):
    """Colored shapes bounce around a static background; once, a white plate with a small symbol appears at one
    place for only a few consecutive frames. Static decoy plates show look-alike symbols for the whole clip.

    "Which symbol flashed briefly?" has the symbol and its look-alikes as options. `key_frames` are the frames
    of the flash; at least one of them is among the `shown_frames` uniformly sampled overview frames
    (`pixel_gym.ops.sample_frame_indices`), so the flash is visible (if not legible) in the overview.

    Parameters:
        frame_size: (width, height) of every frame.
        num_frames: (min, max) frames per clip.
        flash_frames: (min, max) consecutive frames showing the flash.
        num_shapes: (min, max) moving shapes.
        num_choices: options (2 to 6).
        cell: pixels per glyph cell of the plates; the default 2 is legible in a full-resolution selected frame,
            not in the `compact` preset's video of 16-token frames (the paper presets show 128..512-token frames
            and resize selected frames from them, so there a selection adds no resolution).
        num_decoys: static plates showing other options (at most num_choices - 1).
        shown_frames: how many frames the environment shows at reset.
    Easy setting for tiny agents: frame_size=(320, 180), num_frames=(16, 16), num_choices=2, cell=4,
    num_decoys=0.
    """

    name = "video"

    def __init__(
        self,
        size: int = 1000,
        seed: int = 0,
        split: str = "train",
        *,
        frame_size: tuple[int, int] = (640, 360),
        num_frames: IntRange = (16, 64),
        flash_frames: IntRange = (2, 4),
        num_shapes: IntRange = (3, 6),
        num_choices: int = 4,
        cell: int = 2,
        num_decoys: int = 1,
        shown_frames: int = 16,
    ) -> None:
        super().__init__(size, seed, split)
        if not 2 <= num_choices <= 6:
            raise ValueError(f"num_choices must be 2 to 6, got {num_choices}")
        if not 0 <= num_decoys < num_choices:
            raise ValueError(f"num_decoys must be 0 to num_choices - 1, got {num_decoys}")
        if cell < 1 or shown_frames < 1:
            raise ValueError(f"cell and shown_frames must be >= 1, got {cell}, {shown_frames}")
        plate_w, plate_h = tag_size(cell)
        if frame_size[0] < 3 * plate_w or frame_size[1] < 2 * plate_h:
            raise ValueError(f"frame_size {frame_size} is too small for plates of {plate_w}x{plate_h}")
        self.frame_size = (int(frame_size[0]), int(frame_size[1]))
        self.num_frames = check_range("num_frames", num_frames, 1)
        self.flash_frames = check_range("flash_frames", flash_frames, 1)
        self.num_shapes = check_range("num_shapes", num_shapes, 0)
        self.num_choices, self.cell, self.num_decoys, self.shown_frames = num_choices, cell, num_decoys, shown_frames

    def make_task(self, index: int, rng: np.random.Generator) -> Task:
        frames = draw_int(rng, self.num_frames)
        length = min(draw_int(rng, self.flash_frames), frames)
        shown = int(rng.choice(sample_frame_indices(frames, self.shown_frames)))
        start = int(rng.integers(max(0, shown - length + 1), min(shown, frames - length) + 1))
        symbol = str(rng.choice(list(SYMBOLS)))
        choices, answer = symbol_choices(rng, symbol, self.num_choices)
        decoys = [str(s) for s in rng.choice([c for c in choices if c != symbol], self.num_decoys, replace=False)]
        flash, *decoy_plates = self._plates(rng, [symbol, *decoys])
        layout = {"size": list(self.frame_size), "seed": int(rng.integers(2**63)),
                  "shapes": [self._shape(rng) for _ in range(draw_int(rng, self.num_shapes))],
                  "flash": {**flash, "start": start, "length": length}, "decoys": decoy_plates}
        task_id = self.task_id(index)
        return Task(
            id=task_id, question="A small symbol flashes briefly somewhere in the video. Which symbol is it?",
            answers=(answer,), metric="choice", choices=choices,
            video=tuple(ImageRef(partial(render_frame, layout, t), name=f"{task_id}#{t}") for t in range(frames)),
            category="flash", source=SOURCE, key_frames=tuple(range(start, start + length)),
            target_boxes=(Box(*flash["box"], label="flash"),),
            annotations={"frame_size": list(self.frame_size), "flash": layout["flash"], "decoys": decoy_plates,
                         "shapes": layout["shapes"]},
        )

    def _plates(self, rng: np.random.Generator, symbols: list[str]) -> list[dict[str, Any]]:
        size = tag_size(self.cell)
        area = (EDGE, EDGE, self.frame_size[0] - EDGE, self.frame_size[1] - EDGE)
        taken: list[PixelBox] = []
        plates = []
        for symbol in symbols:
            spot = free_spot(rng, size, area, taken, gap=4 * self.cell)
            if spot is None:
                raise ValueError(f"no room for {len(symbols)} plates in frames of {self.frame_size}")
            plates.append(tag_annotation(*spot, self.cell, symbol=symbol, color=PLATE_COLOR))
            taken.append(tuple(plates[-1]["box"]))
        return plates

    def _shape(self, rng: np.random.Generator) -> dict[str, Any]:
        side = int(rng.integers(30, 91))
        return {
            "kind": str(rng.choice(SHAPES)), "side": side,
            "color": list(NAMED_COLORS.values())[int(rng.integers(len(NAMED_COLORS)))],
            "start": [int(rng.integers(0, self.frame_size[0] - side)), int(rng.integers(0, self.frame_size[1] - side))],
            "velocity": [float(v) for v in rng.uniform(2, 10, 2) * rng.choice([-1, 1], 2)],
        }


def _bounce(start: float, velocity: float, t: int, span: int) -> int:
    """Position after t frames of motion that reflects off both ends of [0, span]."""
    if span <= 0:
        return 0
    phase = (start + velocity * t) % (2 * span)
    return int(phase if phase <= span else 2 * span - phase)


def render_frame(layout: dict[str, Any], t: int) -> Image.Image:
    """Frame `t` of the clip a `VideoSuite` layout describes."""
    width, height = layout["size"]
    image = smooth_background(np.random.default_rng(layout["seed"]), (width, height), level=(40, 110))
    draw = ImageDraw.Draw(image)
    for shape in layout["shapes"]:
        side = shape["side"]
        x = _bounce(shape["start"][0], shape["velocity"][0], t, width - side)
        y = _bounce(shape["start"][1], shape["velocity"][1], t, height - side)
        color = tuple(shape["color"])
        if shape["kind"] == "circle":
            draw.ellipse((x, y, x + side, y + side), fill=color)
        elif shape["kind"] == "square":
            draw.rectangle((x, y, x + side, y + side), fill=color)
        else:
            draw.polygon([(x, y + side), (x + side // 2, y), (x + side, y + side)], fill=color)
    flash = layout["flash"]
    plates = layout["decoys"] + ([flash] if flash["start"] <= t < flash["start"] + flash["length"] else [])
    for plate in plates:
        draw_tag(draw, plate["symbol"], *plate["box"][:2], plate["glyph"][2], FRAME_COLORS[plate["color"]])
    return image
