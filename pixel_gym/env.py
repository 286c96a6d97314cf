"""`PixelVQAEnv`: one visual question per episode; pixel operations as actions; correctness plus curiosity as reward."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from pixel_gym import prompts
from pixel_gym.actions import (
    MAX_TEXT_ACTION,
    PARSERS,
    TEXT,
    ModelTurn,
    Parser,
    action_to_text,
    from_structured,
    structured_action_space,
)
from pixel_gym.budgets import Budgets, resolve_budgets
from pixel_gym.episode import Episode, text_message
from pixel_gym.executor import CropFrom, Limits, execute
from pixel_gym.ops import NormalizedRule, Operation, resolve_ops
from pixel_gym.render import render_episode
from pixel_gym.reward import CuriosityConfig, RewardParts, RunningRaPR, score_answer, shape_reward
from pixel_gym.spaces import ChatHistory, RGBImage, UnicodeText
from pixel_gym.tasks import ImageLoadError, Task

logger = logging.getLogger(__name__)
MAX_TASK_RETRIES = 8


class PixelVQAEnv(gym.Env):
    """A visual question answered through pixel-space reasoning.

    Observation (`spaces.Dict`): "images" (every view shown so far, uint8 HxWx3, in the order the model saw them;
    `target_image` k refers to images[k-1]; a video's frames come first, and once a tool call has added a picture
    k refers to the k-th added one, see `Episode.target_view`), "question" (the question text with options),
    "messages" (the chat so far in Qwen2.5-VL / OpenAI style, images inline as arrays, a video as ONE
    `{"type": "video", "video": [frames]}` part).
    Action: a model's text turn (str), a `ModelTurn(text, context_tokens)` (the same turn with the prompt + output
    token count, which the released 12,088-token end rule needs), a `(kind, value)` sample of the `OneOf` action
    space (0 text, 1 zoom box normalized + image index, 2 frame mask, 3 answer), or a `pixel_gym.actions` dataclass.
    Turns follow the released protocol by default (see docs/protocol.md): a turn ending in `</tool_call>` is a
    tool call, any other turn is final; a 5th call, a result beyond 16 images or a context over 12,088 tokens ends
    the episode unanswered (`truncated`, `info["end"]` names the reason).
    Reward: 0 until the episode ends; then correctness (task metric) + curiosity bonus + op penalty.
    Operations: `ops` names the registered operations offered (`pixel_gym.ops`; default the released two,
    `crop_image_normalized` and `select_frames`); the prompt lists them, the parser reads them, the executor runs
    them, and the structured action space holds the structured forms of those that have one.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 1}

    def __init__(
        self,
        suite: str = "fine_detail",
        tasks: Sequence[Task] | None = None,
        dataset: str | None = None,
        data_dir: str | None = None,
        split: str | None = None,
        size: int = 1000,
        suite_kwargs: dict[str, Any] | None = None,
        budgets: Budgets | str = "paper_train",
        max_turns: int = 6,
        max_ops: int = 4,
        max_images: int = 16,
        padding: float = 0.1,
        max_context_tokens: int | None = 12_088,
        parser: Parser = "released",
        end_at_limits: bool = True,
        crop_from: CropFrom = "kept",
        normalized_if: NormalizedRule = "all_below_1",
        refuse_degenerate_boxes: bool = False,
        num_shown_frames: int = 16,
        curiosity: CuriosityConfig | dict[str, Any] | None = None,
        rapr_window: int = 8,
        system_prompt: str | None = None,
        ops: Sequence[str | Operation] | None = None,
        render_mode: str | None = None,
    ) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']}, got {render_mode!r}")
        if max_turns < 1:
            raise ValueError("max_turns must be >= 1")
        if parser not in PARSERS:
            raise ValueError(f"parser must be one of {PARSERS}, got {parser!r}")
        if tasks is None:
            tasks = (
                _dataset_tasks(dataset, data_dir, split) if dataset else _suite_tasks(suite, size, split, suite_kwargs)
            )
        self.tasks: Sequence[Task] = tasks
        if len(self.tasks) == 0:
            raise ValueError("the task collection is empty")
        self.budgets = resolve_budgets(budgets)
        self.limits = Limits(
            max_ops, max_images, padding=padding, max_context_tokens=max_context_tokens, end_at_limits=end_at_limits,
            crop_from=crop_from, normalized_if=normalized_if, refuse_degenerate=refuse_degenerate_boxes,
        )
        self.parser: Parser = parser
        self.ops: tuple[Operation, ...] = resolve_ops(ops)
        self.max_turns = max_turns
        self.num_shown_frames = num_shown_frames
        self.curiosity = CuriosityConfig(**curiosity) if isinstance(curiosity, dict) else curiosity or CuriosityConfig()
        self.running_rapr = RunningRaPR(rapr_window)
        self.system_prompt = system_prompt
        self.render_mode = render_mode
        self.observation_space = spaces.Dict(
            {"images": spaces.Sequence(RGBImage(), stack=False), "question": UnicodeText(), "messages": ChatHistory()}
        )
        self.action_space = structured_action_space(max_images, max(num_shown_frames, 1), ops=self.ops)
        self.episode: Episode | None = None

    # ------------------------------------------------------------------------------------------ gym API

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        super().reset(seed=seed)
        options = options or {}
        skipped: list[str] = []
        if "task" in options or "index" in options:
            self.episode = self._start(options["task"] if "task" in options else self.tasks[int(options["index"])])
        else:
            self.episode = self._start_sampled(skipped)
        info = self._info()
        if skipped:
            info["skipped_tasks"] = skipped
        return self._observation(), info

    def step(self, action: Any) -> tuple[dict[str, Any], float, bool, bool, dict[str, Any]]:
        episode = self._require_episode()
        if episode.answer is not None:
            raise RuntimeError("the episode has ended; call reset() before step()")
        tokens = _context_tokens(action)
        parsed = from_structured(action, self.parser, max(self.num_shown_frames, 1), self.ops)
        episode.turns += 1
        episode.messages.append(text_message("assistant", _assistant_text(action, parsed)))
        feedback = execute(parsed, episode, self.limits, tokens, self.ops)
        if feedback.parts:
            episode.messages.append({"role": "user", "content": feedback.parts})
        terminated = feedback.answer is not None
        truncated = not terminated and (bool(feedback.end) or episode.turns >= self.max_turns)
        reward, info = 0.0, self._info()
        info["last_error"] = feedback.error
        if terminated or truncated:
            info["end"] = "answer" if terminated else feedback.end or "max_turns"
            episode.answer = feedback.answer if terminated else ""
            parts = self._final_reward(episode)
            reward = parts.total
            info.update(self._final_info(episode, parts))
        return self._observation(), reward, terminated, truncated, info

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        return render_episode(self._require_episode())

    # ----------------------------------------------------------------------------------------- internals

    def _start(self, task: Task) -> Episode:
        system = self.system_prompt if self.system_prompt is not None else prompts.system_prompt(
            prompts.tools_for(task.is_video, self.ops)
        )
        return Episode.start(task, self.budgets, system, self.num_shown_frames)

    def _start_sampled(self, skipped: list[str]) -> Episode:
        for _ in range(MAX_TASK_RETRIES):
            task = self.tasks[int(self.np_random.integers(len(self.tasks)))]
            try:
                return self._start(task)
            except ImageLoadError as error:
                logger.warning("skipping task %s: %s", task.id, error)
                skipped.append(task.id)
        raise ImageLoadError(f"{MAX_TASK_RETRIES} sampled tasks in a row failed to load: {skipped}")

    def _final_reward(self, episode: Episode) -> RewardParts:
        correctness = score_answer(episode.answer or "", episode.task) if episode.answer else 0.0
        rate = self.running_rapr.update(episode.task.id, episode.num_tool_calls > 0)
        return shape_reward(
            correctness, episode.num_tool_calls, rate, self.curiosity, episode.task.is_video, episode.last_op_failed
        )

    def _final_info(self, episode: Episode, parts: RewardParts) -> dict[str, Any]:
        return {
            "answer": episode.answer,
            "correctness": parts.correctness,
            "reward_parts": asdict(parts),
            "rapr": self.running_rapr.current(episode.task.id),
        }

    def _info(self) -> dict[str, Any]:
        episode = self._require_episode()
        return {
            "task_id": episode.task.id,
            "turn": episode.turns,
            "num_ops": episode.num_ops,
            "num_tool_calls": episode.num_tool_calls,
            "num_errors": episode.num_errors,
            "used_pixel_op": episode.num_ops > 0,
        }

    def _observation(self) -> dict[str, Any]:
        episode = self._require_episode()
        copies = {id(view.array): view.array.copy() for view in episode.views}  # fresh data on every call
        return {
            "images": tuple(copies[id(view.array)] for view in episode.views),
            "question": episode.task.prompt_text(),
            "messages": [_copy_message(m, copies) for m in episode.messages],
        }

    def _require_episode(self) -> Episode:
        if self.episode is None:
            raise RuntimeError("call reset() before using the environment")
        return self.episode


def _copy_message(message: dict[str, Any], copies: dict[int, np.ndarray]) -> dict[str, Any]:
    """A new message dict whose image and video parts point at this observation's image copies."""
    content = [
        {"type": "image", "image": copies[id(part["image"])]} if part["type"] == "image"
        else {"type": "video", "video": [copies[id(frame)] for frame in part["video"]]} if part["type"] == "video"
        else dict(part)
        for part in message["content"]
    ]
    return {"role": message["role"], "content": content}


def _suite_tasks(suite: str, size: int, split: str | None, suite_kwargs: dict[str, Any] | None) -> Sequence[Task]:
    from pixel_gym.suites import make_suite  # generators load only when an env uses a built-in suite

    return make_suite(suite, size=size, split=split or "train", **(suite_kwargs or {}))


def _dataset_tasks(dataset: str, data_dir: str | None, split: str | None) -> Sequence[Task]:
    from pixel_gym.datasets import load_tasks  # loaders import only when an env reads a dataset

    if data_dir is None:
        raise ValueError(f"dataset {dataset!r} needs data_dir: the folder holding its files (or hf://owner/name)")
    return load_tasks(dataset, data_dir, split)


def _context_tokens(action: Any) -> int | None:
    """The prompt + output token count a `ModelTurn` carries (None for other actions: the token rule is skipped)."""
    if not isinstance(action, ModelTurn):
        return None
    tokens = action.context_tokens
    if isinstance(tokens, bool) or not isinstance(tokens, (int, np.integer)) or tokens < 0:
        raise ValueError(f"ModelTurn.context_tokens must be a token count (int >= 0), got {tokens!r}")
    return int(tokens)


def _assistant_text(raw: Any, parsed: Any) -> str:
    """What goes into the chat history for an action: the model's own text (when within the length limit), or the
    text a structured action means."""
    text = raw.text if isinstance(raw, ModelTurn) else raw
    if isinstance(raw, tuple) and len(raw) == 2 and isinstance(raw[0], (int, np.integer)) and raw[0] == TEXT:
        text = raw[1]
    if isinstance(text, str) and len(text) <= MAX_TEXT_ACTION:
        return text
    return action_to_text(parsed)
