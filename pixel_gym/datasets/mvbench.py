"""MVBench (`OpenGVLab/MVBench`): 20 multiple-choice video tasks, 16 frames per question.

Layout: `json/<task>.json`, each a list of {"video": "xyz.mp4", "question", "candidates": [...], "answer": the
correct candidate's text, "start"/"end" (seconds, in the tasks that have them)}, and `video/<source>/...` with
the clips (`video/tvqa/frames_fps3_hq/<clip>/` holds extracted frames instead). `TASK_VIDEO_FOLDERS` maps each
task to its source folder as MVBench's evaluation does; a task not listed there finds its videos under `video/`.
Frames are sampled exactly as that evaluation does (`video.segment_indices`).

The hub copy lacks some videos (upstream deleted `video/nturgbd.zip`, so `fine_grained_pose` has none): a
question whose video is missing, or whose `start` lies after its `end`, is skipped and reported (`Skipped`), not
fatal; `load_tasks` warns with the count per task.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pixel_gym.datasets.common import (
    DatasetError,
    Skipped,
    field,
    make_task,
    read_list,
    record_path,
    require_dir,
    resolve_inside,
    string_list,
)
from pixel_gym.datasets.video import Bound, video_frames
from pixel_gym.tasks import Task, choice_letters

# task -> (folder under video/, whether questions are bounded by start/end seconds)
TASK_VIDEO_FOLDERS: dict[str, tuple[str, bool]] = {
    "action_sequence": ("star/Charades_v1_480", True),
    "action_prediction": ("star/Charades_v1_480", True),
    "action_antonym": ("ssv2_video", False),
    "fine_grained_action": ("Moments_in_Time_Raw/videos", False),
    "unexpected_action": ("FunQA_test/test", False),
    "object_existence": ("clevrer/video_validation", False),
    "object_interaction": ("star/Charades_v1_480", True),
    "object_shuffle": ("perception/videos", False),
    "moving_direction": ("clevrer/video_validation", False),
    "action_localization": ("sta/sta_video", True),
    "scene_transition": ("scene_qa/video", False),
    "action_count": ("perception/videos", False),
    "moving_count": ("clevrer/video_validation", False),
    "moving_attribute": ("clevrer/video_validation", False),
    "state_change": ("perception/videos", False),
    "fine_grained_pose": ("nturgbd", False),
    "character_order": ("perception/videos", False),
    "egocentric_navigation": ("vlnqa", False),
    "episodic_reasoning": ("tvqa/frames_fps3_hq", True),
    "counterfactual_inference": ("clevrer/video_validation", False),
}


def load_mvbench(root: Path, split: str | None) -> Iterator[Task | Skipped]:
    if split not in (None, "test"):
        raise DatasetError(f"MVBench has only a 'test' split, not {split!r}")
    files = sorted(require_dir(root / "json", "MVBench question folder").glob("*.json"))
    if not files:
        raise DatasetError(f"no task files (*.json) in {root / 'json'}")
    for path in files:
        for index, record in enumerate(read_list(path)):
            yield _question(root, path, index, record)


def _question(root: Path, path: Path, index: int, record: Any) -> Task | Skipped:
    """Question `index` of the task file `path`, or why it is skipped."""
    folder, bounded = TASK_VIDEO_FOLDERS.get(path.stem, ("", False))
    where = f"{path}[{index}]"
    task_id = f"mvbench/{path.stem}/{index}"
    choices = tuple(string_list(field(record, "candidates", list, where), where, minimum=2))
    answer = str(field(record, "answer", (str, int, float), where))
    if answer not in choices:
        raise DatasetError(f"{where}: answer {answer!r} is not one of the candidates {choices}")
    bound = _bound(record, where) if bounded else None
    video = Path("video") / folder / record_path(record, "video", where)
    located = resolve_inside(root, video, f"{where}: task {task_id}")
    if not located.exists():
        return Skipped(task_id, path.stem, f"video not found: {located}")
    if bound is not None and bound[0] > bound[1]:
        return Skipped(task_id, path.stem, f"start {bound[0]:g} s is after end {bound[1]:g} s")
    return make_task(where, id=task_id, question=field(record, "question", str, where),
                     answers=(choice_letters(len(choices))[choices.index(answer)],), metric="choice",
                     video=video_frames(root, video, task_id, bound), choices=choices, category=path.stem,
                     source="mvbench", answer_type="choice", annotations={"video": str(video), "bound": bound})


def _bound(record: Any, where: str) -> Bound:
    """The question's (start, end) seconds, finite numbers."""
    bound = (float(field(record, "start", (int, float), where)), float(field(record, "end", (int, float), where)))
    if not all(math.isfinite(value) for value in bound):
        raise DatasetError(f"{where}: start and end must be finite seconds, got {bound}")
    return bound
