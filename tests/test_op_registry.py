"""Pixel operations as plug-ins: the registry, the env's `ops=`, the built-in extra ops, entry points, the example."""

from __future__ import annotations

import importlib.util
import logging
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import ModuleType

import gymnasium as gym
import numpy as np
import pytest
import torch

from pixel_gym import prompts
from pixel_gym.actions import Answer, Invalid, SelectFrames, format_tool_call, from_structured, parse_turn
from pixel_gym.env import PixelVQAEnv
from pixel_gym.ops import DEFAULT_OPS, OpCall, get_op, image_result, register_op, registry, resolve_ops
from pixel_gym.suites import make_suite
from pixel_gym.tasks import Task
from pixel_gym.wrappers import DiscreteZoomWrapper
from rl_runner.traces import synthesize

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "docs" / "examples" / "custom_op.py"
ALL_BUILT_IN = ("crop_image_normalized", "select_frames", "rotate_image", "enhance_contrast")
PICTURE = np.random.default_rng(0).integers(100, 140, size=(224, 336, 3), dtype=np.uint8)  # low contrast, 28-px grid


def picture_env(ops: tuple[str, ...] = ALL_BUILT_IN) -> PixelVQAEnv:
    task = Task("picture/0", "Which one?", ("A",), "choice", images=(PICTURE,), choices=("x", "y"))
    env = PixelVQAEnv(tasks=[task], ops=ops, max_ops=8, max_turns=10)
    env.reset(options={"index": 0})
    return env


def call(env: PixelVQAEnv, name: str, **arguments: object) -> tuple[dict, dict]:
    observation, _, _, _, info = env.step(format_tool_call(name, arguments))
    return observation, info


def test_the_default_ops_are_the_released_two_read_from_the_registry() -> None:
    env = PixelVQAEnv(size=2)
    assert tuple(op.name for op in env.ops) == DEFAULT_OPS == ("crop_image_normalized", "select_frames")
    assert get_op("crop_image_normalized").schema is prompts.CROP_TOOL
    assert get_op("select_frames").schema is prompts.SELECT_FRAMES_TOOL
    assert set(ALL_BUILT_IN) <= set(registry)
    observation, _ = env.reset(seed=0)
    assert observation["messages"][0]["content"][0]["text"] == prompts.system_prompt(
        [prompts.CROP_TOOL, prompts.SELECT_FRAMES_TOOL]
    )
    rotate = parse_turn(format_tool_call("rotate_image", {"target_image": 1, "angle": 90}))
    assert isinstance(rotate, Invalid) and rotate.tool_call
    assert rotate.message == "unknown tool 'rotate_image'; available tools: crop_image_normalized, select_frames"


def test_rotate_and_enhance_contrast_when_offered() -> None:
    env = picture_env()
    tools = prompts.tools_for(False, env.ops)
    assert [tool["function"]["name"] for tool in tools] == list(ALL_BUILT_IN)
    assert env.episode.messages[0]["content"][0]["text"] == prompts.system_prompt(tools)
    observation, info = call(env, "rotate_image", target_image=1, angle=90)
    assert observation["messages"][-1]["content"][0]["text"] == "\nHere is the rotated image (Image Size: 224x336):"
    assert np.array_equal(observation["images"][1], np.rot90(PICTURE))  # counter-clockwise, lossless
    observation, info = call(env, "enhance_contrast", target_image=2)
    assert observation["messages"][-1]["content"][0]["text"] == "\nHere is the enhanced image (Image Size: 224x336):"
    enhanced = observation["images"][2]
    assert PICTURE.max() - PICTURE.min() < 40 and enhanced.min() == 0 and enhanced.max() == 255
    observation, info = call(env, "crop_image_normalized", bbox_2d=[0.2, 0.2, 0.5, 0.5], target_image=3)
    assert info["last_error"] == "" and info["num_ops"] == 3 and len(observation["images"]) == 4
    assert [op.tool for op in env.episode.ops] == ["rotate_image", "enhance_contrast", "crop_image_normalized"]
    assert [op.view for op in env.episode.ops] == [0, 1, 2]
    # a generic call of an op with its own argument type is read by that op's parser
    _, _, _, _, info = env.step(OpCall("crop_image_normalized", {"bbox_2d": [0.1, 0.1, 0.6, 0.6], "target_image": 1}))
    assert info["last_error"] == "" and env.episode.ops[-1].region == (0, 0, 235, 157)


@pytest.mark.parametrize(
    ("name", "arguments", "message"),
    [
        ("rotate_image", {"target_image": 1, "angle": 45}, "angle must be 90, 180 or 270, got 45"),
        ("rotate_image", {"target_image": 1}, "angle is missing: rotate_image needs target_image, angle"),
        ("rotate_image", {"target_image": "one", "angle": 90}, "target_image must be an integer"),
        ("enhance_contrast", {"target_image": 2}, "target_image 2 does not exist"),
        ("select_frames", {"target_frames": [1]}, "select_frames works on videos only"),
    ],
)
def test_op_errors_are_counted_execution_errors(name: str, arguments: dict, message: str) -> None:
    env = picture_env()
    observation, info = call(env, name, **arguments)
    assert message in info["last_error"] and info["num_tool_calls"] == 1 and info["num_ops"] == 0
    assert observation["messages"][-1]["content"][0]["text"] == prompts.error_text(info["last_error"])


def test_registering_and_choosing_ops(caplog: pytest.LogCaptureFixture) -> None:
    schema = {"name": "invert_colors", "description": "Invert an image.",
              "parameters": {"type": "object", "properties": {"target_image": {"type": "number"}},
                             "required": ["target_image"]}}

    def invert(context, action):
        target = context.target(action.arguments["target_image"])
        return image_result(context, target, target.image.point(lambda v: 255 - v), "inverted")

    try:
        register_op("invert_colors", schema, invert)
        with caplog.at_level(logging.WARNING):
            op = register_op("invert_colors", schema, invert)  # as gymnasium's register: replaced, with a warning
        assert "Overriding op invert_colors" in caplog.text and get_op("invert_colors") is op
        assert op.schema == {"type": "function", "function": schema}
        env = picture_env(("invert_colors",))
        assert parse_turn(format_tool_call("invert_colors", {"target_image": 1}), ops=env.ops) == OpCall(
            "invert_colors", {"target_image": 1})
        observation, info = call(env, "invert_colors", target_image=1)
        assert info["num_ops"] == 1 and np.array_equal(observation["images"][1], 255 - PICTURE)
        assert from_structured(OpCall("invert_colors", {"target_image": 1})) == OpCall("invert_colors",
                                                                                      {"target_image": 1})
        register_op("invert_colors", schema, lambda context, action: {}["oops"])  # a plug-in with a bug
        with caplog.at_level(logging.WARNING):
            _, info = call(picture_env(("invert_colors",)), "invert_colors", target_image=1)
        assert info["last_error"] == "invert_colors failed: KeyError: 'oops'" and info["num_tool_calls"] == 1
        assert "op invert_colors raised KeyError" in caplog.text
    finally:
        registry.pop("invert_colors", None)
    with pytest.raises(ValueError, match="is named 'other'"):
        register_op("invert_colors", {**schema, "name": "other"}, invert)
    with pytest.raises(ValueError, match="no pixel operation 'nope'; registered: .*crop_image_normalized"):
        resolve_ops(["nope"])
    with pytest.raises(ValueError, match="at least one"):
        resolve_ops([])
    with pytest.raises(ValueError, match="offered twice.*select_frames"):
        PixelVQAEnv(size=2, ops=["select_frames", "select_frames"])


def test_structured_action_space_holds_the_forms_of_the_offered_ops() -> None:
    assert len(PixelVQAEnv(size=2).action_space.spaces) == 4  # text, zoom, frames, answer: as released
    frames_only = PixelVQAEnv(size=2, ops=["select_frames"])
    assert len(frames_only.action_space.spaces) == 3
    assert from_structured((1, np.array([0, 1, 1])), ops=frames_only.ops) == SelectFrames((2, 3))
    assert from_structured((2, "B"), ops=frames_only.ops) == Answer("B")
    no_forms = ("rotate_image", "enhance_contrast")
    assert len(PixelVQAEnv(size=2, ops=no_forms).action_space.spaces) == 2
    assert from_structured((1, "B"), ops=no_forms) == Answer("B")
    unknown = from_structured((2, "B"), ops=no_forms)
    assert isinstance(unknown, Invalid) and "expected 0 (text), 1 (answer)" in unknown.message


def test_the_discrete_wrapper_exposes_each_ops_discrete_actions() -> None:
    ops = ("crop_image_normalized", "rotate_image", "enhance_contrast")
    env = DiscreteZoomWrapper(gym.make("PixelVQA-FineDetail-v0", size=3, ops=ops), scales=(2,))
    assert env.action_space.n == 4 + 3 + 1 + 4  # 2x2 zooms, 3 rotations, 1 contrast, 4 letters
    env.reset(seed=0)
    assert env.action_masks()[:8].all()
    _, _, _, _, info = env.step(4)
    assert info["last_error"] == "" and env.unwrapped.episode.ops[-1].tool == "rotate_image"
    _, _, _, _, info = env.step(7)
    assert info["num_ops"] == 2 and env.unwrapped.episode.ops[-1].tool == "enhance_contrast"
    assert len(DiscreteZoomWrapper(gym.make("PixelVQA-FineDetail-v0", size=3), scales=(2,)).op_choices) == 4


def test_traces_without_an_op_trace_step_are_text_only() -> None:
    suite = make_suite("fine_detail", size=3, seed=0)
    traces = synthesize(suite, PixelVQAEnv(tasks=suite, budgets="compact", ops=["rotate_image"]), progress=False)
    assert [trace.kind for trace in traces] == ["text_only"] * 3 and all(trace.correct for trace in traces)


def test_the_verl_tools_offer_the_envs_ops(tmp_path: Path) -> None:
    import asyncio
    import json

    from verl.experimental.agent_loop.tool_agent_loop import AgentData
    from verl.tools.tool_registry import initialize_tools_from_config

    from rl_runner.verl_backend.specs import EnvSettings, suite_task_spec
    from rl_runner.verl_backend.tools import tool_config

    settings = EnvSettings(ops=("crop_image_normalized", "rotate_image"))
    assert EnvSettings.from_json(settings.to_json()) == settings
    path = tmp_path / "tools.yaml"
    path.write_text(json.dumps(tool_config(settings.ops)))
    crop, rotate = initialize_tools_from_config(str(path))  # verl's own loader
    assert (crop.name, rotate.name) == settings.ops and rotate.tool_schema.function.name == "rotate_image"
    create = {"task": suite_task_spec(make_suite("fine_detail", size=1, seed=0), 0, {}), "env": settings.to_json()}
    agent_data = AgentData([], [], None, None, None, {}, "request", {"rotate_image": {"create_kwargs": create}})
    response, _, info = asyncio.run(rotate.execute("i", {"target_image": 1, "angle": 180}, agent_data=agent_data))
    assert info["error"] == "" and len(response.image) == 1
    assert response.text.startswith("\nHere is the rotated image")


def test_a_package_registers_ops_through_the_entry_point_group(tmp_path: Path) -> None:
    (tmp_path / "flip_plugin.py").write_text(textwrap.dedent("""
        from PIL import ImageOps

        from pixel_gym.ops import image_result, register_op

        SCHEMA = {"name": "flip_vertical", "description": "Turn an image upside down.", "parameters": {
            "type": "object", "properties": {"target_image": {"type": "number"}}, "required": ["target_image"]}}


        def flip(context, call):
            target = context.target(call.arguments["target_image"])
            return image_result(context, target, ImageOps.flip(target.image), "flipped")


        def register():
            register_op("flip_vertical", SCHEMA, flip)
    """))
    info = tmp_path / "flip_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: flip-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[pixel_gym.ops]\nflip_vertical = flip_plugin:register\n")
    code = (
        "import gymnasium as gym, pixel_gym; from pixel_gym.ops import format_tool_call\n"
        "env = gym.make('PixelVQA-FineDetail-v0', size=2, ops=['crop_image_normalized', 'flip_vertical'])\n"
        "env.reset(seed=0)\n"
        "observation, *_ = env.step(format_tool_call('flip_vertical', {'target_image': 1}))\n"
        "print(observation['messages'][-1]['content'][0]['text'])\n"
    )
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)]), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", code], env=environment, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("\nHere is the flipped image (Image Size: ")


def test_the_custom_op_example_runs() -> None:
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(EXAMPLE)], cwd=ROOT, env=environment, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("\nHere is the flipped image (Image Size: ") and "correctness" in done.stdout
    assert len(EXAMPLE.read_text().splitlines()) <= 30


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("custom_op_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_one_sft_step_on_traces_that_use_the_custom_op(tiny_model_path: Path) -> None:
    from transformers import AutoModelForImageTextToText

    from agents.chat import load_processor
    from rl_runner.sft import train_sft

    example = load_example()
    suite = make_suite("fine_detail", size=2, seed=0)
    env = PixelVQAEnv(tasks=suite, budgets="compact", ops=["flip_horizontal", "crop_image_normalized"])
    traces = synthesize(suite, env, self_correct_fraction=0.0, progress=False)
    assert [trace.kind for trace in traces] == ["direct", "direct"] and all(trace.correct for trace in traces)
    for trace in traces:
        assert trace.messages[2]["content"][0]["text"].endswith(example.FLIP_CALL)
        assert trace.messages[3]["content"][0]["text"].startswith("\nHere is the flipped image")
    model = AutoModelForImageTextToText.from_pretrained(tiny_model_path, dtype=torch.float32)
    before = [p.detach().clone() for p in model.parameters()]
    log = train_sft(model, load_processor(tiny_model_path), [t.messages for t in traces], epochs=1, lr=1e-3,
                    batch_size=2, progress=False)
    assert len(log) == 1 and math.isfinite(log[0]["loss"])
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
