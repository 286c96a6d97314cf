"""`python -m rl_runner.train`: the whole method end to end.

With no arguments: build the tiny Qwen2.5-VL model, synthesize SFT traces on the built-in fine-detail suite, run the
SFT warm-start, then GRPO with the curiosity bonus; write `runs/<name>/` (metrics.jsonl, learning_curve.png,
checkpoints/, config.yaml). `--resume` continues from the last checkpoint with the same results as an uninterrupted
run, because every step draws its tasks and samples from seeds derived from (seed, step).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm
from transformers import AutoModelForImageTextToText, PreTrainedModel

from agents.chat import load_processor
from agents.vlm import VLMAgent
from pixel_gym.env import PixelVQAEnv
from pixel_gym.reward import NO_CURIOSITY, RewardParts, rapr, shape_group
from pixel_gym.suites import make_suite
from pixel_gym.tasks import Task
from rl_runner.algorithms import Batch, PolicyTrainer
from rl_runner.checkpoints import (
    CheckpointError,
    is_complete,
    latest_complete,
    load_trainer_state,
    remove_partial,
    write_checkpoint,
)
from rl_runner.config import TrainConfig, load_config, save_config
from rl_runner.diagnostics import grayed
from rl_runner.evaluation import GALLERY, ToolsDisabled, blind_accuracy, keep_episodes, looking_metrics
from rl_runner.loggers import METRICS_FILE, LoggerError, Loggers
from rl_runner.plots import plot_learning_curve
from rl_runner.pretrain import resolve_model
from rl_runner.rollout import EpisodeRecord, RolloutStats, run_episodes
from rl_runner.run_dir import RunFolder, RunFolderError
from rl_runner.sft import train_sft
from rl_runner.traces import save_traces, synthesize

SUITE_SIZE = 1_000_000  # tasks are generated lazily; this only bounds the index space


class Run:
    """One training run's folder: config, metrics log, checkpoints."""

    def __init__(self, config: TrainConfig) -> None:
        self.config = config
        self.dir = config.run_dir
        self.metrics_path = self.dir / METRICS_FILE
        self.checkpoints = self.dir / "checkpoints"

    def prepare(self) -> None:
        """Open and lock the run folder (see `rl_runner.run_dir`), write the config into it, open the loggers."""
        self.folder = RunFolder.open(self.dir, resume=self.config.resume, overwrite=self.config.overwrite)
        save_config(self.config, self.dir / "config.yaml")
        try:
            self.loggers = Loggers.open(self.config.logger, self.dir, self.config.to_dict())
        except BaseException:
            self.folder.close()
            raise

    def close(self) -> None:
        try:
            self.loggers.close()
        finally:
            self.folder.close()

    def log(self, record: dict[str, Any]) -> None:
        """One record to every `--logger` sink (metrics.jsonl always)."""
        self.loggers.log(record)

    def restart_log(self) -> None:
        """The metrics start afresh (a new run, or SFT trained again)."""
        self.loggers.restart()

    def records(self) -> list[dict[str, Any]]:
        if not self.metrics_path.exists():
            return []
        lines = [line for line in self.metrics_path.read_text().splitlines() if line.strip()]
        try:
            return [json.loads(line) for line in lines]
        except json.JSONDecodeError:  # a kill mid-append tears the last line only: it is recomputed on resume
            return [json.loads(line) for line in lines[:-1]]

    def truncate_log(self, next_step: int) -> None:
        """Drop RL records from `next_step` on (they are recomputed after a resume); SFT records stay."""
        kept = [r for r in self.records() if r["stage"] in ("sft", "sft_blind") or r["step"] < next_step]
        self.metrics_path.write_text("".join(json.dumps(r) + "\n" for r in kept))
        self.loggers.truncate(next_step)

    def latest_rl_checkpoint(self) -> Path | None:
        """The last complete RL checkpoint, after deleting the half-written ones a kill left behind."""
        for path in remove_partial(self.checkpoints):
            print(f"removed the incomplete checkpoint {path}")
        return latest_complete(self.checkpoints, "step_*")


def base_model_path(config: TrainConfig) -> str | Path:
    """The model SFT starts from: the pretrained tiny base (built once, cached), a random tiny model, or a hub id."""
    return resolve_model(config.model, Path(config.out_dir).resolve() / ".tiny-models", seed=config.seed)


def device_for(config: TrainConfig) -> torch.device:
    if config.device != "auto":
        return torch.device(config.device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def load_model(path: str | Path, device: torch.device) -> PreTrainedModel:
    model = AutoModelForImageTextToText.from_pretrained(path, dtype=torch.float32)
    return model.to(device).eval()


def rollout_agent(model: PreTrainedModel | str | Path, processor: Any, config: TrainConfig,
                  device: torch.device) -> VLMAgent:
    """The RL sampler: the config's per-turn temperatures, top_p and top_k."""
    later = None if config.later_temperature == -1 else config.later_temperature
    return VLMAgent(model, processor, max_new_tokens=config.max_new_tokens, temperature=config.temperature,
                    later_temperature=later, top_p=config.top_p, top_k=config.top_k, device=device)


def make_env(config: TrainConfig, tasks: Sequence[Task]) -> PixelVQAEnv:
    # correctness only: the trainer shapes rewards per group with the exact RaPR
    return PixelVQAEnv(tasks=tasks, budgets=config.budgets, max_turns=config.max_turns, curiosity=NO_CURIOSITY,
                       ops=config.op_names)


def summarize(stats: RolloutStats, parts: list[RewardParts] | None = None) -> dict[str, float]:
    """Episode metrics of one batch: accuracy, RaPR, ops, invalid calls, reward parts."""
    episodes = stats.episodes
    by_task: dict[str, list[bool]] = {}
    for episode in episodes:
        by_task.setdefault(episode.group, []).append(episode.num_tool_calls > 0)
    calls = sum(e.num_tool_calls for e in episodes)
    turns = sum(e.turns for e in episodes)
    summary = {
        "accuracy": float(np.mean([e.correctness for e in episodes])),
        "rapr": float(np.mean([rapr(flags) for flags in by_task.values()])),
        "ops_per_episode": float(np.mean([e.num_ops for e in episodes])),
        "invalid_call_rate": sum(e.num_errors for e in episodes) / max(turns, 1),
        "tool_calls_per_episode": calls / len(episodes),
        "answered_rate": float(np.mean([e.answered for e in episodes])),
        "failed_episodes": sum(bool(e.error) for e in episodes),  # the env raised (see rollout.run_episodes)
        "tokens_per_s": stats.tokens_per_second,
    }
    if parts:
        summary.update(
            reward=float(np.mean([p.total for p in parts])),
            reward_correctness=float(np.mean([p.correctness for p in parts])),
            reward_curiosity=float(np.mean([p.curiosity for p in parts])),
            reward_penalty=float(np.mean([p.penalty for p in parts])),
        )
    return summary


def shape_rewards(episodes: Sequence[EpisodeRecord], config: TrainConfig) -> list[RewardParts]:
    """Group curiosity shaping (exact RaPR per group), in episode order."""
    parts: dict[int, RewardParts] = {}
    groups: dict[str, list[int]] = {}
    for index, episode in enumerate(episodes):
        groups.setdefault(episode.group, []).append(index)
    for members in groups.values():
        shaped = shape_group(
            [episodes[i].correctness for i in members],
            [episodes[i].num_tool_calls for i in members],
            config.curiosity,
            episodes[members[0]].is_video,
            [episodes[i].last_op_failed for i in members],
        )
        parts.update(zip(members, shaped))
    return [parts[i] for i in range(len(episodes))]


def finished_episodes(bar: tqdm) -> Callable[[int], None]:
    """A `run_episodes` turn callback that moves `bar` to the number of episodes that have ended."""
    return lambda live: bar.update(bar.total - live - bar.n)


class Trainer:
    """SFT warm-start then RL, with metrics, evaluation and resumable checkpoints."""

    def __init__(self, config: TrainConfig) -> None:
        self.config = config
        self.run = Run(config)
        self.device = device_for(config)
        self.train_tasks = make_suite(
            config.suite, size=SUITE_SIZE, seed=config.seed, split="train", **config.suite_kwargs
        )
        self.eval_tasks = make_suite(
            config.suite, size=config.eval_tasks, seed=config.seed, split="test", **config.suite_kwargs
        )

    # ------------------------------------------------------------------------------------------ stages

    def train(self) -> dict[str, Any]:
        self.run.prepare()
        try:
            return self._train()
        finally:
            self.run.close()

    def _train(self) -> dict[str, Any]:
        resume_from = self.run.latest_rl_checkpoint() if self.config.resume else None
        start_model = self._warm_start(resumed=resume_from is not None)
        start = 0
        self.model = load_model(resume_from or start_model, self.device)
        self.trainer = PolicyTrainer(self.model, self.processor, self.config, self._reference(start_model))
        if resume_from is not None:
            state = load_trainer_state(resume_from / "trainer_state.pt")
            self.trainer.load_state_dict(state["trainer"])
            start = state["step"] + 1
            print(f"resuming after RL step {state['step']} from {resume_from}")
        self.run.truncate_log(start)
        self._rl(start)
        records = self.run.records()
        plot_learning_curve(records, self.run.dir / "learning_curve.png", self.config.curiosity_threshold)
        return records[-1] if records else {}

    def _warm_start(self, resumed: bool) -> str | Path:
        """The model RL starts from: `init_from`, or the SFT checkpoint (trained now unless a resume finds it)."""
        if self.config.init_from:
            self.processor = load_processor(self.config.init_from)
            if not resumed:
                self.run.restart_log()
                self._log_eval(load_model(self.config.init_from, self.device), -1)
            return self.config.init_from
        base = base_model_path(self.config)
        self.processor = load_processor(base)
        sft_dir = self.run.checkpoints / "sft"
        if not (self.config.resume and is_complete(sft_dir)):
            self.run.restart_log()
            self._sft(base, sft_dir)
        return sft_dir

    def _sft(self, base: str | Path, sft_dir: Path) -> None:
        torch.manual_seed(self.config.seed)
        model = load_model(base, self.device)
        sft_tasks = make_suite(
            self.config.suite,
            size=self.config.sft_tasks,
            seed=self.config.seed + 1,
            split="train",
            **self.config.suite_kwargs,
        )
        env = make_env(self.config, sft_tasks)
        traces = synthesize(sft_tasks, env, self.config.self_correct_fraction, self.config.seed)
        save_traces(traces, self.run.dir / "traces")
        chats = [t.messages for t in traces]
        for step, losses in enumerate(self._train_sft(model, chats, "SFT")):
            self.run.log({"stage": "sft", "step": step, **losses})
        if self.config.sft_blind_control:  # the same training on flat gray images: what the pixels add
            control = load_model(base, self.device)
            for step, losses in enumerate(self._train_sft(control, [grayed(c) for c in chats], "SFT (blind control)")):
                self.run.log({"stage": "sft_blind", "step": step, **losses})
            del control
        write_checkpoint(sft_dir, lambda folder: self._save_model(model, folder))
        self._log_eval(model, -1)

    def _train_sft(self, model: PreTrainedModel, chats: list[list[dict[str, Any]]], desc: str) -> list[dict[str, Any]]:
        torch.manual_seed(self.config.seed)
        config = self.config
        return train_sft(model, self.processor, chats, config.sft_epochs, config.sft_lr, config.sft_batch_size,
                         config.seed, desc=desc, train_tower=config.train_vision_tower)

    def _reference(self, sft_dir: str | Path) -> PreTrainedModel | None:
        if self.config.kl_coef <= 0:
            return None
        reference = load_model(sft_dir, self.device)
        reference.requires_grad_(False)
        return reference

    def _rl(self, start: int) -> None:
        config = self.config
        agent = rollout_agent(self.model, self.processor, config, self.device)
        envs = [make_env(config, self.train_tasks) for _ in range(config.tasks_per_step * config.group_size)]
        bar = tqdm(range(start, config.rl_steps), desc="RL", initial=start, total=config.rl_steps)
        for step in bar:
            record = self._rl_step(step, agent, envs)
            self.run.log(record)
            bar.set_postfix(
                acc=f"{record['accuracy']:.2f}", rapr=f"{record['rapr']:.2f}", reward=f"{record['reward']:.2f}"
            )
            if (step + 1) % config.eval_every == 0 or step + 1 == config.rl_steps:
                self._log_eval(self.model, step)
            if (step + 1) % config.checkpoint_every == 0 or step + 1 == config.rl_steps:
                self._checkpoint(step)

    def _rl_step(self, step: int, agent: VLMAgent, envs: list[PixelVQAEnv]) -> dict[str, Any]:
        config = self.config
        started = time.perf_counter()
        torch.manual_seed(config.seed * 1_000_003 + step)
        rng = np.random.default_rng([config.seed, step])
        chosen = [self.train_tasks[int(i)] for i in rng.integers(len(self.train_tasks), size=config.tasks_per_step)]
        tasks = [task for task in chosen for _ in range(config.group_size)]
        groups = [f"{step}:{task.id}" for task in tasks]
        stats = run_episodes(agent, envs, tasks, groups, seed=step * len(tasks))
        parts = shape_rewards(stats.episodes, config)
        update_started = time.perf_counter()
        played = [i for i, e in enumerate(stats.episodes) if e.messages]  # an episode that failed at reset has none
        conversations = self.trainer.encode([stats.episodes[i].messages for i in played])
        losses = self.trainer.update(
            Batch(conversations, [parts[i].total for i in played], [groups[i] for i in played])
        )
        wall = time.perf_counter() - started
        return {
            "stage": "rl",
            "step": step,
            **summarize(stats, parts),
            **losses,
            "env_time_share": stats.env_seconds / wall,
            "generation_seconds": stats.generation_seconds,
            "update_seconds": time.perf_counter() - update_started,
            "step_seconds": wall,
        }

    def _log_eval(self, model: PreTrainedModel, step: int) -> None:
        """Evaluate after RL step `step` (-1: before RL), keeping episodes and gallery in episodes/<step_NNNNN>/."""
        folder = self.run.dir / "episodes" / ("before_rl" if step < 0 else f"step_{step:05d}")
        self.run.log({"stage": "eval", "step": step, **self.evaluate(model, folder)})
        if (folder / GALLERY).exists():
            self.run.loggers.log_image("eval", step, "gallery", folder / GALLERY)

    def evaluate(self, model: PreTrainedModel, keep_in: Path | None = None) -> dict[str, float]:
        """Greedy held-out episodes with the tool and without it, beside the blind baseline (`rl_runner.evaluation`);
        with `keep_in`, the episodes with the tool and their gallery are kept there (`evaluation.keep_episodes`)."""
        agent = VLMAgent(
            model, self.processor, max_new_tokens=self.config.max_new_tokens, temperature=0.0, device=self.device
        )
        tasks = list(self.eval_tasks)
        ids = [t.id for t in tasks]
        envs = [make_env(self.config, self.eval_tasks) for _ in tasks]
        with tqdm(total=len(tasks), desc="eval", leave=False) as bar:
            stats = run_episodes(agent, envs, tasks, ids, seed=0, on_turn=finished_episodes(bar))
        episodes = [env._require_episode() for env in envs]
        summary = {**summarize(stats), **looking_metrics(stats, episodes)}
        if keep_in is not None:
            keep_episodes(keep_in, stats, episodes, shape_rewards(stats.episodes, self.config), self.config.suite)
        del envs, episodes  # their images: the tool-disabled pass below builds envs of its own
        with tqdm(total=len(tasks), desc="eval (tool disabled)", leave=False) as bar:
            no_tool = run_episodes(ToolsDisabled(agent), [make_env(self.config, self.eval_tasks) for _ in tasks],
                                   tasks, ids, seed=0, on_turn=finished_episodes(bar))
        summary["no_tool_accuracy"] = summarize(no_tool)["accuracy"]
        summary["blind_accuracy"] = blind_accuracy(tasks, self.config.seed)
        return {f"eval_{key}": value for key, value in summary.items() if key != "tokens_per_s"}

    def _checkpoint(self, step: int) -> None:
        """Model, processor and trainer state of RL step `step`, written atomically (`rl_runner.checkpoints`)."""

        def write(folder: Path) -> None:
            self._save_model(self.model, folder)
            torch.save({"step": step, "trainer": self.trainer.state_dict()}, folder / "trainer_state.pt")

        write_checkpoint(self.run.checkpoints / f"step_{step:05d}", write)

    def _save_model(self, model: PreTrainedModel, folder: Path) -> None:
        model.save_pretrained(folder)
        self.processor.save_pretrained(folder)


def main(argv: list[str] | None = None) -> None:
    try:
        config = load_config(argv)
    except ValueError as error:
        raise SystemExit(f"error: {error}") from None
    if config.threads:
        torch.set_num_threads(config.threads)
    if config.backend == "verl":
        from rl_runner.verl_backend.launch import launch  # verl's trainer stack loads only for this backend

        raise SystemExit(launch(config))
    try:
        final = Trainer(config).train()
    except (RunFolderError, CheckpointError, LoggerError) as error:
        raise SystemExit(f"error: {error}") from None
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in final.items()}))
    print(f"run folder: {config.run_dir} (metrics.jsonl, learning_curve.png, checkpoints/)")


if __name__ == "__main__":
    main()
