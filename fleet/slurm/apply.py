"""``slurm-sync`` at the edges: read the run and the nodes, plan (:mod:`fleet.slurm.sync`), apply when asked."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Mapping

from fleet.outcome import ExitCode
from fleet.runs.rejudge import rejudge
from fleet.slurm.client import SlurmClient, SlurmError
from fleet.slurm.sync import Plan, max_drain_count, plan, render


def passes(db_path, hosts, until: str | None) -> dict[str, int]:
    """Each host's consecutive passing verify runs in the history up to ``until`` (0 without a history)."""
    from fleet.history import connect
    from fleet.history.query import passes_in_a_row

    if db_path is None or not Path(db_path).exists():
        return {h: 0 for h in hosts}
    db = connect(db_path)
    try:
        return {h: passes_in_a_row(db, h, "verify", until) for h in hosts}
    finally:
        db.close()


def sync(run_dir, client: SlurmClient, node_names: Mapping[str, str], db_path, apply: bool,
         max_drain: str, resume_after: int) -> tuple[str, dict, int]:
    """(text, the plan as ``gpufleet.slurm-sync/1``, exit code).  Raises ValueError / FileNotFoundError for a bad
    run directory or --max-drain, :class:`SlurmError` when Slurm cannot be asked."""
    summary, meta = rejudge(run_dir)  # a pairwise run's culprits fail there too
    hosts = list(summary["hosts"])
    names = {h: node_names.get(h, h) for h in hosts}
    cap = max_drain_count(max_drain, len(hosts))
    try:
        in_a_row = passes(db_path, hosts, meta.get("finished") or meta.get("started"))
    except (OSError, sqlite3.Error, RuntimeError) as exc:
        raise SlurmError(f"history not read from {db_path}: {exc}") from None
    p = plan(summary, names, client.nodes(sorted(set(names.values()))), in_a_row, resume_after, cap)
    if not apply:
        return render(p, applied=False), p.to_dict(), int(ExitCode.HOSTS_FAILED if p.refused else ExitCode.OK)
    problems = _apply(p, client)
    text = render(p, applied=True) + "".join(f"\nnot applied: {m}" for m in problems)
    doc = p.to_dict() | {"applied": True, "problems": problems}
    return text, doc, int(ExitCode.HOSTS_FAILED if (p.refused or problems) else ExitCode.OK)


def _apply(p: Plan, client: SlurmClient) -> list[str]:
    """Apply the plan, each change checked against the node's state read just before it (someone may have
    drained it since the plan was made); returns what could not be applied."""
    problems = []
    todo = ([] if p.refused else p.drains) + p.resumes
    now = client.nodes(sorted({a.node for a in todo})) if todo else {}
    for a in todo:
        node = now.get(a.node)
        try:
            if node is None:
                problems.append(f"{a.node}: Slurm no longer knows it")
            elif (node.drained or node.down) and not node.ours:
                problems.append(f"{a.node}: left alone, {node.describe()} since the plan was made")
                a.action, a.why = "none", f"left alone: {node.describe()}, not gpufleet's"
            elif a.action == "drain":
                client.drain(a.node, a.reason or "")
            else:
                client.resume(a.node)
        except SlurmError as exc:
            problems.append(f"{a.node}: {exc}")
    return problems
