"""The OpenAI-compatible agent against a real HTTP server on loopback, playing real episodes."""

from __future__ import annotations

import base64
import io
import json

import pytest
from PIL import Image

from agents.openai_agent import EndpointError, OpenAIChatAgent, close_tool_call
from pixel_gym.env import PixelVQAEnv
from pixel_gym.suites import make_suite


def zoom_then_answer(request: dict) -> str:
    """Zoom on the first turn, answer "B" once two images were seen; the stop string is stripped, as vLLM does."""
    images = [p for m in request["messages"] if isinstance(m["content"], list) for p in m["content"]
              if p["type"] == "image_url"]
    if len(images) < 2:
        call = {"name": "crop_image_normalized", "arguments": {"bbox_2d": [0.1, 0.1, 0.3, 0.3], "target_image": 1}}
        return f"Zoom.\n<tool_call>\n{json.dumps(call)}\n"
    return "\\boxed{B}"


@pytest.fixture()
def server(chat_server) -> tuple[str, list[dict]]:
    return chat_server(zoom_then_answer)


def test_agent_plays_episodes_through_a_real_endpoint(server: tuple[str, list[dict]]) -> None:
    url, requests = server
    agent = OpenAIChatAgent(url, model="served-model", max_tokens=64)
    suite = make_suite("fine_detail", size=2, seed=0, image_size=(600, 700))
    envs = [PixelVQAEnv(tasks=suite) for _ in range(2)]
    observations = [env.reset(options={"index": i})[0] for i, env in enumerate(envs)]
    turns = agent.act_batch(observations)
    assert all(t.rstrip().endswith("</tool_call>") for t in turns)
    results = [env.step(turn) for env, turn in zip(envs, turns)]
    assert all(info["num_ops"] == 1 for *_, info in results)
    final = [env.step(agent.act(obs)) for env, (obs, *_) in zip(envs, results)]
    assert all(terminated and info["answer"] == "B" for _, _, terminated, _, info in final)
    request = requests[-1]
    assert request["model"] == "served-model" and request["stop"] == ["</tool_call>"]
    assert [m["role"] for m in request["messages"]] == ["system", "user", "assistant", "user"]
    url = request["messages"][-1]["content"][1]["image_url"]["url"]
    crop = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert crop.size == envs[-1].episode.views[-1].image.size


def test_unreachable_endpoint_and_bad_responses_raise_clear_errors(server: tuple[str, list[dict]]) -> None:
    with pytest.raises(EndpointError, match="failed"):
        OpenAIChatAgent("http://127.0.0.1:9/v1", model="m", timeout=2).complete([])
    with pytest.raises(EndpointError, match="failed"):
        OpenAIChatAgent(server[0].replace("/v1", "/nope"), model="m").complete([])


def test_close_tool_call() -> None:
    assert close_tool_call("<tool_call>{}") == "<tool_call>{}\n</tool_call>"
    assert close_tool_call("<tool_call>{}</tool_call>") == "<tool_call>{}</tool_call>"
    assert close_tool_call("\\boxed{A}") == "\\boxed{A}"
