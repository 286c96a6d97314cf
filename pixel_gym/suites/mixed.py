"""`mixed`: the four built-in suites interleaved (task i comes from suite i mod 4)."""

from __future__ import annotations

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

    Parameters: one optional dict of keyword parameters per part, by suite name, e.g.
    `MixedSuite(fine_detail={"image_size": (448, 448)}, video={"num_frames": (16, 16)})`.
    """

    name = "mixed"

    def __init__(self, size: int = 1000, seed: int = 0, split: str = "train", **params: dict[str, Any]) -> None:
        super().__init__(size, seed, split)
        names = {part.name for part in PARTS}
        unknown = set(params) - names
        if unknown:
            raise ValueError(f"unknown parts {sorted(unknown)} of the mixed suite; choose from {sorted(names)}")
        self.parts = [
            part(len(range(k, size, len(PARTS))), seed, split, **params.get(part.name, {}))
            for k, part in enumerate(PARTS)
        ]

    def make_task(self, index: int, rng: np.random.Generator) -> Task:
        return self.parts[index % len(self.parts)][index // len(self.parts)]
