"""TallyQA (Acharya et al. 2019): counting questions on COCO and Visual Genome images.

Layout: `train.json` / `test.json` at the root, each a list of {"image": "val2014/COCO_val2014_000000000139.jpg"
or "VG_100K_2/2350.jpg", "question", "answer": int, "issimple": bool, "question_id", "image_id",
"data_source"}; the image paths are relative to the root, which holds (or links to) COCO's `train2014/`,
`val2014/` and Visual Genome's `VG_100K/`, `VG_100K_2/`. TallyQA-Complex is the questions with issimple false.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from pixel_gym.datasets.common import DatasetError, field, image_file, make_task, read_list, record_path
from pixel_gym.tasks import Task

SPLITS = ("train", "test")


def load_tallyqa(root: Path, split: str | None, complex_only: bool = False) -> Iterator[Task]:
    split = split or "test"
    if split not in SPLITS:
        raise DatasetError(f"TallyQA splits are {SPLITS}, not {split!r}")
    path = root / f"{split}.json"
    for index, record in enumerate(read_list(path)):
        where = f"{path}[{index}]"
        task_id = f"tallyqa/{split}/{field(record, 'question_id', (int, str), where)}"
        simple = field(record, "issimple", bool, where) if complex_only else record.get("issimple")
        if complex_only and simple:
            continue
        answer = field(record, "answer", int, where)
        image = image_file(root, record_path(record, "image", where), task_id, where)
        yield make_task(where, id=task_id, question=field(record, "question", str, where), answers=(str(answer),),
                        metric="count", images=(image,), answer_type="count", source="tallyqa",
                        category={True: "simple", False: "complex"}.get(simple, ""),
                        annotations={"data_source": record.get("data_source", ""), "image_id": record.get("image_id")})
