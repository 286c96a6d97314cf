"""A non-learned reader of the suites' glyphs, and the no-op and oracle baselines under the env's budgets.

The reader knows where the renderer drew glyphs (the geometry in the annotations: tag boxes, glyph origins and
cells, text lengths) and what the question names (a colour, symbols, an item), but it never looks at the
answer-bearing annotations (symbols on tags, values, key frames). It samples the view it is given at the glyph
cell centres (bilinear), calls a cell ink when it is darker than halfway between the renderer's ink and paper
levels, and takes the nearest glyph by Hamming distance. At full resolution that decoding is exact; once a cell
shrinks below about a pixel its ink blends with the paper around it and the cell reads as blank.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

from pixel_gym.budgets import Budgets, resolve_budgets
from pixel_gym.ops import crop_to_budget, fit_to_budget, resolve_box, sample_frame_indices, select_frames
from pixel_gym.suites.drawing import INK, PAPER
from pixel_gym.suites.glyphs import ADVANCE, COLS, FONT, NUMBER_CHARS, ROWS, SYMBOLS
from pixel_gym.tasks import Box, Task, choice_letters

Region = tuple[int, int, int, int]


def _luma(color: tuple[int, int, int]) -> float:
    """Gray level of an RGB colour as PIL's "L" conversion computes it."""
    return (299 * color[0] + 587 * color[1] + 114 * color[2]) / 1000


INK_THRESHOLD = (_luma(INK) + _luma(PAPER)) / 2  # a cell is ink when its sample is darker than this
SHOWN_FRAMES = 16  # the env's overview of a video
PADDING = 0.1  # the env's zoom padding (normalized, each side)


class View:
    """A view image showing `region` (pixels of the original) and the glyph sampling on it."""

    def __init__(self, image: Image.Image, region: Region) -> None:
        self.gray = np.asarray(image.convert("L"), dtype=np.float32)
        self.region = region
        self.scale_x = image.width / (region[2] - region[0])
        self.scale_y = image.height / (region[3] - region[1])

    def contains(self, box: Sequence[float]) -> bool:
        x1, y1, x2, y2 = self.region
        return x1 <= box[0] and y1 <= box[1] and box[2] <= x2 and box[3] <= y2

    def ink(self, origin: Sequence[int], length: int = 1) -> np.ndarray:
        """Ink bitmaps, shape (length, 7, 5), of `length` characters drawn at origin (x, y, cell)."""
        x, y, cell = origin
        rows, cols = np.mgrid[0:ROWS, 0:COLS]
        xs = x + (cols[None] + ADVANCE * np.arange(length)[:, None, None] + 0.5) * cell
        samples = self._sample(xs, np.broadcast_to(y + (rows + 0.5) * cell, xs.shape))
        return samples < INK_THRESHOLD

    def read(self, origin: Sequence[int], length: int, alphabet: Sequence[str]) -> str:
        """Decode `length` characters drawn at origin (x, y, cell) to the nearest characters of `alphabet`."""
        return "".join(nearest(bitmap, alphabet) for bitmap in self.ink(origin, length))

    def _sample(self, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        """Bilinear samples of the view at points given in original-image pixels."""
        height, width = self.gray.shape
        u = np.clip((xs - self.region[0]) * self.scale_x - 0.5, 0, width - 1)
        v = np.clip((ys - self.region[1]) * self.scale_y - 0.5, 0, height - 1)
        u0, v0 = np.floor(u).astype(int), np.floor(v).astype(int)
        u1, v1 = np.minimum(u0 + 1, width - 1), np.minimum(v0 + 1, height - 1)
        fu, fv = u - u0, v - v0
        g = self.gray
        top = g[v0, u0] * (1 - fu) + g[v0, u1] * fu
        bottom = g[v1, u0] * (1 - fu) + g[v1, u1] * fu
        return top * (1 - fv) + bottom * fv


def nearest(ink: np.ndarray, alphabet: Sequence[str]) -> str:
    """The character of `alphabet` whose bitmap differs from `ink` in the fewest cells (first on ties)."""
    distances = [np.count_nonzero(FONT[char] != ink) for char in alphabet]
    return alphabet[int(np.argmin(distances))]


def _letter(task: Task, option: str) -> str:
    return choice_letters(len(task.choices))[task.choices.index(option)]


# ------------------------------------------------------------------------------------------------ reading


def read_image(task: Task, view: Image.Image, region: Region) -> str:
    """Answer an image task from `view`, an image of `region` (pixels of image 1); "" when it cannot tell."""
    reader = View(view, region)
    notes = task.annotations
    if task.category == "attribute":
        tag = next(t for t in notes["tags"] if t["color"] == notes["color"])
        return _letter(task, reader.read(tag["glyph"], 1, task.choices)) if reader.contains(tag["box"]) else ""
    if task.category == "relative_position":
        return _relative_position(task, reader)
    if task.category == "counting":
        tags = [t for t in notes["tags"] if reader.contains(t["box"])]
        return str(sum(reader.read(t["glyph"], 1, SYMBOLS) == notes["symbol"] for t in tags))
    if task.category == "value_lookup":
        item = notes["items"][notes["target"]]
        x, y, cell, length = item["value_text"]
        return reader.read((x, y, cell), length, NUMBER_CHARS) if reader.contains(item["value_box"]) else ""
    raise ValueError(f"the reader does not know category {task.category!r}")


def _relative_position(task: Task, reader: View) -> str:
    """Find the visible tags that look most like the two named symbols and compare their centres."""
    tags = [t for t in task.annotations["tags"] if reader.contains(t["box"])]
    if len(tags) < 2:
        return ""
    bitmaps = [reader.ink(t["glyph"])[0] for t in tags]
    first, second = task.annotations["query"]
    i = int(np.argmin([np.count_nonzero(FONT[first] != b) for b in bitmaps]))
    j = int(np.argmin([np.count_nonzero(FONT[second] != b) if k != i else ROWS * COLS + 1
                       for k, b in enumerate(bitmaps)]))
    centres = [(tags[k]["box"][0] + tags[k]["box"][2]) / 2 for k in (i, j)]
    return _letter(task, "left" if centres[0] < centres[1] else "right")


def find_flash(task: Task, frames: Sequence[Image.Image], frame_indices: Sequence[int]) -> int:
    """The original index (from `frame_indices`) of the given frame that shows the flash."""
    _check_frames(frames, frame_indices)
    return frame_indices[_whitest_plate_area(task, frames)]


def _check_frames(frames: Sequence[Image.Image], frame_indices: Sequence[int]) -> None:
    if len(frames) != len(frame_indices) or not frames:
        raise ValueError("give one original frame index per frame, and at least one frame")


def _whitest_plate_area(task: Task, frames: Sequence[Image.Image]) -> int:
    """Position of the frame whose pixels at the flash spot are whitest (the plate is white, shapes are not)."""
    box = task.annotations["flash"]["box"]
    scores = []
    for frame in frames:
        scale = frame.width / task.annotations["frame_size"][0]
        crop = np.asarray(frame.crop((*(round(v * scale) for v in box),)))
        scores.append(float(crop.min(axis=2).mean()) if crop.size else 0.0)
    return int(np.argmax(scores))


def read_video(task: Task, frames: Sequence[Image.Image], frame_indices: Sequence[int]) -> str:
    """Answer a video task from the given frames (their 0-based original indices in `frame_indices`).

    It scans the frames for the one showing the plate at the flash spot, then reads its symbol there; it never
    consults `key_frames`.
    """
    _check_frames(frames, frame_indices)
    frame = frames[_whitest_plate_area(task, frames)]
    width, height = task.annotations["frame_size"]
    symbol = View(frame, (0, 0, width, height)).read(task.annotations["flash"]["glyph"], 1, task.choices)
    return _letter(task, symbol)


# ---------------------------------------------------------------------------------------------- baselines


def global_view_answer(task: Task, budgets: Budgets | str = "compact", image: Image.Image | None = None) -> str:
    """The reader's answer from what the env shows at reset: the global view, or the 16 low-resolution frames.

    `image` may pass task image 1, already opened, to avoid drawing it twice.
    """
    limits = resolve_budgets(budgets)
    if task.is_video:
        indices = sample_frame_indices(len(task.video), SHOWN_FRAMES)
        return read_video(task, [fit_to_budget(task.video[i].open(), limits.frame_shown) for i in indices], indices)
    original = image if image is not None else task.images[0].open()
    return read_image(task, limits.serve_image(fit_to_budget(original, limits.original)), (0, 0, *original.size))


def oracle_answer(task: Task, budgets: Budgets | str = "compact", image: Image.Image | None = None) -> str:
    """The reader's answer after the right operation: a zoom on the union of `target_boxes` (with the env's
    padding), or selecting the `key_frames`."""
    limits = resolve_budgets(budgets)
    if task.is_video:
        keys = list(task.key_frames)
        return read_video(task, select_frames(task.video, [k + 1 for k in keys], limits.frame_selected), keys)
    original = image if image is not None else task.images[0].open()
    target = Box.union(task.target_boxes).normalized(*original.size)
    region = resolve_box(target, original.size, "normalized", padding=PADDING)
    return read_image(task, limits.serve_image(crop_to_budget(original, region, limits.crop)), region)

