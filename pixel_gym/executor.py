"""The executor: carries out one action on an episode and says what the agent sees next.

Text turns and structured actions both arrive here as `pixel_gym.actions` dataclasses. Invalid requests never
raise: they come back as an error message the model can read, and the episode goes on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pixel_gym import prompts
from pixel_gym.actions import Action, Answer, Invalid, SelectFrames, ZoomIn
from pixel_gym.episode import Episode, OpRecord
from pixel_gym.ops import MAX_SELECTED_FRAMES, OpError, resolve_box, validate_frame_indices
from pixel_gym.tasks import ImageLoadError


@dataclass(frozen=True)
class Limits:
    max_ops: int = 4  # tool calls executed per episode (the paper stops after more than 3)
    max_images: int = 16  # views per episode, originals included
    max_selected_frames: int = MAX_SELECTED_FRAMES
    padding: float = 0.1  # normalized padding added around every zoom box


@dataclass
class Feedback:
    """What an action produced: a user turn to show (tool result or error), or a final answer."""

    parts: list[dict[str, Any]] = field(default_factory=list)
    answer: str | None = None
    error: str = ""


def execute(action: Action, episode: Episode, limits: Limits) -> Feedback:
    if isinstance(action, Answer):
        return Feedback(answer=action.text)
    if isinstance(action, Invalid):
        if action.tool_call:
            episode.ops.append(OpRecord("malformed", ok=False, error=action.message))
        return _error(episode, action.message)
    tool = "select_frames" if isinstance(action, SelectFrames) else "crop_image"
    try:
        _check_budget(episode, limits, tool)
        if isinstance(action, ZoomIn):
            return _zoom(action, episode, limits)
        return _select(action, episode, limits)
    except (OpError, ImageLoadError) as error:
        episode.ops.append(OpRecord(tool, ok=False, error=str(error)))
        return _error(episode, str(error))


def _check_budget(episode: Episode, limits: Limits, tool: str) -> None:
    if len(episode.ops) >= limits.max_ops:
        raise OpError(f"the limit of {limits.max_ops} tool calls is reached; give your final answer now")
    if tool == "select_frames" and not episode.task.is_video:
        raise OpError("select_frames works on videos only; this question is about an image")


def _zoom(action: ZoomIn, episode: Episode, limits: Limits) -> Feedback:
    count = len(episode.views)
    if not 1 <= action.target_image <= count:
        raise OpError(f"target_image {action.target_image} does not exist: images are numbered 1 to {count}")
    if episode.num_images + 1 > limits.max_images:
        raise OpError(f"the limit of {limits.max_images} images is reached; give your final answer now")
    target = episode.views[action.target_image - 1]
    x1, y1, x2, y2 = resolve_box(action.bbox, target.frame_size, action.convention, limits.padding)
    ox, oy = target.region[:2]
    region = (ox + x1, oy + y1, ox + x2, oy + y2)
    view = episode.add_view(target.source, region, episode.budgets.crop, "crop")
    episode.ops.append(OpRecord("crop_image", ok=True, view=action.target_image - 1, region=region))
    text = prompts.crop_result_text(*view.frame_size)
    return Feedback(parts=[{"type": "text", "text": text}, {"type": "image", "image": view.array}])


def _select(action: SelectFrames, episode: Episode, limits: Limits) -> Feedback:
    chosen = validate_frame_indices(action.frames, len(episode.shown_frames), limits.max_selected_frames)
    if episode.num_images + len(chosen) > limits.max_images:
        raise OpError(f"selecting {len(chosen)} frames would exceed the limit of {limits.max_images} images")
    frames = [episode.shown_frames[i] for i in chosen]
    parts: list[dict[str, Any]] = [{"type": "text", "text": prompts.frames_result_text([i + 1 for i in chosen])}]
    for frame in frames:
        full = (0, 0, *episode.source_size(frame))
        view = episode.add_view(frame, full, episode.budgets.frame_selected, "selected_frame")
        parts.append({"type": "image", "image": view.array})
    episode.ops.append(OpRecord("select_frames", ok=True, frames=tuple(frames)))
    return Feedback(parts=parts)


def _error(episode: Episode, message: str) -> Feedback:
    episode.num_errors += 1
    return Feedback(parts=[{"type": "text", "text": prompts.error_text(message)}], error=message)
