"""`fine_detail`: V*-like questions about one or two small tags on a large cluttered image."""

from __future__ import annotations

import math
from functools import partial
from typing import Any, NamedTuple

import numpy as np

from pixel_gym.suites.base import DISTRACTORS, SOURCE, IntRange, Suite, check_range, draw_int, draw_size, symbol_choices
from pixel_gym.suites.drawing import FRAME_CELLS, NAMED_COLORS, PixelBox, free_spot, tag_annotation, tag_scene, tag_size
from pixel_gym.suites.glyphs import SYMBOLS
from pixel_gym.tasks import Box, ImageRef, Task

CATEGORIES = ("attribute", "relative_position")
EDGE = 20  # tags keep this many pixels from the image border
MIN_PAIR_DX = 60  # horizontal centre distance of a relative-position pair, so left/right is unambiguous


class _Question(NamedTuple):
    text: str
    choices: tuple[str, ...]
    answer: str
    tags: list[dict[str, Any]]
    targets: list[int]  # indices of the tags that show the answer, in `tags`
    extra: dict[str, Any]  # what the question names, for the annotations


class FineDetailSuite(Suite):
    """Small symbol tags (11x13 cells each at the default frame) scattered over a cluttered image.

    Categories: "attribute" asks which symbol is printed on the tag of a named colour (each colour is used once;
    the other tags are gray), with the symbol and its nearest look-alikes as options; "relative_position" asks
    whether the tag showing X is left or right of the tag showing Y (two options; the pair's centres lie within
    `max_pair_distance` pixels, so one crop covers both). `target_boxes` holds the tag, or the union of the pair.
    `annotations["locatable"]`: whether the target can be found in the global view (the colour of an attribute
    question's tag shows there; the glyphs a relative-position question names do not).

    Parameters:
        image_size: (min, max) pixels of each side, drawn independently (random aspect); (448, 448) is fixed.
        num_tags: (min, max) tags per image (fewer if they do not fit).
        num_colored: (min, max) tags with a distinct named colour in attribute questions (at most 9).
        num_choices: options of an attribute question (2 to 6).
        cell: pixels per glyph cell (a tag is 22x26 px at the default 2). In the 256-token global view a 2-px
            cell shrinks to 0.4-0.6 px and reads as blank; 3-px cells stay partly decodable there.
        frame: cells of a tag's coloured frame (a tag is (7 + 2 frame) x (9 + 2 frame) cells). The frame is what
            the global view shows of a tag: a wider one makes the tag easier to find there, the glyph no easier to
            read.
        clutter: (min, max) background shapes.
        max_pair_distance: largest centre distance of a relative-position pair, in pixels.
        categories: the question types to draw from.
        distractors: the wrong options of an attribute question: the symbol's nearest "lookalike"s, or "random"
            other symbols (easier to tell apart once the glyph is legible).
    Easy setting for tiny agents: image_size=(448, 448), num_tags=(4, 8), num_colored=(2, 4), num_choices=2,
    cell=4, clutter=(0, 10).
    """

    name = "fine_detail"

    def __init__(
        self,
        size: int = 1000,
        seed: int = 0,
        split: str = "train",
        *,
        image_size: IntRange = (1500, 2500),
        num_tags: IntRange = (20, 40),
        num_colored: IntRange = (5, 9),
        num_choices: int = 4,
        cell: int = 2,
        frame: int = FRAME_CELLS,
        clutter: IntRange = (60, 120),
        max_pair_distance: int = 250,
        categories: tuple[str, ...] = CATEGORIES,
        distractors: str = "lookalike",
    ) -> None:
        super().__init__(size, seed, split)
        self.image_size = check_range("image_size", image_size, 128)
        self.num_tags = check_range("num_tags", num_tags, 2)
        self.num_colored = check_range("num_colored", num_colored, 1)
        if self.num_colored[1] > len(NAMED_COLORS):
            raise ValueError(f"num_colored is at most {len(NAMED_COLORS)} (the named colours)")
        if not 2 <= num_choices <= 6:
            raise ValueError(f"num_choices must be 2 to 6, got {num_choices}")
        if cell < 1:
            raise ValueError(f"cell must be >= 1, got {cell}")
        if frame < 1:
            raise ValueError(f"frame must be >= 1, got {frame}")
        self.num_choices, self.cell, self.frame = num_choices, cell, frame
        if max_pair_distance < self._min_dx():
            raise ValueError(f"max_pair_distance must be at least {self._min_dx()} pixels")
        unknown = set(categories) - set(CATEGORIES)
        if not categories or unknown:
            raise ValueError(f"categories must be a non-empty subset of {CATEGORIES}, got {categories!r}")
        if self.image_size[0] < 2 * EDGE + max(tag_size(cell, frame)) + self._min_dx():
            raise ValueError(f"image_size {image_size} is too small for tags with {cell}-pixel cells")
        self.clutter = check_range("clutter", clutter, 0)
        self.max_pair_distance = max_pair_distance
        self.categories = tuple(categories)
        if distractors not in DISTRACTORS:
            raise ValueError(f"distractors must be one of {DISTRACTORS}, got {distractors!r}")
        self.distractors = distractors

    def make_task(self, index: int, rng: np.random.Generator) -> Task:
        size = draw_size(rng, self.image_size)
        category = self.categories[int(rng.integers(len(self.categories)))]
        build = self._attribute if category == "attribute" else self._relative_position
        q = build(rng, size)
        order = [int(i) for i in rng.permutation(len(q.tags))]  # the targets must not be recognisable by position
        tags = [q.tags[i] for i in order]
        targets = [order.index(i) for i in q.targets]
        scene = partial(tag_scene, size, tags, draw_int(rng, self.clutter), int(rng.integers(2**63)))
        task_id = self.task_id(index)
        return Task(
            id=task_id, question=q.text, answers=(q.answer,), metric="choice", choices=q.choices,
            images=(ImageRef(scene, name=task_id),), category=category, source=SOURCE,
            target_boxes=(Box.union([Box(*tags[i]["box"]) for i in targets]),),
            annotations={"image_size": list(size), "tags": tags, "targets": targets,
                         "locatable": category == "attribute", **q.extra},
        )

    def _attribute(self, rng: np.random.Generator, size: tuple[int, int]) -> _Question:
        count = draw_int(rng, self.num_tags)
        colors = list(rng.choice(list(NAMED_COLORS), min(draw_int(rng, self.num_colored), count), replace=False))
        spots = self._scatter(rng, size, count, [])
        tags = [
            tag_annotation(x, y, self.cell, self.frame, symbol=str(rng.choice(list(SYMBOLS))),
                           color=str(colors[i]) if i < len(colors) else "gray")
            for i, (x, y) in enumerate(spots)
        ]
        choices, answer = symbol_choices(rng, tags[0]["symbol"], self.num_choices, distractors=self.distractors)
        question = f"Which symbol is printed on the {tags[0]['color']} tag?"
        return _Question(question, choices, answer, tags, [0], {"color": tags[0]["color"]})

    def _relative_position(self, rng: np.random.Generator, size: tuple[int, int]) -> _Question:
        first, second = (str(s) for s in rng.choice(list(SYMBOLS), 2, replace=False))
        pair = self._pair(rng, size)
        spots = self._scatter(rng, size, draw_int(rng, self.num_tags) - 2, pair)
        others = [s for s in SYMBOLS if s not in (first, second)]
        symbols = [first, second] + [str(rng.choice(others)) for _ in spots]
        colors = [*NAMED_COLORS, "gray"]
        tags = [tag_annotation(x, y, self.cell, self.frame, symbol=symbol, color=str(rng.choice(colors)))
                for (x, y), symbol in zip(pair + spots, symbols)]
        choices = ("left", "right")
        answer = "A" if tags[0]["box"][0] < tags[1]["box"][0] else "B"
        question = f"Is the tag showing '{first}' to the left or to the right of the tag showing '{second}'?"
        return _Question(question, choices, answer, tags, [0, 1], {"query": [first, second]})

    def _pair(self, rng: np.random.Generator, size: tuple[int, int]) -> list[tuple[int, int]]:
        """Two tag corners at most `max_pair_distance` apart (centres) and clearly apart horizontally."""
        width, height = tag_size(self.cell, self.frame)
        x, y = self._corner(rng, size)
        reach = self.max_pair_distance
        for _ in range(100):
            dx = int(rng.integers(self._min_dx(), reach + 1)) * (1 if rng.random() < 0.5 else -1)
            dy_max = int(min(math.sqrt(reach**2 - dx**2), 3 * height))
            dy = int(rng.integers(-dy_max, dy_max + 1))
            if EDGE <= x + dx <= size[0] - width - EDGE and EDGE <= y + dy <= size[1] - height - EDGE:
                return [(x, y), (x + dx, y + dy)]
            x, y = self._corner(rng, size)
        raise ValueError(f"cannot place a tag pair in a {size[0]}x{size[1]} image")

    def _corner(self, rng: np.random.Generator, size: tuple[int, int]) -> tuple[int, int]:
        width, height = tag_size(self.cell, self.frame)
        return int(rng.integers(EDGE, size[0] - width - EDGE + 1)), int(rng.integers(EDGE, size[1] - height - EDGE + 1))

    def _min_dx(self) -> int:
        """Smallest horizontal centre distance of a pair: clearly apart, and the tags never touch."""
        return max(MIN_PAIR_DX, tag_size(self.cell, self.frame)[0] + self.cell)

    def _scatter(
        self, rng: np.random.Generator, size: tuple[int, int], count: int, placed: list[tuple[int, int]]
    ) -> list[tuple[int, int]]:
        """Up to `count` new tag corners that keep clear of `placed` and of each other."""
        width, height = tag_size(self.cell, self.frame)
        taken: list[PixelBox] = [(x, y, x + width, y + height) for x, y in placed]
        area = (EDGE, EDGE, size[0] - EDGE, size[1] - EDGE)
        spots = []
        for _ in range(count):
            spot = free_spot(rng, (width, height), area, taken, gap=2 * self.cell)
            if spot is None:
                break
            spots.append(spot)
            taken.append((spot[0], spot[1], spot[0] + width, spot[1] + height))
        return spots
