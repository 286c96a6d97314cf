"""The Pixel Reasoner paper's released data: RL data and evaluation sets (parquet) and SFT trajectories (json).

RL (`TIGER-Lab/PixelReasoner-RL-Data`) and the evaluation sets (`JasperHaozhe/VStar-EvalData-PixelReasoner`,
`MVBench-EvalData-PixelReasoner`, ...): a parquet file at the root (`release.parquet`, or `<benchmark>.parquet`)
with columns `question`, `image` (list of paths relative to the root, from images.zip / videos.zip), `is_video`
(the paths are the frames of a video; a path may also name a folder of extracted frames), `answer` (list) and
`qid`; the split is the parquet file's stem. Rows without any image (text-only) are skipped. Tasks of both kinds are
scored with the released rule (metric "pixel_reasoner", `pixel_gym.scores`), the reward the paper trains on.

SFT (`TIGER-Lab/PixelReasoner-SFT-Data`): a json list of {"message_list": Qwen-format chat, ...}; the question and
its images come from the first user turn (image paths relative to the root), the answer from the record's
`answer` field or else from the last `\\boxed{}` of the final assistant turn. A content part without a "type" is
read by its key (`{"image": ...}`, `{"video": [...]}`, `{"text": ...}`), as Qwen's `process_vision_info` does.

In both, an image path with a leading "/" that does not lie inside the root is read from the root
(`/images/x.jpg` = `<root>/images/x.jpg`); a path that climbs out of the root (`/../x.jpg`) is refused.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow

from pixel_gym.actions import last_boxed
from pixel_gym.datasets.common import (
    DatasetError,
    field,
    image_file,
    image_files_in,
    make_task,
    nonempty_path,
    read_list,
    record_path,
    resolve_inside,
    string_list,
)
from pixel_gym.tasks import ImageRef, Task

logger = logging.getLogger(__name__)
PARQUET_COLUMNS = ("question", "image", "answer", "qid")


def load_pixelreasoner(root: Path, split: str | None) -> Iterator[Task]:
    path = data_file(root, split, ".parquet")
    try:
        frame = pd.read_parquet(path)
    except (OSError, pyarrow.ArrowException) as error:
        raise DatasetError(f"cannot read {path}: {error}") from error
    missing = [column for column in PARQUET_COLUMNS if column not in frame.columns]
    if missing:
        raise DatasetError(f"{path}: missing columns {missing} (has {list(frame.columns)})")
    skipped = 0
    for index, record in enumerate(frame.to_dict("records")):
        where = f"{path} row {index}"
        task_id = f"pixelreasoner/{path.stem}/{record['qid']}"
        paths = _optional_list(record["image"], where)
        if not paths:
            skipped += 1
            continue
        is_video = bool(record.get("is_video", False))
        refs = tuple(ref for relative in paths for ref in _images_at(root, relative, task_id, where))
        yield make_task(where, id=task_id, question=field(record, "question", str, where),
                        answers=tuple(_answers(record["answer"], where)), metric="pixel_reasoner",
                        images=() if is_video else refs, video=refs if is_video else (),
                        category="video" if is_video else "image", source="pixelreasoner",
                        annotations={"qid": str(record["qid"])})
    if skipped:
        logger.info("%s: skipped %d text-only rows", path, skipped)


def load_pixelreasoner_sft(root: Path, split: str | None) -> Iterator[Task]:
    path = data_file(root, split, ".json")
    for index, record in enumerate(read_list(path)):
        where = f"{path}[{index}]"
        task_id = f"pixelreasoner_sft/{path.stem}/{index}"
        messages = field(record, "message_list", list, where)
        user = next((m for m in messages if isinstance(m, Mapping) and m.get("role") == "user"), None)
        if user is None or isinstance(user.get("content"), str):
            raise DatasetError(f"{where}: the first user turn must be a list of text and image parts")
        images: list[ImageRef] = []
        frames: list[ImageRef] = []
        texts = []
        for part in field(user, "content", list, where):
            kind = _part_kind(part)
            if kind == "image":
                images += _images_at(root, record_path(part, "image", where), task_id, where)
            elif kind == "video":
                frames += [ref for p in string_list(part.get("video"), where)
                           for ref in _images_at(root, p, task_id, where)]
            elif kind == "text":
                texts.append(field(part, "text", str, where))
        answer = record.get("answer") or last_boxed(_final_assistant_text(messages))
        if not answer:
            raise DatasetError(f"{where}: no `answer` field and no \\boxed{{}} answer in the final assistant turn")
        yield make_task(where, id=task_id, question="\n".join(texts).strip(),
                        answers=tuple(_answers(answer, where)),
                        metric="pixel_reasoner", images=tuple(images), video=tuple(frames),
                        source="pixelreasoner_sft",
                        category="video" if frames else "image", annotations={"qid": str(record.get("qid", ""))})


def data_file(root: Path, split: str | None, suffix: str) -> Path:
    """`<split><suffix>` in `root`, or without a split the only such file there."""
    if split is not None:
        path = resolve_inside(root, f"{split}{suffix}", "split")
        if not path.is_file():
            raise DatasetError(f"missing file: {path}")
        return path
    found = sorted(root.glob(f"*{suffix}"))
    if len(found) != 1:
        names = ", ".join(p.name for p in found) or "none"
        raise DatasetError(f"expected one {suffix} file in {root} (or pass split=<file stem>), found {names}")
    return found[0]


def _part_kind(part: Any) -> str | None:
    """A content part's "type", or without one the first of the keys image, video, text that it has."""
    if not isinstance(part, Mapping):
        return None
    if "type" in part:
        return part["type"]
    return next((key for key in ("image", "video", "text") if key in part), None)


def _images_at(root: Path, relative: str, task_id: str, where: str) -> list[ImageRef]:
    """The image at `relative`, or every image of the folder of extracted frames there."""
    relative = nonempty_path(_from_root(root, relative), where)
    path = resolve_inside(root, relative, f"{where}: task {task_id}")
    if path.is_dir():
        return [image_file(root, frame, task_id, where) for frame in image_files_in(path)]
    return [image_file(root, relative, task_id, where)]


def _from_root(root: Path, relative: str) -> str:
    """`relative`, or, if it is absolute but not inside `root`, the same path read from `root` ("/a" -> "a")."""
    base = os.path.abspath(root)
    if os.path.isabs(relative) and os.path.commonpath([base, os.path.abspath(relative)]) != base:
        return relative.lstrip("/")
    return relative


def _optional_list(value: Any, where: str) -> list[str]:
    """The non-empty paths of an `image` cell (a list, a single path, or missing)."""
    if value is None or isinstance(value, str):
        return [value] if value else []
    return [p for p in string_list(value, where, minimum=0) if p]


def _answers(value: Any, where: str) -> list[str]:
    return [value] if isinstance(value, str) else string_list(value, where)


def _final_assistant_text(messages: list[Any]) -> str:
    for message in reversed(messages):
        if isinstance(message, Mapping) and message.get("role") == "assistant":
            content = message.get("content")
            if isinstance(content, str):
                return content
            return "".join(p.get("text", "") for p in content or [] if isinstance(p, Mapping))
    return ""
