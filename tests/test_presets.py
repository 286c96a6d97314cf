"""`--preset pixel_reasoner`: the paper's sampling reaches the config, the sampler and its per-turn temperature."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from agents.vlm import VLMAgent
from rl_runner.config import TrainConfig, load_config
from rl_runner.presets import PRESETS, preset_values
from rl_runner.train import rollout_agent

FIRST = [{"role": "user", "content": [{"type": "text", "text": "What is shown?"}]}]
LATER = [*FIRST, {"role": "assistant", "content": [{"type": "text", "text": "Let me look."}]},
         {"role": "user", "content": [{"type": "text", "text": "Go on."}]}]


def test_preset_fields_are_config_fields() -> None:
    fields = {item.name for item in dataclasses.fields(TrainConfig)}
    for name, values in PRESETS.items():
        assert set(values) <= fields, name
    with pytest.raises(ValueError, match="unknown preset 'nope'; available: pixel_reasoner"):
        preset_values("nope")


def test_preset_values_then_yaml_then_flags(tmp_path: Path) -> None:
    config = load_config(["--preset", "pixel_reasoner"])
    assert (config.temperature, config.later_temperature, config.top_p, config.top_k) == (1.0, 0.9, 0.95, 40)
    assert (config.group_size, config.group_filter_threshold, config.curiosity_form) == (8, 0.01, "paper")
    assert config.norm_adv_by_std is False and config.kl_coef == 0.0
    assert (config.clip_ratio_low, config.clip_ratio_high) == (0.2, 0.35)
    assert TrainConfig().top_k == 0 and TrainConfig().group_filter_threshold == 0.0  # no preset: no change
    yaml_file = tmp_path / "c.yaml"
    yaml_file.write_text("top_k: 20\ngroup_size: 4\n")
    config = load_config(["--preset", "pixel_reasoner", "--config", str(yaml_file), "--group-size", "6"])
    assert (config.top_k, config.group_size, config.top_p) == (20, 6, 0.95)  # YAML over preset, flag over both
    with pytest.raises(SystemExit):  # argparse names the choices
        load_config(["--preset", "nope"])
    with pytest.raises(ValueError, match="later_temperature must be -1"):
        load_config(["--later-temperature", "-0.5"])
    with pytest.raises(ValueError, match="top_p must be in"):
        load_config(["--top-p", "1.5"])


def test_preset_sampling_reaches_the_sampler(tiny_model_path: Path) -> None:
    config = load_config(["--preset", "pixel_reasoner", "--max-new-tokens", "3"])
    agent = rollout_agent(tiny_model_path, None, config, torch.device("cpu"))
    assert agent.turn_temperature(FIRST) == 1.0 and agent.turn_temperature(LATER) == 0.9
    kwargs = agent._generation_kwargs(agent.turn_temperature(LATER))
    assert (kwargs["do_sample"], kwargs["temperature"], kwargs["top_p"], kwargs["top_k"]) == (True, 0.9, 0.95, 40)
    assert kwargs["max_new_tokens"] == 3
    default = rollout_agent(agent.model, agent.processor, TrainConfig(), torch.device("cpu"))
    assert default.turn_temperature(LATER) == 1.0 and default._generation_kwargs(1.0)["top_k"] == 0


def test_turns_of_different_temperatures_keep_their_order(tiny_model_path: Path) -> None:
    greedy = VLMAgent(tiny_model_path, max_new_tokens=4, temperature=0.0, device="cpu")
    expected = greedy.act_batch([FIRST])[0].text
    mixed = VLMAgent(greedy.model, greedy.processor, max_new_tokens=4, temperature=0.0, later_temperature=1.0,
                     device="cpu")
    turns = mixed.act_batch([LATER, FIRST, LATER])  # generated as two batches, returned in input order
    assert len(turns) == 3 and turns[1].text == expected
    assert turns[0].prompt_ids == turns[2].prompt_ids != turns[1].prompt_ids
