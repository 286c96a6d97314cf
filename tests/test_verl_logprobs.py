"""Rollout log-probs against the trainer's recomputation, with several images in the conversation: verl's
`AgentLoopWorker` runs `PixelGymAgentLoop` (a zoom, then an answer: two images); each turn's log-probs come from
the tiny model on that turn's own prompt (as an engine reports them), and the recomputation is one forward over
verl's assembled batch (input ids, verl's 4-row M-RoPE position ids, `multi_modal_inputs`), as verl's FSDP engine
feeds the model. They must agree to 1e-5: tokens, images and positions line up between rollout and training."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from test_verl_backend import (  # noqa: F401  (fixtures)
    InProcessActor,
    ScriptedServer,
    model,
    processor,
    rl_parquet,
    suite,
    verl_config,
)
from verl.experimental.agent_loop.agent_loop import AgentLoopWorker
from verl.experimental.reward_loop.reward_loop import RewardLoopWorker
from verl.protocol import DataProto
from verl.utils.dataset.rl_dataset import RLHFDataset, collate_fn
from verl.workers.rollout.replica import TokenOutput

from agents.scripted import crop_call, target_region
from rl_runner.verl_backend.local_server import LocalServerManager

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


class TeacherForcedServer(ScriptedServer):
    """Fixed turns, each with the log-probs the model gives its tokens on the request's prompt and images."""

    def __init__(self, model: Any, processor: Any, turns: list[str]) -> None:  # noqa: F811
        super().__init__(processor.tokenizer, turns)
        self.local = LocalServerManager(model, processor)

    async def generate(self, request_id: str, *, prompt_ids: list[int], sampling_params: dict[str, Any],
                       image_data: list[Any] | None = None, **kwargs: Any) -> TokenOutput:
        out = await super().generate(request_id, prompt_ids=prompt_ids, sampling_params=sampling_params,
                                     image_data=image_data)
        inputs = self.local.model_inputs(prompt_ids + out.token_ids, list(image_data or []))
        with torch.no_grad():
            logits = self.local.model(**inputs).logits[0, len(prompt_ids) - 1: -1].float()
        logprobs = torch.log_softmax(logits, -1).gather(-1, torch.tensor(out.token_ids)[:, None])[:, 0]
        return TokenOutput(token_ids=out.token_ids, log_probs=logprobs.tolist())


def test_rollout_logprobs_match_the_trainer_recomputation(verl_config: Any, processor: Any, model: Any,  # noqa: F811
                                                          suite: Any, rl_parquet: Any) -> None:  # noqa: F811
    config = OmegaConf.merge(verl_config, {"actor_rollout_ref": {"rollout": {"n": 1}}})
    dataset = RLHFDataset(str(rl_parquet), processor.tokenizer, config.data, processor)
    batch = DataProto.from_single_dict(collate_fn([dataset[0]]))
    batch.non_tensor_batch["uid"] = np.array(["u0"], dtype=object)
    task = suite[0]
    turns = ["Let me zoom in.\n" + crop_call(target_region(task, task.images[0].size())),
             f"The answer is \\boxed{{{task.answers[0]}}}."]

    async def generate() -> DataProto:
        worker = AgentLoopWorker(config, TeacherForcedServer(model, processor, turns),
                                 reward_loop_worker_handles=[InProcessActor(RewardLoopWorker(config))])
        worker.processor = processor  # see test_verl_backend's `processor` fixture
        return await worker.generate_sequences(batch)

    out = asyncio.run(generate())
    inputs = out.non_tensor_batch["multi_modal_inputs"][0]
    assert inputs["image_grid_thw"].shape[0] == 2  # the original view and the crop
    valid = out.batch["attention_mask"][0].bool()
    input_ids = out.batch["input_ids"][0][valid][None]
    positions = out.batch["position_ids"][0][:, valid][:, None]  # (4, 1, L), as verl's engine passes them
    with torch.no_grad():
        logits = model(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), position_ids=positions,
                       **inputs).logits[0].float()
    responses, mask = out.batch["responses"][0], out.batch["response_mask"][0].bool()
    length = int(out.batch["attention_mask"][0][-len(responses):].sum())
    start = input_ids.shape[1] - length  # first response token
    recomputed = torch.log_softmax(logits[start - 1: -1], -1).gather(-1, responses[:length, None])[:, 0]
    rollout = out.batch["rollout_log_probs"][0][:length]
    model_tokens = mask[:length]
    assert int(model_tokens.sum()) > 20 and not model_tokens.all()  # both turns, and the env's tokens between
    assert torch.allclose(recomputed[model_tokens], rollout[model_tokens], atol=1e-5, rtol=0)
