"""rl_runner.vision_warmup: the vision tower alone learns to tell a tag's symbol from a small window."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForImageTextToText

from agents.chat import load_processor
from agents.scripted import crop_call
from agents.tiny import BASE_SHAPE, build_tiny_model
from benchmarks.vision_probe import tag_windows
from pixel_gym.env import PixelVQAEnv
from pixel_gym.suites import make_suite
from rl_runner.pretrain import (
    ExampleMaker,
    colour_view_stream,
    default_config,
    look_box,
    shift_at,
    symbol_view_stream,
    tag_region,
    window_stream,
)
from rl_runner.vision_warmup import (
    COLOUR_IDS,
    IGNORED,
    SYMBOL_IDS,
    SYMBOL_VIEW_IDS,
    colour_labels,
    symbol_labels,
    warm_up_vision,
)


def test_warm_up_teaches_the_tower_to_read_glyphs(tmp_path: Path) -> None:
    model_dir = build_tiny_model(tmp_path / "base", seed=0, shape=BASE_SHAPE)
    model = AutoModelForImageTextToText.from_pretrained(model_dir, dtype=torch.float32)
    decoder_before = model.model.language_model.layers[0].self_attn.q_proj.weight.clone()
    torch.manual_seed(0)
    log = warm_up_vision(model, load_processor(model_dir), tag_windows(np.random.default_rng(0)), steps=110,
                         progress=False)
    first, last = np.mean([r["loss_symbol"] for r in log[:10]]), np.mean([r["loss_symbol"] for r in log[-10:]])
    assert first > np.log(len(SYMBOL_IDS)) - 0.1  # starts at the uniform guess over 28 glyphs
    assert last < 2.0  # and reads most of them after 110 steps
    assert torch.equal(model.model.language_model.layers[0].self_attn.q_proj.weight, decoder_before)


def test_window_stream_serves_every_tag_at_the_crop_scale() -> None:
    windows = list(itertools.islice(window_stream(default_config()), 40))
    assert {w.pixels.shape for w in windows} == {(56, 56, 3)}
    assert len({w.symbol for w in windows}) > 10


def test_colour_labels_mark_the_token_that_holds_each_named_tags_centre() -> None:
    """By hand: a 100x50 image in 5 rows x 10 cols of tokens (10 px each); the red tag's centre (15, 25) lies in
    column 1, row 2; the blue one's (95, 45) in column 9, row 4; the gray tag is no named colour."""
    tags = [{"box": [10, 20, 20, 30], "color": "red"}, {"box": [90, 40, 100, 50], "color": "blue"},
            {"box": [40, 0, 50, 10], "color": "gray"}]
    labels = colour_labels((100, 50), (5, 10), tags)
    expected = np.zeros((5, 10), dtype=np.int64)
    expected[2, 1], expected[4, 9] = COLOUR_IDS["red"], COLOUR_IDS["blue"]
    np.testing.assert_array_equal(labels, expected)
    assert COLOUR_IDS["red"] != 0 and len(set(COLOUR_IDS.values())) == len(COLOUR_IDS)


def test_colour_warm_up_finds_the_named_tags_in_global_views(tmp_path: Path) -> None:
    """On global views of the main job's setting, the per-token colour loss leaves the no-information level
    ((ln 2 + ln 18) / 2 = 1.79: "none" or a uniform colour, whatever the token) once the tower finds the tags."""
    model_dir = build_tiny_model(tmp_path / "base", seed=0, shape=BASE_SHAPE)
    model = AutoModelForImageTextToText.from_pretrained(model_dir, dtype=torch.float32)
    processor = load_processor(model_dir)
    views = list(itertools.islice(colour_view_stream(default_config(), 28), 8))
    torch.manual_seed(0)
    log = warm_up_vision(model, processor, tag_windows(np.random.default_rng(0)), steps=60, batch_size=4,
                         progress=False, colour_views=itertools.cycle(views), colour_batch=4)
    assert np.mean([r["loss_colour"] for r in log[-10:]]) < 1.5
    assert all("loss_tower_position" in r for r in log)
    without_position = warm_up_vision(model, processor, tag_windows(np.random.default_rng(0)), steps=2, batch_size=2,
                                      progress=False, colour_views=itertools.cycle(views), colour_batch=2,
                                      tower_position=False)
    assert all("loss_colour" in r and "loss_tower_position" not in r for r in without_position)


def test_shift_ramp_moves_the_tags_off_centre_as_the_steps_go_by() -> None:
    """By hand: a ramp over steps 100-300 gives 0 up to step 100, 0.25 at 150, 1 from 300 on; no ramp: 0."""
    assert [shift_at(step, (100, 300)) for step in (0, 100, 150, 300, 1000)] == [0.0, 0.0, 0.25, 1.0, 1.0]
    assert shift_at(500, None) == 0.0
    centred = list(itertools.islice(window_stream(default_config()), 200))
    ramped = list(itertools.islice(window_stream(default_config(shift_ramp=(0, 1))), 200))
    same = [np.array_equal(a.pixels, b.pixels) for a, b in zip(centred, ramped)]
    assert [a.symbol for a in centred] == [b.symbol for b in ramped]  # the same tags, in the same order
    assert 0 < sum(same) < 50  # the first image's windows (step 0) stay centred, later ones move


def test_symbol_labels_mark_the_token_that_holds_each_glyph_centre() -> None:
    """By hand: a crop of the source region (100, 200)-(300, 300) in 2 rows x 4 cols of tokens (50 px each). The
    "K" tag (box 140-190 x 210-240, glyph centre (165, 225)) covers columns 0-1 of row 0 and has its centre in
    column 1; the "7" tag's centre (290, 290) is in column 3 of row 1; a tag outside the crop whose box reaches
    into it (glyph centre (95, 280)) shows only part of its glyph: not scored."""
    tags = [{"box": [140, 210, 190, 240], "glyph": [165, 225, 2], "symbol": "K"},
            {"box": [280, 280, 299, 299], "glyph": [290, 290, 2], "symbol": "7"},
            {"box": [80, 270, 110, 290], "glyph": [95, 280, 2], "symbol": "Z"}]
    labels = symbol_labels((100, 200, 300, 300), (2, 4), tags)
    expected = np.array([[IGNORED, SYMBOL_VIEW_IDS["K"], 0, 0], [IGNORED, 0, 0, SYMBOL_VIEW_IDS["7"]]])
    np.testing.assert_array_equal(labels, expected)
    assert 0 not in SYMBOL_VIEW_IDS.values() and len(SYMBOL_VIEW_IDS) == len(SYMBOL_IDS)


def test_symbol_view_stream_serves_look_crops_labelled_where_glyphs_lie() -> None:
    """Each view is a crop as the env's zoom serves it (a multiple of 28 px a side, within the 144-token serving
    budget) with one label per 28 px token; every view scores at least the tag it was cut around."""
    views = list(itertools.islice(symbol_view_stream(default_config(), 28), 12))
    for view in views:
        height, width, _ = view.pixels.shape
        assert height % 28 == 0 and width % 28 == 0 and height * width <= 144 * 28 * 28
        assert view.labels.shape == (height // 28, width // 28)
        assert (view.labels > 0).sum() >= 1
    assert len({int(label) for view in views for label in view.labels[view.labels > 0]}) > 5


def test_a_symbol_view_is_the_crop_the_envs_zoom_serves() -> None:
    """Unshifted, the reading warm-up's crop around a tag is pixel for pixel what a crop call on its look box
    returns through the env (cut without spending the episode's calls)."""
    config = default_config()
    suite = make_suite(config.suite, size=2, seed=3, split="test", **config.suite_kwargs)
    task = suite[0]
    maker = ExampleMaker(PixelVQAEnv(tasks=suite, budgets=config.budgets), np.random.default_rng(0))
    maker._shifted = lambda box: box  # the look box itself
    (view,) = maker.symbol_views(task, 28, 1)
    tag = task.annotations["tags"][int(np.random.default_rng(0).permutation(len(task.annotations["tags"]))[0])]
    env = PixelVQAEnv(tasks=suite, budgets=config.budgets)
    env.reset(options={"task": task})
    obs, *_ = env.step(crop_call(look_box(tag_region(tag, task.annotations["image_size"])), decimals=2))
    np.testing.assert_array_equal(view.pixels, obs["images"][-1])
