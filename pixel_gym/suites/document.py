"""`document`: InfographicsVQA-like lookups of a tiny value label in a dense rendered table of cities."""

from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from pixel_gym.suites.base import SOURCE, IntRange, Suite, check_range, draw_size
from pixel_gym.suites.drawing import NAMED_COLORS, stamp_text
from pixel_gym.suites.glyphs import ROWS, text_width
from pixel_gym.tasks import Box, ImageRef, Task

CITIES = (
    "ACCRA", "ALGIERS", "AMSTERDAM", "ANKARA", "ANTWERP", "ATHENS", "ATLANTA", "AUCKLAND", "AUSTIN",
    "BAGHDAD", "BANGKOK", "BEIJING", "BELGRADE", "BERLIN", "BERN", "BOGOTA", "BOSTON", "BRUSSELS",
    "BUCHAREST", "BUDAPEST", "CAIRO", "CALGARY", "CARACAS", "CARDIFF", "CHENNAI", "CHICAGO", "COPENHAGEN",
    "DAKAR", "DALLAS", "DARWIN", "DELHI", "DENVER", "DETROIT", "DHAKA", "DOHA", "DUBAI", "DUBLIN", "FRESNO",
    "GENEVA", "GENOA", "GLASGOW", "HAMBURG", "HANOI", "HAVANA", "HELSINKI", "HOBART", "HOUSTON", "ISTANBUL",
    "JAKARTA", "KARACHI", "KOLKATA", "KRAKOW", "KYIV", "KYOTO", "LAGOS", "LAHORE", "LEEDS", "LIMA",
    "LISBON", "LONDON", "LYON", "MADRID", "MANILA", "MARSEILLE", "MEMPHIS", "MIAMI", "MILAN", "MONTREAL",
    "MUMBAI", "MUNICH", "MUSCAT", "NAIROBI", "NAPLES", "NICE", "ODESA", "OMAHA", "ORLANDO", "OSAKA", "OSLO",
    "OTTAWA", "PARIS", "PERTH", "PHOENIX", "PORTLAND", "PORTO", "PRAGUE", "QUEBEC", "QUITO", "RABAT",
    "RENO", "RIGA", "RIYADH", "ROME", "SANTIAGO", "SEATTLE", "SEOUL", "SEVILLE", "SHANGHAI", "SOFIA",
    "STOCKHOLM", "SYDNEY", "TAIPEI", "TALLINN", "TAMPA", "TEHRAN", "TOKYO", "TORONTO", "TUCSON", "TUNIS",
    "TURIN", "UTRECHT", "VANCOUVER", "VIENNA", "VILNIUS", "WARSAW", "ZAGREB", "ZURICH",
)
TOPICS = ("RAINFALL", "RENT INDEX", "BIKE TRIPS", "AIR QUALITY", "HOTEL PRICES", "PARK AREA", "TOURISTS", "SALES")
FORMATS = ("decimal", "thousands", "percent")
MAX_NAME = max(len(c) for c in CITIES)
MAX_VALUE = 6  # characters of the longest value, "99,999"
MARGIN, GUTTER, PAD = 40, 40, 12
BANDS = ((255, 255, 255), (236, 241, 248))
PAGE = (250, 250, 247)
RULE = (200, 205, 215)


class DocumentSuite(Suite):
    """A rendered infographic: a title, then one or more panels listing cities, each row with a big coloured
    swatch, the city name in a large font and its value in a tiny font at the row's right end.

    "What is the value shown for OSLO?" is answered with the exact value string ("47.3", "1,250" or "12.5%";
    one format per document; metric "anls"). `target_boxes` is the value label.

    Parameters:
        image_size: (min, max) pixels of each side, drawn independently.
        label_cell: glyph cell of the city names, legible in the downscaled global view.
        value_cell: glyph cell of the values; the default 2 is legible only at full resolution.
        formats: the value formats to draw from ("decimal", "thousands", "percent").
    Easy setting for tiny agents: image_size=(700, 700), label_cell=6, value_cell=4.
    """

    name = "document"

    def __init__(
        self,
        size: int = 1000,
        seed: int = 0,
        split: str = "train",
        *,
        image_size: IntRange = (1200, 2000),
        label_cell: int = 8,
        value_cell: int = 2,
        formats: tuple[str, ...] = FORMATS,
    ) -> None:
        super().__init__(size, seed, split)
        if label_cell < 1 or value_cell < 1:
            raise ValueError(f"label_cell and value_cell must be >= 1, got {label_cell}, {value_cell}")
        if not formats or set(formats) - set(FORMATS):
            raise ValueError(f"formats must be a non-empty subset of {FORMATS}, got {formats!r}")
        self.label_cell, self.value_cell, self.formats = label_cell, value_cell, tuple(formats)
        self.image_size = check_range("image_size", image_size, 2 * MARGIN + self._panel_width())
        if self._rows_top() + self._pitch() + MARGIN > self.image_size[0]:
            raise ValueError(f"image_size {image_size} leaves no room for a table row")

    def _pitch(self) -> int:
        return 10 * self.label_cell

    def _panel_width(self) -> int:
        swatch = ROWS * self.label_cell
        return (PAD + swatch + 2 * self.label_cell + text_width("W" * MAX_NAME, self.label_cell)
                + 3 * self.label_cell + text_width("9" * MAX_VALUE, self.value_cell) + PAD)

    def _title_cell(self, width: int, title: str) -> int:
        return max(1, min(self.label_cell + 2, (width - 2 * MARGIN) // text_width(title, 1)))

    def _rows_top(self) -> int:
        """Top of the first row: title (at most label_cell + 2), gap, column headers, gap."""
        return MARGIN + ROWS * (self.label_cell + 2) + MARGIN + ROWS * max(1, self.label_cell // 2) + PAD

    def make_task(self, index: int, rng: np.random.Generator) -> Task:
        width, height = draw_size(rng, self.image_size)
        title = f"{rng.choice(TOPICS)} BY CITY"
        fmt = str(rng.choice(self.formats))
        panels = max(1, (width - 2 * MARGIN + GUTTER) // (self._panel_width() + GUTTER))
        panel_width = (width - 2 * MARGIN - (panels - 1) * GUTTER) // panels
        rows = (height - self._rows_top() - MARGIN) // self._pitch()
        names = rng.choice(CITIES, min(panels * rows, len(CITIES)), replace=False)
        items = [
            self._row(str(name), _value(rng, fmt), MARGIN + (i // rows) * (panel_width + GUTTER),
                      self._rows_top() + (i % rows) * self._pitch(), panel_width, i % 2, rng)
            for i, name in enumerate(names)
        ]
        target = int(rng.integers(len(items)))
        layout = {"size": [width, height], "title": title, "title_cell": self._title_cell(width, title),
                  "panels": [MARGIN + p * (panel_width + GUTTER) for p in range(panels)],
                  "panel_width": panel_width, "header_cell": max(1, self.label_cell // 2), "items": items}
        task_id = self.task_id(index)
        item = items[target]
        return Task(
            id=task_id, question=f"What is the value shown for {item['name']}?", answers=(item["value"],),
            metric="anls", images=(ImageRef(partial(render_document, layout), name=task_id),),
            category="value_lookup", source=SOURCE, target_boxes=(Box(*item["value_box"], label="value"),),
            annotations={"image_size": [width, height], "items": items, "target": target, "format": fmt},
        )

    def _row(self, name: str, value: str, x: int, y: int, width: int, band: int,
             rng: np.random.Generator) -> dict[str, Any]:
        """One table row: band, swatch, label and value positions, plus its texts."""
        cell, small = self.label_cell, self.value_cell
        swatch = ROWS * cell
        top = y + (self._pitch() - swatch) // 2
        label_x = x + PAD + swatch + 2 * cell
        value_x = x + width - PAD - text_width(value, small)
        value_y = y + (self._pitch() - ROWS * small) // 2
        return {
            "name": name, "value": value, "band": band,
            "row_box": [x, y, x + width, y + self._pitch()],
            "swatch_box": [x + PAD, top, x + PAD + swatch, top + swatch],
            "color": list(NAMED_COLORS.values())[int(rng.integers(len(NAMED_COLORS)))],
            "label_text": [label_x, top, cell, len(name)],
            "label_box": [label_x, top, label_x + text_width(name, cell), top + ROWS * cell],
            "value_text": [value_x, value_y, small, len(value)],
            "value_box": [value_x, value_y, value_x + text_width(value, small), value_y + ROWS * small],
        }


def _value(rng: np.random.Generator, fmt: str) -> str:
    if fmt == "decimal":
        return f"{rng.integers(1, 10000) / 10:.1f}"
    if fmt == "thousands":
        return f"{int(rng.integers(1000, 100000)):,}"
    return f"{rng.integers(1, 1000) / 10:.1f}%"


def render_document(layout: dict[str, Any]) -> Image.Image:
    """Draw the infographic described by a `DocumentSuite` layout."""
    image = Image.new("RGB", tuple(layout["size"]), PAGE)
    draw = ImageDraw.Draw(image)
    stamp_text(draw, layout["title"], MARGIN, MARGIN, layout["title_cell"])
    header_cell = layout["header_cell"]
    header_y = layout["items"][0]["row_box"][1] - PAD - ROWS * header_cell
    for x in layout["panels"]:
        right = x + layout["panel_width"]
        stamp_text(draw, "CITY", x + PAD, header_y, header_cell)
        stamp_text(draw, "VALUE", right - PAD - text_width("VALUE", header_cell), header_y, header_cell)
        draw.line((x, header_y + ROWS * header_cell + PAD // 2, right, header_y + ROWS * header_cell + PAD // 2),
                  fill=RULE, width=2)
    for item in layout["items"]:
        draw.rectangle(_inclusive(item["row_box"]), fill=BANDS[item["band"]])
        draw.rectangle(_inclusive(item["swatch_box"]), fill=tuple(item["color"]))
        label_x, label_y, cell, _ = item["label_text"]
        stamp_text(draw, item["name"], label_x, label_y, cell)
        value_x, value_y, small, _ = item["value_text"]
        leader_y = value_y + ROWS * small - 1
        draw.line((item["label_box"][2] + cell, leader_y, value_x - cell, leader_y), fill=RULE, width=1)
        stamp_text(draw, item["value"], value_x, value_y, small)
    return image


def _inclusive(box: list[int]) -> tuple[int, int, int, int]:
    return box[0], box[1], box[2] - 1, box[3] - 1
