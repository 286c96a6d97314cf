"""InfographicsVQA (Mathew et al. 2022): questions on infographics, scored by ANLS over all gold answers.

Layout (as released on the RRC / DocVQA site): the annotation file of a split at the root or in the folder
`infographicsvqa_qas/` that the released `infographicsvqa_qas.zip` unpacks to (any root folder whose name holds
"qas"), its name holding the split as a word, e.g. `infographicsVQA_val_v1.0_withQT.json` = {"dataset_name",
"dataset_split", "data": [{"questionId", "question", "image_local_name": "37313.jpeg", "answers": [...],
"answer_type": [...], "evidence": [...], "operation/reasoning": [...]}]}, and the images in the root or in a folder
of it whose name contains "image" (e.g. `infographicsvqa_images/`). The test split's answers are not public.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from pixel_gym.datasets.common import (
    DatasetError,
    field,
    image_file,
    make_task,
    read_json,
    record_path,
    resolve_inside,
    string_list,
)
from pixel_gym.tasks import ImageRef, Task

SPLITS = ("train", "val", "test")
EXTRA_FIELDS = ("answer_type", "evidence", "operation/reasoning")


def load_infovqa(root: Path, split: str | None) -> Iterator[Task]:
    split = split or "val"
    if split not in SPLITS:
        raise DatasetError(f"InfographicsVQA splits are {SPLITS}, not {split!r}")
    path = annotation_file(root, split)
    folders = [root, *sorted(p for p in root.iterdir() if p.is_dir() and "image" in p.name.lower())]
    for index, record in enumerate(field(read_json(path), "data", list, str(path))):
        where = f"{path} data[{index}]"
        task_id = f"infovqa/{split}/{field(record, 'questionId', (int, str), where)}"
        if not record.get("answers"):
            raise DatasetError(f"task {task_id}: no gold answers (the test split's answers are not public)")
        answers = string_list(record["answers"], where)
        image = _find_image(root, folders, record_path(record, "image_local_name", where), task_id, where)
        types = record.get("answer_type") or [""]
        yield make_task(where, id=task_id, question=field(record, "question", str, where), answers=tuple(answers),
                        metric="anls", images=(image,), category=str(types[0]), source="infovqa",
                        annotations={key: record[key] for key in EXTRA_FIELDS if key in record})


def annotation_file(root: Path, split: str) -> Path:
    """The one json file at the root or in a `*qas*` folder whose name has `split` as a word (`..._val_v1.0...`)."""
    candidates = [*root.glob("*.json"), *(p for p in root.glob("*/*.json") if "qas" in p.parent.name.lower())]
    found = sorted(p for p in candidates if split in re.split(r"[_.\-\s]", p.name.lower()))
    if len(found) != 1:
        names = ", ".join(str(p.relative_to(root)) for p in found) or "none"
        raise DatasetError(f"expected one InfographicsVQA annotation file for split {split!r} in {root} "
                           f"(or a *qas* folder in it), found {names}")
    return found[0]


def _find_image(root: Path, folders: list[Path], name: str, task_id: str, where: str) -> ImageRef:
    for folder in folders:
        relative = folder.relative_to(root) / name
        if resolve_inside(root, relative, f"{where}: task {task_id}").is_file():
            return image_file(root, relative, task_id, where)
    searched = ", ".join(str(f) for f in folders)
    raise DatasetError(f"task {task_id}: image {name!r} not found in {searched}")
