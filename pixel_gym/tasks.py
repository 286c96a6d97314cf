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
from PIL import ExifTags, Image, ImageOps

Metric = Literal["choice", "count", "anls", "exact", "pixel_reasoner"]
METRICS: tuple[str, ...] = ("choice", "count", "anls", "exact", "pixel_reasoner")  # scored by reward.METRIC_SCORERS

# Images larger than this many pixels are refused before decoding (PIL's own bomb guard is 2x its limit).
MAX_IMAGE_PIXELS = 64_000_000
# Qwen2.5-VL cannot take images longer than this many times their width (or wider than tall): they are unusable.
MAX_ASPECT_RATIO = 200
# EXIF orientations that swap width and height (rotated by 90 or 270 degrees, possibly mirrored)
SWAPPING_ORIENTATIONS = (5, 6, 7, 8)


class ImageLoadError(ValueError):
    """An image cannot be used: missing file, corrupt data, a decompression bomb or an extreme aspect ratio."""


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
        """(width, height) as displayed (EXIF orientation applied), from the file header when the image is encoded."""
        if not self.is_encoded:
            return self.open().size
        with self._load_errors(), self._open_encoded() as image:
            width, height = image.size
            return (height, width) if _orientation(image) in SWAPPING_ORIENTATIONS else (width, height)

    def open(self, draft_size: tuple[int, int] | None = None) -> Image.Image:
        """Decode to an 8-bit RGB PIL image, upright by its EXIF orientation. `draft_size` (width, height as
        displayed) lets JPEG decoding skip detail it would throw away."""
        with self._load_errors():
            image = self._decode(draft_size)
            image.load()
            if _orientation(image) != 1:
                image = ImageOps.exif_transpose(image)
            _check_image(image, self.describe())
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
                width, height = draft_size
                swapped = _orientation(image) in SWAPPING_ORIENTATIONS
                image.draft("RGB", (height, width) if swapped else (width, height))
            return image
        return source()

    def _open_encoded(self) -> Image.Image:
        source = self.source
        image = Image.open(io.BytesIO(source) if isinstance(source, bytes) else Path(source))
        _check_image(image, self.describe())
        return image


def _check_image(image: Image.Image, label: str) -> None:
    """Refuse images over the pixel limit, without pixels, or of an aspect ratio the model cannot take."""
    width, height = image.size
    if width * height > MAX_IMAGE_PIXELS:
        raise ImageLoadError(
            f"image {label} is {width}x{height} = {width * height} pixels, over the limit of "
            f"{MAX_IMAGE_PIXELS} (pixel_gym.tasks.MAX_IMAGE_PIXELS)"
        )
    if min(width, height) < 1:
        raise ImageLoadError(f"image {label} has no pixels ({width}x{height})")
    if max(width, height) / min(width, height) > MAX_ASPECT_RATIO:
        raise ImageLoadError(
            f"image {label} is {width}x{height}, an aspect ratio over {MAX_ASPECT_RATIO}:1, which the model cannot "
            "take (pixel_gym.tasks.MAX_ASPECT_RATIO)"
        )


def _orientation(image: Image.Image) -> int:
    """The EXIF orientation tag (1 = upright; also for images without EXIF or with a malformed tag)."""
    value = image.getexif().get(ExifTags.Base.Orientation, 1)
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _as_uint8_rgb(array: np.ndarray) -> np.ndarray:
    if array.ndim == 2:
        array = np.stack([array] * 3, axis=-1)
    if array.ndim != 3 or array.shape[2] not in (3, 4):
        raise ImageLoadError(f"image array must be HxW, HxWx3 or HxWx4, got shape {array.shape}")
    return _to_uint8(array[..., :3])


def _to_uint8(array: np.ndarray) -> np.ndarray:
    """Pixel values scaled to 8 bits: 16-bit integers (uint16, or wider integers over 255) by 255/65535, floats in
    [0, 1] by 255, booleans to 0/255; anything else is clipped to 0..255 (NaN becomes 0)."""
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.bool_:
        return array.astype(np.uint8) * 255
    if array.dtype.kind == "f":
        values = np.nan_to_num(array.astype(np.float64), nan=0.0, posinf=255.0, neginf=0.0)
        if values.size and values.min() >= 0 and values.max() <= 1:
            values = values * 255
    elif array.dtype.kind in "iu":
        values = array.astype(np.float64)
        if array.dtype.itemsize == 2 or (values.size and values.max() > 255):
            values = values * (255 / 65535)
    else:
        raise ImageLoadError(f"image array of dtype {array.dtype} holds no pixel values")
    return np.clip(np.round(values), 0, 255).astype(np.uint8)


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in ("I", "F") or image.mode.startswith("I;16"):  # 16-bit, 32-bit and float gray: scaled, not clipped
        return Image.fromarray(_to_uint8(np.asarray(image)), "L").convert("RGB")
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
    # the question exactly as the dataset writes it (options included): shown unchanged when set (the released
    # protocol reformats nothing); otherwise the prompt is built from `question` and `choices`
    text_as_written: str = ""

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
        object.__setattr__(self, "images", tuple(self._named(ImageRef.of(i)) for i in self.images))
        object.__setattr__(self, "video", tuple(self._named(ImageRef.of(f)) for f in self.video))
        object.__setattr__(self, "answers", tuple(str(a) for a in self.answers))

    def _named(self, ref: ImageRef) -> ImageRef:
        """An unnamed image gets a name with this task's id, so every load error names both the file and the task."""
        return ref if ref.name else ImageRef(ref.source, name=f"{ref.describe()} (task {self.id})")

    @property
    def is_video(self) -> bool:
        return bool(self.video)

    def prompt_text(self) -> str:
        """The question as shown to a model: the dataset's own text, else with lettered options for multiple choice."""
        if self.text_as_written:
            return self.text_as_written
        if not self.choices:
            return self.question
        letters = choice_letters(len(self.choices))
        options = "\n".join(f"({letter}) {text}" for letter, text in zip(letters, self.choices))
        return f"{self.question}\nOptions:\n{options}"


def choice_letters(count: int) -> list[str]:
    return [chr(ord("A") + i) for i in range(count)]
