"""verl's v1 trainer path with TransferQueue on a local Ray (CPU): verl's `AgentLoopWorkerTQ` writes the rollouts
(our loop, the tiny processor, a scripted server) and their scores into TransferQueue; `GroupFilterReplayBuffer`
drops the uniform group from there; `pixel_gym_sync` computes the advantages through verl's own
`_compute_advantage` and writes them back. And a pin on the private verl method the hook overrides."""

from __future__ import annotations

import asyncio
import inspect
import types
from pathlib import Path
from typing import Any

import pytest
import ray
import torch
import transfer_queue as tq
from omegaconf import OmegaConf
from tensordict import TensorDict
from test_verl_backend import KWARGS, InProcessActor, ScriptedServer, processor  # noqa: F401
from verl.experimental.reward_loop.reward_loop import RewardLoopWorker
from verl.trainer.ppo.v1 import PPOTrainerSync
from verl.trainer.ppo.v1.agent_loop_tq import AgentLoopWorkerTQ
from verl.trainer.ppo.v1.trainer_base import PPOTrainer

from agents.scripted import crop_call, target_region
from rl_runner.config import TrainConfig
from rl_runner.verl_backend.launch import plan_run
from rl_runner.verl_backend.sampler import GroupFilterReplayBuffer
from rl_runner.verl_backend.settings import VerlSettings
from rl_runner.verl_backend.specs import load_task
from rl_runner.verl_backend.trainer import PixelGymSyncTrainer
from rl_runner.verl_backend.trainer_config import compose_config, worker_env

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def test_the_hooked_verl_method_keeps_its_name_and_signature() -> None:
    """`pixel_gym_sync` overrides verl 0.9.1's private `PPOTrainer._compute_advantage(batch, metrics)`: a renamed
    or re-signed method would silently bypass the hook (and the estimator would then refuse to run)."""
    assert list(inspect.signature(PPOTrainer._compute_advantage).parameters) == ["self", "batch", "metrics"]
    assert "_compute_advantage" not in vars(PPOTrainerSync)  # verl's sync trainer uses the base method as is
    assert PixelGymSyncTrainer._compute_advantage is not PPOTrainer._compute_advantage
    assert list(inspect.signature(PixelGymSyncTrainer._compute_advantage).parameters) == ["self", "batch", "metrics"]


@pytest.fixture(scope="module")
def local_ray() -> Any:
    # logical CPUs: TransferQueue's controller and storage unit are actors that each reserve one to be scheduled
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": worker_env()})
    tq.init(OmegaConf.create({"backend": {"SimpleStorage": {"num_data_storage_units": 1}}}))
    yield
    tq.close()
    ray.shutdown()


class GroupServer(ScriptedServer):
    """Task 0's two rollouts: one zooms and answers right, one answers wrong at once; task 1's: both right."""

    def __init__(self, tokenizer: Any, tasks: list[Any]) -> None:
        super().__init__(tokenizer, [])
        self.tasks, self.fresh = tasks, [0, 0]

    async def generate(self, request_id: str, *, prompt_ids: list[int], sampling_params: dict[str, Any],
                       **kwargs: Any) -> Any:
        text = self.tokenizer.decode(prompt_ids)
        k = 0 if self.tasks[0].question in text else 1
        task = self.tasks[k]
        right, wrong = task.answers[0], next(c for c in "ABCD" if c != task.answers[0])
        if text.count("<|im_start|>assistant") > 1:  # after the zoom (the prompt ends with a generation prompt)
            self.turns = [f"\\boxed{{{right}}}"]
        else:
            self.fresh[k] += 1
            zoom = k == 0 and self.fresh[k] == 1
            self.turns = [crop_call(target_region(task, task.images[0].size())) if zoom
                          else f"\\boxed{{{right if k == 1 else wrong}}}"]
        return await super().generate(request_id, prompt_ids=prompt_ids, sampling_params=sampling_params, **kwargs)


def test_sync_trainer_filters_groups_and_computes_advantages_through_transfer_queue(
        tmp_path: Path, local_ray: Any, processor: Any) -> None:  # noqa: F811
    config = TrainConfig(name="tq", out_dir=str(tmp_path), model="tiny-random", rl_steps=1, tasks_per_step=2,
                         group_size=2, eval_tasks=2, sft_tasks=4, micro_batch_size=1, suite_kwargs=KWARGS,
                         group_filter_threshold=0.01)
    plan = plan_run(config, VerlSettings(gpus_per_node=1, dry_run=True, prompt_length=1024, response_length=512))
    verl_config = compose_config(plan.rl_config.parent, plan.rl_config.stem, ["data.filter_overlong_prompts=false"])
    trainer = PixelGymSyncTrainer(verl_config)  # verl builds the custom sampler named in the config
    buffer = trainer.replay_buffer  # loaded by verl from the file (a module of its own), hence the name
    assert type(buffer).__name__ == GroupFilterReplayBuffer.__name__ and buffer.threshold == 0.01
    trainer._init_tokenizer()
    trainer.processor = processor  # verl builds Qwen processors only where torchvision is installed
    trainer._init_dataloader()
    trainer.global_steps = 1
    batch = trainer._next_train_batch()  # verl's own prompt batch (2 prompts, uids)
    uids = list(batch["uid"])
    tasks = [load_task(info["task"]) for info in batch["extra_info"]]

    async def rollout() -> None:
        worker_class = AgentLoopWorkerTQ.__ray_actor_class__  # in this process, as test_verl_backend does
        worker = worker_class(verl_config, GroupServer(processor.tokenizer, tasks),
                              reward_loop_worker_handles=[InProcessActor(RewardLoopWorker(verl_config))])
        worker.processor = processor
        submitted: list[Any] = []  # verl's manager fans the batch out to Ray workers; here: the one worker above
        trainer.agent_loop_manager = types.SimpleNamespace(generate_sequences=submitted.append)
        trainer._submit_batch_to_rollout(batch)  # verl registers the prompts in TransferQueue
        await worker.generate_sequences(submitted[0])
        while worker.background_tasks:
            await asyncio.sleep(0.05)

    asyncio.run(rollout())
    buffer._sync_metadata_from_transfer_queue()
    dropped, _ = buffer._dapo_filtered_keys("train")
    assert dropped == {uids[1]}  # task 1: both right, no tool: equal shaped rewards
    keys = sorted(key for key in buffer.partitions["train"] if key.startswith(uids[0] + "_"))
    meta = tq.KVBatchMeta(keys=keys, tags=[{}] * len(keys), partition_id="train")
    # the actor's step before this one writes old_log_probs; here the rollout's (as verl's bypass mode takes them)
    rollout = tq.kv_batch_get(keys=keys, partition_id="train", select_fields=["rollout_log_probs"])
    tq.kv_batch_put(keys=keys, partition_id="train",
                    fields=TensorDict({"old_log_probs": rollout["rollout_log_probs"]}, batch_size=len(keys)))
    metrics: dict[str, float] = {}
    trainer._compute_advantage(meta, metrics)
    data = tq.kv_batch_get(keys=keys, partition_id="train",
                           select_fields=["advantages", "response_mask", "rm_scores", "extra_fields"])
    scores = [float(s.sum()) for s in data["rm_scores"]]
    calls = [fields["pixel_num_tool_calls"] for fields in data.pop("extra_fields").tolist()]
    # RaPR 1/2 >= 0.3: no bonus; one call: no penalty; GRPO without std: reward minus the group mean
    expected = {(1.0, 1): 0.5, (0.0, 0): -0.5}
    for score, call, advantages, mask in zip(scores, calls, data["advantages"], data["response_mask"]):
        assert torch.allclose(advantages, expected[(score, call)] * mask.to(advantages.dtype))  # model tokens only
    assert sorted(zip(scores, calls)) == [(0.0, 0), (1.0, 1)] and metrics["pixel_gym/rapr"] == 0.5
