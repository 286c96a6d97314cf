"""Evaluate an agent on benchmarks and built-in suites, through the env, resumably.

    python -m benchmarks.eval --agent {oracle,blind,random,vlm,openai} [--model PATH_OR_NAME] [--endpoint URL]
        --suite vstar,tallyqa_complex,infovqa,mvbench,fine_detail --data-dir DIR --limit N --out DIR

Episodes run in batches through `PixelVQAEnv` with `rl_runner.rollout.run_episodes` (one batched generation per
turn across the live episodes). Dataset suites (`pixel_gym.datasets.DATASETS`) read `<data-dir>/<folder>` (e.g.
`<data-dir>/vstar`), else `<data-dir>` itself, or `hf://owner/name`; built-in suites (`pixel_gym.suites.SUITES`)
play their test split, `--limit` tasks (default 100). `<out>/<suite>.jsonl` gets one line per task (task id,
suite, category, answer, score, ops used, turns, ...); a restart skips the tasks already there (the run's settings
in `<out>/run.json` must match). Each task gets two scores: `score`, the benchmark's official metric
(`pixel_gym.datasets.metrics.benchmark_score`, to compare with the field), and `pixel_reasoner`, the released
evaluation's one rule for every benchmark (`pixel_gym.scores`, to compare with the paper). RaPR is the share of
episodes with at least one tool call (executed, failed or malformed, as the released code counts), RaPR ops the
share with at least one successful pixel operation. A table per suite and category, with both scores, is printed
and saved (`summary.json`, `summary.md`), and a few of this run's episodes per suite are drawn with their zoom
boxes into `<out>/gallery_<suite>.png`. Generation allows 2048 new tokens per turn, as the released evaluation does.
The first `--keep-episodes` (32) episodes per suite are kept, turns and boxes, for `python -m benchmarks.view` in
`<out>/episodes/<suite>/` (`pixel_gym.recording`).
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from agents.scripted import BlindAgent, OracleAgent, RandomAgent
from pixel_gym.datasets import DATASETS, benchmark_score, load_tasks
from pixel_gym.datasets.metrics import released_score
from pixel_gym.env import PixelVQAEnv
from pixel_gym.gallery import save_gallery
from pixel_gym.recording import MAX_EPISODES, Played, record_episodes
from pixel_gym.render import render_episode
from pixel_gym.reward import NO_CURIOSITY
from pixel_gym.scores import pixel_reasoner_score
from pixel_gym.suites import SUITES, make_suite
from pixel_gym.tasks import Task
from rl_runner.rollout import BatchAgent, run_episodes

SCRIPTED = {"oracle": OracleAgent, "blind": BlindAgent, "random": RandomAgent}
AGENTS = (*SCRIPTED, "vlm", "openai")
DEFAULT_SUITE_SIZE = 100
MAX_NEW_TOKENS = 2048  # per turn, as the released evaluation generates
GALLERY_HEIGHT = 320
RECORDED_SCORES = ("score", "pixel_reasoner", "env_correctness")  # the reward parts the viewer shows
Panel = tuple[np.ndarray, str]
AgentFactory = Callable[[Sequence[PixelVQAEnv], int], BatchAgent]  # (envs of one batch, seed) -> agent


@dataclass(frozen=True)
class Settings:
    """What makes results comparable: a restart into the same `--out` must use the same settings."""

    agent: str
    model: str | None
    endpoint: str | None
    budgets: str
    max_turns: int
    max_new_tokens: int
    seed: int


class ScriptedBatch:
    """Scripted agents, one per env, behind the batch interface of `run_episodes` (which passes the observations
    of the unfinished episodes in env order)."""

    def __init__(self, agents: Sequence[Any]) -> None:
        self.agents = agents

    def act_batch(self, observations: Sequence[dict[str, Any]]) -> list[str]:
        live = [a for a in self.agents if a.env.episode is not None and a.env.episode.answer is None]
        return [agent.act(obs) for agent, obs in zip(live, observations, strict=True)]


# ---------------------------------------------------------------------------------------------- the run


def load_suite(name: str, data_dir: str | None, split: str | None, limit: int | None) -> Sequence[Task]:
    """The tasks of a dataset or built-in suite."""
    if name in SUITES:
        return make_suite(name, size=DEFAULT_SUITE_SIZE if limit is None else limit, split=split or "test")
    if name not in DATASETS:
        raise SystemExit(f"unknown suite {name!r}; datasets: {', '.join(DATASETS)}; built-in: {', '.join(SUITES)}")
    if data_dir is None:
        raise SystemExit(f"--data-dir is needed for the dataset suite {name!r}")
    folder = Path(data_dir) / DATASETS[name].folder
    return load_tasks(name, folder if folder.is_dir() else data_dir, split, limit)


def agent_factory(settings: Settings, batch_size: int) -> AgentFactory:
    """A function giving the agent of one batch of envs (scripted agents read their env; a model is shared)."""
    if settings.agent in SCRIPTED:
        kind = SCRIPTED[settings.agent]
        return lambda envs, seed: ScriptedBatch([kind(env, seed=seed + i) for i, env in enumerate(envs)])
    if not settings.model:
        raise SystemExit(f"--agent {settings.agent} needs --model")
    if settings.agent == "vlm":
        from agents.vlm import VLMAgent

        model: BatchAgent = VLMAgent(settings.model, max_new_tokens=settings.max_new_tokens, temperature=0.0)
    else:
        from agents.openai_agent import OpenAIChatAgent

        if not settings.endpoint:
            raise SystemExit("--agent openai needs --endpoint (e.g. http://localhost:8000/v1)")
        model = OpenAIChatAgent(settings.endpoint, settings.model, max_tokens=settings.max_new_tokens,
                                max_workers=batch_size)
    return lambda envs, seed: model


def evaluate_suite(suite: str, tasks: Sequence[Task], make_agent: AgentFactory, settings: Settings,
                   results: Path, batch_size: int, gallery_size: int, keep: int = MAX_EPISODES) -> list[Panel]:
    """Play the tasks not yet in `results`, appending one record per task and keeping up to `keep` episodes for
    `benchmarks.view` in `<out>/episodes/<suite>/`; returns gallery panels."""
    done = {task_id for task_id, record in read_records(results).items() if "error" not in record}
    pending = [task for task in tasks if task.id not in done]
    envs = [PixelVQAEnv(tasks=tasks, budgets=settings.budgets, max_turns=settings.max_turns, curiosity=NO_CURIOSITY)
            for _ in range(min(batch_size, len(pending)))]
    with_ops: list[Panel] = []
    without_ops: list[Panel] = []
    end_last_line(results)
    with results.open("a") as out, tqdm(total=len(pending), desc=suite, unit="task") as progress:
        for start in range(0, len(pending), batch_size):
            chunk = pending[start : start + batch_size]
            played = play(make_agent, envs, chunk, suite, settings.seed + start)
            if keep:
                record_episodes(results.parent / "episodes" / suite, [
                    Played(env.episode, suite, record["score"], {k: record[k] for k in RECORDED_SCORES})
                    for env, record in played if env is not None], limit=keep)
            for env, record in played:
                out.write(json.dumps(record) + "\n")
                panels = with_ops if record.get("num_ops") else without_ops
                if env is not None and len(panels) < gallery_size:
                    panels.append((render_episode(env.episode, GALLERY_HEIGHT), caption(record)))
            out.flush()
            progress.update(len(chunk))
    return (with_ops + without_ops)[:gallery_size]


def play(make_agent: AgentFactory, envs: Sequence[PixelVQAEnv], tasks: Sequence[Task], suite: str,
         seed: int) -> list[tuple[PixelVQAEnv | None, dict[str, Any]]]:
    """Records of `tasks` played in one batch; an episode the env failed (an unreadable image, see
    `rl_runner.rollout`) is recorded with its error and scores 0 (a restart tries it again)."""
    envs = envs[: len(tasks)]
    stats = run_episodes(make_agent(envs, seed), envs, tasks, [t.id for t in tasks], seed=seed)
    return [(None, {**task_fields(task, suite), "error": episode.error, "score": 0.0, "pixel_reasoner": 0.0})
            if episode.error else (env, episode_record(env, task, suite, episode.correctness))
            for env, task, episode in zip(envs, tasks, stats.episodes)]


def task_fields(task: Task, suite: str) -> dict[str, Any]:
    return {"task_id": task.id, "suite": suite, "category": task.category, "metric": task.metric,
            "gold": list(task.answers)}


def episode_record(env: PixelVQAEnv, task: Task, suite: str, correctness: float) -> dict[str, Any]:
    episode = env.episode
    answer = episode.answer or ""
    return {
        **task_fields(task, suite), "answer": answer, "score": benchmark_score(answer, task),
        "pixel_reasoner": released_score(answer, task), "env_correctness": correctness, "num_ops": episode.num_ops,
        "ops": [op.tool for op in episode.ops if op.ok], "num_errors": episode.num_errors, "turns": episode.turns,
        "answered": bool(answer), "used_pixel_op": episode.num_ops > 0, "num_tool_calls": episode.num_tool_calls,
    }


def caption(record: dict[str, Any]) -> str:
    return (f"{record['task_id']} [{record['category']}]  answer {record['answer'][:40]!r}  "
            f"gold {record['gold'][0][:40]!r}  score {record['score']:.2f}  ops {record['num_ops']}  "
            f"turns {record['turns']}")


def end_last_line(path: Path) -> None:
    """End a line that a crash cut short, so that the next record starts a line of its own."""
    if path.exists() and path.stat().st_size:
        with path.open("rb+") as file:
            file.seek(-1, os.SEEK_END)
            if file.read(1) != b"\n":
                file.write(b"\n")


def read_records(path: Path) -> dict[str, dict[str, Any]]:
    """Records by task id (the last line of a task wins); a line cut short by a crash is ignored."""
    records: dict[str, dict[str, Any]] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            records[record["task_id"]] = record
    return records


# ------------------------------------------------------------------------------------------------- summary


def summarize(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per suite ("all" categories first) and per category: mean official score, mean released score
    (`pixel_reasoner`), RaPR (tool calls), RaPR ops (successful ops), ops and turns."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for record in records:
        groups.setdefault((record["suite"], "all"), []).append(record)
        if record["category"]:
            groups.setdefault((record["suite"], record["category"]), []).append(record)
    rows = []
    for (suite, category), members in groups.items():
        played = [r for r in members if "error" not in r]
        rows.append({
            "suite": suite, "category": category, "n": len(members), "errors": len(members) - len(played),
            "metric": "ANLS" if members[0]["metric"] == "anls" else "accuracy",
            "score": 100 * float(np.mean([r["score"] for r in members])),
            "pixel_reasoner": 100 * float(np.mean([released_of(r) for r in members])),
            "rapr": 100 * float(np.mean([called_tool(r) for r in played])) if played else 0.0,
            "rapr_ops": 100 * float(np.mean([r["used_pixel_op"] for r in played])) if played else 0.0,
            "ops_per_episode": float(np.mean([r["num_ops"] for r in played])) if played else 0.0,
            "turns_per_episode": float(np.mean([r["turns"] for r in played])) if played else 0.0,
        })
    return rows


def released_of(record: dict[str, Any]) -> float:
    """A record's released score; records written before it existed are scored from their answer and golds."""
    if "pixel_reasoner" in record:
        return float(record["pixel_reasoner"])
    return pixel_reasoner_score(record.get("answer", ""), record["gold"])


def called_tool(record: dict[str, Any]) -> bool:
    """Whether the episode made a tool call; records written before the count existed know only successful ops."""
    return record["num_tool_calls"] > 0 if "num_tool_calls" in record else bool(record["used_pixel_op"])


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """The summary as a markdown table."""
    columns = ("suite", "category", "n", "metric", "score", "pixel_reasoner", "RaPR %", "RaPR ops %", "ops/ep",
               "turns/ep", "errors")
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        lines.append(f"| {r['suite']} | {r['category']} | {r['n']} | {r['metric']} | {r['score']:.1f} | "
                     f"{r['pixel_reasoner']:.1f} | {r['rapr']:.1f} | {r['rapr_ops']:.1f} | "
                     f"{r['ops_per_episode']:.2f} | {r['turns_per_episode']:.2f} | {r['errors']} |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------- main


def check_settings(out: Path, settings: Settings) -> None:
    """Record the run's settings, or refuse to mix results of different settings in one folder."""
    path = out / "run.json"
    if path.exists():
        previous = json.loads(path.read_text())
        if previous != asdict(settings):
            raise SystemExit(f"{out} holds results of other settings {previous}; use another --out")
    else:
        path.write_text(json.dumps(asdict(settings), indent=2))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agent", choices=AGENTS, required=True)
    parser.add_argument("--model", help="checkpoint path or hub id (vlm), served model name (openai)")
    parser.add_argument("--endpoint", help="OpenAI-compatible base URL, e.g. http://localhost:8000/v1")
    parser.add_argument("--suite", required=True, help="comma-separated dataset or built-in suite names")
    parser.add_argument("--data-dir", help="folder holding the datasets (or one dataset), or hf://owner/name")
    parser.add_argument("--split", help="dataset split (each dataset's default when omitted)")
    parser.add_argument("--limit", type=int, help="first N tasks of each suite")
    parser.add_argument("--out", required=True, help="results folder (resumable)")
    parser.add_argument("--batch-size", type=int, default=8, help="episodes played together")
    parser.add_argument("--budgets", default="paper_eval", help="pixel budget preset (pixel_gym.budgets)")
    parser.add_argument("--max-turns", type=int, default=6)
    parser.add_argument("--max-new-tokens", type=int, default=MAX_NEW_TOKENS, help="per turn")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--gallery", type=int, default=4, help="episodes drawn per suite (0: no gallery)")
    parser.add_argument("--keep-episodes", type=int, default=MAX_EPISODES,
                        help="episodes per suite kept for `python -m benchmarks.view` (0: none)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    settings = Settings(args.agent, args.model, args.endpoint, args.budgets, args.max_turns, args.max_new_tokens,
                        args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    check_settings(out, settings)
    suites = [name.strip() for name in args.suite.split(",") if name.strip()]
    selected = {name: load_suite(name, args.data_dir, args.split, args.limit) for name in suites}
    make_agent = agent_factory(settings, args.batch_size)
    records, galleries = [], {}
    for name, tasks in selected.items():
        results = out / f"{name}.jsonl"
        panels = evaluate_suite(name, tasks, make_agent, settings, results, args.batch_size, args.gallery,
                                args.keep_episodes)
        if panels:
            galleries[name] = str(save_gallery(panels, out / f"gallery_{name}.png"))
        by_id = read_records(results)
        records += [by_id[task.id] for task in tasks if task.id in by_id]
    rows = summarize(records)
    skipped = {name: tasks.skip_counts() for name, tasks in selected.items() if getattr(tasks, "skipped", ())}
    table = format_table(rows) + "".join(
        f"\nskipped in {name} (missing or unusable records): {sum(counts.values())} ({counts})"
        for name, counts in skipped.items()
    )
    print(table)
    summary = {"settings": asdict(settings), "rows": rows, "galleries": galleries, "skipped": skipped}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    (out / "summary.md").write_text(table + "\n")
    return summary


if __name__ == "__main__":
    main()
