"""Pixel budgets of the views an episode shows: originals, crops, video frames."""

from __future__ import annotations

from dataclasses import dataclass

from pixel_gym.ops import PixelBudget


@dataclass(frozen=True)
class Budgets:
    """How many pixels each kind of view may have after resizing (Qwen2.5-VL smart_resize rules)."""

    original: PixelBudget  # the global view of an image at reset
    crop: PixelBudget  # a zoom-in result
    frame_shown: PixelBudget  # each low-resolution frame of a video at reset
    frame_selected: PixelBudget  # a frame returned by select_frames


BUDGET_PRESETS: dict[str, Budgets] = {
    # The default: small views a tiny model handles on a CPU; fine detail needs a zoom.
    "compact": Budgets(
        original=PixelBudget.tokens(16, 256),
        crop=PixelBudget.tokens(64, 256),
        frame_shown=PixelBudget.tokens(4, 16),
        frame_selected=PixelBudget.tokens(16, 256),
    ),
    # The paper's training limits (originals 4..2000, crops 4..1000, selected frames <= 400 tokens).
    "paper_train": Budgets(
        original=PixelBudget.tokens(4, 2000),
        crop=PixelBudget.tokens(4, 1000),
        frame_shown=PixelBudget.tokens(4, 32),  # the video's 512-token budget over 16 frames
        frame_selected=PixelBudget.tokens(4, 400),
    ),
    # The paper's evaluation limits (originals 256..8000, crops 256..5120).
    "paper_eval": Budgets(
        original=PixelBudget.tokens(256, 8000),
        crop=PixelBudget.tokens(256, 5120),
        frame_shown=PixelBudget.tokens(4, 32),
        frame_selected=PixelBudget.tokens(4, 400),
    ),
}


def resolve_budgets(budgets: Budgets | str) -> Budgets:
    if isinstance(budgets, Budgets):
        return budgets
    if budgets not in BUDGET_PRESETS:
        raise ValueError(f"unknown budget preset {budgets!r}; choose one of {sorted(BUDGET_PRESETS)}")
    return BUDGET_PRESETS[budgets]
