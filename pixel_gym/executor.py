"""The executor: carries out one action on an episode and says what the agent sees next.

Text turns and structured actions both arrive here as `pixel_gym.actions` dataclasses. A tool call runs the
offered operation it names (`pixel_gym.ops.registry`): the op turns the episode's views and the parsed arguments
into new views, which are added here. Invalid requests never raise: they come back as an error message the model
can read, and the episode goes on. A tool call past the released limits (a 5th call, more than 16 images, a
context over 12,088 tokens) ends the episode unanswered (`Limits.end_at_limits`; False gives pixel-gym's older
rule: an error message, and the episode goes on).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from PIL import Image

from pixel_gym import prompts
from pixel_gym.actions import Action, Answer, Invalid
from pixel_gym.episode import Episode, OpRecord, View
from pixel_gym.ops import MAX_SELECTED_FRAMES, NormalizedRule, OpCall, Operation, OpError, integer_argument, resolve_ops
from pixel_gym.tasks import ImageLoadError

CropFrom = Literal["kept", "source"]
logger = logging.getLogger(__name__)


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


@dataclass(frozen=True)
class OpContext:
    """What an operation's function is given: the episode (its task, views and budgets) and the env's limits."""

    episode: Episode
    limits: Limits

    @property
    def images(self) -> list[Image.Image]:
        """Every picture shown so far, as kept (`target_image` k is `images[k - 1]` for an image question)."""
        return [view.image for view in self.episode.views]

    def target(self, number: Any) -> View:
        """The view `target_image` `number` names (`Episode.target_view`); raises `OpError`, also for a value
        that is not a whole number."""
        return self.episode.target_view(integer_argument(number, "target_image"))

    def new_view(self, target: View, image: Image.Image) -> View:
        """A new picture an op made from `target` (see `Episode.derived_view`)."""
        return self.episode.derived_view(target, image)

    def check_room(self, added: int) -> None:
        """Refuse (or end the episode) early when `added` more pictures would exceed the image limit; the
        executor checks again after the op, so ops need not call it."""
        _check_room(self.episode, self.limits, added)


def execute(
    action: Action,
    episode: Episode,
    limits: Limits,
    context_tokens: int | None = None,
    ops: Sequence[Operation] | None = None,
) -> Feedback:
    """Carry out `action` with the offered `ops` (None: the default ops). `context_tokens` (prompt + output
    tokens of this turn, when the caller knows them) is checked against `limits.max_context_tokens` for a tool
    call."""
    if isinstance(action, Answer):
        return Feedback(answer=action.text)
    if isinstance(action, Invalid) and not action.tool_call:
        return _error(episode, action.message)
    tool = "malformed" if isinstance(action, Invalid) else action.op
    try:
        _check_limits(episode, limits, context_tokens)
        if isinstance(action, Invalid):
            raise OpError(action.message)
        return _run(_offered(resolve_ops(ops), action.op), action, episode, limits)
    except LimitReached as end:
        episode.ops.append(OpRecord(tool, ok=False, error=str(end)))
        return Feedback(error=str(end), end=end.reason)
    except (OpError, ImageLoadError) as error:
        episode.ops.append(OpRecord(tool, ok=False, error=str(error)))
        return _error(episode, str(error))


def _offered(ops: Sequence[Operation], name: str) -> Operation:
    for op in ops:
        if op.name == name:
            return op
    raise OpError(f"unknown tool {name!r}; available tools: {', '.join(op.name for op in ops)}")


def _run(op: Operation, action: Any, episode: Episode, limits: Limits) -> Feedback:
    """Run `op`, add its views and record it; the result text, then the new images, is the next user turn."""
    if isinstance(action, OpCall) and op.parse is not None:  # a generic call of an op with its own argument type
        action = op.read(action.arguments, op.name)
    try:
        result = op.run(OpContext(episode, limits), action)
    except (OpError, LimitReached, ImageLoadError):
        raise
    except Exception as error:  # a plug-in's bug is the model's execution error, as the released code reports any
        logger.warning("op %s raised %s: %s", op.name, type(error).__name__, error, exc_info=error)
        raise OpError(f"{op.name} failed: {type(error).__name__}: {str(error)[:200]}") from error
    _check_room(episode, limits, len(result.views))
    source = next((i for i, view in enumerate(episode.views) if view is result.source), None)
    episode.views.extend(result.views)
    episode.ops.append(OpRecord(op.name, ok=True, view=source, region=result.region, frames=result.frames))
    parts: list[dict[str, Any]] = [{"type": "text", "text": result.text}]
    return Feedback(parts=parts + [{"type": "image", "image": view.array} for view in result.views])


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


def _check_room(episode: Episode, limits: Limits, added: int) -> None:
    if episode.num_images + added > limits.max_images:
        _limit(limits, "images", f"{added} more image(s) would exceed the limit of {limits.max_images} images; "
               "give your final answer now")


def _limit(limits: Limits, reason: str, message: str) -> None:
    """End the episode (the released rule) or, with `end_at_limits=False`, refuse the call with `message`."""
    if limits.end_at_limits:
        raise LimitReached(reason, message)
    raise OpError(message)


def _error(episode: Episode, message: str) -> Feedback:
    episode.num_errors += 1
    return Feedback(parts=[{"type": "text", "text": prompts.error_text(message)}], error=message)
