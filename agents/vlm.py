"""`VLMAgent`: a transformers vision-language model acting in pixel-gym, plus log-prob recomputation for RL.

Log-prob convention: `Turn.response_logprobs` and `sequence_logprobs` are log-probabilities of the chosen tokens
under the model's raw distribution (softmax of the logits at temperature 1, before top-p), whatever sampling
settings produced the tokens. That is what policy-gradient losses and KL terms need.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from transformers import AutoModelForImageTextToText, PreTrainedModel, ProcessorMixin

from agents.chat import extend_sample, load_processor, messages_to_model_inputs, stack_inputs

TOOL_CALL_END = "</tool_call>"
END_OF_TURN = "<|im_end|>"
VISUAL_KEYS = {"pixel_values", "pixel_values_videos"}  # inputs whose rope positions the model computes itself


@dataclass
class Turn:
    """One generated assistant turn and what is needed to score it again."""

    text: str  # decoded response without special tokens (`</tool_call>` is kept)
    prompt_ids: list[int]
    response_ids: list[int]  # including the stop token when there is one
    response_logprobs: list[float]  # raw-distribution (temperature 1) log-prob of each response token
    model_inputs: dict[str, torch.Tensor]  # the prompt's processor outputs (CPU): input_ids, pixel_values, ...
    finish_reason: str  # "tool_call", "stop" (end of turn) or "length"


@dataclass
class TurnBatch:
    """Left-padded prompt + response sequences of several turns, ready for `sequence_logprobs`."""

    inputs: dict[str, torch.Tensor]
    response_mask: torch.Tensor  # [B, L] bool: True at response tokens
    sampled_logprobs: torch.Tensor  # [B, L] float: `Turn.response_logprobs` at response tokens, 0 elsewhere


class VLMAgent:
    """Chats with a transformers image-text-to-text model: one assistant turn per observation."""

    def __init__(self, model_or_path: str | os.PathLike | PreTrainedModel, processor: ProcessorMixin | None = None,
                 max_new_tokens: int = 512, temperature: float = 1.0, top_p: float = 1.0,
                 device: str | torch.device | None = None, dtype: str | torch.dtype | None = None,
                 top_k: int = 0, later_temperature: float | None = None, generation_batch_size: int = 32) -> None:
        """`temperature` samples a conversation's first assistant turn, `later_temperature` (default: the same)
        the turns after it; 0 is greedy. `top_k` 0 means no top-k cut. At most `generation_batch_size`
        conversations share one `generate` call (its KV cache and logits grow with the batch)."""
        if generation_batch_size < 1:
            raise ValueError(f"generation_batch_size must be >= 1, got {generation_batch_size}")
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = _load_model(model_or_path, self.device, dtype)
        self.processor = processor or load_processor(
            model_or_path if isinstance(model_or_path, (str, os.PathLike)) else self.model.name_or_path
        )
        self.tokenizer = self.processor.tokenizer
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.later_temperature = temperature if later_temperature is None else later_temperature
        self.top_p, self.top_k = top_p, top_k
        self.generation_batch_size = generation_batch_size
        self.stop_ids = stop_token_ids(self.tokenizer, self.model.generation_config.eos_token_id)
        self.pad_token_id = pad_token_id(self.tokenizer, self.stop_ids)

    def act(self, observation: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> str:
        """The model's next turn (text) for one observation."""
        return self.act_batch([observation])[0].text

    def act_batch(self, observations: Sequence[Mapping[str, Any] | Sequence[Mapping[str, Any]]]) -> list[Turn]:
        """One turn per observation (an env observation dict with "messages", or a message list)."""
        samples = [messages_to_model_inputs(self.processor, _messages(obs)) for obs in observations]
        temperatures = [self.turn_temperature(_messages(obs)) for obs in observations]
        turns: dict[int, Turn] = {}
        for temperature in dict.fromkeys(temperatures):  # batched generations per temperature
            rows = [i for i, t in enumerate(temperatures) if t == temperature]
            for start in range(0, len(rows), self.generation_batch_size):
                chunk = rows[start : start + self.generation_batch_size]
                turns.update(zip(chunk, self.generate([samples[i] for i in chunk], temperature)))
        return [turns[i] for i in range(len(samples))]

    def turn_temperature(self, messages: Sequence[Mapping[str, Any]]) -> float:
        """`temperature` for a conversation without an assistant turn yet, else `later_temperature`."""
        answered = any(message.get("role") == "assistant" for message in messages)
        return self.later_temperature if answered else self.temperature

    @torch.no_grad()
    def generate(self, samples: Sequence[Mapping[str, torch.Tensor]], temperature: float | None = None) -> list[Turn]:
        """Generate from per-prompt processor outputs, batched with left padding and the KV cache."""
        batch = _to_device(stack_inputs(samples, self.pad_token_id), self.device)
        output = self.model.generate(**batch, **self._generation_kwargs(
            self.temperature if temperature is None else temperature))
        width = batch["input_ids"].shape[1]
        responses = output.sequences[:, width:]
        logprobs = _chosen_logprobs(output.logits, responses)
        return [self._turn(sample, row.tolist(), scores.tolist())
                for sample, row, scores in zip(samples, responses.cpu(), logprobs.cpu())]

    def turn_batch(self, turns: Sequence[Turn]) -> TurnBatch:
        """Batch turns for `sequence_logprobs` (on the agent's device)."""
        batch = turns_to_batch(turns, self.pad_token_id)
        return TurnBatch(_to_device(batch.inputs, self.device), batch.response_mask.to(self.device),
                         batch.sampled_logprobs.to(self.device))

    def _generation_kwargs(self, temperature: float) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "max_new_tokens": self.max_new_tokens, "do_sample": False, "repetition_penalty": 1.0,
            "eos_token_id": self.stop_ids, "pad_token_id": self.pad_token_id, "use_cache": True,
            "return_dict_in_generate": True, "output_logits": True,
            # a generated image/video placeholder would break the next forward (features vs placeholders)
            "suppress_tokens": placeholder_token_ids(self.processor) or None,
        }
        if temperature > 0:  # top_k=0 (no cut) overrides hub defaults (Qwen2.5-VL ships top_k=1)
            kwargs.update(do_sample=True, temperature=temperature, top_p=self.top_p, top_k=self.top_k)
        if TOOL_CALL_END not in self.tokenizer.get_vocab():
            kwargs.update(stop_strings=[TOOL_CALL_END], tokenizer=self.tokenizer)
        return kwargs

    def _turn(self, sample: Mapping[str, torch.Tensor], ids: list[int], logprobs: list[float]) -> Turn:
        length, reason = self._response_end(ids)
        response = ids[:length]
        return Turn(
            text=self.tokenizer.decode(response, skip_special_tokens=True),
            prompt_ids=sample["input_ids"][0].tolist(),
            response_ids=response,
            response_logprobs=logprobs[:length],
            model_inputs={key: value.detach().cpu() for key, value in sample.items()},
            finish_reason=reason,
        )

    def _response_end(self, ids: list[int]) -> tuple[int, str]:
        """Length of the response in `ids` (generation pads finished rows) and why it ended."""
        for index, token in enumerate(ids):
            if token in self.stop_ids:
                is_tool = self.tokenizer.convert_ids_to_tokens(token) == TOOL_CALL_END
                return index + 1, "tool_call" if is_tool else "stop"
        end = _first_prefix_containing(self.tokenizer, ids, TOOL_CALL_END)
        return (end, "tool_call") if end is not None else (len(ids), "length")


def sequence_logprobs(model: PreTrainedModel, inputs: Mapping[str, torch.Tensor],
                      response_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Per-token log p(input_ids[:, t] | input_ids[:, :t]) as a [B, L] tensor with gradients.

    Position 0 gets 0; with `response_mask`, only response positions are scored (others are 0) and logits are
    computed only from the first response position on, which saves memory on large vocabularies.
    """
    kwargs = dict(inputs)
    ids = kwargs["input_ids"]
    if not VISUAL_KEYS & kwargs.keys():  # text only: positions from the mask, as generation computes them
        kwargs["position_ids"] = (kwargs["attention_mask"].long().cumsum(-1) - 1).clamp(min=0)
    keep = ids.shape[1]
    if response_mask is not None and response_mask.any():
        first = int(response_mask.float().argmax(-1)[response_mask.any(-1)].min())
        keep = ids.shape[1] - max(first - 1, 0)
    logits = model(**kwargs, use_cache=False, logits_to_keep=keep).logits[:, :-1].float()
    targets = ids[:, ids.shape[1] - keep + 1:]
    chosen = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - logits.logsumexp(-1)
    logprobs = F.pad(chosen, (ids.shape[1] - chosen.shape[1], 0))
    return logprobs if response_mask is None else logprobs * response_mask.to(logprobs.dtype)


def turns_to_batch(turns: Sequence[Turn], pad_id: int) -> TurnBatch:
    """Prompt + response of each turn, left-padded, with the response mask and the sampled log-probs (CPU)."""
    inputs = stack_inputs([extend_sample(turn.model_inputs, turn.response_ids) for turn in turns], pad_id)
    mask = torch.zeros(inputs["input_ids"].shape, dtype=torch.bool)
    sampled = torch.zeros(inputs["input_ids"].shape, dtype=torch.float32)
    for row, turn in enumerate(turns):
        length = len(turn.response_ids)
        if length:
            mask[row, -length:] = True
            sampled[row, -length:] = torch.tensor(turn.response_logprobs)
    return TurnBatch(inputs, mask, sampled)


def stop_token_ids(tokenizer: Any, eos_token_id: int | list[int] | None) -> list[int]:
    """Token ids that end a turn: the model's EOS ids, `<|im_end|>` and `</tool_call>` where single tokens."""
    ids = [eos_token_id] if isinstance(eos_token_id, int) else list(eos_token_id or [])
    vocab = tokenizer.get_vocab()
    ids += [vocab[token] for token in (END_OF_TURN, TOOL_CALL_END) if token in vocab]
    if tokenizer.eos_token_id is not None:
        ids.append(tokenizer.eos_token_id)
    return list(dict.fromkeys(ids))


def placeholder_token_ids(processor: Any) -> list[int]:
    """The image/video placeholder ids that the processor expands (never to be generated)."""
    ids = (getattr(processor, name, None) for name in ("image_token_id", "video_token_id"))
    return [token for token in ids if isinstance(token, int)]


def pad_token_id(tokenizer: Any, stop_ids: Sequence[int]) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stop_ids[0]


def _load_model(model_or_path: str | os.PathLike | PreTrainedModel, device: torch.device,
                dtype: str | torch.dtype | None) -> PreTrainedModel:
    """Load by hub id or path (default dtype: bf16 on GPUs that have it, else fp32); a given model keeps its
    dtype unless `dtype` is set."""
    if isinstance(model_or_path, PreTrainedModel):
        model = model_or_path if dtype is None else model_or_path.to(_resolve_dtype(dtype, device))
    else:
        model = AutoModelForImageTextToText.from_pretrained(model_or_path, dtype=_resolve_dtype(dtype, device))
    return model.to(device).eval()


def _resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype is not None:
        return getattr(torch, dtype)
    return torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else torch.float32


def _chosen_logprobs(step_logits: Sequence[torch.Tensor], tokens: torch.Tensor) -> torch.Tensor:
    """[B, T] log-softmax (temperature 1) of each step's raw logits at the chosen token."""
    columns = [logits.float().log_softmax(-1).gather(-1, tokens[:, step, None]).squeeze(-1)
               for step, logits in enumerate(step_logits)]
    return torch.stack(columns, dim=1)


def _first_prefix_containing(tokenizer: Any, ids: list[int], text: str) -> int | None:
    """Smallest k with `text` in decode(ids[:k]) (bisection: containment only grows with k), or None."""
    if text not in tokenizer.decode(ids):
        return None
    low, high = 1, len(ids)
    while low < high:
        middle = (low + high) // 2
        low, high = (low, middle) if text in tokenizer.decode(ids[:middle]) else (middle + 1, high)
    return low


def _messages(observation: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> Sequence[Mapping[str, Any]]:
    return observation["messages"] if isinstance(observation, Mapping) else observation


def _to_device(inputs: Mapping[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {key: value.to(device) for key, value in inputs.items()}
