"""Loss diagnostics: the next-token loss split by what a token is (template, box coordinate, answer).

A model that learns nothing from the pixels still learns the turn format, so the plain loss falls and says
little. Split by kind, the coordinate and answer losses show whether the pixels are used: a model that guesses
stays at the uniform level (ln 10 for a coordinate digit, ln k for a k-way answer).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from agents.scripted import NORMALIZED_TOP

GRAY = 128
TOKEN_KINDS = ("template", "coordinate", "answer")
_BOX = re.compile(r"\[\s*-?\d[\d.,\s-]*\]")  # a box written as [x1, y1, x2, y2]
NUMBER = re.compile(r"\d+(?:\.\d+)?")  # a decimal number as a box writes it
LAST_CELL_END = f"{NORMALIZED_TOP:g}"  # where the last cell of any precision ends, as a box writes it
_BOXED = re.compile(r"\\boxed\{([^{}]*)\}")


def char_kinds(text: str) -> list[str]:
    """The kind of every character: a box's informative digits are coordinates (not the "0." of a normalized
    value, and not x2, y2 of a unit-cell box, which follow from x1, y1), the inside of \\boxed{} is the answer."""
    kinds = ["template"] * len(text)
    for box in _BOX.finditer(text):
        for number in _informative_numbers(list(NUMBER.finditer(text, box.start(), box.end()))):
            # the "0." of a normalized value is format, not information
            start = number.start() + 2 if number.group().startswith("0.") else number.start()
            for i in range(start, number.end()):
                if text[i].isdigit():
                    kinds[i] = "coordinate"
    for match in _BOXED.finditer(text):
        for i in range(match.start(1), match.end(1)):
            kinds[i] = "answer"
    return kinds


def _informative_numbers(numbers: list[re.Match[str]]) -> list[re.Match[str]]:
    """The numbers of a box that carry information: all four, or x1 and y1 of a box one unit of its last decimal
    wide and high (`agents.scripted.zoom_box`'s cell of a small target: x2 = x1 + unit, y2 = y1 + unit, or just
    under 1 for the last cell)."""
    if len(numbers) != 4:
        return numbers
    x1, y1, x2, y2 = (float(n.group()) for n in numbers)
    ends = [n.group() for n in numbers if n.group() != LAST_CELL_END] or [n.group() for n in numbers]
    unit = 10.0 ** -max(len(text.partition(".")[2]) for text in ends)

    def one_unit(low: float, high: float) -> bool:  # the last cell ends below 1 (normalized boxes stay under 1)
        return math.isclose(high - low, unit, abs_tol=unit / 100) or (math.isclose(low, 1 - unit) and high < 1)

    return numbers[:2] if one_unit(x1, x2) and one_unit(y1, y2) else numbers


def token_kinds(tokenizer, token_ids: Sequence[int]) -> list[str]:
    """The kind of each token of a decoded span: the most specific kind among its characters."""
    pieces = [tokenizer.decode([int(t)]) for t in token_ids]
    kinds_of_chars = char_kinds("".join(pieces))
    kinds, start = [], 0
    for piece in pieces:
        inside = set(kinds_of_chars[start : start + len(piece)])
        start += len(piece)
        kinds.append("answer" if "answer" in inside else "coordinate" if "coordinate" in inside else "template")
    return kinds


def kind_indices(tokenizer, input_ids: torch.Tensor, loss_mask: torch.Tensor) -> torch.Tensor:
    """[B, L] long: the index in `TOKEN_KINDS` of every trained token of a batch ([B, L] tensors), -1 elsewhere."""
    kinds = torch.full(input_ids.shape, -1, dtype=torch.long)
    for row in range(input_ids.shape[0]):
        trained = loss_mask[row].bool().nonzero().reshape(-1)
        named = token_kinds(tokenizer, input_ids[row][trained].tolist())
        kinds[row, trained] = torch.tensor([TOKEN_KINDS.index(kind) for kind in named], dtype=torch.long)
    return kinds


def split_losses(kinds: torch.Tensor, logprobs: torch.Tensor) -> dict[str, tuple[float, int]]:
    """Summed loss and token count per kind of a batch ([B, L]; `kinds` from `kind_indices`)."""
    kinds = kinds.to(logprobs.device)
    return {kind: (float(-logprobs[kinds == index].sum()), int((kinds == index).sum()))
            for index, kind in enumerate(TOKEN_KINDS)}


class LossSplit:
    """Running mean loss per token kind over a window of recent steps."""

    def __init__(self) -> None:
        self.sums = {kind: 0.0 for kind in TOKEN_KINDS}
        self.counts = {kind: 0 for kind in TOKEN_KINDS}

    def add(self, parts: dict[str, tuple[float, int]]) -> None:
        """Loss sums and counts per kind; kinds beyond `TOKEN_KINDS` (an auxiliary loss) are kept as well."""
        for kind, (total, count) in parts.items():
            self.sums[kind] = self.sums.get(kind, 0.0) + total
            self.counts[kind] = self.counts.get(kind, 0) + count

    def means(self) -> dict[str, float]:
        """Mean loss per kind (NaN for a kind with no token); resets the window."""
        means = {f"loss_{k}": (self.sums[k] / self.counts[k] if self.counts[k] else math.nan) for k in self.sums}
        self.__init__()
        return means


def uniform_levels(num_choices: int) -> dict[str, float]:
    """The loss of a uniform guess: ln 10 per coordinate digit, ln k per k-way answer."""
    return {"loss_coordinate": math.log(10), "loss_answer": math.log(num_choices)}


def grayed(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The same chat with every image and video frame flat gray (same size): the blind control of a training run."""
    return [{**m, "content": [_grayed_part(p) for p in m["content"]]} for m in messages]


def _grayed_part(part: dict[str, Any]) -> dict[str, Any]:
    if part.get("type") == "image":
        return {**part, "image": np.full_like(part["image"], GRAY)}
    if part.get("type") == "video":
        return {**part, "video": [np.full_like(frame, GRAY) for frame in part["video"]]}
    return part
