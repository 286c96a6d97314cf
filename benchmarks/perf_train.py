"""Local trainer RL step with the tiny model: where the time goes, rollout tokens/s against bare generate, memory.

`python -m benchmarks.perf_train [--quick] [--out PATH] [--threads N]` runs `rl_runner.train.Trainer._rl_step`
(`rl_runner.rollout.run_episodes` with `agents.vlm.VLMAgent`, then `PolicyTrainer.encode` / `update`) on the tiny
random-weight Qwen2.5-VL (`agents.tiny.ensure_tiny_model`) and the fine-detail suite. For the run only, the functions
doing each part are wrapped with timers (nothing in the trainer changes); each timed step splits into disjoint parts
that add up to its wall time:
- generation: the model's `generate` as the agent calls it (its kwargs: logits output, suppressed placeholders),
- processor: `agents.vlm.messages_to_model_inputs` (chat template, tokenization, image preprocessing),
- agent_other: the rest of `VLMAgent.act_batch` (batching, chosen-token log-probs, detokenization),
- env: `PixelVQAEnv.reset` / `step`,
- update: `PolicyTrainer.encode` + `update` (conversation encoding, forward/backward, optimizer step),
- other: the rest (task sampling, reward shaping, the rollout loop).
After each step, every batch the agent generated is generated again by a bare `model.generate` (the same inputs,
max_new_tokens, sampling settings, stop ids and torch RNG state; no logits output, no suppressed tokens), so rollout
tokens/s (the trainer's `tokens_per_s`: tokens over `act_batch` time) pairs with a baseline measured under the same
machine load; beside it, the same replay with the agent's generate kwargs shows what those kwargs cost
(`bare_over_agent_kwargs`). Replays run on the weights the rollout had (saved before the step, restored after).
Memory is the process's peak resident set (`getrusage`): at the start, after loading the model, after the warm-up
step's rollout and update, and at the end. Prints a table and writes JSON (default
`benchmarks/results/perf_train.json`). Model loading and the warm-up step are not timed.
"""

from __future__ import annotations

import argparse
import platform
import resource
import statistics
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

import agents.vlm
from agents.chat import load_processor
from agents.tiny import ensure_tiny_model
from benchmarks.perf_eval import Timers
from benchmarks.report import report
from pixel_gym.env import PixelVQAEnv
from rl_runner.algorithms import PolicyTrainer
from rl_runner.config import TrainConfig
from rl_runner.train import Trainer, load_model, make_env, rollout_agent

DEFAULT_OUT = Path("benchmarks/results/perf_train.json")
PARTS = ("generation", "processor", "agent_other", "env", "update", "other")
RATIO_TARGET = 1.5  # bare generate tokens/s / rollout tokens/s (issue 9)
BARE_KEYS = ("max_new_tokens", "do_sample", "temperature", "top_p", "top_k", "eos_token_id", "pad_token_id",
             "use_cache", "repetition_penalty")


@dataclass(frozen=True)
class Config:
    steps: int  # timed RL steps (after one untimed warm-up step)
    tasks_per_step: int
    group_size: int
    max_turns: int
    max_new_tokens: int


FULL = Config(steps=2, tasks_per_step=4, group_size=4, max_turns=4, max_new_tokens=128)  # the default run's step
QUICK = Config(steps=1, tasks_per_step=2, group_size=2, max_turns=2, max_new_tokens=16)


@dataclass
class GenerateCall:
    """One batched `generate` call of the agent, kept to replay it bare."""

    inputs: dict[str, torch.Tensor]
    kwargs: dict[str, Any]
    rng_state: torch.Tensor
    tokens: int  # generated tokens in the agent's output (up to and including each row's stop token)


# ------------------------------------------------------------------------------------------------ workload


def train_config(config: Config, threads: int) -> TrainConfig:
    """The default training config with the benchmark's sizes and the random-weight tiny model.

    Uniform groups are not filtered out, so the update runs on every episode as in a step whose groups all carry
    signal (random weights answer everything wrong, and the filter would leave nothing to update)."""
    return TrainConfig(model="tiny-random", threads=threads, tasks_per_step=config.tasks_per_step,
                       group_size=config.group_size, max_turns=config.max_turns,
                       max_new_tokens=config.max_new_tokens, filter_uniform_groups=False).validate()


def build_trainer(config: TrainConfig, model_path: Path) -> Trainer:
    """A `Trainer` set up for `_rl_step` as `_train` sets it up (model, processor, policy trainer), without a run
    folder, SFT or evaluation."""
    trainer = Trainer(config)
    trainer.processor = load_processor(model_path)
    trainer.model = load_model(model_path, trainer.device)
    trainer.trainer = PolicyTrainer(trainer.model, trainer.processor, config)
    return trainer


def generated_tokens(rows: torch.Tensor, stop_ids: Sequence[int]) -> int:
    """Tokens per row up to and including its first stop id (generation pads rows that finished), summed."""
    total = 0
    for row in rows.tolist():
        ends = [index for index, token in enumerate(row) if token in stop_ids]
        total += ends[0] + 1 if ends else len(row)
    return total


@contextmanager
def recording(agent: agents.vlm.VLMAgent, calls: list[GenerateCall]) -> Iterator[None]:
    """Record each `agent.model.generate` call (inputs, kwargs, RNG state before it) into `calls`."""
    model = agent.model
    original = model.generate

    def generate(**kwargs: Any) -> Any:
        rng_state = torch.get_rng_state()
        output = original(**kwargs)
        inputs = {key: value for key, value in kwargs.items() if isinstance(value, torch.Tensor)}
        options = {key: value for key, value in kwargs.items() if key not in inputs}
        width = inputs["input_ids"].shape[1]
        calls.append(GenerateCall(inputs, options, rng_state,
                                  generated_tokens(output.sequences[:, width:], agent.stop_ids)))
        return output

    model.generate = generate
    try:
        yield
    finally:
        model.generate = original


# ---------------------------------------------------------------------------------------------- measurements


def replay(model: Any, calls: Sequence[GenerateCall], stop_ids: Sequence[int], bare_first: bool) -> dict[str, Any]:
    """Replay `calls` with `model.generate`, each twice: with the agent's kwargs, and bare (only the settings that
    decide the tokens); tokens and seconds of each variant. `bare_first` orders the pair (alternated per step)."""
    totals = {name: {"tokens": 0, "seconds": 0.0, "calls": 0, "same_token_count_calls": 0}
              for name in ("bare", "agent_kwargs")}
    variants = {"bare": lambda call: {key: call.kwargs[key] for key in BARE_KEYS if key in call.kwargs},
                "agent_kwargs": lambda call: call.kwargs}
    order = ("bare", "agent_kwargs") if bare_first else ("agent_kwargs", "bare")
    with torch.no_grad():
        for call in calls:
            for name in order:
                torch.set_rng_state(call.rng_state)
                kwargs = variants[name](call)
                start = time.perf_counter()
                output = model.generate(**call.inputs, **kwargs)
                seconds = time.perf_counter() - start
                sequences = output.sequences if kwargs.get("return_dict_in_generate") else output
                count = generated_tokens(sequences[:, call.inputs["input_ids"].shape[1]:], stop_ids)
                row = totals[name]
                row["tokens"] += count
                row["seconds"] += seconds
                row["calls"] += 1
                row["same_token_count_calls"] += count == call.tokens
    return {name: {**row, "tokens_per_s": row["tokens"] / row["seconds"]} for name, row in totals.items()}


def measure_step(trainer: Trainer, agent: agents.vlm.VLMAgent, envs: list[PixelVQAEnv], step: int) -> dict[str, Any]:
    """One timed RL step split into `PARTS`, then the bare replay of its generate calls."""
    timers, calls = Timers(), []
    with ExitStack() as stack:
        stack.enter_context(timers.wrap(agent.model, "generate", "generation"))
        stack.enter_context(recording(agent, calls))
        for owner, method, key in ((agents.vlm, "messages_to_model_inputs", "processor"), (agent, "act_batch", "agent"),
                                   (PixelVQAEnv, "reset", "env"), (PixelVQAEnv, "step", "env"),
                                   (trainer.trainer, "encode", "encode"), (trainer.trainer, "update", "optimize")):
            stack.enter_context(timers.wrap(owner, method, key))
        rollout_weights = weights(agent.model)
        start = time.perf_counter()
        record = trainer._rl_step(step, agent, envs)
        wall = time.perf_counter() - start
    seconds = split_time(timers.seconds, wall)
    tokens = sum(call.tokens for call in calls)
    updated_weights = weights(agent.model)
    agent.model.load_state_dict(rollout_weights)
    replays = replay(agent.model, calls, agent.stop_ids, bare_first=step % 2 == 0)
    agent.model.load_state_dict(updated_weights)
    rollout_tps = tokens / timers.seconds["agent"]
    bare_tps = replays["bare"]["tokens_per_s"]
    return {
        "step": step, "wall_s": wall, "seconds": seconds, "share": {part: v / wall for part, v in seconds.items()},
        "encode_s": timers.seconds["encode"], "generate_calls": len(calls), "generated_tokens": tokens,
        "rollout_tokens_per_s": rollout_tps, "generate_tokens_per_s": tokens / seconds["generation"],
        "bare": replays["bare"], "agent_kwargs_replay": replays["agent_kwargs"],
        "bare_over_rollout": bare_tps / rollout_tps,
        "bare_over_agent_kwargs": bare_tps / replays["agent_kwargs"]["tokens_per_s"],
        "trainer_record": {key: record[key] for key in ("step_seconds", "generation_seconds", "update_seconds",
                                                         "env_time_share", "tokens_per_s", "updated_episodes")
                           if key in record},
    }


def weights(model: Any) -> dict[str, torch.Tensor]:
    """A copy of the model's state dict."""
    return {key: value.detach().clone() for key, value in model.state_dict().items()}


def split_time(measured: dict[str, float], wall: float) -> dict[str, float]:
    """Nested timers (processor and generate inside the agent) as disjoint parts that add up to `wall`."""
    agent, update = measured["agent"], measured["encode"] + measured["optimize"]
    return {
        "generation": measured["generation"], "processor": measured["processor"],
        "agent_other": agent - measured["generation"] - measured["processor"], "env": measured["env"],
        "update": update, "other": wall - agent - measured["env"] - update,
    }


@contextmanager
def memory_marks(agent: agents.vlm.VLMAgent, policy: PolicyTrainer, memory: dict[str, float]) -> Iterator[None]:
    """Record the peak resident set after each rollout turn and after the update (`rollout_mb`, `update_mb`)."""
    def mark(key: str) -> Any:
        return lambda _: memory.__setitem__(key, peak_rss_mb())

    with ExitStack() as stack:
        stack.enter_context(Timers().wrap(agent, "act_batch", "agent", mark("rollout_mb")))
        stack.enter_context(Timers().wrap(policy, "update", "update", mark("update_mb")))
        yield


def peak_rss_mb() -> float:
    """The process's peak resident set so far (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


# ----------------------------------------------------------------------------------------------- reporting


def run(config: Config, threads: int = 1, model_path: Path | None = None) -> dict[str, Any]:
    """A warm-up step, then `config.steps` timed steps with their bare replays, as a JSON-ready dict."""
    torch.set_num_threads(threads)
    memory = {"start_mb": peak_rss_mb()}
    model_path = model_path or ensure_tiny_model(Path(tempfile.gettempdir()) / "pixel_gym_tiny_models")
    train = train_config(config, threads)
    trainer = build_trainer(train, model_path)
    agent = rollout_agent(trainer.model, trainer.processor, train, trainer.device)
    envs = [make_env(train, trainer.train_tasks) for _ in range(train.tasks_per_step * train.group_size)]
    memory["model_loaded_mb"] = peak_rss_mb()
    steps = []
    for step in tqdm(range(config.steps + 1), desc="RL steps (first: warm-up)"):
        if step == 0:
            with memory_marks(agent, trainer.trainer, memory):
                trainer._rl_step(step, agent, envs)
        else:
            steps.append(measure_step(trainer, agent, envs, step))
    memory["peak_mb"] = peak_rss_mb()
    summary = {
        "wall_s": median([s["wall_s"] for s in steps]),
        "seconds": {part: median([s["seconds"][part] for s in steps]) for part in PARTS},
        "rollout_tokens_per_s": median([s["rollout_tokens_per_s"] for s in steps]),
        "bare_tokens_per_s": median([s["bare"]["tokens_per_s"] for s in steps]),
        "bare_over_rollout": median([s["bare_over_rollout"] for s in steps]),
        "bare_over_agent_kwargs": median([s["bare_over_agent_kwargs"] for s in steps]),
        "target": RATIO_TARGET,
    }
    device = torch.cuda.get_device_name() if trainer.device.type == "cuda" else "cpu"
    parameters = sum(p.numel() for p in agent.model.parameters())
    meta = {"config": asdict(config), "model": str(model_path), "parameters": parameters, "device": device,
            "torch_threads": torch.get_num_threads(), "budgets": train.budgets,
            "temperature": train.temperature, "python": platform.python_version(), "torch": torch.__version__}
    return {"summary": summary, "steps": steps, "memory": memory, "meta": meta}


def format_table(results: dict[str, Any]) -> str:
    summary, memory = results["summary"], results["memory"]
    header = ["step s", *(f"{part} s" for part in PARTS), "rollout tok/s", "bare tok/s", "bare/rollout",
              "bare/agent kwargs", "peak RSS MB"]
    cells = [f"{summary['wall_s']:.2f}", *(f"{summary['seconds'][p]:.2f}" for p in PARTS),
             f"{summary['rollout_tokens_per_s']:.1f}", f"{summary['bare_tokens_per_s']:.1f}",
             f"{summary['bare_over_rollout']:.2f} (target <= {summary['target']})",
             f"{summary['bare_over_agent_kwargs']:.2f}", f"{memory['peak_mb']:.0f}"]
    return "\n".join(["| " + " | ".join(header) + " |", "|" + "---|" * len(header), "| " + " | ".join(cells) + " |"])


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small step (4 episodes, 16 tokens; seconds on a CPU)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--model", type=Path, help="a checkpoint folder instead of the random tiny model")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where to write the JSON results")
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error(f"--threads must be >= 1, got {args.threads}")
    results = run(QUICK if args.quick else FULL, args.threads, args.model)
    return report(results, format_table(results), args.out)


if __name__ == "__main__":
    main()
