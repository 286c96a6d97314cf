"""`select_frames`: the released frame-selection tool, registered like any other operation.

1-based over the frames shown at reset, at most 8, duplicates kept, out of range an error (the released texts);
the frames come back as images, numbered on from the pictures added so far (see `Episode.target_view`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from gymnasium import spaces
from PIL import Image

from pixel_gym.ops.base import OpError, PixelBudget, array_length, fit_to_budget, short_repr
from pixel_gym.ops.registry import OpAction, OpResult, StructuredForm, register_op
from pixel_gym.tasks import ImageRef

if TYPE_CHECKING:
    from pixel_gym.executor import OpContext

NAME = "select_frames"
MAX_SELECTED_FRAMES = 8

SELECT_FRAMES_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": NAME,
        "description": "Select frames from a video.",
        "parameters": {
            "type": "object",
            "properties": {
                "target_frames": {
                    "type": "array",
                    "description": "List of frame indices to select from the video (no more than 8 frames in "
                    "total).",
                    "items": {"type": "integer", "description": "Frame index from 1 to 16."},
                }
            },
            "required": ["target_frames"],
        },
    },
}


@dataclass(frozen=True)
class SelectFrames(OpAction):
    """A selection of the frames shown at reset, by 1-based number."""

    op: ClassVar[str] = NAME
    frames: tuple[int, ...]

    def call_arguments(self) -> dict[str, Any]:
        return {"target_frames": list(self.frames)}


def frames_result_text(width: int, height: int, first: int, last: int) -> str:
    """The released select_frames result; the frames are numbered `first` to `last` for `target_image`."""
    return f"\nHere are the selected frames (Frame Size: {width}x{height}, Numbered {first} to {last}):"


def sample_frame_indices(num_frames: int, num_shown: int) -> list[int]:
    """Uniformly spaced frame indices (segment midpoints), as video VLMs subsample a clip."""
    if num_frames <= 0:
        raise ValueError("a video needs at least one frame")
    count = min(num_frames, num_shown)
    return [int((i + 0.5) * num_frames / count) for i in range(count)]


def validate_frame_indices(
    indices: Sequence[int], num_frames: int, max_selected: int = MAX_SELECTED_FRAMES
) -> list[int]:
    """Check 1-based frame indices; returns them 0-based, in order, duplicates kept (the released tool's rule)."""
    if isinstance(indices, (str, bytes)) or not isinstance(indices, (Sequence, np.ndarray)):
        raise OpError(f"target_frames must be a list of frame numbers, got {short_repr(indices)}")
    if len(indices) == 0:
        raise OpError("target_frames is empty: name at least one frame")
    if len(indices) > max_selected:
        raise OpError(f"You have selected {len(indices)} frames in total. Think again which frames you need to "
                      f"check in details (no more than {max_selected} frames)")
    chosen: list[int] = []
    for value in indices:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            else:
                raise OpError(f"frame numbers must be integers, got {short_repr(value)}")
        if not 1 <= value <= num_frames:
            raise OpError(f"There are {num_frames} frames numbered in range [1,{num_frames}]. "
                          "Your selection is out of range.")
        chosen.append(int(value) - 1)
    return chosen


def select_frames(
    frames: Sequence[ImageRef | Image.Image],
    indices: Sequence[int],
    budget: PixelBudget,
    max_selected: int = MAX_SELECTED_FRAMES,
) -> list[Image.Image]:
    """Return the frames named by 1-based `indices`, decoded at full resolution and fitted to `budget`."""
    chosen = validate_frame_indices(indices, len(frames), max_selected)
    return [fit_to_budget(_decode(frames[i]), budget) for i in chosen]


def _decode(frame: ImageRef | Image.Image) -> Image.Image:
    return frame if isinstance(frame, Image.Image) else frame.open()


# --- the operation's parts ---------------------------------------------------------------------------------


def parse(arguments: dict[str, Any], name: str, lenient: bool) -> SelectFrames:
    frames = arguments.get("target_frames")
    if not isinstance(frames, (list, tuple)):
        raise OpError(f"select_frames needs target_frames as a list of frame numbers, got {short_repr(frames)}")
    return SelectFrames(tuple(frames))


def apply(context: OpContext, action: SelectFrames) -> OpResult:
    """The named shown frames, duplicates kept, each resized into `budgets.frame_selected` from the frame as
    shown; numbered on from the pictures added so far."""
    episode = context.episode
    if not episode.task.is_video:
        raise OpError("select_frames works on videos only; this question is about an image")
    chosen = validate_frame_indices(action.frames, len(episode.shown_frames), context.limits.max_selected_frames)
    context.check_room(len(chosen))
    first = len(episode.added_views) + 1
    views = [episode.frame_view(episode.views[i], episode.budgets.frame_selected) for i in chosen]
    text = frames_result_text(*views[0].image.size, first, first + len(views) - 1)
    return OpResult(text, views, frames=tuple(episode.shown_frames[i] for i in chosen))


def _structured_space(max_images: int, max_frames: int) -> spaces.Space:
    return spaces.MultiBinary(max_frames)


def _from_structured(value: Any, max_frames: int) -> SelectFrames:
    """A 0/1 mask over the shown frames as a `SelectFrames`."""
    size = array_length(value)
    if size is None:
        raise TypeError(f"a frame mask must be an array of 0/1, got {type(value).__name__}")
    if size > max_frames:
        raise ValueError(f"the frame mask has {size} entries; at most {max_frames}")
    mask = np.asarray(value, dtype=np.float64).reshape(-1)
    return SelectFrames(tuple(int(i) + 1 for i in np.flatnonzero(mask)))


FRAMES = register_op(
    NAME, SELECT_FRAMES_TOOL, apply, parse=parse, trace="rl_runner.traces:frame_turns",
    structured=StructuredForm("frames", _structured_space, _from_structured),
)
