"""The learning benchmark's pipeline on a tiny budget (its numbers come from the full run, not from CI)."""

from __future__ import annotations

import json

from benchmarks.learning import VARIANTS, main


def test_learning_benchmark_quick(tmp_path, capsys) -> None:
    main(["--quick", "--seeds", "0", "--out", str(tmp_path)])
    summary = json.loads((tmp_path / "summary.json").read_text())
    for variant in VARIANTS:
        for key in ("accuracy", "rapr"):
            assert 0.0 <= summary[f"{variant}_{key}"]["mean"] <= 1.0
    assert 0.0 <= summary["blind_accuracy"]["mean"] <= 1.0
    assert (tmp_path / "learning.png").stat().st_size > 10_000
    # the two RL runs start from the SFT checkpoint of the same seed
    assert (tmp_path / "runs" / "seed0-rl_curiosity" / "config.yaml").read_text().count("seed0-sft") == 1
    assert "| rl_curiosity |" in capsys.readouterr().out
