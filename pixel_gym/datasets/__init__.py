"""Public benchmarks and the paper's released data as `Task`s, read from local files in their published layouts.

`load_tasks("vstar", "data/vstar")` returns a list of `pixel_gym.tasks.Task` (images stay lazy file references;
their existence is checked here, their decoding waits until an episode shows them). `data_dir` is a local folder
or `hf://owner/name` (see `pixel_gym.datasets.hub`). Each module's docstring describes the layout it reads;
`pixel_gym.datasets.metrics.benchmark_score` scores answers as each benchmark's official evaluation does.
A record whose files the published download lacks (MVBench's deleted `video/nturgbd.zip`) is skipped, not
fatal: `load_tasks` logs a warning and lists such records in the result's `skipped` (`skip_summary()`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from pixel_gym.datasets.common import DatasetError, LoadedTasks, Skipped
from pixel_gym.datasets.hub import dataset_root
from pixel_gym.datasets.infovqa import load_infovqa
from pixel_gym.datasets.metrics import benchmark_score
from pixel_gym.datasets.mvbench import load_mvbench
from pixel_gym.datasets.pixelreasoner import load_pixelreasoner, load_pixelreasoner_sft
from pixel_gym.datasets.tallyqa import load_tallyqa
from pixel_gym.datasets.vstar import load_vstar
from pixel_gym.tasks import Task

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DatasetInfo:
    load: Callable[[Path, str | None], Iterable[Task | Skipped]]  # (root, split) -> tasks, in file order
    folder: str  # the dataset's usual folder name under a common data directory
    hub_id: str | None  # where the published layout can be downloaded (`hf://` + this)
    description: str


DATASETS: dict[str, DatasetInfo] = {
    "vstar": DatasetInfo(load_vstar, "vstar", "craigwu/vstar_bench", "V* Bench, multiple choice (test)"),
    "tallyqa": DatasetInfo(partial(load_tallyqa, complex_only=False), "tallyqa", None,
                           "TallyQA counting (test, train)"),
    "tallyqa_complex": DatasetInfo(partial(load_tallyqa, complex_only=True), "tallyqa", None,
                                   "TallyQA-Complex: issimple false (test, train)"),
    "infovqa": DatasetInfo(load_infovqa, "infovqa", None, "InfographicsVQA, ANLS (val, train)"),
    "mvbench": DatasetInfo(load_mvbench, "mvbench", "OpenGVLab/MVBench", "MVBench video multiple choice (test)"),
    "pixelreasoner": DatasetInfo(load_pixelreasoner, "pixelreasoner", "TIGER-Lab/PixelReasoner-RL-Data",
                                 "the paper's RL data or evaluation sets (split = parquet stem)"),
    "pixelreasoner_sft": DatasetInfo(load_pixelreasoner_sft, "pixelreasoner_sft", "TIGER-Lab/PixelReasoner-SFT-Data",
                                     "the paper's SFT trajectories as tasks (split = json stem)"),
}


def load_tasks(name: str, data_dir: str | os.PathLike, split: str | None = None,
               limit: int | None = None) -> LoadedTasks:
    """The first `limit` tasks (all when None) of dataset `name` in `data_dir`, for `split` (its default if None).

    Records skipped on the way (their files are missing from the download) are in the result's `skipped`; a
    warning says how many, per category. When every record read was skipped, that is an error.
    """
    if name not in DATASETS:
        raise DatasetError(f"unknown dataset {name!r}; available: {', '.join(DATASETS)}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise ValueError(f"limit must be a non-negative integer or None, got {limit!r}")
    tasks: list[Task] = []
    skipped: list[Skipped] = []
    records = iter(DATASETS[name].load(dataset_root(data_dir), split))
    while limit is None or len(tasks) < limit:
        record = next(records, None)
        if record is None:
            break
        (skipped if isinstance(record, Skipped) else tasks).append(record)
    loaded = LoadedTasks(tasks, skipped)
    if skipped:
        if not tasks:
            raise DatasetError(f"{name}: no usable record in {data_dir}: {loaded.skip_summary()}")
        logger.warning("%s: %s", name, loaded.skip_summary())
    seen: set[str] = set()
    for task in tasks:
        if task.id in seen:
            raise DatasetError(f"{name}: task id {task.id!r} occurs twice")
        seen.add(task.id)
    return loaded


__all__ = ["DATASETS", "DatasetError", "DatasetInfo", "LoadedTasks", "Skipped", "benchmark_score", "load_tasks"]
