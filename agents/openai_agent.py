"""An agent for any OpenAI-compatible chat endpoint (how a model served by vLLM or SGLang is evaluated).

Images travel as base64 data URLs in `image_url` parts. `</tool_call>` is a stop sequence, so a turn ends right
after its tool call; servers strip stop strings, so the agent puts the closing tag back.
"""

from __future__ import annotations

import base64
import io
import json
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from PIL import Image

TOOL_CALL_OPEN, TOOL_CALL_CLOSE = "<tool_call>", "</tool_call>"


class EndpointError(RuntimeError):
    """The endpoint could not be reached or answered with something other than a chat completion."""


def image_data_url(image: np.ndarray | Image.Image) -> str:
    picture = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image, dtype=np.uint8))
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def to_openai_messages(messages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The env's chat (images inline as arrays) in OpenAI format (images, and a video's frames, as data URLs)."""
    converted = []
    for message in messages:
        parts = []
        for part in message["content"]:
            if part["type"] in ("image", "video"):  # image_url parts cannot carry a video of arrays: its frames
                pictures = part["video"] if part["type"] == "video" else [part["image"]]
                parts += [{"type": "image_url", "image_url": {"url": image_data_url(p)}} for p in pictures]
            else:
                parts.append({"type": "text", "text": part["text"]})
        if message["role"] == "assistant":  # assistant turns are plain text in the API
            converted.append({"role": "assistant", "content": "".join(p.get("text", "") for p in parts)})
        else:
            converted.append({"role": message["role"], "content": parts})
    return converted


class OpenAIChatAgent:
    """Sends the env's chat to `{base_url}/chat/completions` and returns the assistant's next turn."""

    def __init__(
        self, base_url: str, model: str, api_key: str = "EMPTY", max_tokens: int = 1024, temperature: float = 0.0,
        timeout: float = 120.0, max_workers: int = 8,
    ) -> None:
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model, self.api_key = model, api_key
        self.max_tokens, self.temperature, self.timeout = max_tokens, temperature, timeout
        self.max_workers = max_workers

    def act(self, observation: Mapping[str, Any]) -> str:
        return self.complete(observation["messages"])

    def act_batch(self, observations: Sequence[Mapping[str, Any]]) -> list[str]:
        """Concurrent requests, one per observation (servers batch them)."""
        with ThreadPoolExecutor(max_workers=self.max_workers) as pool:
            return list(pool.map(self.act, observations))

    def complete(self, messages: Sequence[Mapping[str, Any]]) -> str:
        payload = {
            "model": self.model, "messages": to_openai_messages(messages), "max_tokens": self.max_tokens,
            "temperature": self.temperature, "stop": [TOOL_CALL_CLOSE],
        }
        request = urllib.request.Request(
            self.url, data=json.dumps(payload).encode(), method="POST",
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {self.api_key}"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                body = json.loads(response.read())
        except (urllib.error.URLError, TimeoutError, json.JSONDecodeError) as error:
            raise EndpointError(f"chat completion request to {self.url} failed: {error}") from error
        try:
            text = body["choices"][0]["message"]["content"] or ""
        except (KeyError, IndexError, TypeError) as error:
            raise EndpointError(f"unexpected response from {self.url}: {str(body)[:300]}") from error
        return close_tool_call(text)


def close_tool_call(text: str) -> str:
    """Append `</tool_call>` when the server stripped the stop string after an open tool call."""
    if text.rfind(TOOL_CALL_OPEN) > text.rfind(TOOL_CALL_CLOSE):
        return text + "\n" + TOOL_CALL_CLOSE
    return text
