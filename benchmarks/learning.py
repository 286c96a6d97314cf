"""Does the method work at this scale? SFT alone vs RL without vs with the curiosity bonus, over seeds.

`python -m benchmarks.learning` trains, per seed, the tiny model with SFT (on the embedded defaults), then two RL
runs from that same SFT checkpoint: one rewarded by correctness only, one with the curiosity bonus and op penalty.
Each is evaluated greedily on the same held-out fine-detail tasks; an answer-without-looking baseline is scored on
them too. Writes `benchmarks/results/learning/summary.json`, a table, and `learning.png` (accuracy and RaPR).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from agents.scripted import BlindAgent  # noqa: E402
from pixel_gym.suites import make_suite  # noqa: E402
from rl_runner.config import TrainConfig  # noqa: E402
from rl_runner.train import Trainer, make_env  # noqa: E402

VARIANTS = ("sft", "rl_no_curiosity", "rl_curiosity")


def run_seed(seed: int, out_dir: Path, overrides: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The three variants for one seed: final held-out eval metrics and the RaPR curve of each."""
    base = {"out_dir": str(out_dir), "seed": seed, "overwrite": True, **overrides}  # re-runs replace their folders
    sft = TrainConfig(name=f"seed{seed}-sft", **{**base, "rl_steps": 0})
    results = {"sft": _final_eval(Trainer(sft.validate()))}
    sft_checkpoint = str(sft.run_dir / "checkpoints" / "sft")
    for variant, alpha, beta in (("rl_no_curiosity", 0.0, 0.0), ("rl_curiosity", None, None)):
        config = TrainConfig(name=f"seed{seed}-{variant}", init_from=sft_checkpoint, **base)
        if alpha is not None:
            config.curiosity_alpha, config.curiosity_beta = alpha, beta
        results[variant] = _final_eval(Trainer(config.validate()))
    return results


def _final_eval(trainer: Trainer) -> dict[str, Any]:
    trainer.train()
    records = trainer.run.records()
    final = [r for r in records if r["stage"] == "eval"][-1]
    curve = [(r["step"], r["rapr"]) for r in records if r["stage"] == "rl"]
    return {"accuracy": final["eval_accuracy"], "rapr": final["eval_rapr"], "rapr_curve": curve}


def blind_accuracy(config: TrainConfig, seed: int) -> float:
    """Answer-without-looking on the held-out tasks the variants are evaluated on."""
    tasks = make_suite(config.suite, size=config.eval_tasks, seed=seed, split="test", **config.suite_kwargs)
    env = make_env(config, tasks)
    agent, total = BlindAgent(env, seed=seed), 0.0
    for index in range(len(tasks)):
        obs, _ = env.reset(options={"index": index})
        *_, info = env.step(agent.act(obs))
        total += info["correctness"]
    return total / len(tasks)


def summarize(per_seed: list[dict[str, dict[str, Any]]], blind: list[float]) -> dict[str, Any]:
    summary: dict[str, Any] = {"blind_accuracy": {"mean": float(np.mean(blind)), "std": float(np.std(blind))}}
    for variant in VARIANTS:
        for key in ("accuracy", "rapr"):
            values = [seed[variant][key] for seed in per_seed]
            summary[f"{variant}_{key}"] = {"mean": float(np.mean(values)), "std": float(np.std(values)),
                                           "values": values}
    return summary


def table(summary: dict[str, Any]) -> str:
    rows = ["| model | held-out accuracy | RaPR |", "|---|---|---|"]
    for variant in VARIANTS:
        accuracy, rapr = summary[f"{variant}_accuracy"], summary[f"{variant}_rapr"]
        rows.append(f"| {variant} | {accuracy['mean']:.3f} ± {accuracy['std']:.3f} | "
                    f"{rapr['mean']:.3f} ± {rapr['std']:.3f} |")
    blind = summary["blind_accuracy"]
    rows.append(f"| answer without looking | {blind['mean']:.3f} ± {blind['std']:.3f} | 0 |")
    return "\n".join(rows)


def plot(summary: dict[str, Any], per_seed: list[dict[str, dict[str, Any]]], threshold: float, path: Path) -> None:
    figure, axes = plt.subplots(1, 3, figsize=(15, 4))
    for axis, key in zip(axes[:2], ("accuracy", "rapr")):
        means = [summary[f"{v}_{key}"]["mean"] for v in VARIANTS]
        stds = [summary[f"{v}_{key}"]["std"] for v in VARIANTS]
        axis.bar(VARIANTS, means, yerr=stds, capsize=4, color=["gray", "tab:orange", "tab:blue"])
        axis.set(title=f"held-out {key}", ylim=(0, 1))
    axes[0].axhline(summary["blind_accuracy"]["mean"], color="black", linestyle=":", label="answer without looking")
    axes[0].legend(fontsize=8)
    axes[1].axhline(threshold, color="red", linestyle="--", label=f"H = {threshold}")
    axes[1].legend(fontsize=8)
    for variant, color in (("rl_no_curiosity", "tab:orange"), ("rl_curiosity", "tab:blue")):
        for number, seed in enumerate(per_seed):
            steps, rates = zip(*seed[variant]["rapr_curve"]) if seed[variant]["rapr_curve"] else ((), ())
            axes[2].plot(steps, rates, color=color, alpha=0.7, label=variant if number == 0 else None)
    axes[2].axhline(threshold, color="red", linestyle="--")
    axes[2].set(title="training RaPR per RL step", xlabel="RL step", ylim=(-0.02, 1.02))
    axes[2].legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", default="benchmarks/results/learning")
    parser.add_argument("--quick", action="store_true", help="a tiny budget that only checks the pipeline")
    parser.add_argument("--set", nargs="*", default=[], metavar="FIELD=JSON",
                        help="TrainConfig overrides, e.g. rl_steps=20 sft_epochs=4")
    args = parser.parse_args(argv)
    overrides: dict[str, Any] = {key: json.loads(value) for key, value in (item.split("=", 1) for item in args.set)}
    if args.quick:
        overrides = {"sft_tasks": 6, "sft_epochs": 1, "rl_steps": 2, "tasks_per_step": 2, "group_size": 2,
                     "eval_tasks": 3, "eval_every": 2, "checkpoint_every": 2, "max_new_tokens": 24,
                     "suite_kwargs": {"image_size": [600, 700]}, "model": "tiny-random", **overrides}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    per_seed = [run_seed(seed, out / "runs", overrides) for seed in args.seeds]
    config = TrainConfig(**overrides)
    summary = summarize(per_seed, [blind_accuracy(config, seed) for seed in args.seeds])
    summary["config"] = overrides
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    plot(summary, per_seed, config.curiosity_threshold, out / "learning.png")
    print(table(summary))
    print(f"wrote {out / 'summary.json'} and {out / 'learning.png'}")


if __name__ == "__main__":
    main()
