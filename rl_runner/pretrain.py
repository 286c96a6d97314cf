"""Pretraining of a from-scratch VLM: ground a phrase to a box and read what a view shows, in single turns.

A hub VLM comes to the paper's SFT already able to ground and read. A model built here from random weights gets
that from this stage: single-turn examples made from the suites' annotations, every view produced by the real
env (the global view at reset, a crop through the env's own zoom), so pretraining sees what SFT and RL show.
Kinds of example:

- `ground`: the global view and "Where is the <colour> tag?" -> its box (`agents.scripted.zoom_box`: the tenth
  cell of its centre, the box a trace's crop asks for);
- `look`: the global view and the task question -> the first turn of a direct trace (a crop call on the target);
- `glyph`: a small window of the target's crop, as the look turn's crop shows it, around the tag -> its symbol
  (the same pixels per glyph cell as in the crop, at a few image tokens: reading is learned cheaply), and one
  window at that scale around each of a few other tags of the image;
- `name`: the whole crop (its box shifted a little) and "Which symbol is printed on the <colour> tag?" -> the
  symbol (the pointer, below, looks at the tag in the crop);
- `match`: text only (no image is drawn for it), the task question and "The tag shows <symbol>." -> the final
  turn: the option's letter (`option_pointer` supervises that lookup, `rl_runner.pointer.option_hops`).

Before the chats, `rl_runner.vision_warmup` trains the vision tower alone (`--vision-steps`) on tag windows (the
symbol), on global views (each token's named colour, `colour_warmup`, and its tenth of the view,
`tower_position`) and on dense tag sheets at the look crops' scale (each token's symbol, `read_warmup`; scored
on look crops), and during them `rl_runner.token_positions` adds a loss that asks each image token where it
lies (`position_weight`) and `rl_runner.pointer` one that points a head at the tag an answer is about
(`pointer_weight`).

The main job's model "tiny" is this base: the one committed under `models/pixel-tiny-base` (built by
`python -m rl_runner.pretrain --out models/pixel-tiny-base`) where there is one, else a short pretraining of
`MAIN_JOB_VISION_STEPS` + `MAIN_JOB_STEPS` steps built once and cached like the random tiny model
(`ensure_pretrained_base`). `--out DIR
--steps N` builds another one (use it with `--model DIR`); `--blind` trains the same stream with every image flat
gray, the control that shows what the pixels add.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import math
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from PIL import Image
from torch import nn
from tqdm import tqdm
from transformers import AutoModelForImageTextToText

from agents.chat import load_processor
from agents.scripted import clipped_crop_call, target_region, zoom_box
from agents.tiny import BASE_SHAPE, build_tiny_model, ensure_tiny_model
from pixel_gym.budgets import Budgets
from pixel_gym.env import PixelVQAEnv
from pixel_gym.ops.crop import crop_box
from pixel_gym.suites import make_suite
from pixel_gym.tasks import Task
from rl_runner.algorithms import clipped_update, masked_mean_nll, token_logprobs, trained_parameters
from rl_runner.conversation import batch_conversations, encode_conversation
from rl_runner.diagnostics import LossSplit, grayed, kind_indices, split_losses
from rl_runner.plots import plot_pretraining
from rl_runner.pointer import (
    LETTERS,
    OPTION_HOPS,
    POINTER_KEY,
    answer_position_loss,
    captured_attention_inputs,
    centre_tenths,
    head_attention,
    letter_loss,
    option_hops,
    pointed_box,
    pointer_loss,
    query_positions,
    target_tokens,
)
from rl_runner.tag_sheets import sheet_stream
from rl_runner.token_positions import PositionHead, position_loss
from rl_runner.traces import BOX_DECIMALS, final_turn, look_turn
from rl_runner.vision_warmup import LabelledView, TagWindow, colour_labels, symbol_labels, warm_up_vision

PRETRAIN_SYSTEM = "You are a helpful assistant."
PRETRAIN_VERSION = "p6"
# The base "tiny" names: the one committed here (the default recipe), else one pretrained on the fly
# (MAIN_JOB_VISION_STEPS + MAIN_JOB_STEPS steps, minutes on a CPU) and cached.
COMMITTED_BASE = Path(__file__).resolve().parents[1] / "models" / "pixel-tiny-base"
MAIN_JOB_STEPS = 150
MAIN_JOB_VISION_STEPS = 150
BLIND_DIR = "blind_control"  # where `--with-blind-control` trains the control, inside the base's folder
KINDS = ("ground", "look", "glyph", "name", "match")
LOOK_PROMPTS = ("env", "short")
READ_SHIFT = 0.08  # how far a name crop's box may move from the look box (the crop's 0.1 padding keeps the tag in)
SHUFFLE = 128  # examples mixed before they are drawn, so a batch holds many tasks
OTHER_GLYPHS = 4  # glyph windows of other tags per drawn image
VISION_BATCH = 32  # tag windows per step of the vision warm-up
SYMBOL_VIEWS = 4  # look crops around tags per drawn image in the warm-up's reading loss
GLYPH_WINDOW = 56  # pixels of a glyph window's side (the processor's smallest image: 4 tokens)


@dataclass
class PretrainConfig:
    """What `python -m rl_runner.pretrain` trains on and how long."""

    out: str = "runs/pixel-tiny-base"
    init: str | None = None  # continue from this base instead of a fresh random model
    tower: str | None = None  # then take the vision tower of this base (e.g. a tower warmed up on its own)
    suite: str = "fine_detail"
    suite_kwargs: dict[str, Any] = field(default_factory=dict)
    budgets: str | Budgets = "compact"
    kind_counts: dict[str, int] = field(  # examples of each kind per task (per drawn image)
        default_factory=lambda: {"ground": 3, "look": 1, "glyph": 1, "name": 1, "match": 1}
    )
    steps: int = 1400  # the committed base's recipe: about 50 minutes on 2 CPU cores, with the vision warm-up
    vision_steps: int = 400  # the vision tower's warm-up before the chats (`rl_runner.vision_warmup`); 0: none
    shift_ramp: tuple[int, int] | None = None  # warm-up steps over which tags move from centred to anywhere
    colour_warmup: bool = True  # the warm-up also teaches each global-view token its tag's named colour
    tower_position: bool = True  # and its tenth of the view along x and y (with `colour_warmup`)
    read_warmup: bool = False  # the warm-up also teaches each token of dense tag sheets the symbol whose glyph
    # centre it holds (`rl_runner.tag_sheets`), scored on held-out look crops
    position_weight: float = 1.0  # weight of the image tokens' position loss (`rl_runner.token_positions`)
    position_layer: int = 2  # the decoder layer whose image-token states that loss reads
    pointer_weight: float = 1.0  # weight of the loss that points one head at the named tag (`rl_runner.pointer`)
    pointer_layer: int = 2  # the decoder layer of that head (it reads the states the position loss trains)
    pointer_head: int = 0
    option_pointer: bool = True  # the pointer loss also supervises the three heads of an option answer's lookup
    # (`pointer.option_hops`; without it the letter of the text-only match step stays at chance)
    look_prompt: str = "env"  # a `look` example's prompt: "env", the env's whole first observation (its system
    # prompt with the tool schemas, the question and the guidelines), as the SFT traces and RL rollouts show it;
    # "short": `PRETRAIN_SYSTEM` and the question (a base built so begins the SFT at coordinate loss 7.7)
    freeze_tower: bool = True  # the chats leave a warmed-up (or `init`) tower as it is: they do not need its
    # named colours, and training it on them wipes those out (colour of a tag's token 0.68 -> 0.07, chance 0.11)
    batch_size: int = 24
    lr: float = 2e-3
    warmup: int = 100
    seed: int = 0
    blind: bool = False  # the control: every image replaced by flat gray
    log_every: int = 25
    save_every: int = 250
    device: str = "cpu"
    threads: int = 0
    data_workers: int = 1  # processes that draw and encode examples (0: in the training process)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.kind_counts) - set(KINDS))
        if unknown or any(not isinstance(n, int) or n < 0 for n in self.kind_counts.values()):
            raise ValueError(f"kind_counts takes counts >= 0 of {KINDS}, got {self.kind_counts}")
        if self.look_prompt not in LOOK_PROMPTS:
            raise ValueError(f"look_prompt must be one of {LOOK_PROMPTS}, got {self.look_prompt!r}")


class AuxiliaryHeads(nn.Module):
    """The linear heads of pretraining's auxiliary losses, dropped with the run: each image token's position (and a
    pointed tag's, `rl_runner.token_positions`) and the option letter an answer's lookup carries."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.positions = PositionHead(width)
        self.letters = nn.Linear(width, LETTERS)


class PointerMasks(NamedTuple):
    """[B, L] bool masks of a batch for `rl_runner.pointer`: where a coordinate digit is predicted, where the tag is."""

    queries: torch.Tensor
    targets: torch.Tensor
    tenths: torch.Tensor  # [B, 2]: the x and y tenth of the pointed tag's centre (-1: none)
    hops: dict[str, tuple[torch.Tensor, torch.Tensor]]  # per `OPTION_HOPS` hop, its queries and targets
    letters: torch.Tensor  # the option letter each hop's query should hold (`pointer.OptionHops`)


def chat(image: np.ndarray | None, question: str, answer: str,
         pointed: Sequence[float] | None = None) -> list[dict[str, Any]]:
    """One single-turn example in the env's message format (text only without an image); `pointed`: the box (as
    fractions of the image) of the tag the answer's box names, for `rl_runner.pointer`."""
    picture = [] if image is None else [{"type": "image", "image": image}]
    if picture and pointed is not None:
        picture[0][POINTER_KEY] = tuple(pointed)
    return [
        {"role": "system", "content": [{"type": "text", "text": PRETRAIN_SYSTEM}]},
        {"role": "user", "content": [*picture, {"type": "text", "text": question}]},
        {"role": "assistant", "content": [{"type": "text", "text": answer}]},
    ]


def box_text(box: Sequence[float]) -> str:
    return "[" + ", ".join(f"{v:g}" for v in box) + "]"


def look_box(target: Sequence[float]) -> np.ndarray:
    """The box the look turn's crop asks for on a normalized `target` region."""
    return np.asarray(zoom_box(target, BOX_DECIMALS))


def ground_example(view: np.ndarray, tag: dict[str, Any], size: tuple[int, int]) -> list[dict[str, Any]]:
    """"Where is the <colour> tag?" on `view` (of an image of `size`) -> the cell box of the tag's centre."""
    region = tag_region(tag, size)
    box = zoom_box(region, BOX_DECIMALS)
    return chat(view, f"Where is the {tag['color']} tag? Answer with its bounding box.", box_text(box), region)


def tag_region(tag: dict[str, Any], size: tuple[int, int]) -> tuple[float, float, float, float]:
    """A tag's box as fractions of an image of `size`."""
    x1, y1, x2, y2 = tag["box"]
    return (x1 / size[0], y1 / size[1], x2 / size[0], y2 / size[1])


class ExampleMaker:
    """Single-turn examples of one task, with the views the env shows for it."""

    def __init__(self, env: PixelVQAEnv, rng: np.random.Generator,
                 look_prompt: str = PretrainConfig.look_prompt) -> None:
        self.env, self.rng, self.look_prompt = env, rng, look_prompt

    def examples(self, task: Task, counts: dict[str, int]) -> list[list[dict[str, Any]]]:
        """`counts[kind]` examples of each kind, from one reset (one drawing of the image; none when only text-only
        `match` examples are asked for); a task whose target the global view cannot locate gives `match` only."""
        tag = task.annotations["tags"][task.annotations["targets"][0]]
        made = [chat(None, f"{task.prompt_text()}\nThe tag shows {tag['symbol']}.", final_turn(task))
                for _ in range(counts.get("match", 0))]
        if not task.annotations.get("locatable", False) or not any(counts.get(k, 0) for k in KINDS if k != "match"):
            return made
        obs, _ = self.env.reset(options={"task": task})
        global_view = obs["images"][0]
        width, height = task.annotations["image_size"]
        target = target_region(task, (width, height))
        box = look_box(target)
        colored = [t for t in task.annotations["tags"] if t["color"] != "gray"]
        for kind in KINDS:
            for _ in range(counts.get(kind, 0)):
                if kind == "ground":
                    tag_asked = colored[int(self.rng.integers(len(colored)))]
                    made.append(ground_example(global_view, tag_asked, (width, height)))
                elif kind == "look":
                    made.append(self._look_example(obs["messages"], global_view, task, target))
                elif kind == "glyph":
                    view = self._zoomed(box, shift=False)
                    made.append(chat(self._glyph_window(view, tag["box"]), "Which symbol is printed on the tag?",
                                     tag["symbol"]))
                    made.extend(self._other_glyphs(task, view.shape[1]))
                elif kind == "name":
                    view = self._zoomed(box, shift=True)
                    made.append(chat(view, f"Which symbol is printed on the {tag['color']} tag?", tag["symbol"],
                                     self._in_last_view(tag["box"])))
        return made

    def _look_example(self, messages: list[dict[str, Any]], global_view: np.ndarray, task: Task,
                      target: tuple[float, float, float, float]) -> list[dict[str, Any]]:
        """The task's first observation (`messages`, or the short prompt on its `global_view`) answered by the
        look turn."""
        if self.look_prompt == "short":
            return chat(global_view, task.prompt_text(), look_turn(target), target)
        shown = [dict(message, content=[dict(part) for part in message["content"]]) for message in messages]
        image = next(part for message in shown for part in message["content"] if part.get("type") == "image")
        image[POINTER_KEY] = tuple(target)
        return [*shown, {"role": "assistant", "content": [{"type": "text", "text": look_turn(target)}]}]

    def _zoomed(self, box: np.ndarray, shift: bool) -> np.ndarray:
        """The view the env shows for a crop on `box` (shifted by up to `READ_SHIFT` along each axis)."""
        box = self._shifted(box) if shift else box
        obs, *_ = self.env.step(clipped_crop_call(box))
        return obs["images"][-1]

    def _in_last_view(self, box: Sequence[float]) -> tuple[float, float, float, float]:
        """A source-pixel `box` as fractions of the last view (a crop), for the pointer."""
        x1, y1, x2, y2 = self.env.unwrapped._require_episode().views[-1].region
        width, height = x2 - x1, y2 - y1
        return ((box[0] - x1) / width, (box[1] - y1) / height, (box[2] - x1) / width, (box[3] - y1) / height)

    def _shifted(self, box: np.ndarray) -> np.ndarray:
        """`box` moved by up to `READ_SHIFT` along each axis."""
        return box + np.tile(self.rng.uniform(-READ_SHIFT, READ_SHIFT, size=2), 2)

    def _glyph_window(self, view: np.ndarray, tag_box: Sequence[int]) -> np.ndarray:
        """A `GLYPH_WINDOW`-pixel square of `view`, the last crop as served, that holds the tag at a random place."""
        size = np.array([view.shape[1], view.shape[0]])
        fractions = np.asarray(self._in_last_view(tag_box))
        low, high = fractions[:2] * size, fractions[2:] * size  # the tag's corners in view pixels
        start = [int(self.rng.integers(max(0, int(hi) - GLYPH_WINDOW), max(1, min(int(lo), n - GLYPH_WINDOW) + 1)))
                 for lo, hi, n in zip(low, high, size)]
        return view[start[1] : start[1] + GLYPH_WINDOW, start[0] : start[0] + GLYPH_WINDOW]

    def _other_glyphs(self, task: Task, view_width: int) -> list[list[dict[str, Any]]]:
        """Glyph windows of up to `OTHER_GLYPHS` other tags at the scale of the last crop view, as chats."""
        tags = task.annotations["tags"]
        others = [tags[i] for i in self.rng.permutation(len(tags)) if i != task.annotations["targets"][0]]
        return [chat(window.pixels, "Which symbol is printed on the tag?", window.symbol)
                for window in self.tag_windows(others[:OTHER_GLYPHS], view_width)]

    def tag_windows(self, tags: Sequence[dict[str, Any]], view_width: int, jitter: float = 1.0) -> list[TagWindow]:
        """A `GLYPH_WINDOW`-pixel window around each of `tags`, cut from the source at the scale of the last crop
        view (`view_width` px wide as served; cheap: no crop through the env). The tag sits at a random place in
        it: anywhere at `jitter` 1, centred at 0."""
        episode = self.env.unwrapped._require_episode()
        x1, _, x2, _ = episode.views[-1].region
        side = GLYPH_WINDOW * (x2 - x1) / view_width  # source pixels a window covers, as the model saw
        source = episode.source_image(0)
        windows = []
        for tag in tags:
            tx1, ty1, tx2, ty2 = tag["box"]
            left, top = (np.array([tx1 + tx2, ty1 + ty2]) - side) / 2  # centred
            slack = np.maximum(side - np.array([tx2 - tx1, ty2 - ty1]), 0) / 2
            left, top = (left, top) + jitter * self.rng.uniform(-slack, slack)
            window = source.crop((left, top, left + side, top + side))
            window = window.resize((GLYPH_WINDOW, GLYPH_WINDOW), Image.Resampling.BICUBIC)
            windows.append(TagWindow(np.asarray(window), tag["symbol"]))
        return windows

    def symbol_views(self, task: Task, token_side: int, count: int) -> list[LabelledView]:
        """Look crops (the look box shifted by up to `READ_SHIFT`) around `count` of `task`'s tags, cut and served
        as the env's zoom serves them, with the symbol whose glyph centre each `token_side`-pixel token holds."""
        self.env.reset(options={"task": task})
        tags = task.annotations["tags"]
        views = []
        for index in self.rng.permutation(len(tags))[:count]:
            view = self.look_crop(tags[index], task.annotations["image_size"])
            grid = (view.array.shape[0] // token_side, view.array.shape[1] // token_side)
            views.append(LabelledView(view.array, symbol_labels(view.region, grid, tags)))
        return views

    def look_crop(self, tag: dict[str, Any], size: tuple[int, int]) -> Any:
        """The view the env's zoom cuts and serves for `tag`'s look box (shifted by up to `READ_SHIFT`) on the
        current episode's global view of an image of `size`, without spending the episode's calls."""
        episode, limits = self.env.unwrapped._require_episode(), self.env.unwrapped.limits
        original = episode.views[0]
        box = self._shifted(look_box(tag_region(tag, size)))
        return episode.crop_view(original, crop_box(original, box, "normalized", limits), limits.crop_from == "source")

    def colour_view(self, task: Task, token_side: int) -> LabelledView:
        """`task`'s global view as served, with the named colour of each `token_side`-pixel image token."""
        obs, _ = self.env.reset(options={"task": task})
        view = obs["images"][0]
        grid = (view.shape[0] // token_side, view.shape[1] // token_side)
        return LabelledView(view, colour_labels(task.annotations["image_size"], grid, task.annotations["tags"]))

    def all_tag_windows(self, task: Task, jitter: float = 1.0) -> list[TagWindow]:
        """Windows around every tag of `task`'s image, at the scale its look crop is served at."""
        self.env.reset(options={"task": task})
        view = self._zoomed(look_box(target_region(task, task.annotations["image_size"])), shift=False)
        return self.tag_windows(task.annotations["tags"], view.shape[1], jitter)


def suite_chunks(config: PretrainConfig, split: str) -> Iterator[tuple[ExampleMaker, Task]]:
    """Ever new tasks of the configured suite, each with an `ExampleMaker` on the env that serves it."""
    rng = np.random.default_rng(config.seed)
    for chunk in itertools.count(1):
        suite = make_suite(config.suite, size=1000, seed=config.seed * 100_000 + chunk, split=split,
                           **config.suite_kwargs)
        maker = ExampleMaker(PixelVQAEnv(tasks=suite, budgets=config.budgets), rng, config.look_prompt)
        for task in suite:
            yield maker, task


def shuffled(items: Iterator[list[Any]], rng: np.random.Generator) -> Iterator[Any]:
    """The items of each list `items` yields, mixed in a `SHUFFLE` buffer so a batch holds many tasks."""
    buffer: list[Any] = []
    for made in items:
        buffer.extend(made)
        while len(buffer) >= SHUFFLE:
            yield buffer.pop(int(rng.integers(len(buffer))))


def shift_at(step: float, ramp: tuple[int, int] | None) -> float:
    """How far a warm-up window's tag may move off centre at `step`, as a fraction of the free room: 0 before
    `ramp[0]`, rising linearly to 1 (anywhere) at `ramp[1]`; always 0 without a ramp."""
    if ramp is None:
        return 0.0
    start, end = ramp
    return float(np.clip((step - start) / max(end - start, 1), 0.0, 1.0))


def window_stream(config: PretrainConfig, split: str = "train") -> Iterator[TagWindow]:
    """Endless windows around every tag of ever new images for the vision warm-up: the tag centred, or, with
    `config.shift_ramp`, moved ever further off centre as the warm-up's steps go by (`shift_at`). From a random
    tower, centred tags are learned in about 80 steps; tags placed anywhere from the start are not learned in
    250, while a ramp over steps 100-700 reaches 0.29 held-out accuracy on them at step 800: the README."""
    def made() -> Iterator[list[TagWindow]]:
        drawn = 0
        for maker, task in suite_chunks(config, split):
            windows = maker.all_tag_windows(task, jitter=shift_at(drawn / VISION_BATCH, config.shift_ramp))
            drawn += len(windows)
            yield windows

    return shuffled(made(), np.random.default_rng(config.seed + 1))


def symbol_view_stream(config: PretrainConfig, token_side: int, split: str = "train") -> Iterator[LabelledView]:
    """Endless look crops around the tags of ever new images with their tokens' symbols: the vision warm-up's
    check that reading the tag sheets carries over to the crops the env serves."""
    made = (maker.symbol_views(task, token_side, SYMBOL_VIEWS) for maker, task in suite_chunks(config, split))
    return shuffled(made, np.random.default_rng(config.seed + 3))


def reading_sheets(config: PretrainConfig, token_side: int) -> Iterator[LabelledView]:
    """Endless tag sheets (`rl_runner.tag_sheets`) of the configured suite's tags: glyph cell and frame as its
    first task draws them."""
    cell, frame = suite_tag_style(config)
    return sheet_stream(config.seed + 4, token_side, cell=cell, frame=frame)


def suite_tag_style(config: PretrainConfig) -> tuple[int, int]:
    """The glyph cell (px) and frame (cells) of the configured suite's tags, as its first task draws them."""
    _, task = next(suite_chunks(config, "train"))
    tag = task.annotations["tags"][0]
    return tag["glyph"][2], tag["frame"]


def colour_view_stream(config: PretrainConfig, token_side: int, split: str = "train") -> Iterator[LabelledView]:
    """Endless global views of ever new images with their tokens' named colours, for the vision warm-up."""
    return (maker.colour_view(task, token_side) for maker, task in suite_chunks(config, split))


def example_stream(config: PretrainConfig, split: str = "train") -> Iterator[list[dict[str, Any]]]:
    """Endless single-turn examples from ever new tasks, `kind_counts` per task, shuffled."""
    made = (maker.examples(task, config.kind_counts) for maker, task in suite_chunks(config, split))
    return shuffled(made, np.random.default_rng(config.seed + 2))


class EncodedBatches(torch.utils.data.IterableDataset):
    """`example_stream` as model inputs: batches of `config.batch_size` encoded chats (gray ones if `blind`)."""

    def __init__(self, config: PretrainConfig, processor: Any) -> None:
        self.config, self.processor = config, processor

    def __iter__(self) -> Iterator[tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor, PointerMasks]]:
        """Per batch: the model inputs, the loss mask, each token's kind (`kind_indices`) and the pointer masks."""
        torch.set_num_threads(1)
        stream = example_stream(self.config)
        pad = self.processor.tokenizer.pad_token_id or 0
        while True:
            chats = [next(stream) for _ in range(self.config.batch_size)]
            encoded = [encode_conversation(self.processor, grayed(c) if self.config.blind else c) for c in chats]
            inputs, mask = batch_conversations(encoded, pad)
            kinds = kind_indices(self.processor.tokenizer, inputs["input_ids"], mask)
            yield inputs, mask, kinds, self._pointer_masks(chats, encoded, kinds)

    def _pointer_masks(self, chats: Sequence[list[dict[str, Any]]], encoded: Sequence[Any],
                       kinds: torch.Tensor) -> PointerMasks:
        """Per row, left-padded like the batch: the query positions and targets of `rl_runner.pointer` (image tokens
        of the tag a box names; with `option_pointer`, the hops of an option answer's lookup)."""
        tokenizer = self.processor.tokenizer
        image_token = tokenizer.convert_tokens_to_ids(self.processor.image_token)
        merge = self.processor.image_processor.merge_size
        width = kinds.shape[-1]
        targets = torch.zeros(kinds.shape, dtype=torch.bool)
        hops = {name: (torch.zeros_like(targets), torch.zeros_like(targets)) for name in OPTION_HOPS}
        letters = torch.full(kinds.shape, -1, dtype=torch.long)
        tenths = torch.full((len(chats), 2), -1, dtype=torch.long)
        for row, (messages, conversation) in enumerate(zip(chats, encoded)):
            ids, box = conversation.inputs["input_ids"][0], pointed_box(messages)
            row_targets = target_tokens(ids, conversation.inputs.get("image_grid_thw"), box, image_token, merge)
            if row_targets.any():
                targets[row, width - len(ids) :] = row_targets
                tenths[row] = torch.tensor(centre_tenths(box))
            if self.config.option_pointer:
                span = slice(width - len(ids), width)
                row_hops = option_hops(tokenizer, ids, kinds[row, span])
                for name, (queries, hop_targets) in row_hops.hops.items():
                    hops[name][0][row, span], hops[name][1][row, span] = queries, hop_targets
                letters[row, span] = row_hops.letters
        return PointerMasks(query_positions(kinds) & targets.any(dim=1, keepdim=True), targets, tenths, hops,
                            letters)


def graft_tower(model: Any, source: str | Path) -> None:
    """Replace `model`'s vision tower by the one of the base at `source` (same shape): a tower warmed up further
    on its own joins a decoder trained on the old one."""
    donor = AutoModelForImageTextToText.from_pretrained(source, dtype=torch.float32)
    model.model.visual.load_state_dict(donor.model.visual.state_dict())


def warmup_cosine(step: int, warmup: int, total: int) -> float:
    """Learning-rate factor: linear warm-up, then cosine decay to 5%."""
    return min(1.0, (step + 1) / warmup) * max(0.05, 0.5 * (1 + math.cos(math.pi * step / max(total, 1))))


def pretrain(config: PretrainConfig, progress: bool = True) -> list[dict[str, float]]:
    """Build the base model, train it on the example stream, save it to `config.out`; returns the loss log."""
    if config.threads:
        torch.set_num_threads(config.threads)
    out = Path(config.out)
    start = Path(config.init) if config.init else out
    if not config.init:
        build_tiny_model(out, seed=config.seed, shape=BASE_SHAPE)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(config.device)
    model = AutoModelForImageTextToText.from_pretrained(start, dtype=torch.float32).to(device)
    if config.tower:
        graft_tower(model, config.tower)
    processor = load_processor(start)
    torch.manual_seed(config.seed)
    heads = AuxiliaryHeads(model.config.text_config.hidden_size).to(device)
    batches = torch.utils.data.DataLoader(  # drawn and encoded in a worker process while the model trains
        EncodedBatches(config, processor), batch_size=None, num_workers=config.data_workers, prefetch_factor=4
        if config.data_workers else None,
    )
    vision_log: list[dict[str, Any]] = []
    if config.vision_steps and not config.blind:  # gray windows have nothing to tell the tower
        token_side = processor.image_processor.patch_size * processor.image_processor.merge_size
        colours = colour_view_stream(config, token_side) if config.colour_warmup else None
        sheets = reading_sheets(config, token_side) if config.read_warmup else None
        crops = symbol_view_stream(config, token_side, split="test") if config.read_warmup else None
        def save_warmed(warm_log: list[dict[str, Any]]) -> None:
            save_base(model, processor, out, [], config)
            (out / "vision_log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in warm_log))

        vision_log = warm_up_vision(model, processor, window_stream(config), config.vision_steps, VISION_BATCH,
                                    progress=progress, colour_views=colours, tower_position=config.tower_position,
                                    symbol_views=sheets, crop_checks=crops,
                                    checkpoint=save_warmed, checkpoint_every=config.save_every)
        save_warmed(vision_log)
    warmed = bool(config.init) or bool(config.tower) or bool(vision_log)
    trained = [*trained_parameters(model, train_tower=not (config.freeze_tower and warmed)), *heads.parameters()]
    optimizer = torch.optim.AdamW(trained, lr=config.lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: warmup_cosine(step, config.warmup, config.steps)
    )
    window, log, started = LossSplit(), [], time.time()
    layers = model.model.language_model.layers
    pointed_layers = sorted({config.pointer_layer, *(layer for layer, _ in OPTION_HOPS.values())}
                            if config.pointer_weight else set())
    model.train()
    with tqdm(total=config.steps, desc="pretrain" + (" (blind)" if config.blind else ""), disable=not progress) as bar:
        for step, (inputs, mask, kinds, pointers) in zip(range(config.steps), batches):
            inputs, mask = {k: v.to(device) for k, v in inputs.items()}, mask.to(device)
            with ExitStack() as stack:
                captured = {layer: stack.enter_context(captured_attention_inputs(layers[layer].self_attn))
                            for layer in pointed_layers}
                output = model(**inputs, use_cache=False,
                               output_hidden_states=bool(config.position_weight or config.pointer_weight))
            logprobs = token_logprobs(output.logits, inputs["input_ids"])
            loss = masked_mean_nll(logprobs, mask)
            if config.pointer_weight:
                parts = pointing_losses(model, config, captured, inputs["attention_mask"], pointers, heads,
                                        output.hidden_states)
                window.add({name: (float(part.detach()), 1) for name, part in parts.items()})
                loss = loss + config.pointer_weight * sum(parts.values())
            if config.position_weight and "image_grid_thw" in inputs:
                position = position_loss(heads.positions, output.hidden_states[config.position_layer],
                                         inputs["input_ids"], inputs["image_grid_thw"], model.config.image_token_id,
                                         model.config.vision_config.spatial_merge_size)
                window.add({"position": (float(position.detach()), 1)})
                loss = loss + config.position_weight * position
            clipped_update(optimizer, loss)
            schedule.step()
            window.add(split_losses(kinds, logprobs.detach()))
            bar.update()
            if (step + 1) % config.save_every == 0:  # a usable base even if the run is stopped
                save_base(model, processor, out, log, config)
                model.train()
            if (step + 1) % config.log_every == 0 or step + 1 == config.steps:
                record = {"stage": "pretrain", "step": step + 1, "loss": float(loss.detach()),
                          "seconds": round(time.time() - started, 1), **window.means()}
                log.append(record)
                bar.set_postfix(coord=f"{record['loss_coordinate']:.2f}", answer=f"{record['loss_answer']:.2f}",
                                pointer=f"{record.get('loss_pointer', math.nan):.2f}")
    save_base(model, processor, out, log, config)
    blind_log = out / BLIND_DIR / "pretrain_log.jsonl"
    blind = [json.loads(line) for line in blind_log.read_text().splitlines()] if blind_log.is_file() else []
    plot_pretraining(log, blind, out / "pretrain_curve.png", vision_log)
    return log


def pointing_losses(model: Any, config: PretrainConfig, captured: dict[int, dict[str, Any]],
                    attention_mask: torch.Tensor, pointers: PointerMasks, heads: AuxiliaryHeads,
                    hidden_states: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
    """The batch's `rl_runner.pointer` losses: the tag pointer and its carried position where a box points at a
    tag; each `OPTION_HOPS` hop and the letter its query holds where an option answer has one. From the captured
    attention inputs per layer."""
    device, layers = attention_mask.device, model.model.language_model.layers
    losses: dict[str, torch.Tensor] = {}
    pointed = [("pointer", config.pointer_layer, config.pointer_head, pointers.queries, pointers.targets)]
    pointed += [(f"pointer_{name}", *OPTION_HOPS[name], *pointers.hops[name]) for name in OPTION_HOPS]
    for name, layer, head, queries, targets in pointed:
        rows = queries.any(dim=1).nonzero().reshape(-1)
        if len(rows):
            weights = head_attention(layers[layer].self_attn, captured[layer], head, attention_mask, rows.to(device))
            losses[name] = pointer_loss(weights, queries[rows].to(device), targets[rows].to(device))
    for name, (layer, _) in OPTION_HOPS.items():
        queries = pointers.hops[name][0].to(device)
        if bool(queries.any()):
            losses[f"letter_{name}"] = letter_loss(heads.letters, hidden_states[layer + 1], queries, pointers.letters)
    if bool(pointers.queries.any()):
        losses["answer_position"] = answer_position_loss(heads.positions, hidden_states[config.pointer_layer + 1],
                                                         pointers.queries.to(device), pointers.tenths.to(device))
    return losses


def save_base(model: Any, processor: Any, out: Path, log: list[dict[str, Any]], config: PretrainConfig) -> None:
    """The model, its processor, the loss log and the config that made it."""
    model.eval()
    model.save_pretrained(out)
    processor.save_pretrained(out)
    (out / "pretrain_log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in log))
    (out / "pretrain_config.json").write_text(json.dumps(dataclasses.asdict(config), default=str, indent=1))


def default_config(**overrides: Any) -> PretrainConfig:
    """Pretraining on the main job's tasks and budgets."""
    from rl_runner.config import DEFAULT_BUDGETS, DEFAULT_SUITE_KWARGS

    return PretrainConfig(**{"suite_kwargs": dict(DEFAULT_SUITE_KWARGS), "budgets": DEFAULT_BUDGETS, **overrides})


def ensure_pretrained_base(
    cache_dir: str | Path, seed: int = 0, steps: int = PretrainConfig.steps,
    vision_steps: int = PretrainConfig.vision_steps,
) -> Path:
    """The pretrained base under `cache_dir`, built once per version, seed and steps (safe across processes)."""
    target = Path(cache_dir) / f"pixel-tiny-base-{PRETRAIN_VERSION}-seed{seed}-vision{vision_steps}-steps{steps}"
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".building-", dir=target.parent))
    pretrain(default_config(out=str(staging), seed=seed, steps=steps, vision_steps=vision_steps))
    try:
        staging.rename(target)
    except OSError:  # another process finished first
        shutil.rmtree(staging, ignore_errors=True)
    return target


def resolve_model(name: str, cache_dir: str | Path, seed: int = 0) -> str | Path:
    """A model name as the CLIs take it: "tiny" (the pretrained base), "tiny-random", or a hub id / local path."""
    if name == "tiny":  # one base for every training seed, as a hub checkpoint would be
        if (COMMITTED_BASE / "config.json").is_file():
            return COMMITTED_BASE
        return ensure_pretrained_base(cache_dir, steps=MAIN_JOB_STEPS, vision_steps=MAIN_JOB_VISION_STEPS)
    if name == "tiny-random":
        return ensure_tiny_model(cache_dir, seed=seed)
    return name


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Pretrain the tiny VLM on single-turn grounding and reading.")
    defaults = PretrainConfig()
    parser.add_argument("--out", default=defaults.out)
    parser.add_argument("--init", help="continue from this base instead of building a fresh random model")
    parser.add_argument("--tower", help="take the vision tower of this base (after --init)")
    parser.add_argument("--steps", type=int, default=defaults.steps)
    parser.add_argument("--vision-steps", type=int, default=defaults.vision_steps,
                        help="steps of the vision tower's warm-up on tag windows before the chats (0: none)")
    parser.add_argument("--no-colour-warmup", dest="colour_warmup", action="store_false",
                        help="warm the tower up on tag windows only, not on the global views' named colours")
    parser.add_argument("--read-warmup", action=argparse.BooleanOptionalAction, default=defaults.read_warmup,
                        help="also teach the tower each tag-sheet token's symbol in the warm-up (scored on look crops)")
    parser.add_argument("--shift-ramp", type=int, nargs=2, metavar=("START", "END"),
                        help="warm-up steps over which a window's tag moves from centred to anywhere (default: "
                        "always centred)")
    parser.add_argument("--no-tower-position", dest="tower_position", action="store_false",
                        help="leave the tower's per-token position loss out of the warm-up's global views")
    parser.add_argument("--position-weight", type=float, default=defaults.position_weight,
                        help="weight of the image tokens' position loss during the chats (0: none)")
    parser.add_argument("--pointer-weight", type=float, default=defaults.pointer_weight,
                        help="weight of the loss that points one decoder head at the named tag (0: none)")
    parser.add_argument("--kind-counts", type=json.loads, default=defaults.kind_counts, metavar="JSON",
                        help=f"examples of each kind per drawn image, e.g. '{json.dumps(defaults.kind_counts)}'")
    parser.add_argument("--look-prompt", choices=LOOK_PROMPTS, default=defaults.look_prompt,
                        help="a look example's prompt: the env's whole first observation, or a short one")
    parser.add_argument("--option-pointer", action=argparse.BooleanOptionalAction, default=defaults.option_pointer,
                        help="supervise the three heads that look an answer's option letter up (on by default)")
    parser.add_argument("--train-tower", dest="freeze_tower", action="store_false",
                        help="let the chats train the vision tower after its warm-up too")
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--lr", type=float, default=defaults.lr)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--log-every", type=int, default=defaults.log_every)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cuda")
    parser.add_argument("--blind", action="store_true", help="train only the control: every image flat gray")
    parser.add_argument("--with-blind-control", action="store_true",
                        help=f"first train the control into OUT/{BLIND_DIR}, then the base; plot both")
    args = parser.parse_args(argv)
    config = default_config(out=args.out, init=args.init, tower=args.tower, steps=args.steps,
                            vision_steps=args.vision_steps,
                            colour_warmup=args.colour_warmup, tower_position=args.tower_position,
                            read_warmup=args.read_warmup, position_weight=args.position_weight,
                            pointer_weight=args.pointer_weight, freeze_tower=args.freeze_tower,
                            look_prompt=args.look_prompt, kind_counts=args.kind_counts,
                            option_pointer=args.option_pointer,
                            shift_ramp=tuple(args.shift_ramp) if args.shift_ramp else None,
                            batch_size=args.batch_size, lr=args.lr, seed=args.seed, threads=args.threads,
                            blind=args.blind, log_every=args.log_every, device=args.device)
    if args.with_blind_control:
        pretrain(dataclasses.replace(config, out=str(Path(config.out) / BLIND_DIR), blind=True))
    log = pretrain(config)
    if log:  # none when only the vision tower was warmed up (--steps 0)
        print(json.dumps(log[-1]))
    print(f"saved the pretrained base to {config.out}")


if __name__ == "__main__":
    main()
