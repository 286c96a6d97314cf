"""Wrappers: a fixed-shape discrete interface for classic RL agents, and an episode recorder."""

from __future__ import annotations

import textwrap
from functools import lru_cache
from pathlib import Path
from typing import Any

import gymnasium as gym
import imageio.v3 as iio
import numpy as np
from gymnasium import spaces
from PIL import Image, ImageDraw

from pixel_gym.actions import Answer
from pixel_gym.env import PixelVQAEnv
from pixel_gym.episode import Episode
from pixel_gym.ops import OpAction
from pixel_gym.render import BOX_COLORS
from pixel_gym.suites.drawing import INK, PAPER, stamp_text
from pixel_gym.suites.glyphs import ADVANCE, FONT, ROWS
from pixel_gym.tasks import choice_letters

LINE_CELLS = ROWS + 2  # text line height in font cells: 7-cell glyphs and a 2-cell gap
MARGIN_CELLS = 2  # blank cells around the text panel
TURN_BAR = (225, 30, 30)


def grid_boxes(scales: tuple[int, ...]) -> list[tuple[float, float, float, float]]:
    """Normalized boxes of an s x s grid for each scale s, row by row."""
    return [
        (col / s, row / s, (col + 1) / s, (row + 1) / s) for s in scales for row in range(s) for col in range(s)
    ]


class DiscreteZoomWrapper(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Discrete actions and one fixed-size uint8 image observation, for Stable-Baselines3 / CleanRL agents.

    Actions (`Discrete(R + max_choices)`): 0..R-1 are the discrete actions of the env's offered ops, in their
    order (`Operation.discrete`); R..R+max_choices-1 answer with option letter A, B, ... With the default ops
    the R actions zoom into the cells of s x s grids over the original image, for each s in `scales` (row by
    row; (2, 3) gives R = 4 + 9 = 13); `rotate_image` adds 3 (90, 180, 270) and `enhance_contrast` 1, all on
    image 1. Every zoom crops image 1 (the original image, or the first frame of a video), so the grid always
    refers to the same picture; the env adds its usual padding around the cell. An action outside the space
    raises ValueError; an invalid but in-range one (a letter the question does not have, a zoom after the op
    budget is spent) goes to the env, which scores or reports it as usual (see `action_masks`).

    Observation: `Box(0, 255, (obs_size + T, 2 * obs_size, 3), uint8)`, HWC as SB3's `CnnPolicy` and CleanRL's
    CNN agents expect. It holds everything an agent needs to act, because after a zoom the latest view alone
    no longer shows the whole scene, the options or which object is asked about:

        +-----------------------------+-----------------------------+
        | overview: image 1, with     | latest view: the last crop  |  obs_size x obs_size each, stretched
        | every zoom region outlined  | (before any: the last image)|  to the square (so grid cells line up)
        +-----------------------------+-----------------------------+
        | QUESTION TEXT, WRAPPED OVER `question_lines` LINES          |  T = text panel: the question, one line
        | A <option A>   B <option B>   ... (one line per option)     |  per option (max_choices lines) and a
        | TURN t OF max_turns  [red bar, t / max_turns of the rest]   |  turn counter, in the suites' 5x7 font
        +-------------------------------------------------------------+

    Text is drawn in the bitmap font the suites print tags with (dark ink on paper, upper case; characters the
    font lacks become blanks; lines are cut to the panel width), so a CNN can match an option's glyph with the
    glyph on a tag. The font cell is `max(1, obs_size // 64)` pixels. Defaults give a (140, 128, 3) image.

    Tasks must be multiple choice with at most `max_choices` options (reset raises ValueError otherwise): use
    suites like fine_detail or video, not counting or document. The wrapped env's reward and info pass through
    unchanged. `action_masks()` returns the actions that make sense now (sb3-contrib's MaskablePPO reads it).
    """

    def __init__(
        self,
        env: gym.Env,
        scales: tuple[int, ...] = (2, 3),
        max_choices: int = 4,
        obs_size: int = 64,
        question_lines: int = 3,
    ) -> None:
        gym.utils.RecordConstructorArgs.__init__(
            self, scales=scales, max_choices=max_choices, obs_size=obs_size, question_lines=question_lines
        )
        super().__init__(env)
        if not isinstance(env.unwrapped, PixelVQAEnv):
            raise TypeError("DiscreteZoomWrapper wraps a PixelVQAEnv")
        if not scales or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in scales):
            raise ValueError(f"scales must be positive integers, got {scales!r}")
        if not 1 <= max_choices <= 26:
            raise ValueError(f"max_choices must be 1 to 26, got {max_choices}")
        if obs_size < 16:
            raise ValueError(f"obs_size must be at least 16 pixels, got {obs_size}")
        if question_lines < 0:
            raise ValueError(f"question_lines must be >= 0, got {question_lines}")
        self.boxes = grid_boxes(tuple(scales))
        ops = env.unwrapped.ops
        self.op_choices = [choice for op in ops if op.discrete is not None for choice in op.discrete(self.boxes)]
        self.letters = choice_letters(max_choices)
        self.max_choices = max_choices
        self.obs_size = obs_size
        self.question_lines = question_lines
        self.cell = max(1, obs_size // 64)
        self.width = 2 * obs_size
        self.line_chars = (self.width - 2 * MARGIN_CELLS * self.cell) // (ADVANCE * self.cell)
        text_lines = question_lines + max_choices + 1
        self.text_height = (text_lines * LINE_CELLS + 2 * MARGIN_CELLS) * self.cell
        self.action_space = spaces.Discrete(len(self.op_choices) + max_choices)
        self.observation_space = spaces.Box(
            0, 255, shape=(obs_size + self.text_height, self.width, 3), dtype=np.uint8
        )
        self._text_panel: Image.Image | None = None  # question and options of the current episode
        self._panels: dict[int, Image.Image] = {}  # view index -> that view resized to a panel (this episode)

    # ------------------------------------------------------------------------------------------ gym API

    def reset(self, **kwargs: Any) -> tuple[np.ndarray, dict[str, Any]]:
        obs, info = self.env.reset(**kwargs)
        episode = self._episode()
        task = episode.task
        if task.metric != "choice" or not 1 <= len(task.choices) <= self.max_choices:
            raise ValueError(
                f"DiscreteZoomWrapper answers with one of {self.max_choices} option letters; task {task.id!r} "
                f"has metric {task.metric!r} and {len(task.choices)} choices (use a multiple-choice suite, or "
                "raise max_choices)"
            )
        self._text_panel = self._draw_text_panel(task.question, task.choices)
        self._panels = {}
        return self._observe(obs), info

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(self.to_env_action(action))
        return self._observe(obs), reward, terminated, truncated, info

    def to_env_action(self, action: Any) -> OpAction | Answer:
        """The `pixel_gym.actions` action that a discrete action stands for."""
        value = np.asarray(action)
        if value.size != 1 or not np.issubdtype(value.dtype, np.integer):
            raise ValueError(f"an action must be one integer in Discrete({self.action_space.n}), got {action!r}")
        index = int(value.reshape(()))
        if not 0 <= index < self.action_space.n:
            raise ValueError(f"action {index} is outside Discrete({self.action_space.n})")
        if index < len(self.op_choices):
            return self.op_choices[index].action
        return Answer(self.letters[index - len(self.op_choices)])

    def action_masks(self) -> np.ndarray:
        """Boolean mask of the actions that make sense now: op actions while the op and image budgets last and
        the op allows them (a zoom: the cell is large enough to crop), and the letters of the current question's
        options."""
        episode = self._episode()
        limits = self.env.unwrapped.limits
        mask = np.zeros(self.action_space.n, dtype=bool)
        if len(episode.ops) < limits.max_ops and episode.num_images < limits.max_images:
            mask[: len(self.op_choices)] = [c.allowed is None or c.allowed(episode, limits) for c in self.op_choices]
        answers = len(self.op_choices)
        mask[answers : answers + len(episode.task.choices)] = True
        return mask

    # ------------------------------------------------------------------------------------- observation

    def _observe(self, obs: dict[str, Any]) -> np.ndarray:
        episode = self._episode()
        if self._text_panel is None:
            raise RuntimeError("call reset() before step()")
        canvas = Image.new("RGB", (self.width, self.observation_space.shape[0]), PAPER)
        canvas.paste(self._overview(obs, episode), (0, 0))
        canvas.paste(self._panel(obs, len(obs["images"]) - 1), (self.obs_size, 0))
        canvas.paste(self._text_panel, (0, self.obs_size))
        self._status(ImageDraw.Draw(canvas), episode)
        return np.array(canvas, dtype=np.uint8)

    def _status(self, draw: ImageDraw.ImageDraw, episode: Episode) -> None:
        """The turn counter, and a red bar right of it that fills up as the turns run out."""
        max_turns = self.env.unwrapped.max_turns
        turn = min(episode.turns + 1, max_turns)
        text = f"TURN {turn} OF {max_turns}"
        line = self.question_lines + self.max_choices
        self._stamp(draw, text, line, top=self.obs_size)
        cell = self.cell
        left = (MARGIN_CELLS + ADVANCE * len(text) + 1) * cell
        right = self.width - MARGIN_CELLS * cell
        top = self.obs_size + (MARGIN_CELLS + line * LINE_CELLS) * cell
        end = left + round((right - left) * turn / max_turns)
        if end > left:
            draw.rectangle((left, top, end - 1, top + ROWS * cell - 1), fill=TURN_BAR)

    def _panel(self, obs: dict[str, Any], index: int) -> Image.Image:
        """View `index` resized to a square panel (each view is resized once per episode)."""
        if index not in self._panels:
            image = Image.fromarray(obs["images"][index])
            self._panels[index] = image.resize((self.obs_size, self.obs_size), Image.Resampling.BILINEAR)
        return self._panels[index]

    def _overview(self, obs: dict[str, Any], episode: Episode) -> Image.Image:
        """Image 1 with the region of every successful zoom outlined."""
        panel = self._panel(obs, 0)
        regions = [op.region for op in episode.ops if op.ok and op.region is not None and op.view == 0]
        if not regions:
            return panel
        panel = panel.copy()
        width, height = episode.views[0].frame_size
        sx, sy = panel.width / width, panel.height / height
        draw = ImageDraw.Draw(panel)
        for number, (x1, y1, x2, y2) in enumerate(regions):
            box = (x1 * sx, y1 * sy, max(x1 * sx, x2 * sx - 1), max(y1 * sy, y2 * sy - 1))
            draw.rectangle(box, outline=BOX_COLORS[number % len(BOX_COLORS)], width=1)
        return panel

    def _draw_text_panel(self, question: str, choices: tuple[str, ...]) -> Image.Image:
        return _text_panel(question, choices, self.width, self.text_height, self.line_chars, self.cell,
                           self.question_lines, tuple(self.letters))

    def _stamp(self, draw: ImageDraw.ImageDraw, text: str, line: int, top: int = 0) -> None:
        _stamp(draw, text, line, self.line_chars, self.cell, top)

    # --------------------------------------------------------------------------------------- internals

    def _episode(self) -> Episode:
        episode = self.env.unwrapped.episode
        if episode is None:
            raise RuntimeError("call reset() before using the environment")
        return episode


@lru_cache(maxsize=1024)
def _text_panel(
    question: str,
    choices: tuple[str, ...],
    width: int,
    height: int,
    line_chars: int,
    cell: int,
    question_lines: int,
    letters: tuple[str, ...],
) -> Image.Image:
    """The question (wrapped) and one line per option; the returned image is shared, so never draw on it."""
    panel = Image.new("RGB", (width, height), PAPER)
    draw = ImageDraw.Draw(panel)
    lines = textwrap.wrap(_printable(question), line_chars) if question_lines else []
    for number, text in enumerate(lines[:question_lines]):
        _stamp(draw, text, number, line_chars, cell)
    for number, (letter, option) in enumerate(zip(letters, choices)):
        _stamp(draw, f"{letter} {_printable(option)}", question_lines + number, line_chars, cell)
    return panel


def _stamp(draw: ImageDraw.ImageDraw, text: str, line: int, line_chars: int, cell: int, top: int = 0) -> None:
    """Draw one line of text (cut to `line_chars` characters) on text line `line` below `top`."""
    text = text[:line_chars].rstrip()
    if text:
        stamp_text(draw, text, MARGIN_CELLS * cell, top + (MARGIN_CELLS + line * LINE_CELLS) * cell, cell, INK)


def _printable(text: str) -> str:
    """Upper-case `text` with every character the bitmap font lacks replaced by a blank."""
    return " ".join("".join(ch if ch in FONT else " " for ch in text.upper()).split())


class RecordEpisode(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Save each episode's rendered frames as an animated GIF or an MP4 (by the suffix of `path_pattern`).

    `path_pattern` may hold `{episode}`, e.g. "runs/demo/episode_{episode}.gif". Needs render_mode "rgb_array".
    An episode of n steps gives n + 1 frames (the reset and every step), each with a caption strip below the
    render ("step k", and the answer and reward on the last frame), so no two frames are alike and GIF writers
    never merge them. An episode is saved when it ends, or on the next reset or close if cut short.
    """

    CAPTION_HEIGHT = 20

    def __init__(self, env: gym.Env, path_pattern: str | Path, fps: float = 1.0) -> None:
        gym.utils.RecordConstructorArgs.__init__(self, path_pattern=path_pattern, fps=fps)
        super().__init__(env)
        if env.render_mode != "rgb_array":
            raise ValueError(f"RecordEpisode needs an env made with render_mode='rgb_array', got {env.render_mode!r}")
        self.path_pattern = str(path_pattern)
        if Path(self.path_pattern).suffix.lower() not in (".gif", ".mp4"):
            raise ValueError(f"record to a .gif or .mp4 file, got {self.path_pattern!r}")
        if not fps > 0:
            raise ValueError(f"fps must be positive, got {fps}")
        self.fps = fps
        self.episode_index = 0
        self.frames: list[np.ndarray] = []
        self.saved: list[Path] = []

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        self._flush()
        obs, info = self.env.reset(**kwargs)
        self._capture("reset (step 0)")
        return obs, info

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        caption = f"step {len(self.frames)}"
        if terminated or truncated:
            caption += f"  answer {info.get('answer', '')!r}  reward {float(reward):+.2f}"
        elif info.get("last_error"):
            caption += "  (error)"
        self._capture(caption)
        if terminated or truncated:
            self._flush()
        return obs, reward, terminated, truncated, info

    def close(self) -> None:
        self._flush()
        super().close()

    def _capture(self, caption: str) -> None:
        frame = np.asarray(self.env.render(), dtype=np.uint8)
        strip = Image.new("RGB", (frame.shape[1], self.CAPTION_HEIGHT), (24, 24, 24))
        ImageDraw.Draw(strip).text((4, 4), caption, fill=(255, 255, 255))
        self.frames.append(np.concatenate([frame, np.asarray(strip, dtype=np.uint8)], axis=0))

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
