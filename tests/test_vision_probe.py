"""benchmarks.vision_probe: the centred-tag control of the learning issue, on a two-step budget."""

from __future__ import annotations

import json
import math
import shlex
from pathlib import Path

import numpy as np

from benchmarks.vision_probe import main, window
from pixel_gym.suites.drawing import NAMED_COLORS


def test_windows_show_the_named_frame_colour() -> None:
    image, answers = window(np.random.default_rng(3))
    assert image.shape == (56, 56, 3)
    colour = np.array(NAMED_COLORS[answers["colour"]])
    assert (np.abs(image.astype(int) - colour).sum(-1) < 40).sum() >= 30  # the frame, at the window's centre
    assert (np.abs(image[:6, :6].astype(int) - colour).sum(-1) < 40).sum() == 0  # plain background at the corner


def test_the_readme_command_runs_on_a_tiny_budget(tmp_path: Path) -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    (line,) = [line for line in readme.splitlines() if line.startswith("python -m benchmarks.vision_probe")]
    summary = main([*shlex.split(line)[3:], "--out", str(tmp_path), "--steps", "2", "--batch-size", "2",
                    "--warmup-steps", "2"])
    assert set(summary) == {"colour", "symbol", "symbol_warm"}
    assert summary["symbol"]["uniform"] == math.log(28)
    assert all(math.isfinite(result["final_loss"]) for result in summary.values())
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert [len(c) for c in saved["curves"].values()] == [2, 2, 2]
    assert (tmp_path / "vision_probe.png").stat().st_size > 5_000
