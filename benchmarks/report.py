"""How every performance benchmark reports: its table on stdout, its results as JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def report(results: dict[str, Any], table: str, out: Path) -> dict[str, Any]:
    """Print `table`, write `results` to `out` as JSON, and return them."""
    print(table)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out}")
    return results
