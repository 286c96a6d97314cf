"""Training configuration: embedded defaults, a named preset (`rl_runner.presets`), a YAML file, and command-line
flags (in that order of precedence)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pixel_gym.ops import resolve_ops
from pixel_gym.reward import CuriosityConfig
from rl_runner.loggers import logger_names
from rl_runner.presets import PRESETS, preset_values
from rl_runner.run_dir import check_run_name

AT_LEAST_ONE = (
    "tasks_per_step", "group_size", "max_turns", "micro_batch_size", "eval_every", "checkpoint_every", "sft_tasks",
    "sft_batch_size", "eval_tasks", "ppo_epochs", "max_new_tokens",
)
NON_NEGATIVE = (
    "temperature", "sft_lr", "rl_lr", "value_lr", "kl_coef", "clip_ratio_low", "clip_ratio_high", "curiosity_alpha",
    "curiosity_beta", "top_k", "group_filter_threshold",
)
FRACTIONS = ("self_correct_fraction", "curiosity_threshold", "gpu_memory_utilization", "top_p")

# The embedded defaults: fine-detail attribute questions whose tags show their colour in the global view but not
# their symbol (2-pixel glyph cells on 1400-1800 px images: under 0.5 px in the compact view, 1.4 px or more in a
# crop of at most 0.3 of the image's side); tests/test_suites.py checks that the zoom is needed. Fewer tags and
# less clutter than the suite's defaults, and random wrong options: a from-scratch model can learn to find and read.
DEFAULT_SUITE_KWARGS: dict[str, Any] = {
    "image_size": (1400, 1800), "categories": ("attribute",), "num_tags": (8, 16), "num_colored": (3, 6),
    "clutter": (20, 40), "distractors": "random", "frame": 6,
}
DEFAULT_BUDGETS = "compact"


@dataclass
class TrainConfig:
    """Everything `python -m rl_runner.train` needs; each field is also a `--flag` (underscores as dashes)."""

    name: str = "default"
    out_dir: str = "runs"
    seed: int = 0
    backend: str = "local"  # "local" or "verl"
    # "tiny": the project's pretrained base (`rl_runner.pretrain`, built once and cached under <out_dir>/.tiny-models);
    # "tiny-random": the same family with random weights (tests, smoke runs); or any Qwen2.5-VL hub id / local path
    model: str = "tiny"
    init_from: str = ""  # skip SFT and start RL from this checkpoint (path or hub id), e.g. a released warm-start
    device: str = "auto"
    threads: int = 0  # torch CPU threads; 0 = leave torch's default
    # tasks
    suite: str = "fine_detail"
    suite_kwargs: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_SUITE_KWARGS))
    budgets: str = DEFAULT_BUDGETS
    max_turns: int = 4
    # SFT warm-start
    sft_tasks: int = 128
    self_correct_fraction: float = 0.3
    sft_epochs: int = 2
    sft_lr: float = 2e-3
    sft_batch_size: int = 4
    train_vision_tower: bool = False  # SFT and RL also train the vision tower (default: it stays as pretrained;
    # verl: actor.freeze_vision_tower in RL, its SFT trainer has no such switch and trains the whole model)
    sft_blind_control: bool = True  # also train a copy on flat gray images: the control of the loss diagnostics
    # RL
    algorithm: str = "grpo"  # "grpo" or "ppo"
    rl_steps: int = 12
    tasks_per_step: int = 4
    group_size: int = 4
    max_new_tokens: int = 128
    temperature: float = 1.0  # sampling temperature of the first turn of each episode
    later_temperature: float = -1.0  # of the turns after it; -1: the same as temperature
    top_p: float = 1.0
    top_k: int = 0  # 0: no top-k cut
    rl_lr: float = 5e-4
    ppo_epochs: int = 1
    micro_batch_size: int = 4
    clip_ratio_low: float = 0.2  # the paper's asymmetric PPO clip
    clip_ratio_high: float = 0.35
    kl_coef: float = 0.0
    norm_adv_by_std: bool = False  # the paper subtracts the group mean only
    filter_uniform_groups: bool = True  # drop groups whose rewards are all equal (the paper does)
    group_filter_threshold: float = 0.0  # also drop groups whose mean |r - mean| is under this (the paper: 0.01)
    value_lr: float = 1e-3  # PPO critic
    curiosity_alpha: float = 0.5
    curiosity_beta: float = 0.05
    curiosity_threshold: float = 0.3
    curiosity_free_ops: int = 1
    curiosity_form: str = "paper"
    # evaluation and checkpoints
    eval_tasks: int = 200
    eval_every: int = 12
    checkpoint_every: int = 6
    resume: bool = False
    overwrite: bool = False  # replace an existing run folder of the same name (only one a run of this trainer made)
    ops: str = ""  # comma list of registered pixel operations the envs offer (pixel_gym.ops); "": the released two
    logger: str = "jsonl"  # comma list of rl_runner.loggers sinks: console, jsonl (always on), tensorboard, wandb
    # the verl backend (`--backend verl`, see rl_runner.verl_backend.settings.VerlSettings)
    nnodes: int = 1
    gpus_per_node: int = 8
    rollout_engine: str = "vllm"  # "vllm" or "sglang"
    tensor_parallel_size: int = 1
    gpu_memory_utilization: float = 0.6
    prompt_length: int = 4096
    response_length: int = 8192
    agent: str = "pixel_gym_agent"  # or verl's stock "tool_agent"
    dry_run: bool = False  # write and validate the data and config, print the commands, launch nothing
    extra_overrides: list[str] = field(default_factory=list)  # more hydra overrides for verl's trainer

    @property
    def run_dir(self) -> Path:
        return Path(self.out_dir) / self.name

    @property
    def curiosity(self) -> CuriosityConfig:
        return CuriosityConfig(
            self.curiosity_alpha, self.curiosity_beta, self.curiosity_threshold, self.curiosity_free_ops,
            self.curiosity_form,  # type: ignore[arg-type]
        )

    def validate(self) -> TrainConfig:
        """Check every field; raises ValueError naming the field and the bad value."""
        self._check_types()
        check_run_name(self.name)
        if self.resume and self.overwrite:
            raise ValueError("--resume continues a run folder and --overwrite replaces it: pass one of them")
        if self.backend not in ("local", "verl"):
            raise ValueError(f"backend must be 'local' or 'verl', got {self.backend!r}")
        if self.algorithm not in ("grpo", "ppo"):
            raise ValueError(f"algorithm must be 'grpo' or 'ppo', got {self.algorithm!r}")
        if self.group_size < 2 and self.algorithm == "grpo":
            raise ValueError("GRPO needs group_size >= 2")
        for name in AT_LEAST_ONE:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("rl_steps", "sft_epochs", "threads"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in NON_NEGATIVE:
            if not 0 <= getattr(self, name) < math.inf:
                raise ValueError(f"{name} must be a finite number >= 0, got {getattr(self, name)}")
        for name in FRACTIONS:
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        for name in ("model", "init_from"):
            check_model_path("--" + name.replace("_", "-"), getattr(self, name))
        if self.later_temperature != -1 and not 0 <= self.later_temperature < math.inf:
            raise ValueError(f"later_temperature must be -1 (as temperature) or >= 0, got {self.later_temperature}")
        logger_names(self.logger)
        try:
            resolve_ops(self.op_names)
        except (KeyError, ValueError) as error:
            raise ValueError(f"ops: {error}") from None
        self.curiosity  # noqa: B018  (validates the shaping form)
        return self

    def _check_types(self) -> None:
        """Each field holds its default's type (an int is taken for a float), so a YAML slip names its key."""
        for item in dataclasses.fields(self):
            value, expected = getattr(self, item.name), type(field_default(item))
            if expected is float and type(value) is int:
                setattr(self, item.name, float(value))
            elif not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
                raise ValueError(f"{item.name} must be of type {expected.__name__}, got {value!r}")

    @property
    def op_names(self) -> tuple[str, ...] | None:
        """`ops` as names (None: the env's default)."""
        return tuple(name.strip() for name in self.ops.split(",")) if self.ops.strip() else None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m rl_runner.train",
        description="SFT warm-start then GRPO/PPO with the curiosity bonus, on pixel-gym environments.",
    )
    parser.add_argument("--config", help="YAML file of TrainConfig fields (flags override it)")
    parser.add_argument("--preset", choices=sorted(PRESETS), help="named field values (rl_runner.presets) under the "
                        "YAML file and the flags")
    for item in dataclasses.fields(TrainConfig):
        flag = "--" + item.name.replace("_", "-")
        default = field_default(item)
        if isinstance(default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None)
        elif isinstance(default, (dict, list)):
            parser.add_argument(flag, type=json.loads, default=None, help=f"JSON {type(default).__name__}")
        else:
            parser.add_argument(flag, type=type(default), default=None)
    return parser


def field_default(item: dataclasses.Field) -> Any:
    return item.default if item.default is not dataclasses.MISSING else item.default_factory()  # type: ignore[misc]


def check_model_path(flag: str, value: str) -> None:
    """A value written as a path (starting with '/', '.' or '~', with more than one '/', or inside an existing local
    folder) must be a folder; a hub id ("Org/Name") is left to the hub."""
    looks_local = value.startswith(("/", ".", "~")) or value.count("/") > 1 or (
        "/" in value and Path(value).parent.is_dir()
    )
    if value and looks_local and not Path(value).expanduser().is_dir():
        raise ValueError(f"{flag} {value}: no such model directory")


def load_config(argv: list[str] | None = None) -> TrainConfig:
    """Defaults, then the preset, then the YAML file, then explicit flags."""
    args = vars(build_parser().parse_args(argv))
    config_path, preset = args.pop("config"), args.pop("preset")
    values: dict[str, Any] = preset_values(preset) if preset else {}
    values.update(read_yaml(config_path) if config_path else {})
    values.update({key: value for key, value in args.items() if value is not None})
    known = {item.name for item in dataclasses.fields(TrainConfig)}
    unknown = set(values) - known
    if unknown:
        raise ValueError(f"unknown config keys: {sorted(unknown)}")
    return TrainConfig(**values).validate()


def read_yaml(path: str | Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise ValueError(f"cannot read config file {path}: {error}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a config file must hold a mapping of TrainConfig fields")
    return data


def save_config(config: TrainConfig, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
