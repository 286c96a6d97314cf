"""verl's stock `tool_agent` route with verl's real `ToolAgentLoop`, `AgentLoopWorker` and reward loop on CPU: the
model sees the env's prompt token for token, and the scores equal the env's on the same turns. The LLM server is
scripted (the turns are what matters here, not the model)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from test_verl_backend import InProcessActor, ScriptedServer, processor  # noqa: F401  (fixture)
from verl.experimental.agent_loop.agent_loop import AgentLoopWorker, DictConfigWrap, ToolListWrap
from verl.experimental.agent_loop.tool_agent_loop import ToolAgentLoop
from verl.experimental.reward_loop.reward_loop import RewardLoopWorker
from verl.protocol import DataProto
from verl.tools.tool_registry import initialize_tools_from_config
from verl.utils.dataset.rl_dataset import collate_fn
from verl.workers.rollout.replica import TokenOutput

from agents.scripted import crop_call, target_region
from rl_runner.config import DEFAULT_SUITE_KWARGS
from rl_runner.verl_backend import reward, tool_agent
from rl_runner.verl_backend.agent_loop import AGENT_NAME, PixelGymAgentLoop
from rl_runner.verl_backend.data import TOOL_AGENT, rl_rows, suite_specs, write_parquet
from rl_runner.verl_backend.dataset import PixelGymDataset
from rl_runner.verl_backend.specs import EnvSettings, make_env
from rl_runner.verl_backend.tools import tool_config
from rl_runner.verl_backend.trainer_config import DATASET_NAME, DATASET_PATH, VERL_CONFIG_DIR, compose_config

KWARGS = {key: list(value) if isinstance(value, tuple) else value for key, value in DEFAULT_SUITE_KWARGS.items()}
SETTINGS = EnvSettings()
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def tasks() -> list[Any]:
    return [task for task, _ in suite_specs("fine_detail", 2, 0, "train", KWARGS)]


@pytest.fixture(scope="module")
def config(tiny_model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    tools = tmp_path_factory.mktemp("tools") / "tools.yaml"
    tools.write_text(json.dumps(tool_config()))
    return compose_config(VERL_CONFIG_DIR, "ppo_trainer", [
        f"actor_rollout_ref.model.path={tiny_model_path}",
        "actor_rollout_ref.rollout.name=vllm",
        "data.max_prompt_length=1024",
        "data.max_response_length=1024",
        "data.filter_overlong_prompts=false",
        "actor_rollout_ref.rollout.n=2",
        f"actor_rollout_ref.rollout.multi_turn.format={tool_agent.PARSER}",
        "actor_rollout_ref.rollout.multi_turn.max_tool_response_length=32768",
        f"actor_rollout_ref.rollout.multi_turn.tool_config_path={tools}",
        f"reward.custom_reward_function.path={reward.__file__}",
        f"data.custom_cls.path={DATASET_PATH}",
        f"data.custom_cls.name={DATASET_NAME}",
    ])


@pytest.fixture(scope="module")
def env_processor(processor: Any) -> Any:  # noqa: F811
    """The tiny processor with the template the launcher gives verl on this route (`custom_chat_template`)."""
    processor.chat_template = processor.tokenizer.chat_template = tool_agent.TEMPLATE
    return processor


def turns_of(task: Any, zoom: bool) -> list[str]:
    answer = f"I can read it now. The answer is \\boxed{{{task.answers[0]}}}."
    return ["Too small; zooming in.\n" + crop_call(target_region(task, task.images[0].size())), answer] if zoom \
        else [answer]


class PolicyServer(ScriptedServer):
    """Answers each request by a policy of the decoded conversation so far (samples run concurrently)."""

    def __init__(self, tokenizer: Any, policy: Callable[[str], str]) -> None:
        super().__init__(tokenizer, [])
        self.policy = policy

    async def generate(self, request_id: str, *, prompt_ids: list[int], sampling_params: dict[str, Any],
                       **kwargs: Any) -> TokenOutput:
        self.turns = [self.policy(self.tokenizer.decode(prompt_ids))]
        sampling = {"max_tokens": 1 << 20, **sampling_params}  # verl's tool loop leaves the cap to the engine
        return await super().generate(request_id, prompt_ids=prompt_ids, sampling_params=sampling, **kwargs)


def zoom_then_answer(tasks: list[Any]) -> Callable[[str], str]:
    """Task 0: zoom, then answer; task 1: answer at once."""
    def policy(conversation: str) -> str:
        task = 0 if tasks[0].question in conversation else 1
        done = conversation.count("<|im_start|>assistant") - 1  # model turns so far
        return turns_of(tasks[task], zoom=task == 0)[done]
    return policy


def env_scores(task: Any, turns: list[str]) -> float:
    env = make_env(SETTINGS, task)
    env.reset(options={"task": task})
    for text in turns:
        _, score, terminated, truncated, _ = env.step(text)
    assert terminated or truncated
    return score


def test_tool_agent_scores_equal_the_env_scores(config: Any, env_processor: Any, tasks: list[Any],
                                                tmp_path: Path) -> None:
    """Two tool users and two non-users, all correct: verl's pipeline gives what the env gives (1, 1, 1, 1; before
    the tools stopped reporting an unanswered episode it gave 0 to every rollout that called a tool)."""
    items = suite_specs("fine_detail", 2, 0, "train", KWARGS)
    path = write_parquet(rl_rows(items, SETTINGS, "pixel_gym/fine_detail", TOOL_AGENT), tmp_path / "t.parquet")
    dataset = PixelGymDataset(str(path), env_processor.tokenizer, config.data, env_processor)
    batch = DataProto.from_single_dict(collate_fn([dataset[0], dataset[1]]))
    batch.non_tensor_batch["uid"] = np.array(["u0", "u1"], dtype=object)
    batch = batch.repeat(2, interleave=True)

    async def generate() -> DataProto:
        worker = AgentLoopWorker(config, PolicyServer(env_processor.tokenizer, zoom_then_answer(tasks)),
                                 reward_loop_worker_handles=[InProcessActor(RewardLoopWorker(config))])
        worker.processor = env_processor
        return await worker.generate_sequences(batch)

    out = asyncio.run(generate())
    scores = out.batch["rm_scores"].sum(-1).tolist()
    expected = [env_scores(tasks[i], turns_of(tasks[i], zoom=i == 0)) for i in (0, 0, 1, 1)]
    assert scores == expected == [1.0, 1.0, 1.0, 1.0]
    assert list(out.non_tensor_batch["num_tool_calls"]) == [1, 1, 0, 0]


@pytest.mark.parametrize("final", ["So the answer is \\boxed{{{answer}}}.", "No answer here.",
                                   '<tool_call>\n{{"name": "crop_image_normalized", "arguments": {{"bbox_2d": '
                                   '[0.1, 0.1, 0.5, 0.5], "target_image": 1}}}}\n</tool_call>'])
def test_a_final_turn_is_read_as_the_env_reads_it(tasks: list[Any], final: str) -> None:
    """A response's final turn (after the last tool result) is scored by the env's rule: its last \\boxed{}; none,
    or a tool call, scores 0 -- whatever an earlier turn held."""
    task = tasks[0]
    zoom = crop_call(target_region(task, task.images[0].size()))
    first = f"Maybe \\boxed{{{task.answers[0]}}}? Let me look.\n{zoom}"
    env = make_env(SETTINGS, task)
    env.reset(options={"task": task})
    observation, *_ = env.step(first)
    reply = "".join(p["text"] for p in observation["messages"][-1]["content"] if p["type"] == "text")
    text = final.format(answer=task.answers[0])
    response = f"{first}user\n{reply}assistant\n{text}"  # as verl decodes it (special tokens skipped)
    _, score, *_ = env.step(text)
    truth = json.dumps({"id": task.id, "answers": list(task.answers), "metric": task.metric,
                        "choices": list(task.choices)})
    assert reward.compute_score("s", response, truth, {"pixel_last_reply": reply})["score"] == score


def test_tool_agent_prompt_is_the_env_prompt_token_for_token(config: Any, env_processor: Any, tasks: list[Any],
                                                              tmp_path: Path) -> None:
    """Same row, same turns: verl's ToolAgentLoop (our template and parser) and PixelGymAgentLoop (the env's own
    messages) build the same token sequence, images included, and mask the same tokens as the model's."""
    task, spec = suite_specs("fine_detail", 1, 0, "train", KWARGS)[0]
    outputs = []
    for agent in (TOOL_AGENT, AGENT_NAME):
        path = write_parquet(rl_rows([(task, spec)], SETTINGS, "s", agent), tmp_path / f"{agent}.parquet")
        batch = collate_fn([PixelGymDataset(str(path), env_processor.tokenizer, config.data, env_processor)[0]])
        outputs.append(asyncio.run(run_agent(agent, config, env_processor, tasks, batch)))
    tool_out, env_out = outputs
    assert tool_out.prompt_ids == env_out.prompt_ids
    assert tool_out.response_ids == env_out.response_ids and tool_out.response_mask == env_out.response_mask
    assert len(tool_out.multi_modal_data["images"]) == len(env_out.multi_modal_data["images"]) == 2
    text = env_processor.tokenizer.decode(tool_out.response_ids)
    assert "<tool_response>" not in text and "Image Size:" in text.split("<|vision_start|>")[0]
    assert torch.equal(torch.tensor(tool_out.response_mask), torch.tensor(env_out.response_mask))


async def run_agent(agent: str, config: Any, processor: Any, tasks: list[Any], batch: dict[str, Any]) -> Any:  # noqa: F811
    cls = ToolAgentLoop if agent == TOOL_AGENT else PixelGymAgentLoop
    tools = initialize_tools_from_config(config.actor_rollout_ref.rollout.multi_turn.tool_config_path)
    loop = cls(trainer_config=DictConfigWrap(config), server_manager=PolicyServer(processor.tokenizer,
               zoom_then_answer(tasks)), tokenizer=processor.tokenizer, processor=processor,
               dataset_cls=PixelGymDataset, data_config=DictConfigWrap(config.data), hf_model_type="qwen2_5_vl",
               tools=ToolListWrap(tools))
    row = {key: value[0] for key, value in batch.items()}
    return await loop.run({"temperature": 1.0, "logprobs": True}, **row)


def test_template_changes_only_what_it_names() -> None:
    with pytest.raises(ValueError, match="chat template changed"):
        tool_agent.env_template("{{ messages }}")
