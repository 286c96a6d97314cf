"""The released video protocol: one Qwen video input, select_frames results, frame numbering for target_image.

Hand-worked sizes (smart_resize, factor 28) for 16 source frames of 1280x720 (921,600 px):
- shown frame, 128..512 x 28^2 px: 1288x728 is over 401,408 px, so scale = sqrt(921600 / 401408) = 1.5152;
  1280 / 1.5152 / 28 = 30.17 -> 30 x 28 = 840, 720 / 1.5152 / 28 = 16.97 -> 16 x 28 = 448: 840x448, 480 x 28^2 px.
- selected frame in training, 4..400 x 28^2 px, from the 840x448 frame as shown: 376,320 px is over 313,600, so
  scale = sqrt(1.2) = 1.0954; 840 / 1.0954 / 28 = 27.39 -> 756, 448 / 1.0954 / 28 = 14.61 -> 392: 756x392.
- selected frame at evaluation: the frame as shown, 840x448 (already on the grid and inside 128..512 x 28^2 px).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from pixel_gym.actions import format_tool_call
from pixel_gym.env import PixelVQAEnv
from pixel_gym.tasks import Task

PATCH_AREA = 28 * 28


def video_env(budgets: str = "paper_train") -> tuple[PixelVQAEnv, dict]:
    """16 solid frames of 1280x720; frame k (1-based) has gray value 10 * (k - 1), so frames are identifiable.
    Returns the env after reset and the first observation."""
    frames = [np.full((720, 1280, 3), 10 * i, dtype=np.uint8) for i in range(16)]
    env = PixelVQAEnv(tasks=[Task("v", "Which frame is brightest?", ("16",), "exact", video=frames)], budgets=budgets)
    obs, _ = env.reset(seed=0)
    return env, obs


def shown_video(obs: dict) -> list[np.ndarray]:
    user = next(m for m in obs["messages"] if m["role"] == "user")
    return user["content"][0]["video"]


def select(frames: list[int]) -> str:
    return format_tool_call("select_frames", {"target_frames": frames})


def crop(target: int) -> str:
    return format_tool_call("crop_image_normalized", {"bbox_2d": [0.2, 0.2, 0.6, 0.6], "target_image": target})


def last_parts(obs: dict) -> list[dict]:
    return obs["messages"][-1]["content"]


@pytest.mark.parametrize("budgets", ["paper_train", "paper_eval"])
def test_a_video_question_shows_one_video_part_of_16_frames(budgets: str) -> None:
    env, obs = video_env(budgets)
    user = next(m for m in obs["messages"] if m["role"] == "user")
    assert [part["type"] for part in user["content"]] == ["video", "text"]  # video first, then the question
    frames = user["content"][0]["video"]
    assert len(frames) == 16 and all(frame.shape == (448, 840, 3) for frame in frames)
    assert 840 * 448 == 480 * PATCH_AREA <= 512 * PATCH_AREA  # within 512 x 28^2 px after rounding down
    assert [int(frame[0, 0, 0]) for frame in frames] == [10 * i for i in range(16)]
    assert env.observation_space.contains(obs)
    assert env.episode.num_images == 1  # the video counts as one picture against the image limit


def test_select_frames_in_training_resizes_the_shown_frames_into_400_tokens_and_keeps_duplicates() -> None:
    env, _ = video_env("paper_train")
    obs, _, terminated, _, info = env.step(select([3, 3, 16]))
    parts = last_parts(obs)
    assert not terminated and info["num_ops"] == 1
    assert parts[0] == {"type": "text",
                        "text": "\nHere are the selected frames (Frame Size: 756x392, Numbered 1 to 3):"}
    images = [part["image"] for part in parts[1:]]
    assert [image.shape for image in images] == [(392, 756, 3)] * 3
    assert [int(image[0, 0, 0]) for image in images] == [20, 20, 150]  # frames 3, 3 (kept twice) and 16
    assert env.episode.ops[-1].frames == (2, 2, 15)
    assert env.episode.num_images == 4


def test_select_frames_at_evaluation_returns_the_frames_as_shown_then_served_as_images() -> None:
    """The kept frames are the 840x448 frames of the video; as images the serving engine re-resizes them into
    512..5120 x 28^2 px: 376,320 px is under 401,408, so scale = sqrt(401408 / 376320) = 1.0328;
    840 * 1.0328 / 28 = 30.98 -> 31 x 28 = 868, 448 * 1.0328 / 28 = 16.52 -> 17 x 28 = 476. The text keeps 840x448."""
    env, obs = video_env("paper_eval")
    shown = shown_video(obs)
    obs, *_ = env.step(select([5, 1]))
    parts = last_parts(obs)
    assert parts[0]["text"] == "\nHere are the selected frames (Frame Size: 840x448, Numbered 1 to 2):"
    kept = env.episode.added_views
    assert np.array_equal(np.asarray(kept[0].image), shown[4]) and np.array_equal(np.asarray(kept[1].image), shown[0])
    assert [part["image"].shape for part in parts[1:]] == [(476, 868, 3)] * 2
    assert int(parts[1]["image"][0, 0, 0]) == 40 and int(parts[2]["image"][0, 0, 0]) == 0


def test_a_second_selection_is_numbered_after_the_pictures_already_added() -> None:
    env, _ = video_env()
    env.step(select([1, 2, 3]))
    obs, *_ = env.step(select([8]))
    assert last_parts(obs)[0]["text"] == "\nHere are the selected frames (Frame Size: 756x392, Numbered 4 to 4):"


@pytest.mark.parametrize(
    ("frames", "message"),
    [
        ([17], "There are 16 frames numbered in range [1,16]. Your selection is out of range."),
        ([0, 2], "There are 16 frames numbered in range [1,16]. Your selection is out of range."),
        (list(range(1, 10)), "You have selected 9 frames in total. Think again which frames you need to check in "
                             "details (no more than 8 frames)"),
        ([], "target_frames is empty"),
    ],
)
def test_bad_selections_are_error_observations(frames: list[int], message: str) -> None:
    env, _ = video_env()
    obs, _, terminated, _, info = env.step(select(frames))
    assert not terminated and info["num_ops"] == 0 and info["num_tool_calls"] == 1
    assert message in info["last_error"] and message in last_parts(obs)[0]["text"]
    assert len(last_parts(obs)) == 1  # no image follows an error


def test_before_any_added_picture_target_image_k_is_frame_k() -> None:
    env, _ = video_env()
    env.step(crop(5))
    assert env.episode.ops[-1].ok and env.episode.ops[-1].view == 4  # 0-based view 4: the 5th shown frame
    assert env.episode.views[-1].source == 4


def test_after_a_selection_target_image_numbers_the_added_pictures() -> None:
    """REFERENCE.md: after a selection, target_image 2 is the first selected frame (the video is picture 1 and
    cannot be cropped); the shown frames are no longer targets."""
    env, _ = video_env()
    env.step(select([9, 3]))
    env.step(crop(3))  # the second selected frame: video frame 3
    assert env.episode.ops[-1].ok and env.episode.ops[-1].view == 17 and env.episode.views[-1].source == 2
    env.step(crop(2))  # the first selected frame: video frame 9
    assert env.episode.ops[-1].ok and env.episode.ops[-1].view == 16 and env.episode.views[-1].source == 8
    *_, info = env.step(crop(1))  # the video itself; 4 pictures added so far: 2 frames, 2 crops -> 2..5
    assert "Incorrect `target_image`. You can only select a previous frame within [2,5]" in info["last_error"]
    env, _ = video_env()
    env.step(select([9, 3]))
    *_, info = env.step(crop(4))  # past the two selected frames
    assert "within [2,3]" in info["last_error"]


def test_target_image_past_the_16_frames_is_an_error() -> None:
    env, _ = video_env()
    *_, info = env.step(crop(17))
    assert "Incorrect `target_image`. You can only select frames in the given video within [1,16]" in info["last_error"]


def test_compact_selects_from_the_full_resolution_source() -> None:
    """pixel-gym's compact option: low-resolution video (<= 16 x 28^2 px a frame), legible selected frames."""
    env, obs = video_env("compact")
    shown = shown_video(obs)[0]
    obs, *_ = env.step(select([1]))
    selected = last_parts(obs)[1]["image"]
    assert shown.shape[0] * shown.shape[1] <= 16 * PATCH_AREA < selected.shape[0] * selected.shape[1]


def test_small_frames_are_enlarged_to_the_video_minimum() -> None:
    """160x90 (14,400 px) is under 128 x 28^2 = 100,352 px: scale = sqrt(100352 / 14400) = 2.6399;
    160 * 2.6399 / 28 = 15.08 -> 16 x 28 = 448, 90 * 2.6399 / 28 = 8.49 -> 9 x 28 = 252: 448x252, 144 x 28^2 px."""
    frames = [np.full((90, 160, 3), i, dtype=np.uint8) for i in range(16)]
    env = PixelVQAEnv(tasks=[Task("v", "Which frame?", ("1",), "exact", video=frames)], budgets="paper_train")
    obs, _ = env.reset(seed=0)
    assert {frame.shape for frame in shown_video(obs)} == {(252, 448, 3)}


def test_the_blind_control_grays_every_video_frame() -> None:
    from rl_runner.diagnostics import GRAY, grayed

    _, obs = video_env()
    video = next(p for m in grayed(obs["messages"]) for p in m["content"] if p["type"] == "video")["video"]
    assert len(video) == 16 and all(frame.shape == (448, 840, 3) and np.all(frame == GRAY) for frame in video)
    assert int(shown_video(obs)[15][0, 0, 0]) == 150  # the observation itself is untouched


def test_traces_save_a_video_part_as_frame_files_and_load_it_back(tmp_path) -> None:
    from rl_runner.traces import Trace, load_traces, save_traces

    env, obs = video_env("compact")
    obs, *_ = env.step(select([4]))
    messages = [*obs["messages"][:2], {"role": "assistant", "content": [{"type": "text", "text": select([4])}]},
                obs["messages"][-1]]
    path = save_traces([Trace("v", "direct", messages, True)], tmp_path)
    saved = json.loads(path.read_text())[0]["message_list"]
    assert saved[1]["content"][0] == {"type": "video", "video": [f"images/000000_{k}.png" for k in range(16)]}
    assert saved[3]["content"][1] == {"type": "image", "image": "images/000000_16.png"}
    loaded = load_traces(path)[0]["message_list"]
    frames = loaded[1]["content"][0]["video"]
    assert all(np.array_equal(a, b) for a, b in zip(frames, shown_video(obs), strict=True))
