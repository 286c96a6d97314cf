"""Trace synthesis (through the real env) and the assistant-only loss masks used by SFT and RL."""

from __future__ import annotations

import json

import pytest
import torch

from agents.chat import load_processor
from agents.scripted import BlindAgent, OracleAgent, RandomAgent
from pixel_gym.env import PixelVQAEnv
from pixel_gym.suites import make_suite
from rl_runner.conversation import batch_conversations, encode_conversation
from rl_runner.traces import load_traces, save_traces, synthesize


@pytest.fixture(scope="module")
def traces():
    suite = make_suite("fine_detail", size=12, seed=3)
    video = make_suite("video", size=4, seed=3)
    env = PixelVQAEnv(tasks=suite, budgets="compact")  # the tiny model's budgets (the env default is paper_train)
    return synthesize(list(suite) + list(video), env, self_correct_fraction=0.5, seed=1,
                      progress=False)


def test_traces_are_correct_and_use_the_real_tool_results(traces) -> None:
    kinds = {t.kind for t in traces}
    assert {"direct", "self_correcting"} <= kinds
    assert all(t.correct for t in traces)
    for trace in traces:
        roles = [m["role"] for m in trace.messages]
        assert roles[:2] == ["system", "user"] and roles[-1] == "assistant"
        tool_results = [m for m in trace.messages[2:] if m["role"] == "user"]
        expected = 2 if trace.kind == "self_correcting" else 1
        assert len(tool_results) == expected
        assert all(any(p["type"] == "image" for p in m["content"]) for m in tool_results)
        assert "\\boxed{" in trace.messages[-1]["content"][0]["text"]


def test_save_and_load_in_the_paper_layout(traces, tmp_path) -> None:
    path = save_traces(traces, tmp_path / "sft")
    raw = json.loads(path.read_text())
    assert {"qid", "kind", "message_list"} <= set(raw[0])
    image_parts = [p for m in raw[0]["message_list"] for p in m["content"] if p["type"] == "image"]
    assert image_parts and all((tmp_path / "sft" / p["image"]).exists() for p in image_parts)
    loaded = load_traces(path)
    first = [p["image"] for m in loaded[0]["message_list"] for p in m["content"] if p["type"] == "image"]
    original = [p["image"] for m in traces[0].messages for p in m["content"] if p["type"] == "image"]
    assert all((a == b).all() for a, b in zip(first, original))


def test_image_paths_may_not_escape_the_data_folder(tmp_path) -> None:
    record = [{"qid": "x", "message_list": [{"role": "user", "content": [{"type": "image", "image": "../x.png"}]}]}]
    (tmp_path / "t.json").write_text(json.dumps(record))
    with pytest.raises(ValueError, match="escapes"):
        load_traces(tmp_path / "t.json")


def test_loss_mask_covers_exactly_the_assistant_turns(traces, tiny_model_path) -> None:
    processor = load_processor(tiny_model_path)
    trace = next(t for t in traces if t.kind == "self_correcting")
    encoded = encode_conversation(processor, trace.messages)
    ids = encoded.inputs["input_ids"][0]
    trained = processor.tokenizer.decode(ids[encoded.loss_mask[0]])
    assistant = [m["content"][0]["text"] for m in trace.messages if m["role"] == "assistant"]
    assert trained == "<|im_end|>".join(assistant) + "<|im_end|>"
    image_token = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert not (encoded.loss_mask[0] & (ids == image_token)).any()
    assert encoded.inputs["image_grid_thw"].shape[0] == sum(
        p["type"] == "image" for m in trace.messages for p in m["content"]
    )
    # batching left-pads and keeps every row's mask on its own tokens
    batch, mask = batch_conversations([encoded, encode_conversation(processor, traces[0].messages)], 0)
    assert mask.shape == batch["input_ids"].shape
    assert int(mask[0].sum()) == int(encoded.loss_mask.sum())


def test_scripted_baselines() -> None:
    suite = make_suite("fine_detail", size=40, seed=5, split="test")
    env = PixelVQAEnv(tasks=suite, curiosity={"alpha": 0.0, "beta": 0.0})
    scores = {}
    for agent_cls in (OracleAgent, BlindAgent, RandomAgent):
        agent, total = agent_cls(env, seed=0), 0.0
        for index in range(len(suite)):
            obs, _ = env.reset(options={"index": index})
            done = False
            while not done:
                obs, reward, terminated, truncated, info = env.step(agent.act(obs))
                done = terminated or truncated
            total += info["correctness"]
        scores[agent_cls.__name__] = total / len(suite)
    assert scores["OracleAgent"] == 1.0
    assert scores["BlindAgent"] < 0.6 and scores["RandomAgent"] < 0.6


def test_large_evidence_gets_a_text_only_trace() -> None:
    import numpy as np

    from pixel_gym.tasks import Box, Task

    big = Task("big/0", "What colour is the square?", ("A",), "choice", images=(np.zeros((1000, 1000, 3), np.uint8),),
               choices=("black", "white"), target_boxes=(Box(100, 100, 600, 600),))
    small = Task("small/0", "What colour is the dot?", ("A",), "choice", images=(np.zeros((1000, 1000, 3), np.uint8),),
                 choices=("black", "white"), target_boxes=(Box(100, 100, 110, 110),))
    big_trace, small_trace = synthesize([big, small], PixelVQAEnv(tasks=[big]), progress=False)
    assert big_trace.kind == "text_only" and big_trace.correct
    assert [m["role"] for m in big_trace.messages] == ["system", "user", "assistant"]
    assert small_trace.kind in ("direct", "self_correcting")


def test_sft_cli_trains_on_saved_traces_and_saves_a_loadable_checkpoint(traces, tiny_model_path, tmp_path,
                                                                        capsys) -> None:
    from transformers import AutoModelForImageTextToText

    from rl_runner.sft import main as sft_main

    path = save_traces(traces[:4], tmp_path / "traces")
    sft_main(["--traces", str(path), "--model", str(tiny_model_path), "--out", str(tmp_path / "sft"),
              "--epochs", "2", "--batch-size", "2"])
    first, last = (float(v) for v in capsys.readouterr().out.split("loss ")[1].split(";")[0].split(" -> "))
    assert last < first
    tuned = AutoModelForImageTextToText.from_pretrained(tmp_path / "sft")
    base = AutoModelForImageTextToText.from_pretrained(tiny_model_path)
    assert any(not torch.equal(a, b) for a, b in zip(tuned.parameters(), base.parameters()))
    assert hasattr(load_processor(tmp_path / "sft"), "image_processor")
