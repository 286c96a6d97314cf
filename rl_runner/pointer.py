"""Where to look: an auxiliary pretraining loss that teaches one decoder head to attend to the tag a box names.

A box's digits need two things from a decoder: where each image token lies (`rl_runner.token_positions`) and
which tokens the question asks about. The second is a content-addressed lookup (the query holds "yellow", the
keys hold each token's colour), and a from-scratch model at this scale does not find it from the digits' loss
alone: the grounding loss of the committed base stayed near ln 10. This loss supervises the lookup directly: at
every position that predicts a box's coordinate digit, one attention head of one decoder layer should put its
weight on the image tokens that the named tag covers. The architecture and the released tool-call format stay
as they are; only the pretraining objective gains a term, and the head keeps its ordinary role at inference.

A chat says which tag its answer points at with `POINTER_KEY` on its image part: the tag's box as fractions of
the image (x1, y1, x2, y2).

A second term (`answer_position_loss`) asks the position head of `rl_runner.token_positions`, on the state just
after that layer at the same positions, for the tenth of the image that the tag's centre lies in: the digits the
box starts with. Together the two supervise the whole hop: look up the named tag, carry its position out.

The same lookup serves a multiple-choice answer (`option_pointer`): where a text-only answer's letter X is
predicted, the head should attend to the prompt's "(X" token, the option whose text the chat has just named.
Without it, 4,800 such examples left the letter at chance (loss ln 4): the byte-level tokenizer writes the
option as "(X" and the answer as "{X", an induction copy this decoder did not find. With it (250 steps) the
letter stayed at chance too, so `PretrainConfig.option_pointer` is off by default.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn
from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import apply_multimodal_rotary_pos_emb

from rl_runner.diagnostics import TOKEN_KINDS
from rl_runner.token_positions import BUCKETS, PositionHead, tenths_loss

POINTER_KEY = "pointer_box"
EPSILON = 1e-6


def pointed_box(messages: Sequence[Mapping[str, Any]]) -> tuple[float, ...] | None:
    """The `POINTER_KEY` box of a chat's first image part, if it has one."""
    for message in messages:
        for part in message.get("content", []):
            if isinstance(part, Mapping) and part.get("type") == "image":
                box = part.get(POINTER_KEY)
                return None if box is None else tuple(float(v) for v in box)
    return None


def target_tokens(
    input_ids: torch.Tensor, image_grid_thw: torch.Tensor | None, box: Sequence[float] | None,
    image_token_id: int, merge: int,
) -> torch.Tensor:
    """[L] bool: the first image's merged tokens whose cell overlaps `box` (fractions); all False without one."""
    targets = torch.zeros(input_ids.shape[-1], dtype=torch.bool)
    if box is None or image_grid_thw is None or len(image_grid_thw) == 0:
        return targets
    _, height, width = (int(v) for v in image_grid_thw[0])
    rows, cols = height // merge, width // merge
    row = torch.arange(rows).repeat_interleave(cols)
    col = torch.arange(cols).repeat(rows)
    x1, y1, x2, y2 = box
    inside = ((col + 1) / cols > x1) & (col / cols < x2) & ((row + 1) / rows > y1) & (row / rows < y2)
    image_positions = (input_ids.reshape(-1) == image_token_id).nonzero().reshape(-1)[: rows * cols]
    targets[image_positions[inside]] = True
    return targets


def centre_tenths(box: Sequence[float] | None) -> tuple[int, int]:
    """The x and y tenth of `box`'s centre (the first digits of its unit-cell box); (-1, -1) without a box."""
    if box is None:
        return (-1, -1)
    x1, y1, x2, y2 = box
    return tuple(min(int((a + b) / 2 * BUCKETS), BUCKETS - 1) for a, b in ((x1, x2), (y1, y2)))


def query_positions(kinds: torch.Tensor) -> torch.Tensor:
    """[..., L] bool: the positions whose next token is a trained box coordinate digit (`kinds` from
    `rl_runner.diagnostics.kind_indices`)."""
    queries = torch.zeros(kinds.shape, dtype=torch.bool)
    queries[..., :-1] = kinds[..., 1:] == TOKEN_KINDS.index("coordinate")
    return queries


def option_pointer(tokenizer: Any, input_ids: torch.Tensor, kinds: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """([L] bool, [L] bool) of one row whose trained answer is an option letter X: the position that predicts the
    answer token, and the prompt's "(X" token that names that option (the last one before the answer); both all
    False for any other row. The letter of a multiple-choice answer is then a lookup, like a box's tag."""
    queries, targets = torch.zeros(kinds.shape, dtype=torch.bool), torch.zeros(kinds.shape, dtype=torch.bool)
    answer = (kinds == TOKEN_KINDS.index("answer")).nonzero().reshape(-1)
    if len(answer) == 0 or answer[0] == 0:
        return queries, targets
    letter = "".join(tokenizer.decode([int(input_ids[p])]) for p in answer).strip("{} ")
    if len(letter) != 1 or not letter.isalpha():
        return queries, targets
    named = [p for p in range(int(answer[0])) if tokenizer.decode([int(input_ids[p])]).strip() == f"({letter}"]
    if named:
        queries[answer[0] - 1], targets[named[-1]] = True, True
    return queries, targets


@contextmanager
def captured_attention_inputs(attention: nn.Module) -> Iterator[dict[str, Any]]:
    """While open, the last forward's inputs of `attention` (a Qwen2.5-VL text attention module)."""
    captured: dict[str, Any] = {}

    def keep(_module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        captured["hidden_states"] = kwargs.get("hidden_states", args[0] if args else None)
        captured["position_embeddings"] = kwargs["position_embeddings"]

    handle = attention.register_forward_pre_hook(keep, with_kwargs=True)
    try:
        yield captured
    finally:
        handle.remove()


def head_attention(attention: nn.Module, captured: Mapping[str, Any], head: int,
                   attention_mask: torch.Tensor) -> torch.Tensor:
    """[B, L, L] attention weights of one head, recomputed from its captured inputs (causal, padding masked)."""
    hidden = captured["hidden_states"]
    batch, length, _ = hidden.shape
    dim = attention.head_dim
    group = head // attention.num_key_value_groups
    query = attention.q_proj(hidden)[..., head * dim : (head + 1) * dim].reshape(batch, 1, length, dim)
    key = attention.k_proj(hidden)[..., group * dim : (group + 1) * dim].reshape(batch, 1, length, dim)
    cos, sin = captured["position_embeddings"]
    sections = attention.config.rope_parameters["mrope_section"]
    query, key = apply_multimodal_rotary_pos_emb(query, key, cos, sin, sections)
    scores = (query @ key.transpose(-1, -2))[:, 0] * attention.scaling
    causal = torch.ones(length, length, dtype=torch.bool, device=hidden.device).tril()
    allowed = causal[None] & attention_mask.bool()[:, None, :]
    return scores.masked_fill(~allowed, torch.finfo(scores.dtype).min).softmax(dim=-1)


def pointer_loss(weights: torch.Tensor, queries: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean of -log(attention mass on the target tokens) over the query positions ([B, L, L], [B, L], [B, L])."""
    if not bool(queries.any()):
        return weights.sum() * 0.0
    mass = (weights * targets[:, None, :].to(weights.dtype)).sum(dim=-1)  # [B, L]
    return -(mass[queries] + EPSILON).log().mean()


def answer_position_loss(
    head: PositionHead, hidden: torch.Tensor, queries: torch.Tensor, tenths: torch.Tensor
) -> torch.Tensor:
    """Cross-entropy of the pointed tag's x and y tenths ([B, 2]) from `hidden` ([B, L, D]) at the query positions."""
    if not bool(queries.any()):
        return hidden.sum() * 0.0
    rows = queries.nonzero()[:, 0]
    return tenths_loss(head, hidden[queries], tenths[rows, 0], tenths[rows, 1])
