"""``slurm-sync``: turn a verify run's verdict into drains and resumes, safely.  :func:`plan` is pure.

The rules (LBNL NHC's practice, and its bugs avoided):

- a host whose verdict is ``fail`` (its own checks failed, or it straggled or regressed) is drained with a reason
  gpufleet owns: ``gpufleet: <first failing check> (run <run id>)``;
- a host that was not judged (unreachable, an error, a timeout, skipped) is never drained on that: a transient
  blip must not take nodes out of service;
- a node drained or down with any reason that is not gpufleet's is never changed (NHC#134 resumed a node an
  administrator had drained); the plan says so;
- a node gpufleet drained is resumed only after ``resume_after`` consecutive passing runs in the history;
- more drains than ``max_drain`` in one run drains nothing (resumes still apply) and fails the command:
  a fleet-wide failure is more likely the tool, the network or a bad update than every node at once
  (NHC#161's mass drains on a timeout);
- applying the same run twice changes nothing the second time (a node already drained by gpufleet stays as it is).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping

from fleet.runs.verdict import reasons_of
from fleet.slurm.nodes import OWN_PREFIX, SlurmNode

DEFAULT_MAX_DRAIN = "10%"
DEFAULT_RESUME_AFTER = 2
REASON_MAX = 120  # Slurm keeps the reason; keep it one readable line


def drain_reason(check: str, run_id: str) -> str:
    reason = f"{OWN_PREFIX} {check} (run {run_id})"
    return reason if len(reason) <= REASON_MAX else reason[:REASON_MAX - 1] + "…"


def max_drain_count(spec: str | int, selected: int) -> int:
    """``--max-drain``: ``N`` nodes, or ``P%`` of the selected nodes (rounded down, at least 1).  ValueError
    when malformed."""
    text = str(spec).strip()
    if text.endswith("%"):
        pct = float(text[:-1])
        if not 0 <= pct <= 100:
            raise ValueError(f"--max-drain: a percentage between 0 and 100, got {spec!r}")
        return max(1, math.floor(selected * pct / 100))
    n = int(text)
    if n < 0:
        raise ValueError(f"--max-drain: a number of nodes >= 0 or a percentage, got {spec!r}")
    return n


@dataclass
class Action:
    host: str
    node: str
    action: str  # drain | resume | none
    why: str
    reason: str | None = None  # the drain reason gpufleet writes

    def to_dict(self) -> dict:
        return {"host": self.host, "node": self.node, "action": self.action, "why": self.why,
                "reason": self.reason}


@dataclass
class Plan:
    run_id: str
    actions: list = field(default_factory=list)
    max_drain: int = 0
    refused: str | None = None  # why no drain is applied

    @property
    def drains(self) -> list:
        return [a for a in self.actions if a.action == "drain"]

    @property
    def resumes(self) -> list:
        return [a for a in self.actions if a.action == "resume"]

    def to_dict(self) -> dict:
        return {"schema": "gpufleet.slurm-sync/1", "run_id": self.run_id, "max_drain": self.max_drain,
                "refused": self.refused, "actions": [a.to_dict() for a in self.actions]}


def first_failure(entry: Mapping) -> str:
    """What a failing host's drain reason names: its first failing reason (a check's name, the metric it
    regressed or straggled on, a pairwise culprit), else its message."""
    for r in reasons_of(entry):
        if r.get("status") not in ("fail", "error"):
            continue
        if r.get("kind") == "check":
            return str(r.get("name"))
        if r.get("kind") == "regression":
            return f"regressed on {r.get('metric')}"
        if r.get("kind") == "straggler":
            return f"straggler on {r.get('metric')}"
        if r.get("kind") == "culprit":  # its evidence is in the run's summary
            return "pairwise culprit"
        return str(r.get("message") or "failed")[:60]
    return str(entry.get("message") or "failed")[:60]


def verdict_of(entry: Mapping) -> str:
    """A host's verdict for syncing: its status, as the verdict decided it (a straggler or a regression is
    already ``fail`` there)."""
    return str(entry.get("status"))


def plan(summary: Mapping, node_names: Mapping[str, str], nodes: Mapping[str, SlurmNode],
         passes_in_a_row: Mapping[str, int], resume_after: int = DEFAULT_RESUME_AFTER,
         max_drain: int = 1) -> Plan:
    """The plan for one verify run's ``summary``: ``node_names`` host -> Slurm node, ``nodes`` their current state,
    ``passes_in_a_row`` each host's consecutive passing runs in the history, up to and including this one."""
    p = Plan(str(summary.get("run_id") or ""), max_drain=max_drain)
    for host, entry in (summary.get("hosts") or {}).items():
        name = node_names.get(host, host)
        node = nodes.get(name)
        verdict = verdict_of(entry)
        if node is None:
            p.actions.append(Action(host, name, "none", "not a Slurm node (scontrol does not know it)"))
            continue
        if (node.drained or node.down) and not node.ours:
            p.actions.append(Action(host, name, "none", f"left alone: {node.describe()}, not gpufleet's"))
            continue
        if verdict == "fail":
            if node.drained and node.ours:
                p.actions.append(Action(host, name, "none", f"already drained by gpufleet ({node.reason})"))
            else:
                p.actions.append(Action(host, name, "drain", f"failed: {first_failure(entry)}",
                                        drain_reason(first_failure(entry), p.run_id)))
        elif verdict in ("pass", "warn"):
            if node.ours and (node.drained or node.down):
                run = passes_in_a_row.get(host, 0)
                if run >= resume_after:
                    p.actions.append(Action(host, name, "resume", f"{run} passing runs in a row since gpufleet "
                                                                  f"drained it ({node.reason})"))
                else:
                    p.actions.append(Action(host, name, "none", f"passing, {run} of {resume_after} passing runs "
                                                                f"in a row needed to resume"))
            else:
                p.actions.append(Action(host, name, "none", "passing"))
        else:
            p.actions.append(Action(host, name, "none", f"not judged ({verdict}, {entry.get('state')}): no change"))
    if len(p.drains) > max_drain:
        p.refused = (f"{len(p.drains)} nodes would be drained, more than --max-drain allows ({max_drain}): a "
                     f"fleet-wide failure is more likely the tool, the network or a bad update than every node "
                     f"at once; nothing drained (check the run, then raise --max-drain to apply)")
    return p


def render(p: Plan, applied: bool) -> str:
    """The plan (or what was done) as text, one line per node."""
    from fleet import table

    verb = {"drain": "drained" if applied else "would drain", "resume": "resumed" if applied else "would resume",
            "none": "no change"}
    rows = []
    for a in p.actions:
        action = a.action
        if action == "drain" and p.refused:
            action = "none"
            why = "drain refused (see below): " + a.why
        else:
            why = a.why + (f' -> reason "{a.reason}"' if a.reason and action == "drain" else "")
        rows.append([a.host, a.node, verb[action], why])
    out = table.render(["HOST", "NODE", "ACTION", "WHY"], rows, max_width=140)
    drains = 0 if p.refused else len(p.drains)
    head = (f"slurm-sync for run {p.run_id}: {drains} to drain, {len(p.resumes)} to resume"
            + ("" if applied else " (dry run: --apply to do it)"))
    return head + "\n" + out + (f"\n\nrefused: {p.refused}" if p.refused else "")
