"""Tag sheets: dense pages of the suite's tags at a look crop's served scale, the reading warm-up's data.

A look crop holds one or two tags, so a warm-up step on 8 crops labels about a dozen image tokens, and 350 such
steps left the crop tokens' symbol accuracy at chance (0.03, chance 0.04). A sheet packs about 40 tags, drawn
with the suite's own `draw_tag` on its cluttered background at a random position each (every offset of a glyph
against the 14-px patches) and resized, as the env resizes a crop, to the scale the look crops are served at:
each step then labels some 400 tokens, and the same tower reads (`rl_runner.vision_warmup`, README).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from PIL import Image

from pixel_gym.suites.drawing import FRAME_CELLS, FRAME_COLORS, free_spot, tag_annotation, tag_scene, tag_size
from pixel_gym.suites.glyphs import SYMBOLS
from rl_runner.vision_warmup import LabelledView, symbol_labels

# Served pixels per source pixel of the main job's look crops (the default setting's 5th-95th percentile is
# 0.63-0.82: tests/test_tag_sheets.py), drawn uniformly
SHEET_SCALES = (0.6, 0.9)
SHEET_TOKENS = 12  # a sheet is this many image tokens a side: the 144-token serving budget of a crop
SHEET_TAGS = 60  # tags tried per sheet (as many as fit without touching)
FRAME_CHOICES = tuple(name for name in FRAME_COLORS if name != "white")  # the suites' tag colours


def tag_sheet(rng: np.random.Generator, token_side: int, cell: int = 2, frame: int = FRAME_CELLS,
              scales: tuple[float, float] = SHEET_SCALES) -> LabelledView:
    """A `SHEET_TOKENS`-token-square sheet of tags with `cell`-px glyph cells and `frame`-cell frames, drawn at a
    scale from `scales` below the source and labelled per `token_side`-px token (`symbol_labels`)."""
    served = SHEET_TOKENS * token_side
    source = int(served / rng.uniform(*scales))
    width, height = tag_size(cell, frame)
    taken: list[tuple[int, int, int, int]] = []
    tags = []
    for _ in range(SHEET_TAGS):
        spot = free_spot(rng, (width, height), (0, 0, source, source), taken, gap=2 * cell)
        if spot is None:
            break
        taken.append((spot[0], spot[1], spot[0] + width, spot[1] + height))
        tags.append(tag_annotation(*spot, cell, frame, symbol=str(rng.choice(list(SYMBOLS))),
                                   color=str(rng.choice(FRAME_CHOICES))))
    clutter, seed = int(rng.integers(5, 20)), int(rng.integers(1 << 30))
    image = tag_scene((source, source), tags, clutter, seed).resize((served, served), Image.Resampling.BICUBIC)
    grid = (SHEET_TOKENS, SHEET_TOKENS)
    return LabelledView(np.asarray(image), symbol_labels((0, 0, source, source), grid, tags))


def sheet_stream(seed: int, token_side: int, cell: int = 2, frame: int = FRAME_CELLS) -> Iterator[LabelledView]:
    """Endless tag sheets (`tag_sheet`) from one seed."""
    rng = np.random.default_rng(seed)
    while True:
        yield tag_sheet(rng, token_side, cell, frame)
