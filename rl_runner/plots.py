"""Learning-curve plots from a run's metrics records."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot_learning_curve(records: Sequence[dict[str, Any]], path: str | Path, threshold: float) -> Path:
    """Accuracy, RaPR and reward parts per RL step (train) with held-out evaluations; SFT loss beside."""
    rl = [r for r in records if r["stage"] == "rl"]
    evals = [r for r in records if r["stage"] == "eval"]
    sft = [r for r in records if r["stage"] == "sft"]
    figure, axes = plt.subplots(1, 4, figsize=(18, 4))
    axes[0].plot([r["step"] for r in sft], [r["loss"] for r in sft], color="gray")
    axes[0].set(title="SFT loss", xlabel="SFT step")
    steps = [r["step"] for r in rl]
    eval_steps = [r["step"] + 1 for r in evals]
    axes[1].plot(steps, [r["accuracy"] for r in rl], label="train (sampled)")
    axes[1].plot(eval_steps, [r["eval_accuracy"] for r in evals], "o-", label="held-out (greedy)")
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
