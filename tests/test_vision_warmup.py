"""rl_runner.vision_warmup: the vision tower alone learns to tell a tag's symbol from a small window."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForImageTextToText

from agents.chat import load_processor
from agents.tiny import BASE_SHAPE, build_tiny_model
from benchmarks.vision_probe import tag_windows
from rl_runner.pretrain import default_config, window_stream
from rl_runner.vision_warmup import SYMBOL_IDS, warm_up_vision


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
