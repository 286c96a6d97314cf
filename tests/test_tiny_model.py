"""The tiny Qwen2.5-VL: a real checkpoint folder that loads through the Auto classes like a hub model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForImageTextToText, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor

from agents.chat import ImageOnlyQwen2_5_VLProcessor, load_processor, messages_to_model_inputs, render_messages
from agents.tiny import SPECIAL_TOKENS, build_tiny_model, build_tokenizer, default_corpus, ensure_tiny_model
from pixel_gym import prompts
from pixel_gym.actions import ZoomIn, format_tool_call, parse_turn

# Qwen2.5-VL-Instruct's own processor chat template (no tools), to check ours renders identically.
QWEN25_VL_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}"
    "<|im_end|>\n{% else %}{% for content in message['content'] %}{% if content['type'] == 'image' or 'image' in "
    "content or 'image_url' in content %}{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}"
    "Picture {{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>{% elif content['type'] "
    "== 'video' or 'video' in content %}{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}"
    "Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>{% elif 'text' in content "
    "%}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}{% if add_generation_prompt %}"
    "<|im_start|>assistant\n{% endif %}"
)


@pytest.fixture(scope="module")
def model(tiny_model_path: Path) -> Qwen2_5_VLForConditionalGeneration:
    return AutoModelForImageTextToText.from_pretrained(tiny_model_path)


@pytest.fixture(scope="module")
def processor(tiny_model_path: Path):
    return load_processor(tiny_model_path)


def image(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def two_image_messages() -> list[dict]:
    return [
        {"role": "system", "content": [{"type": "text", "text": prompts.system_prompt(prompts.tools_for(False))}]},
        {"role": "user", "content": [
            {"type": "text", "text": "Image 1 (Image Size: 336x224):"}, {"type": "image", "image": image(224, 336)},
            {"type": "text", "text": "Image 2 (Image Size: 168x112):"}, {"type": "image", "image": image(112, 168, 1)},
            {"type": "text", "text": "What is written on the sign?"},
        ]},
    ]


def torchvision_usable() -> bool:
    try:
        import torchvision.transforms.v2  # noqa: F401
    except Exception:  # a CUDA torchvision wheel next to CPU torch fails at import with RuntimeError
        return False
    return True


def test_checkpoint_reloads_through_auto_classes(tiny_model_path: Path, model, processor) -> None:
    files = {path.name for path in tiny_model_path.iterdir()}
    assert {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
            "preprocessor_config.json", "chat_template.jinja"} <= files
    assert type(model) is Qwen2_5_VLForConditionalGeneration
    expected = Qwen2_5_VLProcessor if torchvision_usable() else ImageOnlyQwen2_5_VLProcessor
    assert type(processor) is expected
    assert sum(p.numel() for p in model.parameters()) < 2_000_000


def test_config_token_ids_match_tokenizer(model, processor) -> None:
    tokenizer, config = processor.tokenizer, model.config
    ids = tokenizer.convert_tokens_to_ids
    assert config.image_token_id == ids("<|image_pad|>") == processor.image_token_id
    assert config.video_token_id == ids("<|video_pad|>")
    assert config.vision_start_token_id == ids("<|vision_start|>")
    assert config.vision_end_token_id == ids("<|vision_end|>")
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token == "<|endoftext|>"
    assert model.generation_config.eos_token_id == [ids("<|im_end|>"), ids("<|endoftext|>")]
    assert model.generation_config.pad_token_id == tokenizer.pad_token_id
    assert len(tokenizer) <= config.text_config.vocab_size


def test_special_tokens_are_single_tokens_after_the_vocabulary(processor) -> None:
    tokenizer = processor.tokenizer
    ids = [tokenizer.encode(text, add_special_tokens=False) for text, _ in SPECIAL_TOKENS]
    assert all(len(token_ids) == 1 for token_ids in ids)
    first = ids[0][0]
    assert [token_ids[0] for token_ids in ids] == list(range(first, first + len(SPECIAL_TOKENS)))
    assert len(tokenizer) == first + len(SPECIAL_TOKENS)  # Qwen's layout: added tokens follow the BPE vocab


def test_tool_call_text_round_trips(processor) -> None:
    tokenizer = processor.tokenizer
    call = format_tool_call("crop_image_normalized", {"bbox_2d": [0.12, 0.3, 0.58, 0.91], "target_image": 2})
    text = f"The sign is too small to read, so I zoom in.\n{call}"
    ids = tokenizer.encode(text + "<|im_end|>", add_special_tokens=False)
    assert tokenizer.convert_tokens_to_ids("<tool_call>") in ids
    assert ids[-2:] == tokenizer.convert_tokens_to_ids(["</tool_call>", "<|im_end|>"])
    decoded = tokenizer.decode(ids, skip_special_tokens=True)  # drops <|im_end|>, keeps the tool-call tags
    assert decoded == text
    assert parse_turn(decoded) == ZoomIn((0.12, 0.3, 0.58, 0.91), 2, "auto")
    answer = "Counting again, there are 7 dogs. \\boxed{7}"
    assert tokenizer.decode(tokenizer.encode(answer, add_special_tokens=False)) == answer


def test_two_images_of_different_sizes_become_model_inputs(model, processor) -> None:
    inputs = messages_to_model_inputs(processor, two_image_messages())
    grids = inputs["image_grid_thw"].tolist()
    assert grids == [[1, 16, 24], [1, 8, 12]]  # sizes are multiples of 28: no resizing, 14 px patches
    image_tokens = int((inputs["input_ids"] == model.config.image_token_id).sum())
    assert image_tokens == (16 * 24 + 8 * 12) // 4
    assert inputs["pixel_values"].shape == (16 * 24 + 8 * 12, 3 * 2 * 14 * 14)
    model.train()
    output = model(**inputs, labels=inputs["input_ids"])
    output.loss.backward()
    model.eval()
    assert output.logits.shape == (1, inputs["input_ids"].shape[1], model.config.text_config.vocab_size)
    assert model.model.visual.patch_embed.proj.weight.grad.abs().sum() > 0
    model.zero_grad(set_to_none=True)


def test_chat_template_renders_like_qwen25_vl(processor) -> None:
    messages = two_image_messages()[1:] + [
        {"role": "assistant", "content": [{"type": "text", "text": format_tool_call("zoom_in", {"bbox": [1]})}]},
        {"role": "user", "content": [{"type": "text", "text": prompts.crop_result_text(56, 84)},
                                     {"type": "image", "image": image(84, 56)}]},
    ]
    skeleton = [{**m, "content": [{"type": "image"} if p["type"] == "image" else p for p in m["content"]]}
                for m in messages]
    for vision_id in (False, True):
        ours = processor.apply_chat_template(skeleton, tokenize=False, add_vision_id=vision_id)
        theirs = processor.apply_chat_template(skeleton, chat_template=QWEN25_VL_TEMPLATE, tokenize=False,
                                               add_vision_id=vision_id)
        assert ours == theirs
    reference = processor.apply_chat_template(skeleton, chat_template=QWEN25_VL_TEMPLATE, tokenize=False,
                                              add_generation_prompt=True)
    assert render_messages(processor, messages) == reference
    assert "Picture 3: <|vision_start|><|image_pad|><|vision_end|>" in ours


def test_tools_render_into_the_system_prompt_like_the_env(processor) -> None:
    user = {"role": "user", "content": [{"type": "text", "text": "What is this?"}]}
    system = {"role": "system", "content": [{"type": "text", "text": prompts.system_prompt([prompts.CROP_TOOL])}]}
    assert render_messages(processor, [user], tools=[prompts.CROP_TOOL]) == render_messages(processor, [system, user])


def test_build_is_deterministic_for_a_seed(tiny_model_path: Path, tmp_path: Path) -> None:
    again = build_tiny_model(tmp_path / "again", seed=0)
    other = build_tiny_model(tmp_path / "other", seed=1)
    weights, same, different = (load_file(path / "model.safetensors") for path in (tiny_model_path, again, other))
    assert all(torch.equal(weights[name], same[name]) for name in weights)
    assert not torch.equal(weights["lm_head.weight"], different["lm_head.weight"])
    tokenizer = json.loads((tiny_model_path / "tokenizer.json").read_text())
    assert tokenizer == json.loads((again / "tokenizer.json").read_text())
    assert tokenizer == json.loads((other / "tokenizer.json").read_text())


def test_ensure_tiny_model_reuses_the_cached_build(tiny_model_path: Path) -> None:
    weights = tiny_model_path / "model.safetensors"
    stamp = weights.stat().st_mtime_ns
    assert ensure_tiny_model(tiny_model_path.parent) == tiny_model_path
    assert weights.stat().st_mtime_ns == stamp


def test_extra_corpus_shapes_the_vocabulary() -> None:
    word = "xylophonist"
    base = build_tokenizer(default_corpus(200))
    extended = build_tokenizer([*default_corpus(200), *[f"The {word} plays." for _ in range(50)]])
    assert len(extended.tokenize(f" {word}")) < len(base.tokenize(f" {word}"))


def test_structured_tool_calls_render_as_the_env_text_format(processor) -> None:
    arguments = {"bbox_2d": [0.1, 0.2, 0.5, 0.6], "target_image": 1}
    user = {"role": "user", "content": "Zoom in."}
    structured = {"role": "assistant", "content": "",
                  "tool_calls": [{"type": "function", "function": {"name": "crop_image_normalized",
                                                                   "arguments": arguments}}]}
    as_text = {"role": "assistant", "content": format_tool_call("crop_image_normalized", arguments)}
    tool = {"role": "tool", "content": [{"type": "text", "text": prompts.crop_result_text(56, 56)},
                                        {"type": "image", "image": image(56, 56)}]}
    rendered = render_messages(processor, [user, structured, tool])
    assert rendered.startswith(render_messages(processor, [user, as_text], add_generation_prompt=False))
    assert rendered.endswith(
        "<|im_start|>user\n<tool_response>\n\nHere is the cropped image (Image Size: 56x56):"
        "<|vision_start|><|image_pad|><|vision_end|>\n</tool_response><|im_end|>\n<|im_start|>assistant\n"
    )
