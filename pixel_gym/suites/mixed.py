"""`mixed`: the four built-in suites interleaved (task i comes from suite i mod 4)."""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np

from pixel_gym.suites.base import Suite
from pixel_gym.suites.counting import CountingSuite
from pixel_gym.suites.document import DocumentSuite
from pixel_gym.suites.fine_detail import FineDetailSuite
from pixel_gym.suites.video import VideoSuite
from pixel_gym.tasks import Task

PARTS: tuple[type[Suite], ...] = (FineDetailSuite, CountingSuite, DocumentSuite, VideoSuite)


class MixedSuite(Suite):
    """Round-robin over fine_detail, counting, document and video; tasks keep their own suite's ids.

    Parameters: a dict of keyword parameters per part, by suite name, and shared parameters, each given to every
    part that takes it (a part's own dict wins), e.g. `MixedSuite(image_size=(448, 448), video={"num_frames":
    (16, 16)})`. So the trainer's default `suite_kwargs` (fine-detail parameters) also build a mixed suite.
    """

    name = "mixed"

    def __init__(self, size: int = 1000, seed: int = 0, split: str = "train", **params: Any) -> None:
        super().__init__(size, seed, split)
        names = {part.name for part in PARTS}
        shared = {key: value for key, value in params.items() if key not in names}
        unknown = sorted(key for key in shared if not any(key in _parameters(part) for part in PARTS))
        if unknown:
            raise ValueError(f"unknown parts or parameters {unknown} of the mixed suite; parts: {sorted(names)}")
        self.parts = [
            part(len(range(k, size, len(PARTS))), seed, split,
                 **{**{key: value for key, value in shared.items() if key in _parameters(part)},
                    **params.get(part.name, {})})
            for k, part in enumerate(PARTS)
        ]

    def task_id(self, index: int) -> str:
        """The id of task `index`: its part's own id (what `self[index].id` is)."""
        return self.parts[index % len(self.parts)].task_id(index // len(self.parts))

    def make_task(self, index: int, rng: np.random.Generator) -> Task:
        return self.parts[index % len(self.parts)][index // len(self.parts)]


def _parameters(part: type[Suite]) -> set[str]:
    """The keyword parameters of a part's constructor beyond size, seed and split."""
    return set(inspect.signature(part.__init__).parameters) - {"self", "size", "seed", "split"}
