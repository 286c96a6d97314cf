"""The `Task` type: one visual question with its images or video, gold answers and annotations."""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image

Metric = Literal["choice", "count", "anls", "exact"]
METRICS: tuple[str, ...] = ("choice", "count", "anls", "exact")

# Images larger than this many pixels are refused before decoding (PIL's own bomb guard is 2x its limit).
MAX_IMAGE_PIXELS = 64_000_000


class ImageLoadError(ValueError):
    """An image could not be read: missing file, corrupt data or a decompression bomb."""


@dataclass(frozen=True, eq=False)
class ImageRef:
    """A lazily loaded image: a file path, encoded bytes, an array, a PIL image or a zero-argument factory."""

    source: str | os.PathLike | bytes | np.ndarray | Image.Image | Callable[[], Image.Image]
    name: str = ""

    @classmethod
    def of(cls, value: Any) -> ImageRef:
        """Wrap any supported image value (an `ImageRef` is returned unchanged)."""
        if isinstance(value, ImageRef):
            return value
        if isinstance(value, (str, os.PathLike, bytes, np.ndarray, Image.Image)) or callable(value):
            return cls(value)
        raise TypeError(f"unsupported image value of type {type(value).__name__}")

    @property
    def is_encoded(self) -> bool:
        """True for a file path or encoded bytes (whose size can be read without decoding)."""
        return isinstance(self.source, (str, os.PathLike, bytes))

    def size(self) -> tuple[int, int]:
        """(width, height), from the file header when the image is encoded."""
        if not self.is_encoded:
            return self.open().size
        with self._load_errors(), self._open_encoded() as image:
            return image.size

    def open(self, draft_size: tuple[int, int] | None = None) -> Image.Image:
        """Decode to an RGB PIL image. `draft_size` lets JPEG decoding skip detail it would throw away."""
        with self._load_errors():
            image = self._decode(draft_size)
            image.load()
        return image if image.mode == "RGB" else _to_rgb(image)

    @contextmanager
    def _load_errors(self) -> Iterator[None]:
        """Turn the many ways decoding fails into one `ImageLoadError` naming the image."""
        try:
            yield
        except ImageLoadError:
            raise
        except (FileNotFoundError, IsADirectoryError) as error:
            raise ImageLoadError(f"image file not found: {self.describe()}") from error
        except Image.DecompressionBombError as error:
            raise ImageLoadError(f"image too large to decode safely: {self.describe()} ({error})") from error
        except (OSError, SyntaxError, ValueError) as error:
            raise ImageLoadError(f"cannot decode image {self.describe()}: {error}") from error

    def describe(self) -> str:
        if self.name:
            return self.name
        if isinstance(self.source, (str, os.PathLike)):
            return str(self.source)
        return f"<{type(self.source).__name__}>"

    def _decode(self, draft_size: tuple[int, int] | None) -> Image.Image:
        source = self.source
        if isinstance(source, Image.Image):
            return source
        if isinstance(source, np.ndarray):
            return Image.fromarray(_as_uint8_rgb(source))
        if self.is_encoded:
            image = self._open_encoded()
            if draft_size is not None and image.format == "JPEG":
                image.draft("RGB", draft_size)
            return image
        return source()

    def _open_encoded(self) -> Image.Image:
        source = self.source
        image = Image.open(io.BytesIO(source) if isinstance(source, bytes) else Path(source))
        _check_pixel_count(image, self.describe())
        return image


def _check_pixel_count(image: Image.Image, label: str) -> None:
    width, height = image.size
    if width * height > MAX_IMAGE_PIXELS:
        raise ImageLoadError(
            f"image {label} is {width}x{height} = {width * height} pixels, over the limit of "
            f"{MAX_IMAGE_PIXELS} (pixel_gym.tasks.MAX_IMAGE_PIXELS)"
        )


def _as_uint8_rgb(array: np.ndarray) -> np.ndarray:
    if array.ndim == 2:
        array = np.stack([array] * 3, axis=-1)
    if array.ndim != 3 or array.shape[2] not in (3, 4):
        raise ImageLoadError(f"image array must be HxW, HxWx3 or HxWx4, got shape {array.shape}")
    if array.dtype != np.uint8:
        array = np.clip(array, 0, 255).astype(np.uint8)
    return array[..., :3]


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in ("RGBA", "LA", "P"):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.split()[3])
        return background
    return image.convert("RGB")


@dataclass(frozen=True)
class Box:
    """An axis-aligned box in absolute pixels of the image it annotates: (x1, y1) inclusive, (x2, y2) exclusive."""

    x1: float
    y1: float
    x2: float
    y2: float
    label: str = ""

    def as_tuple(self) -> tuple[float, float, float, float]:
        return (self.x1, self.y1, self.x2, self.y2)

    def normalized(self, width: int, height: int) -> tuple[float, float, float, float]:
        return (self.x1 / width, self.y1 / height, self.x2 / width, self.y2 / height)

    @staticmethod
    def union(boxes: Sequence[Box], label: str = "") -> Box:
        return Box(
            min(b.x1 for b in boxes), min(b.y1 for b in boxes), max(b.x2 for b in boxes), max(b.y2 for b in boxes),
            label,
        )


@dataclass(frozen=True)
class Task:
    """One visual question.

    `images` holds the pictures of an image question; `video` the frames of a video question (one of the two is
    set). `answers` are all accepted gold answers; for multiple choice they are letters ("A") and `choices` holds
    the option texts. `target_boxes` (pixels of image 1) and `key_frames` (0-based frame indices) say where the
    answer can be seen; `annotations` carries suite-specific extras.
    """

    id: str
    question: str
    answers: tuple[str, ...]
    metric: Metric
    images: tuple[ImageRef, ...] = ()
    video: tuple[ImageRef, ...] = ()
    choices: tuple[str, ...] = ()
    answer_type: str = "text"
    target_boxes: tuple[Box, ...] = ()
    key_frames: tuple[int, ...] = ()
    category: str = ""
    source: str = "custom"
    annotations: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    def __post_init__(self) -> None:
        if not self.id:
            raise ValueError("a task needs a non-empty id")
        if bool(self.images) == bool(self.video):
            raise ValueError(f"task {self.id}: give exactly one of images or video frames")
        if self.metric not in METRICS:
            raise ValueError(f"task {self.id}: unknown metric {self.metric!r}; expected one of {METRICS}")
        if not self.answers:
            raise ValueError(f"task {self.id}: at least one gold answer is required")
        if self.metric == "choice" and not self.choices:
            raise ValueError(f"task {self.id}: a multiple-choice task needs its choices")
        object.__setattr__(self, "images", tuple(ImageRef.of(i) for i in self.images))
        object.__setattr__(self, "video", tuple(ImageRef.of(f) for f in self.video))
        object.__setattr__(self, "answers", tuple(str(a) for a in self.answers))

    @property
    def is_video(self) -> bool:
        return bool(self.video)

    def prompt_text(self) -> str:
        """The question as shown to a model, with lettered options for multiple choice."""
        if not self.choices:
            return self.question
        letters = choice_letters(len(self.choices))
        options = "\n".join(f"({letter}) {text}" for letter, text in zip(letters, self.choices))
        return f"{self.question}\nOptions:\n{options}"


def choice_letters(count: int) -> list[str]:
    return [chr(ord("A") + i) for i in range(count)]
