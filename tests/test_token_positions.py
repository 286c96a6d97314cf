"""rl_runner.token_positions: each image token's tenth of the image, for the pretraining's position loss."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForImageTextToText

from agents.chat import load_processor
from rl_runner.conversation import batch_conversations, encode_conversation
from rl_runner.pretrain import chat
from rl_runner.token_positions import BUCKETS, PositionHead, position_loss, position_targets


def test_targets_are_the_tenths_of_each_token_centre_in_raster_order() -> None:
    # one image of 4x6 patches = 2x3 merged tokens: centres at x = 1/6, 3/6, 5/6 and y = 1/4, 3/4
    x, y = position_targets(torch.tensor([[1, 4, 6]]), merge=2)
    assert x.tolist() == [1, 5, 8, 1, 5, 8]
    assert y.tolist() == [2, 2, 2, 7, 7, 7]
    x, y = position_targets(torch.tensor([[1, 2, 2], [1, 2, 4]]), merge=2)  # images follow each other
    assert x.tolist() == [5, 2, 7] and y.tolist() == [5, 5, 5]


def test_loss_reads_every_image_token_of_a_real_batch(tiny_model_path: Path) -> None:
    processor = load_processor(tiny_model_path)
    model = AutoModelForImageTextToText.from_pretrained(tiny_model_path, dtype=torch.float32)
    rng = np.random.default_rng(0)
    chats = [chat(rng.integers(0, 255, (h, w, 3), dtype=np.uint8), "Where?", "[0.1, 0.2, 0.2, 0.3]")
             for h, w in ((112, 168), (56, 56))]
    chats.append(chat(None, "No image here.", "ok"))
    inputs, _ = batch_conversations([encode_conversation(processor, c) for c in chats], 0)
    output = model(**inputs, output_hidden_states=True)
    head = PositionHead(model.config.text_config.hidden_size)
    image_id = model.config.image_token_id
    assert int((inputs["input_ids"] == image_id).sum()) == len(position_targets(inputs["image_grid_thw"], 2)[0])
    loss = position_loss(head, output.hidden_states[2], inputs["input_ids"], inputs["image_grid_thw"], image_id, 2)
    assert abs(float(loss) - np.log(BUCKETS)) < 0.5  # an untrained head guesses about uniformly
    loss.backward()
    assert head.linear.weight.grad.abs().sum() > 0
