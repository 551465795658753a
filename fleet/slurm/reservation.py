"""The maintenance reservation gpufleet holds while it re-checks the nodes it drained (pure: argv and parsing).

Slurm starts no job on a drained node, not even one inside a reservation.  So, for ``verify --via slurm``, a node
gpufleet drained is re-checked like this (``fleet.slurm.jobs.recheck_window`` does it):

1. ``scontrol create reservation ReservationName=gpufleet-recheck Nodes=<those nodes> StartTime=now
   Duration=<minutes> Users=<the submitting user> Flags=maint,ignore_jobs``: from now on only that user's jobs
   that ask for the reservation may start there;
2. the node is resumed (``State=RESUME``) just before its job is submitted with ``--reservation=gpufleet-recheck``
   (the node shows ``IDLE+MAINTENANCE+RESERVED``: nobody else's job lands on it);
3. at the end of the run (also on an error or Ctrl-C) each such node is drained again with its own gpufleet
   reason (``slurm-sync`` resumes it after its passing runs), then the reservation is deleted
   (``scontrol delete ReservationName=gpufleet-recheck``).

A reservation of that name left by a run that died is gpufleet's when it has the ``MAINT`` flag: it is updated
(``Nodes=``, ``EndTime=now+<minutes>minutes``, ``Users=``) and reused; one without the flag is someone else's and
is left alone (the drained nodes are then not re-checked).
"""

from __future__ import annotations

import math
import re

from fleet.slurm.nodes import fields

NAME = "gpufleet-recheck"
MARGIN_MIN = 10  # the push before the job, and the drain after it


def minutes(timeout: float, pending_s: float) -> int:
    """How long the reservation lasts: a re-check job's whole life (pending up to ``pending_s``, running up to
    ``timeout`` seconds, as ``fleet.slurm.jobs`` allows it) and :data:`MARGIN_MIN` more."""
    return math.ceil((timeout + pending_s) / 60) + MARGIN_MIN


def create_argv(nodes: list[str], length_min: int, user: str, name: str = NAME) -> list[str]:
    return ["scontrol", "create", "reservation", f"ReservationName={name}", f"Nodes={','.join(nodes)}",
            "StartTime=now", f"Duration={length_min}", f"Users={user}", "Flags=maint,ignore_jobs"]


def update_argv(nodes: list[str], length_min: int, user: str, name: str = NAME) -> list[str]:
    """Reuse a reservation an earlier run left: its nodes, a new end (it may have started long ago), the user."""
    return ["scontrol", "update", f"ReservationName={name}", f"Nodes={','.join(nodes)}",
            f"EndTime=now+{length_min}minutes", f"Users={user}"]


def delete_argv(name: str = NAME) -> list[str]:
    return ["scontrol", "delete", f"ReservationName={name}"]


def show_argv(name: str = NAME) -> list[str]:
    return ["scontrol", "-o", "show", "reservation", name]


def parse_show(text: str) -> dict[str, str] | None:
    """``scontrol -o show reservation NAME``'s fields; None when it printed no reservation."""
    line = next((ln.strip() for ln in text.splitlines() if ln.strip().startswith("ReservationName=")), "")
    return fields(line) if line else None


def flags(info: dict) -> frozenset:
    return frozenset(f.strip().upper() for f in info.get("Flags", "").split(",") if f.strip())


def is_ours(info: dict) -> bool:
    """A reservation named :data:`NAME` is gpufleet's when it is a maintenance reservation, as gpufleet makes it."""
    return info.get("ReservationName") == NAME and "MAINT" in flags(info)


_RANGE = re.compile(r"^(\d+)(?:-(\d+))?$")
_ITEM = re.compile(r"[^,\[]+(?:\[[^\]]*\][^,\[]*)?")


def hostnames(expr: str) -> list[str]:
    """A Slurm host list (``gpu[2-3,7],login01``, ``n[001-003]``) as names, in order (pure; ``(null)``: none).
    ValueError for one it cannot read (two bracket groups in one name included)."""
    if not expr or expr in ("(null)", "N/A"):
        return []
    items = _ITEM.findall(expr)
    if ",".join(items) != expr:
        raise ValueError(f"malformed host list {expr!r}")
    out: list[str] = []
    for item in items:
        m = re.fullmatch(r"([^\[\]]*)\[([^\]]+)\]([^\[\]]*)", item)
        if not m:
            if "[" in item or "]" in item:
                raise ValueError(f"malformed host list {expr!r}")
            out.append(item)
            continue
        prefix, ranges, suffix = m.groups()
        for part in ranges.split(","):
            r = _RANGE.match(part)
            if not r:
                raise ValueError(f"malformed host list {expr!r}")
            lo, hi = r.group(1), r.group(2) or r.group(1)
            width = len(lo) if lo.startswith("0") else 0
            out.extend(f"{prefix}{str(i).zfill(width)}{suffix}" for i in range(int(lo), int(hi) + 1))
    return out
