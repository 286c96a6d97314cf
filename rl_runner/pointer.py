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

A multiple-choice answer is a lookup too (`option_hops`): from what the turn says it saw to the option that
says the same, to that option's letter. Without supervision, 4,800 text-only examples left the letter at chance
(loss ln 4): the byte-level tokenizer writes the option as "(X" and the answer as "{X", an induction copy this
decoder did not find; pointing the letter straight at "(X" (250 steps) left it at chance as well, since "(X"
comes before the text it labels. `option_hops` supervises the three heads of the induction circuit instead.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, NamedTuple

import torch
from torch import nn
from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import apply_multimodal_rotary_pos_emb

from rl_runner.diagnostics import TOKEN_KINDS
from rl_runner.token_positions import BUCKETS, PositionHead, tenths_loss

POINTER_KEY = "pointer_box"
LETTERS = 26  # the option letters a `letter_loss` head tells apart
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
    """[B, L] bool: the positions whose next token is a trained box coordinate digit (`kinds` [B, L] from
    `rl_runner.diagnostics.kind_indices`); in a row without one, the position that predicts its first trained
    token (the answer about the pointed tag, e.g. the symbol a crop shows)."""
    queries = torch.zeros(kinds.shape, dtype=torch.bool)
    queries[:, :-1] = kinds[:, 1:] == TOKEN_KINDS.index("coordinate")
    for row in (~queries.any(dim=1)).nonzero().reshape(-1):
        trained = (kinds[row] >= 0).nonzero().reshape(-1)
        if len(trained) and trained[0] > 0:
            queries[row, trained[0] - 1] = True
    return queries


# The heads of `option_hops`, (layer, head): the second key/value group of each layer (the tag pointer uses
# head 0's group), one layer per hop so that each reads what the one before it wrote.
OPTION_HOPS = {"option_label": (0, 3), "lookup": (1, 3), "carry": (2, 3)}


class OptionHops(NamedTuple):
    """One row's `option_hops`: per hop, ([L] bool queries, [L] bool targets); and per position, the index (0 for
    A) of the letter a hop's query should hold after its layer (-1 elsewhere)."""

    hops: dict[str, tuple[torch.Tensor, torch.Tensor]]
    letters: torch.Tensor


def option_hops(tokenizer: Any, input_ids: torch.Tensor, kinds: torch.Tensor) -> OptionHops:
    """The `OPTION_HOPS` of one row whose trained answer is an option letter X; all empty for any other row.
    A multiple-choice answer is a lookup in three hops, each one head:

    - `option_label`: at the first token of every option's text (the "L" of "(B) L"), attend to its "(B" token,
      so the option's text carries its letter;
    - `lookup`: at the answer's last mention of the chosen option's text before the letter (the "L" of "Now I
      can see it clearly: L."), attend to that option's text in the prompt: a match of the token itself, whose
      letter it copies;
    - `carry`: where the letter is predicted, attend to that mention, which now holds the letter.

    Pointing the letter straight at "(X" cannot work: under causal attention "(X" does not see the text after it
    (4,800 such examples left the letter at chance, ln 4). Nor does the lookup learn from the letter's position
    (300 steps: mass on the chosen option 0.25 of 4), which holds what was seen only through a head before it.
    With the three heads in place the letter still stayed at chance (250 steps): what the heads move is not
    supervised, so `letters` also names the letter each query should hold (`letter_loss`).
    """
    blank = torch.zeros(kinds.shape, dtype=torch.bool)
    hops = {name: (blank.clone(), blank.clone()) for name in OPTION_HOPS}
    letters = torch.full(kinds.shape, -1, dtype=torch.long)
    answer = (kinds == TOKEN_KINDS.index("answer")).nonzero().reshape(-1)
    if len(answer) == 0 or answer[0] == 0:
        return OptionHops(hops, letters)
    pieces = [tokenizer.decode([int(t)]) for t in input_ids[: int(answer[-1]) + 1]]
    letter = "".join(pieces[p] for p in answer).strip("{} ")
    options = {pieces[p].strip()[1:]: p for p in range(int(answer[0])) if _opens_option(pieces, p)}
    if len(letter) != 1 or letter not in options:
        return OptionHops(hops, letters)
    texts = {name: position + (3 if pieces[position + 2] == " " else 2)  # "(X", ")", " ", text (or " text")
             for name, position in options.items()}
    for name, position in options.items():
        hops["option_label"][0][texts[name]], hops["option_label"][1][position] = True, True
        letters[texts[name]] = ord(name) - ord("A")
    chosen = pieces[texts[letter]].strip()
    trained_before = [p for p in range(int(answer[0])) if kinds[p] >= 0 and pieces[p].strip() == chosen]
    if trained_before:
        mention = trained_before[-1]
        hops["lookup"][0][mention], hops["lookup"][1][texts[letter]] = True, True
        hops["carry"][0][int(answer[0]) - 1], hops["carry"][1][mention] = True, True
        letters[mention] = letters[int(answer[0]) - 1] = ord(letter) - ord("A")
    return OptionHops(hops, letters)


def letter_loss(head: nn.Module, hidden: torch.Tensor, queries: torch.Tensor, letters: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the option letters ([B, L], `OptionHops.letters`) that `head` reads from `hidden`
    ([B, L, D], the states after a hop's layer) at the hop's query positions ([B, L] bool)."""
    return nn.functional.cross_entropy(head(hidden[queries]), letters[queries].to(hidden.device))


def _opens_option(pieces: Sequence[str], position: int) -> bool:
    """Whether `pieces[position]` is the "(X" of an option line "(X) text"."""
    opening = pieces[position].strip()
    return (len(opening) == 2 and opening[0] == "(" and opening[1].isupper() and position + 3 < len(pieces)
            and pieces[position + 1] == ")" and pieces[position + 2].startswith(" "))


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


def head_attention(attention: nn.Module, captured: Mapping[str, Any], head: int, attention_mask: torch.Tensor,
                   rows: torch.Tensor | None = None) -> torch.Tensor:
    """[B, L, L] attention weights of one head, recomputed from its captured inputs (causal, padding masked); of
    the batch's `rows` only ([R, L, L]) when given."""
    hidden, (cos, sin) = captured["hidden_states"], captured["position_embeddings"]
    if rows is not None:  # position embeddings are [3 (t, h, w), B, L, D]
        hidden, cos, sin, attention_mask = hidden[rows], cos[:, rows], sin[:, rows], attention_mask[rows]
    batch, length, _ = hidden.shape
    dim = attention.head_dim
    group = head // attention.num_key_value_groups
    query = attention.q_proj(hidden)[..., head * dim : (head + 1) * dim].reshape(batch, 1, length, dim)
    key = attention.k_proj(hidden)[..., group * dim : (group + 1) * dim].reshape(batch, 1, length, dim)
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
