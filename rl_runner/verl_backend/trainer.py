"""`pixel_gym_sync`: verl's synchronous v1 PPO trainer that lets `grpo_curiosity` see each rollout's op count.

verl's v1 trainer computes advantages from `uid`, `rm_scores` and masks fetched from its TransferQueue; the
agent loop's `extra_fields` (where `PixelGymAgentLoop` reports ops, failures and video flags) stay behind. This
trainer fetches them for the same keys, in the same order, and opens `advantage.sample_fields` around verl's own
advantage step, and logs the batch's pixel-op statistics. Select it with `trainer.v1.trainer_mode=pixel_gym_sync`;
it then behaves as verl's "sync" mode in every other respect.
Importing this module needs the `transfer_queue` package (as verl's v1 trainer does).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import transfer_queue as tq
from omegaconf import DictConfig
from verl.trainer.ppo.v1 import PPOTrainerSync, register_trainer

from rl_runner.verl_backend.advantage import TRAINER_MODE, sample_fields
from rl_runner.verl_backend.fields import NUM_TOOL_CALLS, columns

SYNC_MODE = "sync"


@register_trainer(TRAINER_MODE)
class PixelGymSyncTrainer(PPOTrainerSync):
    def __init__(self, config: DictConfig) -> None:
        config.trainer.v1.trainer_mode = SYNC_MODE  # verl's trainer picks its sync code paths by this name
        super().__init__(config)

    def _compute_advantage(self, batch: Any, metrics: dict) -> Any:
        data = tq.kv_batch_get(keys=batch.keys, partition_id=batch.partition_id, select_fields=["extra_fields"])
        fields = columns(data.pop("extra_fields").tolist())
        calls = np.array([value or 0 for value in fields[NUM_TOOL_CALLS]], dtype=float)
        metrics.update({"pixel_gym/tool_calls_per_rollout": float(calls.mean()),
                        "pixel_gym/rapr": float((calls > 0).mean())})
        with sample_fields(fields):
            return super()._compute_advantage(batch, metrics)
