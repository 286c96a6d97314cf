"""What a verl data row carries so any worker can rebuild its episode: the task, the env settings, the gold answer.

All three travel as JSON strings inside `extra_info` (parquet-safe whatever the suite parameters are):
- task: a built-in suite task by (suite, size, seed, split, kwargs, index) -- regenerated, pixels included, on
  the worker -- or a `Task` embedded whole (image files by path, in-memory images as base64 PNG);
- env: the `PixelVQAEnv` settings that shaped the prompt (budgets preset, turn/op/image limits, padding, frames,
  the offered ops);
- ground truth: answers, metric and choices, enough for `pixel_gym.reward.score_answer`.
"""

from __future__ import annotations

import base64
import io
import json
import os
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any

from PIL import Image

from pixel_gym.env import PixelVQAEnv
from pixel_gym.ops import DEFAULT_OPS
from pixel_gym.reward import NO_CURIOSITY
from pixel_gym.suites import make_suite
from pixel_gym.suites.base import Suite
from pixel_gym.tasks import ImageRef, Task

TASK_FIELDS = ("id", "question", "answers", "metric", "choices", "answer_type", "category", "source")


@dataclass(frozen=True)
class EnvSettings:
    """The `PixelVQAEnv` arguments a row was rendered with (the agent loop and the tools use the same)."""

    budgets: str = "compact"
    max_turns: int = 4
    max_ops: int = 4
    max_images: int = 16
    padding: float = 0.1
    num_shown_frames: int = 16
    ops: tuple[str, ...] = DEFAULT_OPS  # the registered pixel operations offered (`pixel_gym.ops`)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str | None) -> EnvSettings:
        values = json.loads(text) if text else {}
        return cls(**{**values, "ops": tuple(values.get("ops", DEFAULT_OPS))})


def make_env(settings: EnvSettings, task: Task) -> PixelVQAEnv:
    """An env for one episode of `task`. Rewards are correctness only: the group shaping happens in the trainer."""
    return PixelVQAEnv(tasks=[task], curiosity=NO_CURIOSITY, **asdict(settings))


# ------------------------------------------------------------------------------------------------ tasks


def suite_task_spec(suite: Suite, index: int, kwargs: dict[str, Any]) -> str:
    """Spec of task `index` of a built-in suite built with `make_suite(suite.name, **kwargs)`."""
    return json.dumps({"suite": suite.name, "size": suite.size, "seed": suite.seed, "split": suite.split,
                       "kwargs": kwargs, "index": index, "id": suite.task_id(index)})


def embedded_task_spec(task: Task) -> str:
    """Spec holding the whole task (for task lists that no suite can regenerate)."""
    record: dict[str, Any] = {name: getattr(task, name) for name in TASK_FIELDS}
    record["images"] = [_encode_ref(ref) for ref in task.images]
    record["video"] = [_encode_ref(ref) for ref in task.video]
    return json.dumps({"task": record})


def load_task(spec: str) -> Task:
    """The task a spec names (suite tasks are checked against the id recorded with them)."""
    data = json.loads(spec)
    if "task" in data:
        record = dict(data["task"])
        images = tuple(_decode_ref(value) for value in record.pop("images"))
        video = tuple(_decode_ref(value) for value in record.pop("video"))
        sequences = {name: tuple(record.pop(name)) for name in ("answers", "choices")}
        return Task(**record, **sequences, images=images, video=video)
    suite = _suite(data["suite"], data["size"], data["seed"], data["split"], json.dumps(data["kwargs"]))
    task = suite[data["index"]]
    if task.id != data["id"]:
        raise ValueError(f"suite task {data['index']} is {task.id!r}, the row was written for {data['id']!r}: "
                         "the suite changed since the data was prepared")
    return task


@lru_cache(maxsize=32)
def _suite(name: str, size: int, seed: int, split: str, kwargs_json: str) -> Suite:
    return make_suite(name, size=size, seed=seed, split=split, **json.loads(kwargs_json))


def _encode_ref(ref: ImageRef) -> dict[str, str]:
    if isinstance(ref.source, (str, os.PathLike)):
        return {"path": os.fspath(ref.source)}
    buffer = io.BytesIO()
    ref.open().save(buffer, format="PNG")
    return {"png_base64": base64.b64encode(buffer.getvalue()).decode("ascii")}


def _decode_ref(value: dict[str, str]) -> ImageRef:
    if "path" in value:
        return ImageRef(value["path"])
    return ImageRef(base64.b64decode(value["png_base64"]))


# -------------------------------------------------------------------------------------------- answers


def ground_truth(task: Task) -> str:
    """What scoring an answer needs, as the row's `reward_model.ground_truth`."""
    return json.dumps({"id": task.id, "answers": list(task.answers), "metric": task.metric,
                       "choices": list(task.choices)})


def answer_task(truth: str) -> Task:
    """A task to score answers against: the gold answers of `truth` and an image that is never drawn."""
    data = json.loads(truth)
    return Task(id=data["id"], question="", answers=tuple(data["answers"]), metric=data["metric"],
                choices=tuple(data["choices"]), images=(ImageRef(_no_pixels),))


def _no_pixels() -> Image.Image:
    raise RuntimeError("a ground-truth task has no pixels")
