"""The episodes an evaluation keeps for the viewer (`benchmarks.view`): turns, views and crop boxes, bounded in size.

A recording is a folder holding `episodes.jsonl` (one line per episode, at most `MAX_EPISODES`) and `images/` (each
view the model was shown, as a JPEG of at most `MAX_SIDE` px, video frames `FRAME_SIDE` px). Training evaluations
write `runs/<name>/episodes/<eval>/`, `benchmarks.eval` writes `<out>/episodes/<suite>/`.

An episode line: `id`, `suite`, `category`, `question`, `options`, `gold`, `answer`, `correct` (score >=
`CORRECT_AT`), `used_tool` (a tool call of any outcome), `rewards` (named parts), `turns` (role, text, and the
views the turn carried), `views` (file, kind, size), `crops` (`from` view, the resulting `view`, and the `box` on the
view it was cut from, as fractions of its width and height), `errors` (failed tool calls: tool and message).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pixel_gym.episode import Episode, View

EPISODES_FILE = "episodes.jsonl"
IMAGES = "images"
MAX_EPISODES = 32  # per recording: one training evaluation, or one suite of benchmarks.eval
MAX_SIDE = 448
FRAME_SIDE = 160
CORRECT_AT = 0.5  # a score at or above this counts as correct (ANLS gives partial scores)


@dataclass(frozen=True)
class Played:
    """One finished episode with what the page shows beside it."""

    episode: Episode
    suite: str
    score: float
    rewards: dict[str, float]


def record_episodes(folder: Path, played: Iterable[Played], fresh: bool = False, limit: int = MAX_EPISODES) -> int:
    """Append episodes to the recording at `folder` until it holds `limit`; `fresh` empties it first.
    Returns how many it holds."""
    if fresh:
        shutil.rmtree(folder, ignore_errors=True)
    (folder / IMAGES).mkdir(parents=True, exist_ok=True)
    path = folder / EPISODES_FILE
    count = len(read_episodes(path))
    with path.open("a") as out:
        for item in played:
            if count >= limit:
                break
            out.write(json.dumps(entry(item, folder, count)) + "\n")
            count += 1
    return count


def entry(item: Played, folder: Path, number: int) -> dict[str, Any]:
    """The line of one episode; its views are written to `folder/images/` as `<number>_<view>.jpg`."""
    episode, task = item.episode, item.episode.task
    views = [save_view(view, folder, f"{number:03d}_{index:02d}.jpg") for index, view in enumerate(episode.views)]
    return {
        "id": task.id, "suite": item.suite, "category": task.category, "question": task.question,
        "options": list(task.choices), "gold": list(task.answers), "answer": episode.answer,
        "score": item.score, "correct": item.score >= CORRECT_AT, "used_tool": episode.num_tool_calls > 0,
        "rewards": item.rewards, "turns": turns(episode), "views": views, "crops": crops(episode),
        "errors": [{"tool": op.tool, "error": op.error} for op in episode.ops if not op.ok],
    }


def save_view(view: View, folder: Path, name: str) -> dict[str, Any]:
    image = view.seen.convert("RGB")
    side = FRAME_SIDE if view.kind == "frame" else MAX_SIDE
    image.thumbnail((side, side))
    image.save(folder / IMAGES / name, quality=85)
    return {"file": f"{IMAGES}/{name}", "kind": view.kind, "width": image.width, "height": image.height}


def turns(episode: Episode) -> list[dict[str, Any]]:
    """Each message after the system prompt: role, text, and the views it carried (images and video frames are
    shown in view order, so the n-th picture of the chat is view n)."""
    result, shown = [], 0
    for message in episode.messages:
        if message["role"] == "system":
            continue
        texts, carried = [], []
        for part in message["content"]:
            if part["type"] == "text":
                texts.append(part["text"])
            else:
                count = len(part["video"]) if part["type"] == "video" else 1
                carried += range(shown, shown + count)
                shown += count
        result.append({"role": message["role"], "text": "".join(texts), "views": carried})
    return result


def crops(episode: Episode) -> list[dict[str, Any]]:
    """Each executed crop: the view it was cut from, the crop view it made (the next crop view showing the op's
    region), and its box on the former in fractions."""
    unclaimed = [index for index, view in enumerate(episode.views) if view.kind == "crop"]
    result = []
    for op in episode.ops:
        made = [i for i in unclaimed if episode.views[i].region == op.region] if op.ok and op.view is not None else []
        if not made:
            continue
        unclaimed.remove(made[0])
        px1, py1, px2, py2 = episode.views[op.view].region
        width, height = max(px2 - px1, 1), max(py2 - py1, 1)
        x1, y1, x2, y2 = op.region
        box = [(x1 - px1) / width, (y1 - py1) / height, (x2 - px1) / width, (y2 - py1) / height]
        result.append({"from": op.view, "view": made[0], "box": [round(min(max(v, 0.0), 1.0), 4) for v in box]})
    return result


def read_episodes(path: Path) -> list[dict[str, Any]]:
    """The lines of an `episodes.jsonl` (a line cut short by a crash is skipped)."""
    if not path.exists():
        return []
    result = []
    for line in path.read_text().splitlines():
        try:
            result.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return result


def find_recordings(root: Path) -> list[Path]:
    """The recording folders at or under `root` (training run, evaluation folder, or one recording)."""
    return sorted(path.parent for path in root.rglob(EPISODES_FILE))
