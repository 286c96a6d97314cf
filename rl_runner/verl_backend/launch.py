"""`launch`: `python -m rl_runner.train --backend verl` -- data, configs, validation, then verl's trainer.

A run folder gets `verl_data/` (train/val RL parquet, SFT parquet, tool and agent-loop YAMLs) and
`verl/pixel_gym_grpo.yaml` (the trainer config). Both trainer configs are composed and checked against verl's
own config before anything starts. RL then runs `python -m verl.trainer.main_ppo` on the Ray cluster; the SFT
warm start is printed as a `torchrun -m verl.trainer.sft_trainer` command (its FSDP checkpoint is merged to a
Hugging Face folder with `python -m verl.model_merger` and passed back as `--model`).
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from pixel_gym.ops import DEFAULT_OPS
from rl_runner.config import TrainConfig
from rl_runner.train import base_model_path
from rl_runner.verl_backend.data import DRY_RUN_ROWS, PreparedData, SuiteData, dry_run_sample, prepare
from rl_runner.verl_backend.settings import VerlSettings
from rl_runner.verl_backend.specs import EnvSettings
from rl_runner.verl_backend.trainer_config import (
    rl_values,
    sft_overrides,
    unmapped_fields,
    validate,
    validate_sft,
    worker_env,
    write_rl_config,
)

RL_CONFIG_NAME = "pixel_gym_grpo"


@dataclass(frozen=True)
class RunPlan:
    data: PreparedData
    rl_config: Path
    rl_command: list[str]
    sft_command: list[str]
    unmapped: dict[str, str]  # TrainConfig fields verl does not see, and why
    dry_run: bool = False

    def describe(self) -> str:
        sample = f" (dry run: at most {DRY_RUN_ROWS} rows per file)" if self.dry_run else ""
        return "\n".join([
            f"data: {self.data.train.parent}{sample}",
            "not used by verl: " + "; ".join(f"{name} ({why})" for name, why in self.unmapped.items()),
            f"trainer config: {self.rl_config}",
            "SFT warm start (optional): " + shlex.join(self.sft_command),
            "RL: " + shlex.join(self.rl_command),
        ])


def launch(config: TrainConfig, settings: VerlSettings | None = None) -> int:
    """Prepare and validate a verl run for `config`, then run verl's PPO trainer; returns its exit status."""
    settings = settings or VerlSettings.from_config(config)
    plan = plan_run(config, settings)
    print(plan.describe())
    if settings.dry_run:
        return 0
    return subprocess.call(plan.rl_command, env={**os.environ, **worker_env()})


def plan_run(config: TrainConfig, settings: VerlSettings) -> RunPlan:
    """Write the data and the trainer configs of a run and validate them against verl's config."""
    if config.algorithm != "grpo":
        raise ValueError("the verl backend trains GRPO with the grpo_curiosity estimator; use --backend local for PPO")
    if config.rl_steps < 1:
        raise ValueError("the verl backend needs rl_steps >= 1")
    run_dir = config.run_dir.resolve()
    model_path = str(base_model_path(config))
    suite_data = SuiteData(config.suite, dict(config.suite_kwargs), train_size=config.rl_steps * config.tasks_per_step,
                           val_size=config.eval_tasks, sft_size=config.sft_tasks, seed=config.seed,
                           self_correct_fraction=config.self_correct_fraction)
    later = None if config.later_temperature == -1 else config.later_temperature
    env = EnvSettings(budgets=config.budgets, max_turns=config.max_turns, ops=config.op_names or DEFAULT_OPS)
    data = prepare(run_dir / "verl_data", dry_run_sample(suite_data) if settings.dry_run else suite_data, env,
                   settings.agent, later_temperature=later)
    values = rl_values(config, settings, data, config.init_from or model_path)  # --init-from: RL starts there
    rl_config = write_rl_config(values, run_dir / "verl" / f"{RL_CONFIG_NAME}.yaml")
    validate(rl_config, values, list(settings.extra_overrides))
    sft = sft_overrides(config, settings, data, model_path)
    validate_sft(sft)
    rl_command = [sys.executable, "-m", "verl.trainer.main_ppo", f"--config-path={rl_config.parent}",
                  f"--config-name={RL_CONFIG_NAME}", *settings.extra_overrides]
    sft_command = ["torchrun", "--standalone", f"--nproc_per_node={settings.gpus_per_node}",
                   "-m", "verl.trainer.sft_trainer", *sft]
    return RunPlan(data, rl_config, rl_command, sft_command, unmapped_fields(settings), settings.dry_run)

