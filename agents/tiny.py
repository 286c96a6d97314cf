"""A tiny but real Qwen2.5-VL (random weights, locally trained tokenizer) for tests and CPU smoke runs.

`build_tiny_model` writes a checkpoint folder laid out like a hub Qwen2.5-VL-Instruct: `config.json`,
`generation_config.json`, safetensors weights, a byte-level BPE `tokenizer.json` with Qwen's special tokens at
the end of the vocabulary, the image processor config and a chat template equivalent to Qwen2.5-VL's (with
Qwen2.5's tool rendering). It reloads with `AutoModelForImageTextToText` / `AutoProcessor`, like a hub model.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import AddedToken, trainers
from tokenizers.pre_tokenizers import ByteLevel
from transformers import (
    GenerationConfig,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2Tokenizer,
)
from transformers.utils import is_torchvision_available

from pixel_gym import prompts
from pixel_gym.actions import format_tool_call
from pixel_gym.ops.crop import NAME as CROP_OP
from pixel_gym.ops.frames import NAME as FRAMES_OP

TINY_VERSION = "v2"
BPE_VOCAB_SIZE = 2048
MIN_PIXELS = 4 * 28 * 28
MAX_PIXELS = 16384 * 28 * 28

# Qwen2.5's added tokens, in Qwen's order; `special=False` ones stay in decoded text (as on the hub).
SPECIAL_TOKENS: tuple[tuple[str, bool], ...] = (
    ("<|endoftext|>", True),
    ("<|im_start|>", True),
    ("<|im_end|>", True),
    ("<|object_ref_start|>", True),
    ("<|object_ref_end|>", True),
    ("<|box_start|>", True),
    ("<|box_end|>", True),
    ("<|quad_start|>", True),
    ("<|quad_end|>", True),
    ("<|vision_start|>", True),
    ("<|vision_end|>", True),
    ("<|vision_pad|>", True),
    ("<|image_pad|>", True),
    ("<|video_pad|>", True),
    ("<tool_call>", False),
    ("</tool_call>", False),
    ("<|fim_prefix|>", False),
    ("<|fim_middle|>", False),
    ("<|fim_suffix|>", False),
    ("<|fim_pad|>", False),
    ("<|repo_name|>", False),
    ("<|file_sep|>", False),
)

# Qwen2.5-VL's multimodal message rendering merged with Qwen2.5's tool rendering (system prompt, tool calls,
# tool responses). Without tools and with list contents it renders exactly as Qwen2.5-VL-Instruct's template.
CHAT_TEMPLATE = r"""{%- set image_count = namespace(value=0) -%}
{%- set video_count = namespace(value=0) -%}
{%- macro render_content(content) -%}
  {%- if content is string -%}
    {{- content -}}
  {%- else -%}
    {%- for part in content -%}
      {%- if part['type'] == 'image' or 'image' in part or 'image_url' in part -%}
        {%- set image_count.value = image_count.value + 1 -%}
        {%- if add_vision_id -%}{{- 'Picture ' ~ image_count.value ~ ': ' -}}{%- endif -%}
        {{- '<|vision_start|><|image_pad|><|vision_end|>' -}}
      {%- elif part['type'] == 'video' or 'video' in part -%}
        {%- set video_count.value = video_count.value + 1 -%}
        {%- if add_vision_id -%}{{- 'Video ' ~ video_count.value ~ ': ' -}}{%- endif -%}
        {{- '<|vision_start|><|video_pad|><|vision_end|>' -}}
      {%- elif 'text' in part -%}
        {{- part['text'] -}}
      {%- endif -%}
    {%- endfor -%}
  {%- endif -%}
{%- endmacro -%}
{%- if tools -%}
  {{- '<|im_start|>system\n' -}}
  {%- if messages[0]['role'] == 'system' -%}
    {{- render_content(messages[0]['content']) -}}
  {%- else -%}
    {{- 'You are a helpful assistant.' -}}
  {%- endif -%}
  {{- '\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n' -}}
  {{- 'You are provided with function signatures within <tools></tools> XML tags:\n<tools>' -}}
  {%- for tool in tools -%}
    {{- '\n' -}}{{- tool | tojson -}}
  {%- endfor -%}
  {{- '\n</tools>\n\nFor each function call, return a json object with function name and arguments within ' -}}
  {{- '<tool_call></tool_call> XML tags:\n<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}' -}}
  {{- '\n</tool_call><|im_end|>\n' -}}
{%- elif messages[0]['role'] == 'system' -%}
  {{- '<|im_start|>system\n' -}}{{- render_content(messages[0]['content']) -}}{{- '<|im_end|>\n' -}}
{%- else -%}
  {{- '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' -}}
{%- endif -%}
{%- for message in messages -%}
  {%- if message['role'] == 'system' and loop.first -%}
  {%- elif message['role'] == 'tool' -%}
    {%- if loop.first or messages[loop.index0 - 1]['role'] != 'tool' -%}{{- '<|im_start|>user' -}}{%- endif -%}
    {{- '\n<tool_response>\n' -}}{{- render_content(message['content']) -}}{{- '\n</tool_response>' -}}
    {%- if loop.last or messages[loop.index0 + 1]['role'] != 'tool' -%}{{- '<|im_end|>\n' -}}{%- endif -%}
  {%- elif message['role'] == 'assistant' and message.tool_calls -%}
    {{- '<|im_start|>assistant' -}}
    {%- if message['content'] -%}{{- '\n' -}}{{- render_content(message['content']) -}}{%- endif -%}
    {%- for tool_call in message.tool_calls -%}
      {%- if tool_call.function is defined -%}{%- set tool_call = tool_call.function -%}{%- endif -%}
      {{- '\n<tool_call>\n{"name": "' -}}{{- tool_call.name -}}{{- '", "arguments": ' -}}
      {%- if tool_call.arguments is string -%}{{- tool_call.arguments -}}
      {%- else -%}{{- tool_call.arguments | tojson -}}{%- endif -%}
      {{- '}\n</tool_call>' -}}
    {%- endfor -%}
    {{- '<|im_end|>\n' -}}
  {%- else -%}
    {{- '<|im_start|>' + message['role'] + '\n' -}}{{- render_content(message['content']) -}}{{- '<|im_end|>\n' -}}
  {%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}
  {{- '<|im_start|>assistant\n' -}}
{%- endif -%}"""

_OBJECTS = (
    "car", "sign", "person", "man", "woman", "child", "dog", "cat", "horse", "bird", "bottle", "book", "clock",
    "bus", "truck", "train", "boat", "airplane", "chart", "table", "label", "building", "tree", "window", "shirt",
    "jacket", "hat", "screen", "monitor", "laptop", "phone", "keyboard", "poster", "menu", "cup", "plate", "bowl",
    "bicycle", "motorcycle", "flag", "door", "chair", "sofa", "bed", "lamp", "street", "road", "bridge", "river",
    "mountain", "field", "fence", "wall", "roof", "tower", "store", "shop", "logo", "banner", "ticket", "receipt",
    "document", "page", "paragraph", "title", "heading", "column", "row", "cell", "graph", "axis", "legend", "bar",
    "line", "map", "arrow", "button", "icon", "watch", "umbrella", "bag", "backpack", "box", "package", "shelf",
    "fruit", "apple", "banana", "orange", "sandwich", "pizza", "cake", "vase", "flower", "plant", "kite", "ball",
    "racket", "player", "team", "jersey", "number", "price", "date", "name", "word", "letter", "digit", "plate",
)
_COLORS = ("red", "blue", "green", "yellow", "white", "black", "orange", "purple", "brown", "gray", "pink",
           "silver", "golden", "dark", "light", "striped", "transparent", "colorful")
_PLACES = ("top left", "top right", "bottom left", "bottom right", "center", "left side", "right side",
           "background", "foreground", "upper part", "lower part", "middle", "corner", "edge", "distance",
           "first row", "second column", "header", "footer", "caption", "margin")
_QUESTIONS = (
    "What color is the {o} in the {p} of the image?",
    "How many {o}s are visible in the image?",
    "What is written on the {o} in the {p}?",
    "Is the {o} to the left or to the right of the {o2}?",
    "What time does the {o} show?",
    "Which of the following best describes the {o}?",
    "What is the number on the {c} {o}?",
    "In which frame does the {o} first appear?",
    "What is the person holding near the {o}?",
    "Read the small text below the {o}. What does it say?",
    "According to the {o}, what is the total amount?",
    "Where is the {c} {o} located relative to the {o2}?",
    "What happens to the {o} after it passes the {o2}?",
    "Which brand is shown on the {o} in the {p}?",
    "What is the highest value in the {o}?",
    "Are there more {o}s than {o2}s in the picture?",
    "What material is the {o} made of?",
    "Describe the {o} that appears in the {p} of the video.",
)
_THOUGHTS = (
    "The {o} is too small to see clearly, so I will zoom in on the {p}.",
    "Let me crop the region around the {o} to read the details.",
    "After zooming in, I can see that the {o} is {c}.",
    "The cropped image shows the {o} more clearly.",
    "I need to look at the {p} of image {n} more closely.",
    "The frames show the {o} moving from the {p} to the {p2}.",
    "Counting carefully, there are {n} {o}s in the image.",
    "The text on the {o} reads \"{c} {o2}\".",
    "First, I locate the {o}. It is near the {o2} in the {p}.",
    "The resolution is not enough to identify the {o}; zooming in will help.",
    "Comparing both images, the {o} only appears in image {n}.",
    "Selecting the frames where the {o} is visible should answer the question.",
    "The previous crop missed the {o}, so I will try a larger region.",
    "Now the details are visible: the {o} has {n} stripes and a {c} border.",
    "Therefore, the correct option is the one that mentions the {c} {o}.",
)
_WORD_TEXT = """
about above across after again against almost along already also although always among amount another answer
appear area around because become before behind below beside best better between both bottom bright but can
careful certain clear close color compare contain correct could count cover crowd dark describe detail different
difficult direction distance during each early easy either enough entire even every exact example except far
feature few final find first focus follow front full give good great ground group half hand happen hard have
height help here high hold however identify image important include indicate information inside instead its
just keep kind know large last later least left length less likely little look lower main many maybe measure
might missing more most move much must near nearly need never next none normal notice object often only open
option order other outside over part partly perhaps picture place point position possible present probably
question quite rather read reason region remain right same scene second section see seem several shape short
should show side similar since size small some something sometimes special still such surface sure than that
their them then there these thick thin third this those through together toward under until upper usually
view visible what when where whether which while whole wide width will with within without would yes zoom
"""
_WORDS = tuple(_WORD_TEXT.split())



@dataclass(frozen=True)
class TinyShape:
    """The sizes of a tiny Qwen2.5-VL: text decoder and vision tower."""

    text_hidden: int = 128
    text_layers: int = 4
    text_heads: int = 4
    vision_hidden: int = 64
    vision_layers: int = 2


TEST_SHAPE = TinyShape()  # 1.5M parameters: tests and smoke runs
# 3.6M parameters: the base `rl_runner.pretrain` trains; a 4-layer vision tower wide enough to read the tags' glyphs
BASE_SHAPE = TinyShape(text_hidden=192, text_layers=4, text_heads=6, vision_hidden=128, vision_layers=4)


def build_tiny_model(
    output_dir: str | os.PathLike, seed: int = 0, corpus: Iterable[str] | None = None, shape: TinyShape = TEST_SHAPE
) -> Path:
    """Build a random-weight tiny Qwen2.5-VL with its processor and save both to `output_dir`."""
    output = Path(output_dir)
    tokenizer = build_tokenizer(_corpus(corpus))
    model = _tiny_model(tokenizer, seed, shape)
    model.save_pretrained(output)
    tokenizer.save_pretrained(output)  # also writes chat_template.jinja, which the processor reads
    _image_processor().save_pretrained(output)
    return output


def ensure_tiny_model(cache_dir: str | os.PathLike, seed: int = 0) -> Path:
    """The tiny model under `cache_dir`, built once per `TINY_VERSION` and seed (safe across processes)."""
    target = Path(cache_dir) / f"tiny-qwen2.5-vl-{TINY_VERSION}-seed{seed}"
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".building-", dir=target.parent))
    build_tiny_model(staging, seed)
    try:
        staging.rename(target)
    except OSError:  # another process finished first
        shutil.rmtree(staging, ignore_errors=True)
    return target


def build_tokenizer(texts: Iterable[str]) -> Qwen2Tokenizer:
    """Train Qwen2's byte-level BPE on `texts`; Qwen's special tokens follow the learned vocabulary."""
    trainer = trainers.BpeTrainer(
        vocab_size=BPE_VOCAB_SIZE, initial_alphabet=ByteLevel.alphabet(), show_progress=False, min_frequency=2
    )
    backend = Qwen2Tokenizer().backend_tokenizer  # Qwen2's normalizer and pre-tokenizer, empty vocabulary
    backend.train_from_iterator(texts, trainer=trainer)
    model = backend.to_str()
    vocab, merges = _vocab_and_merges(model)
    tokenizer = Qwen2Tokenizer(  # adds <|endoftext|> first, then the rest in Qwen's order
        vocab=vocab, merges=merges, errors="replace", model_max_length=32768,
        clean_up_tokenization_spaces=False, split_special_tokens=False,
    )
    tokenizer.add_tokens([AddedToken(text, special=special, normalized=False) for text, special in SPECIAL_TOKENS])
    tokenizer.eos_token = "<|im_end|>"
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def _vocab_and_merges(serialized: str) -> tuple[dict[str, int], list[tuple[str, str]]]:
    model = json.loads(serialized)["model"]
    merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    return dict(model["vocab"]), merges


def _image_processor():
    """Qwen2-VL's image processor (torchvision backend when installed, else PIL), sized for the env's images."""
    if is_torchvision_available():
        from transformers import Qwen2VLImageProcessor as image_processor_class
    else:
        from transformers import Qwen2VLImageProcessorPil as image_processor_class
    return image_processor_class(min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS)


def tiny_config(tokenizer: Qwen2Tokenizer, shape: TinyShape = TEST_SHAPE) -> Qwen2_5_VLConfig:
    """Qwen2.5-VL's architecture at toy size; token ids taken from `tokenizer`."""
    ids = tokenizer.convert_tokens_to_ids
    vocab_size = -(-len(tokenizer) // 64) * 64  # padded like the hub checkpoints
    text = {
        "vocab_size": vocab_size, "hidden_size": shape.text_hidden, "intermediate_size": 3 * shape.text_hidden,
        "num_hidden_layers": shape.text_layers, "num_attention_heads": shape.text_heads, "num_key_value_heads": 2,
        "max_position_embeddings": 32768,
        "rope_parameters": {"rope_type": "default", "rope_theta": 10_000.0, "mrope_section": [4, 6, 6]},
        "bos_token_id": ids("<|endoftext|>"), "eos_token_id": ids("<|im_end|>"),
        "pad_token_id": ids("<|endoftext|>"), "tie_word_embeddings": False,
    }
    vision = {
        "depth": shape.vision_layers, "hidden_size": shape.vision_hidden, "intermediate_size": 2 * shape.vision_hidden,
        "num_heads": 4, "out_hidden_size": shape.text_hidden,
        "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2, "window_size": 112,
        "fullatt_block_indexes": list(range(1, shape.vision_layers, 2)), "tokens_per_second": 2,
    }
    return Qwen2_5_VLConfig(
        text_config=text, vision_config=vision, image_token_id=ids("<|image_pad|>"),
        video_token_id=ids("<|video_pad|>"), vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"), tie_word_embeddings=False,
    )


def _tiny_model(tokenizer: Qwen2Tokenizer, seed: int, shape: TinyShape) -> Qwen2_5_VLForConditionalGeneration:
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(tiny_config(tokenizer, shape)).eval()
    ids = tokenizer.convert_tokens_to_ids
    model.generation_config = GenerationConfig(
        bos_token_id=ids("<|endoftext|>"), eos_token_id=[ids("<|im_end|>"), ids("<|endoftext|>")],
        pad_token_id=ids("<|endoftext|>"),
    )
    return model


def _corpus(extra: Iterable[str] | None) -> Iterator[str]:
    yield from default_corpus()
    if extra is not None:
        yield from extra


def default_corpus(lines: int = 3000) -> list[str]:
    """English visual-question text, tool calls, tool results and boxed answers (deterministic)."""
    rng = random.Random(0)
    texts = [prompts.system_prompt(prompts.tools_for(is_video)) for is_video in (False, True)]
    texts += [prompts.ANSWER_INSTRUCTION, "You are a helpful assistant."]
    for _ in range(lines):
        texts.append(rng.choice((_question, _thought, _tool_call, _tool_result, _answer, _words))(rng))
    return texts


def _fill(template: str, rng: random.Random) -> str:
    o, o2 = rng.sample(_OBJECTS, 2)
    p, p2 = rng.sample(_PLACES, 2)
    return template.format(o=o, o2=o2, p=p, p2=p2, c=rng.choice(_COLORS), n=rng.randint(1, 12))


def _question(rng: random.Random) -> str:
    question = _fill(rng.choice(_QUESTIONS), rng)
    options = rng.sample(_COLORS, 4)
    return question + "".join(f"\n({letter}) {option}" for letter, option in zip("ABCD", options))


def _thought(rng: random.Random) -> str:
    return " ".join(_fill(rng.choice(_THOUGHTS), rng) for _ in range(rng.randint(1, 3)))


def _words(rng: random.Random) -> str:
    return " ".join(rng.choices(_WORDS, k=rng.randint(8, 24))).capitalize() + "."


def _tool_call(rng: random.Random) -> str:
    if rng.random() < 0.2:
        frames = sorted(rng.sample(range(1, 17), rng.randint(1, 8)))
        return format_tool_call(FRAMES_OP, {"target_frames": frames})
    x1, y1 = round(rng.random() * 0.7, 2), round(rng.random() * 0.7, 2)
    box = [x1, y1, round(x1 + 0.05 + rng.random() * 0.25, 2), round(y1 + 0.05 + rng.random() * 0.25, 2)]
    return f"{_thought(rng)}\n" + format_tool_call(
        CROP_OP, {"bbox_2d": box, "target_image": rng.randint(1, 3)}
    )


def _tool_result(rng: random.Random) -> str:
    width, height = rng.randint(1, 40) * 28, rng.randint(1, 40) * 28
    if rng.random() < 0.7:
        return prompts.crop_result_text(width, height)
    if rng.random() < 0.5:
        return prompts.image_header(rng.randint(1, 4), width, height)
    return prompts.error_text(rng.choice((
        "the bounding box is empty or outside the image",
        "target_image 4 does not exist; 2 images have been shown",
        "bbox_2d must be a list [x1, y1, x2, y2]",
    )))


def _answer(rng: random.Random) -> str:
    answer = rng.choice((rng.choice("ABCD"), str(rng.randint(0, 20)), rng.choice(_COLORS), _fill("{c} {o}", rng)))
    return f"{_fill(rng.choice(_THOUGHTS), rng)} The answer is \\boxed{{{answer}}}."
