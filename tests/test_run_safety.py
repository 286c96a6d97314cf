"""The run folder: a run name never reaches outside `<out-dir>/<name>`, existing folders are refused, runs lock."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from rl_runner.config import load_config
from rl_runner.run_dir import LOCK, MARKER, RunFolder, RunFolderError, check_run_name
from rl_runner.train import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["", ".", "..", "/tmp/x", "a/b", "a\\b", "../x", ".tiny-models", "x\0y"])
def test_run_names_that_are_not_one_plain_component_are_rejected(name: str) -> None:
    with pytest.raises(ValueError, match="run name must be one plain folder name"):
        check_run_name(name)


def test_plain_run_names_are_accepted() -> None:
    for name in ("default", "my-run_2", "seed0-sft", "a.b"):
        check_run_name(name)


@pytest.mark.parametrize("name", ["..", "", str(Path("/tmp").resolve())])
def test_cli_refuses_a_bad_name_before_touching_anything(tmp_path: Path, name: str) -> None:
    out = tmp_path / "runs"
    (out / "other-run").mkdir(parents=True)
    (out / "other-run" / "metrics.jsonl").write_text("{}\n")
    (tmp_path / "keep.txt").write_text("precious")
    with pytest.raises(SystemExit, match="run name must be one plain folder name"):
        main(["--out-dir", str(out), "--name", name])
    assert (out / "other-run" / "metrics.jsonl").read_text() == "{}\n"
    assert (tmp_path / "keep.txt").read_text() == "precious"


def test_resume_and_overwrite_together_are_rejected() -> None:
    with pytest.raises(ValueError, match="pass one of them"):
        load_config(["--resume", "--overwrite"])


def test_a_new_run_refuses_an_existing_folder_and_deletes_nothing(tmp_path: Path) -> None:
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("not a run")
    with pytest.raises(SystemExit, match="already exists; pass --resume"):
        main(["--out-dir", str(tmp_path), "--name", "mine", "--eval-tasks", "1"])
    assert (folder / "notes.txt").read_text() == "not a run"


def test_overwrite_refuses_a_folder_without_the_run_marker(tmp_path: Path) -> None:
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("not a run")
    with pytest.raises(RunFolderError, match=f"no {MARKER} marker"):
        RunFolder.open(folder, overwrite=True)
    assert (folder / "notes.txt").read_text() == "not a run"


def test_overwrite_clears_only_inside_a_marked_run_folder(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "data.txt").write_text("outside")
    folder = tmp_path / "runs" / "run"
    RunFolder.open(folder).close()
    assert (folder / MARKER).is_file()
    (folder / "checkpoints" / "step_00000").mkdir(parents=True)
    (folder / "checkpoints" / "step_00000" / "w.bin").write_bytes(b"123")
    (folder / "metrics.jsonl").write_text("{}\n")
    (folder / "link").symlink_to(outside, target_is_directory=True)
    RunFolder.open(folder, overwrite=True).close()
    assert sorted(p.name for p in folder.iterdir()) == sorted([MARKER, LOCK])
    assert (outside / "data.txt").read_text() == "outside"


def test_a_second_concurrent_run_on_the_same_folder_refuses(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from pathlib import Path; from rl_runner.run_dir import RunFolder; "
         f"RunFolder.open(Path({str(folder)!r})); print('locked', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        for kwargs in ({"resume": True}, {"overwrite": True}, {}):
            with pytest.raises(RunFolderError, match=f"in use by another training run \\(pid {holder.pid}\\)"):
                RunFolder.open(folder, **kwargs)
        assert (folder / MARKER).is_file()
    finally:
        holder.communicate("")
    RunFolder.open(folder, resume=True).close()  # the lock is gone with its process
