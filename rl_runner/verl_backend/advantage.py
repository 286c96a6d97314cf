"""`grpo_curiosity`: GRPO advantages on the curiosity-shaped reward of Pixel Reasoner, as a verl advantage estimator.

verl scores each trajectory alone (correctness, `reward.compute_score`); the curiosity bonus needs the question's
whole group (its exact RaPR) and the op penalty needs each rollout's op count. This estimator receives the group
ids (`index` = uid), shapes every group with `pixel_gym.reward.shape_group` (the function the local trainer and
the env use), and hands the shaped rewards to verl's own `compute_grpo_outcome_advantage`.

Per-sample op counts: verl 0.9.1 passes an estimator only `token_level_rewards`, `response_mask`, `index` and
`config` (`non_tensor_batch` goes to "gdpo" alone). The estimator therefore reads them from a `non_tensor_batch`
argument when a caller gives one, else from `sample_fields(...)`, which the `pixel_gym_sync` trainer
(`rl_runner.verl_backend.trainer`) opens around verl's advantage step with the rollouts' `extra_fields`.
Coefficients come from `algorithm.curiosity` (`CuriosityConfig` fields; paper defaults when absent).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import numpy as np
import torch
from verl.trainer.ppo import core_algos

from pixel_gym.reward import CuriosityConfig, RewardParts, shape_group
from rl_runner.verl_backend.fields import IS_VIDEO, LAST_OP_FAILED, NUM_TOOL_CALLS

ESTIMATOR = "grpo_curiosity"
TRAINER_MODE = "pixel_gym_sync"  # the verl trainer that feeds this estimator (`rl_runner.verl_backend.trainer`)
_FIELDS: ContextVar[Mapping[str, np.ndarray] | None] = ContextVar("pixel_gym_sample_fields", default=None)


@contextmanager
def sample_fields(fields: Mapping[str, np.ndarray]) -> Iterator[None]:
    """Make per-sample columns (`fields.columns`, batch order) visible to the estimator inside the block."""
    token = _FIELDS.set(fields)
    try:
        yield
    finally:
        _FIELDS.reset(token)


def curiosity_config(config: Any) -> CuriosityConfig:
    """`CuriosityConfig` from the `curiosity` entry of verl's algorithm config (absent: the paper's values)."""
    values = config.get("curiosity") if config is not None else None
    return CuriosityConfig(**dict(values)) if values else CuriosityConfig()


@core_algos.register_adv_est(ESTIMATOR)
def compute_grpo_curiosity_advantage(
    token_level_rewards: torch.Tensor,
    response_mask: torch.Tensor,
    index: np.ndarray,
    config: Any = None,
    non_tensor_batch: Mapping[str, np.ndarray] | None = None,
    epsilon: float = 1e-6,
    **kwargs: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(advantages, returns) of GRPO on correctness + curiosity bonus + op penalty, groups given by `index`."""
    fields = non_tensor_batch if non_tensor_batch is not None else _FIELDS.get()
    if fields is None:
        raise RuntimeError(
            f"the {ESTIMATOR!r} estimator needs each rollout's op count: run verl with "
            f"trainer.v1.trainer_mode={TRAINER_MODE} (rl_runner.verl_backend.trainer) or pass non_tensor_batch"
        )
    correctness = token_level_rewards.sum(dim=-1)
    parts = shape_batch(correctness.tolist(), fields, index, curiosity_config(config))
    shaped = torch.tensor([p.total for p in parts], dtype=token_level_rewards.dtype, device=correctness.device)
    rewards = token_level_rewards + _at_last_token(shaped - correctness, response_mask)
    norm_by_std = config.get("norm_adv_by_std_in_grpo", True) if config is not None else True
    return core_algos.compute_grpo_outcome_advantage(rewards, response_mask, index, epsilon, norm_by_std, config)


def shape_batch(correctness: list[float], fields: Mapping[str, np.ndarray], index: np.ndarray,
                config: CuriosityConfig) -> list[RewardParts]:
    """Reward parts of every sample, each group shaped with its own exact RaPR."""
    size = len(correctness)
    n_ops = [int(v) for v in _column(fields, NUM_TOOL_CALLS, 0, size)]  # tool calls, as RaPR counts them
    is_video = [bool(v) for v in _column(fields, IS_VIDEO, False, size)]
    failed = [bool(v) for v in _column(fields, LAST_OP_FAILED, False, size)]
    groups: dict[Any, list[int]] = {}
    for row, uid in enumerate(index):
        groups.setdefault(uid, []).append(row)
    parts: dict[int, RewardParts] = {}
    for rows in groups.values():
        shaped = shape_group([correctness[i] for i in rows], [n_ops[i] for i in rows], config,
                             is_video[rows[0]], [failed[i] for i in rows])
        parts.update(zip(rows, shaped))
    return [parts[row] for row in range(size)]


def _column(fields: Mapping[str, np.ndarray], key: str, default: Any, size: int) -> list[Any]:
    """A column, or `default` for every row when no rollout reported it (no pixel-gym episode: no ops)."""
    values = fields.get(key)
    if values is None:
        return [default] * size
    if len(values) != size:
        raise ValueError(f"{key} has {len(values)} values for a batch of {size}")
    return [default if value is None else value for value in values]


def _at_last_token(values: torch.Tensor, response_mask: torch.Tensor) -> torch.Tensor:
    """A token-level tensor holding `values[i]` at row i's last response token (where verl puts the score)."""
    mask = response_mask.to(torch.long)
    last = (mask.cumsum(dim=-1) == mask.sum(dim=-1, keepdim=True)).to(torch.long).argmax(dim=-1)
    placed = torch.zeros(response_mask.shape, dtype=values.dtype, device=values.device)
    placed[torch.arange(len(values), device=values.device), last] = values
    return placed
