"""Atomic checkpoints: a kill mid-write never leaves a checkpoint resume would take; trainer state loads safely."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rl_runner.checkpoints import (
    COMPLETE,
    PARTIAL,
    CheckpointError,
    latest_complete,
    load_trainer_state,
    remove_partial,
    write_checkpoint,
)
from rl_runner.config import TrainConfig
from rl_runner.train import Run

ROOT = Path(__file__).resolve().parents[1]

# A child that starts writing a checkpoint through the real write function and stops half-way, to be killed.
KILLED_WRITER = """
import sys, time
from pathlib import Path
from rl_runner.checkpoints import write_checkpoint

def write(folder):
    (folder / "model.safetensors").write_bytes(b"x" * 1000)
    with (folder / "trainer_state.pt").open("wb") as handle:
        handle.write(b"half a pickle")
        handle.flush()
        print("writing", flush=True)
        time.sleep(60)

write_checkpoint(Path(sys.argv[1]), write)
"""


def kill_mid_write(path: Path) -> Path:
    """Start writing checkpoint `path` with `write_checkpoint` in a child, SIGKILL it mid-write; the partial folder."""
    child = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(path)], stdout=subprocess.PIPE, text=True,
                             cwd=ROOT)
    assert child.stdout is not None and child.stdout.readline().strip() == "writing"
    child.send_signal(signal.SIGKILL)
    child.wait()
    return path.parent / f"{PARTIAL}{path.name}"


def write_files(files: dict[str, bytes]):
    def write(folder: Path) -> None:
        for name, data in files.items():
            (folder / name).write_bytes(data)

    return write


def test_a_written_checkpoint_is_complete_and_a_failed_write_leaves_nothing(tmp_path: Path) -> None:
    path = write_checkpoint(tmp_path / "step_00000", write_files({"w.bin": b"abc"}))
    assert sorted(p.name for p in path.iterdir()) == [COMPLETE, "w.bin"]

    def fails(folder: Path) -> None:
        (folder / "w.bin").write_bytes(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_checkpoint(tmp_path / "step_00001", fails)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step_00000"]


def test_a_kill_during_the_real_write_leaves_the_last_complete_checkpoint_to_resume(tmp_path: Path) -> None:
    write_checkpoint(tmp_path / "step_00000", write_files({"trainer_state.pt": b"ok"}))
    partial = kill_mid_write(tmp_path / "step_00001")
    assert partial == tmp_path / f"{PARTIAL}step_00001"
    assert (partial / "trainer_state.pt").read_bytes() == b"half a pickle"
    assert not (tmp_path / "step_00001").exists()
    assert latest_complete(tmp_path) == tmp_path / "step_00000"
    assert remove_partial(tmp_path) == [partial]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step_00000"]


def test_an_incomplete_folder_of_an_older_version_is_skipped_and_replaced(tmp_path: Path) -> None:
    write_checkpoint(tmp_path / "step_00000", write_files({"trainer_state.pt": b"ok"}))
    legacy = tmp_path / "step_00001"  # what a kill left before checkpoints were atomic: truncated, no marker
    legacy.mkdir()
    (legacy / "trainer_state.pt").write_bytes(b"trunc")
    assert latest_complete(tmp_path) == tmp_path / "step_00000"
    write_checkpoint(legacy, write_files({"trainer_state.pt": b"new"}))
    assert (legacy / "trainer_state.pt").read_bytes() == b"new"
    assert latest_complete(tmp_path) == legacy
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step_00000", "step_00001"]


class Exploit:
    """Unpickling this runs code: it creates the file `target`."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (Path.touch, (self.target,))


def test_trainer_state_loads_tensors_and_plain_data_only(tmp_path: Path) -> None:
    layer = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(layer.parameters(), lr=0.01)
    layer(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    torch.save({"step": 7, "trainer": {"optimizer": optimizer.state_dict()}}, tmp_path / "good.pt")
    state = load_trainer_state(tmp_path / "good.pt")
    assert state["step"] == 7
    assert torch.equal(state["trainer"]["optimizer"]["state"][0]["exp_avg"], optimizer.state[layer.weight]["exp_avg"])

    target = tmp_path / "pwned"
    torch.save({"step": 1, "trainer": Exploit(target)}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="only tensors and plain data"):
        load_trainer_state(tmp_path / "evil.pt")
    assert not target.exists()

    (tmp_path / "torn.pt").write_bytes((tmp_path / "good.pt").read_bytes()[:100])
    with pytest.raises(CheckpointError, match="torn.pt"):
        load_trainer_state(tmp_path / "torn.pt")


def test_a_torn_last_metrics_line_is_dropped(tmp_path: Path) -> None:
    run = Run(TrainConfig(out_dir=str(tmp_path), name="r"))
    run.prepare()
    run.metrics_path.write_text('{"stage": "rl", "step": 0}\n{"stage": "rl", "step": 1}\n{"stage": "r')
    assert run.records() == [{"stage": "rl", "step": 0}, {"stage": "rl", "step": 1}]
    run.truncate_log(1)
    run.close()
    assert run.metrics_path.read_text() == '{"stage": "rl", "step": 0}\n'
