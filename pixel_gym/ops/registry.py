"""The operation registry: every pixel operation an env can offer, built-in or a plug-in, is one `Operation`.

An operation is a name, its JSON tool schema (what the system prompt lists) and a function from the episode's
current images and the parsed arguments to new views (`OpResult`) or an error (`OpError`, shown to the model as an
execution error). Optional parts: how its arguments are read (`parse`, else the schema's required keys are checked
and the arguments arrive as an `OpCall`), how a trace step uses it (`trace`), the discrete actions a wrapper
offers for it (`discrete`), its part of the structured action space (`structured`), and names the lenient parser
also accepts (`aliases`). As with gymnasium's `register`, `register_op(...)` adds one (re-registering a name
replaces it, with a warning); packages register theirs through the `pixel_gym.ops` entry point group, loaded the
first time a name is not found. `PixelVQAEnv(ops=[...])` chooses which are offered (default: `DEFAULT_OPS`, the
released two). `apply` and `trace` may be "module:attribute" strings, imported when first used.
"""

from __future__ import annotations

import importlib
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, ClassVar

from pixel_gym.ops.base import OpError, PixelBox

if TYPE_CHECKING:
    import numpy as np
    from gymnasium import spaces
    from PIL import Image

    from pixel_gym.episode import Episode, View
    from pixel_gym.executor import Limits, OpContext

ENTRY_POINT_GROUP = "pixel_gym.ops"
DEFAULT_OPS = ("crop_image_normalized", "select_frames")  # the released protocol's tools, in its order
NormBox = tuple[float, float, float, float]
logger = logging.getLogger(__name__)


class OpAction:
    """An action that calls a registered operation: `op` names it; `call_arguments()` is what a model writes."""

    op: ClassVar[str]

    def call_arguments(self) -> dict[str, Any]:
        raise NotImplementedError


@dataclass(frozen=True)
class OpCall(OpAction):
    """A call of an operation without its own argument type: the arguments as the model wrote them."""

    op: str  # type: ignore[misc]  # an instance field here, a class constant in the built-in actions
    arguments: dict[str, Any] = field(default_factory=dict)

    def call_arguments(self) -> dict[str, Any]:
        return dict(self.arguments)


@dataclass(frozen=True)
class OpResult:
    """What an operation produced: the result text (shown before the images) and the new views, in order."""

    text: str
    views: list[View]
    source: View | None = None  # the view operated on (recorded as `OpRecord.view`)
    region: PixelBox | None = None  # the source region cut, in source pixels (render and the wrapper draw it)
    frames: tuple[int, ...] = ()  # the video frames selected (render marks them)


@dataclass(frozen=True)
class DiscreteChoice:
    """One discrete action a wrapper offers: the env action, and when it makes sense (for action masks)."""

    action: OpAction
    allowed: Callable[[Episode, Limits], bool] | None = None


@dataclass(frozen=True)
class StructuredForm:
    """An operation's part of the env's structured `OneOf` action space."""

    label: str
    space: Callable[[int, int], spaces.Space]  # (max_images, max_frames) -> the value's space
    convert: Callable[[Any, int], OpAction]  # (value, max_frames) -> action; raises TypeError or ValueError


ApplyFn = Callable[["OpContext", Any], OpResult]
ParseFn = Callable[[dict[str, Any], str, bool], OpAction]  # (arguments, name called, lenient) -> action
TraceFn = Callable[["Episode", str, "np.random.Generator"], "list[str] | None"]  # (episode, kind, rng) -> turns
DiscreteFn = Callable[[Sequence[NormBox]], list[DiscreteChoice]]  # (the wrapper's grid cells) -> choices


@dataclass(frozen=True)
class Operation:
    """One pixel operation (see the module docstring)."""

    name: str
    schema: dict[str, Any]
    apply: ApplyFn | str
    parse: ParseFn | None = None
    trace: TraceFn | str | None = None
    discrete: DiscreteFn | None = None
    structured: StructuredForm | None = None
    aliases: tuple[str, ...] = ()

    def read(self, arguments: dict[str, Any], name: str, lenient: bool = False) -> OpAction:
        """The action for a call of this op by `name` (its own or an alias); raises `OpError`."""
        if self.parse is not None:
            return self.parse(arguments, name, lenient)
        for key in self.required:
            if key not in arguments:
                raise OpError(f"{key} is missing: {self.name} needs {', '.join(self.required)}")
        return OpCall(self.name, arguments)

    @property
    def required(self) -> list[str]:
        """The argument names its schema requires."""
        return list(self.schema["function"].get("parameters", {}).get("required", ()))

    def run(self, context: OpContext, action: Any) -> OpResult:
        """Carry out `action` on the episode in `context`; raises `OpError`."""
        return _load(self.apply)(context, action)

    def trace_turns(self, episode: Episode, kind: str, rng: np.random.Generator) -> list[str] | None:
        """The assistant turns of a trace step that uses this op (None: no trace step, or none for this task)."""
        return None if self.trace is None else _load(self.trace)(episode, kind, rng)


registry: dict[str, Operation] = {}
_plugins_loaded: list[bool] = []


def register_op(
    name: str,
    schema: dict[str, Any],
    apply: ApplyFn | str,
    *,
    parse: ParseFn | None = None,
    trace: TraceFn | str | None = None,
    discrete: DiscreteFn | None = None,
    structured: StructuredForm | None = None,
    aliases: Sequence[str] = (),
) -> Operation:
    """Add an operation to the registry and return it. `schema` is an OpenAI-style tool
    (`{"type": "function", "function": {"name", "description", "parameters"}}`) or just its "function" part; its
    name must be `name`."""
    tool = schema if "function" in schema else {"type": "function", "function": schema}
    if tool["function"].get("name") != name:
        raise ValueError(f"the schema of op {name!r} is named {tool['function'].get('name')!r}")
    json.dumps(tool)  # the prompt writes it as JSON: refuse what cannot be written
    if name in registry:
        logger.warning("Overriding op %s already in the registry.", name)
    op = Operation(name, tool, apply, parse, trace, discrete, structured, tuple(aliases))
    registry[name] = op
    return op


def get_op(name: str) -> Operation:
    """The registered op `name` (plug-ins of the `pixel_gym.ops` entry point group load on the first miss)."""
    if name not in registry and not _plugins_loaded:
        load_plugin_ops()
    if name not in registry:
        raise ValueError(f"no pixel operation {name!r}; registered: {', '.join(registry)}")
    return registry[name]


def resolve_ops(ops: Sequence[str | Operation] | None = None) -> tuple[Operation, ...]:
    """The operations an env offers, from names or `Operation`s (None: `DEFAULT_OPS`)."""
    if isinstance(ops, (str, Operation)):
        ops = [ops]
    chosen = tuple(op if isinstance(op, Operation) else get_op(op) for op in (DEFAULT_OPS if ops is None else ops))
    if not chosen:
        raise ValueError("ops needs at least one operation (for a prompt without tools, set system_prompt)")
    names = [name for op in chosen for name in (op.name, *op.aliases)]
    clashes = sorted({name for name in names if names.count(name) > 1})
    if clashes:
        raise ValueError(f"ops offered twice, or an alias of another op: {', '.join(clashes)}")
    return chosen


def load_plugin_ops() -> None:
    """Load the `pixel_gym.ops` entry points: each names an `Operation`, a function that registers ops, or a
    module that registers them on import. A plug-in that fails to load is logged and skipped."""
    _plugins_loaded.append(True)
    for point in entry_points(group=ENTRY_POINT_GROUP):
        try:
            loaded = point.load()
            if isinstance(loaded, Operation):
                registry[loaded.name] = loaded
            elif callable(loaded):
                loaded()
        except Exception as error:  # a broken plug-in must not break the envs that do not use it
            logger.warning("plug-in op %s (%s) failed to load: %s: %s", point.name, point.value,
                           type(error).__name__, error)


def image_result(context: OpContext, target: View, image: Image.Image, what: str) -> OpResult:
    """The result of an op that turns view `target` into one new image: a view of the same region, and the text
    "Here is the {what} image (Image Size: WxH):" in the released crop result's form."""
    view = context.new_view(target, image)
    text = f"\nHere is the {what} image (Image Size: {view.image.width}x{view.image.height}):"
    return OpResult(text, [view], source=target)


def format_tool_call(name: str, arguments: dict[str, Any]) -> str:
    """The text a model writes to call a tool (Hermes style, as in the paper's traces)."""
    return f"<tool_call>\n{json.dumps({'name': name, 'arguments': arguments})}\n</tool_call>"


def _load(hook: Callable[..., Any] | str) -> Callable[..., Any]:
    if not isinstance(hook, str):
        return hook
    module, _, attribute = hook.partition(":")
    return getattr(importlib.import_module(module), attribute)
