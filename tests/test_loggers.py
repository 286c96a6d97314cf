"""`--logger`: the same metrics as metrics.jsonl (and every evaluation's gallery) in TensorBoard, read back with
TensorBoard's own reader, also after a resume; the console sink; wandb offline or a clear error without it."""

from __future__ import annotations

import importlib.util
import io
import json
import math
import shlex
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import IMAGES, SCALARS, EventAccumulator

from benchmarks import view
from rl_runner.config import load_config
from rl_runner.loggers import SINKS, logger_names
from rl_runner.train import main

# the README's commands (tests below run each); training runs add the smallest settings that still have every stage,
# two RL steps and three evaluations
README_COMMAND = ["--name", "my-run", "--logger", "console,tensorboard"]
TENSORBOARD_COMMAND = ["tensorboard", "--logdir", "runs"]
WANDB_COMMAND = ["--logger", "wandb"]  # with WANDB_MODE=offline
SMALL = [
    "--model", "tiny-random", "--sft-tasks", "2", "--sft-epochs", "1", "--sft-batch-size", "2", "--rl-steps", "2",
    "--tasks-per-step", "1", "--group-size", "2", "--eval-tasks", "2", "--eval-every", "1", "--checkpoint-every", "1",
    "--max-new-tokens", "16", "--threads", "1", "--suite-kwargs", '{"image_size": [600, 700]}',
]


def readme_commands(heading: str) -> list[str]:
    """The commands of the bash block under `heading` in the README, comments dropped."""
    section = (Path(__file__).resolve().parents[1] / "README.md").read_text().split(f"\n{heading}\n", 1)[1]
    block = section.split("```bash\n", 1)[1].split("```", 1)[0]
    return [line.split(" #")[0].strip() for line in block.splitlines() if line.strip()]


def test_the_readme_shows_the_tested_commands() -> None:
    assert readme_commands("### Watching a run: `--logger`") == [
        shlex.join(["python", "-m", "rl_runner.train", *README_COMMAND]), shlex.join(TENSORBOARD_COMMAND),
        shlex.join(["WANDB_MODE=offline", "python", "-m", "rl_runner.train", *WANDB_COMMAND]),
    ]


def records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def expected_scalars(run: Path) -> dict[tuple[str, str], dict[int, float]]:
    """(stage, metric) -> {step: value} from metrics.jsonl."""
    table: dict[tuple[str, str], dict[int, float]] = {}
    for record in records(run):
        for key, value in record.items():
            if key not in ("stage", "step") and isinstance(value, (int, float)):
                table.setdefault((record["stage"], key), {})[record["step"]] = float(value)
    return table


def read_tensorboard(run: Path) -> tuple[dict[tuple[str, str], list[tuple[int, float]]], dict[str, EventAccumulator]]:
    """(stage, tag) -> [(step, value)] as TensorBoard's reader loads the run's event files (purges applied)."""
    scalars, readers = {}, {}
    for stage_dir in sorted((run / "tensorboard").iterdir()):
        reader = EventAccumulator(str(stage_dir), size_guidance={SCALARS: 0, IMAGES: 0})
        reader.Reload()
        readers[stage_dir.name] = reader
        for tag in reader.Tags()["scalars"]:
            scalars[(stage_dir.name, tag)] = [(event.step, event.value) for event in reader.Scalars(tag)]
    return scalars, readers


def assert_same_metrics(run: Path) -> None:
    expected = expected_scalars(run)
    scalars, readers = read_tensorboard(run)
    assert set(scalars) == set(expected)
    for name, events in scalars.items():
        steps = [step for step, _ in events]
        assert len(steps) == len(set(steps)), f"{name}: a step logged twice {steps}"
        got = dict(events)
        assert got.keys() == expected[name].keys(), name
        for step, value in expected[name].items():
            assert (math.isnan(value) and math.isnan(got[step])) or got[step] == pytest.approx(value, rel=1e-5), name
    eval_steps = sorted(r["step"] for r in records(run) if r["stage"] == "eval")
    galleries = readers["eval"].Images("gallery")
    assert [image.step for image in galleries] == eval_steps
    for image in galleries:
        label = "before_rl" if image.step < 0 else f"step_{image.step:05d}"
        with Image.open(run / "episodes" / label / "gallery.png") as png:
            assert Image.open(io.BytesIO(image.encoded_image_string)).size == png.size


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    out = tmp_path_factory.mktemp("runs")
    capture = io.StringIO()
    stdout, sys.stdout = sys.stdout, capture
    try:
        main([*README_COMMAND, *SMALL, "--out-dir", str(out)])
    finally:
        sys.stdout = stdout
    yield out / "my-run", capture.getvalue()


def test_tensorboard_holds_what_metrics_jsonl_holds(run: tuple[Path, str]) -> None:
    folder, _ = run
    stages = {r["stage"] for r in records(folder)}
    assert stages == {"sft", "sft_blind", "rl", "eval"}
    assert_same_metrics(folder)


def test_console_prints_every_record(run: tuple[Path, str]) -> None:
    folder, printed = run
    for record in records(folder):
        assert f"[{record['stage']} {record['step']}] " in printed
    assert "[eval 1] gallery: " in printed


def test_a_resume_shows_each_recomputed_step_once(run: tuple[Path, str], tmp_path: Path) -> None:
    """Resumed after its last checkpoint is lost, the run recomputes RL step 1 and its evaluation; TensorBoard's
    reader sees each step once, with the values metrics.jsonl ends with."""
    folder = tmp_path / "my-run"
    shutil.copytree(run[0], folder)
    shutil.rmtree(folder / "checkpoints" / "step_00001")
    before = len(list((folder / "tensorboard" / "rl").iterdir()))
    main([*README_COMMAND, *SMALL, "--out-dir", str(tmp_path), "--resume"])
    assert len(list((folder / "tensorboard" / "rl").iterdir())) == before + 1
    assert_same_metrics(folder)


def test_a_resume_that_trains_sft_again_starts_tensorboard_afresh(run: tuple[Path, str], tmp_path: Path) -> None:
    folder = tmp_path / "my-run"
    shutil.copytree(run[0], folder)
    shutil.rmtree(folder / "checkpoints")
    main([*README_COMMAND, *SMALL, "--out-dir", str(tmp_path), "--resume"])
    assert len(list((folder / "tensorboard" / "sft").iterdir())) == 1
    assert_same_metrics(folder)


def test_tensorboard_serves_the_run(run: tuple[Path, str], tmp_path: Path) -> None:
    """The README's `tensorboard --logdir runs`: the server lists the run's stages."""
    logdir = tmp_path / "runs"
    shutil.copytree(run[0] / "tensorboard", logdir / "my-run" / "tensorboard")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [str(Path(sys.executable).parent / TENSORBOARD_COMMAND[0]), *TENSORBOARD_COMMAND[1:], "--host",
               "127.0.0.1", "--port", str(port)]
    server = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        runs: list[str] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(runs) < 4:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/data/runs", timeout=5) as reply:
                    runs = json.loads(reply.read())
            except OSError:
                pass
            time.sleep(0.5)
        assert sorted(runs) == [f"my-run/tensorboard/{s}" for s in ("eval", "rl", "sft", "sft_blind")]
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_every_evaluation_keeps_its_episodes_for_the_viewer(run: tuple[Path, str]) -> None:
    """The README's `python -m benchmarks.view runs/my-run` on the run folder: every evaluation's episodes."""
    folder, _ = run
    page = view.main([str(folder)])
    evals = [r for r in records(folder) if r["stage"] == "eval"]
    html = page.read_text()
    assert html.count('<section class="episode"') == sum(r["eval_episodes"] for r in evals)
    for label in ("before_rl", "step_00000", "step_00001"):
        assert f'data-recording="episodes/{label}"' in html


def test_logger_names() -> None:
    assert logger_names("") == ["jsonl"]
    assert logger_names("tensorboard, console,jsonl,console") == ["jsonl", "tensorboard", "console"]
    assert set(SINKS) == {"console", "jsonl", "tensorboard", "wandb"}
    with pytest.raises(ValueError, match="logger must be a comma list of .*'tensorbord'"):
        load_config(["--logger", "console,tensorbord"])
    with pytest.raises(SystemExit, match="error: logger must be"):
        main(["--logger", "mlflow"])


def test_wandb_without_the_package_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "wandb", None)  # what Python does for a package that is not installed
    with pytest.raises(SystemExit, match="error: --logger wandb needs the wandb package, which is not installed: "
                       "pip install wandb"):
        main(["--logger", "console,wandb"])


@pytest.mark.skipif(importlib.util.find_spec("wandb") is None, reason="wandb is not installed (pip install wandb)")
def test_wandb_offline_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's `WANDB_MODE=offline python -m rl_runner.train --logger wandb`: an offline W&B run in the run
    folder holding the metrics and galleries."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    main([*WANDB_COMMAND, *SMALL, "--rl-steps", "1", "--out-dir", str(tmp_path)])
    (offline,) = (tmp_path / "default" / "wandb").glob("offline-run-*")
    assert list(offline.glob("*.wandb")) and list((offline / "files" / "media" / "images" / "eval").glob("*.png"))
