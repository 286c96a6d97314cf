"""RL maths on hand-made groups, and one real update of the tiny model (GRPO and PPO)."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForImageTextToText

from agents.chat import load_processor
from pixel_gym.reward import CuriosityConfig
from rl_runner.algorithms import (
    Batch,
    PolicyTrainer,
    clipped_update,
    grpo_advantages,
    keep_informative_groups,
    outcome_token_rewards,
)
from rl_runner.config import TrainConfig, load_config
from rl_runner.rollout import EpisodeRecord
from rl_runner.sft import masked_nll
from rl_runner.train import shape_rewards


def test_outcome_reward_sits_on_the_last_assistant_token() -> None:
    mask = torch.tensor([[0, 1, 1, 0, 1, 0], [0, 0, 0, 0, 0, 0]], dtype=torch.bool)
    rewards = outcome_token_rewards([2.0, 5.0], mask)
    assert rewards.tolist() == [[0, 0, 0, 0, 2.0, 0], [0] * 6]


def test_grpo_advantage_is_reward_minus_group_mean_on_masked_tokens() -> None:
    mask = torch.ones((4, 3), dtype=torch.bool)
    mask[1, 0] = False
    advantages = grpo_advantages([1.0, 0.0, 1.5, 0.5], ["a", "a", "b", "b"], mask, norm_by_std=False)
    assert advantages.shape == (4, 3)
    assert advantages[:, -1].tolist() == pytest.approx([0.5, -0.5, 0.5, -0.5])
    assert advantages[1, 0] == 0.0  # masked token
    normalized = grpo_advantages([1.0, 0.0, 1.5, 0.5], ["a", "a", "b", "b"], mask, norm_by_std=True)
    assert normalized[0, -1] == pytest.approx(0.5 / (2**0.5 / 2), rel=1e-4)


def test_uniform_groups_are_filtered() -> None:
    assert keep_informative_groups([1, 1, 0, 1, 0.5, 0.5], ["a", "a", "b", "b", "c", "c"]) == [2, 3]


def test_group_filter_threshold_on_mean_absolute_deviation() -> None:
    rewards = [0.02, 0, 0, 0, 1, 0, 0, 0, 0.04, 0.0, 0.01, 0.0, 0.3, 0.3]
    groups = [*"aaaa", *"bbbb", *"cc", *"dd", *"ee"]
    # mean |r - mean|: a (mean 0.005) 0.0075; b (mean 0.25) 0.375; c 0.02; d 0.005; e 0 (all equal)
    assert keep_informative_groups(rewards, groups, threshold=0.01) == [4, 5, 6, 7, 8, 9]  # b and c
    assert keep_informative_groups(rewards, groups) == list(range(12))  # threshold 0: only e goes


def record(group: str, correctness: float, ops: int) -> EpisodeRecord:
    return EpisodeRecord("t", group, [], correctness, ops, ops, 0, False, False, 1, True, 5)


def test_trainer_shapes_each_group_with_its_own_rapr() -> None:
    config = TrainConfig()
    episodes = [record("g1", 1, 1)] + [record("g1", 0, 0)] * 3 + [record("g2", 1, 2), record("g2", 1, 1)]
    totals = [round(p.total, 3) for p in shape_rewards(episodes, config)]
    # g1: RaPR 0.25 -> the caller gets the hinge 0.5 * (0.3 - 0.25) = 0.025; g2: RaPR 1.0 -> no bonus, 2 calls pay 0.05
    assert totals == [1.025, 0, 0, 0, 0.95, 1.0]
    config.curiosity_alpha = 0.0
    assert [p.total for p in shape_rewards(episodes[:2], config)] == [1.0, 0.0]
    assert config.curiosity == CuriosityConfig(alpha=0.0)


@pytest.mark.parametrize("algorithm", ["grpo", "ppo"])
def test_one_update_moves_the_policy_towards_rewarded_turns(algorithm: str, tiny_model_path) -> None:
    torch.manual_seed(0)
    model = AutoModelForImageTextToText.from_pretrained(tiny_model_path, dtype=torch.float32).eval()
    processor = load_processor(tiny_model_path)
    config = TrainConfig(algorithm=algorithm, rl_lr=5e-3, micro_batch_size=2, kl_coef=0.0)
    reference = AutoModelForImageTextToText.from_pretrained(tiny_model_path, dtype=torch.float32).eval()
    trainer = PolicyTrainer(model, processor, config, reference if algorithm == "grpo" else None)
    question = {"role": "user", "content": [{"type": "text", "text": "What is shown?"}]}
    good = [question, {"role": "assistant", "content": [{"type": "text", "text": "\\boxed{B}"}]}]
    bad = [question, {"role": "assistant", "content": [{"type": "text", "text": "\\boxed{C}"}]}]
    conversations = trainer.encode([good, bad, good, bad])
    batch = Batch(conversations, [1.0, 0.0, 1.0, 0.0], ["q", "q", "q", "q"])

    def margin() -> float:
        with torch.no_grad():
            return float(masked_nll(model, conversations[1:2], 0)[-1] - masked_nll(model, conversations[:1], 0)[-1])

    before = margin()
    for _ in range(3):
        metrics = trainer.update(batch)
    assert margin() > before + 0.05
    assert metrics["updated_episodes"] == 4.0 and "pg_loss" in metrics
    if algorithm == "ppo":
        assert "value_loss" in metrics
    assert trainer.update(Batch(conversations, [1.0] * 4, ["q"] * 4)) == {"updated_episodes": 0.0}


def test_the_preset_threshold_reaches_the_update(tiny_model_path) -> None:
    model = AutoModelForImageTextToText.from_pretrained(tiny_model_path, dtype=torch.float32).eval()
    processor = load_processor(tiny_model_path)
    question = {"role": "user", "content": [{"type": "text", "text": "What is shown?"}]}
    chat = [question, {"role": "assistant", "content": [{"type": "text", "text": "\\boxed{B}"}]}]
    preset = load_config(["--preset", "pixel_reasoner"])
    trainer = PolicyTrainer(model, processor, preset)
    conversations = trainer.encode([chat] * 4)
    # a lone tool caller's hinge bonus 0.025 in a wrong group: mean |r - mean| 0.009375 < 0.01 -> dropped
    batch = Batch(conversations, [0.025, 0.0, 0.0, 0.0], ["q"] * 4)
    assert trainer.update(batch) == {"updated_episodes": 0.0}
    assert PolicyTrainer(model, processor, TrainConfig()).update(batch)["updated_episodes"] == 4.0


def test_clipped_update_clips_every_trained_parameter_together() -> None:
    """A model and a head beside it in one optimizer: their joint gradient norm is cut to 1 (before, only the
    model's own parameters were clipped and a head's gradient went through whole)."""
    torch.manual_seed(0)
    model, head = torch.nn.Linear(4, 4), torch.nn.Linear(4, 1)
    optimizer = torch.optim.SGD([*model.parameters(), *head.parameters()], lr=0.0)
    clipped_update(optimizer, 1000 * head(model(torch.ones(2, 4))).sum())
    grads = [p.grad for p in [*model.parameters(), *head.parameters()]]
    assert torch.linalg.vector_norm(torch.cat([g.reshape(-1) for g in grads])) == pytest.approx(1.0, rel=1e-4)
    assert head.weight.grad.abs().sum() > 0.1
