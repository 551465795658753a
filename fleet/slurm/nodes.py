"""A Slurm node's state, parsed from ``scontrol show node -o`` (one line per node).  Pure.

``State=`` is a base state and ``+``-joined flags: ``IDLE``, ``MIXED``, ``ALLOCATED``, ``COMPLETING``,
``DOWN``... with ``DRAIN`` (an administrator or a health check took it out of the job pool: ``IDLE+DRAIN`` is
"drained", ``MIXED+DRAIN`` "draining"), ``NOT_RESPONDING``, ``RESERVED``, ``MAINTENANCE``...
``Reason=`` is what the drainer wrote, followed by ``[user@time]``; gpufleet's own reasons start with
:data:`OWN_PREFIX`, and gpufleet only ever touches a node whose reason is its own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping

OWN_PREFIX = "gpufleet:"
BUSY_STATES = frozenset({"ALLOCATED", "MIXED", "COMPLETING"})
DOWN_STATES = frozenset({"DOWN", "FAIL", "FAILING", "FUTURE", "UNKNOWN", "POWERED_DOWN", "POWERING_DOWN"})

# `Key=value` fields; a value runs until the next ` Key=` (Reason= and OS= hold spaces).
_FIELD = re.compile(r"(?:^|\s)([A-Za-z][A-Za-z0-9_:]*)=")
_REASON_BY = re.compile(r"\s*\[(?P<user>[^@\]]+)@(?P<time>[^\]]+)\]\s*$")


def fields(line: str) -> dict[str, str]:
    """``Key=value`` pairs of one ``scontrol -o`` line."""
    marks = list(_FIELD.finditer(line))
    out = {}
    for i, m in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(line)
        out[m.group(1)] = line[m.end():end].strip()
    return out


@dataclass(frozen=True)
class SlurmNode:
    name: str
    state: str  # as Slurm prints it: IDLE, MIXED, IDLE+DRAIN, DOWN+NOT_RESPONDING...
    reason: str = ""  # without its [user@time]
    reason_by: str | None = None
    reason_time: str | None = None
    gres: str = ""  # Gres= as Slurm prints it (gpu:2, gpu:a100:4(S:0-1), ...); "" for none

    @property
    def gpus(self) -> int:
        """The GPUs Slurm schedules on the node (:func:`gres_gpus` of its ``Gres=``)."""
        return gres_gpus(self.gres)

    @property
    def base(self) -> str:
        return self.state.split("+")[0].rstrip("*~#!%$@^-").upper()

    @property
    def flags(self) -> frozenset:
        return frozenset(f.upper() for f in self.state.split("+")[1:])

    @property
    def drained(self) -> bool:
        """Out of the job pool: drained or draining."""
        return "DRAIN" in self.flags or self.base in ("DRAINED", "DRAINING")

    @property
    def down(self) -> bool:
        return self.base in DOWN_STATES or "NOT_RESPONDING" in self.flags

    @property
    def busy(self) -> bool:
        """Running jobs (someone's, or ours)."""
        return self.base in BUSY_STATES

    @property
    def ours(self) -> bool:
        """Drained or down with a reason gpufleet wrote."""
        return self.reason.startswith(OWN_PREFIX)

    def describe(self) -> str:
        out = self.state.lower()
        if self.reason:
            out += f' ("{self.reason}"' + (f" by {self.reason_by}" if self.reason_by else "") + ")"
        return out


def parse_show_node(text: str) -> dict[str, SlurmNode]:
    """``scontrol show node -o`` (or ``scontrol -o show node NAME...``) -> {name: SlurmNode}."""
    nodes = {}
    for line in text.splitlines():
        f = fields(line.strip())
        name = f.get("NodeName")
        if not name:
            continue
        reason, by, when = f.get("Reason", ""), None, None
        if reason in ("(null)", "none", "None"):
            reason = ""
        m = _REASON_BY.search(reason)
        if m:
            by, when, reason = m.group("user"), m.group("time"), reason[:m.start()].strip()
        gres = f.get("Gres", "")
        nodes[name] = SlurmNode(name, f.get("State", "UNKNOWN"), reason, by, when,
                                "" if gres in ("(null)", "N/A") else gres)
    return nodes


_GRES_ITEM = re.compile(r"([^,(]+)(\([^)]*\))?")


def gres_gpus(gres: str) -> int:
    """How many GPUs a ``Gres=`` value holds (pure): ``gpu:2`` 2, ``gpu:a100:4(S:0-1)`` 4,
    ``gpu:a100:2,gpu:v100:1,mps:200`` 3; no ``gpu`` item (``(null)``, ``mps:100``): 0.  A ``gpu`` item without a
    count (``gpu``, ``gpu:a100``) is one GPU, as in slurm.conf."""
    total = 0
    for m in _GRES_ITEM.finditer(gres or ""):
        parts = m.group(1).strip().split(":")
        if parts[0] != "gpu":
            continue
        total += int(parts[-1]) if len(parts) > 1 and parts[-1].isdigit() else 1
    return total


def node_of(host_name: str, host_vars: Mapping) -> str:
    """The Slurm node an inventory host is: ``gpufleet_slurm_node``, else its inventory name."""
    value = host_vars.get("gpufleet_slurm_node")
    return str(value) if value else host_name
