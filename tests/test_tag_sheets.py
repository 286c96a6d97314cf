"""rl_runner.tag_sheets: dense tag pages at the look crops' served scale, labelled per image token."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForImageTextToText

from agents.chat import load_processor
from agents.tiny import BASE_SHAPE, build_tiny_model
from benchmarks.vision_probe import tag_windows
from pixel_gym.suites.glyphs import SYMBOLS
from rl_runner.pretrain import default_config, suite_chunks, suite_tag_style, symbol_view_stream
from rl_runner.tag_sheets import SHEET_SCALES, SHEET_TOKENS, sheet_stream, tag_sheet
from rl_runner.vision_warmup import IGNORED, SYMBOL_VIEW_IDS, warm_up_vision


def test_a_sheet_labels_many_tokens_with_glyphs_that_show_there() -> None:
    """A sheet is 12x12 tokens of 28 px; far more tokens hold a glyph centre than in a look crop (one or two), and
    each such token shows ink (the glyph's dark cells) where it is labelled."""
    view = tag_sheet(np.random.default_rng(0), 28)
    assert view.pixels.shape == (SHEET_TOKENS * 28, SHEET_TOKENS * 28, 3)
    assert view.labels.shape == (SHEET_TOKENS, SHEET_TOKENS)
    tagged = np.argwhere(view.labels > 0)
    assert len(tagged) >= 25
    assert set(np.unique(view.labels)) <= {IGNORED, 0, *SYMBOL_VIEW_IDS.values()}
    for row, col in tagged:
        token = view.pixels[row * 28 : (row + 1) * 28, col * 28 : (col + 1) * 28]
        assert token.max(axis=-1).min() < 90  # ink (20, 20, 20), blurred by the resize: dark in every channel


def test_sheets_draw_every_symbol_and_differ_from_sheet_to_sheet() -> None:
    rng = np.random.default_rng(1)
    views = [tag_sheet(rng, 28) for _ in range(3)]
    symbols = {int(label) for view in views for label in view.labels[view.labels > 0]}
    assert len(symbols) > len(SYMBOLS) - 4
    assert not np.array_equal(views[0].pixels, views[1].pixels)


def test_the_sheets_scale_spans_the_scale_the_look_crops_are_served_at() -> None:
    """Served pixels per source pixel of look crops in the main job's setting lie within `SHEET_SCALES`, and the
    pretraining's sheets take the suite's own glyph cell and frame."""
    config = default_config()
    scales = []
    for maker, task in itertools.islice(suite_chunks(config, "test"), 8):
        maker.env.reset(options={"task": task})
        for tag in task.annotations["tags"][:3]:
            view = maker.look_crop(tag, task.annotations["image_size"])
            scales.append(view.array.shape[1] / (view.region[2] - view.region[0]))
    low, high = np.percentile(scales, [5, 95])
    assert SHEET_SCALES[0] <= low and high <= SHEET_SCALES[1]
    assert suite_tag_style(config) == (2, 6)  # the main job's setting: 2-px cells, 6-cell frames
    assert suite_tag_style(default_config(suite_kwargs={"cell": 3, "frame": 2})) == (3, 2)


def test_the_reading_warm_up_scores_held_out_look_crops_every_check(tmp_path: Path) -> None:
    """With `crop_checks`, every `check_every`-th step's record carries the untrained reading accuracy on
    `check_size` held-out look crops (a share of their glyph tokens), the other records none."""
    model_dir = build_tiny_model(tmp_path / "base", seed=0, shape=BASE_SHAPE)
    model = AutoModelForImageTextToText.from_pretrained(model_dir, dtype=torch.float32)
    log = warm_up_vision(model, load_processor(model_dir), tag_windows(np.random.default_rng(0)), steps=4,
                         batch_size=2, progress=False, symbol_views=sheet_stream(0, 28), symbol_batch=1,
                         crop_checks=symbol_view_stream(default_config(), 28, split="test"), check_every=2,
                         check_size=3)
    checked = [r["step"] for r in log if "crop_read_accuracy" in r]
    assert checked == [2, 4]
    assert all(0.0 <= log[step - 1]["crop_read_accuracy"] <= 1.0 for step in checked)
