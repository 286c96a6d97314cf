"""verl trainer configurations for a `TrainConfig`: values, the YAML file, validation against verl's own config.

RL: the values are written as a hydra primary config that extends verl's `ppo_trainer` (searchpath
`pkg://verl.trainer.config`), so `python -m verl.trainer.main_ppo --config-path DIR --config-name NAME` runs it
and users can edit one readable file. `validate` composes it with hydra exactly as verl's entry point does,
refuses keys that verl's config does not have (except the two this backend adds), and runs verl's
`validate_config` (batch sizes against GPUs, micro-batch settings, ...), so mistakes surface before a cluster.
SFT: command-line overrides for `verl.trainer.sft_trainer`, composed against `sft_trainer_engine` the same way.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import verl
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, MissingMandatoryValue, OmegaConf
from verl.trainer.ppo.utils import need_critic, need_reference_policy
from verl.utils.config import validate_config

from pixel_gym.actions import MAX_TEXT_ACTION
from rl_runner.config import TrainConfig, field_default
from rl_runner.verl_backend import reward, tool_agent
from rl_runner.verl_backend.advantage import ESTIMATOR, TRAINER_MODE
from rl_runner.verl_backend.data import TOOL_AGENT, PreparedData
from rl_runner.verl_backend.settings import VerlSettings

PLUGIN_MODULE = "rl_runner.verl_backend.plugin"
TINY_MODELS = ("tiny", "tiny-random")
PRETRAINED_SFT_LR = 1e-5  # the SFT rate of a pretrained VLM when --sft-lr is left at the tiny model's default
MAX_PRETRAINED_SFT_LR = 1e-4
SAMPLER_PATH = Path(__file__).resolve().with_name("sampler.py")  # not imported here: it needs transfer_queue
SAMPLER_NAME = "GroupFilterReplayBuffer"
DATASET_PATH = Path(__file__).resolve().with_name("dataset.py")
DATASET_NAME = "PixelGymDataset"
# TrainConfig fields that mean nothing to verl's trainer, and why (the dry run lists them); every other field is
# written into the verl config, the data or the SFT command (`rl_values`, `sft_overrides`, `launch.plan_run`).
NO_VERL_MEANING = {
    "backend": "selects this backend",
    "device": "verl places its workers on the cluster's GPUs",
    "threads": "torch CPU threads of the local trainer",
    "sft_blind_control": "a diagnostic of the local trainer's SFT",
    "value_lr": "the local PPO critic; the verl backend trains GRPO",
    "max_new_tokens": "the local per-turn cap; in verl every turn draws on --response-length",
    "overwrite": "the local run folder's guard; verl writes checkpoints under trainer.default_local_dir",
    "logger": "the local trainer's sinks; verl logs through trainer.logger (an --verl-override)",
}
TOOL_AGENT_NO_MEANING = {"later_temperature": "verl's tool_agent loop samples every turn alike"}
_TRAIN_DEFAULTS = {item.name: field_default(item) for item in dataclasses.fields(TrainConfig)}
VERL_CONFIG_DIR = Path(verl.__file__).parent / "trainer" / "config"
PROJECT_ROOT = Path(__file__).resolve().parents[2]
_ABSENT = object()
NEW_KEYS = ("algorithm.curiosity", "ray_kwargs.ray_init.runtime_env.env_vars")  # not in verl's schema


def rl_values(config: TrainConfig, settings: VerlSettings, data: PreparedData, model_path: str) -> dict[str, Any]:
    """GRPO with the curiosity estimator on Qwen2.5-VL-style models, multi-turn, as dotted keys of verl's config."""
    micro = config.micro_batch_size
    values: dict[str, Any] = {
        "algorithm.adv_estimator": ESTIMATOR,
        "algorithm.norm_adv_by_std_in_grpo": config.norm_adv_by_std,
        "algorithm.use_kl_in_reward": False,
        "algorithm.curiosity": {
            "alpha": config.curiosity_alpha, "beta": config.curiosity_beta,
            "threshold": config.curiosity_threshold, "free_ops": config.curiosity_free_ops,
            "form": config.curiosity_form,
        },
        "data.train_files": str(data.train),
        "data.val_files": str(data.val),
        "data.train_batch_size": config.tasks_per_step,
        "data.max_prompt_length": settings.prompt_length,
        "data.max_response_length": settings.response_length,
        "data.filter_overlong_prompts": True,
        "data.seed": config.seed,
        "data.custom_cls.path": str(DATASET_PATH),
        "data.custom_cls.name": DATASET_NAME,
        "actor_rollout_ref.model.path": model_path,
        "actor_rollout_ref.actor.optim.lr": config.rl_lr,
        "actor_rollout_ref.actor.freeze_vision_tower": not config.train_vision_tower,
        "actor_rollout_ref.actor.ppo_mini_batch_size": config.tasks_per_step,
        "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu": micro,
        "actor_rollout_ref.actor.ppo_epochs": config.ppo_epochs,
        "actor_rollout_ref.actor.clip_ratio_low": config.clip_ratio_low,
        "actor_rollout_ref.actor.clip_ratio_high": config.clip_ratio_high,
        "actor_rollout_ref.actor.loss_agg_mode": "token-mean",
        "actor_rollout_ref.actor.entropy_coeff": 0.0,
        "actor_rollout_ref.actor.use_kl_loss": config.kl_coef > 0,
        "actor_rollout_ref.actor.kl_loss_coef": config.kl_coef,
        "actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu": micro,
        "actor_rollout_ref.rollout.name": settings.rollout_engine,
        "actor_rollout_ref.rollout.n": config.group_size,
        "actor_rollout_ref.rollout.temperature": config.temperature,
        "actor_rollout_ref.rollout.top_p": config.top_p,
        "actor_rollout_ref.rollout.top_k": config.top_k or -1,  # verl's "no cut" is -1
        "actor_rollout_ref.rollout.tensor_model_parallel_size": settings.tensor_parallel_size,
        "actor_rollout_ref.rollout.gpu_memory_utilization": settings.gpu_memory_utilization,
        "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu": micro,
        "actor_rollout_ref.rollout.multi_turn.enable": True,
        "actor_rollout_ref.rollout.multi_turn.max_assistant_turns": config.max_turns,
        "actor_rollout_ref.rollout.agent.default_agent_loop": settings.agent,
        "actor_rollout_ref.rollout.agent.agent_loop_config_path": str(data.agent_loop_config),
        "reward.custom_reward_function.path": str(Path(reward.__file__).resolve()),
        "reward.custom_reward_function.name": reward.compute_score.__name__,
        "trainer.v1.trainer_mode": TRAINER_MODE,
        "trainer.nnodes": settings.nnodes,
        "trainer.n_gpus_per_node": settings.gpus_per_node,
        "trainer.total_epochs": 1,
        "trainer.total_training_steps": config.rl_steps,
        "trainer.test_freq": config.eval_every,
        "trainer.save_freq": config.checkpoint_every,
        "trainer.project_name": "pixel-gym",
        "trainer.experiment_name": config.name,
        "trainer.default_local_dir": str((config.run_dir / "verl_checkpoints").resolve()),
        "trainer.resume_mode": "auto" if config.resume else "disable",
        "trainer.logger": ["console"],
        "ray_kwargs.ray_init.runtime_env.env_vars": worker_env(),
    }
    if config.filter_uniform_groups:  # the local trainer's group filter, on the shaped rewards
        values["trainer.v1.sampler.custom_sampler.path"] = str(SAMPLER_PATH)
        values["trainer.v1.sampler.custom_sampler.name"] = SAMPLER_NAME
        values["trainer.v1.sampler.sampler_kwargs"] = {
            "group_filter_threshold": config.group_filter_threshold, "curiosity": dict(values["algorithm.curiosity"]),
            "train_batch_size": config.tasks_per_step,
        }
    if settings.agent == TOOL_AGENT:  # verl's tool loop, rendering and parsing turns as the env does
        values["actor_rollout_ref.rollout.multi_turn.tool_config_path"] = str(data.tool_config)
        values["actor_rollout_ref.rollout.multi_turn.format"] = tool_agent.PARSER
        values["actor_rollout_ref.rollout.multi_turn.max_tool_response_length"] = MAX_TEXT_ACTION
        values["actor_rollout_ref.model.custom_chat_template"] = tool_agent.TEMPLATE
    return values


def sft_settings(config: TrainConfig, settings: VerlSettings) -> tuple[int, float]:
    """(global batch size, learning rate) of the SFT warm start. The batch is `sft_batch_size` rounded up to a
    multiple of the GPUs (verl splits it evenly over them); the rate is `sft_lr` for the tiny models and for a value
    set on purpose, else `PRETRAINED_SFT_LR` (the default 2e-3 is the tiny model's, not a pretrained one's)."""
    gpus = settings.nnodes * settings.gpus_per_node
    batch = -(-config.sft_batch_size // gpus) * gpus
    lr = config.sft_lr
    if config.model not in TINY_MODELS and lr == _TRAIN_DEFAULTS["sft_lr"]:
        lr = PRETRAINED_SFT_LR
    return batch, lr


def check_sft(config: TrainConfig, settings: VerlSettings, batch: int, lr: float) -> None:
    """Refuse SFT settings verl's sft_trainer would fail on or that would wreck a pretrained model."""
    gpus = settings.nnodes * settings.gpus_per_node
    if batch % gpus or batch < gpus:
        raise ValueError(f"SFT data.train_batch_size={batch} must be a positive multiple of the {gpus} GPUs")
    if config.sft_tasks < batch:
        raise ValueError(f"sft_tasks={config.sft_tasks} traces make no full SFT batch of {batch} (verl drops it)")
    if config.model not in TINY_MODELS and lr > MAX_PRETRAINED_SFT_LR:
        raise ValueError(f"SFT optim.lr={lr} on the pretrained model {config.model}: above {MAX_PRETRAINED_SFT_LR} "
                         "it destroys the model; pass --sft-lr (e.g. 1e-5)")


def sft_overrides(config: TrainConfig, settings: VerlSettings, data: PreparedData, model_path: str) -> list[str]:
    """Command-line overrides for `verl.trainer.sft_trainer` on the synthesized traces (warm start)."""
    batch, lr = sft_settings(config, settings)
    check_sft(config, settings, batch, lr)
    max_length = settings.prompt_length + settings.response_length
    return [
        f"data.train_files={data.sft}",
        "data.messages_key=messages",
        f"data.max_length={max_length}",
        f"data.max_token_len_per_gpu={max_length}",
        f"data.train_batch_size={batch}",
        f"model.path={model_path}",
        f"optim.lr={lr}",
        f"trainer.total_epochs={config.sft_epochs}",
        "trainer.project_name=pixel-gym-sft",
        f"trainer.experiment_name={config.name}",
        f"trainer.default_local_dir={(config.run_dir / 'sft_checkpoints').resolve()}",
        "trainer.logger=[console]",
        f"trainer.nnodes={settings.nnodes}",
        f"trainer.n_gpus_per_node={settings.gpus_per_node}",
    ]


def unmapped_fields(settings: VerlSettings) -> dict[str, str]:
    """The TrainConfig fields this run's verl trainer does not see, with the reason."""
    return {**NO_VERL_MEANING, **(TOOL_AGENT_NO_MEANING if settings.agent == TOOL_AGENT else {})}


def worker_env() -> dict[str, str]:
    """Environment every Ray worker needs: our registrations, and this project importable."""
    entries = [str(PROJECT_ROOT), *os.environ.get("PYTHONPATH", "").split(os.pathsep)]
    path = os.pathsep.join(dict.fromkeys(entry for entry in entries if entry))
    return {"VERL_USE_EXTERNAL_MODULES": PLUGIN_MODULE, "PYTHONPATH": path}


def write_rl_config(values: dict[str, Any], path: str | Path) -> Path:
    """A hydra primary config extending verl's `ppo_trainer` with `values`."""
    tree: dict[str, Any] = {"hydra": {"searchpath": ["pkg://verl.trainer.config"]},
                            "defaults": ["ppo_trainer", "_self_"]}
    for key, value in values.items():
        *parents, leaf = key.split(".")
        node = tree
        for name in parents:
            node = node.setdefault(name, {})
        node[leaf] = value
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(tree, sort_keys=False, width=120))
    return path


def validate(path: str | Path, values: dict[str, Any], overrides: list[str] | None = None) -> DictConfig:
    """Compose the written config as `verl.trainer.main_ppo` would, check its keys and run verl's checks."""
    path = Path(path).resolve()
    base = compose_config(VERL_CONFIG_DIR, "ppo_trainer", [])
    unknown = [key for key in values if not key.startswith(NEW_KEYS) and not _has_key(base, key)]
    if unknown:
        raise ValueError(f"keys not in verl's ppo_trainer config: {unknown}")
    config = compose_config(path.parent, path.stem, overrides or [])
    validate_config(config, use_reference_policy=need_reference_policy(config), use_critic=need_critic(config))
    return config


def validate_sft(overrides: list[str]) -> DictConfig:
    """Compose `verl.trainer.sft_trainer`'s config with `overrides` (unknown keys fail, as on its command line)."""
    return compose_config(VERL_CONFIG_DIR, "sft_trainer_engine", overrides)


def _has_key(config: DictConfig, key: str) -> bool:
    try:
        return OmegaConf.select(config, key, default=_ABSENT, throw_on_missing=True) is not _ABSENT
    except MissingMandatoryValue:  # declared with "???": present, to be set
        return True


def compose_config(config_dir: Path, name: str, overrides: list[str]) -> DictConfig:
    with initialize_config_dir(config_dir=str(config_dir), version_base=None):
        return compose(config_name=name, overrides=overrides)
