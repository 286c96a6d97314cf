"""The env's chat history in the shapes verl reads: PIL images for the agent loop, `<image>` text for parquet.

A video part (the released protocol's one video input) reaches verl as its frames, one image each: verl's rows
and tool responses carry images only here (said once in the log).
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from typing import Any

from PIL import Image

from agents.chat import frames_as_images, to_pil

IMAGE_PLACEHOLDER = "<image>"
logger = logging.getLogger(__name__)
_warned: list[bool] = []


def to_chat(messages: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Env messages with every image part as an RGB PIL image (what verl's processors and tokenizers take)."""
    return [{"role": message["role"], "content": [_part(part) for part in message["content"]]}
            for message in images_only(messages)]


def images_only(messages: Sequence[dict[str, Any]]) -> Sequence[dict[str, Any]]:
    """The messages with any video part as its frames (image parts), warned once per process."""
    if not any(part.get("type") == "video" for message in messages for part in message["content"]):
        return messages
    if not _warned:
        _warned.append(True)
        logger.warning("verl backend: a video input is sent to verl as its frames, one image each")
    return frames_as_images(messages)


def chat_images(messages: Sequence[dict[str, Any]]) -> list[Image.Image]:
    """The images of `to_chat` messages, in placeholder order."""
    return [part["image"] for message in messages for part in message["content"] if part["type"] == "image"]


def placeholder_messages(messages: Sequence[dict[str, Any]]) -> tuple[list[dict[str, str]], list[dict[str, bytes]]]:
    """Env messages as verl dataset rows store them: text content with `<image>` placeholders, PNG images apart.

    The parts of a message are joined without separators, as the chat template renders them.
    """
    rows: list[dict[str, str]] = []
    images: list[dict[str, bytes]] = []
    for message in images_only(messages):
        text = []
        for part in message["content"]:
            if part["type"] == "image":
                text.append(IMAGE_PLACEHOLDER)
                images.append({"bytes": png_bytes(to_pil(part["image"]))})
            else:
                text.append(part["text"])
        rows.append({"role": message["role"], "content": "".join(text)})
    return rows, images


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _part(part: dict[str, Any]) -> dict[str, Any]:
    if part["type"] == "image":
        return {"type": "image", "image": to_pil(part["image"])}
    return {"type": "text", "text": part["text"]}
