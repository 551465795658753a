"""Host patterns as Ansible selects hosts (``ansible PATTERN --list-hosts``).

* separators: ``,`` (or ``:`` when the pattern has no comma; ``[..]`` and IPv6 addresses stay whole);
* each term is a group name, a host name, a shell glob over both (``node0*``) or ``~regex`` (matched from the
  start of the name); a group term with a subscript ``group[0]``, ``group[-1]``, ``group[1:3]`` (inclusive),
  ``group[2:]`` picks from that group's hosts;
* ``!term`` excludes, ``&term`` intersects, wherever written: the unions are applied first, then the
  intersections, then the exclusions; a pattern of only exclusions/intersections starts from ``all``.

The deliberate differences from Ansible: a term that matches no host or group is an error
(:class:`PatternError`), where Ansible warns and goes on; and so is a pattern whose terms all match but whose
intersections or exclusions leave no host (``control:&compute`` with no host in both), where Ansible warns
"No hosts matched" and exits 0: a health check of no host must not look like a passing one (the command layer
exits 2 on a :class:`PatternError`).  Results come in inventory order.
"""

from __future__ import annotations

import fnmatch
import re
from typing import Iterable

from fleet.inventory.errors import PatternError

_SUBSCRIPT = re.compile(r"^(.+)\[(?:(-?[0-9]+)|([0-9]+)([:-])([0-9]*))\]$")
_COLON_TERMS = re.compile(r"(?:[^\s:\[\]]|\[[^\]]*\])+")


def split_pattern(pattern: str) -> list[str]:
    if "," in pattern:
        terms = pattern.split(",")
    elif re.fullmatch(r"[0-9A-Fa-f:]+(%\w+)?", pattern.strip()) and pattern.count(":") >= 2:
        terms = [pattern]  # an IPv6 address
    else:
        terms = _COLON_TERMS.findall(pattern)
    return [t.strip() for t in terms if t.strip()]


def _subscript(term: str) -> tuple[str, tuple | None]:
    if term.startswith("~"):
        return term, None
    m = _SUBSCRIPT.match(term)
    if not m:
        return term, None
    base, idx, start, _sep, end = m.groups()
    if idx is not None:
        return base, (int(idx), None)
    return base, (int(start), int(end) if end else -1)


def _apply(hosts: list[str], sub: tuple | None) -> list[str]:
    if not hosts or not sub:
        return hosts
    start, end = sub
    if end is None:
        try:
            return [hosts[start]]
        except IndexError:
            return []
    if end == -1:
        end = len(hosts) - 1
    return hosts[start:end + 1]


def _compile(expr: str) -> re.Pattern:
    try:
        return re.compile(expr[1:]) if expr.startswith("~") else re.compile(fnmatch.translate(expr))
    except re.error as e:
        raise PatternError(f"invalid host pattern {expr!r}: {e}") from None


def match_term(term: str, hosts: list[str], groups: dict[str, list[str]]) -> list[str]:
    expr, sub = _subscript(term)
    rx = _compile(expr)
    out: list[str] = []
    matched_groups = [g for g in groups if rx.match(g)]
    for g in matched_groups:
        out += [h for h in groups[g] if h not in out]
    if not matched_groups or expr.startswith("~") or any(c in expr for c in ".?*["):
        out += [h for h in hosts if rx.match(h) and h not in out]
    return _apply(out, sub)


def select_names(pattern: str, hosts: Iterable[str], groups: dict[str, list[str]]) -> list[str]:
    """The host names ``pattern`` selects, in inventory order; :class:`PatternError` when a term matches nothing."""
    order = list(hosts)
    terms = split_pattern(pattern or "")
    if not terms:
        raise PatternError("empty host pattern")
    plain = [t for t in terms if t[0] not in "!&"]
    inter = [t[1:] for t in terms if t[0] == "&"]
    excl = [t[1:] for t in terms if t[0] == "!"]
    chosen: list[str] = []
    for term in plain or ["all"]:
        matched = match_term(term, order, groups) if term != "all" or "all" in groups else list(order)
        if not matched:
            raise PatternError(f"pattern term {term!r} matches no host or group")
        chosen += [h for h in matched if h not in chosen]
    for term in inter:
        matched = set(match_term(term, order, groups))
        if not matched:
            raise PatternError(f"pattern term '&{term}' matches no host or group")
        chosen = [h for h in chosen if h in matched]
    emptied_by = "intersection" if inter and not chosen else None
    for term in excl:
        matched = set(match_term(term, order, groups))
        if not matched:
            raise PatternError(f"pattern term '!{term}' matches no host or group")
        chosen = [h for h in chosen if h not in matched]
    picked = set(chosen)
    result = [n for n in order if n in picked]
    if not result:
        if emptied_by:
            why = f"no host is in {' and '.join(repr(t) for t in (plain or ['all']) + inter)} at once"
        else:
            why = f"the exclusions ({', '.join('!' + t for t in excl)}) leave no host"
        raise PatternError(f"pattern {pattern!r} selects no host: each term matches, but {why} (Ansible warns "
                           f"'No hosts matched' and exits 0; gpufleet refuses, so that a check of no host never "
                           f"passes)")
    return result
