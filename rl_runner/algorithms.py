"""The RL update: group rewards -> advantages -> clipped policy loss, with verl's own `core_algos`.

GRPO (default): outcome advantage per group (`compute_grpo_outcome_advantage`, without std division as in the
paper). PPO: a linear value head on the policy's last hidden state, GAE (`compute_gae_advantage_return`) and the
clipped value loss (`compute_value_loss`). Both use the `vanilla` clipped policy loss with the paper's asymmetric
clip (0.2 / 0.35), token-mean aggregation over assistant tokens only, and an optional KL term to a frozen
reference policy (`kl_penalty`, low-variance estimator).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from transformers import PreTrainedModel, ProcessorMixin
from verl.trainer.ppo import core_algos
from verl.workers.config.actor import ActorConfig

from rl_runner.config import TrainConfig
from rl_runner.conversation import EncodedConversation, batch_conversations, encode_conversation


@dataclass
class Batch:
    """Encoded episodes with their scalar rewards and group ids."""

    conversations: list[EncodedConversation]
    rewards: list[float]
    groups: list[str]


def keep_informative_groups(rewards: Sequence[float], groups: Sequence[str], threshold: float = 0.0) -> list[int]:
    """Indices of episodes whose group has at least two different rewards (others teach nothing) and a mean
    absolute deviation from the group mean, mean |r - mean|, of at least `threshold` (the paper drops groups
    under 0.01)."""
    by_group: dict[str, list[float]] = {}
    for reward, group in zip(rewards, groups):
        by_group.setdefault(group, []).append(reward)
    keep = set()
    for group, values in by_group.items():
        mean = float(np.mean(values))
        deviation = float(np.mean([abs(value - mean) for value in values]))
        if len({round(value, 6) for value in values}) > 1 and deviation >= threshold:
            keep.add(group)
    return [i for i, group in enumerate(groups) if group in keep]


def outcome_token_rewards(rewards: Sequence[float], mask: torch.Tensor) -> torch.Tensor:
    """[B, L] token rewards: each episode's reward on its last assistant token."""
    token_rewards = torch.zeros(mask.shape, dtype=torch.float32)
    positions = torch.arange(mask.shape[1]).expand_as(mask)
    last = torch.where(mask, positions, torch.full_like(positions, -1)).max(dim=1).values
    for row, (reward, index) in enumerate(zip(rewards, last.tolist())):
        if index >= 0:
            token_rewards[row, index] = reward
    return token_rewards


def grpo_episode_advantages(rewards: Sequence[float], groups: Sequence[str], norm_by_std: bool) -> torch.Tensor:
    """[B] GRPO outcome advantage of each episode (verl's estimator on one reward token per episode)."""
    scores = torch.tensor(rewards, dtype=torch.float32).unsqueeze(-1)
    advantages, _ = core_algos.compute_grpo_outcome_advantage(
        scores, torch.ones_like(scores), np.array(groups, dtype=object), norm_adv_by_std_in_grpo=norm_by_std
    )
    return advantages[:, 0]


def grpo_advantages(
    rewards: Sequence[float], groups: Sequence[str], mask: torch.Tensor, norm_by_std: bool
) -> torch.Tensor:
    """[B, L] advantages: each episode's GRPO advantage on its assistant tokens."""
    return grpo_episode_advantages(rewards, groups, norm_by_std)[:, None] * mask.float()


class ValueHead(nn.Module):
    """PPO critic: a scalar value per token from the policy's last hidden state."""

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.linear = nn.Linear(hidden_size, 1)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.linear(hidden.float()).squeeze(-1)


def forward_logprobs(
    model: PreTrainedModel, inputs: dict[str, torch.Tensor], value_head: ValueHead | None = None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-token log-probs of the input ids ([B, L], position 0 gets 0) and, with a value head, values."""
    output = model(**inputs, use_cache=False, output_hidden_states=value_head is not None)
    values = value_head(output.hidden_states[-1]) if value_head is not None else None
    return token_logprobs(output.logits, inputs["input_ids"]), values


def token_logprobs(logits: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
    """Log-probs of `input_ids` ([B, L], position 0 gets 0) under next-token `logits` [B, L, V]."""
    logits = logits[:, :-1].float()
    targets = input_ids[:, 1:]
    chosen = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - logits.logsumexp(-1)
    return nn.functional.pad(chosen, (1, 0))


def masked_mean_nll(logprobs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean negative log-likelihood over the tokens `mask` marks (0 when it marks none)."""
    return -(logprobs * mask).sum() / mask.sum().clamp(min=1)


def trained_parameters(model: torch.nn.Module, train_tower: bool) -> list[torch.nn.Parameter]:
    """The parameters an optimizer should train: all of them, or all but the vision tower's (`model.model.visual`,
    left as pretrained and frozen, as Qwen2.5-VL's own fine-tuning recipe does by default)."""
    tower = getattr(getattr(model, "model", None), "visual", None)
    if tower is not None and not train_tower:
        tower.requires_grad_(False)
    return [p for p in model.parameters() if p.requires_grad]


def clipped_update(optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> None:
    """One optimizer step on `loss`, the gradient of everything `optimizer` trains (a model, and heads beside it
    such as pretraining's position head) clipped to norm 1 together (SFT, pretraining and the probes)."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_([p for group in optimizer.param_groups for p in group["params"]], 1.0)
    optimizer.step()


class PolicyTrainer:
    """Owns the optimizer(s) and applies one RL update per batch of episodes."""

    def __init__(
        self,
        model: PreTrainedModel,
        processor: ProcessorMixin,
        config: TrainConfig,
        reference: PreTrainedModel | None = None,
    ) -> None:
        self.model, self.processor, self.config, self.reference = model, processor, config, reference
        self.device = next(model.parameters()).device
        self.optimizer = torch.optim.AdamW(trained_parameters(model, config.train_vision_tower), lr=config.rl_lr)
        self.value_head: ValueHead | None = None
        self.value_optimizer: torch.optim.Optimizer | None = None
        if config.algorithm == "ppo":
            self.value_head = ValueHead(model.config.get_text_config().hidden_size).to(self.device)
            self.value_optimizer = torch.optim.AdamW(self.value_head.parameters(), lr=config.value_lr)
        self.actor_config = ActorConfig(
            strategy="fsdp",
            rollout_n=config.group_size,
            ppo_mini_batch_size=config.tasks_per_step,
            ppo_micro_batch_size_per_gpu=config.micro_batch_size,
            clip_ratio=config.clip_ratio_low,
            clip_ratio_low=config.clip_ratio_low,
            clip_ratio_high=config.clip_ratio_high,
            loss_agg_mode="token-mean",
        )
        self.policy_loss = core_algos.get_policy_loss_fn("vanilla")

    def encode(self, messages: Sequence[list[dict[str, Any]]]) -> list[EncodedConversation]:
        return [encode_conversation(self.processor, m) for m in messages]

    def update(self, batch: Batch) -> dict[str, float]:
        """One RL update on `batch`; returns loss metrics. Empty after group filtering -> no update."""
        keep = list(range(len(batch.rewards)))
        if self.config.filter_uniform_groups:
            keep = keep_informative_groups(batch.rewards, batch.groups, self.config.group_filter_threshold)
        if not keep:
            return {"updated_episodes": 0.0}
        micro = self._micro_batches(
            [batch.conversations[i] for i in keep], [batch.rewards[i] for i in keep], [batch.groups[i] for i in keep]
        )
        total_tokens = int(sum(m["mask"].sum() for m in micro))
        self.actor_config.global_batch_info["batch_num_tokens"] = total_tokens
        self.actor_config.global_batch_info["dp_size"] = 1
        metrics: dict[str, list[float]] = {}
        self.model.train()
        for _ in range(self.config.ppo_epochs):
            self.optimizer.zero_grad(set_to_none=True)
            if self.value_optimizer:
                self.value_optimizer.zero_grad(set_to_none=True)
            for part in micro:
                for key, value in self._micro_step(part, total_tokens).items():
                    metrics.setdefault(key, []).append(value)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
            self.optimizer.step()
            if self.value_optimizer:
                self.value_optimizer.step()
        self.model.eval()
        summary = {key: float(np.mean(values)) for key, values in metrics.items()}
        summary["updated_episodes"] = float(len(keep))
        return summary

    def _micro_batches(
        self, conversations: list[EncodedConversation], rewards: list[float], groups: list[str]
    ) -> list[dict[str, Any]]:
        """Split into micro-batches with advantages and old log-probs computed once, before any update."""
        size = self.config.micro_batch_size
        pad = self.processor.tokenizer.pad_token_id or 0
        parts = []
        episode_advantages = (
            grpo_episode_advantages(rewards, groups, self.config.norm_adv_by_std)
            if self.config.algorithm == "grpo"
            else None
        )
        for start in range(0, len(conversations), size):
            chunk = conversations[start : start + size]
            inputs, mask = batch_conversations(chunk, pad)
            inputs = {key: value.to(self.device) for key, value in inputs.items()}
            with torch.no_grad():
                old, values = forward_logprobs(self.model, inputs, self.value_head)
                ref = forward_logprobs(self.reference, inputs)[0] if self.reference is not None else None
            returns = None
            if episode_advantages is not None:
                advantages = episode_advantages[start : start + size, None] * mask.float()
            else:  # PPO: GAE over the value head's estimates (gamma = lambda = 1, outcome reward)
                token_rewards = outcome_token_rewards(rewards[start : start + size], mask)
                advantages, returns = core_algos.compute_gae_advantage_return(
                    token_rewards, values.detach().cpu(), mask.float(), torch.tensor(1.0), torch.tensor(1.0)
                )
                returns = returns.to(self.device)
            mask = mask.to(self.device)
            parts.append(
                {
                    "inputs": inputs,
                    "mask": mask,
                    "old": old,
                    "ref": ref,
                    "values": values,
                    "advantages": advantages.to(self.device),
                    "returns": returns,
                }
            )
        return parts

    def _micro_step(self, part: dict[str, Any], total_tokens: int) -> dict[str, float]:
        logprobs, values = forward_logprobs(self.model, part["inputs"], self.value_head)
        mask = part["mask"].float()
        loss, policy_metrics = self.policy_loss(
            part["old"], logprobs, part["advantages"], mask, "token-mean", self.actor_config
        )
        metrics = {
            "pg_loss": float(loss.detach()),
            "pg_clipfrac": policy_metrics["actor/pg_clipfrac"],
            "ppo_kl": policy_metrics["actor/ppo_kl"],
        }
        if part["ref"] is not None and self.config.kl_coef > 0:
            kl = core_algos.kl_penalty(logprobs, part["ref"], "low_var_kl")
            kl_loss = (kl * mask).sum() / total_tokens
            loss = loss + self.config.kl_coef * kl_loss
            metrics["kl"] = float(kl_loss.detach())
        if self.value_head is not None:
            value_loss, _ = core_algos.compute_value_loss(
                values, part["returns"], part["values"], mask, cliprange_value=0.5, batch_num_tokens=total_tokens
            )
            loss = loss + value_loss
            metrics["value_loss"] = float(value_loss.detach())
        loss.backward()
        return metrics

    def state_dict(self) -> dict[str, Any]:
        state = {"optimizer": self.optimizer.state_dict()}
        if self.value_head is not None and self.value_optimizer is not None:
            state.update(value_head=self.value_head.state_dict(), value_optimizer=self.value_optimizer.state_dict())
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        if self.value_head is not None and self.value_optimizer is not None:
            self.value_head.load_state_dict(state["value_head"])
            self.value_optimizer.load_state_dict(state["value_optimizer"])
