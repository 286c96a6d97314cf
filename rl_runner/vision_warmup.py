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

Reading needs the same of crops: a centred-window warm-up teaches the tower glyphs at one place in a token (held
out symbol loss 0.07), but a look crop puts its tag anywhere in the view, and there the committed p5 base read
at chance (read_glyph 0.05). With `symbol_views`, each step also asks a per-token head which symbol (or none) has
its glyph centre in each merged token of the views given: `rl_runner.tag_sheets`' dense sheets at the look
crops' served scale (look crops themselves hold too few tags to teach it: 350 steps stayed at chance), and with
`crop_checks` the same head is scored, untrained, on held-out look crops as the env serves them
(`crop_read_accuracy`), so the log says whether reading the sheets carries over to the crops.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
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
SYMBOL_VIEW_IDS = {symbol: i + 1 for i, symbol in enumerate(SYMBOLS)}  # 0: no glyph centre in the token
COLOUR_IDS = {colour: i + 1 for i, colour in enumerate(NAMED_COLORS)}  # 0: no named tag in the token


IGNORED = -100  # a token label that no loss reads (a token that holds part of a glyph, not its centre)


@dataclass(frozen=True)
class LabelledView:
    """A view as the env serves it and a label per merged image token (rows x cols): for a global view the index
    in `COLOUR_IDS` of the named colour whose tag centre lies in it, for a crop the index in `SYMBOL_VIEW_IDS` of
    the symbol whose glyph centre lies in it; 0: none, `IGNORED`: not scored."""

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


def symbol_labels(region: Sequence[float], grid: tuple[int, int], tags: Sequence[dict]) -> np.ndarray:
    """Per merged token of a `grid` (rows, cols) over a crop of the source `region` (x1, y1, x2, y2): the
    `SYMBOL_VIEW_IDS` of the tag whose glyph centre it holds; `IGNORED` on the other tokens a tag's box covers
    (part of a glyph may show there); else 0."""
    labels = np.zeros(grid, dtype=np.int64)
    x1, y1, x2, y2 = region
    cells = np.array([(x2 - x1) / grid[1], (y2 - y1) / grid[0]])

    def cell(x: float, y: float) -> np.ndarray:
        return np.floor((np.array([x, y]) - (x1, y1)) / cells).astype(int)

    inside = [t for t in tags if x1 <= t["glyph"][0] < x2 and y1 <= t["glyph"][1] < y2]
    for tag in tags:
        (c1, r1), (c2, r2) = cell(*tag["box"][:2]), cell(*tag["box"][2:])
        labels[max(r1, 0) : max(r2 + 1, 0), max(c1, 0) : max(c2 + 1, 0)] = IGNORED
    for tag in inside:
        col, row = np.minimum(cell(*tag["glyph"][:2]), (grid[1] - 1, grid[0] - 1))
        labels[row, col] = SYMBOL_VIEW_IDS[tag["symbol"]]
    return labels


def token_label_loss(head: nn.Module, tokens: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-token cross-entropy of `labels` ([N]; `IGNORED` skipped), tokens with a label > 0 and tokens without
    weighted alike (a view has far more empty tokens than tags)."""
    losses = nn.functional.cross_entropy(head(tokens), labels.clamp(min=0), reduction="none")
    tagged, empty = labels > 0, labels == 0
    return (losses[tagged].mean() + losses[empty].mean()) / 2 if tagged.any() else losses[empty].mean()


def labelled_accuracy(head: nn.Module, tokens: torch.Tensor, labels: torch.Tensor) -> float:
    """The share of the tokens with a label > 0 whose most likely class under `head` is that label."""
    tagged = labels > 0
    return float((head(tokens[tagged]).argmax(-1) == labels[tagged]).float().mean()) if tagged.any() else math.nan


def view_tokens(model: nn.Module, processor, views: Sequence[LabelledView]) -> tuple[torch.Tensor, torch.Tensor,
                                                                                      torch.Tensor]:
    """The merged tokens of `views` [N, width], their labels [N] and the views' `image_grid_thw`."""
    device = next(model.parameters()).device
    tokens, grid = vision_features(model, processor, [v.pixels for v in views], device)
    labels = torch.from_numpy(np.concatenate([v.labels.reshape(-1) for v in views])).to(device)
    return tokens, labels, grid


@torch.no_grad()
def held_out_accuracy(model: nn.Module, processor, head: nn.Module, views: Sequence[LabelledView]) -> float:
    """`labelled_accuracy` of `head` on `views`, the model left in training mode afterwards."""
    model.eval()
    tokens, labels, _ = view_tokens(model, processor, views)
    model.train()
    return labelled_accuracy(head, tokens, labels)


def symbol_loss(model: nn.Module, processor, head: nn.Module, windows: Sequence[TagWindow]) -> torch.Tensor:
    """Cross-entropy of each window's symbol from the mean of its tokens."""
    device = next(model.parameters()).device
    tokens, _ = vision_features(model, processor, [w.pixels for w in windows], device)
    logits = head(tokens.reshape(len(windows), -1, tokens.shape[-1]).mean(1))
    return nn.functional.cross_entropy(logits, torch.tensor([SYMBOL_IDS[w.symbol] for w in windows], device=device))


def global_view_losses(model: nn.Module, processor, colour_head: nn.Module, position_head: PositionHead | None,
                       views: Sequence[LabelledView]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-token cross-entropy of the named colour held (`token_label_loss`), and (with a `position_head`) of
    each token's tenth of the image along x and y (`rl_runner.token_positions`)."""
    tokens, labels, grid = view_tokens(model, processor, views)
    colour = token_label_loss(colour_head, tokens, labels)
    if position_head is None:
        return colour, None
    return colour, tenths_loss(position_head, tokens, *position_targets(grid, processor.image_processor.merge_size))


def warm_up_vision(
    model: nn.Module,
    processor,
    windows: Iterator[TagWindow],
    steps: int,
    batch_size: int = 32,
    lr: float = 1e-3,
    progress: bool = True,
    colour_views: Iterator[LabelledView] | None = None,
    colour_batch: int = 8,
    tower_position: bool = True,
    symbol_views: Iterator[LabelledView] | None = None,
    symbol_batch: int = 8,
    crop_checks: Iterator[LabelledView] | None = None,
    check_every: int = 50,
    check_size: int = 32,
    checkpoint: Callable[[list[dict[str, float]]], None] | None = None,
    checkpoint_every: int = 250,
) -> list[dict[str, float]]:
    """Train the vision tower of `model` to tell each window's symbol (with `colour_views`, each global-view
    token's named colour and, with `tower_position`, its tenth of the view; with `symbol_views`, each of their
    tokens' symbol, scored every `check_every` steps on `check_size` of the held-out `crop_checks`); returns
    the loss log. `checkpoint`, if given, is called with the log so far every `checkpoint_every` steps (to save
    the model: a long warm-up may be stopped)."""
    device = next(model.parameters()).device
    width = model.config.vision_config.out_hidden_size
    symbol_head = nn.Linear(width, len(SYMBOL_IDS)).to(device)
    colour_head = nn.Linear(width, len(COLOUR_IDS) + 1).to(device)
    position_head = PositionHead(width).to(device) if tower_position else None
    reading_head = nn.Linear(width, len(SYMBOL_VIEW_IDS) + 1).to(device)
    trained = [*model.model.visual.parameters(), *symbol_head.parameters(), *colour_head.parameters(),
               *(position_head.parameters() if position_head else ()), *reading_head.parameters()]
    optimizer = torch.optim.AdamW(trained, lr=lr)
    log: list[dict[str, float]] = []
    model.train()
    bar = tqdm(range(steps), desc="vision warm-up", disable=not progress)
    for step in bar:
        loss = symbol_loss(model, processor, symbol_head, [next(windows) for _ in range(batch_size)])
        record = {"stage": "vision", "step": step + 1, "loss_symbol": float(loss.detach())}
        if colour_views is not None:
            views = [next(colour_views) for _ in range(colour_batch)]
            colour, position = global_view_losses(model, processor, colour_head, position_head, views)
            record["loss_colour"] = float(colour.detach())
            loss = loss + colour
            if position is not None:
                record["loss_tower_position"] = float(position.detach())
                loss = loss + position
        if symbol_views is not None:
            tokens, labels, _ = view_tokens(model, processor, [next(symbol_views) for _ in range(symbol_batch)])
            reading = token_label_loss(reading_head, tokens, labels)
            record["loss_token_symbol"] = float(reading.detach())
            record["token_symbol_accuracy"] = labelled_accuracy(reading_head, tokens.detach(), labels)
            loss = loss + reading
            if crop_checks is not None and (step + 1) % check_every == 0:
                record["crop_read_accuracy"] = held_out_accuracy(model, processor, reading_head,
                                                                 [next(crop_checks) for _ in range(check_size)])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(trained, 1.0)
        optimizer.step()
        log.append(record)
        if checkpoint is not None and (step + 1) % checkpoint_every == 0:
            checkpoint(log)
            model.train()
        if (step + 1) % 10 == 0:  # means of the last ten steps
            bar.set_postfix({key.removeprefix("loss_"): f"{np.nanmean([r.get(key, math.nan) for r in log[-10:]]):.2f}"
                             for key in record if key not in ("stage", "step")})
    return log
