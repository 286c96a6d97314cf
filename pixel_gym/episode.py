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
from pixel_gym.ops import PixelBox, PixelBudget, fit_to_budget, sample_frame_indices, smart_resize
from pixel_gym.tasks import ImageRef, Task


@dataclass
class View:
    """One picture shown to the agent: a region of a source image (or video frame), resized for display."""

    source: int  # index into task.images, or into task.video for frames
    region: PixelBox  # the part of the source this view shows, in source pixels
    image: Image.Image
    kind: str  # "original" | "crop" | "frame" | "selected_frame"

    @property
    def frame_size(self) -> tuple[int, int]:
        """The size absolute-pixel boxes on this view refer to: the region's full-resolution size."""
        x1, y1, x2, y2 = self.region
        return (x2 - x1, y2 - y1)

    @cached_property
    def array(self) -> np.ndarray:
        return np.asarray(self.image, dtype=np.uint8)


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
        parts.append({"type": "text", "text": f"{task.prompt_text()}\n{prompts.ANSWER_INSTRUCTION}"})
        episode.messages.append({"role": "user", "content": parts})
        return episode

    def _show_images(self) -> list[dict[str, Any]]:
        parts: list[dict[str, Any]] = []
        for index, ref in enumerate(self.task.images):
            view = View(index, (0, 0, *self.source_size(index)), self._global_view(index, ref), "original")
            self.views.append(view)
            if len(self.task.images) > 1:
                parts.append({"type": "text", "text": prompts.image_header(index + 1, *view.frame_size)})
            parts.append({"type": "image", "image": view.array})
        return parts

    def _show_video(self, num_shown: int) -> list[dict[str, Any]]:
        parts: list[dict[str, Any]] = []
        self.shown_frames = sample_frame_indices(len(self.task.video), num_shown)
        for number, frame in enumerate(self.shown_frames, 1):
            image = self.task.video[frame].open()
            view = View(frame, (0, 0, *image.size), fit_to_budget(image, self.budgets.frame_shown), "frame")
            self.views.append(view)
            parts += [{"type": "text", "text": prompts.frame_header(number)}, {"type": "image", "image": view.array}]
        return parts

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

    def add_view(self, source: int, region: PixelBox, budget: PixelBudget, kind: str) -> View:
        image = fit_to_budget(self.source_image(source).crop(region), budget)
        view = View(source, region, image, kind)
        self.views.append(view)
        return view

    @property
    def num_images(self) -> int:
        """Views that count against the image limit: all but the low-resolution video frames shown at reset."""
        return sum(view.kind != "frame" for view in self.views)

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
