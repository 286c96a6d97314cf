"""Learning-curve plots from a run's metrics records."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np

from pixel_gym.suites.glyphs import SYMBOLS
from rl_runner.diagnostics import uniform_levels

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

KIND_COLORS = {"loss_template": "gray", "loss_coordinate": "tab:blue", "loss_answer": "tab:orange"}


def smoothed(values: Sequence[float], window: int = 10) -> np.ndarray:
    """Running mean over the last `window` finite values (NaN where none yet)."""
    array = np.asarray(values, dtype=float)
    out = np.full(len(array), np.nan)
    for i in range(len(array)):
        recent = array[max(0, i - window + 1) : i + 1]
        recent = recent[np.isfinite(recent)]
        out[i] = recent.mean() if len(recent) else np.nan
    return out


def plot_loss_split(axis: Any, real: Sequence[dict[str, Any]], blind: Sequence[dict[str, Any]], title: str,
                    num_choices: int = 4, window: int = 10) -> None:
    """Loss per token kind (solid: the run; dashed: the blind control on gray images) beside the uniform levels."""
    for key, color in KIND_COLORS.items():
        label = key.removeprefix("loss_")
        for records, style, suffix in ((real, "-", ""), (blind, "--", " (blind)")):
            if records and key in records[0]:
                axis.plot([r["step"] for r in records], smoothed([r[key] for r in records], window), style, color=color,
                          label=label + suffix)
    for key, level in uniform_levels(num_choices).items():
        axis.axhline(level, color=KIND_COLORS[key], linestyle=":", linewidth=1)
    axis.set(title=title + " (dotted: uniform guess)", xlabel="step", ylabel="nats per token", ylim=(0, 3.5))
    axis.legend(fontsize=7)


def plot_pretraining(
    real: Sequence[dict[str, Any]], blind: Sequence[dict[str, Any]], path: str | Path,
    vision: Sequence[dict[str, Any]] = (),
) -> Path:
    """The vision warm-up's loss, then the pretraining loss split of the base and of its blind control."""
    figure, (warmup, axis) = plt.subplots(1, 2, figsize=(11, 4))
    warmup.plot([r["step"] for r in vision], [r["loss_symbol"] for r in vision], label="symbol (tag window)")
    warmup.axhline(math.log(len(SYMBOLS)), linestyle=":", color="gray", label="uniform symbol")
    if vision and "loss_colour" in vision[0]:
        warmup.plot([r["step"] for r in vision], [r["loss_colour"] for r in vision],
                    label="named colour per global-view token")
    warmup.set(title="vision warm-up", xlabel="step", ylabel="loss (nats)")
    warmup.legend(fontsize=8)
    plot_loss_split(axis, real, blind, "pretraining", window=1)  # records are already window means
    auxiliary = (("loss_position", "image-token position", "tab:green"),  # uniform: ln 10, as a digit
                 ("loss_pointer", "pointer: -log attention on the named tag", "tab:purple"))
    for key, label, color in auxiliary:
        if real and key in real[0]:
            axis.plot([r["step"] for r in real], [r[key] for r in real], color=color, label=label)
            axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return Path(path)


def plot_learning_curve(records: Sequence[dict[str, Any]], path: str | Path, threshold: float) -> Path:
    """Accuracy, RaPR and reward parts per RL step (train) with held-out evaluations; SFT loss beside."""
    rl = [r for r in records if r["stage"] == "rl"]
    evals = [r for r in records if r["stage"] == "eval"]
    sft = [r for r in records if r["stage"] == "sft"]
    figure, axes = plt.subplots(1, 4, figsize=(18, 4))
    plot_loss_split(axes[0], sft, [r for r in records if r["stage"] == "sft_blind"], "SFT loss by token kind")
    steps = [r["step"] for r in rl]
    eval_steps = [r["step"] + 1 for r in evals]
    axes[1].plot(steps, [r["accuracy"] for r in rl], label="train (sampled)")
    axes[1].plot(eval_steps, [r["eval_accuracy"] for r in evals], "o-", label="held-out (greedy)")
    for key, style in (("eval_no_tool_accuracy", "s--"), ("eval_blind_accuracy", ":")):
        if evals and key in evals[0]:
            axes[1].plot(eval_steps, [r[key] for r in evals], style, label=key.removeprefix("eval_"))
    axes[1].set(title="accuracy", xlabel="RL step", ylim=(-0.02, 1.02))
    axes[2].plot(steps, [r["rapr"] for r in rl], label="train")
    axes[2].plot(eval_steps, [r["eval_rapr"] for r in evals], "o-", label="held-out")
    axes[2].axhline(threshold, color="red", linestyle="--", label=f"H = {threshold}")
    axes[2].set(title="rate of pixel-space reasoning", xlabel="RL step", ylim=(-0.02, 1.02))
    for key in ("reward", "reward_correctness", "reward_curiosity", "reward_penalty"):
        axes[3].plot(steps, [r.get(key, 0.0) for r in rl], label=key.removeprefix("reward_"))
    axes[3].set(title="reward parts", xlabel="RL step")
    for axis in axes[1:]:
        axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return Path(path)
