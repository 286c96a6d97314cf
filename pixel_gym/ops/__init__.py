"""Pixel operations as plug-ins: the registry (`register_op`, `get_op`, `resolve_ops`) and the built-in ops.

Built in: `crop_image_normalized` and `select_frames` (the released protocol's tools, offered by default),
`rotate_image` and `enhance_contrast` (off by default: pass them in `PixelVQAEnv(ops=[...])`). The pure image
functions the built-ins use (`resolve_box`, `smart_resize`, `validate_frame_indices`, ...) are importable from here.
"""

from pixel_gym.ops import contrast, rotate
from pixel_gym.ops.base import (
    PATCH,
    OpError,
    PixelBox,
    PixelBudget,
    array_length,
    fit_to_budget,
    integer_argument,
    short_repr,
    smart_resize,
)
from pixel_gym.ops.crop import (
    MIN_CROP_SIDE,
    BoxConvention,
    NormalizedRule,
    ZoomIn,
    ZoomResult,
    crop_to_budget,
    resolve_box,
    zoom_in,
)
from pixel_gym.ops.frames import (
    MAX_SELECTED_FRAMES,
    SelectFrames,
    sample_frame_indices,
    select_frames,
    validate_frame_indices,
)
from pixel_gym.ops.registry import (
    DEFAULT_OPS,
    ENTRY_POINT_GROUP,
    DiscreteChoice,
    OpAction,
    OpCall,
    Operation,
    OpResult,
    StructuredForm,
    format_tool_call,
    get_op,
    image_result,
    load_plugin_ops,
    register_op,
    registry,
    resolve_ops,
)

__all__ = [
    "DEFAULT_OPS", "ENTRY_POINT_GROUP", "MAX_SELECTED_FRAMES", "MIN_CROP_SIDE", "PATCH", "BoxConvention",
    "DiscreteChoice", "NormalizedRule", "OpAction", "OpCall", "OpError", "OpResult", "Operation", "PixelBox",
    "PixelBudget", "SelectFrames", "StructuredForm", "ZoomIn", "ZoomResult", "array_length", "contrast",
    "crop_to_budget", "fit_to_budget", "format_tool_call", "get_op", "image_result", "integer_argument",
    "load_plugin_ops", "register_op", "registry", "resolve_box", "resolve_ops", "rotate", "sample_frame_indices",
    "select_frames", "short_repr", "smart_resize", "validate_frame_indices", "zoom_in",
]
