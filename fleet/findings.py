"""What the terminal says below a run's table: every reason a host did not pass, whole, worst host first.

Pure: the hosts' entries (each with its final ``status`` and its ``reasons``, as the verdict decided them) in,
lines out.  Nothing is cut: a long message wraps onto indented lines when a width is given (a terminal), and
stays one line otherwise (a log, ``grep``).  A finding that many hosts share word for word (the same check, the
same status, the same message) is one line with the hosts named, ranges folded (``n001-n012``), so a
thousand-host run stays readable.
"""

from __future__ import annotations

import re
import textwrap
from typing import Iterable, Mapping, Optional

from verify.status import severity

FOLD_MIN = 3  # a finding shared by this many hosts or more is said once, with the hosts
SHOWN = ("warn", "fail", "error", "unreachable", "skipped")  # the statuses of reasons worth a line
# Host statuses, worst first (unreachable and error above fail: nothing could be judged there).
_HOST_ORDER = {s: i for i, s in enumerate(("error", "unreachable", "fail", "warn", "skipped", "pass"))}


def label(r: Mapping) -> str:
    """What a reason is about: the check's name, the state, or the kind with its metric."""
    if r.get("kind") == "check":
        return str(r.get("name") or "check")
    if r.get("kind") == "state":
        return str(r.get("state") or r.get("status"))
    metric = r.get("metric")
    return f"{r.get('kind')} {metric}" if metric else str(r.get("kind"))


def _line(r: Mapping) -> str:
    """``label status: message`` (a state reason: ``state: message``)."""
    if r.get("kind") == "state":
        return f"{label(r)}: {r.get('message') or ''}".rstrip(": ")
    return f"{label(r)} {r.get('status')}: {r.get('message') or ''}".rstrip(": ")


def _host_key(item) -> tuple:
    name, entry = item
    return (_HOST_ORDER.get(entry.get("status"), 0), name)


def fold_names(names: Iterable[str], limit: int = 12) -> str:
    """Host names with runs of consecutive numbers folded: ``n001-n012, gpu7``; beyond ``limit`` items,
    ``and N more``."""
    groups: list[list] = []  # [prefix, width, first, last] or [name]
    for name in names:
        m = re.fullmatch(r"(.*?)(\d+)", name)
        if m and groups and len(groups[-1]) == 4:
            prefix, width, first, last = groups[-1]
            if m.group(1) == prefix and len(m.group(2)) == width and int(m.group(2)) == last + 1:
                groups[-1][3] = last + 1
                continue
        groups.append([m.group(1), len(m.group(2)), int(m.group(2)), int(m.group(2))] if m else [name])
    items = []
    for g in groups:
        if len(g) == 1:
            items.append(g[0])
        else:
            prefix, width, first, last = g
            one = f"{prefix}{first:0{width}d}"
            items.append(one if first == last else f"{one}-{prefix}{last:0{width}d}")
    more = len(items) - limit
    return ", ".join(items[:limit]) + (f" and {more} more" if more > 0 else "")


def render_findings(hosts: Mapping[str, Mapping], width: Optional[int] = None,
                    kinds: Optional[tuple] = None, fold_min: int = FOLD_MIN) -> list[str]:
    """The findings section's lines (none when every host passed cleanly).  ``hosts``: name -> entry with
    ``status`` and ``reasons``; ``kinds``: the reason kinds to show (None: all); ``width``: wrap to it."""
    per_host: dict[str, list] = {}
    sharing: dict[tuple, list] = {}
    for name, entry in sorted(hosts.items(), key=_host_key):
        reasons = [r for r in entry.get("reasons") or []
                   if r.get("status") in SHOWN and (kinds is None or r.get("kind") in kinds)]
        reasons.sort(key=lambda r: -_rank(r.get("status")))  # stable: the verdict's order within a status
        per_host[name] = reasons
        for r in reasons:
            sharing.setdefault((r.get("status"), _line(r)), []).append(name)
    folded = {k for k, names in sharing.items() if len(names) >= fold_min}
    out: list[str] = []
    for name, reasons in per_host.items():
        own = [r for r in reasons if (r.get("status"), _line(r)) not in folded]
        for r in own:
            out += _wrap(f"  {name}: {_line(r)}", width)
    if folded:
        out.append("on several hosts:")
        for key in sorted(folded, key=lambda k: (-_rank(k[0]), -len(sharing[k]), k[1])):
            names = sharing[key]
            out += _wrap(f"  {key[1]} — {len(names)} hosts: {fold_names(names)}", width)
    return out


def _rank(status) -> int:
    return severity(status) if status in ("warn", "fail", "error") else severity("error") + 1


def _wrap(line: str, width: Optional[int]) -> list[str]:
    if not width or len(line) <= width:
        return [line]
    return textwrap.wrap(line, width=width, subsequent_indent="      ", break_long_words=True,
                         break_on_hyphens=False) or [line]


def terminal_width(stream) -> Optional[int]:
    """The width to wrap to: the terminal's when ``stream`` is one, else None (logs keep one line a finding)."""
    import os

    try:
        if stream.isatty():
            return os.get_terminal_size(stream.fileno()).columns
    except (OSError, ValueError, AttributeError):
        return None
    return None


__all__ = ["FOLD_MIN", "fold_names", "label", "render_findings", "terminal_width"]
