"""Result tables (CSV + markdown) for the baselines and ablation comparisons."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def _cell(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def markdown_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """A GitHub-style markdown table; ``None`` shows as an en dash (metric undefined for the split)."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(_cell(row.get(c)) for c in columns) + " |")
    return "\n".join(lines) + "\n"


def write_table(rows: Sequence[dict[str, Any]], columns: Sequence[str], csv_path: Path, md_path: Path, title: str) -> str:
    """Write ``rows`` as CSV (empty cell for None) and as a titled markdown file; return the markdown."""
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    with open(csv_path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        writer.writerows([{c: ("" if row.get(c) is None else row.get(c)) for c in columns} for row in rows])
    table = markdown_table(rows, columns)
    md_path.write_text(f"# {title}\n\n{table}", encoding="utf-8")
    return table
