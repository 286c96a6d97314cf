"""Parquet files in the layouts verl reads, rendered by the env itself.

RL rows (`verl.utils.dataset.RLHFDataset`): `prompt` (chat with `<image>` placeholders), `images` (PNG bytes),
`data_source`, `ability`, `reward_model` {style, ground_truth}, `extra_info` {index, task, env, tools_kwargs,
...} and `agent_name`. The prompt is what `PixelVQAEnv.reset` shows, the env's tool system prompt included, for
both loops (verl's `tool_agent` renders it through `tool_agent.TEMPLATE`, which then ignores verl's schemas).

SFT rows (`verl.utils.dataset.multiturn_sft_dataset.MultiTurnSFTDataset`): `messages` and `images` of the traces
of `rl_runner.traces.synthesize`. The tool schemas are already in the system message, exactly as in RL, so there
is no `tools` column (a tool-aware template would render them twice).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from pixel_gym.suites import make_suite
from pixel_gym.tasks import Task
from rl_runner.traces import Trace, synthesize
from rl_runner.verl_backend.agent_loop import AGENT_NAME, PixelGymAgentLoop
from rl_runner.verl_backend.messages import placeholder_messages
from rl_runner.verl_backend.specs import EnvSettings, embedded_task_spec, ground_truth, make_env, suite_task_spec
from rl_runner.verl_backend.tools import tool_config

TOOL_AGENT = "tool_agent"  # verl's stock tool-calling loop
ABILITY = "pixel_reasoning"


@dataclass(frozen=True)
class SuiteData:
    """Which built-in suite to write, and how many tasks per file."""

    suite: str = "fine_detail"
    suite_kwargs: dict[str, Any] | None = None
    train_size: int = 1024
    val_size: int = 64
    sft_size: int = 256
    seed: int = 0
    self_correct_fraction: float = 0.3


DRY_RUN_ROWS = 4  # rows per file a dry run writes: every check runs on them, the full data waits for the run


def dry_run_sample(data: SuiteData) -> SuiteData:
    """`data` cut to at most `DRY_RUN_ROWS` tasks per file."""
    return dataclasses.replace(data, train_size=min(data.train_size, DRY_RUN_ROWS),
                               val_size=min(data.val_size, DRY_RUN_ROWS), sft_size=min(data.sft_size, DRY_RUN_ROWS))


@dataclass(frozen=True)
class PreparedData:
    train: Path
    val: Path
    sft: Path
    tool_config: Path
    agent_loop_config: Path


def suite_specs(name: str, size: int, seed: int, split: str, kwargs: dict[str, Any]) -> list[tuple[Task, str]]:
    """The tasks of a built-in suite with the specs that let a worker regenerate them."""
    suite = make_suite(name, size=size, seed=seed, split=split, **kwargs)
    return [(suite[i], suite_task_spec(suite, i, kwargs)) for i in range(size)]


def embedded_specs(tasks: Sequence[Task]) -> list[tuple[Task, str]]:
    """Any tasks, each carried whole in its spec."""
    return [(task, embedded_task_spec(task)) for task in tasks]


def rl_rows(items: Sequence[tuple[Task, str]], settings: EnvSettings, data_source: str,
            agent_name: str = AGENT_NAME) -> list[dict[str, Any]]:
    """One RL row per (task, spec); the prompt is the env's reset view of the task."""
    if agent_name not in (AGENT_NAME, TOOL_AGENT):
        raise ValueError(f"agent_name must be {AGENT_NAME!r} or {TOOL_AGENT!r}, got {agent_name!r}")
    env_json = settings.to_json()
    rows = []
    for index, (task, spec) in enumerate(items):
        observation, _ = make_env(settings, task).reset(options={"task": task})
        prompt, images = placeholder_messages(observation["messages"])
        create = {"create_kwargs": {"task": spec, "env": env_json}}
        rows.append({
            "data_source": data_source,
            "agent_name": agent_name,
            "prompt": prompt,
            "images": images,
            "ability": ABILITY,
            "reward_model": {"style": "rule", "ground_truth": ground_truth(task)},
            "extra_info": {
                "index": index, "task_id": task.id, "task": spec, "env": env_json,
                "tools_kwargs": {op: create for op in settings.ops},
            },
        })
    return rows


def sft_rows(traces: Sequence[Trace]) -> list[dict[str, Any]]:
    """One multi-turn SFT row per trace (assistant turns are the loss targets)."""
    rows = []
    for trace in traces:
        messages, images = placeholder_messages(trace.messages)
        rows.append({"messages": messages, "images": images, "task_id": trace.task_id, "kind": trace.kind})
    return rows


def agent_loop_config(later_temperature: float | None = None) -> list[dict[str, Any]]:
    """The content of verl's `agent.agent_loop_config_path` YAML: registers the loop in every worker, with its
    constructor arguments (the temperature of the turns after the first)."""
    target = f"{PixelGymAgentLoop.__module__}.{PixelGymAgentLoop.__qualname__}"
    return [{"name": AGENT_NAME, "_target_": target, "later_temperature": later_temperature}]


def write_parquet(rows: Sequence[dict[str, Any]], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(list(rows)).to_parquet(path, index=False)
    return path


def write_yaml(content: Any, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(content, sort_keys=False))
    return path


def prepare(out_dir: str | Path, data: SuiteData, settings: EnvSettings, agent_name: str = AGENT_NAME,
            progress: bool = False, later_temperature: float | None = None) -> PreparedData:
    """Write train/val RL parquet (train/test splits), SFT traces and the tool / agent-loop YAMLs to `out_dir`."""
    out = Path(out_dir)
    kwargs = data.suite_kwargs or {}
    source = f"pixel_gym/{data.suite}"
    train = suite_specs(data.suite, data.train_size, data.seed, "train", kwargs)
    val = suite_specs(data.suite, data.val_size, data.seed, "test", kwargs)
    sft_tasks = make_suite(data.suite, size=data.sft_size, seed=data.seed + 1, split="train", **kwargs)
    traces = synthesize(sft_tasks, make_env(settings, sft_tasks[0]), data.self_correct_fraction, data.seed,
                        progress=progress) if data.sft_size else []
    return PreparedData(
        train=write_parquet(rl_rows(train, settings, source, agent_name), out / "train.parquet"),
        val=write_parquet(rl_rows(val, settings, source, agent_name), out / "val.parquet"),
        sft=write_parquet(sft_rows(traces), out / "sft.parquet"),
        tool_config=write_yaml(tool_config(settings.ops), out / "tool_config.yaml"),
        agent_loop_config=write_yaml(agent_loop_config(later_temperature), out / "agent_loop.yaml"),
    )
