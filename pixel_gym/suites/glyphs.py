"""A 5x7 bitmap font: the symbols printed on tags, the digits of value labels and the words of labels.

Each character is a 7-row, 5-column grid of cells; drawn with a cell of `c` pixels it covers 5c x 7c pixels and
text advances 6c per character. Look-alike symbols (few differing cells) serve as distractor choices.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

ROWS, COLS = 7, 5
ADVANCE = 6  # cells per character: 5 drawn columns and one blank

_FONT_ROWS: dict[str, str] = {
    "0": ".###. #...# #..## #.#.# ##..# #...# .###.",
    "1": "..#.. .##.. ..#.. ..#.. ..#.. ..#.. .###.",
    "2": ".###. #...# ....# ...#. ..#.. .#... #####",
    "3": "##### ...#. ..#.. ...#. ....# #...# .###.",
    "4": "...#. ..##. .#.#. #..#. ##### ...#. ...#.",
    "5": "##### #.... ####. ....# ....# #...# .###.",
    "6": "..##. .#... #.... ####. #...# #...# .###.",
    "7": "##### ....# ...#. ..#.. .#... .#... .#...",
    "8": ".###. #...# #...# .###. #...# #...# .###.",
    "9": ".###. #...# #...# .#### ....# ...#. .##..",
    "A": ".###. #...# #...# ##### #...# #...# #...#",
    "B": "####. #...# #...# ####. #...# #...# ####.",
    "C": ".###. #...# #.... #.... #.... #...# .###.",
    "D": "###.. #..#. #...# #...# #...# #..#. ###..",
    "E": "##### #.... #.... ####. #.... #.... #####",
    "F": "##### #.... #.... ####. #.... #.... #....",
    "G": ".###. #...# #.... #.### #...# #...# .####",
    "H": "#...# #...# #...# ##### #...# #...# #...#",
    "I": ".###. ..#.. ..#.. ..#.. ..#.. ..#.. .###.",
    "J": "..### ...#. ...#. ...#. ...#. #..#. .##..",
    "K": "#...# #..#. #.#.. ##... #.#.. #..#. #...#",
    "L": "#.... #.... #.... #.... #.... #.... #####",
    "M": "#...# ##.## #.#.# #.#.# #...# #...# #...#",
    "N": "#...# #...# ##..# #.#.# #..## #...# #...#",
    "O": ".###. #...# #...# #...# #...# #...# .###.",
    "P": "####. #...# #...# ####. #.... #.... #....",
    "Q": ".###. #...# #...# #...# #.#.# #..#. .##.#",
    "R": "####. #...# #...# ####. #.#.. #..#. #...#",
    "S": ".#### #.... #.... .###. ....# ....# ####.",
    "T": "##### ..#.. ..#.. ..#.. ..#.. ..#.. ..#..",
    "U": "#...# #...# #...# #...# #...# #...# .###.",
    "V": "#...# #...# #...# #...# #...# .#.#. ..#..",
    "W": "#...# #...# #...# #.#.# #.#.# #.#.# .#.#.",
    "X": "#...# #...# .#.#. ..#.. .#.#. #...# #...#",
    "Y": "#...# #...# .#.#. ..#.. ..#.. ..#.. ..#..",
    "Z": "##### ....# ...#. ..#.. .#... #.... #####",
    ".": "..... ..... ..... ..... ..... .##.. .##..",
    ",": "..... ..... ..... ..... .##.. ..#.. .#...",
    "%": "##... ##..# ...#. ..#.. .#... #..## ...##",
    " ": "..... ..... ..... ..... ..... ..... .....",
}

FONT: dict[str, np.ndarray] = {
    char: np.array([[cell == "#" for cell in row] for row in rows.split()], dtype=bool)
    for char, rows in _FONT_ROWS.items()
}

# Tag symbols: no A-F (they would read as option letters) and no I/O (they read as 1/0).
SYMBOLS = "GHJKLMNPQRSTUVWXYZ0123456789"
LETTER_SYMBOLS = "GHJKLMNPQRSTUVWXYZ"
NUMBER_CHARS = "0123456789.,%"


def hamming(a: str, b: str) -> int:
    """Number of cells in which two characters differ."""
    return int(np.count_nonzero(FONT[a] != FONT[b]))


def lookalikes(symbol: str, count: int, rng: np.random.Generator, pool: Sequence[str] = SYMBOLS) -> list[str]:
    """The `count` symbols of `pool` nearest to `symbol` in Hamming distance (ties broken at random)."""
    others = [s for s in pool if s != symbol]
    if count > len(others):
        raise ValueError(f"asked for {count} look-alikes of {symbol!r} but the pool has {len(others)} others")
    jitter = rng.random(len(others))
    ranked = sorted(range(len(others)), key=lambda i: (hamming(symbol, others[i]), jitter[i]))
    return [others[i] for i in ranked[:count]]


def text_width(text: str, cell: int) -> int:
    """Pixel width of `text` drawn with `cell`-pixel cells (no trailing blank column)."""
    return (ADVANCE * len(text) - 1) * cell if text else 0


def text_mask(text: str, cell: int) -> np.ndarray:
    """Boolean ink mask of `text`, shape (7 * cell, text_width(text, cell))."""
    unknown = sorted(set(text) - FONT.keys())
    if unknown:
        raise ValueError(f"the bitmap font has no glyph for {unknown}")
    grid = np.zeros((ROWS, ADVANCE * len(text) - 1), dtype=bool)
    for i, char in enumerate(text):
        grid[:, ADVANCE * i: ADVANCE * i + COLS] = FONT[char]
    return grid.repeat(cell, axis=0).repeat(cell, axis=1)
