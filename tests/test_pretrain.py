"""The pretraining stage: its examples, the loss diagnostics, the looking metrics and the command on a tiny budget."""

from __future__ import annotations

import json
import math
import shlex
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModelForImageTextToText

from agents.chat import load_processor
from agents.scripted import crop_call, outward_box, target_region, zoom_box
from pixel_gym.env import PixelVQAEnv
from pixel_gym.suites import make_suite
from pixel_gym.suites.drawing import FRAME_COLORS
from rl_runner.diagnostics import char_kinds, grayed, kind_indices, split_losses, token_kinds
from rl_runner.evaluation import blind_accuracy, disable_tool_calls, first_crop_hits
from rl_runner.pointer import pointed_box
from rl_runner.pretrain import (
    COMMITTED_BASE,
    MAIN_JOB_STEPS,
    MAIN_JOB_VISION_STEPS,
    OTHER_GLYPHS,
    PRETRAIN_SYSTEM,
    ExampleMaker,
    PretrainConfig,
    ensure_pretrained_base,
    example_stream,
    main,
    resolve_model,
)

SMALL_SUITE = {"image_size": (700, 800), "cell": 3, "categories": ("attribute",)}


def test_zoom_box_is_the_cell_of_a_small_targets_centre() -> None:
    assert zoom_box((0.41, 0.22, 0.43, 0.24), 1) == [0.4, 0.2, 0.5, 0.3]
    assert zoom_box((0.395, 0.22, 0.41, 0.35), 1) == [0.4, 0.2, 0.5, 0.4]  # centre 0.4025; tall: outward in y
    assert zoom_box((0.95, 0.96, 0.97, 0.99), 1) == [0.9, 0.9, 0.99, 0.99]  # kept below 1
    assert zoom_box((0.2, 0.3, 0.6, 0.7), 1) == outward_box((0.2, 0.3, 0.6, 0.7), 1)


def test_outward_box_covers_the_box_and_stays_normalized() -> None:
    assert outward_box((0.41, 0.22, 0.44, 0.31), 1) == [0.4, 0.2, 0.5, 0.4]
    assert outward_box((0.41, 0.22, 0.995, 0.999), 1) == [0.4, 0.2, 0.99, 0.99]  # 1.0 would read as pixels
    assert outward_box((0.123, 0.5, 0.126, 0.5), 2) == [0.12, 0.5, 0.13, 0.5]


def test_char_kinds_mark_informative_coordinate_digits_and_the_answer() -> None:
    text = 'zoom {"bbox_2d": [0.4, 0, 0.55, 12]} so \\boxed{B}.'
    kinds = char_kinds(text)
    marked = {i for i, k in enumerate(kinds) if k == "coordinate"}
    box = text.index("[")
    # "4" of 0.4, the lone "0", "55" of 0.55 and both digits of 12; never the "0." prefixes
    assert marked == {box + 3, box + 6, box + 11, box + 12, box + 15, box + 16}
    assert [text[i] for i, k in enumerate(kinds) if k == "answer"] == ["B"]


def test_a_unit_cell_box_is_informative_only_in_x1_and_y1() -> None:
    """zoom_box's cell of a small target: x2 = x1 + 0.1 and y2 = y1 + 0.1 follow from x1 and y1, so only the
    "3" and the "7" are coordinates (counting x2, y2 too halved the coordinate loss of a model that knows
    nothing); 0.01-wide cells likewise, and the last cell, which ends at 0.99 (normalized boxes stay under 1);
    a box of another size keeps all four."""
    for text, digits in (("[0.3, 0.7, 0.4, 0.8]", "37"), ("[0.31, 0.07, 0.32, 0.08]", "3107"),
                         ("[0.6, 0.9, 0.7, 0.99]", "69"), ("[0.3, 0.7, 0.5, 0.8]", "3758"),
                         ("[0.6, 0.8, 0.7, 0.99]", "68799")):
        kinds = char_kinds(text)
        assert "".join(text[i] for i, k in enumerate(kinds) if k == "coordinate") == digits


def test_token_kinds_follow_the_tokenizer(tiny_model_path: Path) -> None:
    tokenizer = load_processor(tiny_model_path).tokenizer
    text = "[0.3, 0.7, 0.5, 0.8] The answer is \\boxed{C}."
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    kinds = token_kinds(tokenizer, ids)
    coordinate = [tokenizer.decode([i]) for i, k in zip(ids, kinds) if k == "coordinate"]
    assert "".join(coordinate).replace(" ", "") == "3758"
    assert "C" in "".join(tokenizer.decode([i]) for i, k in zip(ids, kinds) if k == "answer")


def test_split_losses_sum_to_the_masked_total() -> None:
    class Digits:  # a tokenizer whose tokens are characters: ids are code points
        def decode(self, ids: list[int]) -> str:
            return "".join(chr(i) for i in ids)

    text = "[0.3] \\boxed{A}"
    ids = np.array([[ord(c) for c in text]])
    import torch

    logprobs = -torch.arange(1, len(text) + 1, dtype=torch.float32)[None]
    kinds = kind_indices(Digits(), torch.as_tensor(ids), torch.ones_like(logprobs))
    assert kind_indices(Digits(), torch.as_tensor(ids), torch.zeros_like(logprobs)).eq(-1).all()
    parts = split_losses(kinds, logprobs)
    assert parts["coordinate"] == (float(text.index("3") + 1), 1)
    assert parts["answer"] == (float(text.index("A") + 1), 1)
    assert sum(total for total, _ in parts.values()) == pytest.approx(sum(range(1, len(text) + 1)))


def test_a_short_look_prompt_is_the_question_alone() -> None:
    suite = make_suite("fine_detail", size=1, seed=5, split="train", **SMALL_SUITE)
    (look,) = ExampleMaker(PixelVQAEnv(tasks=suite), np.random.default_rng(0), "short").examples(suite[0], {"look": 1})
    assert look[0]["content"][0]["text"] == PRETRAIN_SYSTEM and look[1]["content"][1]["text"] == suite[0].prompt_text()
    assert "<tool_call>" in look[2]["content"][0]["text"] and pointed_box(look) is not None


def test_examples_are_what_the_env_shows() -> None:
    suite = make_suite("fine_detail", size=3, seed=5, split="train", **SMALL_SUITE)
    env = PixelVQAEnv(tasks=suite)
    maker = ExampleMaker(env, np.random.default_rng(0))
    task = suite[0]
    made = maker.examples(task, {"ground": 2, "look": 1, "glyph": 1, "name": 1, "match": 1})
    others = min(OTHER_GLYPHS, len(task.annotations["tags"]) - 1)  # windows of other tags follow the target's
    assert len(made) == 6 + others
    width, height = task.annotations["image_size"]
    match, *made = made  # the text-only example first: it needs no reset
    for chat in made[:2]:
        question, answer = chat[1]["content"][1]["text"], chat[2]["content"][0]["text"]
        color = question.split("the ")[1].split(" tag")[0]
        tag = next(t for t in task.annotations["tags"] if t["color"] == color)
        box = json.loads(answer)
        x1, y1, x2, y2 = np.asarray(tag["box"]) / [width, height, width, height]
        assert box[0] <= (x1 + x2) / 2 <= box[2] and box[1] <= (y1 + y2) / 2 <= box[3]  # the cell of its centre
        assert box[0] - 0.1 <= x1 and box[1] - 0.1 <= y1 and box[2] + 0.1 >= x2 and box[3] + 0.1 >= y2  # padded
        assert max(box) < 1 and {round(box[2] - box[0], 6), round(box[3] - box[1], 6)} <= {0.1, 0.09}  # 0.99 top
    obs, _ = env.reset(options={"task": task})
    assert np.array_equal(made[0][1]["content"][0]["image"], obs["images"][0])
    look, glyph, *other_windows, name = made[2:]
    symbols = {t["symbol"] for t in task.annotations["tags"]}
    assert len(other_windows) == others and all(w[2]["content"][0]["text"] in symbols for w in other_windows)
    assert all(w[1]["content"][0]["image"].shape == (56, 56, 3) for w in other_windows)
    assert [m["role"] for m in look] == [m["role"] for m in obs["messages"]] + ["assistant"]
    assert look[0]["content"][0]["text"] == obs["messages"][0]["content"][0]["text"]  # the tool schemas
    assert look[1]["content"][-1]["text"] == obs["messages"][1]["content"][-1]["text"]  # question + guidelines
    assert "<tool_call>" in look[-1]["content"][0]["text"]
    assert pointed_box(look) == pytest.approx(target_region(task, (width, height)))  # the pointer sees the target
    assert np.array_equal(look[1]["content"][0]["image"], obs["images"][0])
    target = task.annotations["tags"][task.annotations["targets"][0]]
    window = glyph[1]["content"][0]["image"]
    assert window.shape == (56, 56, 3) and glyph[2]["content"][0]["text"] == target["symbol"]
    frame = np.array(FRAME_COLORS[target["color"]])
    assert (np.abs(window.astype(int) - frame).sum(-1) < 60).sum() >= 20  # the tag's coloured frame is in it
    assert name[1]["content"][1]["text"] == f"Which symbol is printed on the {target['color']} tag?"
    assert name[2]["content"][0]["text"] == target["symbol"] and name[1]["content"][0]["image"].shape[0] > 100
    crop = name[1]["content"][0]["image"]  # the pointer of a name example is the tag's box in the crop
    x1, y1, x2, y2 = (np.asarray(pointed_box(name)) * ([crop.shape[1], crop.shape[0]] * 2)).astype(int)
    assert 0 <= x1 < x2 <= crop.shape[1] and 0 <= y1 < y2 <= crop.shape[0]
    assert (np.abs(crop[y1:y2, x1:x2].astype(int) - frame).sum(-1) < 60).mean() > 0.3  # the tag's frame fills it
    assert [part["type"] for part in match[1]["content"]] == ["text"]
    assert match[2]["content"][0]["text"].endswith(f"\\boxed{{{task.answers[0]}}}.")
    assert f"The tag shows {target['symbol']}." in match[1]["content"][0]["text"]


def test_text_only_examples_draw_no_image() -> None:
    """Match examples alone need no rendering: the env is never reset (a reset draws the image)."""
    suite = make_suite("fine_detail", size=1, seed=5, split="train", **SMALL_SUITE)
    env = PixelVQAEnv(tasks=suite)
    made = ExampleMaker(env, np.random.default_rng(0)).examples(suite[0], {"match": 3, "ground": 0})
    assert len(made) == 3 and all(part["type"] == "text" for chat in made for part in chat[1]["content"])
    assert env.episode is None


def test_example_stream_draws_every_kind() -> None:
    stream = example_stream(PretrainConfig(suite_kwargs=SMALL_SUITE))
    answers = [next(stream)[2]["content"][0]["text"] for _ in range(40)]
    assert any(a.startswith("[") for a in answers)
    assert any("<tool_call>" in a for a in answers)
    assert any(a.startswith("Now I can see") for a in answers)
    assert any(len(a) == 1 for a in answers)


def test_grayed_keeps_sizes_and_text() -> None:
    chat = next(c for c in example_stream(PretrainConfig(suite_kwargs=SMALL_SUITE)) if len(c[1]["content"]) == 2)
    gray = grayed(chat)
    image = gray[1]["content"][0]["image"]
    assert image.shape == chat[1]["content"][0]["image"].shape and np.all(image == 128)
    assert gray[2] == chat[2]


def test_looking_metrics_on_real_episodes() -> None:
    suite = make_suite("fine_detail", size=2, seed=1, split="test", **SMALL_SUITE)
    env = PixelVQAEnv(tasks=suite)
    task = suite[0]
    width, height = task.annotations["image_size"]
    target = task.target_boxes[0].normalized(width, height)
    env.reset(options={"task": task})
    env.step(crop_call(target, decimals=1))
    assert first_crop_hits(env.unwrapped._require_episode())
    env.reset(options={"task": task})
    env.step(crop_call((0.0, 0.0, 0.9, 0.9), decimals=1))  # contains the target only by covering most of the image
    assert not first_crop_hits(env.unwrapped._require_episode())
    env.reset(options={"task": task})
    obs, *_ = env.step(disable_tool_calls(crop_call(target, decimals=1)))
    assert "error" in obs["messages"][-1]["content"][-1]["text"].lower()
    assert not first_crop_hits(env.unwrapped._require_episode())
    assert blind_accuracy(suite) == pytest.approx(np.mean([1 / len(t.choices) for t in suite]))


def test_pretrain_command_builds_a_loadable_base(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "base"
    main(["--out", str(out), "--steps", "2", "--vision-steps", "3", "--batch-size", "2", "--log-every", "1",
          "--threads", "1", "--with-blind-control"])
    for folder in (out, out / "blind_control"):
        log = [json.loads(line) for line in (folder / "pretrain_log.jsonl").read_text().splitlines()]
        assert [r["step"] for r in log] == [1, 2]
        assert all(math.isfinite(r["loss"]) and "loss_coordinate" in r and "loss_answer" in r for r in log)
        assert all(math.isfinite(r["loss_pointer"]) and math.isfinite(r["loss_answer_position"]) for r in log)
    assert json.loads((out / "blind_control" / "pretrain_config.json").read_text())["blind"] is True
    vision = [json.loads(line) for line in (out / "vision_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in vision] == [1, 2, 3]
    assert all(math.isfinite(r[key]) for r in vision for key in ("loss_symbol", "loss_colour", "loss_tower_position"))
    assert not (out / "blind_control" / "vision_log.jsonl").exists()  # gray windows teach the tower nothing
    assert (out / "pretrain_curve.png").stat().st_size > 10_000
    model = AutoModelForImageTextToText.from_pretrained(out)
    assert 3e6 < sum(p.numel() for p in model.parameters()) < 5e6
    assert "saved the pretrained base" in capsys.readouterr().out


def test_the_main_jobs_tiny_model_is_the_pretrained_base_built_once(tmp_path: Path) -> None:
    base = ensure_pretrained_base(tmp_path, seed=0, steps=1, vision_steps=1)
    assert (base / "pretrain_log.jsonl").is_file()
    assert json.loads((base / "pretrain_config.json").read_text())["steps"] == 1
    stamp = (base / "model.safetensors").stat().st_mtime_ns
    assert ensure_pretrained_base(tmp_path, seed=0, steps=1, vision_steps=1) == base
    assert (base / "model.safetensors").stat().st_mtime_ns == stamp  # reused, not rebuilt
    assert not list(tmp_path.glob(".building-*"))
    assert resolve_model("Qwen/Qwen2.5-VL-7B-Instruct", tmp_path) == "Qwen/Qwen2.5-VL-7B-Instruct"
    assert (Path(resolve_model("tiny-random", tmp_path)) / "config.json").is_file()


def test_tiny_is_one_base_for_every_seed(tmp_path: Path) -> None:
    if (COMMITTED_BASE / "config.json").is_file():
        assert resolve_model("tiny", tmp_path, seed=0) == resolve_model("tiny", tmp_path, seed=3) == COMMITTED_BASE
        assert (COMMITTED_BASE / "model.safetensors").stat().st_size < 20e6
    else:  # the short on-the-fly base (here a 1-step stand-in in its cache slot), shared by the seeds
        built = ensure_pretrained_base(tmp_path, seed=0, steps=1, vision_steps=1)
        real_name = f"vision{MAIN_JOB_VISION_STEPS}-steps{MAIN_JOB_STEPS}"
        slot = built.with_name(built.name.replace("vision1-steps1", real_name))
        built.rename(slot)
        assert resolve_model("tiny", tmp_path, seed=3) == resolve_model("tiny", tmp_path, seed=0) == slot


def test_the_readme_pretraining_commands_run(tmp_path: Path) -> None:
    """The README's `python -m rl_runner.pretrain ...` lines verbatim and in order (a later one may `--init` from an
    earlier one's `--out`), at a two-step budget and into a temporary folder."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    lines = [line.strip() for line in readme.splitlines() if line.strip().startswith("python -m rl_runner.pretrain ")]
    assert lines
    built: dict[str, str] = {}
    for line in lines:
        argv = shlex.split(line)[3:]
        out = argv[argv.index("--out") + 1]
        argv[argv.index("--out") + 1] = built[out] = str(tmp_path / Path(out).name)
        for flag in ("--init", "--tower"):  # an earlier command's output
            if flag in argv:
                argv[argv.index(flag) + 1] = built[argv[argv.index(flag) + 1]]
        for flag in ("--steps", "--vision-steps"):
            if flag in argv:
                argv[argv.index(flag) + 1] = str(min(int(argv[argv.index(flag) + 1]), 2))
            else:
                argv += [flag, "2"]
        main([*argv, "--batch-size", "2"])
        assert (Path(built[out]) / "model.safetensors").is_file()
        chat_steps = int(argv[argv.index("--steps") + 1])  # 0: a warm-up of the tower alone
        assert len((Path(built[out]) / "pretrain_log.jsonl").read_text().splitlines()) == min(chat_steps, 1)


def test_the_warm_up_flags_reach_the_config(tmp_path: Path) -> None:
    """`--no-colour-warmup` leaves the colour term out of the warm-up (`--no-tower-position` its position term),
    `--position-weight 0` the chats' position loss; `--shift-ramp` reaches the config."""
    out = tmp_path / "base"
    main(["--out", str(out), "--steps", "1", "--vision-steps", "1", "--batch-size", "2", "--threads", "1",
          "--no-colour-warmup", "--no-tower-position", "--no-read-warmup", "--position-weight", "0",
          "--pointer-weight", "0", "--shift-ramp", "0", "1",
          "--kind-counts", '{"ground": 1, "match": 2}', "--look-prompt", "short", "--no-option-pointer"])
    config = json.loads((out / "pretrain_config.json").read_text())
    assert config["colour_warmup"] is False and config["read_warmup"] is False
    assert config["tower_position"] is False and PretrainConfig().tower_position is True
    assert config["position_weight"] == 0 and config["shift_ramp"] == [0, 1]
    assert config["kind_counts"] == {"ground": 1, "match": 2} and config["look_prompt"] == "short"
    assert config["option_pointer"] is False and PretrainConfig().option_pointer is True
    (vision,) = [json.loads(line) for line in (out / "vision_log.jsonl").read_text().splitlines()]
    (chats,) = [json.loads(line) for line in (out / "pretrain_log.jsonl").read_text().splitlines()]
    assert "loss_colour" not in vision and "loss_token_symbol" not in vision
    assert "loss_position" not in chats and "loss_pointer" not in chats


@pytest.mark.parametrize("bad", [{"kind_counts": {"grond": 1}}, {"kind_counts": {"ground": -1}},
                                 {"look_prompt": "long"}])
def test_a_bad_pretraining_config_is_refused_up_front(bad: dict) -> None:
    with pytest.raises(ValueError, match="kind_counts|look_prompt"):
        PretrainConfig(**bad)


def test_the_chats_leave_a_warmed_up_tower_as_it_is(tmp_path: Path) -> None:
    """`--init` continues a base; its tower only trains with `--train-tower`, the decoder always."""
    main(["--out", str(tmp_path / "base"), "--steps", "1", "--vision-steps", "1", "--batch-size", "2",
          "--threads", "1"])
    weights = {}
    for name, flags in (("frozen", []), ("trained", ["--train-tower"])):
        main(["--init", str(tmp_path / "base"), "--out", str(tmp_path / name), "--steps", "2", "--vision-steps", "0",
              "--batch-size", "2", "--threads", "1", *flags])
        weights[name] = AutoModelForImageTextToText.from_pretrained(tmp_path / name).state_dict()
    start = AutoModelForImageTextToText.from_pretrained(tmp_path / "base").state_dict()
    tower = [key for key in start if ".visual." in f".{key}"]
    decoder = [key for key in start if "language_model" in key and "layers.0." in key]
    assert tower and decoder
    assert all(torch.equal(start[key], weights["frozen"][key]) for key in tower)
    assert not all(torch.equal(start[key], weights["trained"][key]) for key in tower)
    assert not all(torch.equal(start[key], weights["frozen"][key]) for key in decoder)


def test_a_grafted_tower_joins_the_decoder_of_another_base(tmp_path: Path) -> None:
    """`--init A --tower B`: the decoder continues A's, the tower is B's (and stays B's, frozen in the chats). B
    here is A's tower warmed up alone (`--steps 0`), with `--read-warmup`'s per-token symbols of tag sheets."""
    from agents.tiny import BASE_SHAPE, build_tiny_model

    build_tiny_model(tmp_path / "decoder", seed=1, shape=BASE_SHAPE)
    main(["--init", str(tmp_path / "decoder"), "--out", str(tmp_path / "tower"), "--steps", "0", "--vision-steps",
          "1", "--batch-size", "2", "--threads", "1", "--no-colour-warmup", "--read-warmup"])
    main(["--init", str(tmp_path / "decoder"), "--tower", str(tmp_path / "tower"), "--out", str(tmp_path / "both"),
          "--steps", "1", "--vision-steps", "0", "--batch-size", "2", "--threads", "1"])
    states = {name: AutoModelForImageTextToText.from_pretrained(tmp_path / name).state_dict()
              for name in ("decoder", "tower", "both")}
    tower = [key for key in states["both"] if ".visual." in f".{key}"]
    assert not all(torch.equal(states["decoder"][key], states["tower"][key]) for key in tower)  # warmed: moved
    assert all(torch.equal(states["both"][key], states["tower"][key]) for key in tower)
    assert json.loads((tmp_path / "both" / "pretrain_config.json").read_text())["tower"] == str(tmp_path / "tower")
    (warmed,) = [json.loads(line) for line in (tmp_path / "tower" / "vision_log.jsonl").read_text().splitlines()]
    assert "loss_token_symbol" in warmed and 0 <= warmed["token_symbol_accuracy"] <= 1
