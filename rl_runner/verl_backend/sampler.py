"""`GroupFilterReplayBuffer`: verl's sync replay buffer, dropping the groups the local trainer drops.

The local trainer (`TrainConfig.filter_uniform_groups`, `group_filter_threshold`) drops a group whose shaped
rewards are all equal or whose mean |r - mean| is under the threshold (`rl_runner.algorithms.
keep_informative_groups`; the paper: 0.01). verl's own group filter (`algorithm.filter_groups`) compares one
per-trajectory metric and cannot see the group's curiosity shaping, so this buffer replaces its test: a finished
group is shaped from its correctness (`rm_scores`) and op counts (`extra_fields`) exactly as `grpo_curiosity`
shapes it, and then evicted and refilled by verl's DAPO machinery (the released code refills its buffer too).
Selected with `trainer.v1.sampler.custom_sampler.{path,name}`; its options come in `sampler_kwargs`.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import transfer_queue as tq
from verl.trainer.ppo.v1.replay_buffer import FILTER_GROUPS_REWARD_METRIC, ReplayBuffer

from pixel_gym.reward import CuriosityConfig
from rl_runner.algorithms import keep_informative_groups
from rl_runner.verl_backend.advantage import shape_batch
from rl_runner.verl_backend.fields import columns


class GroupFilterReplayBuffer(ReplayBuffer):
    """`sampler_kwargs`: group_filter_threshold, curiosity (`CuriosityConfig` fields), train_batch_size and
    optionally max_inflight_gen_batches (verl's sync DAPO bound, default 1)."""

    def __init__(self, *, sampler_kwargs: Any, **kwargs: Any) -> None:
        options = dict(sampler_kwargs)
        self.threshold = float(options["group_filter_threshold"])
        self.curiosity = CuriosityConfig(**dict(options["curiosity"]))
        super().__init__(sampler_kwargs=sampler_kwargs, filter_groups_metric=FILTER_GROUPS_REWARD_METRIC,
                         train_batch_size=int(options["train_batch_size"]), gen_batch_size=1,
                         max_inflight_gen_batches=int(options.get("max_inflight_gen_batches", 1)), **kwargs)

    def _dapo_filtered_keys(self, partition_id: str) -> tuple[set[str], Counter]:
        """The finished groups to drop, and {mean shaped reward: count} of them (verl's eviction metric)."""
        finished = self.finished_keys[partition_id]
        keys = [key for key in self.partitions[partition_id] if key.split("_")[0] in finished]
        if partition_id == "val" or not keys:
            return set(), Counter()
        data = tq.kv_batch_get(keys=keys, partition_id=partition_id, select_fields=["rm_scores", "extra_fields"])
        fields = columns(data.pop("extra_fields").tolist())
        correctness = [float(scores.sum()) for scores in data["rm_scores"]]
        uids = np.array([key.split("_")[0] for key in keys], dtype=object)
        shaped = [part.total for part in shape_batch(correctness, fields, uids, self.curiosity)]
        kept = {uids[i] for i in keep_informative_groups(shaped, list(uids), self.threshold)}
        dropped = set(uids) - kept
        means = {uid: round(float(np.mean([r for r, u in zip(shaped, uids) if u == uid])), 4) for uid in dropped}
        return dropped, Counter(means.values())
