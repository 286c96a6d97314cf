"""Config validation: bad values, YAML type slips and missing model folders are clear errors naming the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from rl_runner.config import load_config
from rl_runner.train import main


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--sft-batch-size", "0"], "sft_batch_size must be >= 1, got 0"),
        (["--eval-tasks", "0"], "eval_tasks must be >= 1, got 0"),
        (["--ppo-epochs", "0"], "ppo_epochs must be >= 1, got 0"),
        (["--temperature", "-1"], "temperature must be a finite number >= 0, got -1.0"),
        (["--temperature", "nan"], "temperature must be a finite number >= 0, got nan"),
        (["--rl-lr", "-0.1"], "rl_lr must be a finite number >= 0, got -0.1"),
        (["--self-correct-fraction", "2"], r"self_correct_fraction must be in \[0, 1\], got 2.0"),
        (["--curiosity-threshold", "-0.5"], r"curiosity_threshold must be in \[0, 1\], got -0.5"),
        (["--rl-steps", "-1"], "rl_steps must be >= 0, got -1"),
    ],
)
def test_out_of_range_values_are_rejected(flags: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_config(flags)


def test_boundary_values_are_accepted() -> None:
    config = load_config(["--temperature", "0", "--self-correct-fraction", "1", "--eval-tasks", "1", "--rl-steps", "0"])
    assert (config.temperature, config.self_correct_fraction, config.eval_tasks, config.rl_steps) == (0.0, 1.0, 1, 0)


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        ("rl_steps: ten\n", "rl_steps must be of type int, got 'ten'"),
        ("rl_steps: 2.5\n", "rl_steps must be of type int, got 2.5"),
        ("resume: 1\n", "resume must be of type bool, got 1"),
        ("eval_every: true\n", "eval_every must be of type int, got True"),
        ("suite_kwargs: [1, 2]\n", r"suite_kwargs must be of type dict, got \[1, 2\]"),
        ("name: 5\n", "name must be of type str, got 5"),
        ("rl_steps: [oops\n", "cannot read config file"),
    ],
)
def test_yaml_type_errors_name_the_key(tmp_path: Path, yaml_text: str, message: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(yaml_text)
    with pytest.raises(ValueError, match=message):
        load_config(["--config", str(path)])
    with pytest.raises(SystemExit, match=f"error: {message}"):  # the CLI prints it, without a traceback
        main(["--config", str(path)])


def test_an_int_is_taken_for_a_float_field(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("sft_lr: 1\ntemperature: 0\n")
    config = load_config(["--config", str(path)])
    assert (config.sft_lr, config.temperature) == (1.0, 0.0)
    assert isinstance(config.sft_lr, float)


def test_a_missing_config_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot read config file .*missing.yaml"):
        load_config(["--config", str(tmp_path / "missing.yaml")])


def test_a_missing_local_model_folder_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for flag, value in (("--model", str(tmp_path / "nope")), ("--init-from", "./runs/x/checkpoints/sft"),
                        ("--model", "~/no-such-model-here")):
        with pytest.raises(ValueError, match=f"{flag} .*: no such model directory"):
            load_config([flag, value])
    (tmp_path / "runs").mkdir()
    with pytest.raises(ValueError, match="--model runs/nope: no such model directory"):  # inside a local folder
        load_config(["--model", "runs/nope"])
    (tmp_path / "model").mkdir()
    assert load_config(["--model", str(tmp_path / "model")]).model == str(tmp_path / "model")
    assert load_config(["--model", "Qwen/Qwen2.5-VL-3B-Instruct"]).model == "Qwen/Qwen2.5-VL-3B-Instruct"  # a hub id


def test_ops_choose_the_operations_the_training_envs_offer() -> None:
    from pixel_gym.suites import make_suite
    from rl_runner.train import make_env

    tasks = make_suite("fine_detail", size=1)
    env = make_env(load_config(["--ops", "crop_image_normalized, rotate_image"]), tasks)
    assert [op.name for op in env.ops] == ["crop_image_normalized", "rotate_image"]
    assert "rotate_image" in env.reset()[0]["messages"][0]["content"][0]["text"]  # offered in the tool prompt
    assert [op.name for op in make_env(load_config([]), tasks).ops] == ["crop_image_normalized", "select_frames"]
    with pytest.raises(SystemExit, match="ops: no pixel operation 'flip'"):
        main(["--ops", "flip", "--name", "x"])
