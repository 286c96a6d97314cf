"""Does fine visual detail reach the tiny VLM's answer? A minimal control for the learning issue.

`python -m benchmarks.vision_probe` trains a fresh base-sized tiny Qwen2.5-VL (`agents.tiny.BASE_SHAPE`) on one
single-turn question about a symbol tag drawn centred in a 56x56 window (4 image tokens) on a plain background,
at the glyph scale of the main job's crops (2-px cells shown at 0.7): "What colour is the frame of the tag?" (9
colours: low-frequency information) and "Which symbol is printed on the tag?" (28 glyphs: fine detail). Each
condition trains its own model from the same initialisation; the loss of the answer token is logged beside the
uniform guess. Conditions: `colour` and `symbol` from the random vision tower, and `symbol_warm`: the symbol
after `rl_runner.vision_warmup` trained the tower alone (linear heads, no text) on windows of the same kind for
`--warmup-steps` steps. Writes `summary.json` and `vision_probe.png` under `--out`.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Iterator
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402
from tqdm import tqdm  # noqa: E402
from transformers import AutoModelForImageTextToText  # noqa: E402

from agents.chat import load_processor  # noqa: E402
from agents.tiny import BASE_SHAPE, build_tiny_model  # noqa: E402
from pixel_gym.suites.drawing import NAMED_COLORS, draw_tag, tag_size  # noqa: E402
from pixel_gym.suites.glyphs import SYMBOLS  # noqa: E402
from rl_runner.algorithms import clipped_update, forward_logprobs, masked_mean_nll  # noqa: E402
from rl_runner.conversation import batch_conversations, encode_conversation  # noqa: E402
from rl_runner.pretrain import GLYPH_WINDOW, chat  # noqa: E402
from rl_runner.vision_warmup import TagWindow, warm_up_vision  # noqa: E402

QUESTIONS = {"colour": "What colour is the frame of the tag?", "symbol": "Which symbol is printed on the tag?"}
CONDITIONS = {"colour": ("colour", False), "symbol": ("symbol", False), "symbol_warm": ("symbol", True)}
CELL, SHOWN_AT = 2, 0.7  # the main job's glyph cells and about the scale its look crops are served at


def window(rng: np.random.Generator) -> tuple[np.ndarray, dict[str, str]]:
    """A centred tag on a plain background, as the model sees it, and the answers to both questions."""
    colour, symbol = str(rng.choice(list(NAMED_COLORS))), str(rng.choice(list(SYMBOLS)))
    side = round(GLYPH_WINDOW / SHOWN_AT)
    image = Image.new("RGB", (side, side), tuple(int(v) for v in rng.integers(60, 200, 3)))
    width, height = tag_size(CELL)
    draw_tag(ImageDraw.Draw(image), symbol, (side - width) // 2, (side - height) // 2, CELL, NAMED_COLORS[colour])
    shown = image.resize((GLYPH_WINDOW, GLYPH_WINDOW), Image.Resampling.BICUBIC)
    return np.asarray(shown), {"colour": colour, "symbol": symbol}


def tag_windows(rng: np.random.Generator) -> Iterator[TagWindow]:
    """Endless probe windows as the vision warm-up takes them."""
    while True:
        image, answers = window(rng)
        yield TagWindow(image, answers["symbol"])


def warmed_up(model_dir: Path, out: Path, steps: int, seed: int) -> Path:
    """A copy of the model at `model_dir` whose vision tower `warm_up_vision` trained for `steps` steps."""
    torch.manual_seed(seed)
    model = AutoModelForImageTextToText.from_pretrained(model_dir, dtype=torch.float32)
    processor = load_processor(model_dir)
    warm_up_vision(model, processor, tag_windows(np.random.default_rng(seed + 1)), steps)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def train_question(question: str, model_dir: Path, steps: int, batch_size: int, lr: float, seed: int) -> list[float]:
    """Answer-token losses (one per step) of the model at `model_dir` trained on `question` alone."""
    torch.manual_seed(seed)
    model = AutoModelForImageTextToText.from_pretrained(model_dir, dtype=torch.float32).train()
    processor = load_processor(model_dir)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    rng, losses = np.random.default_rng(seed), []
    for _ in tqdm(range(steps), desc=question):
        chats = []
        for _ in range(batch_size):
            image, answers = window(rng)
            chats.append(chat(image, QUESTIONS[question], answers[question]))
        inputs, mask = batch_conversations([encode_conversation(processor, c) for c in chats],
                                           processor.tokenizer.pad_token_id or 0)
        logprobs, _ = forward_logprobs(model, inputs)
        clipped_update(optimizer, masked_mean_nll(logprobs, mask))
        first = mask.float().argmax(-1)  # the answer's first token
        losses.append(float(-logprobs.detach()[torch.arange(batch_size), first].mean()))
    return losses


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="benchmarks/results/vision_probe")
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--warmup-steps", type=int, default=150, help="vision warm-up steps of `symbol_warm`")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    model_dir = build_tiny_model(out / "init", seed=args.seed, shape=BASE_SHAPE)
    warm_dir = warmed_up(model_dir, out / "warm", args.warmup_steps, args.seed)
    uniform = {"colour": math.log(len(NAMED_COLORS)), "symbol": math.log(len(SYMBOLS))}
    curves = {name: train_question(question, warm_dir if warm else model_dir, args.steps, args.batch_size, args.lr,
                                   args.seed) for name, (question, warm) in CONDITIONS.items()}
    tail = max(1, args.steps // 5)
    summary = {name: {"final_loss": float(np.mean(curves[name][-tail:])), "uniform": uniform[question]}
               for name, (question, _) in CONDITIONS.items()}
    (out / "summary.json").write_text(json.dumps({"args": vars(args), "results": summary, "curves": curves}, indent=1))
    figure, axis = plt.subplots(figsize=(6, 3.5))
    for name, curve in curves.items():
        (line,) = axis.plot(range(1, len(curve) + 1), curve, label=f"{name} (answer token)")
        axis.axhline(summary[name]["uniform"], linestyle=":", color=line.get_color())
    axis.set(xlabel="step", ylabel="loss (nats)", title="centred tag, 4 image tokens: what reaches the answer")
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(out / "vision_probe.png", dpi=120)
    for name, result in summary.items():
        print(f"{name}: final answer loss {result['final_loss']:.3f} (uniform {result['uniform']:.3f})")
    return summary


if __name__ == "__main__":
    main()
