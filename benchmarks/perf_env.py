"""Env throughput benchmark: steps/s, zoom-step overhead over bare PIL, and AsyncVectorEnv scaling.

`python -m benchmarks.perf_env [--quick] [--out PATH]` prints a table and writes JSON (default
`benchmarks/results/perf_env.json`). An episode is a reset plus `zooms` text turns, each a
`crop_image_normalized` tool call read by the real parser. Two settings: the fine-detail suite, and V*-size
(2246x1582) photo-like JPEG files written to a temporary folder. Each figure is the median over `repeats`
timed runs, and each ratio pairs measurements from the same run, so machine load weighs on both sides.
"""

from __future__ import annotations

import argparse
import os
import pickle
import platform
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import PIL
from PIL import Image, ImageDraw

from benchmarks.report import report
from pixel_gym.actions import format_tool_call
from pixel_gym.env import PixelVQAEnv
from pixel_gym.ops.crop import NAME as CROP_OP
from pixel_gym.tasks import Task

VSTAR_SIZE = (2246, 1582)
DEFAULT_OUT = Path("benchmarks/results/perf_env.json")
OVERHEAD_TARGET = 1.3  # env zoom step time / bare crop + resize
SPEEDUP_TARGET = 1.6  # AsyncVectorEnv throughput / one env
NUM_WORKERS = 2

Plans = list[list[str]]  # the text turns of each episode


@dataclass(frozen=True)
class Config:
    zooms: int  # zoom turns per episode
    episodes: int  # episodes per timed run
    repeats: int  # timed runs per figure
    num_images: int  # V*-size JPEG files
    suite_size: int  # fine-detail tasks to sample from


FULL = Config(zooms=4, episodes=6, repeats=5, num_images=4, suite_size=64)
QUICK = Config(zooms=2, episodes=2, repeats=2, num_images=1, suite_size=8)


# ------------------------------------------------------------------------------------------------ workload


def photo_like(rng: np.random.Generator, size: tuple[int, int]) -> Image.Image:
    """A stand-in for a V* photo: smooth colour fields, hard-edged shapes and sensor noise."""
    width, height = size
    image = Image.fromarray(rng.integers(0, 256, (9, 12, 3), dtype=np.uint8)).resize(size, Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(image)
    for _ in range(200):
        x, y = int(rng.integers(width)), int(rng.integers(height))
        w, h = (int(v) for v in rng.integers(8, 240, size=2))
        shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
        shape((x, y, x + w, y + h), fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
    noise = rng.standard_normal((height, width, 3), dtype=np.float32) * 6
    return Image.fromarray(np.clip(np.asarray(image, np.float32) + noise, 0, 255).astype(np.uint8))


def jpeg_tasks(folder: Path, count: int) -> list[Task]:
    """`count` tasks, each on its own V*-size JPEG file written to `folder`."""
    rng = np.random.default_rng(0)
    tasks = []
    for index in range(count):
        path = folder / f"vstar_{index}.jpg"
        photo_like(rng, VSTAR_SIZE).save(path, quality=90)
        tasks.append(Task(f"vstar/{index}", "What is written on the sign?", ("A",), "choice",
                          images=(str(path),), choices=("open", "closed")))
    return tasks


def zoom_plans(config: Config, seed: int = 0) -> Plans:
    """Text turns per episode: random boxes on the original image, every third one on the latest crop."""
    rng = np.random.default_rng(seed)
    plans = []
    for _ in range(config.episodes):
        turns = []
        for step in range(config.zooms):
            w, h = rng.uniform(0.2, 0.5, size=2)
            x, y = rng.uniform(0, 1 - w), rng.uniform(0, 1 - h)
            box = [round(float(v), 3) for v in (x, y, x + w, y + h)]
            target = step + 1 if step % 3 == 2 else 1
            call = format_tool_call(CROP_OP, {"bbox_2d": box, "target_image": target})
            turns.append(f"The detail is too small; let me zoom in.\n{call}")
        plans.append(turns)
    return plans


def make_env(zooms: int, tasks: Sequence[Task] | None = None, suite_size: int = 64) -> PixelVQAEnv:
    """An env on `tasks` (else the fine-detail suite) that allows `zooms` zooms without ending the episode."""
    limits: dict[str, Any] = {"max_ops": zooms, "max_turns": zooms + 1, "max_images": zooms + 1}
    if tasks is not None:
        return PixelVQAEnv(tasks=tasks, **limits)
    return PixelVQAEnv(suite="fine_detail", size=suite_size, **limits)


def run_episodes(env: gym.Env, plans: Plans) -> dict[str, Any]:
    """Play the episodes; returns the last observation.

    Like an agent loop, the caller holds the previous observation while the next step runs.
    """
    for seed, turns in enumerate(plans):
        obs, _ = env.reset(seed=seed)
        for turn in turns:
            obs, *_ = env.step(turn)
    return obs


def run_vector_episodes(vector: gym.vector.VectorEnv, plans: Plans) -> dict[str, Any]:
    """`run_episodes` with the same turns in every sub-env; each sub-env resets with its own seed."""
    for seed, turns in enumerate(plans):
        obs, _ = vector.reset(seed=[seed * vector.num_envs + i for i in range(vector.num_envs)])
        for turn in turns:
            obs, *_ = vector.step((turn,) * vector.num_envs)
    return obs


# ---------------------------------------------------------------------------------------------- measurements


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def steps_per_second(env: PixelVQAEnv, plans: Plans, repeats: int) -> dict[str, Any]:
    """Zoom steps per second over whole episodes (resets included), with the median time of each call."""
    run_episodes(env, plans[:1])  # warm-up
    rates, reset_ms, step_ms = [], [], []
    for _ in range(repeats):
        start = time.perf_counter()
        for seed, turns in enumerate(plans):
            t0 = time.perf_counter()
            obs, _ = env.reset(seed=seed)  # held while the next call runs, as in run_episodes
            reset_ms.append((time.perf_counter() - t0) * 1e3)
            for turn in turns:
                t0 = time.perf_counter()
                obs, *_ = env.step(turn)
                step_ms.append((time.perf_counter() - t0) * 1e3)
        rates.append(sum(map(len, plans)) / (time.perf_counter() - start))
    return {"steps_per_s": median(rates), "runs": rates, "reset_ms": median(reset_ms), "zoom_step_ms": median(step_ms)}


def zoom_overhead(env: PixelVQAEnv, plans: Plans, repeats: int) -> dict[str, Any]:
    """Env zoom step time over a bare `crop + resize` (bicubic) of the same box to the same size.

    The bare operation crops the already-decoded full image right after each env step. A step that first has
    to decode its source (the first zoom of an episode on a JPEG) is left out of the ratio and reported as
    `first_zoom_ms`.
    """
    run_episodes(env, plans[:1])  # warm-up
    ratios, env_ms, bare_ms, first_ms = [], [], [], []
    for _ in range(repeats):
        env_total = bare_total = 0
        for seed, turns in enumerate(plans):
            obs, _ = env.reset(seed=seed)  # held while the next call runs, as in run_episodes
            decodes = env.episode.task.images[0].is_encoded  # the first zoom decodes the full image
            for turn in turns:
                t0 = time.perf_counter_ns()
                obs, *_ = env.step(turn)
                env_ns = time.perf_counter_ns() - t0
                view = env.episode.views[-1]
                full = env.episode.source_image(view.source)
                t0 = time.perf_counter_ns()
                full.crop(view.region).resize(view.image.size, Image.Resampling.BICUBIC)
                bare_ns = time.perf_counter_ns() - t0
                if decodes:
                    first_ms.append(env_ns / 1e6)
                    decodes = False
                    continue
                env_total, bare_total = env_total + env_ns, bare_total + bare_ns
                env_ms.append(env_ns / 1e6)
                bare_ms.append(bare_ns / 1e6)
        ratios.append(env_total / bare_total)
    return {
        "ratio": median(ratios), "runs": ratios, "target": OVERHEAD_TARGET, "env_step_ms": median(env_ms),
        "bare_ms": median(bare_ms), "first_zoom_ms": median(first_ms) if first_ms else None,
    }


def cpu_seconds(pid: int) -> float | None:
    """CPU time of a process's main thread (Linux /proc/PID/schedstat), or None where that is unavailable."""
    try:
        return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0]) / 1e9
    except (OSError, ValueError, IndexError):
        return None


def async_speedup(env_fn: Callable[[], gym.Env], plans: Plans, repeats: int) -> dict[str, Any]:
    """Throughput of `AsyncVectorEnv` (NUM_WORKERS workers) over one env in this process, on the same episodes.

    `copy=False`: each batch of this env is freshly unpickled, so the default deep copy would only add work.
    CPU times per step (from /proc) show what each process costs, largely apart from machine load; from them,
    `idle_cores_estimate` is the speedup expected with NUM_WORKERS idle cores in lockstep stepping.
    """
    single = env_fn()
    vector = gym.vector.AsyncVectorEnv([env_fn] * NUM_WORKERS, shared_memory=False, copy=False)
    pids = [os.getpid(), *(process.pid for process in vector.processes)]
    steps = sum(map(len, plans))
    try:
        run_episodes(single, plans[:1])
        run_vector_episodes(vector, plans[:1])
        single_rates, vector_rates, speedups, cpu_single, cpu_vector = [], [], [], [], []
        for _ in range(repeats):
            before, start = cpu_seconds(pids[0]), time.perf_counter()
            run_episodes(single, plans)
            single_rates.append(steps / (time.perf_counter() - start))
            cpu_single.append(_delta(before, cpu_seconds(pids[0])))
            before_all, start = [cpu_seconds(pid) for pid in pids], time.perf_counter()
            run_vector_episodes(vector, plans)
            vector_rates.append(NUM_WORKERS * steps / (time.perf_counter() - start))
            cpu_vector.append([_delta(b, cpu_seconds(pid)) for b, pid in zip(before_all, pids)])
            speedups.append(vector_rates[-1] / single_rates[-1])
        obs = run_episodes(single, plans[:1])
    finally:
        vector.close()
        single.close()
    result = {
        "workers": NUM_WORKERS, "speedup": median(speedups), "runs": speedups, "target": SPEEDUP_TARGET,
        "single_steps_per_s": median(single_rates), "vector_steps_per_s": median(vector_rates),
        "observation_pickle_bytes": len(pickle.dumps(obs)),
        "observation_image_bytes": sum(image.nbytes for image in obs["images"]),
        "cpu_ms_per_step": None, "idle_cores_estimate": None,
    }
    if None not in cpu_single and all(None not in run for run in cpu_vector):
        single_ms = median(cpu_single) / steps * 1e3
        main_ms = median([run[0] for run in cpu_vector]) / steps * 1e3  # per vector step
        worker_ms = median([max(run[1:]) for run in cpu_vector]) / steps * 1e3
        result["cpu_ms_per_step"] = {"single_env": single_ms, "vector_main": main_ms, "vector_worker": worker_ms}
        result["idle_cores_estimate"] = NUM_WORKERS * single_ms / (worker_ms + main_ms)
    return result


def _delta(before: float | None, after: float | None) -> float | None:
    return None if before is None or after is None else after - before


# ----------------------------------------------------------------------------------------------- reporting


# Turns and actions from the hostile-input audit (issue 11) that used to crash a step or take seconds.
HOSTILE_TURNS: dict[str, Any] = {
    "huge integer in a box": '<tool_call>{"name": "crop_image_normalized", "arguments": {"bbox_2d": [1' + "9" * 5000
    + ', 0, 1, 1], "target_image": 1}}</tool_call>',
    "integer overflowing float": '<tool_call>{"name": "crop_image_normalized", "arguments": {"bbox_2d": [1' + "0" * 400
    + ', 0, 1, 1], "target_image": 1}}</tool_call>',
    "nested boxed": "\\boxed{" * 2340,
    "non-finite structured zoom": (1, {"bbox": np.zeros(4), "target_image": float("inf")}),
    "huge frame mask": (2, np.ones(10_000_000, dtype=np.int8)),
}


def hostile_steps(env: PixelVQAEnv, plans: Plans, repeats: int) -> dict[str, Any]:
    """The slowest hostile step against the median ordinary zoom step, both measured here."""
    ordinary = steps_per_second(env, plans, repeats)["zoom_step_ms"]
    times: dict[str, float] = {}
    for name, action in HOSTILE_TURNS.items():
        runs = []
        for seed in range(repeats):
            env.reset(seed=seed)
            started = time.perf_counter()
            env.step(action)
            runs.append((time.perf_counter() - started) * 1000)
        times[name] = median(runs)
    worst = max(times, key=times.__getitem__)
    return {"step_ms": times, "worst": worst, "worst_ms": times[worst], "zoom_step_ms": ordinary,
            "ratio": times[worst] / ordinary}


def run(config: Config) -> dict[str, Any]:
    """All measurements, as a JSON-ready dict."""
    load_before = os.getloadavg()
    plans = zoom_plans(config)
    with tempfile.TemporaryDirectory(prefix="pixel_gym_perf_") as folder:
        tasks = jpeg_tasks(Path(folder), config.num_images)
        fine = make_env(config.zooms, suite_size=config.suite_size)
        jpeg = make_env(config.zooms, tasks)
        results: dict[str, Any] = {
            "steps_per_s": {
                "fine_detail": steps_per_second(fine, plans, config.repeats),
                "vstar_jpeg": steps_per_second(jpeg, plans, config.repeats),
            },
            "zoom_overhead": {
                "fine_detail": zoom_overhead(fine, plans, config.repeats),
                "vstar_jpeg": zoom_overhead(jpeg, plans, config.repeats),
            },
            "async_vector": async_speedup(partial(make_env, config.zooms, tasks), plans, config.repeats),
            "hostile": hostile_steps(fine, plans, config.repeats),
        }
    results["meta"] = {
        "config": asdict(config), "image_size": list(VSTAR_SIZE), "budgets": "compact",
        "cpus": os.cpu_count(), "loadavg_before": list(load_before), "loadavg_after": list(os.getloadavg()),
        "python": platform.python_version(), "pillow": PIL.__version__, "numpy": np.__version__,
        "gymnasium": gym.__version__,
    }
    return results


def format_table(results: dict[str, Any]) -> str:
    """The results as a plain-text table."""
    rows = [("measurement", "setting", "value", "detail")]
    for setting, row in results["steps_per_s"].items():
        rows.append(("steps/s (reset + zooms)", setting, f"{row['steps_per_s']:.1f}",
                     f"reset {row['reset_ms']:.1f} ms, zoom step {row['zoom_step_ms']:.2f} ms"))
    for setting, row in results["zoom_overhead"].items():
        first = f", first zoom (decodes) {row['first_zoom_ms']:.1f} ms" if row["first_zoom_ms"] else ""
        rows.append(("zoom step / bare crop+resize", setting, f"{row['ratio']:.3f} (target <= {row['target']})",
                     f"env {row['env_step_ms']:.2f} ms, bare {row['bare_ms']:.2f} ms{first}"))
    row = results["async_vector"]
    detail = (f"{row['vector_steps_per_s']:.1f} vs {row['single_steps_per_s']:.1f} steps/s, "
              f"obs {row['observation_pickle_bytes'] / 1e6:.2f} MB pickled")
    if row["cpu_ms_per_step"]:
        cpu = row["cpu_ms_per_step"]
        detail += (f"; CPU ms/step single {cpu['single_env']:.1f}, worker {cpu['vector_worker']:.1f}, "
                   f"main {cpu['vector_main']:.1f} -> idle-core estimate {row['idle_cores_estimate']:.2f}x")
    hostile = results["hostile"]
    rows.append(("worst hostile step / zoom step", "fine_detail", f"{hostile['ratio']:.2f}",
                 f"{hostile['worst']}: {hostile['worst_ms']:.2f} ms vs {hostile['zoom_step_ms']:.2f} ms"))
    rows.append((f"AsyncVectorEnv({row['workers']}) / one env", "vstar_jpeg",
                 f"{row['speedup']:.2f}x (target >= {row['target']})", detail))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(r, widths)) + "  " + r[3] for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    meta = results["meta"]
    lines.append(f"{meta['cpus']} CPUs, load average {meta['loadavg_before'][0]:.2f} -> "
                 f"{meta['loadavg_after'][0]:.2f}; {meta['config']}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few short runs (used by the tests)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where to write the JSON results")
    parser.add_argument("--repeats", type=int, help="timed runs per figure (overrides the mode's default)")
    parser.add_argument("--episodes", type=int, help="episodes per timed run (overrides the mode's default)")
    args = parser.parse_args(argv)
    config = QUICK if args.quick else FULL
    if args.repeats:
        config = replace(config, repeats=args.repeats)
    if args.episodes:
        config = replace(config, episodes=args.episodes)
    results = run(config)
    return report(results, format_table(results), args.out)


if __name__ == "__main__":
    main()
