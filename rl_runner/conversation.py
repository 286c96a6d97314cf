"""Whole conversations as training inputs: token ids, images and a loss mask over assistant tokens only.

SFT and RL both train on complete multi-turn chats (system, question, assistant turns, tool results). Each
message is rendered by the chat template and tokenized on its own, so the assistant spans are exact: the mask
covers an assistant turn's content and its end-of-turn token, never the system prompt, the question or the tool
observations (text or image tokens).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import ProcessorMixin

from agents.chat import has_visual, processor_features, render_messages, stack_inputs

ASSISTANT_HEADER = "<|im_start|>assistant\n"
END_OF_TURN = "<|im_end|>"


@dataclass
class EncodedConversation:
    inputs: dict[str, torch.Tensor]  # batch of one: input_ids, attention_mask, pixel_values, image_grid_thw, ...
    loss_mask: torch.Tensor  # [1, L] bool, True on assistant tokens

    @property
    def num_tokens(self) -> int:
        return int(self.inputs["input_ids"].shape[-1])


def encode_conversation(processor: ProcessorMixin, messages: Sequence[Mapping[str, Any]]) -> EncodedConversation:
    """Tokenize a chat message by message and mark the assistant tokens."""
    pieces: list[dict[str, torch.Tensor]] = []
    masks: list[torch.Tensor] = []
    rendered = ""
    for end in range(1, len(messages) + 1):
        full = render_messages(processor, messages[:end], add_generation_prompt=False)
        segment = full[len(rendered):]
        if not full.startswith(rendered):
            raise ValueError("the chat template does not render messages as a prefix-stable sequence")
        rendered = full
        piece, mask = _encode_segment(processor, segment, messages[end - 1])
        pieces.append(piece)
        masks.append(mask)
    inputs = _concatenate(pieces)
    return EncodedConversation(inputs, torch.cat(masks, dim=-1))


def _encode_segment(
    processor: ProcessorMixin, segment: str, message: Mapping[str, Any]
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    if has_visual(message):
        features = _segment_features(processor, segment, message)
    else:
        ids = processor.tokenizer(segment, add_special_tokens=False, return_tensors="pt")
        features = {"input_ids": ids["input_ids"], "attention_mask": ids["attention_mask"]}
    length = features["input_ids"].shape[-1]
    mask = torch.zeros((1, length), dtype=torch.bool)
    if message["role"] == "assistant" and segment.startswith(ASSISTANT_HEADER):
        header = len(processor.tokenizer(ASSISTANT_HEADER, add_special_tokens=False)["input_ids"])
        body = segment[len(ASSISTANT_HEADER):]
        through_end = body[: body.rfind(END_OF_TURN) + len(END_OF_TURN)] if END_OF_TURN in body else body
        trained = len(processor.tokenizer(through_end, add_special_tokens=False)["input_ids"])
        mask[0, header : header + trained] = True
    return features, mask


def _segment_features(processor: ProcessorMixin, segment: str, message: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Processor outputs for one rendered segment that holds images or a video (placeholders expanded)."""
    features = processor_features(processor, segment, [message])
    return {key: torch.as_tensor(value) for key, value in dict(features).items()}


def _concatenate(pieces: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    token_keys = {key for piece in pieces for key, value in piece.items() if value.ndim == 2 and value.shape[0] == 1
                  and value.shape[1] == piece["input_ids"].shape[1]}
    result: dict[str, torch.Tensor] = {}
    for key in dict.fromkeys(k for piece in pieces for k in piece):
        if key in token_keys:  # token-aligned: every piece contributes (zeros where it lacks the key)
            result[key] = torch.cat([piece.get(key, torch.zeros_like(piece["input_ids"])) for piece in pieces], dim=-1)
        else:  # per-image tensors (pixel_values, image_grid_thw): only the pieces that hold images
            result[key] = torch.cat([piece[key] for piece in pieces if key in piece], dim=0)
    return result


def batch_conversations(
    conversations: Sequence[EncodedConversation], pad_token_id: int
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Left-pad a list of encoded conversations into one batch; returns inputs and the [B, L] loss mask."""
    inputs = stack_inputs([c.inputs for c in conversations], pad_token_id)
    width = inputs["input_ids"].shape[-1]
    mask = torch.zeros((len(conversations), width), dtype=torch.bool)
    for row, conversation in enumerate(conversations):
        mask[row, width - conversation.num_tokens :] = conversation.loss_mask[0]
    return inputs, mask

