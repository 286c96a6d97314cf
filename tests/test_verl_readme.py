"""Every command of the README's verl section: the `rl_runner` ones run verbatim as dry runs (`--dry-run` added
where the README launches), the SFT command is the one the dry run prints, verl's model merger takes its flags."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from rl_runner import prepare_verl
from rl_runner.train import main as train_main

README = Path(__file__).resolve().parents[1] / "README.md"
NOT_RUN = ("pip install", "ray start")  # installs and the cluster's own start: nothing of this project
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def section_commands() -> list[list[str]]:
    """The commands of the bash blocks of "## Scaling out with verl", continuation lines joined, comments dropped."""
    text = README.read_text()
    section = text.split("## Scaling out with verl", 1)[1].split("\n## ", 1)[0]
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", section, re.DOTALL):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line.replace("<N>", "N"), comments=True)
            if words and not " ".join(words).startswith(NOT_RUN):
                commands.append(words)
    return commands


def sft_overrides(words: list[str]) -> dict[str, str]:
    return dict(word.split("=", 1) for word in words if "=" in word and not word.startswith("--"))


def test_readme_verl_commands_run_as_dry_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "v7b" / "sft_hf").mkdir(parents=True)  # what step 2's merge leaves for step 3
    commands = section_commands()
    printed: dict[str, list[str]] = {}
    kinds = []
    for words in commands:
        module = words[2] if words[:2] == ["python", "-m"] else words[0]
        kinds.append(module)
        if module == "rl_runner.train":
            argv = words[3:] + ([] if "--dry-run" in words else ["--dry-run"])
            with pytest.raises(SystemExit) as exit_info:
                train_main(argv)
            out = capsys.readouterr().out
            assert exit_info.value.code == 0, out
            assert "not used by verl: " in out and "verl.trainer.main_ppo" in out
            sft = next(line for line in out.splitlines() if line.startswith("SFT warm start"))
            printed[argv[argv.index("--name") + 1]] = shlex.split(sft.split(": ", 1)[1])
        elif module == "rl_runner.prepare_verl":
            prepare_verl.main(words[3:] + ["--dry-run"])
            out = capsys.readouterr().out
            assert "dry run" in out and {"train", "val", "sft"} <= {line.split(":")[0] for line in out.splitlines()}
        elif module == "torchrun":  # the printed command, paths as the README writes them (from the repo root)
            shown = printed["v7b"]
            assert words[:5] == shown[:5]
            expected = {key: value.replace(f"{tmp_path}/", "") for key, value in sft_overrides(shown).items()}
            assert sft_overrides(words).items() <= expected.items()
        elif module == "verl.model_merger":
            result = subprocess.run([sys.executable, "-m", "verl.model_merger", "merge", "--help"],
                                    capture_output=True, text=True, timeout=300)
            assert all(flag in result.stdout for flag in ("--backend", "--local_dir", "--target_dir")), result.stderr
        else:
            raise AssertionError(f"README command not covered by this test: {shlex.join(words)}")
    assert kinds.count("rl_runner.train") == 3 and kinds.count("rl_runner.prepare_verl") == 2
    assert {"torchrun", "verl.model_merger"} <= set(kinds)
