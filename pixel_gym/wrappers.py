"""Wrappers: a fixed-shape discrete interface for classic RL agents, and an episode recorder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import imageio.v3 as iio
import numpy as np
from gymnasium import spaces
from PIL import Image

from pixel_gym.actions import Answer, ZoomIn
from pixel_gym.env import PixelVQAEnv
from pixel_gym.tasks import choice_letters


def grid_boxes(scales: tuple[int, ...]) -> list[tuple[float, float, float, float]]:
    """Normalized boxes of an s x s grid for each scale s, row by row."""
    return [
        (col / s, row / s, (col + 1) / s, (row + 1) / s) for s in scales for row in range(s) for col in range(s)
    ]


class DiscreteZoomWrapper(gym.Wrapper):
    """Discrete actions and a fixed-size image observation, for Stable-Baselines3 / CleanRL agents.

    Actions 0..R-1 zoom into the cells of grids over the original image (`scales`, e.g. 2 -> 2x2 cells);
    actions R..R+C-1 answer with choice A, B, ... Observation: the latest view resized to `obs_size` x `obs_size`.
    The wrapped env's reward and info are passed through unchanged.
    """

    def __init__(self, env: gym.Env, scales: tuple[int, ...] = (2, 3), max_choices: int = 4, obs_size: int = 64):
        super().__init__(env)
        if not isinstance(env.unwrapped, PixelVQAEnv):
            raise TypeError("DiscreteZoomWrapper wraps a PixelVQAEnv")
        self.boxes = grid_boxes(scales)
        self.letters = choice_letters(max_choices)
        self.obs_size = obs_size
        self.action_space = spaces.Discrete(len(self.boxes) + max_choices)
        self.observation_space = spaces.Box(0, 255, shape=(obs_size, obs_size, 3), dtype=np.uint8)

    def reset(self, **kwargs: Any) -> tuple[np.ndarray, dict[str, Any]]:
        obs, info = self.env.reset(**kwargs)
        return self._frame(obs), info

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(self.to_env_action(int(action)))
        return self._frame(obs), reward, terminated, truncated, info

    def to_env_action(self, action: int) -> ZoomIn | Answer:
        if not 0 <= action < self.action_space.n:
            raise ValueError(f"action {action} is outside Discrete({self.action_space.n})")
        if action < len(self.boxes):
            return ZoomIn(self.boxes[action], target_image=1, convention="normalized")
        return Answer(self.letters[action - len(self.boxes)])

    def _frame(self, obs: dict[str, Any]) -> np.ndarray:
        latest = Image.fromarray(obs["images"][-1])
        return np.asarray(latest.resize((self.obs_size, self.obs_size), Image.Resampling.BILINEAR), dtype=np.uint8)


class RecordEpisode(gym.Wrapper):
    """Save each episode's rendered frames as an animated GIF or an MP4 (by the suffix of `path_pattern`).

    `path_pattern` may hold `{episode}`, e.g. "runs/demo/episode_{episode}.gif". Needs render_mode "rgb_array".
    """

    def __init__(self, env: gym.Env, path_pattern: str | Path, fps: float = 1.0) -> None:
        super().__init__(env)
        if env.render_mode != "rgb_array":
            raise ValueError("RecordEpisode needs an env made with render_mode='rgb_array'")
        self.path_pattern = str(path_pattern)
        if Path(self.path_pattern).suffix.lower() not in (".gif", ".mp4"):
            raise ValueError(f"record to a .gif or .mp4 file, got {self.path_pattern!r}")
        self.fps = fps
        self.episode_index = 0
        self.frames: list[np.ndarray] = []
        self.saved: list[Path] = []

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        self._flush()
        obs, info = self.env.reset(**kwargs)
        self.frames = [self.env.render()]
        return obs, info

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.frames.append(self.env.render())
        if terminated or truncated:
            self._flush()
        return obs, reward, terminated, truncated, info

    def close(self) -> None:
        self._flush()
        super().close()

    def _flush(self) -> None:
        if not self.frames:
            return
        path = Path(self.path_pattern.format(episode=self.episode_index))
        path.parent.mkdir(parents=True, exist_ok=True)
        frames = _same_size(self.frames)
        if path.suffix.lower() == ".gif":
            iio.imwrite(path, frames, duration=1000 / self.fps, loop=0)
        else:
            iio.imwrite(path, frames, fps=self.fps, codec="libx264", macro_block_size=1)
        self.saved.append(path)
        self.episode_index += 1
        self.frames = []


def _same_size(frames: list[np.ndarray]) -> np.ndarray:
    """Pad frames to a common (even) size so they stack into one video."""
    height = max(f.shape[0] for f in frames)
    width = max(f.shape[1] for f in frames)
    height, width = height + height % 2, width + width % 2
    canvas = np.zeros((len(frames), height, width, 3), dtype=np.uint8)
    for i, frame in enumerate(frames):
        canvas[i, : frame.shape[0], : frame.shape[1]] = frame
    return canvas
