"""Built-in procedural task suites: deterministic by seed, generated lazily, with ground-truth annotations.

`make_suite("fine_detail", size=1000, seed=0, split="train", **params)` returns a `Suite`, a sequence of
`pixel_gym.tasks.Task`. `pixel_gym.suites.reader` holds a non-learned reader and the no-op / oracle baselines.
"""

from __future__ import annotations

from typing import Any

from pixel_gym.suites.base import Suite
from pixel_gym.suites.counting import CountingSuite
from pixel_gym.suites.document import DocumentSuite
from pixel_gym.suites.fine_detail import FineDetailSuite
from pixel_gym.suites.mixed import MixedSuite
from pixel_gym.suites.video import VideoSuite

SUITES: dict[str, type[Suite]] = {
    suite.name: suite for suite in (FineDetailSuite, CountingSuite, DocumentSuite, VideoSuite, MixedSuite)
}


def make_suite(name: str, **kwargs: Any) -> Suite:
    """The suite called `name` (see `SUITES`), built with `size`, `seed`, `split` and its own parameters."""
    if name not in SUITES:
        raise ValueError(f"unknown suite {name!r}; available suites: {', '.join(SUITES)}")
    return SUITES[name](**kwargs)


__all__ = ["SUITES", "CountingSuite", "DocumentSuite", "FineDetailSuite", "MixedSuite", "Suite", "VideoSuite",
           "make_suite"]
