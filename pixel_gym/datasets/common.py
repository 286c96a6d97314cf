"""Shared pieces of the loaders: the error type, paths kept inside a dataset root, checked JSON fields, options."""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pixel_gym.tasks import ImageRef, Task, choice_letters

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif")
OPTION_LINE = re.compile(r"^\(([A-Z])\)\s*(.*)$")


class DatasetError(ValueError):
    """A dataset folder, file or record is missing or malformed; the message names the file or the task."""


def require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise DatasetError(f"{what} not found: {path}")
    return path


def resolve_inside(root: Path, relative: str | os.PathLike, owner: str) -> Path:
    """`root / relative` made absolute, refused if it climbs out of `root` (`..`, absolute paths elsewhere).

    `..` is resolved lexically: a symlink the user placed inside the root (say `train2014 -> /data/coco/...`) is
    followed, but a path written in a record can never leave the root.
    """
    base = Path(os.path.abspath(root))
    path = Path(os.path.abspath(base / relative))
    if path != base and base not in path.parents:
        raise DatasetError(f"{owner}: path {str(relative)!r} escapes the dataset root {base}")
    return path


def nonempty_path(value: str, where: str, what: str = "image") -> str:
    """`value`, refused when it names no file at all ("", ".", "a/..": the dataset root itself)."""
    if not value.strip() or os.path.normpath(value) == ".":
        raise DatasetError(f"{where}: the record's {what} path {value!r} is empty")
    return value


def record_path(record: Any, key: str, where: str) -> str:
    """The file path in `record[key]` (text, not empty)."""
    return nonempty_path(field(record, key, str, where), where, key)


def image_file(root: Path, relative: str | os.PathLike, task_id: str, where: str) -> ImageRef:
    """A lazy reference to an image file under `root`, which must exist (decoding waits until it is shown).
    Errors name the record's place `where` (file and line or index) and the task."""
    path = resolve_inside(root, relative, f"{where}: task {task_id}")
    if not path.is_file():
        raise DatasetError(f"{where}: task {task_id}: image not found: {path}")
    return ImageRef(str(path), name=f"{path} (task {task_id})")


def image_files_in(folder: Path) -> list[Path]:
    """The image files directly inside `folder`, sorted by name (extracted video frames)."""
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def read_json(path: Path) -> Any:
    if not path.is_file():
        raise DatasetError(f"missing file: {path}")
    try:
        return json.loads(path.read_text(encoding="utf-8-sig"))
    except UnicodeDecodeError as error:
        raise DatasetError(f"{path} is not UTF-8 text ({error.reason} at byte {error.start})") from error
    except json.JSONDecodeError as error:
        raise DatasetError(f"{path} is not valid JSON: {error}") from error


def read_jsonl(path: Path) -> Iterator[tuple[str, Any]]:
    """(location, record) for each non-empty line of a JSON-lines file."""
    with path.open("rb") as lines:
        for number, raw in enumerate(lines, 1):
            where = f"{path}:{number}"
            try:
                line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as error:
                raise DatasetError(f"{where}: {path.name} is not UTF-8 text ({error.reason} at byte "
                                   f"{error.start} of line {number})") from error
            if line.strip():
                try:
                    yield where, json.loads(line)
                except json.JSONDecodeError as error:
                    raise DatasetError(f"{where} is not valid JSON: {error}") from error


def read_list(path: Path) -> list[Any]:
    records = read_json(path)
    if not isinstance(records, list):
        raise DatasetError(f"{path}: expected a JSON list of records, got {type(records).__name__}")
    return records


def field(record: Any, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    """`record[key]`, checked to be of `kind` (a bool never passes for a number)."""
    if not isinstance(record, Mapping):
        raise DatasetError(f"{where}: expected a JSON object, got {type(record).__name__}")
    if key not in record:
        raise DatasetError(f"{where}: missing field {key!r}")
    value = record[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        names = " or ".join(k.__name__ for k in kinds)
        raise DatasetError(f"{where}: field {key!r} should be {names}, got {str(value)[:80]!r}")
    return value


def string_list(value: Any, where: str, minimum: int = 1) -> list[str]:
    """A list of strings (or numbers, written as text) with at least `minimum` entries."""
    items = value.tolist() if hasattr(value, "tolist") else value  # parquet list columns arrive as arrays
    if isinstance(items, (str, bytes)) or not isinstance(items, Sequence):
        raise DatasetError(f"{where}: expected a list, got {str(value)[:80]!r}")
    if len(items) < minimum or not all(isinstance(v, (str, int, float)) and not isinstance(v, bool) for v in items):
        raise DatasetError(f"{where}: expected at least {minimum} text entries, got {str(items)[:80]!r}")
    return [str(v) for v in items]


def split_options(text: str, where: str) -> tuple[str, tuple[str, ...]]:
    """Split "question\\n(A) x\\n(B) y\\n[instruction]" into the question and its option texts."""
    lines = text.splitlines()
    first = next((i for i, line in enumerate(lines) if OPTION_LINE.match(line.strip())), None)
    if first is None:
        raise DatasetError(f"{where}: no option lines like '(A) ...' in {text[:120]!r}")
    matches = []
    for line in lines[first:]:
        match = OPTION_LINE.match(line.strip())
        if not match:
            break
        matches.append(match)
    letters = [match.group(1) for match in matches]
    if len(letters) < 2 or letters != choice_letters(len(letters)):
        raise DatasetError(f"{where}: options must be lettered (A), (B), ... in order, got {letters}")
    return "\n".join(lines[:first]).strip(), tuple(match.group(2).strip() for match in matches)


def answer_letter(label: str, choices: Sequence[str], where: str) -> str:
    """The letter of the correct option, given as a letter ("B", "(B)") or as the option's text."""
    letters = choice_letters(len(choices))
    letter = label.strip().strip("()").upper()
    if letter in letters:
        return letter
    if label in choices:
        return letters[list(choices).index(label)]
    raise DatasetError(f"{where}: answer {label!r} is neither an option letter nor one of the options {choices}")


def make_task(where: str, **fields: Any) -> Task:
    """A `Task`, with its own validation errors reported as `DatasetError`s at `where`."""
    try:
        return Task(**fields)
    except (TypeError, ValueError) as error:
        raise DatasetError(f"{where}: {error}") from error


@dataclass(frozen=True)
class Skipped:
    """A record a loader left out because what it needs is missing from the download or unusable."""

    task_id: str
    category: str
    reason: str


class LoadedTasks(list[Task]):
    """The tasks of a dataset (a plain list of `Task`s) and the records left out, `skipped`, with the reasons."""

    def __init__(self, tasks: Iterable[Task] = (), skipped: Iterable[Skipped] = ()) -> None:
        super().__init__(tasks)
        self.skipped: tuple[Skipped, ...] = tuple(skipped)

    def skip_counts(self) -> dict[str, int]:
        """Skipped records per category (an MVBench task, say), in the order first met."""
        return dict(Counter(s.category for s in self.skipped))

    def skip_summary(self) -> str:
        """One line: how many records were skipped of how many read, per category with its first reason."""
        if not self.skipped:
            return "no record skipped"
        first: dict[str, Skipped] = {}
        for skipped in self.skipped:
            first.setdefault(skipped.category, skipped)
        parts = [f"{category} {count} ({first[category].task_id}: {first[category].reason})"
                 for category, count in self.skip_counts().items()]
        return f"skipped {len(self.skipped)} of {len(self.skipped) + len(self)} records: {'; '.join(parts)}"
