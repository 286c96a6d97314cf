"""The run folder `<out-dir>/<name>`: a safe name, a marker saying this project made it, and a lock.

Nothing outside the run folder is ever deleted. A new run refuses an existing folder unless `--resume` (continue it)
or `--overwrite` (clear it, and only when it carries the marker a run of `rl_runner.train` writes). A lock file held
for the whole run makes a second concurrent run on the same folder refuse instead of wiping the first.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from pathlib import Path

MARKER = ".pixel-gym-run"  # written into every run folder this project creates
LOCK = ".lock"


class RunFolderError(RuntimeError):
    """The run folder cannot be used: it exists, is in use, or is not ours to delete."""


def check_run_name(name: str) -> None:
    """A run name is one plain folder name: not empty, no path separator, not starting with '.'."""
    separators = {"/", "\\", os.sep} | ({os.altsep} if os.altsep else set())
    if not name or name.startswith(".") or "\0" in name or any(s in name for s in separators):
        raise ValueError(
            f"run name must be one plain folder name (not empty, no '/' or '\\', not starting with '.'), got {name!r}"
        )


class RunFolder:
    """An open, locked run folder; `close()` (or process exit) releases the lock."""

    def __init__(self, path: Path, lock_fd: int) -> None:
        self.path = path
        self._lock_fd: int | None = lock_fd

    @classmethod
    def open(cls, path: Path, resume: bool = False, overwrite: bool = False) -> RunFolder:
        """Create, continue (`resume`) or clear (`overwrite`) the run folder at `path`, and lock it."""
        check_run_name(path.name)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            path.mkdir()
            created = True
        except FileExistsError:
            created = False
            if path.is_symlink() or not path.is_dir():
                raise RunFolderError(f"{path} exists and is not a plain folder; choose another --name") from None
        folder = cls(path, _lock(path))
        try:
            if created:
                (path / MARKER).write_text(json.dumps({"created_by": "rl_runner.train", "pid": os.getpid()}) + "\n")
            elif overwrite:
                folder._clear()
            elif not resume:
                raise RunFolderError(
                    f"run folder {path} already exists; pass --resume to continue it, choose another --name, "
                    "or pass --overwrite to replace it"
                )
        except BaseException:
            folder.close()
            raise
        return folder

    def _clear(self) -> None:
        """Delete the folder's contents (never following links out of it), keeping the marker and the lock."""
        if not (self.path / MARKER).is_file():
            raise RunFolderError(
                f"refusing to overwrite {self.path}: it has no {MARKER} marker, so no run of rl_runner.train made "
                "it; delete it yourself or choose another --name"
            )
        for entry in self.path.iterdir():
            if entry.name in (MARKER, LOCK):
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()

    def close(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor releases the flock
            self._lock_fd = None


def _lock(path: Path) -> int:
    """Take the folder's exclusive lock (non-blocking) and record our pid in it; refuse if another run holds it."""
    fd = os.open(path / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise RunFolderError(
            f"run folder {path} is in use by another training run (pid {holder}); wait for it to finish or choose "
            "another --name"
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd
