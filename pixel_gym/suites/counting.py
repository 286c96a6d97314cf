"""`counting`: TallyQA-complex-like counts of one symbol in a cluster of look-alike tags."""

from __future__ import annotations

import math
from functools import partial

import numpy as np

from pixel_gym.suites.base import SOURCE, IntRange, Suite, check_range, draw_int, draw_size
from pixel_gym.suites.drawing import NAMED_COLORS, tag_annotation, tag_scene, tag_size
from pixel_gym.suites.glyphs import LETTER_SYMBOLS, lookalikes
from pixel_gym.tasks import Box, ImageRef, Task

EDGE = 20


class CountingSuite(Suite):
    """A tight grid-like cluster of small tags in one region of a cluttered image.

    "How many tags show the symbol 'K'?": some tags show the symbol, some its nearest look-alike, the rest other
    near look-alikes. The answer (metric "count") is uniform in 0..max_count; `target_boxes` is the cluster.

    Parameters:
        image_size: (min, max) pixels of each side, drawn independently; (448, 448) is a fixed square.
        max_count: the largest answer.
        num_lookalikes: (min, max) tags showing the nearest look-alike of the symbol.
        num_distractors: (min, max) tags showing other near look-alikes.
        cell: pixels per glyph cell (tags are 11x13 cells, the cluster grid has a 14x16-cell pitch); the
            default 2 is legible at full resolution and blank in the 256-token global view.
        clutter: (min, max) background shapes.
    Easy setting for tiny agents: image_size=(448, 448), max_count=4, num_lookalikes=(1, 2),
    num_distractors=(0, 2), cell=4, clutter=(0, 10).
    """

    name = "counting"

    def __init__(
        self,
        size: int = 1000,
        seed: int = 0,
        split: str = "train",
        *,
        image_size: IntRange = (1500, 2500),
        max_count: int = 9,
        num_lookalikes: IntRange = (1, 4),
        num_distractors: IntRange = (2, 6),
        cell: int = 2,
        clutter: IntRange = (60, 120),
    ) -> None:
        super().__init__(size, seed, split)
        if max_count < 1:
            raise ValueError(f"max_count must be >= 1, got {max_count}")
        if cell < 1:
            raise ValueError(f"cell must be >= 1, got {cell}")
        self.max_count, self.cell = max_count, cell
        self.num_lookalikes = check_range("num_lookalikes", num_lookalikes, 0)
        self.num_distractors = check_range("num_distractors", num_distractors, 0)
        self.clutter = check_range("clutter", clutter, 0)
        self.image_size = check_range("image_size", image_size, 64)
        if self.num_lookalikes[0] + self.num_distractors[0] < 1:
            raise ValueError("the cluster needs at least one tag besides the counted symbol")
        largest = self._grid_side(max_count + self.num_lookalikes[1] + self.num_distractors[1])
        if largest * 16 * cell + 2 * EDGE > self.image_size[0]:
            raise ValueError(f"a cluster of up to {largest}x{largest} tags does not fit in image_size {image_size}")

    def make_task(self, index: int, rng: np.random.Generator) -> Task:
        size = draw_size(rng, self.image_size)
        symbol = str(rng.choice(list(LETTER_SYMBOLS)))
        nearest, *others = lookalikes(symbol, 4, rng)
        count = int(rng.integers(0, self.max_count + 1))
        symbols = ([symbol] * count + [nearest] * draw_int(rng, self.num_lookalikes)
                   + [str(rng.choice(others)) for _ in range(draw_int(rng, self.num_distractors))])
        colors = list(NAMED_COLORS)
        tags = [tag_annotation(x, y, self.cell, symbol=s, color=str(rng.choice(colors)))
                for (x, y), s in zip(self._cluster(rng, size, len(symbols)), rng.permutation(symbols).tolist())]
        scene = partial(tag_scene, size, tags, draw_int(rng, self.clutter), int(rng.integers(2**63)))
        task_id = self.task_id(index)
        cluster = Box.union([Box(*t["box"]) for t in tags], label="cluster")
        return Task(
            id=task_id, question=f"How many tags show the symbol '{symbol}'?", answers=(str(count),),
            metric="count", answer_type="number", images=(ImageRef(scene, name=task_id),), category="counting",
            source=SOURCE, target_boxes=(cluster,),
            annotations={"image_size": list(size), "tags": tags, "symbol": symbol},
        )

    @staticmethod
    def _grid_side(count: int) -> int:
        return max(1, math.ceil(math.sqrt(count * 1.25)))

    def _cluster(self, rng: np.random.Generator, size: tuple[int, int], count: int) -> list[tuple[int, int]]:
        """Tag corners in random cells of a small jittered grid placed somewhere in the image."""
        side = self._grid_side(count)
        pitch_x, pitch_y = 14 * self.cell, 16 * self.cell
        width, height = tag_size(self.cell)
        x0 = int(rng.integers(EDGE, size[0] - side * pitch_x - EDGE + 1))
        y0 = int(rng.integers(EDGE, size[1] - side * pitch_y - EDGE + 1))
        cells = rng.choice(side * side, count, replace=False)
        jitter = rng.integers(0, [pitch_x - width - self.cell + 1, pitch_y - height - self.cell + 1], (count, 2))
        return [(x0 + int(c % side) * pitch_x + int(jx), y0 + int(c // side) * pitch_y + int(jy))
                for c, (jx, jy) in zip(cells, jitter)]
