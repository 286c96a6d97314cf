"""`LocalServerManager`: verl's LLM-server `generate` interface served in-process by a transformers model.

verl's agent loops call `server_manager.generate(request_id=..., prompt_ids=..., sampling_params=...,
image_data=...)` and read a `TokenOutput`. vLLM/SGLang serve that on GPUs; this class serves it with
`agents.vlm.VLMAgent` on a CPU (or one GPU), so agent loops run end to end without a rollout engine: in tests,
and to debug a loop on a laptop before a cluster is used.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import torch
from PIL import Image
from transformers import PreTrainedModel, ProcessorMixin
from verl.workers.rollout.replica import TokenOutput

from agents.vlm import VLMAgent

DEFAULT_MAX_TOKENS = 256
IMAGE_TYPE, VIDEO_TYPE = 1, 2  # Qwen2.5-VL's mm_token_type_ids convention


class LocalServerManager:
    """Generates one turn per call from prompt token ids (image placeholders already expanded) and images."""

    def __init__(self, model: PreTrainedModel, processor: ProcessorMixin) -> None:
        self.model = model
        self.processor = processor
        self._lock = threading.Lock()  # one generation at a time on the shared model

    async def generate(self, request_id: str, *, prompt_ids: list[int], sampling_params: dict[str, Any],
                       image_data: list[Image.Image] | None = None, video_data: list[Any] | None = None,
                       **kwargs: Any) -> TokenOutput:
        """verl's `LLMServerClient.generate`; `kwargs` (audio, processor kwargs, priority...) are not used."""
        if video_data:
            raise NotImplementedError("LocalServerManager serves images only")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, self._generate, prompt_ids, sampling_params, image_data or [])

    def _generate(self, prompt_ids: list[int], sampling_params: dict[str, Any],
                  images: list[Image.Image]) -> TokenOutput:
        agent = VLMAgent(self.model, self.processor,
                         max_new_tokens=int(sampling_params.get("max_tokens", DEFAULT_MAX_TOKENS)),
                         temperature=float(sampling_params.get("temperature", 1.0)),
                         top_p=float(sampling_params.get("top_p", 1.0)), device=self.model.device)
        with self._lock:
            turn = agent.generate([self.model_inputs(prompt_ids, images)])[0]
        log_probs = turn.response_logprobs if sampling_params.get("logprobs") else None
        return TokenOutput(token_ids=turn.response_ids, log_probs=log_probs, stop_reason="completed")

    def model_inputs(self, prompt_ids: list[int], images: list[Image.Image]) -> dict[str, torch.Tensor]:
        """Processor-style inputs (batch of one) for expanded prompt ids and their images."""
        input_ids = torch.tensor([prompt_ids], dtype=torch.long)
        inputs = {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids)}
        if images:
            pixels = self.processor.image_processor(images=images, return_tensors="pt")
            inputs.update(pixel_values=pixels["pixel_values"], image_grid_thw=pixels["image_grid_thw"])
        token_types = torch.zeros_like(input_ids)
        token_types[input_ids == self.processor.image_token_id] = IMAGE_TYPE
        token_types[input_ids == self.processor.video_token_id] = VIDEO_TYPE
        inputs["mm_token_type_ids"] = token_types
        return inputs
