"""The executor: carries out one action on an episode and says what the agent sees next.

Text turns and structured actions both arrive here as `pixel_gym.actions` dataclasses. Invalid requests never
raise: they come back as an error message the model can read, and the episode goes on. A tool call past the
released limits (a 5th call, more than 16 images, a context over 12,088 tokens) ends the episode unanswered
(`Limits.end_at_limits`; False gives pixel-gym's older rule: an error message, and the episode goes on).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pixel_gym import prompts
from pixel_gym.actions import Action, Answer, Invalid, SelectFrames, ZoomIn
from pixel_gym.episode import Episode, OpRecord
from pixel_gym.ops import MAX_SELECTED_FRAMES, NormalizedRule, OpError, resolve_box, validate_frame_indices
from pixel_gym.tasks import ImageLoadError

CropFrom = Literal["kept", "source"]


@dataclass(frozen=True)
class Limits:
    """The turn and tool rules of an env; the defaults are the released protocol's."""

    max_ops: int = 4  # tool calls per episode (executed, failed or malformed); one more ends the episode
    max_images: int = 16  # pictures per episode, originals included; a result that would exceed it ends the episode
    max_selected_frames: int = MAX_SELECTED_FRAMES
    padding: float = 0.1  # normalized padding added around every zoom box
    max_context_tokens: int | None = 12_088  # prompt + output tokens of a turn (12 * 1024 - 200), when told
    end_at_limits: bool = True  # False: a call past a limit gets an error message and the episode goes on
    crop_from: CropFrom = "kept"  # "source": cut the full-resolution source region, boxes in its pixels
    normalized_if: NormalizedRule = "all_below_1"  # "all_at_most_1": [0.5, 0.5, 1.0, 1.0] is normalized
    refuse_degenerate: bool = False  # True: refuse point and inverted boxes before padding

    def __post_init__(self) -> None:
        if self.crop_from not in ("kept", "source"):
            raise ValueError(f"crop_from must be 'kept' or 'source', got {self.crop_from!r}")
        if self.max_ops < 0 or self.max_images < 1 or self.padding < 0:
            raise ValueError("need max_ops >= 0, max_images >= 1 and padding >= 0")


@dataclass
class Feedback:
    """What an action produced: a user turn to show (tool result or error), or a final answer."""

    parts: list[dict[str, Any]] = field(default_factory=list)
    answer: str | None = None
    error: str = ""
    end: str = ""  # why the episode ends unanswered: "tool_calls", "images" or "tokens"


class LimitReached(Exception):
    """A tool call past a released limit: the episode ends unanswered (`reason` names the limit)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def execute(action: Action, episode: Episode, limits: Limits, context_tokens: int | None = None) -> Feedback:
    """Carry out `action`. `context_tokens` (prompt + output tokens of this turn, when the caller knows them) is
    checked against `limits.max_context_tokens` for a tool call."""
    if isinstance(action, Answer):
        return Feedback(answer=action.text)
    if isinstance(action, Invalid) and not action.tool_call:
        return _error(episode, action.message)
    tool = "malformed" if isinstance(action, Invalid) else _tool_name(action)
    try:
        _check_limits(episode, limits, context_tokens)
        if isinstance(action, Invalid):
            raise OpError(action.message)
        if tool == "select_frames" and not episode.task.is_video:
            raise OpError("select_frames works on videos only; this question is about an image")
        if isinstance(action, ZoomIn):
            return _zoom(action, episode, limits)
        return _select(action, episode, limits)
    except LimitReached as end:
        episode.ops.append(OpRecord(tool, ok=False, error=str(end)))
        return Feedback(error=str(end), end=end.reason)
    except (OpError, ImageLoadError) as error:
        episode.ops.append(OpRecord(tool, ok=False, error=str(error)))
        return _error(episode, str(error))


def _check_limits(episode: Episode, limits: Limits, context_tokens: int | None) -> None:
    """The released end checks for a tool call: a 5th call, more than 16 images, a context over the token limit."""
    if len(episode.ops) >= limits.max_ops:
        _limit(limits, "tool_calls", f"the limit of {limits.max_ops} tool calls is reached; give your final answer now")
    if episode.num_images > limits.max_images:
        _limit(limits, "images", f"the limit of {limits.max_images} images is reached; give your final answer now")
    limit = limits.max_context_tokens
    if limit is not None and context_tokens is not None and context_tokens > limit:
        _limit(limits, "tokens", f"the conversation has {context_tokens} tokens, over the limit of {limit}; "
               "give your final answer now")


def _tool_name(action: ZoomIn | SelectFrames) -> str:
    return "select_frames" if isinstance(action, SelectFrames) else "crop_image"


def _check_room(episode: Episode, limits: Limits, added: int) -> None:
    if episode.num_images + added > limits.max_images:
        _limit(limits, "images", f"{added} more image(s) would exceed the limit of {limits.max_images} images; "
               "give your final answer now")


def _limit(limits: Limits, reason: str, message: str) -> None:
    """End the episode (the released rule) or, with `end_at_limits=False`, refuse the call with `message`."""
    if limits.end_at_limits:
        raise LimitReached(reason, message)
    raise OpError(message)


def _zoom(action: ZoomIn, episode: Episode, limits: Limits) -> Feedback:
    target = episode.target_view(action.target_image)
    from_source = limits.crop_from == "source"
    size = target.frame_size if from_source else target.image.size
    box = resolve_box(action.bbox, size, action.convention, limits.padding,
                      normalized_if=limits.normalized_if, refuse_degenerate=limits.refuse_degenerate)
    _check_room(episode, limits, 1)
    view = episode.add_crop(target, box, from_source)
    episode.ops.append(OpRecord("crop_image", ok=True, view=episode.views.index(target), region=view.region))
    text = prompts.crop_result_text(*view.image.size)
    return Feedback(parts=[{"type": "text", "text": text}, {"type": "image", "image": view.array}])


def _select(action: SelectFrames, episode: Episode, limits: Limits) -> Feedback:
    """The released select_frames: the named shown frames, duplicates kept, each resized into
    `budgets.frame_selected` from the frame as shown; numbered on from the pictures added so far."""
    chosen = validate_frame_indices(action.frames, len(episode.shown_frames), limits.max_selected_frames)
    _check_room(episode, limits, len(chosen))
    first = len(episode.added_views) + 1
    views = [episode.add_frame_view(episode.views[i], episode.budgets.frame_selected) for i in chosen]
    text = prompts.frames_result_text(*views[0].image.size, first, first + len(views) - 1)
    parts: list[dict[str, Any]] = [{"type": "text", "text": text}]
    parts += [{"type": "image", "image": view.array} for view in views]
    episode.ops.append(OpRecord("select_frames", ok=True, frames=tuple(episode.shown_frames[i] for i in chosen)))
    return Feedback(parts=parts)


def _error(episode: Episode, message: str) -> Feedback:
    episode.num_errors += 1
    return Feedback(parts=[{"type": "text", "text": prompts.error_text(message)}], error=message)
