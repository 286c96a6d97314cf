"""Pretraining of a from-scratch VLM: ground a phrase to a box and read what a view shows, in single turns.

A hub VLM comes to the paper's SFT already able to ground and read. A model built here from random weights gets
that from this stage: single-turn examples made from the suites' annotations, every view produced by the real
env (the global view at reset, a crop through the env's own zoom), so pretraining sees what SFT and RL show.
Kinds of example:

- `ground`: the global view and "Where is the <colour> tag?" -> its box, normalized, rounded outwards to tenths;
- `look`: the global view and the task question -> the first turn of a direct trace (a crop call on the target);
- `read`: a crop around the target, as the look turn's box cuts it (shifted a little), and the task question ->
  what it shows, the boxed answer;
- `name`: the same crop and "Which symbol is printed on the <colour> tag?" without options -> the symbol itself.

The main job's model "tiny" is this base: `ensure_pretrained_base` builds it once per version, seed and step count
and caches it (like the random tiny model), at the default budget of `PretrainConfig.steps`.
`python -m rl_runner.pretrain --out DIR --steps N` builds one explicitly (use it with `--model DIR`); `--blind`
trains the same stream with every image flat gray, the control that shows what the pixels add.
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm
from transformers import AutoModelForImageTextToText

from agents.chat import load_processor
from agents.scripted import crop_call, target_region, zoom_box
from agents.tiny import BASE_SHAPE, build_tiny_model, ensure_tiny_model
from pixel_gym.budgets import Budgets
from pixel_gym.env import PixelVQAEnv
from pixel_gym.suites import make_suite
from pixel_gym.tasks import Task
from rl_runner.algorithms import forward_logprobs
from rl_runner.conversation import batch_conversations, encode_conversation
from rl_runner.diagnostics import LossSplit, grayed, split_losses
from rl_runner.plots import plot_pretraining
from rl_runner.traces import BOX_DECIMALS, final_turn, look_turn

PRETRAIN_SYSTEM = "You are a helpful assistant."
PRETRAIN_VERSION = "p2"
BLIND_DIR = "blind_control"  # where `--with-blind-control` trains the control, inside the base's folder
KINDS = ("ground", "look", "read", "name")
READ_SHIFT = 0.08  # how far a read crop's box may move from the look box (the crop's 0.1 padding keeps the tag in)


@dataclass
class PretrainConfig:
    """What `python -m rl_runner.pretrain` trains on and how long."""

    out: str = "runs/pixel-tiny-base"
    suite: str = "fine_detail"
    suite_kwargs: dict[str, Any] = field(default_factory=dict)
    budgets: str | Budgets = "compact"
    kind_weights: dict[str, float] = field(
        default_factory=lambda: {"ground": 0.3, "look": 0.15, "read": 0.35, "name": 0.2}
    )
    steps: int = 200  # what fits the main job's CPU budget; grounding needs far more (see the README)
    batch_size: int = 8
    lr: float = 1e-3
    warmup: int = 100
    seed: int = 0
    blind: bool = False  # the control: every image replaced by flat gray
    log_every: int = 25
    save_every: int = 250
    device: str = "cpu"
    threads: int = 0


def chat(image: np.ndarray, question: str, answer: str) -> list[dict[str, Any]]:
    """One single-turn example in the env's message format."""
    return [
        {"role": "system", "content": [{"type": "text", "text": PRETRAIN_SYSTEM}]},
        {"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": question}]},
        {"role": "assistant", "content": [{"type": "text", "text": answer}]},
    ]


def box_text(box: Sequence[float]) -> str:
    return "[" + ", ".join(f"{v:g}" for v in box) + "]"


class ExampleMaker:
    """Single-turn examples of one task, with the views the env shows for it."""

    def __init__(self, env: PixelVQAEnv, rng: np.random.Generator) -> None:
        self.env, self.rng = env, rng

    def examples(self, task: Task, kind: str) -> list[list[dict[str, Any]]]:
        obs, _ = self.env.reset(options={"task": task})
        global_view = obs["images"][0]
        width, height = task.annotations["image_size"]
        target = target_region(task, (width, height))
        if kind == "ground":
            colored = [tag for tag in task.annotations["tags"] if tag["color"] != "gray"]
            picks = self.rng.permutation(len(colored))[:2]
            return [self._ground(global_view, colored[i], width, height) for i in picks]
        if kind == "look":
            return [chat(global_view, task.prompt_text(), look_turn(target))]
        view = self._zoomed(target)
        if kind == "name":
            tag = task.annotations["tags"][task.annotations["targets"][0]]
            return [chat(view, f"Which symbol is printed on the {tag['color']} tag?", tag["symbol"])]
        return [chat(view, task.prompt_text(), final_turn(task))]

    def _ground(self, view: np.ndarray, tag: dict[str, Any], width: int, height: int) -> list[dict[str, Any]]:
        x1, y1, x2, y2 = tag["box"]
        box = zoom_box((x1 / width, y1 / height, x2 / width, y2 / height), BOX_DECIMALS)
        return chat(view, f"Where is the {tag['color']} tag? Answer with its bounding box.", box_text(box))

    def _zoomed(self, target: Sequence[float]) -> np.ndarray:
        """The target as the look turn's crop shows it, the box shifted by up to `READ_SHIFT` along each axis."""
        box = np.asarray(zoom_box(target, BOX_DECIMALS))
        shift = np.tile(self.rng.uniform(-READ_SHIFT, READ_SHIFT, size=2), 2)
        obs, *_ = self.env.step(crop_call(np.clip(box + shift, 0.0, 0.99), decimals=2))
        return obs["images"][-1]


def example_stream(config: PretrainConfig, split: str = "train") -> Iterator[list[dict[str, Any]]]:
    """Endless single-turn examples from ever new tasks; `look` is only drawn where the global view locates."""
    rng = np.random.default_rng(config.seed)
    kinds = list(config.kind_weights)
    weights = np.asarray([config.kind_weights[k] for k in kinds], dtype=float)
    for chunk in itertools.count(1):
        suite = make_suite(config.suite, size=1000, seed=config.seed * 100_000 + chunk, split=split,
                           **config.suite_kwargs)
        maker = ExampleMaker(PixelVQAEnv(tasks=suite, budgets=config.budgets), rng)
        for task in suite:
            locatable = task.annotations.get("locatable", False)
            allowed = [k for k in kinds if locatable or k == "read"]
            p = weights[[kinds.index(k) for k in allowed]]
            yield from maker.examples(task, allowed[int(rng.choice(len(allowed), p=p / p.sum()))])


def warmup_cosine(step: int, warmup: int, total: int) -> float:
    """Learning-rate factor: linear warm-up, then cosine decay to 5%."""
    return min(1.0, (step + 1) / warmup) * max(0.05, 0.5 * (1 + math.cos(math.pi * step / total)))


def pretrain(config: PretrainConfig, progress: bool = True) -> list[dict[str, float]]:
    """Build the base model, train it on the example stream, save it to `config.out`; returns the loss log."""
    if config.threads:
        torch.set_num_threads(config.threads)
    out = Path(config.out)
    build_tiny_model(out, seed=config.seed, shape=BASE_SHAPE)
    device = torch.device(config.device)
    model = AutoModelForImageTextToText.from_pretrained(out, dtype=torch.float32).to(device)
    processor = load_processor(out)
    tokenizer = processor.tokenizer
    torch.manual_seed(config.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: warmup_cosine(step, config.warmup, config.steps)
    )
    stream = example_stream(config)
    window, log, started = LossSplit(), [], time.time()
    model.train()
    with tqdm(total=config.steps, desc="pretrain" + (" (blind)" if config.blind else ""), disable=not progress) as bar:
        for step in range(config.steps):
            chats = [next(stream) for _ in range(config.batch_size)]
            encoded = [encode_conversation(processor, grayed(c) if config.blind else c) for c in chats]
            inputs, mask = batch_conversations(encoded, tokenizer.pad_token_id or 0)
            inputs, mask = {k: v.to(device) for k, v in inputs.items()}, mask.to(device)
            logprobs, _ = forward_logprobs(model, inputs)
            loss = -(logprobs * mask).sum() / mask.sum()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            window.add(split_losses(tokenizer, inputs["input_ids"], logprobs.detach(), mask))
            bar.update()
            if (step + 1) % config.save_every == 0:  # a usable base even if the run is stopped
                save_base(model, processor, out, log, config)
                model.train()
            if (step + 1) % config.log_every == 0 or step + 1 == config.steps:
                record = {"stage": "pretrain", "step": step + 1, "loss": float(loss.detach()),
                          "seconds": round(time.time() - started, 1), **window.means()}
                log.append(record)
                bar.set_postfix(coord=f"{record['loss_coordinate']:.2f}", answer=f"{record['loss_answer']:.2f}")
    save_base(model, processor, out, log, config)
    blind_log = out / BLIND_DIR / "pretrain_log.jsonl"
    blind = [json.loads(line) for line in blind_log.read_text().splitlines()] if blind_log.is_file() else []
    plot_pretraining(log, blind, out / "pretrain_curve.png")
    return log


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


def ensure_pretrained_base(cache_dir: str | Path, seed: int = 0, steps: int = PretrainConfig.steps) -> Path:
    """The pretrained base under `cache_dir`, built once per version, seed and steps (safe across processes)."""
    target = Path(cache_dir) / f"pixel-tiny-base-{PRETRAIN_VERSION}-seed{seed}-steps{steps}"
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".building-", dir=target.parent))
    pretrain(default_config(out=str(staging), seed=seed, steps=steps))
    try:
        staging.rename(target)
    except OSError:  # another process finished first
        shutil.rmtree(staging, ignore_errors=True)
    return target


def resolve_model(name: str, cache_dir: str | Path, seed: int = 0) -> str | Path:
    """A model name as the CLIs take it: "tiny" (the pretrained base), "tiny-random", or a hub id / local path."""
    if name == "tiny":
        return ensure_pretrained_base(cache_dir, seed)
    if name == "tiny-random":
        return ensure_tiny_model(cache_dir, seed=seed)
    return name


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Pretrain the tiny VLM on single-turn grounding and reading.")
    defaults = PretrainConfig()
    parser.add_argument("--out", default=defaults.out)
    parser.add_argument("--steps", type=int, default=defaults.steps)
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
    config = default_config(out=args.out, steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                            threads=args.threads, blind=args.blind, log_every=args.log_every, device=args.device)
    if args.with_blind_control:
        pretrain(dataclasses.replace(config, out=str(Path(config.out) / BLIND_DIR), blind=True))
    log = pretrain(config)
    print(json.dumps(log[-1]))
    print(f"saved the pretrained base to {config.out}")


if __name__ == "__main__":
    main()
