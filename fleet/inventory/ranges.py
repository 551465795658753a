"""Host ranges (``node[01:50]``, ``node[01:50:2]``, ``[a:f]``, ``10.0.0.[100:103]``) and ``host:port``, as Ansible.

Pure functions; errors are :class:`ValueError` with Ansible's wording, turned into
:class:`~fleet.inventory.model.InventoryError` (with file and line) by the parsers.
"""

from __future__ import annotations

import re
import string

_PORT = re.compile(r"^(?P<host>.+?):(?P<port>[0-9]+)$")
_BRACKETED_V6 = re.compile(r"^\[(?P<host>[^\]]+)\](?::(?P<port>[0-9]+))?$")


def expand_range(pattern: str) -> list[str]:
    """Every host name ``pattern`` stands for (itself when it has no ``[x:y]``), in order."""
    if "[" not in pattern:
        return [pattern]
    head, rest = pattern.split("[", 1)
    if "]" not in rest:
        raise ValueError(f"host range in {pattern!r} has no closing ']'")
    nrange, tail = rest.split("]", 1)
    bounds = nrange.split(":")
    if len(bounds) not in (2, 3):
        raise ValueError("host range must be begin:end or begin:end:step")
    beg, end = bounds[0] or "0", bounds[1]
    step = bounds[2] if len(bounds) == 3 else "1"
    if not end:
        raise ValueError("host range must specify end value")
    try:
        stride = int(step)
    except ValueError:
        raise ValueError(f"host range step must be a number, got {step!r}") from None
    if stride < 1:
        raise ValueError("host range step must be a positive number")
    if beg[0] == "0" and len(beg) > 1:
        if len(beg) != len(end):
            raise ValueError("host range must specify equal-length begin and end formats")
        width = len(beg)

        def fill(x) -> str:
            return str(x).zfill(width)
    else:
        fill = str
    if beg in string.ascii_letters and end in string.ascii_letters and len(beg) == len(end) == 1:
        i_beg, i_end = string.ascii_letters.index(beg), string.ascii_letters.index(end)
        if i_beg > i_end:
            raise ValueError("host range must have begin <= end")
        seq: list = list(string.ascii_letters[i_beg:i_end + 1:stride])
    else:
        try:
            seq = list(range(int(beg), int(end) + 1, stride))
        except ValueError:
            raise ValueError(f"host range [{nrange}] is neither numeric nor a single-letter range") from None
    out: list[str] = []
    for item in seq:
        out.extend(expand_range(f"{head}{fill(item)}{tail}"))
    return out


def split_port(pattern: str) -> tuple[str, int | None]:
    """``(host pattern, port or None)`` from ``host``, ``host:port``, ``[v6]:port`` or a bare IPv6 address."""
    m = _BRACKETED_V6.match(pattern)
    if m and ":" in m.group("host") and not _looks_like_range(m.group("host")):
        return m.group("host"), int(m.group("port")) if m.group("port") else None
    # colons inside [..] belong to ranges; a bare IPv6 address has several colons outside them
    outside = re.sub(r"\[[^\]]*\]", "", pattern)
    if outside.count(":") == 1:
        m = _PORT.match(pattern)
        if m and ":" not in re.sub(r"\[[^\]]*\]", "", m.group("host")):
            return m.group("host"), int(m.group("port"))
    return pattern, None


def _looks_like_range(text: str) -> bool:
    parts = text.split(":")
    return len(parts) in (2, 3) and all(re.fullmatch(r"[0-9]*|[A-Za-z]", p) for p in parts)


def expand_host_pattern(pattern: str) -> tuple[list[str], int | None]:
    """``(host names, port)`` for one inventory host entry (ranges expanded, ``:port`` split off)."""
    host, port = split_port(pattern.strip())
    return expand_range(host), port
