"""From the environment's chat history to model inputs: processor loading, chat templating and batching.

The same functions serve generation and the later log-prob recomputation, so both see identical token ids,
pixels and (for Qwen2.5-VL) 3D rope positions.

A video question holds ONE video part, `{"type": "video", "video": [frames]}` (Qwen's message format). A processor
with a video processor (`Qwen2_5_VLProcessor`, which needs torchvision) gets it as a video; an images-only
processor gets its frames as images instead, and that fallback is logged once per processor.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from transformers import AutoConfig, AutoProcessor, BatchFeature, ProcessorMixin, Qwen2_5_VLProcessor

TOKEN_KEYS = ("input_ids", "attention_mask")
MODALITY_KEY = "mm_token_type_ids"  # Qwen2.5-VL's per-token modality (0 text, 1 image, 2 video)
VIDEO_FPS = 2.0  # qwen-vl-utils' rate for a video given as frames: one temporal patch (2 frames) per second
VIDEO_FALLBACK_WARNING = ("%s cannot take video input (no video processor; Qwen2.5-VL's needs torchvision): "
                          "video parts are shown as their frames, one image each, instead of one video input")

logger = logging.getLogger(__name__)
_warned_fallback: weakref.WeakSet[ProcessorMixin] = weakref.WeakSet()


class ImageOnlyQwen2_5_VLProcessor(Qwen2_5_VLProcessor):
    """Qwen2.5-VL's processor without its video processor (which needs torchvision); images are unchanged.

    Only the image tokens are expanded, exactly as by `Qwen2_5_VLProcessor`; `videos=` is not supported.
    """

    def __init__(self, image_processor: Any = None, tokenizer: Any = None, chat_template: str | None = None,
                 **kwargs: Any) -> None:
        super().__init__(image_processor, tokenizer, None, chat_template=chat_template, **kwargs)

    def to_dict(self) -> dict[str, Any]:
        """Saved as the stock `Qwen2_5_VLProcessor`, so checkpoints load anywhere `AutoProcessor` works."""
        return {**super().to_dict(), "processor_class": "Qwen2_5_VLProcessor"}


def load_processor(name_or_path: str | os.PathLike, **kwargs: Any) -> ProcessorMixin:
    """`AutoProcessor.from_pretrained`; Qwen2.5-VL loads images-only where torchvision is missing."""
    if importlib.util.find_spec("torchvision") is None and _model_type(name_or_path) == "qwen2_5_vl":
        return ImageOnlyQwen2_5_VLProcessor.from_pretrained(name_or_path, **kwargs)
    return AutoProcessor.from_pretrained(name_or_path, **kwargs)


def _model_type(name_or_path: str | os.PathLike) -> str:
    try:
        return AutoConfig.from_pretrained(name_or_path).model_type
    except (OSError, ValueError):
        return ""


def to_pil(image: Any) -> Image.Image:
    """An RGB PIL image from a (H, W, 3) uint8 array or a PIL image."""
    if isinstance(image, Image.Image):
        return image if image.mode == "RGB" else image.convert("RGB")
    array = np.asarray(image)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"images must be (H, W, 3) uint8 arrays, got {array.dtype} {array.shape}")
    return Image.fromarray(array)


def conversation_images(messages: Sequence[Mapping[str, Any]]) -> list[Image.Image]:
    """The images of a chat, in the order the chat template places their placeholders (video parts excluded)."""
    return [to_pil(part["image"]) for message in messages for part in _parts(message) if _is_image(part)]


def conversation_videos(messages: Sequence[Mapping[str, Any]]) -> list[list[Image.Image]]:
    """The videos of a chat (each a list of RGB frames), in placeholder order."""
    return [[to_pil(frame) for frame in part["video"]] for message in messages for part in _parts(message)
            if _is_video(part)]


def has_visual(message: Mapping[str, Any]) -> bool:
    """Whether a message holds an image or a video part (its rendering has placeholders to expand)."""
    return any(_is_image(part) or _is_video(part) for part in _parts(message))


def takes_video(processor: Any) -> bool:
    return getattr(processor, "video_processor", None) is not None


def frames_as_images(messages: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """`messages` with every video part replaced by its frames as image parts (the images-only fallback)."""
    return [{**message, "content": [image for part in _parts(message) for image in _as_images(part)]}
            if any(_is_video(part) for part in _parts(message)) else message for message in messages]


def model_messages(processor: ProcessorMixin, messages: Sequence[Mapping[str, Any]]) -> Sequence[Mapping[str, Any]]:
    """The messages as `processor` can take them: unchanged, or with video frames as images (logged once)."""
    if takes_video(processor) or not any(_is_video(p) for message in messages for p in _parts(message)):
        return messages
    if processor not in _warned_fallback:
        _warned_fallback.add(processor)
        logger.warning(VIDEO_FALLBACK_WARNING, type(processor).__name__)
    return frames_as_images(messages)


def render_messages(processor: ProcessorMixin, messages: Sequence[Mapping[str, Any]],
                    add_generation_prompt: bool = True, tools: list[dict[str, Any]] | None = None) -> str:
    """The chat template's text for `messages` (image and video parts become the model's placeholders)."""
    skeleton = [{**message, "content": _skeleton(message)} for message in model_messages(processor, messages)]
    return processor.apply_chat_template(
        skeleton, tokenize=False, add_generation_prompt=add_generation_prompt, tools=tools
    )


def processor_features(processor: ProcessorMixin, text: str, messages: Sequence[Mapping[str, Any]]) -> BatchFeature:
    """The processor's outputs (numpy) for rendered `text` and the pictures of `messages`, placeholders expanded.

    Videos keep the env's frame sizes (no resize) and get qwen-vl-utils' 2 fps, so a temporal patch spans 1 s.
    """
    messages = model_messages(processor, messages)
    images, videos = conversation_images(messages), conversation_videos(messages)
    kwargs: dict[str, Any] = {}
    if videos:
        metadata = [{"total_num_frames": len(frames), "fps": VIDEO_FPS} for frames in videos]
        kwargs = {"videos": videos, "videos_kwargs": {"do_resize": False, "video_metadata": metadata}}
    return processor(text=[text], images=images or None, return_tensors="np", **kwargs)  # "pt" warns under numpy 2


def messages_to_model_inputs(processor: ProcessorMixin, messages: Sequence[Mapping[str, Any]],
                             add_generation_prompt: bool = True,
                             tools: list[dict[str, Any]] | None = None) -> BatchFeature:
    """Processor inputs (batch of one) for the env's `messages`: input_ids, attention_mask, pixel_values..."""
    text = render_messages(processor, messages, add_generation_prompt, tools)
    return BatchFeature(dict(processor_features(processor, text, messages)), tensor_type="pt")


def stack_inputs(samples: Sequence[Mapping[str, torch.Tensor]], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Batch per-sample inputs: token-aligned `[1, L]` tensors are left-padded, the rest (pixel_values,
    image_grid_thw, ...) concatenated along dim 0 in sample order (samples without images add nothing)."""
    lengths = [sample["input_ids"].shape[-1] for sample in samples]
    width = max(lengths)
    keys = dict.fromkeys(key for sample in samples for key in sample)
    batch: dict[str, torch.Tensor] = {}
    for key in keys:
        if key == MODALITY_KEY:  # text-only samples have no modality ids: theirs are all text (0)
            samples = [s if key in s else {**s, key: torch.zeros_like(s["input_ids"])} for s in samples]
        values = [sample[key] for sample in samples if key in sample]
        if len(values) == len(samples) and _is_token_aligned(values, lengths):
            fill = pad_token_id if key == "input_ids" else 0
            batch[key] = torch.cat([_left_pad(value, width, fill) for value in values])
        elif key in TOKEN_KEYS:
            raise ValueError(f"every sample needs a [1, length] {key!r}")
        else:
            batch[key] = torch.cat(values)
    return batch


def extend_sample(sample: Mapping[str, torch.Tensor], token_ids: Sequence[int]) -> dict[str, torch.Tensor]:
    """`sample` with `token_ids` appended: attention 1, other token-aligned tensors (mm_token_type_ids) 0."""
    length = sample["input_ids"].shape[-1]
    extra = torch.tensor([list(token_ids)], dtype=sample["input_ids"].dtype)
    extended = {}
    for key, value in sample.items():
        if key == "input_ids":
            extended[key] = torch.cat([value, extra], dim=-1)
        elif _is_token_aligned([value], [length]):
            tail = torch.ones_like(extra) if key == "attention_mask" else torch.zeros_like(extra)
            extended[key] = torch.cat([value, tail.to(value.dtype)], dim=-1)
        else:
            extended[key] = value
    return extended


def _is_token_aligned(values: Sequence[torch.Tensor], lengths: Sequence[int]) -> bool:
    return all(value.ndim == 2 and value.shape == (1, length) for value, length in zip(values, lengths))


def _left_pad(value: torch.Tensor, width: int, fill: int) -> torch.Tensor:
    pad = value.new_full((1, width - value.shape[-1]), fill)
    return torch.cat([pad, value], dim=-1)


def _parts(message: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    content = message.get("content")
    return [] if isinstance(content, str) or content is None else list(content)


def _is_image(part: Mapping[str, Any]) -> bool:
    return part.get("type") == "image"


def _is_video(part: Mapping[str, Any]) -> bool:
    return part.get("type") == "video"


def _as_images(part: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [{"type": "image", "image": frame} for frame in part["video"]] if _is_video(part) else [part]


def _skeleton(message: Mapping[str, Any]) -> Any:
    content = message.get("content")
    if isinstance(content, str) or content is None:
        return content
    return [{"type": "image"} if _is_image(part) else {"type": "video"} if _is_video(part) else dict(part)
            for part in content]
