"""`PixelGymDataset` (`data.custom_cls`): verl's `RLHFDataset`, taking a row's images as the env rendered them.

verl's `tool_agent` loop reads a prompt's images through `RLHFDataset.process_multi_modal_info`, which runs
qwen_vl_utils' `process_vision_info`: a second smart_resize of images the env already sized by its budgets (a
no-op for them, factor 28 inside qwen_vl_utils' pixel bounds, but a hidden place where the view could change) and
an import of torchvision. This class returns the images unchanged, in placeholder order, decoded once when the
row is read; everything else is verl's. (`PixelGymAgentLoop` takes its images from the env and never calls it.)
"""

from __future__ import annotations

from typing import Any

from PIL import Image
from verl.utils.dataset.rl_dataset import RLHFDataset


class PixelGymDataset(RLHFDataset):
    def _build_messages(self, example: dict, key: str) -> list:
        """verl's messages, each image decoded here, once (verl opens PNG bytes lazily, and rollouts of one row
        share the object across threads: a lazy decode there races)."""
        messages = super()._build_messages(example, key)
        for message in messages:
            for part in message["content"] if isinstance(message["content"], list) else []:
                if isinstance(part.get("image"), Image.Image):
                    part["image"] = part["image"].convert("RGB")
        return messages

    @classmethod
    def _process_multi_modal_info(cls, messages: list[dict], image_patch_size: Any,
                                  config: Any) -> tuple[list[Image.Image] | None, None, list[Any] | None]:
        images = [part["image"] for message in messages if isinstance(message.get("content"), list)
                  for part in message["content"] if isinstance(part, dict) and part.get("type") == "image"]
        if any(isinstance(part, dict) and part.get("type") == "video" for message in messages
               if isinstance(message.get("content"), list) for part in message["content"]):
            raise ValueError("pixel-gym rows carry a video as its frames (images): no video part expected")
        return images or None, None, cls._extract_audio_info(messages)
