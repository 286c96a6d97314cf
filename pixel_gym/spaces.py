"""Gymnasium spaces for what fixed-shape spaces cannot hold: variable-size images, free text, chat history."""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces

ROLES = ("system", "user", "assistant", "tool")


class RGBImage(spaces.Space[np.ndarray]):
    """An RGB uint8 image of any size up to `max_side` pixels per side."""

    def __init__(self, max_side: int = 16384, seed: int | None = None) -> None:
        self.max_side = max_side
        super().__init__(shape=None, dtype=np.uint8, seed=seed)

    def contains(self, x: Any) -> bool:
        return (
            isinstance(x, np.ndarray)
            and x.dtype == np.uint8
            and x.ndim == 3
            and x.shape[2] == 3
            and 0 < x.shape[0] <= self.max_side
            and 0 < x.shape[1] <= self.max_side
        )

    def sample(self, mask: Any = None, probability: Any = None) -> np.ndarray:
        height, width = (int(v) * 28 for v in self.np_random.integers(1, 9, size=2))
        return self.np_random.integers(0, 256, size=(height, width, 3), dtype=np.uint8)

    @property
    def is_np_flattenable(self) -> bool:
        return False

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, RGBImage) and other.max_side == self.max_side

    def __repr__(self) -> str:
        return f"RGBImage(max_side={self.max_side})"


class UnicodeText(spaces.Space[str]):
    """Any string of at most `max_length` characters (gymnasium's Text only admits a fixed charset)."""

    def __init__(self, max_length: int = 65536, seed: int | None = None) -> None:
        self.max_length = max_length
        super().__init__(shape=None, dtype=None, seed=seed)

    def contains(self, x: Any) -> bool:
        return isinstance(x, str) and len(x) <= self.max_length

    def sample(self, mask: Any = None, probability: Any = None) -> str:
        length = int(self.np_random.integers(0, min(self.max_length, 64) + 1))
        return "".join(chr(int(c)) for c in self.np_random.integers(32, 127, size=length))

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, UnicodeText) and other.max_length == self.max_length

    def __repr__(self) -> str:
        return f"UnicodeText(max_length={self.max_length})"


class ChatHistory(spaces.Space[list]):
    """A chat in Qwen2.5-VL / OpenAI message style: dicts with a role and a list of text/image/video parts."""

    def __init__(self, seed: int | None = None) -> None:
        self._image = RGBImage()
        super().__init__(shape=None, dtype=None, seed=seed)

    def contains(self, x: Any) -> bool:
        return isinstance(x, list) and all(self._valid_message(m) for m in x)

    def _valid_message(self, message: Any) -> bool:
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            return False
        content = message.get("content")
        return isinstance(content, list) and all(self._valid_part(p) for p in content)

    def _valid_part(self, part: Any) -> bool:
        if not isinstance(part, dict):
            return False
        if part.get("type") == "text":
            return isinstance(part.get("text"), str)
        if part.get("type") == "video":
            frames = part.get("video")
            return isinstance(frames, list) and len(frames) > 0 and all(self._image.contains(f) for f in frames)
        return part.get("type") == "image" and self._image.contains(part.get("image"))

    def sample(self, mask: Any = None, probability: Any = None) -> list:
        return [{"role": "user", "content": [{"type": "text", "text": "What is shown?"}]}]

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, ChatHistory)

    def __repr__(self) -> str:
        return "ChatHistory()"
