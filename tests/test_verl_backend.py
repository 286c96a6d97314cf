"""The verl backend against verl's real classes, on CPU: agent loop, tools, reward manager, estimator, datasets,
config composition. The LLM server is the tiny local Qwen2.5-VL (`LocalServerManager`) or, where exact turns
matter, a scripted server with the same `generate` interface."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf
from transformers import AutoConfig, AutoModelForImageTextToText
from transformers.models.qwen2_5_vl import Qwen2_5_VLModel
from verl.experimental.agent_loop.agent_loop import AgentLoopWorker, DictConfigWrap
from verl.experimental.agent_loop.tool_agent_loop import AgentData
from verl.experimental.reward_loop.reward_loop import RewardLoopWorker
from verl.protocol import DataProto
from verl.tools.tool_registry import initialize_tools_from_config
from verl.trainer.ppo.ray_trainer import compute_advantage
from verl.utils.dataset.multiturn_sft_dataset import MultiTurnSFTDataset
from verl.utils.dataset.rl_dataset import RLHFDataset, collate_fn
from verl.utils.import_utils import load_extern_type
from verl.workers.reward_manager import NaiveRewardManager
from verl.workers.rollout.replica import TokenOutput

from agents.chat import load_processor, render_messages
from agents.scripted import crop_call, target_region
from pixel_gym import prompts
from pixel_gym.reward import CuriosityConfig, shape_group
from pixel_gym.suites import SUITES, make_suite
from pixel_gym.tasks import Task
from rl_runner import prepare_verl
from rl_runner.config import DEFAULT_SUITE_KWARGS, TrainConfig, load_config
from rl_runner.traces import synthesize
from rl_runner.train import main as train_main
from rl_runner.verl_backend import fields as F
from rl_runner.verl_backend.advantage import ESTIMATOR, sample_fields
from rl_runner.verl_backend.agent_loop import AGENT_NAME, PixelGymAgentLoop
from rl_runner.verl_backend.data import TOOL_AGENT, embedded_specs, rl_rows, sft_rows, suite_specs, write_parquet
from rl_runner.verl_backend.launch import plan_run
from rl_runner.verl_backend.local_server import LocalServerManager
from rl_runner.verl_backend.messages import placeholder_messages
from rl_runner.verl_backend.reward import compute_score
from rl_runner.verl_backend.settings import VerlSettings
from rl_runner.verl_backend.specs import EnvSettings, answer_task, ground_truth, load_task, make_env, suite_task_spec
from rl_runner.verl_backend.tools import tool_config
from rl_runner.verl_backend.trainer_config import (
    NO_VERL_MEANING,
    VERL_CONFIG_DIR,
    check_sft,
    compose_config,
    sft_settings,
    unmapped_fields,
    validate,
    write_rl_config,
)

torch.set_num_threads(1)
KWARGS = {key: list(value) if isinstance(value, tuple) else value for key, value in DEFAULT_SUITE_KWARGS.items()}
SETTINGS = EnvSettings()
RESPONSE_LENGTH = 512
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


# ------------------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def processor(tiny_model_path: Path) -> Any:
    """The tiny model's processor, with the rope-index binding verl's `hf_processor` adds to Qwen2.5-VL ones
    (verl only builds processors itself where torchvision is installed)."""
    proc = load_processor(tiny_model_path)
    proc.config = AutoConfig.from_pretrained(tiny_model_path)
    proc.get_rope_index = types.MethodType(Qwen2_5_VLModel.get_rope_index, proc)
    proc.get_vision_position_ids = types.MethodType(Qwen2_5_VLModel.get_vision_position_ids, proc)
    return proc


@pytest.fixture(scope="module")
def model(tiny_model_path: Path) -> Any:
    return AutoModelForImageTextToText.from_pretrained(tiny_model_path, dtype=torch.float32).eval()


@pytest.fixture(scope="module")
def verl_config(tiny_model_path: Path) -> Any:
    """verl's own trainer config (hydra), sized for the tiny model."""
    from rl_runner.verl_backend import reward

    return compose_config(
        VERL_CONFIG_DIR,
        "ppo_trainer",
        [
            f"actor_rollout_ref.model.path={tiny_model_path}",
            "actor_rollout_ref.rollout.name=vllm",
            "data.max_prompt_length=1024",
            f"data.max_response_length={RESPONSE_LENGTH}",
            "data.filter_overlong_prompts=false",
            "actor_rollout_ref.rollout.n=2",
            f"actor_rollout_ref.rollout.agent.default_agent_loop={AGENT_NAME}",
            f"reward.custom_reward_function.path={reward.__file__}",
            f"algorithm.adv_estimator={ESTIMATOR}",
            "algorithm.norm_adv_by_std_in_grpo=false",
        ],
    )


@pytest.fixture(scope="module")
def suite() -> Any:
    return make_suite("fine_detail", size=8, seed=0, split="train", **KWARGS)


@pytest.fixture(scope="module")
def rl_parquet(tmp_path_factory: pytest.TempPathFactory, suite: Any) -> Path:
    items = suite_specs("fine_detail", 2, 0, "train", KWARGS)
    return write_parquet(rl_rows(items, SETTINGS, "pixel_gym/fine_detail"), tmp_path_factory.mktemp("rl") / "t.parquet")


class ScriptedServer:
    """verl's `generate` interface answering with fixed turns (each closed by <|im_end|>), log-prob -0.25 each."""

    def __init__(self, tokenizer: Any, turns: list[str]) -> None:
        self.tokenizer, self.turns, self.calls = tokenizer, list(turns), []

    async def generate(
        self,
        request_id: str,
        *,
        prompt_ids: list[int],
        sampling_params: dict[str, Any],
        image_data: list[Any] | None = None,
        **kwargs: Any,
    ) -> TokenOutput:
        self.calls.append(
            {
                "prompt_ids": list(prompt_ids),
                "images": list(image_data or []),
                "max_tokens": sampling_params["max_tokens"],
                "temperature": sampling_params.get("temperature"),
            }
        )
        ids = self.tokenizer.encode(self.turns.pop(0), add_special_tokens=False)
        ids = [*ids, self.tokenizer.convert_tokens_to_ids("<|im_end|>")][: sampling_params["max_tokens"]]
        return TokenOutput(token_ids=ids, log_probs=[-0.25] * len(ids))


def run_loop(config: Any, server: Any, processor: Any, extra_info: dict[str, Any], temperature: float = 1.0,
             **loop_kwargs: Any) -> Any:
    async def main() -> Any:  # verl builds agent loops inside the worker's event loop
        loop = PixelGymAgentLoop(
            **loop_kwargs,
            trainer_config=DictConfigWrap(config),
            server_manager=server,
            tokenizer=processor.tokenizer,
            processor=processor,
            dataset_cls=RLHFDataset,
            data_config=DictConfigWrap(config.data),
            hf_model_type="qwen2_5_vl",
        )
        return await loop.run({"temperature": temperature, "logprobs": True}, extra_info=extra_info)

    return asyncio.run(main())


def row_extra_info(suite: Any, index: int) -> dict[str, Any]:
    return rl_rows([(suite[index], suite_specs_one(suite, index))], SETTINGS, "s")[0]["extra_info"]


def suite_specs_one(suite: Any, index: int) -> str:
    return suite_task_spec(suite, index, KWARGS)


# ------------------------------------------------------------------------------------------------ specs, data


def test_task_specs_rebuild_the_same_tasks(suite: Any, tmp_path: Path) -> None:
    task = load_task(suite_specs_one(suite, 3))
    assert (task.id, task.answers, task.question) == (suite[3].id, suite[3].answers, suite[3].question)
    image_file = tmp_path / "a.png"
    suite[0].images[0].open().save(image_file)
    custom = Task(
        "custom/1",
        "q?",
        ("B",),
        "choice",
        images=(np.zeros((40, 30, 3), np.uint8), str(image_file)),
        choices=("x", "y"),
    )
    rebuilt = load_task(embedded_specs([custom])[0][1])
    assert rebuilt.choices == ("x", "y") and rebuilt.images[0].open().size == (30, 40)
    assert rebuilt.images[1].source == str(image_file)
    wrong = json.loads(suite_specs_one(suite, 3)) | {"id": "fine_detail/train/999"}
    with pytest.raises(ValueError, match="suite changed"):
        load_task(json.dumps(wrong))
    assert answer_task(ground_truth(suite[3])).answers == suite[3].answers


def test_rl_parquet_loads_in_verl_rlhf_dataset(rl_parquet: Path, processor: Any, suite: Any) -> None:
    config = OmegaConf.create({"max_prompt_length": 4096, "filter_overlong_prompts": False})
    dataset = RLHFDataset(str(rl_parquet), processor.tokenizer, config, processor)
    row = collate_fn([dataset[0], dataset[1]])
    assert list(row["agent_name"]) == [AGENT_NAME] * 2 and list(row["index"]) == [0, 1]
    assert set(row["tools_kwargs"][0]) == {"crop_image_normalized", "select_frames"}
    observation, _ = make_env(SETTINGS, suite[0]).reset(options={"task": suite[0]})
    # the dataset's prompt renders exactly as the env's reset view
    assert render_messages(processor, row["raw_prompt"][0]) == render_messages(processor, observation["messages"])
    shown = [part["image"] for m in row["raw_prompt"][0] for part in m["content"] if part["type"] == "image"]
    assert np.array_equal(np.asarray(shown[0].convert("RGB")), observation["images"][0])
    assert json.loads(row["reward_model"][0]["ground_truth"])["answers"] == list(suite[0].answers)


def test_tool_agent_rows_keep_the_env_prompt(suite: Any) -> None:
    row = rl_rows([(suite[0], suite_specs_one(suite, 0))], SETTINGS, "s", TOOL_AGENT)[0]
    assert [m["role"] for m in row["prompt"]] == ["system", "user"] and row["agent_name"] == TOOL_AGENT
    assert row["prompt"] == rl_rows([(suite[0], suite_specs_one(suite, 0))], SETTINGS, "s")[0]["prompt"]


@pytest.mark.parametrize("name", sorted(SUITES))
def test_prepared_rows_play_for_every_suite(name: str, tmp_path: Path) -> None:
    """`prepare_verl` rows of every suite (mixed with the trainer's default suite_kwargs, as `--suite mixed` gets
    them) load back into their tasks and play: the row's prompt is the env's reset view, the gold answer scores 1."""
    kwargs = KWARGS if name in ("fine_detail", "mixed") else {}
    prepare_verl.main(["--suite", name, "--suite-kwargs", json.dumps(kwargs), "--train-size", "4", "--val-size", "1",
                       "--sft-size", "0", "--budgets", "compact", "--out", str(tmp_path)])
    rows = pd.read_parquet(tmp_path / "train.parquet")
    ids = []
    for row in rows.itertuples():
        task = load_task(row.extra_info["task"])
        env = make_env(EnvSettings.from_json(row.extra_info["env"]), task)
        observation, _ = env.reset(options={"task": task})
        assert task.id == row.extra_info["task_id"] == json.loads(row.reward_model["ground_truth"])["id"]
        prompt, images = placeholder_messages(observation["messages"])
        assert prompt == list(row.prompt) and [i["bytes"] for i in images] == [i["bytes"] for i in row.images]
        _, score, terminated, _, _ = env.step(f"\\boxed{{{task.answers[0]}}}")
        assert terminated and score == 1.0
        ids.append(task.id.split("/")[0])
    assert ids == (["fine_detail", "counting", "document", "video"] if name == "mixed" else [name] * 4)


def test_sft_parquet_loads_in_verl_multiturn_sft_dataset(tmp_path: Path, processor: Any, suite: Any) -> None:
    traces = synthesize([suite[0], suite[1]], make_env(SETTINGS, suite[0]), 1.0, seed=0, progress=False)
    path = write_parquet(sft_rows(traces), tmp_path / "sft.parquet")
    dataset = MultiTurnSFTDataset(str(path), processor.tokenizer, OmegaConf.create({"max_length": 8192}), processor)
    assert len(dataset) == 2 and dataset.tools is None
    for messages, row in zip(dataset.messages, dataset.dataframe.itertuples()):
        assert [m["role"] for m in messages][:2] == ["system", "user"] and messages[-1]["role"] == "assistant"
        assert sum(m["content"].count("<image>") for m in messages) == len(row.images)
    # (item tokenization goes through qwen_vl_utils, which needs torchvision: not installed here)


# ------------------------------------------------------------------------------------------------ agent loop


def test_agent_loop_runs_an_episode_with_a_zoom(verl_config: Any, processor: Any, suite: Any) -> None:
    task = suite[3]
    zoom = "The tag is too small. Let me zoom in.\n" + crop_call(target_region(task, task.images[0].size()))
    answer = f"Now I can see it. The answer is \\boxed{{{task.answers[0]}}}."
    server = ScriptedServer(processor.tokenizer, [zoom, answer])
    out = run_loop(verl_config, server, processor, row_extra_info(suite, 3))
    assert out.extra_fields[F.NUM_OPS] == 1 and out.extra_fields[F.ANSWER] == task.answers[0]
    assert out.extra_fields[F.ANSWERED] and not out.extra_fields[F.LAST_OP_FAILED] and out.num_turns == 4
    ids, mask, logprobs = out.response_ids, out.response_mask, out.response_logprobs
    assert len(ids) == len(mask) == len(logprobs) and set(mask) == {0, 1}
    tokenizer = processor.tokenizer
    model_text = tokenizer.decode([t for t, m in zip(ids, mask) if m])
    assert model_text == f"{zoom}<|im_end|>{answer}<|im_end|>"
    env_text = tokenizer.decode([t for t, m in zip(ids, mask) if not m])
    assert prompts.crop_result_text(0, 0).split(" (")[0] in env_text and "<|image_pad|>" in env_text
    assert all((lp == -0.25) if m else (lp == 0.0) for lp, m in zip(logprobs, mask))
    images = out.multi_modal_data["images"]
    assert len(images) == 2 and len(server.calls[1]["images"]) == 2
    so_far = len(server.calls[1]["prompt_ids"]) - len(out.prompt_ids)  # response tokens before the 2nd turn
    assert server.calls[1]["prompt_ids"] == out.prompt_ids + ids[:so_far]
    assert server.calls[1]["max_tokens"] == RESPONSE_LENGTH - so_far


def test_agent_loop_samples_later_turns_at_the_later_temperature(verl_config: Any, processor: Any,
                                                                 suite: Any) -> None:
    """`later_temperature` (the agent-loop YAML's, from `--preset pixel_reasoner`) applies after the first turn of
    a training rollout; validation (its own temperature) samples every turn alike."""
    task = suite[3]
    turns = [crop_call(target_region(task, task.images[0].size())), f"\\boxed{{{task.answers[0]}}}"]
    trained = ScriptedServer(processor.tokenizer, list(turns))
    run_loop(verl_config, trained, processor, row_extra_info(suite, 3), later_temperature=0.9)
    validated = ScriptedServer(processor.tokenizer, list(turns))
    run_loop(verl_config, validated, processor, row_extra_info(suite, 3), temperature=0.0, later_temperature=0.9)
    assert [c["temperature"] for c in trained.calls] == [verl_config.actor_rollout_ref.rollout.temperature, 0.9]
    assert [c["temperature"] for c in validated.calls] == [0.0, 0.0]


def test_agent_loop_stops_at_the_response_budget(verl_config: Any, processor: Any, suite: Any) -> None:
    config = OmegaConf.merge(verl_config, {"actor_rollout_ref": {"rollout": {"response_length": 12}}})
    server = ScriptedServer(processor.tokenizer, ["word " * 40])
    out = run_loop(config, server, processor, row_extra_info(suite, 0))
    assert len(out.response_ids) == 12 and sum(out.response_mask) == 12 and not out.extra_fields[F.ANSWERED]


def test_agent_loop_survives_an_env_exception(
    verl_config: Any, processor: Any, suite: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A turn the env raises on ends that episode unanswered (scored 0), not the rollout (the env's fault injected)."""
    import dataclasses

    from test_rollout import FaultyEnv

    monkeypatch.setattr("rl_runner.verl_backend.agent_loop.make_env",
                        lambda settings, task: FaultyEnv({task.id}, tasks=[task], **dataclasses.asdict(settings)))
    server = ScriptedServer(processor.tokenizer, [f"The answer is \\boxed{{{suite[0].answers[0]}}}."])
    out = run_loop(verl_config, server, processor, row_extra_info(suite, 0))
    assert len(server.calls) == 1 and sum(out.response_mask) == len(out.response_mask) > 0
    assert out.extra_fields[F.TASK_ID] == suite[0].id and out.extra_fields[F.TURNS] == 0
    assert not out.extra_fields[F.ANSWERED] and out.extra_fields[F.ANSWER] == ""


def test_tools_execute_through_the_env(tmp_path: Path, suite: Any) -> None:
    path = tmp_path / "tools.yaml"
    path.write_text(json.dumps(tool_config()))
    crop, frames = initialize_tools_from_config(str(path))  # verl's own loader
    assert crop.tool_schema.function.name == "crop_image_normalized" and frames.name == "select_frames"
    zoom = {"bbox_2d": [0.1, 0.1, 0.4, 0.4], "target_image": 1}
    response, _, info, agent_data = call_tool(crop, suite_specs_one(suite, 0), zoom)
    assert len(response.image) == 1 and response.text.startswith("\nHere is the cropped image")
    assert info["error"] == "" and agent_data.extra_fields[F.NUM_OPS] == 1
    response, _, _ = asyncio.run(crop.execute("i", {**zoom, "target_image": 2}, agent_data=agent_data))
    assert len(response.image) == 1 and agent_data.extra_fields[F.NUM_OPS] == 2  # the first crop is image 2
    response, _, info, _ = call_tool(crop, suite_specs_one(suite, 1), {**zoom, "target_image": 9})
    assert response.image is None and response.text.startswith("\nExecution error") and info["error"]
    video = make_suite("video", size=1, seed=0, split="train")
    response, _, info, _ = call_tool(frames, suite_task_spec(video, 0, {}), {"target_frames": [1, 5]})
    assert len(response.image) == 2 and response.text.startswith("\nHere are the selected frames")


def call_tool(tool: Any, spec: str, arguments: dict[str, Any]) -> tuple[Any, float, dict[str, Any], AgentData]:
    """One call as verl's ToolAgentLoop makes it: a fresh trajectory whose tools_kwargs name the task."""
    tools_kwargs = {tool.name: {"create_kwargs": {"task": spec, "env": SETTINGS.to_json()}}}
    agent_data = AgentData([], [], None, None, None, {}, "request", tools_kwargs)
    instance_id, _ = asyncio.run(tool.create(create_kwargs=tools_kwargs[tool.name]["create_kwargs"]))
    return *asyncio.run(tool.execute(instance_id, arguments, agent_data=agent_data)), agent_data


# ------------------------------------------------------------------------------------------------ reward, advantage


def test_compute_score_uses_the_env_answer_or_the_last_boxed(suite: Any) -> None:
    truth = ground_truth(suite[3])
    right, wrong = suite[3].answers[0], "Z"
    env_info = {F.ANSWER: right, F.ANSWERED: True, F.NUM_OPS: 2}
    assert compute_score("s", "\\boxed{Z}", truth, env_info) | {} == {
        "score": 1.0,
        "correctness": 1.0,
        "answered": True,
        "num_ops": 2,
        "num_tool_calls": 0,
        "num_errors": 0,
    }
    assert compute_score("s", "no answer", truth, {F.ANSWER: "", F.ANSWERED: False})["score"] == 0.0
    assert compute_score("s", f"a \\boxed{{{wrong}}} b \\boxed{{ {right} }}", truth)["score"] == 1.0


def test_estimator_adds_the_group_curiosity_terms(verl_config: Any) -> None:
    rewards = torch.zeros(6, 5)
    rewards[:, -1] = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 1.0])  # correctness at the last token
    mask = torch.ones(6, 5)
    mask[2, 3:] = 0  # a shorter response
    data = DataProto.from_dict(
        tensors={"token_level_rewards": rewards, "response_mask": mask},
        non_tensors={"uid": np.array(list("aaaabb"), dtype=object)},
    )
    fields = {
        F.NUM_TOOL_CALLS: np.array([1, 0, 0, 0, 3, None], dtype=object),
        F.IS_VIDEO: np.array([False] * 6, dtype=object),
        F.LAST_OP_FAILED: np.array([False] * 6, dtype=object),
    }
    with sample_fields(fields):
        advantages = compute_advantage(data, adv_estimator=ESTIMATOR, config=verl_config.algorithm).batch["advantages"]
    # group a: RaPR 1/4 -> rollout 0 gets the hinge 0.5 * (0.3 - 0.25) = 0.025; shaped [1.025, 0, 0, 0], mean 0.25625
    # group b: RaPR 1/2 -> no bonus; rollout 4 made 3 tool calls -> -0.1; shaped [0.9, 1.0], mean 0.95
    expected = torch.tensor([0.76875, -0.25625, -0.25625, -0.25625, -0.05, 0.05])
    assert torch.allclose(advantages[:, 0], expected) and advantages[2, 3:].abs().sum() == 0
    config = OmegaConf.create(
        {**OmegaConf.to_container(verl_config.algorithm), "curiosity": {"form": "reference_code"}}
    )
    fields[F.LAST_OP_FAILED][4] = True
    with sample_fields(fields):
        shaped = compute_advantage(data, adv_estimator=ESTIMATOR, config=config).batch["advantages"][:, 0]
    bonus = (0.3 - 0.25) / 2.0 / 0.25 * 0.25  # the released code's bonus at RaPR 1/4
    assert torch.allclose(shaped[:4], torch.tensor([1 + bonus, 0, 0, 0]) - (1 + bonus) / 4)
    assert torch.allclose(shaped[4:], torch.tensor([-0.55, 0.55]))  # failed last op: answer zeroed, shaped [-0.1, 1]
    with pytest.raises(RuntimeError, match="pixel_gym_sync"):
        compute_advantage(data, adv_estimator=ESTIMATOR, config=verl_config.algorithm)


def test_fields_columns_fill_the_rows_of_other_agent_loops() -> None:
    columns = F.columns([{F.NUM_TOOL_CALLS: 2, F.IS_VIDEO: True, F.LAST_OP_FAILED: False}, {"turn_scores": []}, None])
    assert list(columns[F.NUM_TOOL_CALLS]) == [2, None, None] and list(columns[F.IS_VIDEO]) == [True, None, None]


def test_rollout_reward_and_advantage_through_verl(
    verl_config: Any, processor: Any, model: Any, rl_parquet: Path
) -> None:
    """verl's AgentLoopWorker runs our loop on the tiny model, scores through verl's reward loop worker and
    manager (our compute_score), and the estimator turns the rm_scores into GRPO advantages."""
    config = OmegaConf.merge(verl_config, {"data": {"max_response_length": 48}})
    dataset = RLHFDataset(str(rl_parquet), processor.tokenizer, config.data, processor)
    batch = DataProto.from_single_dict(collate_fn([dataset[0], dataset[1]]))
    batch.non_tensor_batch["uid"] = np.array(["u0", "u1"], dtype=object)
    batch = batch.repeat(2, interleave=True)

    async def generate() -> DataProto:  # verl's workers keep the event loop they are built in
        reward_worker = InProcessActor(RewardLoopWorker(config))
        server = LocalServerManager(model, processor)
        worker = AgentLoopWorker(config, server, reward_loop_worker_handles=[reward_worker])
        worker.processor = processor  # see the `processor` fixture
        return await worker.generate_sequences(batch)

    out = asyncio.run(generate())
    assert out.batch["responses"].shape == (4, 48) and out.batch["position_ids"].shape == (4, 4, 1024 + 48)
    assert set(out.batch["response_mask"].unique().tolist()) <= {0, 1}
    assert torch.isfinite(out.batch["rollout_log_probs"]).all()
    assert {"pixel_values", "image_grid_thw"} <= set(out.non_tensor_batch["multi_modal_inputs"][0])
    assert (
        list(out.non_tensor_batch[F.TASK_ID])
        == [dataset[0]["extra_info"]["task_id"]] * 2 + [dataset[1]["extra_info"]["task_id"]] * 2
    )
    scores = out.batch["rm_scores"].sum(-1)
    assert torch.equal(scores, torch.tensor(list(out.non_tensor_batch["correctness"]), dtype=torch.float32))
    # verl's batch reward manager scores the same responses from the decoded text alone
    legacy = DataProto(
        batch=out.batch,
        non_tensor_batch={k: batch.non_tensor_batch[k] for k in ("data_source", "reward_model", "extra_info")},
    )
    legacy_scores = NaiveRewardManager(processor.tokenizer, 0, compute_score)(legacy).sum(-1)
    assert torch.equal(legacy_scores, scores * torch.tensor(out.non_tensor_batch[F.ANSWERED].astype(bool)))
    data = DataProto(batch=out.batch, non_tensor_batch={"uid": batch.non_tensor_batch["uid"]})
    data.batch["token_level_rewards"] = out.batch["rm_scores"]
    with sample_fields({key: out.non_tensor_batch[key] for key in F.ADVANTAGE_FIELDS}):
        advantages = compute_advantage(data, adv_estimator=ESTIMATOR, config=config.algorithm).batch["advantages"]
    for rows in ([0, 1], [2, 3]):
        parts = shape_group(
            [float(scores[i]) for i in rows], [out.non_tensor_batch[F.NUM_OPS][i] for i in rows], CuriosityConfig()
        )
        totals = torch.tensor([p.total for p in parts])
        expected = (totals - totals.mean()).unsqueeze(-1) * out.batch["response_mask"][rows]
        assert torch.allclose(advantages[rows], expected)


class InProcessActor:
    """Ray actor handle stand-in: `handle.method.remote(...)` calls the (async) method in this process."""

    def __init__(self, target: Any) -> None:
        self.target = target

    def __getattr__(self, name: str) -> Any:
        return types.SimpleNamespace(remote=getattr(self.target, name))


# ------------------------------------------------------------------------------------------------ launch


def test_launch_plan_composes_with_verl_config(tmp_path: Path) -> None:
    config = TrainConfig(
        name="v",
        out_dir=str(tmp_path),
        model="tiny-random",
        rl_steps=2,
        tasks_per_step=2,
        group_size=4,
        eval_tasks=2,
        sft_tasks=4,
        micro_batch_size=1,
        curiosity_alpha=0.4,
    )
    plan = plan_run(config, VerlSettings(gpus_per_node=2, dry_run=True))
    composed = compose_config(plan.rl_config.parent, plan.rl_config.stem, [])
    assert composed.algorithm.adv_estimator == ESTIMATOR and composed.algorithm.curiosity.alpha == 0.4
    assert composed.actor_rollout_ref.rollout.n == 4 and composed.trainer.v1.trainer_mode == "pixel_gym_sync"
    assert composed.actor_rollout_ref.actor.freeze_vision_tower is True  # as the local trainer: TrainConfig's default
    trained = plan_run(dataclasses.replace(config, name="t", train_vision_tower=True),
                       VerlSettings(gpus_per_node=2, dry_run=True))
    assert compose_config(trained.rl_config.parent, trained.rl_config.stem, []).actor_rollout_ref.actor \
        .freeze_vision_tower is False
    assert composed.actor_rollout_ref.model.custom_chat_template is None  # the env's prompt needs no tool template
    assert plan.rl_command[1:3] == ["-m", "verl.trainer.main_ppo"] and "verl.trainer.sft_trainer" in plan.sft_command
    for path in (plan.data.train, plan.data.val, plan.data.sft, plan.data.tool_config, plan.data.agent_loop_config):
        assert path.is_file()
    values = {"actor_rollout_ref.rollout.multi_turn.max_asistant_turns": 3}
    with pytest.raises(ValueError, match="max_asistant_turns"):
        validate(write_rl_config(values, tmp_path / "bad.yaml"), values)
    with pytest.raises(ValueError, match="PPO"):
        plan_run(TrainConfig(algorithm="ppo"), VerlSettings())


def test_sft_settings_follow_the_model_and_the_gpus() -> None:
    """A pretrained model gets 1e-5 unless --sft-lr says otherwise, the batch fills every GPU; the checks refuse
    what verl's sft_trainer would fail on (the old printed command: batch 4 on 8 GPUs, lr 2e-3 on a 7B)."""
    eight = VerlSettings(gpus_per_node=8)
    assert sft_settings(TrainConfig(model="Qwen/Qwen2.5-VL-7B-Instruct"), eight) == (8, 1e-5)
    assert sft_settings(TrainConfig(model="Qwen/Qwen2.5-VL-7B-Instruct", sft_lr=3e-5), eight) == (8, 3e-5)
    assert sft_settings(TrainConfig(model="tiny-random"), VerlSettings(gpus_per_node=2, nnodes=3)) == (6, 2e-3)
    with pytest.raises(ValueError, match="destroys the model"):
        check_sft(TrainConfig(model="Qwen/Qwen2.5-VL-7B-Instruct"), eight, 8, 5e-4)
    with pytest.raises(ValueError, match="multiple of the 8 GPUs"):
        check_sft(TrainConfig(), eight, 4, 1e-5)
    with pytest.raises(ValueError, match="no full SFT batch"):
        check_sft(TrainConfig(sft_tasks=4), eight, 8, 1e-5)


def test_preset_sampling_and_group_filter_reach_verl(tmp_path: Path) -> None:
    """`--preset pixel_reasoner`: the later-turn temperature goes to the agent loop's YAML, the group filter to the
    replay buffer verl loads; the dry run lists the fields verl does not use."""
    config = load_config(["--preset", "pixel_reasoner", "--model", "tiny-random", "--out-dir", str(tmp_path),
                          "--rl-steps", "1", "--tasks-per-step", "2", "--eval-tasks", "1", "--sft-tasks", "8",
                          "--suite-kwargs", json.dumps(KWARGS)])
    plan = plan_run(config, VerlSettings(gpus_per_node=2, dry_run=True))
    composed = compose_config(plan.rl_config.parent, plan.rl_config.stem, [])
    sampler = composed.trainer.v1.sampler
    buffer_class = load_extern_type(sampler.custom_sampler.path, sampler.custom_sampler.name)  # as verl loads it
    assert buffer_class.__name__ == "GroupFilterReplayBuffer"
    assert sampler.sampler_kwargs.group_filter_threshold == 0.01 and composed.actor_rollout_ref.rollout.n == 8
    assert (composed.actor_rollout_ref.rollout.top_p, composed.actor_rollout_ref.rollout.top_k) == (0.95, 40)
    loops = OmegaConf.load(plan.data.agent_loop_config)
    assert [(loop.name, loop.later_temperature) for loop in loops] == [(AGENT_NAME, 0.9)]
    assert set(plan.unmapped) == set(NO_VERL_MEANING) and "not used by verl: backend" in plan.describe()
    warm = plan_run(dataclasses.replace(config, init_from="Org/Warm"), VerlSettings(gpus_per_node=2, dry_run=True))
    assert compose_config(warm.rl_config.parent, warm.rl_config.stem, []).actor_rollout_ref.model.path == "Org/Warm"
    assert "later_temperature" in unmapped_fields(VerlSettings(agent=TOOL_AGENT))


def test_prepare_verl_cli_writes_the_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    prepare_verl.main(
        [
            "--train-size",
            "2",
            "--val-size",
            "1",
            "--sft-size",
            "0",
            "--budgets",
            "compact",
            "--suite-kwargs",
            json.dumps(KWARGS),
            "--agent",
            TOOL_AGENT,
            "--out",
            str(tmp_path),
        ]
    )
    assert {"train", "val", "sft", "tool_config", "agent_loop_config"} == {
        line.split(":")[0] for line in capsys.readouterr().out.splitlines()
    }
    assert len(pd.read_parquet(tmp_path / "train.parquet")) == 2 and len(pd.read_parquet(tmp_path / "sft.parquet")) == 0


def test_settings_come_from_train_config_fields() -> None:
    config = types.SimpleNamespace(nnodes=4, gpus_per_node=8, rollout_engine="sglang", extra_overrides=["a=1"])
    assert VerlSettings.from_config(config) == VerlSettings(nnodes=4, rollout_engine="sglang", extra_overrides=("a=1",))
    flags = load_config(
        ["--nnodes", "2", "--rollout-engine", "sglang", "--extra-overrides", '["trainer.val_before_train=false"]']
    )
    assert VerlSettings.from_config(flags) == VerlSettings(
        nnodes=2, rollout_engine="sglang", extra_overrides=("trainer.val_before_train=false",)
    )


def test_train_cli_backend_verl_dry_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        train_main(
            [
                "--backend",
                "verl",
                "--dry-run",
                "--out-dir",
                str(tmp_path),
                "--name",
                "v",
                "--rl-steps",
                "1",
                "--tasks-per-step",
                "2",
                "--eval-tasks",
                "1",
                "--sft-tasks",
                "4",
                "--model",
                "tiny-random",
                "--gpus-per-node",
                "2",
                "--suite-kwargs",
                json.dumps(KWARGS),
            ]
        )
    assert exit_info.value.code == 0
    assert "verl.trainer.main_ppo" in capsys.readouterr().out
    assert (tmp_path / "v" / "verl" / "pixel_gym_grpo.yaml").is_file()
    with pytest.raises(ValueError, match="rollout_engine"):
        VerlSettings(rollout_engine="hf")


def test_plugin_registers_everything_when_verl_imports_it() -> None:
    code = (
        "import verl\nfrom verl.trainer.ppo import core_algos\n"
        "from verl.experimental.agent_loop.agent_loop import _agent_loop_registry as loops\n"
        "from verl.experimental.agent_loop.tool_parser import ToolParser\n"
        "from verl.trainer.ppo.v1.trainer_base import get_trainer_cls\n"
        "print(core_algos.get_adv_estimator_fn('grpo_curiosity').__name__, 'pixel_gym_agent' in loops,\n"
        "      'pixel_gym' in ToolParser._registry, get_trainer_cls('pixel_gym_sync').__name__)"
    )
    env = {
        **os.environ,
        "VERL_USE_EXTERNAL_MODULES": "rl_runner.verl_backend.plugin",
        "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
    }
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert result.stdout.split() == ["compute_grpo_curiosity_advantage", "True", "True", "PixelGymSyncTrainer"], \
        result.stderr[-2000:]


def test_a_video_question_reaches_verl_as_its_frames(caplog: pytest.LogCaptureFixture) -> None:
    """verl's rows and tool responses take images only: the one video input goes as 16 frame images."""
    from pixel_gym.env import PixelVQAEnv
    from rl_runner.verl_backend.messages import chat_images, to_chat

    env = PixelVQAEnv(suite="video", size=1)
    obs, _ = env.reset(seed=0)
    video = next(p["video"] for m in obs["messages"] for p in m["content"] if p["type"] == "video")
    with caplog.at_level("WARNING"):
        chat = to_chat(obs["messages"])
        rows, images = placeholder_messages(obs["messages"])
    frames = chat_images(chat)
    assert len(frames) == len(video) == 16 and len(images) == 16
    assert frames[3].size == (video[3].shape[1], video[3].shape[0])
    question = obs["messages"][-1]["content"][-1]["text"]
    assert rows[-1]["content"].count("<image>") == 16 and rows[-1]["content"].endswith(question)
