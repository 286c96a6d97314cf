"""Scripted baselines: random, answer-without-looking, and an oracle that zooms where the annotations point.

Each writes text turns in the model's format, so they run through exactly the same parser and executor as a VLM.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from pixel_gym.actions import format_tool_call
from pixel_gym.env import PixelVQAEnv
from pixel_gym.ops import MAX_SELECTED_FRAMES
from pixel_gym.ops.crop import NAME as CROP_OP
from pixel_gym.ops.frames import NAME as FRAMES_OP
from pixel_gym.tasks import Box, Task, choice_letters

NORMALIZED_TOP = 0.99  # a box is read as normalized only if all four values are < 1 (the released rule)


def outward_box(bbox: Sequence[float], decimals: int = 2) -> list[float]:
    """A normalized box rounded outwards to `decimals` (so it covers `bbox`), every value kept below 1."""
    scale = 10**decimals
    x1, y1 = (round(math.floor(v * scale) / scale, decimals) for v in bbox[:2])
    x2, y2 = (min(round(math.ceil(v * scale) / scale, decimals), NORMALIZED_TOP) for v in bbox[2:])
    return [x1, y1, x2, y2]


def zoom_box(bbox: Sequence[float], decimals: int = 2) -> list[float]:
    """The box a trace asks for to see `bbox`: rounded outwards to `decimals`, except that along an axis where
    `bbox` is smaller than one unit (10^-decimals) it is the unit cell holding its centre (the crop's 0.1 padding
    still frames it). Small targets thus get boxes of one fixed size, located by their centre alone."""
    unit = 10.0**-decimals
    box = outward_box(bbox, decimals)
    for axis in (0, 1):
        low, high = bbox[axis], bbox[axis + 2]
        if high - low < unit:
            start = math.floor((low + high) / 2 / unit) * unit
            box[axis] = round(min(start, 1 - unit), decimals)
            box[axis + 2] = min(round(box[axis] + unit, decimals), NORMALIZED_TOP)
    return box


def crop_call(bbox: Sequence[float], target_image: int = 1, decimals: int = 2) -> str:
    """A `crop_image_normalized` call on `bbox` as `zoom_box` rounds it."""
    arguments = {"bbox_2d": zoom_box(bbox, decimals), "target_image": target_image}
    return format_tool_call(CROP_OP, arguments)


def clipped_crop_call(bbox: Sequence[float]) -> str:
    """A `crop_call` on a model's (or a shifted) `bbox`, each value first clipped into [0, `NORMALIZED_TOP`] so
    the env reads it as normalized."""
    return crop_call(np.clip(bbox, 0.0, NORMALIZED_TOP).tolist())


def frames_call(frames: list[int]) -> str:
    return format_tool_call(FRAMES_OP, {"target_frames": frames})


def boxed(answer: str) -> str:
    return f"\\boxed{{{answer}}}"


def guess(task: Task, rng: np.random.Generator) -> str:
    """A uniformly random answer of the right kind."""
    if task.choices:
        return str(rng.choice(choice_letters(len(task.choices))))
    if task.metric == "count":
        return str(int(rng.integers(0, 10)))
    return str(rng.integers(0, 1000))


class _EnvAgent:
    """Base for scripted agents: they read the current task from the env they play (privileged, by design)."""

    def __init__(self, env: Any, seed: int = 0) -> None:
        self.env: PixelVQAEnv = env.unwrapped
        self.rng = np.random.default_rng(seed)

    @property
    def task(self) -> Task:
        return self.env._require_episode().task

    @property
    def turn(self) -> int:
        return self.env._require_episode().turns

    def act(self, observation: dict[str, Any]) -> str:
        raise NotImplementedError


class RandomAgent(_EnvAgent):
    """Zooms at random boxes for a random number of turns, then guesses."""

    def act(self, observation: dict[str, Any]) -> str:
        if self.rng.random() < 0.5:
            x1, y1 = self.rng.uniform(0, 0.8, size=2)
            size = self.rng.uniform(0.05, 0.2)
            return crop_call((x1, y1, x1 + size, y1 + size), int(self.rng.integers(1, len(observation["images"]) + 1)))
        return boxed(guess(self.task, self.rng))


class BlindAgent(_EnvAgent):
    """Answers at once without any pixel operation (a guess)."""

    def act(self, observation: dict[str, Any]) -> str:
        return boxed(guess(self.task, self.rng))


class OracleAgent(_EnvAgent):
    """Zooms to the annotated target box (or selects the key frames), then gives the gold answer."""

    def act(self, observation: dict[str, Any]) -> str:
        task = self.task
        if self.turn == 0 and (task.target_boxes or task.key_frames):
            return oracle_operation(task, self.env)
        return boxed(task.answers[0])


def oracle_operation(task: Task, env: PixelVQAEnv) -> str:
    """The tool call that shows the annotated evidence: a crop of the target boxes, or the key frames."""
    episode = env._require_episode()
    if task.is_video:
        return frames_call(key_frame_numbers(task, episode.shown_frames))
    return crop_call(target_region(task, episode.views[0].frame_size))


def key_frame_numbers(task: Task, shown_frames: list[int]) -> list[int]:
    """1-based numbers of the shown frames that are key frames (at most 8; frame 1 when none is shown)."""
    numbers = [shown_frames.index(f) + 1 for f in task.key_frames if f in shown_frames]
    return numbers[:MAX_SELECTED_FRAMES] or [1]


def target_region(task: Task, size: tuple[int, int]) -> tuple[float, float, float, float]:
    """The union of the target boxes, normalized to an image of `size`."""
    return Box.union(task.target_boxes).normalized(*size)
