"""Checkpoints that a kill cannot break: written into a temp folder, marked complete, then renamed into place.

A resume takes the newest checkpoint carrying the completion marker; a kill mid-write leaves only a `.partial-*`
folder, which the next resume deletes. Trainer state is read with `torch.load(weights_only=True)`, so a run folder
cannot make `--resume` execute code.
"""

from __future__ import annotations

import os
import pickle
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

COMPLETE = "COMPLETE"  # written last into a checkpoint folder, before the rename that publishes it
PARTIAL = ".partial-"  # prefix of a checkpoint folder still being written


class CheckpointError(RuntimeError):
    """A checkpoint file cannot be loaded (corrupt, or holding more than tensors and plain data)."""


def write_checkpoint(path: Path, write: Callable[[Path], None]) -> Path:
    """Publish the folder `write(folder)` fills as `path`, atomically: the folder is complete at `path` or absent."""
    temp = path.parent / f"{PARTIAL}{path.name}"
    shutil.rmtree(temp, ignore_errors=True)
    temp.mkdir(parents=True)
    try:
        write(temp)
        (temp / COMPLETE).write_text("complete\n")
        _sync(temp)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    if path.exists():  # an older or incomplete folder of the same name: swap it out, then delete it
        stale = path.parent / f"{PARTIAL}old-{path.name}"
        shutil.rmtree(stale, ignore_errors=True)
        os.replace(path, stale)
        os.replace(temp, path)
        shutil.rmtree(stale)
    else:
        os.replace(temp, path)
    _sync_dir(path.parent)
    return path


def is_complete(path: Path) -> bool:
    return (path / COMPLETE).is_file()


def latest_complete(folder: Path, pattern: str = "step_*") -> Path | None:
    """The last (by name) complete checkpoint in `folder` matching `pattern`, or None."""
    complete = [p for p in sorted(folder.glob(pattern)) if is_complete(p)]
    return complete[-1] if complete else None


def remove_partial(folder: Path) -> list[Path]:
    """Delete the half-written checkpoint folders a kill left in `folder`; returns what was removed."""
    removed = sorted(folder.glob(f"{PARTIAL}*")) if folder.is_dir() else []
    for path in removed:
        shutil.rmtree(path)
    return removed


def load_trainer_state(path: Path) -> dict[str, Any]:
    """Read a `torch.save`d trainer state holding only tensors and plain data."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as error:
        raise CheckpointError(
            f"cannot load trainer state {path} (only tensors and plain data are read): {error}"
        ) from None


def _sync(folder: Path) -> None:
    """Flush every file of `folder` to disk, so the marker never outlives the data after a power cut."""
    for file in folder.rglob("*"):
        if file.is_file():
            fd = os.open(file, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    _sync_dir(folder)


def _sync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
