"""PixelVQAEnv: the gym contract, the op flow, bad input, caching, rendering and vector envs."""

from __future__ import annotations

import io

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

import pixel_gym  # noqa: F401  (registers the env ids)
from pixel_gym.actions import ANSWER, ZOOM, format_tool_call
from pixel_gym.env import PixelVQAEnv
from pixel_gym.reward import CuriosityConfig
from pixel_gym.tasks import Box, ImageLoadError, ImageRef, Task


def crop(bbox: list[float], target: int = 1) -> str:
    return "Let me look closer.\n" + format_tool_call(
        "crop_image_normalized", {"bbox_2d": bbox, "target_image": target}
    )


class CountingFactory:
    """An image factory that counts how often the image is decoded."""

    def __init__(self, size: tuple[int, int] = (1600, 1200)) -> None:
        self.size, self.calls = size, 0

    def __call__(self) -> Image.Image:
        self.calls += 1
        rng = np.random.default_rng(0)
        return Image.fromarray(rng.integers(0, 255, (self.size[1], self.size[0], 3), dtype=np.uint8))


def image_task(task_id: str = "t/0", image: object | None = None) -> Task:
    return Task(
        task_id,
        "What colour is the tag?",
        ("B",),
        "choice",
        images=(image if image is not None else CountingFactory(),),
        choices=("red", "blue"),
        target_boxes=(Box(100, 100, 160, 140),),
    )


def video_task(num_frames: int = 32) -> Task:
    frames = tuple(np.full((90, 160, 3), i * 7, dtype=np.uint8) for i in range(num_frames))
    return Task("v/0", "Which symbol flashed?", ("A",), "choice", video=frames, choices=("x", "o"), key_frames=(5,))


def test_gym_make_works_offline_and_passes_the_checker() -> None:
    for env_id in pixel_gym.ENV_IDS:
        env = gym.make(env_id, size=20)
        check_env(env.unwrapped)
        env.close()


def test_check_env_with_custom_tasks_and_render() -> None:
    check_env(PixelVQAEnv(tasks=[image_task("a"), image_task("b")], render_mode="rgb_array"))


def test_reset_is_deterministic_for_a_seed() -> None:
    env = gym.make("PixelVQA-FineDetail-v0")
    first, _ = env.reset(seed=11)
    second, _ = env.reset(seed=11)
    assert first["question"] == second["question"]
    assert all(np.array_equal(a, b) for a, b in zip(first["images"], second["images"]))


def test_zoom_then_answer_flow_with_curiosity_reward() -> None:
    factory = CountingFactory()
    env = PixelVQAEnv(tasks=[image_task(image=factory)], curiosity=CuriosityConfig())
    obs, info = env.reset(seed=0)
    assert len(obs["images"]) == 1 and info["num_ops"] == 0
    assert (
        obs["messages"][0]["role"] == "system" and "crop_image_normalized" in obs["messages"][0]["content"][0]["text"]
    )
    obs, reward, terminated, truncated, info = env.step(crop([0.1, 0.1, 0.2, 0.2]))
    assert (reward, terminated, truncated) == (0.0, False, False)
    assert len(obs["images"]) == 2 and info["num_ops"] == 1 and info["last_error"] == ""
    assert obs["messages"][-1]["content"][0]["text"].startswith("\nHere is the cropped image (Image Size: ")
    obs, reward, terminated, truncated, info = env.step(crop([0.0, 0.0, 0.5, 0.5], target=2))
    obs, reward, terminated, truncated, info = env.step("It is blue. \\boxed{B}")
    assert terminated and not truncated
    assert info["correctness"] == 1.0 and info["num_ops"] == 2
    # first episode of this question: RaPR 1.0 >= H, so no bonus; 2 ops > N=1 costs 0.05
    assert reward == pytest.approx(1.0 - 0.05)
    assert factory.calls == 1  # decoded once: the zooms cut the global view as kept
    with pytest.raises(RuntimeError, match="reset"):
        env.step("\\boxed{B}")


def test_legacy_source_crops_map_back_to_source_pixels() -> None:
    """crop_from="source" and normalized_if="all_at_most_1": pixel-gym's older rules, as named options."""
    env = PixelVQAEnv(tasks=[image_task()], padding=0.0, crop_from="source", normalized_if="all_at_most_1")
    env.reset(seed=0)
    env.step(crop([800, 600, 1600, 1200]))  # pixels of the 1600x1200 original
    env.step(crop([0.5, 0.5, 1.0, 1.0], target=2))
    regions = [op.region for op in env.episode.ops]
    assert regions == [(800, 600, 1600, 1200), (1200, 900, 1600, 1200)]


def test_curiosity_bonus_when_question_rarely_uses_ops() -> None:
    env = PixelVQAEnv(tasks=[image_task()], curiosity={"alpha": 0.5}, rapr_window=8)
    for _ in range(3):  # three episodes answering without looking
        env.reset(options={"index": 0})
        env.step("\\boxed{A}")
    env.reset(options={"index": 0})
    env.step(crop([0.1, 0.1, 0.2, 0.2]))
    _, reward, *_, info = env.step("\\boxed{B}")
    assert info["rapr"] == pytest.approx(0.25)
    # the paper's hinge: 0.5 * max(0.3 - 0.25, 0) = 0.025
    assert info["reward_parts"] == pytest.approx({"correctness": 1.0, "curiosity": 0.025, "penalty": 0.0})
    assert reward == pytest.approx(1.025)


@pytest.mark.parametrize(
    ("action", "message", "tool_calls"),
    [
        ("<tool_call>{bad json</tool_call>", "not valid JSON", 1),
        (crop([0.1, 0.1, 0.2, 0.2], target=5), "does not exist", 1),
        (crop([2000, 2000, 2100, 2100]), "too small: 0x0", 1),
        (crop([0.9, 0.3, 0.1, 0.4]), "inverted even after padding", 1),
        ('<tool_call>{"name": "select_frames", "arguments": {"target_frames": [1]}}</tool_call>', "videos only", 1),
        ('<tool_call>{"name": "paint", "arguments": {}}</tool_call>', "unknown tool", 1),
        (12345, "must be text", 0),
        ((ZOOM, {"bbox": [0.9, 0.5, 0.1, 0.6], "target_image": 0}), "inverted", 1),
        ((ZOOM, {"bbox": np.zeros(4), "target_image": float("inf")}), "whole number", 1),
        ((ZOOM, np.zeros(4)), "a dict with 'bbox'", 1),
    ],
)
def test_bad_actions_give_error_observations_and_the_episode_goes_on(
    action: object, message: str, tool_calls: int
) -> None:
    env = PixelVQAEnv(tasks=[image_task()])
    env.reset(seed=0)
    obs, reward, terminated, truncated, info = env.step(action)
    assert not terminated and not truncated and reward == 0.0
    assert message in info["last_error"] and info["num_errors"] == 1
    # every tool-call attempt counts for RaPR and the op penalty (the released code's rule); none succeeded
    assert info["num_tool_calls"] == tool_calls and info["num_ops"] == 0
    assert obs["messages"][-1]["content"][0]["text"] == f"\nExecution error:\n{info['last_error']}\n"
    _, reward, terminated, _, info = env.step((ANSWER, "B"))
    assert terminated and info["correctness"] == 1.0
    assert reward == pytest.approx(1.0)  # first episode of the question: RaPR >= H, one call is free


def test_legacy_op_limit_gives_an_error_and_the_turn_limit_ends() -> None:
    env = PixelVQAEnv(tasks=[image_task()], max_ops=2, max_turns=4, end_at_limits=False, parser="lenient")
    env.reset(seed=0)
    env.step(crop([0.1, 0.1, 0.2, 0.2]))
    env.step(crop([0.1, 0.1, 0.2, 0.2]))
    _, _, _, truncated, info = env.step(crop([0.1, 0.1, 0.2, 0.2]))
    assert "limit of 2 tool calls" in info["last_error"] and not truncated
    _, reward, terminated, truncated, info = env.step("hmm")  # the lenient parser: no answer, an error
    assert truncated and not terminated and info["correctness"] == 0.0 and info["answer"] == ""
    assert info["end"] == "max_turns"


def test_video_select_frames_returns_full_resolution_frames() -> None:
    env = PixelVQAEnv(tasks=[video_task()], budgets="compact")
    obs, _ = env.reset(seed=0)
    assert len(obs["images"]) == 16 and obs["images"][0].shape[0] * obs["images"][0].shape[1] <= 16 * 28 * 28
    obs, *_, info = env.step('<tool_call>{"name": "select_frames", "arguments": {"target_frames": [3, 9]}}</tool_call>')
    assert info["num_ops"] == 1 and len(obs["images"]) == 18
    assert obs["images"][-2].shape[:2] == (84, 168)  # 160x90 source on the 28-px grid
    assert env.episode.ops[-1].frames == (5, 17)  # shown frame 3 is video frame 5
    *_, info = env.step('<tool_call>{"name": "select_frames", "arguments": {"target_frames": [17]}}</tool_call>')
    assert "out of range" in info["last_error"]


def jpeg_file(path, size=(2246, 1582)) -> str:
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path, quality=85)
    return str(path)


def test_jpeg_global_view_uses_draft_and_full_decode_is_cached(tmp_path) -> None:
    env = PixelVQAEnv(tasks=[image_task(image=jpeg_file(tmp_path / "v.jpg"))], budgets="compact")
    obs, _ = env.reset(seed=0)
    assert env.episode._decoded == {}  # the global view came from a draft decode
    env.step(crop([0.1, 0.1, 0.3, 0.3]))
    assert env.episode._decoded == {}  # released crops cut the global view as kept: no full decode at all
    env = PixelVQAEnv(tasks=[image_task(image=jpeg_file(tmp_path / "v.jpg"))], budgets="compact", crop_from="source")
    env.reset(seed=0)
    env.step(crop([0.1, 0.1, 0.3, 0.3]))
    decoded = env.episode._decoded[0]
    assert decoded.size == (2246, 1582)
    env.step(crop([0.5, 0.5, 0.7, 0.7]))
    assert env.episode._decoded[0] is decoded


def test_broken_images_are_skipped_when_sampling_and_reported_when_chosen(tmp_path) -> None:
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"not an image")
    good = io.BytesIO()
    Image.new("RGB", (640, 480)).save(good, format="PNG")
    tasks = [
        image_task("bad", image=ImageRef(corrupt)),
        image_task("missing", image=str(tmp_path / "nope.png")),
        image_task("good", image=good.getvalue()),
    ]
    env = PixelVQAEnv(tasks=tasks)
    seen = {env.reset(seed=s)[1]["task_id"] for s in range(10)}
    assert seen == {"good"}
    with pytest.raises(ImageLoadError, match="corrupt.jpg"):
        env.reset(options={"index": 0})


def test_render_draws_zoom_boxes() -> None:
    env = PixelVQAEnv(tasks=[image_task(image=np.zeros((1200, 1600, 3), np.uint8))], render_mode="rgb_array")
    env.reset(seed=0)
    before = env.render()
    env.step(crop([0.4, 0.4, 0.6, 0.6]))
    after = env.render()
    assert before.dtype == np.uint8 and before.ndim == 3
    # the overview panel was black; the zoom box is drawn in red on it
    assert (after[..., 0] > 200).sum() > (before[..., 0] > 200).sum() + 100


def test_render_video_marks_selected_frames() -> None:
    env = PixelVQAEnv(tasks=[video_task()], render_mode="rgb_array")
    env.reset(seed=0)
    env.step('<tool_call>{"name": "select_frames", "arguments": {"target_frames": [2]}}</tool_call>')
    frame = env.render()
    assert frame.ndim == 3 and frame.shape[2] == 3


@pytest.mark.parametrize("vector_cls", [gym.vector.SyncVectorEnv, gym.vector.AsyncVectorEnv])
def test_vector_envs(vector_cls) -> None:
    kwargs = {"shared_memory": False} if vector_cls is gym.vector.AsyncVectorEnv else {}
    envs = vector_cls([lambda: gym.make("PixelVQA-FineDetail-v0", size=50) for _ in range(2)], **kwargs)
    obs, infos = envs.reset(seed=[1, 2])
    assert len(obs["question"]) == 2 and len(obs["images"]) == 2
    obs, rewards, terminated, truncated, infos = envs.step(("\\boxed{A}", crop([0.1, 0.1, 0.3, 0.3])))
    assert list(terminated) == [True, False] and infos["num_ops"].tolist() == [0, 1]
    envs.close()


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**12), 10**12) | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=10,
)
_FUZZ_ENV = PixelVQAEnv(tasks=[image_task(image=np.zeros((300, 400, 3), np.uint8))], max_turns=50, max_ops=50)


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from(["crop_image_normalized", "crop_image", "image_zoom_in_tool", "select_frames", "zoom"]),
    st.fixed_dictionaries({}, optional={"bbox_2d": _JSON, "target_image": _JSON, "target_frames": _JSON}),
    st.lists(st.floats(-2, 3000, allow_nan=False), min_size=4, max_size=4),
    st.integers(-3, 4),
)
def test_executor_fuzz_never_crashes_the_episode(name: str, arguments: dict, box: list, target: int) -> None:
    """Random tool calls (and random well-formed boxes) give an image or an execution error, never an exception."""
    env = _FUZZ_ENV
    env.reset(seed=0)
    for args in (arguments, {"bbox_2d": box, "target_image": target}):
        obs, reward, terminated, truncated, info = env.step(format_tool_call(name, args))
        assert not terminated and reward == 0.0
        last = obs["messages"][-1]["content"]
        assert (info["last_error"] and last[0]["text"].startswith("\nExecution error:")) or last[-1]["type"] == "image"
