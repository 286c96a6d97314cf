"""The state of one episode: the task, the views shown so far, the chat history and the op counters.

Decoded source images are cached here, so a large JPEG is decoded once per episode however many zooms follow;
the global view of an encoded JPEG uses draft decoding (DCT scaling) and never needs the full decode.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
from PIL import Image

from pixel_gym import prompts
from pixel_gym.budgets import Budgets
from pixel_gym.ops import (
    OpError,
    PixelBox,
    PixelBudget,
    fit_to_budget,
    sample_frame_indices,
    short_repr,
    smart_resize,
)
from pixel_gym.tasks import ImageRef, Task


@dataclass
class View:
    """One picture shown to the agent: a region of a source image (or video frame), resized for display.

    `image` is the view as the released code keeps it: crops of this view cut it, and its size is the size the
    texts report. `shown`, when set, is what the model is given instead (the serving engine's re-resize).
    """

    source: int  # index into task.images, or into task.video for frames
    region: PixelBox  # the part of the source this view shows, in source pixels
    image: Image.Image
    kind: str  # "original" | "crop" | "frame" | "selected_frame" | "derived"
    shown: Image.Image | None = None

    @property
    def frame_size(self) -> tuple[int, int]:
        """The region's full-resolution size (what absolute-pixel boxes refer to with `crop_from="source"`)."""
        x1, y1, x2, y2 = self.region
        return (x2 - x1, y2 - y1)

    @property
    def seen(self) -> Image.Image:
        """The image the model is given: `shown` where the serving engine re-resizes, else `image`."""
        return self.shown if self.shown is not None else self.image

    @cached_property
    def array(self) -> np.ndarray:
        """The pixels the model sees."""
        return np.asarray(self.seen, dtype=np.uint8)


@dataclass
class OpRecord:
    tool: str
    ok: bool
    view: int | None = None  # 0-based index of the view operated on
    region: PixelBox | None = None  # zoom result in source pixels
    frames: tuple[int, ...] = ()  # 0-based video frame indices selected
    error: str = ""


@dataclass
class Episode:
    task: Task
    budgets: Budgets
    views: list[View] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)
    shown_frames: list[int] = field(default_factory=list)  # video frame index of each frame shown at reset
    ops: list[OpRecord] = field(default_factory=list)
    turns: int = 0
    num_errors: int = 0
    answer: str | None = None
    _decoded: dict[int, Image.Image] = field(default_factory=dict)

    @classmethod
    def start(cls, task: Task, budgets: Budgets, system_prompt: str | None, num_shown_frames: int) -> Episode:
        """Decode the first views and write the opening messages."""
        episode = cls(task, budgets)
        if system_prompt:
            episode.messages.append(text_message("system", system_prompt))
        parts = episode._show_video(num_shown_frames) if task.is_video else episode._show_images()
        parts.append({"type": "text", "text": prompts.user_text(task.prompt_text())})
        episode.messages.append({"role": "user", "content": parts})
        return episode

    def _show_images(self) -> list[dict[str, Any]]:
        """The images first, with no text between them (the released user turn)."""
        for index, ref in enumerate(self.task.images):
            image = self._global_view(index, ref)
            self.views.append(View(index, (0, 0, *self.source_size(index)), image, "original", self._served(image)))
        return [{"type": "image", "image": view.array} for view in self.views]

    def _served(self, image: Image.Image) -> Image.Image | None:
        """The serving engine's re-resize of an image (`budgets.serve`), or None when there is none."""
        return None if self.budgets.serve is None else self.budgets.serve_image(image)

    def _show_video(self, num_shown: int) -> list[dict[str, Any]]:
        """One video part (Qwen's `{"type": "video", "video": [frames]}`) of the sampled frames, each resized into
        `budgets.frame_shown` and all to the first frame's size (a video input needs equal frames)."""
        self.shown_frames = sample_frame_indices(len(self.task.video), num_shown)
        for frame in self.shown_frames:
            image = self.task.video[frame].open()
            shown = fit_to_budget(image, self.budgets.frame_shown)
            if self.views and shown.size != self.views[0].image.size:
                shown = image.resize(self.views[0].image.size, Image.Resampling.BICUBIC)
            self.views.append(View(frame, (0, 0, *image.size), shown, "frame"))
        return [{"type": "video", "video": [view.array for view in self.views]}]

    def target_view(self, number: int) -> View:
        """The view `target_image` `number` names. Images: the n-th view. Videos: the n-th shown frame until a
        picture is added (a selected frame or a crop); after that the pictures are numbered after the video,
        which is picture 1 (REFERENCE.md: "After a selection, `target_image` 2 is the first selected frame")."""
        if not self.task.is_video:
            if not 1 <= number <= len(self.views):
                raise OpError(f"target_image {short_repr(number)} does not exist: images are numbered 1 to "
                              f"{len(self.views)}")
            return self.views[number - 1]
        added = self.added_views
        if not added:
            if not 1 <= number <= len(self.views):
                raise OpError(f"Incorrect `target_image`. You can only select frames in the given video within "
                              f"[1,{len(self.views)}]")
            return self.views[number - 1]
        if not 2 <= number <= len(added) + 1:
            raise OpError(f"Incorrect `target_image`. You can only select a previous frame within [2,{len(added) + 1}]")
        return added[number - 2]

    @property
    def added_views(self) -> list[View]:
        """Video episodes: the pictures added by tool calls (selected frames, crops), after the shown frames."""
        return self.views[len(self.shown_frames):]

    def _global_view(self, index: int, ref: ImageRef) -> Image.Image:
        budget = self.budgets.original
        if ref.is_encoded and index not in self._decoded:
            width, height = ref.size()
            new_h, new_w = smart_resize(height, width, budget)
            return fit_to_budget(ref.open(draft_size=(new_w, new_h)), budget)
        return fit_to_budget(self.source_image(index), budget)

    def source_image(self, index: int) -> Image.Image:
        """The full-resolution source image (or video frame), decoded once per episode."""
        if index not in self._decoded:
            refs = self.task.video if self.task.is_video else self.task.images
            self._decoded[index] = refs[index].open()
        return self._decoded[index]

    def source_size(self, index: int) -> tuple[int, int]:
        if index in self._decoded:
            return self._decoded[index].size
        refs = self.task.video if self.task.is_video else self.task.images
        ref = refs[index]
        return ref.size() if ref.is_encoded else self.source_image(index).size

    def crop_view(self, target: View, box: PixelBox, from_source: bool = False) -> View:
        """A crop of `target` resized into `budgets.crop`. `box` is in pixels of `target.image` (the released rule:
        cut the view as kept), or of the full-resolution region `target` shows when `from_source`. Like every
        `*_view` method it makes the view; the executor adds it to `views` once the op has succeeded."""
        ox, oy = target.region[:2]
        if from_source:
            region = (ox + box[0], oy + box[1], ox + box[2], oy + box[3])
            image = fit_to_budget(self.source_image(target.source).crop(region), self.budgets.crop)
        else:
            image = fit_to_budget(target.image.crop(box), self.budgets.crop)
            sx, sy = target.frame_size[0] / target.image.width, target.frame_size[1] / target.image.height
            x1, y1, x2, y2 = (round(v * scale) for v, scale in zip(box, (sx, sy, sx, sy)))
            region = (ox + x1, oy + y1, ox + x2, oy + y2)
        return View(target.source, region, image, "crop", self._served(image))

    def frame_view(self, shown: View, budget: PixelBudget) -> View:
        """A selected frame: the frame as shown resized into `budget` (the same image when it already fits), or
        the full-resolution frame with `budgets.frames_from_source`; given to the model as an image, so the serving
        engine's re-resize applies to it as to every image."""
        base = self.source_image(shown.source) if self.budgets.frames_from_source else shown.image
        image = fit_to_budget(base, budget)
        return View(shown.source, shown.region, image, "selected_frame", self._served(image))

    def derived_view(self, target: View, image: Image.Image) -> View:
        """A new picture made from `target` by an op (rotated, enhanced, ...): it shows `target`'s region, as kept,
        re-resized by the serving engine like every image. (For a rotation the region is the unrotated one.)"""
        return View(target.source, target.region, image, "derived", self._served(image))

    @property
    def num_images(self) -> int:
        """Pictures that count against the image limit; a video counts as one (the released code's count)."""
        return sum(view.kind != "frame" for view in self.views) + bool(self.shown_frames)

    @property
    def num_ops(self) -> int:
        """Pixel operations executed successfully."""
        return sum(op.ok for op in self.ops)

    @property
    def num_tool_calls(self) -> int:
        """Tool calls made: executed, failed or malformed. RaPR and the op penalty count these (the paper's rule)."""
        return len(self.ops)

    @property
    def last_op_failed(self) -> bool:
        return bool(self.ops) and not self.ops[-1].ok


def text_message(role: str, text: str) -> dict[str, Any]:
    return {"role": role, "content": [{"type": "text", "text": text}]}
