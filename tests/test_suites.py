"""The built-in suites: determinism, laziness, splits, sizes, and the property that the answer needs a pixel op.

The no-op baseline reads the env's default global view (or the 16 low-resolution frames); the oracle zooms to
the annotated target boxes (or selects the key frames). Both use the same glyph reader.
"""

from __future__ import annotations

import pickle
import time
from collections import defaultdict
from functools import cache
from statistics import mean

import numpy as np
import pytest
from PIL import ImageDraw

from pixel_gym.budgets import BUDGET_PRESETS
from pixel_gym.ops import fit_to_budget, sample_frame_indices
from pixel_gym.reward import score_answer
from pixel_gym.suites import SUITES, CountingSuite, DocumentSuite, FineDetailSuite, VideoSuite, make_suite
from pixel_gym.suites.drawing import NAMED_COLORS, PAPER
from pixel_gym.suites.reader import find_flash, global_view_answer, oracle_answer
from pixel_gym.tasks import Task

NAMES = ("fine_detail", "counting", "document", "video")
NUM_TASKS = 200
FRAME_SHOWN = BUDGET_PRESETS["compact"].frame_shown
IMAGE_SIDES = {"fine_detail": (1500, 2500), "counting": (1500, 2500), "document": (1200, 2000)}
EASY = {
    "fine_detail": dict(image_size=(448, 448), num_tags=(4, 8), num_colored=(2, 4), num_choices=2, cell=4,
                        clutter=(0, 10)),
    "counting": dict(image_size=(448, 448), max_count=4, num_lookalikes=(1, 2), num_distractors=(0, 2), cell=4,
                     clutter=(0, 10)),
    "document": dict(image_size=(700, 700), label_cell=6, value_cell=4),
    "video": dict(frame_size=(320, 180), num_frames=(16, 16), num_choices=2, cell=4, num_decoys=0),
}
EASY_SIZES = {"fine_detail": (448, 448), "counting": (448, 448), "document": (700, 700), "video": (320, 180)}


@cache
def baseline(name: str) -> dict[str, dict[str, list]]:
    """Per category: no-op and oracle scores, chance levels and image sizes over the test split of one suite."""
    results: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for task in make_suite(name, size=NUM_TASKS, split="test"):
        image = task.images[0].open() if task.images else None
        scores = results[task.category]
        scores["noop"].append(score_answer(global_view_answer(task, image=image), task))
        scores["oracle"].append(score_answer(oracle_answer(task, image=image), task))
        scores["chance"].append(1 / len(task.choices) if task.choices else 0.0)
        scores["sizes"].append(image.size if image else tuple(task.annotations["frame_size"]))
    for category, scores in results.items():
        print(f"{name}/{category}: no-op {mean(scores['noop']):.3f} (chance {mean(scores['chance']):.3f}), "
              f"oracle {mean(scores['oracle']):.3f}, n={len(scores['noop'])}")
    return results


def pixels(task: Task) -> list[np.ndarray]:
    refs = task.images or (task.video[0], task.video[task.key_frames[0]])
    return [np.asarray(ref.open()) for ref in refs]


# ------------------------------------------------------------------------------- the crucial property


@pytest.mark.parametrize("name", NAMES)
def test_oracle_op_recovers_the_answer(name: str) -> None:
    for scores in baseline(name).values():
        assert mean(scores["oracle"]) >= 0.95


@pytest.mark.parametrize("name", NAMES)
def test_global_view_answers_near_chance(name: str) -> None:
    """Choice: within 0.15 of chance; count: guessing "0" already scores 0.1; anls: nearly nothing."""
    for scores in baseline(name).values():
        limit = {"counting": 0.25, "document": 0.15}.get(name, mean(scores["chance"]) + 0.15)
        assert mean(scores["noop"]) <= limit


def test_the_main_jobs_default_setting_needs_the_zoom() -> None:
    """`python -m rl_runner.train`'s tasks and budgets: the global view reads near chance, the oracle zoom reads."""
    from rl_runner.config import DEFAULT_BUDGETS, DEFAULT_SUITE_KWARGS

    tasks = make_suite("fine_detail", size=100, split="test", **DEFAULT_SUITE_KWARGS)
    noop = mean(score_answer(global_view_answer(t, DEFAULT_BUDGETS), t) for t in tasks)
    oracle = mean(score_answer(oracle_answer(t, DEFAULT_BUDGETS), t) for t in tasks)
    chance = mean(1 / len(t.choices) for t in tasks)
    print(f"main job setting: no-op {noop:.3f} (chance {chance:.3f}), oracle {oracle:.3f}")
    assert noop <= chance + 0.15 and oracle >= 0.95


@pytest.mark.parametrize("name", IMAGE_SIDES)
def test_image_sizes_in_range(name: str) -> None:
    low, high = IMAGE_SIDES[name]
    sizes = [size for scores in baseline(name).values() for size in scores["sizes"]]
    assert len(sizes) == NUM_TASKS and all(low <= side <= high for size in sizes for side in size)
    assert len({w / h for w, h in sizes}) > NUM_TASKS // 2  # random aspect


def test_video_frames_and_flash() -> None:
    suite = VideoSuite(size=NUM_TASKS, split="test")
    for task in suite:
        shown = sample_frame_indices(len(task.video), 16)
        assert 16 <= len(task.video) <= 64 and 2 <= len(task.key_frames) <= 4
        assert list(task.key_frames) == list(range(task.key_frames[0], task.key_frames[-1] + 1))
        assert set(task.key_frames) & set(shown)
    assert set(baseline("video")["flash"]["sizes"]) == {(640, 360)}


def test_flash_is_visible_in_the_overview() -> None:
    """The flash is unreadable in the 16 small frames but visible, so a model knows which frame to select."""
    hits = []
    for task in VideoSuite(size=40, split="test"):
        shown = sample_frame_indices(len(task.video), 16)
        frames = [fit_to_budget(task.video[i].open(), FRAME_SHOWN) for i in shown]
        hits.append(find_flash(task, frames, shown) in task.key_frames)
    assert mean(hits) >= 0.95


# ------------------------------------------------------------------------------ determinism and splits


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_task_and_pixels(name: str) -> None:
    first, second = make_suite(name, size=20, seed=3)[7], make_suite(name, size=20, seed=3)[7]
    assert (first.id, first.question, first.answers, first.choices) == (
        second.id, second.question, second.answers, second.choices)
    assert first.annotations == second.annotations and first.target_boxes == second.target_boxes
    assert all(np.array_equal(a, b) for a, b in zip(pixels(first), pixels(second)))


@pytest.mark.parametrize("name", NAMES)
def test_different_index_or_seed_gives_a_different_task(name: str) -> None:
    suite = make_suite(name, size=20)
    other_seed = make_suite(name, size=20, seed=1)[4]
    assert suite[4].annotations != suite[5].annotations
    assert suite[4].annotations != other_seed.annotations
    assert not np.array_equal(pixels(suite[4])[0], pixels(other_seed)[0])
    assert suite[4].id == f"{name}/train/4" and other_seed.id == f"{name}-s1/train/4"


@pytest.mark.parametrize("name", NAMES)
def test_train_and_test_splits_differ(name: str) -> None:
    layouts = {split: {repr(t.annotations) for t in make_suite(name, size=60, split=split)}
               for split in ("train", "test")}
    assert len(layouts["train"]) == len(layouts["test"]) == 60
    assert not layouts["train"] & layouts["test"]


def test_unknown_split_and_bad_size_are_refused() -> None:
    with pytest.raises(ValueError, match="split"):
        make_suite("counting", split="validation")
    with pytest.raises(ValueError, match="size"):
        make_suite("counting", size=-1)


# ------------------------------------------------------------------------------------ laziness and API


def test_tasks_are_built_without_drawing(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("pixels drawn before the image was opened")

    monkeypatch.setattr(ImageDraw, "Draw", refuse)
    start = time.perf_counter()
    for name in NAMES:
        suite = make_suite(name, size=10_000)
        tasks = [suite[i] for i in range(0, 10_000, 100)]
        assert all(callable(ref.source) for task in tasks for ref in task.images + task.video)
    assert time.perf_counter() - start < 2.0
    with pytest.raises(AssertionError, match="pixels drawn"):
        tasks[0].video[0].open()


def test_sequence_protocol() -> None:
    suite = make_suite("fine_detail", size=5)
    assert len(suite) == 5 and suite[-1].id == suite[4].id
    assert [t.id for t in suite[1:3]] == ["fine_detail/train/1", "fine_detail/train/2"]
    with pytest.raises(IndexError):
        suite[5]
    with pytest.raises(TypeError):
        suite["1"]  # type: ignore[call-overload]


def test_make_suite_names() -> None:
    assert set(NAMES) <= set(SUITES)
    assert isinstance(make_suite("document", size=3), DocumentSuite)
    with pytest.raises(ValueError, match="fine_detail, counting, document, video"):
        make_suite("charts")


def test_mixed_suite_interleaves_the_four() -> None:
    suite = make_suite("mixed", size=10, fine_detail=EASY["fine_detail"])
    assert [t.id.split("/")[0] for t in suite[:5]] == [*NAMES, "fine_detail"]
    assert suite[4].id == "fine_detail/train/1" and suite[4].images[0].open().size == (448, 448)
    with pytest.raises(ValueError, match="unknown parts"):
        make_suite("mixed", charts={})


def test_tasks_survive_pickling() -> None:
    for name in NAMES:
        task = make_suite(name, size=3)[2]
        copy = pickle.loads(pickle.dumps(task))
        assert copy.answers == task.answers
        assert all(np.array_equal(a, b) for a, b in zip(pixels(copy), pixels(task)))


# --------------------------------------------------------------------------------- ground truth checks


def test_fine_detail_annotations() -> None:
    for task in FineDetailSuite(size=100, split="test"):
        tags = task.annotations["tags"]
        targets = [tags[i] for i in task.annotations["targets"]]
        assert all(20 <= t["box"][2] - t["box"][0] <= 40 for t in tags)
        if task.category == "attribute":
            colored = [t["color"] for t in tags if t["color"] != "gray"]
            assert len(colored) == len(set(colored)) and targets[0]["color"] == task.annotations["color"]
            assert task.choices[ord(task.answers[0]) - ord("A")] == targets[0]["symbol"]
        else:
            first, second = targets
            assert [first["symbol"], second["symbol"]] == task.annotations["query"]
            assert [t["symbol"] for t in tags].count(first["symbol"]) == 1
            centres = [np.array([(t["box"][0] + t["box"][2]) / 2, (t["box"][1] + t["box"][3]) / 2])
                       for t in targets]
            assert np.linalg.norm(centres[0] - centres[1]) <= 250
            assert task.answers == (("A",) if centres[0][0] < centres[1][0] else ("B",))


def test_a_wider_frame_grows_the_tag_around_the_same_glyph() -> None:
    """By hand, cell 2 and frame 6: the tag is (7 + 12) x (9 + 12) cells = 38 x 42 px, its glyph starts 7 cells
    (14 px) in; the frame (12 px wide) is the tag's colour, the paper (2 px) lies between frame and glyph."""
    suite = FineDetailSuite(size=5, split="test", frame=6, categories=("attribute",))
    for task in suite:
        for tag in task.annotations["tags"]:
            x1, y1, x2, y2 = tag["box"]
            assert (x2 - x1, y2 - y1) == (38, 42) and tag["glyph"] == [x1 + 14, y1 + 14, 2] and tag["frame"] == 6
    task = suite[0]
    tag = task.annotations["tags"][task.annotations["targets"][0]]
    pixels = np.asarray(task.images[0].open())
    x1, y1 = tag["box"][:2]
    frame_colour = NAMED_COLORS[tag["color"]]
    assert all(tuple(pixels[y1 + dy, x1 + dx]) == frame_colour for dx, dy in [(0, 0), (11, 11), (37, 41), (5, 30)])
    assert tuple(pixels[y1 + 12, x1 + 12]) == PAPER  # inside the frame, before the glyph
    with pytest.raises(ValueError, match="frame"):
        FineDetailSuite(size=1, frame=0)


def test_counting_annotations() -> None:
    for task in CountingSuite(size=100, split="test"):
        tags = task.annotations["tags"]
        assert int(task.answers[0]) == sum(t["symbol"] == task.annotations["symbol"] for t in tags) <= 9
        box = task.target_boxes[0]
        assert box.x2 - box.x1 <= 250 and box.y2 - box.y1 <= 250


def test_document_annotations() -> None:
    for task in DocumentSuite(size=50, split="test"):
        items = task.annotations["items"]
        target = items[task.annotations["target"]]
        assert task.answers == (target["value"],) and target["name"] in task.question
        assert len({item["name"] for item in items}) == len(items) >= 10


@pytest.mark.parametrize("name", NAMES)
def test_easy_settings(name: str) -> None:
    suite = make_suite(name, size=12, split="test", **EASY[name])
    for task in suite:
        assert score_answer(oracle_answer(task), task) == 1.0
    assert {(pixels(task)[0].shape[1], pixels(task)[0].shape[0]) for task in suite[:3]} == {EASY_SIZES[name]}




def test_random_distractors_are_other_symbols_and_unknown_kinds_are_refused() -> None:
    tasks = make_suite("fine_detail", size=40, split="test", categories=("attribute",), distractors="random")
    for task in tasks:
        assert len(set(task.choices)) == len(task.choices) == 4
        target = task.annotations["tags"][task.annotations["targets"][0]]
        assert task.choices["ABCD".index(task.answers[0])] == target["symbol"]
    near = make_suite("fine_detail", size=40, split="test", categories=("attribute",))
    assert [t.choices for t in tasks] != [t.choices for t in near]
    with pytest.raises(ValueError, match="distractors"):
        FineDetailSuite(distractors="similar")
