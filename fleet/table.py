"""Plain-text tables for terminals and logs."""

from __future__ import annotations

from typing import Sequence


def render(headers: Sequence[str], rows: Sequence[Sequence[object]], max_width: int = 80) -> str:
    cells = [[_cell(v, max_width) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, v in enumerate(row):
            widths[i] = max(widths[i], len(v))
    lines = ["  ".join(h.ljust(widths[i]) for i, h in enumerate(headers)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    for row in cells:
        lines.append("  ".join(v.ljust(widths[i]) for i, v in enumerate(row)).rstrip())
    return "\n".join(lines)


def _cell(v: object, max_width: int) -> str:
    s = "-" if v is None or v == "" else str(v)
    s = " ".join(s.split())
    return s if len(s) <= max_width else s[: max_width - 1] + "…"
