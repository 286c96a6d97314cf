"""VLMAgent on the real tiny Qwen2.5-VL: batched generation, stopping, determinism, log-prob consistency, video."""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModelForImageTextToText

from agents.chat import (
    ImageOnlyQwen2_5_VLProcessor,
    extend_sample,
    load_processor,
    messages_to_model_inputs,
    stack_inputs,
    takes_video,
)
from agents.vlm import Turn, VLMAgent, sequence_logprobs, turns_to_batch
from pixel_gym import prompts
from pixel_gym.actions import Answer, ZoomIn, format_tool_call, parse_turn
from pixel_gym.env import PixelVQAEnv
from pixel_gym.tasks import Task
from rl_runner.conversation import encode_conversation

TOOL_TURN = "The sign is too small.\n" + format_tool_call(
    "crop_image_normalized", {"bbox_2d": [0.1, 0.2, 0.5, 0.6], "target_image": 1}
)


@pytest.fixture(scope="module")
def agent(tiny_model_path: Path) -> VLMAgent:
    return VLMAgent(tiny_model_path, max_new_tokens=12, temperature=1.0, device="cpu")


@pytest.fixture(scope="module")
def trained_agent(tiny_model_path: Path) -> VLMAgent:
    """The tiny model fine-tuned (through `sequence_logprobs`) to answer observation 0 with a tool call and
    observation 1 with a boxed answer; greedy decoding.

    Trained until the worst target token has p > 0.9, not to a mean loss: a mean below 0.02 still left one
    near-tie token that greedy decoding got wrong on CI's machine."""
    model = AutoModelForImageTextToText.from_pretrained(tiny_model_path)
    processor = load_processor(tiny_model_path)
    tokenizer = processor.tokenizer
    targets = [tokenizer.encode(text, add_special_tokens=False) for text in (TOOL_TURN, "\\boxed{3}<|im_end|>")]
    samples = [messages_to_model_inputs(processor, observation(i)["messages"]) for i in range(2)]
    inputs = stack_inputs([extend_sample(s, t) for s, t in zip(samples, targets)], tokenizer.pad_token_id)
    mask = torch.zeros(inputs["input_ids"].shape, dtype=torch.bool)
    for row, target in enumerate(targets):
        mask[row, -len(target):] = True
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-3)
    model.train()
    for _ in range(300):
        logprobs = sequence_logprobs(model, inputs, mask)
        if logprobs[mask].min().item() > np.log(0.9):  # every target token the argmax with a margin
            break
        (-logprobs.sum() / mask.sum()).backward()
        optimizer.step()
        optimizer.zero_grad()
    assert logprobs[mask].min().item() > np.log(0.9)
    return VLMAgent(model, processor=processor, max_new_tokens=64, temperature=0.0, device="cpu")


def image(height: int, width: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def observation(index: int) -> dict:
    """Env-style observations of different lengths; 2 has two images and a tool result."""
    system = {"role": "system", "content": [{"type": "text", "text": prompts.system_prompt(prompts.tools_for(False))}]}
    questions = ["What is written on the sign?", "How many dogs are there?", "What color is the car?"]
    sizes = [(224, 224), (112, 168), (168, 280)]
    user = {"role": "user", "content": [
        {"type": "image", "image": image(*sizes[index], index)},
        {"type": "text", "text": f"{questions[index]}\n{prompts.ANSWER_INSTRUCTION}"},
    ]}
    messages = [system, user]
    if index == 2:
        messages += [
            {"role": "assistant", "content": [{"type": "text", "text": TOOL_TURN}]},
            {"role": "user", "content": [{"type": "text", "text": prompts.crop_result_text(112, 84)},
                                         {"type": "image", "image": image(84, 112, 7)}]},
        ]
    return {"messages": messages}


def observations() -> list[dict]:
    return [observation(i) for i in range(3)]


def test_batch_generation_with_left_padding(agent: VLMAgent) -> None:
    torch.manual_seed(0)
    turns = agent.act_batch(observations())
    assert len(turns) == 3
    prompts_alone = [messages_to_model_inputs(agent.processor, o["messages"]) for o in observations()]
    assert len({len(turn.prompt_ids) for turn in turns}) == 3
    for turn, alone in zip(turns, prompts_alone):
        assert isinstance(turn, Turn)
        assert turn.prompt_ids == alone["input_ids"][0].tolist()  # no padding inside a turn
        assert 1 <= len(turn.response_ids) <= 12 and len(turn.response_logprobs) == len(turn.response_ids)
        assert all(logprob <= 0 for logprob in turn.response_logprobs)
        assert torch.equal(turn.model_inputs["pixel_values"], alone["pixel_values"])
        assert turn.finish_reason in ("length", "stop", "tool_call")
        assert turn.finish_reason != "length" or len(turn.response_ids) == 12
    assert turns[2].model_inputs["image_grid_thw"].shape == (2, 3)
    assert isinstance(agent.act(observation(0)), str)


def test_sampling_is_deterministic_for_a_seed(agent: VLMAgent) -> None:
    def sample(seed: int) -> list[list[int]]:
        torch.manual_seed(seed)
        return [turn.response_ids for turn in agent.act_batch(observations())]

    assert sample(3) == sample(3)
    assert sample(3) != sample(4)


def test_greedy_decoding_picks_the_argmax(agent: VLMAgent) -> None:
    agent.temperature = 0.0
    try:
        turns = agent.act_batch(observations()[:2])
        assert [t.response_ids for t in turns] == [t.response_ids for t in agent.act_batch(observations()[:2])]
    finally:
        agent.temperature = 1.0
    batch = turns_to_batch(turns, agent.pad_token_id)
    with torch.no_grad():
        logits = agent.model(**batch.inputs).logits
    for row, turn in enumerate(turns):
        length = len(turn.response_ids)
        assert logits[row, -length - 1:-1].argmax(-1).tolist() == turn.response_ids


def test_generation_logprobs_match_recomputed_logprobs(agent: VLMAgent) -> None:
    agent.temperature, agent.top_p = 0.7, 0.9  # logprobs stay those of the raw (temperature 1) distribution
    try:
        torch.manual_seed(1)
        turns = agent.act_batch(observations())
    finally:
        agent.temperature, agent.top_p = 1.0, 1.0
    batch = agent.turn_batch(turns)
    recomputed = sequence_logprobs(agent.model, batch.inputs, batch.response_mask)
    torch.testing.assert_close(recomputed, batch.sampled_logprobs, atol=1e-4, rtol=0)
    full = sequence_logprobs(agent.model, batch.inputs)  # without the mask: every position scored
    torch.testing.assert_close(full[batch.response_mask], batch.sampled_logprobs[batch.response_mask],
                               atol=1e-4, rtol=0)
    recomputed.sum().backward()
    assert agent.model.lm_head.weight.grad.abs().sum() > 0
    assert agent.model.model.visual.patch_embed.proj.weight.grad.abs().sum() > 0
    agent.model.zero_grad(set_to_none=True)


@pytest.mark.parametrize("with_image", [False, True])
def test_text_only_prompts_keep_logprobs_consistent(agent: VLMAgent, with_image: bool) -> None:
    texts = ["Hello.", "What is the capital of the country shown on the large map in the picture?"]
    batch_of = [[{"role": "user", "content": [{"type": "text", "text": text}]}] for text in texts]
    if with_image:  # a text-only prompt batched with an image prompt
        batch_of.append(observation(1)["messages"])
    torch.manual_seed(2)
    batch = agent.turn_batch(agent.act_batch(batch_of))
    assert ("pixel_values" in batch.inputs) == with_image
    with torch.no_grad():
        recomputed = sequence_logprobs(agent.model, batch.inputs, batch.response_mask)
    torch.testing.assert_close(recomputed, batch.sampled_logprobs, atol=1e-4, rtol=0)


def test_stops_after_the_tool_call_and_keeps_its_text(trained_agent: VLMAgent) -> None:
    tool_turn, answer_turn = trained_agent.act_batch(observations()[:2])
    assert tool_turn.finish_reason == "tool_call"
    assert tool_turn.text == TOOL_TURN
    assert tool_turn.response_ids[-1] == trained_agent.tokenizer.convert_tokens_to_ids("</tool_call>")
    assert parse_turn(tool_turn.text) == ZoomIn((0.1, 0.2, 0.5, 0.6), 1, "auto")
    assert answer_turn.finish_reason == "stop"
    assert answer_turn.text == "\\boxed{3}"
    assert answer_turn.response_ids[-1] == trained_agent.tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert parse_turn(answer_turn.text) == Answer("3")


def test_batched_greedy_turns_equal_single_turns(trained_agent: VLMAgent) -> None:
    batched = trained_agent.act_batch(observations())
    for index, turn in enumerate(batched[:2]):
        alone = trained_agent.act_batch([observation(index)])[0]
        assert alone.response_ids == turn.response_ids
        np.testing.assert_allclose(alone.response_logprobs, turn.response_logprobs, atol=1e-4)


def test_a_batch_larger_than_the_generation_batch_is_split_and_kept_in_order(trained_agent: VLMAgent) -> None:
    """Greedy turns of a batch played in `generate` calls of one conversation each equal the one-call batch."""
    whole = trained_agent.act_batch(observations())
    shared, trained_agent.generation_batch_size = trained_agent.generation_batch_size, 1
    try:
        split = trained_agent.act_batch(observations())
    finally:
        trained_agent.generation_batch_size = shared
    assert len(split) == len(whole) > 1
    assert [turn.response_ids for turn in split] == [turn.response_ids for turn in whole]
    with pytest.raises(ValueError, match="generation_batch_size"):
        VLMAgent(trained_agent.model, trained_agent.processor, generation_batch_size=0)


def video_observation(budgets: str = "compact") -> dict:
    """A real env observation of a video question: 16 frames of 224x112, each fitted into 4..16 x 28^2 px.

    By hand: 224x112 is 32 x 28^2 px, over 16, so scale = sqrt(2); 224 / 1.414 / 28 = 5.66 -> 140 and
    112 / 1.414 / 28 = 2.83 -> 56: frames of 140x56, 5 x 2 = 10 merged patches (tokens) each.
    """
    frames = [image(112, 224, seed) for seed in range(16)]
    env = PixelVQAEnv(tasks=[Task("v", "Which frame is red?", ("1",), "exact", video=frames)], budgets=budgets)
    return env.reset(seed=0)[0]


def test_video_observation_falls_back_to_frames_as_images_said_once(tiny_model_path: Path, caplog) -> None:
    """No torchvision here, so the processor is images-only: the video's 16 frames become 16 images."""
    agent = VLMAgent(tiny_model_path, max_new_tokens=6, temperature=0.0, device="cpu")
    assert isinstance(agent.processor, ImageOnlyQwen2_5_VLProcessor) and not takes_video(agent.processor)
    observation = video_observation()
    with caplog.at_level(logging.WARNING, logger="agents.chat"):
        turns = agent.act_batch([observation, observation]) + agent.act_batch([observation])
    warnings = [r for r in caplog.records if "cannot take video input" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING
    inputs = turns[0].model_inputs
    assert inputs["image_grid_thw"].tolist() == [[1, 4, 10]] * 16 and "pixel_values_videos" not in inputs
    image_token = agent.processor.image_token_id
    assert turns[0].prompt_ids.count(image_token) == 16 * 10
    assert 1 <= len(turns[0].response_ids) <= 6 and turns[0].response_ids == turns[2].response_ids


@pytest.mark.skipif(importlib.util.find_spec("torchvision") is None,
                    reason="Qwen2.5-VL's video processor imports torchvision (transformers 5.10)")
def test_video_observation_is_one_video_input_where_the_processor_takes_video(tiny_model_path: Path) -> None:
    """16 frames of 140x56: temporal patches of 2 frames -> grid (8, 4, 10) of 14-px patches, and one token per
    2x2 merge: 8 * 4 * 10 / 4 = 80 video tokens; a temporal patch spans 1 s (2 frames at 2 fps)."""
    agent = VLMAgent(tiny_model_path, max_new_tokens=6, temperature=0.0, device="cpu")
    assert takes_video(agent.processor)
    turn = agent.act_batch([video_observation()])[0]
    inputs = turn.model_inputs
    assert inputs["video_grid_thw"].tolist() == [[8, 4, 10]] and "pixel_values" not in inputs
    assert turn.prompt_ids.count(agent.processor.video_token_id) == 80
    assert turn.prompt_ids.count(agent.processor.image_token_id) == 0
    assert inputs["second_per_grid_ts"].tolist() == [1.0]
    batch = agent.turn_batch([turn])
    with torch.no_grad():
        recomputed = sequence_logprobs(agent.model, batch.inputs, batch.response_mask)
    torch.testing.assert_close(recomputed, batch.sampled_logprobs, atol=1e-4, rtol=0)


def test_a_batch_mixes_text_only_and_image_samples(tiny_model_path: Path) -> None:
    """A text-only sample has no modality ids; in a batch with image samples its tokens count as text, and each
    row's log-probs equal those of the sample alone."""
    model = AutoModelForImageTextToText.from_pretrained(tiny_model_path).eval()
    processor = load_processor(tiny_model_path)
    text_only = [{"role": "user", "content": [{"type": "text", "text": "Which option shows K? (A) K (B) 7"}]}]
    samples = [encode_conversation(processor, observation(0)["messages"]).inputs,
               encode_conversation(processor, text_only).inputs]
    assert "mm_token_type_ids" in samples[0] and "mm_token_type_ids" not in samples[1]
    batch = stack_inputs(samples, processor.tokenizer.pad_token_id)
    width = batch["input_ids"].shape[1]
    assert batch["mm_token_type_ids"].shape == (2, width) and not batch["mm_token_type_ids"][1].any()
    with torch.no_grad():
        together = model(**batch).logits
        alone = model(**samples[1]).logits
    length = samples[1]["input_ids"].shape[1]
    torch.testing.assert_close(together[1, -length:], alone[0], atol=1e-4, rtol=1e-4)
