"""`python -m benchmarks.view RUN_OR_EVAL_DIR [--out PAGE.html]`: the recorded episodes as one HTML page.

Reads every recording (`pixel_gym.recording`) at or under the folder: a training run's `episodes/<eval>/` or a
`benchmarks.eval` folder's `episodes/<suite>/`. The page is self-contained (images inlined as data URIs, no server,
no network): per episode the question, the options, every turn's text, each view the model was shown with the boxes
of the crops cut from it (the crop itself beside it), tool errors, the answer and the reward parts. Filters (by
recording, suite, category, correct or not, tool used or not) run in the page; a URL fragment such as
`#correct=no&tool=yes` sets them on load.
"""

from __future__ import annotations

import argparse
import base64
import html
from pathlib import Path
from typing import Any

from pixel_gym.recording import EPISODES_FILE, find_recordings, read_episodes

PAGE = "episodes.html"
FILTERS = (("recording", "Recording"), ("suite", "Suite"), ("category", "Category"))
YES_NO = (("correct", "Answer", "correct", "incorrect"), ("tool", "Tool", "used a tool", "no tool"))
NO_CATEGORY = "(none)"
BOX_COLORS = ("#ff4040", "#40c840", "#4080ff", "#ffbe00", "#dc40dc", "#00c8c8")

STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 0; background: #f4f4f4; color: #202020; }
header { position: sticky; top: 0; background: #202830; color: #fff; padding: 8px 16px; z-index: 1; }
header h1 { font-size: 17px; margin: 0 0 6px; }
#filters label { margin-right: 14px; }
main { padding: 12px 16px; }
.episode { background: #fff; border-left: 6px solid #c03030; margin: 0 0 16px; padding: 8px 14px; }
.episode[data-correct="yes"] { border-left-color: #30a030; }
.episode h2 { font-size: 15px; margin: 4px 0; }
.badge { font-size: 12px; padding: 1px 6px; border-radius: 8px; background: #ddd; margin-left: 6px; }
.views { display: flex; flex-wrap: wrap; gap: 10px; align-items: flex-start; margin: 8px 0; }
figure { margin: 0; } figcaption { font-size: 12px; color: #555; }
.frame { position: relative; display: inline-block; line-height: 0; }
.box { position: absolute; border: 3px solid; box-sizing: border-box; }
.box span { position: absolute; top: 0; left: 2px; font: bold 12px/1.2 sans-serif; }
.turn { margin: 4px 0; padding: 4px 8px; background: #f7f7fb; }
.turn.assistant { background: #eef6ee; }
.role { font-weight: bold; font-size: 12px; text-transform: uppercase; color: #666; }
.turn pre { white-space: pre-wrap; margin: 2px 0; font: 13px/1.35 ui-monospace, monospace; }
.errors { color: #b02020; }
table.rewards td, table.rewards th { padding: 1px 8px; border: 1px solid #ddd; font-size: 13px; }
"""

SCRIPT = """
const selects = [...document.querySelectorAll('#filters select')];
const episodes = [...document.querySelectorAll('section.episode')];
function apply() {
  let shown = 0;
  for (const episode of episodes) {
    const keep = selects.every(s => !s.value || episode.dataset[s.dataset.key] === s.value);
    episode.hidden = !keep;
    shown += keep;
  }
  document.getElementById('shown').textContent = shown + ' of ' + episodes.length + ' episodes';
}
const wanted = new URLSearchParams(location.hash.slice(1));
for (const s of selects) {
  if (wanted.has(s.dataset.key)) s.value = wanted.get(s.dataset.key);
  s.addEventListener('change', () => {
    apply();
    history.replaceState(null, '', '#' + selects.filter(x => x.value).map(x => x.dataset.key + '=' +
      encodeURIComponent(x.value)).join('&'));
  });
}
apply();
"""


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def data_uri(path: Path) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def render_views(entry: dict[str, Any], folder: Path, anchor: str) -> str:
    """Every view, each with the boxes of the crops cut from it; a crop's caption names where it was cut."""
    cut_from: dict[int, list[tuple[int, dict[str, Any]]]] = {}
    made_by: dict[int, tuple[int, dict[str, Any]]] = {}
    for number, crop in enumerate(entry["crops"], start=1):
        cut_from.setdefault(crop["from"], []).append((number, crop))
        made_by[crop["view"]] = (number, crop)
    figures = []
    for index, view in enumerate(entry["views"]):
        boxes = "".join(
            f'<div class="box" data-crop="{number}" style="left:{100 * x1:.2f}%;top:{100 * y1:.2f}%;'
            f'width:{100 * (x2 - x1):.2f}%;height:{100 * (y2 - y1):.2f}%;border-color:{color(number)};'
            f'color:{color(number)}"><span>{number}</span></div>'
            for number, crop in cut_from.get(index, ()) for x1, y1, x2, y2 in [crop["box"]]
        )
        caption = f"image {index + 1} ({esc(view['kind'])})"
        if index in made_by:
            number, crop = made_by[index]
            caption = (f'image {index + 1}: <b style="color:{color(number)}">crop {number}</b> '
                       f'of image {crop["from"] + 1}')
        figures.append(
            f'<figure id="{anchor}-v{index + 1}"><div class="frame"><img src="{data_uri(folder / view["file"])}" '
            f'width="{view["width"]}" height="{view["height"]}" alt="image {index + 1}">{boxes}</div>'
            f"<figcaption>{caption}</figcaption></figure>"
        )
    return f'<div class="views">{"".join(figures)}</div>'


def color(number: int) -> str:
    return BOX_COLORS[(number - 1) % len(BOX_COLORS)]


def render_turns(entry: dict[str, Any], anchor: str) -> str:
    parts = []
    for turn in entry["turns"]:
        carried = ", ".join(f'<a href="#{anchor}-v{i + 1}">image {i + 1}</a>' for i in turn["views"])
        parts.append(f'<div class="turn {esc(turn["role"])}"><div class="role">{esc(turn["role"])}</div>'
                     f"<pre>{esc(turn['text'])}</pre>" + (f"<div>shows {carried}</div>" if carried else "") + "</div>")
    return f'<div class="turns">{"".join(parts)}</div>'


def render_episode(entry: dict[str, Any], folder: Path, recording: str, number: int) -> str:
    anchor = f"ep{number}"
    yes = {"correct": entry["correct"], "tool": entry["used_tool"]}
    data = {"recording": recording, "suite": entry["suite"], "category": entry["category"] or NO_CATEGORY,
            **{key: "yes" if value else "no" for key, value in yes.items()}}
    attributes = " ".join(f'data-{key}="{esc(value)}"' for key, value in data.items())
    options = "".join(f"<li>{esc(option)}</li>" for option in entry["options"])
    errors = "".join(f"<li>{esc(e['tool'])}: {esc(e['error'])}</li>" for e in entry["errors"])
    rewards = "".join(f"<tr><th>{esc(k)}</th><td>{v:.4g}</td></tr>" for k, v in entry["rewards"].items())
    answer = "(none)" if entry["answer"] is None else entry["answer"]
    badges = ("correct" if entry["correct"] else "incorrect") + (" · used a tool" if entry["used_tool"] else "")
    return (
        f'<section class="episode" id="{anchor}" {attributes}>'
        f'<h2>{esc(entry["id"])}<span class="badge">{badges}</span><span class="badge">{esc(entry["suite"])} / '
        f'{esc(entry["category"] or NO_CATEGORY)}</span><span class="badge">{esc(recording)}</span></h2>'
        f'<p class="question">{esc(entry["question"])}</p>'
        + (f'<ol class="options" type="A">{options}</ol>' if options else "")
        + render_views(entry, folder, anchor) + render_turns(entry, anchor)
        + (f'<div class="errors">tool errors<ul>{errors}</ul></div>' if errors else "")
        + f'<p class="answer">answer: <b>{esc(answer)}</b> · gold: {esc(", ".join(entry["gold"]))} · '
        f'score {entry["score"]:.3g}</p><table class="rewards">{rewards}</table></section>'
    )


def render_filters(values: dict[str, list[str]]) -> str:
    selects = []
    for key, label in FILTERS:
        options = "".join(f'<option value="{esc(v)}">{esc(v)}</option>' for v in values[key])
        selects.append(f'<label>{label} <select id="filter-{key}" data-key="{key}"><option value="">all</option>'
                       f"{options}</select></label>")
    for key, label, yes, no in YES_NO:
        selects.append(f'<label>{label} <select id="filter-{key}" data-key="{key}"><option value="">all</option>'
                       f'<option value="yes">{yes}</option><option value="no">{no}</option></select></label>')
    return f'<div id="filters">{"".join(selects)}<span id="shown"></span></div>'


def build_page(root: Path) -> tuple[str, int]:
    """The page of every recording at or under `root`, and its number of episodes."""
    sections, values = [], {key: set() for key, _ in FILTERS}
    for folder in find_recordings(root):
        recording = str(folder.relative_to(root)) if folder != root else folder.name
        for entry in read_episodes(folder / EPISODES_FILE):
            values["recording"].add(recording)
            values["suite"].add(entry["suite"])
            values["category"].add(entry["category"] or NO_CATEGORY)
            sections.append(render_episode(entry, folder, recording, len(sections) + 1))
    title = f"pixel-gym episodes: {esc(root)}"
    page = (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title}</title><style>{STYLE}</style>'
        f"</head><body><header><h1>{title}</h1>{render_filters({k: sorted(v) for k, v in values.items()})}</header>"
        f'<main>{"".join(sections) or "<p>no recorded episodes</p>"}</main><script>{SCRIPT}</script></body></html>'
    )
    return page, len(sections)


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.view", description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="a training run folder or a benchmarks.eval --out folder")
    parser.add_argument("--out", type=Path, help=f"the page to write (default: FOLDER/{PAGE})")
    args = parser.parse_args(argv)
    if not args.folder.is_dir():
        raise SystemExit(f"error: {args.folder} is not a folder")
    page, count = build_page(args.folder)
    if not count:
        raise SystemExit(f"error: no recorded episodes ({EPISODES_FILE}) at or under {args.folder}")
    out = args.out or args.folder / PAGE
    out.write_text(page, encoding="utf-8")
    print(f"{count} episodes -> {out}")
    return out


if __name__ == "__main__":
    main()
