"""Evaluation throughput end to end with the tiny model, and where the time goes.

`python -m benchmarks.perf_eval [--quick] [--out PATH]` evaluates the tiny Qwen2.5-VL (`agents.tiny`) greedily
through `benchmarks.eval`, as a real evaluation runs (batched episodes, official scoring, result files), on two
workloads: the built-in fine-detail suite, and a V*-layout folder of V*-size photo-like JPEGs read by the V*
loader. For the run only, the functions doing each part are wrapped with timers (nothing in pixel_gym changes):
- decode: `ImageRef.open` / `ImageRef.size` (file reads, JPEG decoding, video frames; procedural drawing for the
  built-in suite),
- env_ops: the rest of `PixelVQAEnv.reset` / `step` (parsing, crops, resizes, observation copies),
- processor: `agents.vlm.messages_to_model_inputs` (chat template, tokenization, image preprocessing),
- model: the model's `generate`,
- agent_other: the rest of `VLMAgent.act_batch` (batching, detokenization),
- harness: the rest of the wall time (task bookkeeping, scoring, result files).
Prints a table and writes JSON (default `benchmarks/results/perf_eval.json`). Model loading is not timed.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from functools import wraps
from pathlib import Path
from typing import Any

import numpy as np
import torch

import agents.vlm
from agents.tiny import ensure_tiny_model
from benchmarks.eval import Settings, agent_factory, evaluate_suite, read_records
from benchmarks.perf_env import VSTAR_SIZE, photo_like
from benchmarks.report import report
from pixel_gym.datasets import load_tasks
from pixel_gym.env import PixelVQAEnv
from pixel_gym.suites import make_suite
from pixel_gym.tasks import ImageRef, Task

DEFAULT_OUT = Path("benchmarks/results/perf_eval.json")
PARTS = ("decode", "env_ops", "processor", "model", "agent_other", "harness")


@dataclass(frozen=True)
class Config:
    tasks: int  # tasks per workload
    batch_size: int  # episodes played together
    max_turns: int
    max_new_tokens: int


FULL = Config(tasks=16, batch_size=8, max_turns=3, max_new_tokens=32)
QUICK = Config(tasks=4, batch_size=4, max_turns=2, max_new_tokens=8)


class Timers:
    """Seconds spent inside wrapped callables, per key; re-entrant calls under the same key count once."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._depth: dict[str, int] = defaultdict(int)

    @contextmanager
    def wrap(self, owner: Any, name: str, key: str,
             on_result: Callable[[Any], None] | None = None) -> Iterator[None]:
        """Time `owner.name` under `key` until the context exits (then the original is put back)."""
        original = getattr(owner, name)

        @wraps(original)
        def timed(*args: Any, **kwargs: Any) -> Any:
            self._depth[key] += 1
            start = time.perf_counter()
            try:
                result = original(*args, **kwargs)
            finally:
                self._depth[key] -= 1
                if self._depth[key] == 0:
                    self.seconds[key] += time.perf_counter() - start
                    self.calls[key] += 1
            if on_result is not None:
                on_result(result)
            return result

        setattr(owner, name, timed)
        try:
            yield
        finally:
            setattr(owner, name, original)


def write_vstar_folder(root: Path, count: int) -> Path:
    """`count` V*-size JPEG questions in V*'s per-question layout (`direct_attributes/<name>.jpg` + `.json`)."""
    folder = root / "direct_attributes"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for index in range(count):
        photo_like(rng, VSTAR_SIZE).save(folder / f"sa_{index}.jpg", quality=90)
        annotation = {"target_object": ["sign"], "bbox": [[1500, 900, 60, 40]], "question": "What color is the sign?",
                      "options": ["red", "blue", "green", "white"]}
        (folder / f"sa_{index}.json").write_text(json.dumps(annotation))
    return root


def measure(name: str, tasks: Sequence[Task], model_path: Path, config: Config) -> dict[str, Any]:
    """Evaluate `tasks` with the tiny model and split the wall time into `PARTS`."""
    settings = Settings("vlm", str(model_path), None, "compact", config.max_turns, config.max_new_tokens, 0)
    make_agent = agent_factory(settings, config.batch_size)
    agent = make_agent([], 0)
    timers, tokens = Timers(), []
    with tempfile.TemporaryDirectory(prefix="perf_eval_") as out, ExitStack() as stack:
        for owner, method, key in ((ImageRef, "open", "decode"), (ImageRef, "size", "decode"),
                                   (PixelVQAEnv, "reset", "env"), (PixelVQAEnv, "step", "env"),
                                   (agents.vlm, "messages_to_model_inputs", "processor"),
                                   (agent.model, "generate", "model")):
            stack.enter_context(timers.wrap(owner, method, key))
        stack.enter_context(timers.wrap(agent, "act_batch", "agent",
                                        lambda turns: tokens.extend(len(t.response_ids) for t in turns)))
        start = time.perf_counter()
        evaluate_suite(name, tasks, make_agent, settings, Path(out) / "results.jsonl", config.batch_size, 0)
        wall = time.perf_counter() - start
        records = list(read_records(Path(out) / "results.jsonl").values())
    seconds = split_time(timers.seconds, wall)
    turns = sum(r["turns"] for r in records)
    return {
        "tasks": len(records), "turns": turns, "generated_tokens": sum(tokens), "wall_s": wall,
        "episodes_per_s": len(records) / wall, "turns_per_s": turns / wall, "tokens_per_s": sum(tokens) / wall,
        "mean_score": float(np.mean([r["score"] for r in records])), "seconds": seconds,
        "share": {part: value / wall for part, value in seconds.items()},
        "calls": dict(timers.calls),
    }


def split_time(measured: dict[str, float], wall: float) -> dict[str, float]:
    """Nested timers (decode in env, processor and model in agent) as disjoint parts that add up to `wall`."""
    env, agent = measured["env"], measured["agent"]
    return {
        "decode": measured["decode"], "env_ops": env - measured["decode"], "processor": measured["processor"],
        "model": measured["model"], "agent_other": agent - measured["processor"] - measured["model"],
        "harness": wall - env - agent,
    }


def run(config: Config, model_path: Path | None = None) -> dict[str, Any]:
    """Both workloads with the model at `model_path` (default: the tiny model, built once in the temp folder)."""
    model_path = model_path or ensure_tiny_model(Path(tempfile.gettempdir()) / "pixel_gym_tiny_models")
    with tempfile.TemporaryDirectory(prefix="perf_eval_vstar_") as folder:
        workloads = {
            "fine_detail": make_suite("fine_detail", size=config.tasks, split="test"),
            "vstar_jpeg": load_tasks("vstar", write_vstar_folder(Path(folder), config.tasks)),
        }
        results = {name: measure(name, tasks, model_path, config) for name, tasks in workloads.items()}
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    meta = {"config": asdict(config), "model": str(model_path), "device": device,
            "torch_threads": torch.get_num_threads(), "budgets": "compact", "image_size": list(VSTAR_SIZE),
            "python": platform.python_version(), "torch": torch.__version__}
    return {"workloads": results, "meta": meta}


def format_table(results: dict[str, Any]) -> str:
    header = ["workload", "episodes/s", "turns/s", "tokens/s", *(f"{p} %" for p in PARTS)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, row in results["workloads"].items():
        shares = [f"{100 * row['share'][p]:.1f}" for p in PARTS]
        lines.append(f"| {name} | {row['episodes_per_s']:.2f} | {row['turns_per_s']:.2f} | "
                     f"{row['tokens_per_s']:.1f} | " + " | ".join(shares) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description="End-to-end evaluation throughput with the tiny model.")
    parser.add_argument("--quick", action="store_true", help="a few tasks and tokens (seconds on a CPU)")
    parser.add_argument("--model", type=Path, help="a checkpoint folder instead of the tiny model")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    results = run(QUICK if args.quick else FULL, args.model)
    return report(results, format_table(results), args.out)


if __name__ == "__main__":
    main()
