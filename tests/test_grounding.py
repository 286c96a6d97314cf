"""benchmarks.grounding: greedy grounding of a base, scored against the traces' boxes and the env's own crop."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from benchmarks.grounding import (
    READING_KINDS,
    answered_box,
    grounding_cases,
    main,
    reading_examples,
    reading_rate,
    score_box,
)


def test_answered_box_reads_the_first_four_numbers() -> None:
    assert answered_box("[0.3, 0.5, 0.4, 0.6]") == [0.3, 0.5, 0.4, 0.6]
    assert answered_box("It is at 0.3, 0.5, 0.4, 0.6, 0.9.") == [0.3, 0.5, 0.4, 0.6]
    assert answered_box("[0.3, 0.5]") is None and answered_box("no idea") is None


def test_the_probe_scores_a_real_base(tiny_model_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """The random test model: the rates are fractions of the tasks, ordered as their definitions nest."""
    main(["--model", str(tiny_model_path), "--tasks", "6", "--out", str(tmp_path), "--threads", "1"])
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary == json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["tasks"] == 6
    assert 0 <= summary["exact"] <= summary["within_one"] <= 1 - summary["unparsed"]
    assert 0 <= summary["crop_hits"] <= 1 - summary["unparsed"]
    assert all(0 <= summary[f"read_{kind}"] <= 1 for kind in READING_KINDS)


def test_reading_is_scored_on_the_pretrainings_own_examples() -> None:
    """The examples' own answers score 1.0, a constant answer at most the share of examples it happens to fit."""
    by_kind = reading_examples(tasks=4)
    assert set(by_kind) == set(READING_KINDS) and all(len(examples) == 4 for examples in by_kind.values())
    for examples in by_kind.values():
        answers = [example[-1]["content"][0]["text"] for example in examples]
        assert reading_rate(examples, [f" {answer}\n" for answer in answers]) == 1.0
        assert reading_rate(examples, ["?"] * 4) == 0.0
    assert all(example[1]["content"][0]["type"] == "image" for example in by_kind["name"])
    assert all([part["type"] for part in example[1]["content"]] == ["text"] for example in by_kind["match"])


def test_scores_of_the_traces_box_a_neighbour_and_a_far_box() -> None:
    """The trace's own box is exact and crops the target; one tenth to the side is within one; the opposite
    corner of the image is neither and crops no target."""
    env, cases = grounding_cases(tasks=6)
    for case in cases:
        assert score_box(env, case, case.truth) == {"exact": True, "within_one": True, "crop_hits": True}
        x1 = case.truth[0] + (0.1 if case.truth[0] < 0.5 else -0.1)
        neighbour = score_box(env, case, [x1, case.truth[1], x1 + 0.1, case.truth[3]])
        assert not neighbour["exact"] and neighbour["within_one"]
        far_x, far_y = (0.8 if case.truth[0] < 0.4 else 0.0), (0.8 if case.truth[1] < 0.4 else 0.0)
        far = score_box(env, case, [far_x, far_y, far_x + 0.1, far_y + 0.1])
        assert far == {"exact": False, "within_one": False, "crop_hits": False}


def test_the_readme_grounding_command_runs(tmp_path: Path) -> None:
    """The README's `python -m benchmarks.grounding ...` verbatim, on 4 tasks and into a temporary folder."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    (line,) = [line for line in readme.splitlines() if line.startswith("python -m benchmarks.grounding ")]
    argv = shlex.split(line)[3:]
    argv[argv.index("--tasks") + 1] = "4"
    main([*argv, "--out", str(tmp_path), "--cache-dir", str(tmp_path / "models")])
    assert json.loads((tmp_path / "summary.json").read_text())["tasks"] == 4
