"""`python -m benchmarks.view`: the episodes benchmarks.eval keeps, as one self-contained page, opened in headless
Chromium (every episode, image and filter there, the filters work, the screenshot is not blank)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_loggers import readme_commands

from benchmarks import view
from benchmarks.eval import Settings, evaluate_suite, load_suite
from benchmarks.eval import main as evaluate
from pixel_gym.recording import MAX_EPISODES, find_recordings, read_episodes

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (Debian: apt-get "
                                    "install chromium; .ci/run installs it)")
FILTERS = ("recording", "suite", "category", "correct", "tool")


class LookThenFail:
    """A batch agent that crops image 1, crops that crop, names an image that does not exist, then answers."""

    calls = {1: ([0.1, 0.1, 0.5, 0.6], 1), 2: ([0.2, 0.2, 0.8, 0.8], 2), 3: ([0.1, 0.1, 0.5, 0.5], 9)}

    def act_batch(self, observations: list[dict]) -> list[str]:
        return [self.turn(len(obs["messages"]) // 2) for obs in observations]

    def turn(self, number: int) -> str:
        if number not in self.calls:
            return "The tag reads \\boxed{A}"
        box, image = self.calls[number]
        call = {"name": "crop_image_normalized", "arguments": {"bbox_2d": box, "target_image": image}}
        return f"Let me look closer.\n<tool_call>\n{json.dumps(call)}\n</tool_call>"


@pytest.fixture(scope="module")
def evals(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Evaluation folders: oracle (zooms, correct, and a video suite), blind (never looks), and an agent whose
    third tool call fails, played by the harness's own suite loop."""
    root = tmp_path_factory.mktemp("eval")
    common = ["--budgets", "compact", "--batch-size", "3", "--limit", "3"]
    evaluate(["--out", str(root / "oracle"), "--agent", "oracle", "--suite", "fine_detail,video", *common])
    evaluate(["--out", str(root / "blind"), "--agent", "blind", "--suite", "fine_detail,counting", *common])
    settings = Settings("scripted", None, None, "compact", 6, 64, 0)
    (root / "served").mkdir()
    evaluate_suite("fine_detail", load_suite("fine_detail", None, None, 3), lambda envs, seed: LookThenFail(),
                   settings, root / "served" / "fine_detail.jsonl", 3, 0)
    return root


@pytest.fixture(scope="module")
def page(evals: Path) -> Path:
    """The README's `python -m benchmarks.view runs/eval/NAME`, on a folder holding three evaluations."""
    return view.main([str(evals)])


def test_the_readme_shows_the_tested_commands() -> None:
    # runs/my-run: tests/test_loggers.py runs it on the README's training run; runs/eval/NAME: `page` below
    assert readme_commands("### Looking at episodes: `python -m benchmarks.view`") == [
        "python -m benchmarks.view runs/my-run", "python -m benchmarks.view runs/eval/NAME"]


def entries(root: Path) -> list[tuple[str, dict]]:
    return [(str(folder.relative_to(root)), entry) for folder in find_recordings(root)
            for entry in read_episodes(folder / "episodes.jsonl")]


def chromium(page: Path, tmp_path: Path, *flags: str, fragment: str = "") -> subprocess.CompletedProcess:
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
               f"--user-data-dir={tmp_path / 'profile'}", *flags,
               page.resolve().as_uri() + fragment]
    done = subprocess.run(command, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


def test_evaluations_keep_turns_and_boxes(evals: Path) -> None:
    recorded = entries(evals)
    assert {label for label, _ in recorded} == {"oracle/episodes/fine_detail", "oracle/episodes/video",
                                                "blind/episodes/fine_detail", "blind/episodes/counting",
                                                "served/episodes/fine_detail"}
    assert len(recorded) == 15
    served = [entry for label, entry in recorded if label.startswith("served")]
    for entry in served:
        assert [c["from"] for c in entry["crops"]] == [0, 1] and [c["view"] for c in entry["crops"]] == [1, 2]
        assert entry["crops"][0]["box"][0] < entry["crops"][0]["box"][2] <= 1
        assert len(entry["errors"]) == 1 and "target_image" in entry["errors"][0]["error"]
        assert [t["role"] for t in entry["turns"]] == ["user"] + ["assistant", "user"] * 3 + ["assistant"]
        assert [t["views"] for t in entry["turns"][::2]] == [[0], [1], [2], []]
        assert entry["answer"] == "A" and set(entry["rewards"]) == {"score", "pixel_reasoner", "env_correctness"}
    video = [entry for label, entry in recorded if label == "oracle/episodes/video"]
    assert all(entry["turns"][0]["views"] == list(range(16)) for entry in video)  # the 16 frames of the video part


def test_the_cap_bounds_what_is_kept(tmp_path: Path) -> None:
    evaluate(["--out", str(tmp_path), "--agent", "blind", "--suite", "counting", "--budgets", "compact",
              "--limit", "5", "--keep-episodes", "2"])
    assert len(read_episodes(tmp_path / "episodes" / "counting" / "episodes.jsonl")) == 2
    assert len(list((tmp_path / "episodes" / "counting" / "images").iterdir())) == 2
    assert MAX_EPISODES == 32


def test_the_page_is_self_contained(page: Path, evals: Path) -> None:
    html = page.read_text()
    assert page == evals / "episodes.html"
    assert not re.search(r'(src|href)="(https?:|//)', html) and "<link" not in html
    images = re.findall(r'<img src="([^"]*)"', html)
    assert len(images) == sum(len(entry["views"]) for _, entry in entries(evals))
    assert all(src.startswith("data:image/jpeg;base64,") for src in images)


@needs_chromium
def test_the_page_in_headless_chromium(page: Path, evals: Path, tmp_path: Path) -> None:
    recorded = entries(evals)
    dom = chromium(page, tmp_path, "--dump-dom").stdout
    sections = re.findall(r'<section class="episode"[^>]*>', dom)
    assert len(sections) == len(recorded) and not any("hidden" in s for s in sections)
    assert f'<span id="shown">{len(recorded)} of {len(recorded)} episodes</span>' in dom  # the script ran
    for label, entry in recorded:
        assert f'data-recording="{label}"' in dom and f">{entry['id']}<" in dom
    assert dom.count("<img ") == sum(len(entry["views"]) for _, entry in recorded)
    assert dom.count('class="box"') == sum(len(entry["crops"]) for _, entry in recorded) > 0
    assert dom.count("<li>crop_image") == sum(len(entry["errors"]) for _, entry in recorded) == 3
    for key in FILTERS:
        assert f'<select id="filter-{key}" data-key="{key}">' in dom
    for suite in ("fine_detail", "video", "counting"):
        assert f'<option value="{suite}">' in dom
    for category in {entry["category"] for _, entry in recorded}:
        assert f'<option value="{category}">' in dom

    shot = tmp_path / "page.png"
    chromium(page, tmp_path, f"--screenshot={shot}", "--window-size=1280,1600")
    with Image.open(shot) as image:
        pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
    assert pixels.shape[:2] == (1600, 1280)
    assert pixels.std() > 20 and len(np.unique(pixels.reshape(-1, 3), axis=0)) > 1000  # text, boxes and images


@needs_chromium
def test_the_filters_in_headless_chromium(page: Path, evals: Path, tmp_path: Path) -> None:
    """A URL fragment sets the filters on load; the page hides every episode that does not match them."""
    recorded = entries(evals)
    for fragment, keep in [
        ("#correct=no&tool=yes", lambda label, e: not e["correct"] and e["used_tool"]),
        ("#suite=video", lambda label, e: e["suite"] == "video"),
        ("#tool=no&recording=blind/episodes/counting", lambda label, e: label == "blind/episodes/counting"),
        ("#category=attribute&correct=yes", lambda label, e: e["category"] == "attribute" and e["correct"]),
    ]:
        dom = chromium(page, tmp_path, "--dump-dom", fragment=fragment).stdout
        shown = [re.search(r'data-recording="([^"]*)"', s).group(1)
                 for s in re.findall(r'<section class="episode"[^>]*>', dom) if " hidden" not in s]
        expected = [label for label, entry in recorded if keep(label, entry)]
        assert shown == expected and expected, fragment
        assert f"{len(expected)} of {len(recorded)} episodes" in dom
