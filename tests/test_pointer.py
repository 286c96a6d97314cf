"""rl_runner.pointer: the loss that points one decoder head at the tag a box names."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForImageTextToText

from agents.chat import load_processor
from rl_runner.algorithms import trained_parameters
from rl_runner.conversation import batch_conversations, encode_conversation
from rl_runner.diagnostics import kind_indices
from rl_runner.pointer import (
    LETTERS,
    OPTION_HOPS,
    answer_position_loss,
    captured_attention_inputs,
    centre_tenths,
    head_attention,
    letter_loss,
    option_hops,
    pointed_box,
    pointer_loss,
    query_positions,
    target_tokens,
)
from rl_runner.pretrain import EncodedBatches, chat, default_config
from rl_runner.token_positions import BUCKETS, PositionHead

IMAGE = 7  # a stand-in image token id for hand-made id sequences


def test_target_tokens_are_the_cells_the_box_overlaps() -> None:
    # 4x6 patches, merge 2: 2 rows x 3 columns of tokens, each 1/3 wide and 1/2 high, after two text tokens
    ids = torch.tensor([1, 2] + [IMAGE] * 6 + [3])
    grid = torch.tensor([[1, 4, 6]])
    inside = target_tokens(ids, grid, (0.4, 0.6, 0.5, 0.9), IMAGE, merge=2)
    assert inside.nonzero().reshape(-1).tolist() == [2 + 4]  # row 1, column 1
    across = target_tokens(ids, grid, (0.3, 0.4, 0.7, 0.6), IMAGE, merge=2)  # touches all three columns, both rows
    assert across.nonzero().reshape(-1).tolist() == [2, 3, 4, 5, 6, 7]
    assert not target_tokens(ids, grid, None, IMAGE, merge=2).any()
    assert not target_tokens(torch.tensor([1, 2, 3]), None, (0.1, 0.1, 0.2, 0.2), IMAGE, merge=2).any()


def test_queries_are_the_positions_before_each_informative_digit(tiny_model_path: Path) -> None:
    tokenizer = load_processor(tiny_model_path).tokenizer
    answer = "[0.3, 0.6, 0.4, 0.7]"
    ids = torch.tensor(tokenizer("Where?" + answer, add_special_tokens=False)["input_ids"])
    prompt = len(tokenizer("Where?", add_special_tokens=False)["input_ids"])
    mask = torch.zeros(len(ids), dtype=torch.bool)
    mask[prompt:] = True
    queries = query_positions(kind_indices(tokenizer, ids[None], mask[None]))[0].nonzero().reshape(-1)
    predicted = [tokenizer.decode([int(ids[p + 1])]) for p in queries]
    assert "".join(predicted) == "36"  # x1 and y1 of a unit-cell box; x2, y2 follow from them
    untrained = kind_indices(tokenizer, ids[None], torch.zeros_like(mask)[None])
    assert not query_positions(untrained).any()  # untrained tokens ask nothing
    named = torch.tensor(tokenizer("Which symbol?" + "K", add_special_tokens=False)["input_ids"])
    trained = torch.zeros(len(named), dtype=torch.bool)
    trained[-1] = True  # a one-token answer without a box: the position that predicts it asks
    assert query_positions(kind_indices(tokenizer, named[None], trained[None]))[0].nonzero().reshape(-1).tolist() == [
        len(named) - 2]


def test_an_option_answer_is_a_lookup_in_three_hops(tiny_model_path: Path) -> None:
    """Options (A) L, (B) S, (C) 0, (D) U ("(B) S" tokenizes as "(B", ")", " S"), the answer "... clearly: 0. The
    answer is \\boxed{C}.": every option's text points at its "(X" and holds X; the answer's "0" points at option
    C's "0" and holds C; the position predicting "{C" points at the answer's "0" and holds C. An answer that is
    not one option letter, or is untrained, has no hops."""
    tokenizer = load_processor(tiny_model_path).tokenizer
    prompt = "Options:\n(A) L\n(B) S\n(C) 0\n(D) U\nThe tag shows 0."

    def hops(answer: str, trained: bool = True) -> tuple[dict[str, tuple[list[str], list[str]]], list[int]]:
        ids = torch.tensor(tokenizer(prompt + answer, add_special_tokens=False)["input_ids"])
        start = len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
        mask = torch.zeros(len(ids), dtype=torch.bool)
        mask[start:] = trained
        made = option_hops(tokenizer, ids, kind_indices(tokenizer, ids[None], mask[None])[0])

        def named(positions: torch.Tensor) -> list[str]:  # "a:" marks a token of the answer, "p:" of the prompt
            return [("a:" if p >= start else "p:") + tokenizer.decode([int(ids[p])]).strip()
                    for p in positions.nonzero().reshape(-1)]

        return ({name: (named(queries), named(targets)) for name, (queries, targets) in made.hops.items()},
                made.letters[made.letters >= 0].tolist())

    found, letters = hops(" Now I can see it clearly: 0. The answer is \\boxed{C}.")
    assert found["option_label"] == (["p:L", "p:S", "p:0", "p:U"], ["p:(A", "p:(B", "p:(C", "p:(D"])
    assert found["lookup"] == (["a:0"], ["p:0"])
    assert found["carry"] == (["a:boxed"], ["a:0"])  # the position that predicts "{C"
    assert letters == [0, 1, 2, 3, 2, 2]  # A-D on the options, then C on the answer's "0" and on "boxed"
    empty = ({name: ([], []) for name in OPTION_HOPS}, [])
    assert hops(" The answer is \\boxed{7}.") == empty  # a count, not an option
    assert hops(" Now I can see it clearly: 0. The answer is \\boxed{C}.", trained=False) == empty
    assert hops(" [0.3, 0.6, 0.4, 0.7]") == empty


def test_letter_loss_reads_the_letter_at_the_queries() -> None:
    head = torch.nn.Linear(2, LETTERS, bias=False)
    with torch.no_grad():
        head.weight.zero_()
        head.weight[2, 0] = 50.0  # "C" wherever the first feature is on
    hidden = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    queries = torch.tensor([[True, False]])
    assert float(letter_loss(head, hidden, queries, torch.tensor([[2, -1]]))) < 1e-4
    assert float(letter_loss(head, hidden, queries, torch.tensor([[3, -1]]))) > 10


def test_loss_is_the_log_of_the_mass_off_the_targets() -> None:
    weights = torch.full((1, 3, 4), 0.25)
    queries = torch.tensor([[False, False, True]])
    targets = torch.tensor([[True, False, False, False]])
    assert math.isclose(float(pointer_loss(weights, queries, targets)), math.log(4), rel_tol=1e-4)
    weights[0, 2] = torch.tensor([1.0, 0.0, 0.0, 0.0])
    assert float(pointer_loss(weights, queries, targets)) < 1e-4
    assert float(pointer_loss(weights, torch.zeros_like(queries), targets)) == 0.0


def test_head_attention_is_the_models_own_attention(tiny_model_path: Path) -> None:
    model = AutoModelForImageTextToText.from_pretrained(tiny_model_path, dtype=torch.float32,
                                                        attn_implementation="eager").eval()
    processor = load_processor(tiny_model_path)
    rng = np.random.default_rng(0)
    chats = [chat(rng.integers(0, 255, (112, 168, 3), dtype=np.uint8), "Where is the red tag?", "[0.1, 0.2, 0.2, 0.3]",
                  pointed=(0.1, 0.2, 0.15, 0.3)), chat(None, "No image.", "ok")]
    inputs, _ = batch_conversations([encode_conversation(processor, c) for c in chats], 0)  # left-padded
    layer = 1
    attention = model.model.language_model.layers[layer].self_attn
    with captured_attention_inputs(attention) as captured, torch.no_grad():
        output = model(**inputs, output_attentions=True)
        for head in range(model.config.text_config.num_attention_heads):
            weights = head_attention(attention, captured, head, inputs["attention_mask"])
            real = inputs["attention_mask"].bool()
            assert torch.allclose(weights[real], output.attentions[layer][:, head][real], atol=1e-5)
            second = head_attention(attention, captured, head, inputs["attention_mask"], torch.tensor([1]))
            assert torch.allclose(second[0], weights[1], atol=1e-6)  # one row alone, as in the batch


def test_pretraining_batches_point_at_the_asked_tag(tiny_model_path: Path) -> None:
    processor = load_processor(tiny_model_path)
    config = default_config(batch_size=8, data_workers=0, kind_counts={"ground": 1, "match": 1}, option_pointer=True)
    batches = iter(EncodedBatches(config, processor))
    inputs, _, _, pointers = next(batches)
    _, _, _, by_default = next(iter(EncodedBatches(dataclasses.replace(config, option_pointer=False), processor)))
    assert not any(queries.any() or targets.any() for queries, targets in by_default.hops.values())
    image_id = processor.tokenizer.convert_tokens_to_ids(processor.image_token)
    has_image = (inputs["input_ids"] == image_id).any(dim=1)
    assert has_image.any() and (~has_image).any()
    assert torch.equal(pointers.targets.any(dim=1), has_image)  # every ground chat points, text-only ones do not
    assert torch.equal(pointers.queries.sum(dim=1), 2 * has_image.long())  # at x1 and y1
    # the text-only match chats look their letter up: four options labelled, one lookup and one carry each
    queries, targets = pointers.hops["option_label"]
    assert torch.equal(queries.sum(dim=1), 4 * (~has_image).long()) and torch.equal(targets.sum(dim=1), queries.sum(1))
    for name in ("lookup", "carry"):
        assert torch.equal(pointers.hops[name][0].sum(dim=1), (~has_image).long())
    assert torch.equal((pointers.letters >= 0).sum(dim=1), 6 * (~has_image).long())
    assert not (pointers.targets & (inputs["input_ids"] != image_id)).any()


def test_chat_records_the_pointed_box_on_its_image() -> None:
    image = np.zeros((56, 56, 3), dtype=np.uint8)
    assert pointed_box(chat(image, "q", "a", pointed=(0.1, 0.2, 0.3, 0.4))) == (0.1, 0.2, 0.3, 0.4)
    assert pointed_box(chat(image, "q", "a")) is None
    assert pointed_box(chat(None, "q", "a", pointed=(0.1, 0.2, 0.3, 0.4))) is None


def test_centre_tenths_are_a_unit_cell_boxs_first_digits() -> None:
    assert centre_tenths((0.31, 0.62, 0.35, 0.66)) == (3, 6)
    assert centre_tenths((0.95, 0.0, 1.0, 0.04)) == (9, 0)
    assert centre_tenths((0.9, 0.9, 1.0, 1.0)) == (9, 9)  # the far edge stays in the last tenth
    assert centre_tenths(None) == (-1, -1)


def test_answer_position_loss_reads_only_the_query_positions() -> None:
    head = PositionHead(4).requires_grad_(False)
    hidden = torch.randn(2, 5, 4)
    queries = torch.zeros(2, 5, dtype=torch.bool)
    assert float(answer_position_loss(head, hidden, queries, torch.full((2, 2), -1))) == 0.0
    queries[1, 3] = True
    tenths = torch.tensor([[-1, -1], [2, 7]])
    head.linear.weight.zero_()
    head.linear.bias.zero_()
    head.linear.bias[2] = head.linear.bias[BUCKETS + 7] = 50.0  # certain of x tenth 2, y tenth 7
    assert float(answer_position_loss(head, hidden, queries, tenths)) < 1e-6
    assert math.isclose(float(answer_position_loss(head, hidden, queries, torch.tensor([[-1, -1], [3, 7]]))), 25.0,
                        rel_tol=1e-3)  # x wrong by a margin of 50: (50 + 0) / 2


def test_the_vision_tower_stays_frozen_unless_asked(tiny_model_path: Path) -> None:
    model = AutoModelForImageTextToText.from_pretrained(tiny_model_path, dtype=torch.float32)
    tower = {id(p) for p in model.model.visual.parameters()}
    assert not tower & {id(p) for p in trained_parameters(model, train_tower=False)}
    fresh = AutoModelForImageTextToText.from_pretrained(tiny_model_path, dtype=torch.float32)
    assert len(trained_parameters(fresh, train_tower=True)) == len(list(fresh.parameters()))
