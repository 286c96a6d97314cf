"""`VerlSettings`: what a verl run needs beyond `TrainConfig` (cluster shape, rollout engine, lengths, agent)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from rl_runner.verl_backend.agent_loop import AGENT_NAME
from rl_runner.verl_backend.data import TOOL_AGENT

ROLLOUT_ENGINES = ("vllm", "sglang")


@dataclass(frozen=True)
class VerlSettings:
    nnodes: int = 1
    gpus_per_node: int = 8
    rollout_engine: str = "vllm"
    tensor_parallel_size: int = 1  # rollout engine TP per replica (Qwen2.5-VL-7B fits one H100)
    gpu_memory_utilization: float = 0.6  # rollout engine share of each GPU (it sleeps while the actor trains)
    prompt_length: int = 4096  # system prompt + question + the original views
    response_length: int = 8192  # every model turn and every tool result (crops included) of an episode
    agent: str = AGENT_NAME  # "pixel_gym_agent" (the env drives the episode) or verl's "tool_agent"
    dry_run: bool = False  # write and validate everything, print the commands, launch nothing
    extra_overrides: tuple[str, ...] = ()  # hydra overrides appended to the trainer command line

    def __post_init__(self) -> None:
        if self.rollout_engine not in ROLLOUT_ENGINES:
            raise ValueError(f"rollout_engine must be one of {ROLLOUT_ENGINES}, got {self.rollout_engine!r}")
        if self.agent not in (AGENT_NAME, TOOL_AGENT):
            raise ValueError(f"agent must be {AGENT_NAME!r} or {TOOL_AGENT!r}, got {self.agent!r}")
        for name in ("nnodes", "gpus_per_node", "tensor_parallel_size", "prompt_length", "response_length"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")

    @classmethod
    def from_config(cls, config: Any) -> VerlSettings:
        """Settings from the same-named attributes of a `TrainConfig` where it has them, else the defaults."""
        values = {f.name: getattr(config, f.name) for f in dataclasses.fields(cls) if hasattr(config, f.name)}
        if "extra_overrides" in values:
            values["extra_overrides"] = tuple(values["extra_overrides"])
        return cls(**values)
