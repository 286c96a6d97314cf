"""Trace synthesis: multi-turn SFT traces in the tool-call format, written by playing the real env.

Kinds (as in the paper's warm-start data): `direct` (look, zoom to the annotated box or select the key frames,
answer), `self_correcting` (zoom somewhere wrong first, notice, zoom right, answer) and `text_only` (answer from
the global view, for tasks whose evidence is already large enough there). The tool-call turns come from the trace
step of the env's first offered op that has one for the task (`Operation.trace`): `zoom_turns` and `frame_turns`
are those of the built-in `crop_image_normalized` and `select_frames`. Every tool result in a trace is what
the env really returned. Traces are saved in the paper's released SFT layout: a JSON list of
{"qid", "kind", "message_list"} with images as files under images/.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm import tqdm

from agents.scripted import boxed, crop_call, frames_call, key_frame_numbers, target_region
from pixel_gym.datasets.common import resolve_inside
from pixel_gym.env import PixelVQAEnv
from pixel_gym.episode import Episode
from pixel_gym.suites import make_suite
from pixel_gym.tasks import ImageRef, Task, choice_letters

KINDS = ("direct", "self_correcting", "text_only")
VISIBLE_SIDE = 56  # a target whose shorter side spans this many pixels in the global view needs no zoom
BOX_DECIMALS = 1  # boxes in traces are rounded outwards to tenths: they cover the target and the 0.1 padding frames it
LOOK = "The detail the question asks about is too small to read in the full image. "


@dataclass
class Trace:
    task_id: str
    kind: str
    messages: list[dict[str, Any]]
    correct: bool


def needs_operation(episode: Episode) -> bool:
    """Whether the evidence is too small in the global view (always, for a video or an unannotated task)."""
    task = episode.task
    if task.is_video or not task.target_boxes:
        return True
    first = episode.views[0]
    scale = min(first.seen.width / first.frame_size[0], first.seen.height / first.frame_size[1])
    shorter = min(min(b.x2 - b.x1, b.y2 - b.y1) for b in task.target_boxes)
    return shorter * scale < VISIBLE_SIDE


def evidence_sentence(task: Task) -> str:
    """What the model reports after looking: the option text (not the letter) or the value it read."""
    letters = choice_letters(len(task.choices))
    answer = task.answers[0]
    seen = task.choices[letters.index(answer)] if task.choices and answer in letters else answer
    return f"Now I can see it clearly: {seen}."


def text_only_turn(task: Task) -> str:
    """The single turn of a `text_only` trace: the answer from the global view."""
    return f"The relevant detail is large enough to see in the image. The answer is {boxed(task.answers[0])}."


def op_turns(env: PixelVQAEnv, kind: str, rng: np.random.Generator) -> list[str] | None:
    """The tool-call turns of the first offered op with a trace step for the env's current task, or None."""
    episode = env._require_episode()
    for op in env.ops:
        turns = op.trace_turns(episode, kind, rng)
        if turns is not None:
            return turns
    return None


def zoom_turns(episode: Episode, kind: str, rng: np.random.Generator) -> list[str] | None:
    """The trace step of `crop_image_normalized`: zoom to the annotated region (`self_correcting`: first to a
    wrong one); None for a video."""
    if episode.task.is_video:
        return None
    region = target_region(episode.task, episode.views[0].frame_size)
    if kind != "self_correcting":
        return [look_turn(region)]
    zoom = crop_call(region, decimals=BOX_DECIMALS)
    wrong = _wrong_region(region, rng)
    return [
        LOOK + "Let me zoom in where it might be.\n" + crop_call(wrong, decimals=BOX_DECIMALS),
        "The zoomed region does not show what the question asks about. Let me zoom in on another region.\n" + zoom,
    ]


def frame_turns(episode: Episode, kind: str, rng: np.random.Generator) -> list[str] | None:
    """The trace step of `select_frames`: select the key frames (`self_correcting`: first wrong ones); None for an
    image."""
    if not episode.task.is_video:
        return None
    shown = episode.shown_frames
    right = key_frame_numbers(episode.task, shown)
    look = "The question is about a brief event; the low-resolution frames are not enough. "
    if kind != "self_correcting":
        return [look + f"I will select frames {right} to see them in full resolution.\n" + frames_call(right)]
    wrong = _wrong_frames(right, len(shown), rng)
    return [
        look + f"Let me check frames {wrong}.\n" + frames_call(wrong),
        "These frames do not show the event. Let me look at other frames.\n" + frames_call(right),
    ]


def look_turn(region: tuple[float, float, float, float]) -> str:
    """The first turn of a direct trace: say why, then crop `region` (normalized)."""
    return LOOK + "I will zoom in on it.\n" + crop_call(region, decimals=BOX_DECIMALS)


def final_turn(task: Task) -> str:
    """The answering turn after the evidence has been seen."""
    return f"{evidence_sentence(task)} The answer is {boxed(task.answers[0])}."


def _wrong_region(region: tuple[float, ...], rng: np.random.Generator) -> tuple[float, float, float, float]:
    """A box of the same size that does not overlap `region` (after the 0.1 padding)."""
    width, height = region[2] - region[0], region[3] - region[1]
    for _ in range(100):
        x1, y1 = rng.uniform(0, 1 - width), rng.uniform(0, 1 - height)
        if (
            x1 + width + 0.2 < region[0]
            or x1 > region[2] + 0.2
            or y1 + height + 0.2 < region[1]
            or y1 > region[3] + 0.2
        ):
            return (x1, y1, x1 + width, y1 + height)
    return (0.0, 0.0, width, height) if region[0] > 0.5 else (1 - width, 1 - height, 1.0, 1.0)


def _wrong_frames(right: list[int], count: int, rng: np.random.Generator) -> list[int]:
    others = [n for n in range(1, count + 1) if all(abs(n - r) > 1 for r in right)]
    picked = rng.choice(others, size=min(len(right), len(others)), replace=False) if others else [1]
    return sorted(int(n) for n in picked)


def synthesize(
    tasks: Iterable[Task],
    env: PixelVQAEnv,
    self_correct_fraction: float = 0.3,
    seed: int = 0,
    progress: bool = True,
) -> list[Trace]:
    """Play one scripted episode per task and keep the chats; the kind depends on the task and the rng."""
    rng = np.random.default_rng(seed)
    traces = []
    for task in tqdm(list(tasks), desc="synthesizing traces", disable=not progress):
        env.reset(options={"task": task})
        if not needs_operation(env._require_episode()):
            kind = "text_only"
        else:
            kind = "self_correcting" if rng.random() < self_correct_fraction else "direct"
        steps = None if kind == "text_only" else op_turns(env, kind, rng)
        if steps is None:  # large evidence, or no offered op has a trace step for this task
            kind, turns = "text_only", [text_only_turn(task)]
        else:
            turns = [*steps, final_turn(task)]
        info: dict[str, Any] = {}
        obs: dict[str, Any] = {}
        for turn in turns:
            obs, _, terminated, truncated, info = env.step(turn)
            if terminated or truncated:
                break
        traces.append(Trace(task.id, kind, obs["messages"], info.get("correctness", 0.0) == 1.0))
    return traces


# ------------------------------------------------------------------------------------------------ saving


def save_traces(traces: Sequence[Trace], out_dir: str | Path) -> Path:
    """Write traces in the paper's SFT layout; returns the JSON path."""
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    records = []
    for number, trace in enumerate(traces):
        stem = f"{number:06d}"
        records.append(
            {"qid": trace.task_id, "kind": trace.kind, "message_list": _externalize_images(trace.messages, out, stem)}
        )
    path = out / "sft_traces.json"
    path.write_text(json.dumps(records))
    return path


def _externalize_images(messages: list[dict[str, Any]], out: Path, stem: str) -> list[dict[str, Any]]:
    converted, count = [], 0
    for message in messages:
        content = []
        for part in message["content"]:
            if part["type"] in ("image", "video"):
                pictures = part["video"] if part["type"] == "video" else [part["image"]]
                relatives = [f"images/{stem}_{count + k}.png" for k in range(len(pictures))]
                for picture, relative in zip(pictures, relatives):
                    Image.fromarray(picture).save(out / relative)
                content.append({"type": "video", "video": relatives} if part["type"] == "video"
                               else {"type": "image", "image": relatives[0]})
                count += len(pictures)
            else:
                content.append(dict(part))
        converted.append({"role": message["role"], "content": content})
    return converted


def load_traces(path: str | Path) -> list[dict[str, Any]]:
    """Read a traces JSON (ours or the paper's layout); image paths become arrays, resolved against its folder."""
    path = Path(path)
    records = json.loads(path.read_text())
    for record in records:
        for message in record["message_list"]:
            content = message["content"]
            if isinstance(content, str):
                message["content"] = [{"type": "text", "text": content}]
                continue
            for part in content:
                if part["type"] == "image" and isinstance(part["image"], str):
                    part["image"] = _read_image(path.parent, part["image"])
                elif part["type"] == "video":
                    part["video"] = [_read_image(path.parent, f) if isinstance(f, str) else f for f in part["video"]]
    return records


def _read_image(root: Path, relative: str) -> np.ndarray:
    """An image of a traces folder as an array; paths may not leave the folder, unreadable files name themselves."""
    return np.asarray(ImageRef(resolve_inside(root, relative, "traces")).open())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Synthesize SFT traces from a built-in suite.")
    parser.add_argument("--suite", default="fine_detail")
    parser.add_argument("--num-tasks", type=int, default=64)
    parser.add_argument("--self-correct-fraction", type=float, default=0.3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--budgets", default="compact", help="pixel budgets of the views (a preset name)")
    parser.add_argument("--out", default="runs/traces")
    args = parser.parse_args(argv)
    suite = make_suite(args.suite, size=args.num_tasks, seed=args.seed, split="train")
    traces = synthesize(suite, PixelVQAEnv(tasks=suite, budgets=args.budgets), args.self_correct_fraction, args.seed)
    path = save_traces(traces, args.out)
    kinds = {k: sum(t.kind == k for t in traces) for k in KINDS}
    print(f"wrote {len(traces)} traces to {path} ({kinds})")


if __name__ == "__main__":
    main()
