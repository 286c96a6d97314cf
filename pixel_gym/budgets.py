"""Pixel budgets of the views an episode shows: originals, crops, video frames, and the serving re-resize."""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image

from pixel_gym.ops import PixelBudget, fit_to_budget


@dataclass(frozen=True)
class Budgets:
    """How many pixels each kind of view may have after resizing (Qwen2.5-VL smart_resize rules)."""

    original: PixelBudget  # the global view of an image at reset
    crop: PixelBudget  # a zoom-in result
    frame_shown: PixelBudget  # each frame of the video input shown at reset
    frame_selected: PixelBudget  # a frame returned by select_frames
    # The serving engine's own resize of every image it is given (vLLM with the eval scripts' MIN/MAX_PIXELS): what
    # the model sees. Crop boxes and the sizes written in the texts stay those of the views above. None: no re-resize.
    serve: PixelBudget | None = None
    # select_frames resizes the full-resolution source frame (our option) instead of the frame as shown (released)
    frames_from_source: bool = False

    def serve_image(self, image: Image.Image) -> Image.Image:
        """An image as the model sees it: after the serving re-resize, where there is one."""
        return image if self.serve is None else fit_to_budget(image, self.serve)


# A frame of the released video input: at most 512 x 28^2 px, at least qwen-vl-utils' 128 x 28^2 px video minimum
VIDEO_FRAME = PixelBudget.tokens(128, 512)

BUDGET_PRESETS: dict[str, Budgets] = {
    # Small views a tiny model handles on a CPU (the training CLI's default). Images are kept as in training
    # (originals <= 2000, crops <= 1000 x 28^2 px) and, like the released evaluation's serving engine, every view is
    # re-resized to at most 144 x 28^2 px before the model sees it: a crop shows detail the global view cannot.
    "compact": Budgets(
        original=PixelBudget.tokens(16, 2000),
        crop=PixelBudget.tokens(16, 1000),
        frame_shown=PixelBudget.tokens(4, 16),
        frame_selected=PixelBudget.tokens(16, 256),
        serve=PixelBudget.tokens(16, 144),
        frames_from_source=True,  # low-resolution video, legible selected frames
    ),
    # The env's default: the paper's training limits (originals 4..2000, crops 4..1000, selected frames 4..400).
    "paper_train": Budgets(
        original=PixelBudget.tokens(4, 2000),
        crop=PixelBudget.tokens(4, 1000),
        frame_shown=VIDEO_FRAME,
        frame_selected=PixelBudget.tokens(4, 400),  # resized from the frame as shown
    ),
    # The paper's evaluation limits (originals 256..8000, crops 256..5120); then the serving engine re-resizes every
    # image into 512..5120 (the eval scripts' MIN/MAX_PIXELS): all images the model sees lie in 512..5120.
    "paper_eval": Budgets(
        original=PixelBudget.tokens(256, 8000),
        crop=PixelBudget.tokens(256, 5120),
        frame_shown=VIDEO_FRAME,
        frame_selected=VIDEO_FRAME,  # the frames exactly as shown (already inside this budget)
        serve=PixelBudget.tokens(512, 5120),
    ),
}


def resolve_budgets(budgets: Budgets | str) -> Budgets:
    if isinstance(budgets, Budgets):
        return budgets
    if budgets not in BUDGET_PRESETS:
        raise ValueError(f"unknown budget preset {budgets!r}; choose one of {sorted(BUDGET_PRESETS)}")
    return BUDGET_PRESETS[budgets]
