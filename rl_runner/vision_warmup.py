"""Warm-up of a from-scratch vision tower: tag windows -> the symbol on the tag, through a linear head.

A hub VLM's vision tower was pretrained on its own (CLIP-style) before the language model learned to read its
tokens. A tiny Qwen2.5-VL built here needs the same first step: `benchmarks.vision_probe` shows that the decoder
does not learn to read a glyph from a random tower in 600 steps, even though the glyph is linearly separable in
the random tower's output (a linear probe on frozen features reaches 1.00), while after this warm-up it learns to
in under 100 steps. The warm-up trains `model.visual` (patch embedding, blocks, merger) with a throw-away linear
head on the mean of a window's image tokens; the head is discarded, the tower's weights stay in the model. Only
the symbol is taught: the decoder learns low-frequency cues (a frame's colour) from a random tower on its own, and
a second head for them slows the glyphs' start (symbol loss 1.68 instead of 0.02 after 160 steps).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torch import nn
from tqdm import tqdm

from pixel_gym.suites.glyphs import SYMBOLS

SYMBOL_IDS = {symbol: i for i, symbol in enumerate(SYMBOLS)}


@dataclass(frozen=True)
class TagWindow:
    """A small image around one tag, as a crop serves it, and what the tag shows."""

    pixels: np.ndarray
    symbol: str


def vision_features(model: nn.Module, processor, windows: Sequence[TagWindow], device: torch.device) -> torch.Tensor:
    """The merged tokens the vision tower makes of `windows` (all of one size), [windows * tokens, width]."""
    inputs = processor.image_processor(images=[Image.fromarray(w.pixels) for w in windows], return_tensors="pt")
    output = model.model.visual(inputs["pixel_values"].to(device), grid_thw=inputs["image_grid_thw"].to(device))
    return output if torch.is_tensor(output) else output.pooler_output


def warm_up_vision(
    model: nn.Module,
    processor,
    windows: Iterator[TagWindow],
    steps: int,
    batch_size: int = 32,
    lr: float = 1e-3,
    progress: bool = True,
) -> list[dict[str, float]]:
    """Train the vision tower of `model` to tell each window's symbol; returns the loss log."""
    device = next(model.parameters()).device
    head = nn.Linear(model.config.vision_config.out_hidden_size, len(SYMBOL_IDS)).to(device)
    optimizer = torch.optim.AdamW([*model.model.visual.parameters(), *head.parameters()], lr=lr)
    log: list[dict[str, float]] = []
    model.train()
    for step in tqdm(range(steps), desc="vision warm-up", disable=not progress):
        batch = [next(windows) for _ in range(batch_size)]
        tokens = vision_features(model, processor, batch, device)
        logits = head(tokens.reshape(len(batch), -1, tokens.shape[-1]).mean(1))
        loss = nn.functional.cross_entropy(logits, torch.tensor([SYMBOL_IDS[w.symbol] for w in batch], device=device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_([*model.model.visual.parameters(), *head.parameters()], 1.0)
        optimizer.step()
        log.append({"stage": "vision", "step": step + 1, "loss_symbol": float(loss.detach())})
    return log
