"""Warm-up of a from-scratch vision tower: tag windows -> the symbol on the tag, through a linear head.

A hub VLM's vision tower was pretrained on its own (CLIP-style) before the language model learned to read its
tokens. A tiny Qwen2.5-VL built here needs the same first step: `benchmarks.vision_probe` shows that the decoder
does not learn to read a glyph from a random tower in 600 steps, even though the glyph is linearly separable in
the random tower's output (a linear probe on frozen features reaches 1.00), while after this warm-up it learns to
in under 100 steps. The warm-up trains `model.visual` (patch embedding, blocks, merger) with a throw-away linear
head on the mean of a window's image tokens; the head is discarded, the tower's weights stay in the model. Of a
window, only the symbol is taught: the decoder learns low-frequency cues (a frame's colour) from a random tower
on its own, and a second head for them slows the glyphs' start (symbol loss 1.68 instead of 0.02 after 160
steps).

Grounding needs a second skill of the tower: a named colour's tag in the global view is a blob of a few pixels
inside one image token, and from a random tower the decoder does not learn to find it (held-out greedy grounding
of the p3 base: 2% exact, 10% within one tenth). With `colour_views`, each step also asks a per-token linear
head which named colour's tag (or none) has its centre in each merged token of a global view, so every image
token says plainly what it holds, as a detection-pretrained tower's would.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torch import nn
from tqdm import tqdm

from pixel_gym.suites.drawing import NAMED_COLORS
from pixel_gym.suites.glyphs import SYMBOLS
from rl_runner.token_positions import PositionHead, position_targets, tenths_loss

SYMBOL_IDS = {symbol: i for i, symbol in enumerate(SYMBOLS)}
COLOUR_IDS = {colour: i + 1 for i, colour in enumerate(NAMED_COLORS)}  # 0: no named tag in the token


@dataclass(frozen=True)
class ColourView:
    """A global view as the env serves it and, per merged image token (rows x cols), the index in
    `COLOUR_IDS` of the named colour whose tag centre lies in it (0: none)."""

    pixels: np.ndarray
    labels: np.ndarray


@dataclass(frozen=True)
class TagWindow:
    """A small image around one tag, as a crop serves it, and what the tag shows."""

    pixels: np.ndarray
    symbol: str


def vision_features(model: nn.Module, processor, images: Sequence[np.ndarray],
                    device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The merged tokens the vision tower makes of `images`, image after image, [tokens, width], and the images'
    `image_grid_thw`."""
    inputs = processor.image_processor(images=[Image.fromarray(pixels) for pixels in images], return_tensors="pt")
    output = model.model.visual(inputs["pixel_values"].to(device), grid_thw=inputs["image_grid_thw"].to(device))
    return (output if torch.is_tensor(output) else output.pooler_output), inputs["image_grid_thw"]


def colour_labels(size: tuple[int, int], grid: tuple[int, int], tags: Sequence[dict]) -> np.ndarray:
    """Per merged token of a `grid` (rows, cols) over an image of `size` (width, height): the `COLOUR_IDS` of
    the named-colour tag whose centre it holds, else 0."""
    labels = np.zeros(grid, dtype=np.int64)
    for tag in tags:
        if tag["color"] in COLOUR_IDS:
            x1, y1, x2, y2 = tag["box"]
            col = min(int((x1 + x2) / 2 / size[0] * grid[1]), grid[1] - 1)
            row = min(int((y1 + y2) / 2 / size[1] * grid[0]), grid[0] - 1)
            labels[row, col] = COLOUR_IDS[tag["color"]]
    return labels


def symbol_loss(model: nn.Module, processor, head: nn.Module, windows: Sequence[TagWindow]) -> torch.Tensor:
    """Cross-entropy of each window's symbol from the mean of its tokens."""
    device = next(model.parameters()).device
    tokens, _ = vision_features(model, processor, [w.pixels for w in windows], device)
    logits = head(tokens.reshape(len(windows), -1, tokens.shape[-1]).mean(1))
    return nn.functional.cross_entropy(logits, torch.tensor([SYMBOL_IDS[w.symbol] for w in windows], device=device))


def global_view_losses(model: nn.Module, processor, colour_head: nn.Module, position_head: PositionHead,
                       views: Sequence[ColourView]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token cross-entropy of the named colour held (tokens with a tag and tokens without weighted alike), and
    of each token's tenth of the image along x and y (`rl_runner.token_positions`)."""
    device = next(model.parameters()).device
    tokens, grid = vision_features(model, processor, [v.pixels for v in views], device)
    labels = torch.from_numpy(np.concatenate([v.labels.reshape(-1) for v in views])).to(device)
    losses = nn.functional.cross_entropy(colour_head(tokens), labels, reduction="none")
    tagged = labels > 0
    colour = (losses[tagged].mean() + losses[~tagged].mean()) / 2 if tagged.any() else losses.mean()
    position = tenths_loss(position_head, tokens, *position_targets(grid, processor.image_processor.merge_size))
    return colour, position


def warm_up_vision(
    model: nn.Module,
    processor,
    windows: Iterator[TagWindow],
    steps: int,
    batch_size: int = 32,
    lr: float = 1e-3,
    progress: bool = True,
    colour_views: Iterator[ColourView] | None = None,
    colour_batch: int = 8,
) -> list[dict[str, float]]:
    """Train the vision tower of `model` to tell each window's symbol (and, with `colour_views`, each global-view
    token's named colour); returns the loss log."""
    device = next(model.parameters()).device
    width = model.config.vision_config.out_hidden_size
    symbol_head = nn.Linear(width, len(SYMBOL_IDS)).to(device)
    colour_head = nn.Linear(width, len(COLOUR_IDS) + 1).to(device)
    position_head = PositionHead(width).to(device)
    trained = [*model.model.visual.parameters(), *symbol_head.parameters(), *colour_head.parameters(),
               *position_head.parameters()]
    optimizer = torch.optim.AdamW(trained, lr=lr)
    log: list[dict[str, float]] = []
    model.train()
    for step in tqdm(range(steps), desc="vision warm-up", disable=not progress):
        loss = symbol_loss(model, processor, symbol_head, [next(windows) for _ in range(batch_size)])
        record = {"stage": "vision", "step": step + 1, "loss_symbol": float(loss.detach())}
        if colour_views is not None:
            views = [next(colour_views) for _ in range(colour_batch)]
            colour, position = global_view_losses(model, processor, colour_head, position_head, views)
            record["loss_colour"], record["loss_tower_position"] = float(colour.detach()), float(position.detach())
            loss = loss + colour + position
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(trained, 1.0)
        optimizer.step()
        log.append(record)
    return log
