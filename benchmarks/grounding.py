"""Does a base find and read the tags? Greedy grounding and reading on held-out tasks of the main job's suite.

`python -m benchmarks.grounding --model DIR` asks the pretraining's `ground` question about each held-out task's
target tag, on the global view the env serves at reset, and scores the greedy answer three ways: the box's first
two digits (x1, y1 tenths) equal those of the trace's box (`exact`) or are at most one tenth off (`within_one`),
and the env's crop of the answered box frames the target and covers at most a quarter of the image (`crop_hits`,
the main job's `eval_target_hit_rate` rule, `rl_runner.evaluation.first_crop_hits`). Random boxes get about
0.01 / 0.09.

Reading is scored on the pretraining's reading examples of the same tasks, greedy answer against the expected
text: `read_name` (the env's crop of the look box, shifted as the pretraining shifts it -> the symbol; chance about
1/28), `read_glyph` (a 56-px window of that crop holding the target tag anywhere -> the symbol) and `read_match`
(text only: the options and "The tag shows K." -> the final turn with the option's letter; chance 1/4). Prints
and writes `summary.json` under `--out`.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from agents.scripted import clipped_crop_call
from agents.vlm import VLMAgent
from pixel_gym.env import PixelVQAEnv
from pixel_gym.suites import make_suite
from pixel_gym.tasks import Task
from rl_runner.diagnostics import NUMBER
from rl_runner.evaluation import first_crop_hits
from rl_runner.pretrain import ExampleMaker, default_config, ground_example, resolve_model

HELD_OUT_SEED = 999  # the suite seed of the held-out tasks both probes ask about
READING_KINDS = ("name", "glyph", "match")  # the pretraining kinds whose examples `reading_probe` scores


def answered_box(text: str) -> list[float] | None:
    """The first four numbers of a greedy answer, or None."""
    numbers = [float(v) for v in NUMBER.findall(text)]
    return numbers[:4] if len(numbers) >= 4 else None


@dataclass
class GroundingCase:
    """One held-out question: the prompt, the box a trace would answer, and the task it is about."""

    prompt: list[dict[str, Any]]
    truth: list[float]
    task: Task


def held_out_env(tasks: int, seed: int = HELD_OUT_SEED) -> tuple[list[Task], PixelVQAEnv]:
    """`tasks` held-out tasks of the pretraining's suite and the env that serves them at its budgets."""
    config = default_config()
    suite = make_suite(config.suite, size=tasks, seed=seed, split="test", **config.suite_kwargs)
    return suite, PixelVQAEnv(tasks=suite, budgets=config.budgets)


def probe_agent(model: str | Path) -> VLMAgent:
    """The greedy short-answer agent both probes ask."""
    return VLMAgent(model, max_new_tokens=24, temperature=0.0, device="cpu")


def grounding_cases(tasks: int, seed: int = HELD_OUT_SEED) -> tuple[PixelVQAEnv, list[GroundingCase]]:
    """The env of the main job's held-out tasks and the ground question about each one's target tag."""
    suite, env = held_out_env(tasks, seed)
    cases = []
    for task in suite:
        obs, _ = env.reset(options={"task": task})
        tag = task.annotations["tags"][task.annotations["targets"][0]]
        example = ground_example(obs["images"][0], tag, tuple(task.annotations["image_size"]))
        cases.append(GroundingCase(example[:2], answered_box(example[2]["content"][0]["text"]), task))
    return env, cases


def score_box(env: PixelVQAEnv, case: GroundingCase, box: Sequence[float]) -> dict[str, bool]:
    """Whether `box` has the truth's first two digits, is within one tenth of them, and crops the target."""
    errors = [abs(round((box[i] - case.truth[i]) * 10)) for i in (0, 1)]
    env.reset(options={"task": case.task})
    env.step(clipped_crop_call(box))
    return {"exact": max(errors) == 0, "within_one": max(errors) <= 1,
            "crop_hits": first_crop_hits(env.unwrapped._require_episode())}


def grounding_probe(agent: VLMAgent, tasks: int = 200, batch_size: int = 8) -> dict[str, Any]:
    """Exact / within-one / crop-hit rates of `agent`'s greedy grounding on `tasks` held-out tasks."""
    env, cases = grounding_cases(tasks)
    counts = dict.fromkeys(("exact", "within_one", "crop_hits", "unparsed"), 0)
    for start in tqdm(range(0, tasks, batch_size), desc="grounding"):
        batch = cases[start : start + batch_size]
        for case, turn in zip(batch, agent.act_batch([case.prompt for case in batch])):
            box = answered_box(turn.text)
            scores = {"unparsed": True} if box is None else score_box(env, case, box)
            for key, hit in scores.items():
                counts[key] += hit
    return {"tasks": tasks, **{key: value / tasks for key, value in counts.items()}}


def reading_examples(tasks: int) -> dict[str, list[list[dict[str, Any]]]]:
    """One pretraining example of each `READING_KINDS` kind per held-out task, by kind."""
    suite, env = held_out_env(tasks)
    maker = ExampleMaker(env, np.random.default_rng(0))
    return {kind: [maker.examples(task, {kind: 1})[0] for task in suite] for kind in READING_KINDS}


def reading_rate(examples: Sequence[list[dict[str, Any]]], answers: Sequence[str]) -> float:
    """The share of `answers` that are their example's expected text (surrounding whitespace aside)."""
    expected = [example[-1]["content"][0]["text"].strip() for example in examples]
    return sum(answer.strip() == want for answer, want in zip(answers, expected, strict=True)) / len(examples)


def reading_probe(agent: VLMAgent, tasks: int = 200, batch_size: int = 8) -> dict[str, float]:
    """Greedy `reading_rate` of `agent` on each kind of `reading_examples`."""
    rates = {}
    for kind, examples in reading_examples(tasks).items():
        answers = []
        for start in tqdm(range(0, len(examples), batch_size), desc=f"reading ({kind})"):
            answers += [turn.text for turn in agent.act_batch([e[:-1] for e in examples[start : start + batch_size]])]
        rates[f"read_{kind}"] = reading_rate(examples, answers)
    return rates


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny", help='a base folder, or "tiny" (the main job\'s base)')
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--out", default="benchmarks/results/grounding")
    parser.add_argument("--cache-dir", default="runs/.tiny-models", help="where \"tiny\" is built if none is committed")
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    model = resolve_model(args.model, args.cache_dir)
    agent = probe_agent(model)
    summary = {"model": str(model), **grounding_probe(agent, args.tasks), **reading_probe(agent, args.tasks)}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
