"""V* Bench (`craigwu/vstar_bench`): multiple choice about small objects in high-resolution photos.

Layout: `test_questions.jsonl` at the root, one question per line ({"image": "direct_attributes/sa_4690.jpg",
"text": "question\\n(A) ...\\n(B) ...\\nAnswer with the option's letter ...", "label": "A", "question_id": 0,
"category": "direct_attributes"}), and the folders `direct_attributes/` and `relative_position/` holding each
image beside a json of the same name ({"target_object": [...], "bbox": [[x, y, w, h], ...], "question",
"options": [correct option first, ...]}). The jsonl gives the benchmark's own option order; the boxes of the
json become `target_boxes`. Without the jsonl the questions come from the json files, their options put in a
fixed pseudo-random order (seeded by the task id) so that the answer is not always (A).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from pixel_gym.datasets.common import (
    IMAGE_SUFFIXES,
    DatasetError,
    answer_letter,
    field,
    image_file,
    make_task,
    read_json,
    read_jsonl,
    record_path,
    split_options,
    string_list,
)
from pixel_gym.tasks import Box, Task, choice_letters

CATEGORIES = ("direct_attributes", "relative_position")
QUESTIONS_FILE = "test_questions.jsonl"


def load_vstar(root: Path, split: str | None) -> Iterator[Task]:
    if split not in (None, "test"):
        raise DatasetError(f"V* Bench has only a 'test' split, not {split!r}")
    questions = root / QUESTIONS_FILE
    if questions.is_file():
        yield from _from_jsonl(root, questions)
        return
    folders = [root / name for name in CATEGORIES if (root / name).is_dir()]
    if not folders:
        raise DatasetError(f"{root} holds neither {QUESTIONS_FILE} nor the folders {', '.join(CATEGORIES)}")
    for folder in folders:
        for path in sorted(folder.glob("*.json")):
            yield _from_annotation(root, path)


def _from_jsonl(root: Path, questions: Path) -> Iterator[Task]:
    for where, record in read_jsonl(questions):
        task_id = f"vstar/{field(record, 'question_id', (int, str), where)}"
        relative = record_path(record, "image", where)
        image = image_file(root, relative, task_id, where)  # checked (inside the root) before its sidecar
        text = field(record, "text", str, where)
        question, choices = split_options(text, where)
        answer = answer_letter(str(field(record, "label", (str, int), where)), choices, where)
        sidecar = Path(str(image.source)).with_suffix(".json")
        boxes = _boxes(read_json(sidecar), str(sidecar)) if sidecar.is_file() else ()
        category = record.get("category") or Path(relative).parent.name
        yield make_task(where, id=task_id, question=question, answers=(answer,), metric="choice", images=(image,),
                        choices=choices, target_boxes=boxes, category=category, source="vstar", text_as_written=text,
                        answer_type="choice")


def _from_annotation(root: Path, path: Path) -> Task:
    where = str(path)
    record = read_json(path)
    task_id = f"vstar/{path.parent.name}/{path.stem}"
    options = string_list(field(record, "options", list, where), where, minimum=2)
    order = np.random.default_rng(zlib.crc32(task_id.encode())).permutation(len(options))
    choices = tuple(options[i] for i in order)
    answer = choice_letters(len(choices))[int(np.flatnonzero(order == 0)[0])]
    image = next((path.with_suffix(s) for s in IMAGE_SUFFIXES if path.with_suffix(s).is_file()), None)
    if image is None:
        raise DatasetError(f"task {task_id}: no image beside {path} (looked for {', '.join(IMAGE_SUFFIXES)})")
    return make_task(where, id=task_id, question=field(record, "question", str, where), answers=(answer,),
                     metric="choice", images=(image_file(root, image.relative_to(root), task_id, where),),
                     choices=choices, target_boxes=_boxes(record, where), category=path.parent.name,
                     source="vstar", answer_type="choice")


def _boxes(record: Any, where: str) -> tuple[Box, ...]:
    """The annotated target boxes ([x, y, w, h] in pixels) labelled with their object names."""
    boxes = field(record, "bbox", list, where)
    names = record.get("target_object") or [""] * len(boxes)
    try:
        return tuple(Box(float(x), float(y), float(x) + float(w), float(y) + float(h), str(name))
                     for (x, y, w, h), name in zip(boxes, names, strict=True))
    except (TypeError, ValueError) as error:
        raise DatasetError(f"{where}: bbox must be a list of [x, y, w, h] boxes, one per target_object") from error
