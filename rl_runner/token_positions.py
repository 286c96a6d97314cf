"""Where each image token lies: an auxiliary pretraining loss that teaches a from-scratch decoder positions.

Qwen2.5-VL has no absolute position embedding: the vision tower and M-RoPE only give relative positions, so a
box's digits must be worked out by the decoder, and a from-scratch model at this scale does not find that on its
own (the grounding digits of `rl_runner.pretrain` stay near ln 10). This loss asks a throw-away linear head, on
the decoder's hidden state of every image token at one layer, for the tenth of the image the token's centre lies
in, along x and along y: the digits a box of `agents.scripted.zoom_box` starts with. The architecture and the
released tool-call format stay as they are; only the pretraining objective gains a term.
"""

from __future__ import annotations

import torch
from torch import nn

BUCKETS = 10  # tenths of the image, as the first decimal of a normalized coordinate


class PositionHead(nn.Module):
    """Linear logits over `BUCKETS` for x, then `BUCKETS` for y, from a decoder hidden state."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.linear = nn.Linear(width, 2 * BUCKETS)

    def forward(self, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.linear(hidden)
        return logits[..., :BUCKETS], logits[..., BUCKETS:]


def position_targets(image_grid_thw: torch.Tensor, merge: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The x and y tenth of every merged image token, image after image, in raster order (as the ids hold them)."""
    xs, ys = [], []
    for frames, height, width in image_grid_thw.tolist():
        rows, cols = height // merge, width // merge
        row = torch.arange(rows).repeat_interleave(cols).repeat(frames)
        col = torch.arange(cols).repeat(rows * frames)
        xs.append(((col + 0.5) * BUCKETS / cols).long())
        ys.append(((row + 0.5) * BUCKETS / rows).long())
    return torch.cat(xs), torch.cat(ys)


def position_loss(
    head: PositionHead, hidden: torch.Tensor, input_ids: torch.Tensor, image_grid_thw: torch.Tensor,
    image_token_id: int, merge: int,
) -> torch.Tensor:
    """Mean cross-entropy of the x and y tenths of every image token in the batch (0 without images)."""
    tokens = hidden[input_ids == image_token_id]
    if tokens.shape[0] == 0:
        return hidden.sum() * 0.0
    return tenths_loss(head, tokens, *position_targets(image_grid_thw, merge))


def tenths_loss(head: PositionHead, states: torch.Tensor, target_x: torch.Tensor,
                target_y: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of the x and y tenths (`[N]` each) that `head` gives `states` (`[N, D]`)."""
    logits_x, logits_y = head(states)
    device = states.device
    return (nn.functional.cross_entropy(logits_x, target_x.to(device))
            + nn.functional.cross_entropy(logits_y, target_y.to(device))) / 2
