"""The `Suite` base class: a lazily generated, seed-deterministic sequence of tasks, and shared task helpers."""

from __future__ import annotations

import zlib
from abc import abstractmethod
from collections.abc import Sequence
from typing import ClassVar, overload

import numpy as np

from pixel_gym.suites.glyphs import SYMBOLS, lookalikes
from pixel_gym.tasks import Task, choice_letters

SPLITS = ("train", "test")
IntRange = tuple[int, int]
SOURCE = "pixel_gym"


class Suite(Sequence[Task]):
    """`size` procedural tasks; task `index` depends only on (seed, split, index) and the suite's parameters.

    `__getitem__` builds the task's layout and annotations (cheap); pixels are drawn only when an image or
    frame is opened. Train and test tasks come from different random streams.
    """

    name: ClassVar[str]

    def __init__(self, size: int = 1000, seed: int = 0, split: str = "train") -> None:
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise ValueError(f"size must be a non-negative integer, got {size!r}")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; choose one of {SPLITS}")
        self.size, self.seed, self.split = size, seed, split

    def __len__(self) -> int:
        return self.size

    @overload
    def __getitem__(self, index: int) -> Task: ...

    @overload
    def __getitem__(self, index: slice) -> list[Task]: ...

    def __getitem__(self, index: int | slice) -> Task | list[Task]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self.size))]
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"suite indices must be integers, got {type(index).__name__}")
        position = int(index) + self.size if index < 0 else int(index)
        if not 0 <= position < self.size:
            raise IndexError(f"index {index} out of range for a suite of {self.size} tasks")
        return self.make_task(position, self.rng(position))

    def rng(self, index: int) -> np.random.Generator:
        """The random stream of one task, derived from the suite name, seed, split and index."""
        entropy = [self.seed, zlib.crc32(self.name.encode()), zlib.crc32(self.split.encode()), index]
        return np.random.default_rng(np.random.SeedSequence(entropy))

    def task_id(self, index: int) -> str:
        prefix = self.name if self.seed == 0 else f"{self.name}-s{self.seed}"
        return f"{prefix}/{self.split}/{index}"

    @abstractmethod
    def make_task(self, index: int, rng: np.random.Generator) -> Task:
        """Build task `index` from its own random stream."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(size={self.size}, seed={self.seed}, split={self.split!r})"


def check_range(name: str, value: IntRange, lowest: int) -> IntRange:
    """Validate an inclusive (low, high) integer range whose low end is at least `lowest`."""
    if len(value) != 2 or not lowest <= value[0] <= value[1]:
        raise ValueError(f"{name} must be a (low, high) pair with {lowest} <= low <= high, got {value!r}")
    return (int(value[0]), int(value[1]))


def draw_int(rng: np.random.Generator, value: IntRange) -> int:
    """A uniform integer from the inclusive range."""
    return int(rng.integers(value[0], value[1] + 1))


def draw_size(rng: np.random.Generator, sides: IntRange) -> tuple[int, int]:
    """A (width, height) with each side drawn independently from `sides` (random aspect)."""
    return draw_int(rng, sides), draw_int(rng, sides)


DISTRACTORS = ("lookalike", "random")


def symbol_choices(
    rng: np.random.Generator, symbol: str, num_choices: int, pool: str = SYMBOLS, distractors: str = "lookalike"
) -> tuple[tuple[str, ...], str]:
    """Options for "which symbol": `symbol` and its nearest look-alikes (or, with `distractors="random"`, other
    symbols drawn at random), shuffled; returns (choices, letter)."""
    if distractors == "random":
        others = [s for s in pool if s != symbol]
        options = [symbol, *(others[i] for i in rng.choice(len(others), num_choices - 1, replace=False))]
    else:
        options = [symbol, *lookalikes(symbol, num_choices - 1, rng, pool)]
    order = rng.permutation(len(options))
    choices = tuple(options[i] for i in order)
    return choices, choice_letters(len(choices))[choices.index(symbol)]
