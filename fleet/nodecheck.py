"""``gpufleet-check``: the audit, run on the node itself, for Slurm's ``HealthCheckProgram`` (or cron, or by hand).

No SSH, no controller: the audit's gather script runs here under ``sh`` (each command with its own time limit,
the whole within :data:`BUDGET_S`, since Slurm kills a health check after 60 s), its output is analysed by the
same pure code as ``gpufleet audit``, and the verdict is one line Slurm can log::

    gpufleet-check: ok: 31 checks passed (2 warn: persistence:gpu0, clocks:gpu1)
    gpufleet-check: FAIL: xid: Xid 79 ... ; ecc:gpu1: 2 uncorrectable ECC error(s) ...

Exit 0 when the node is healthy (pass or warn), 1 when a check fails or errs, 2 for a usage error.

Expectations (``gpufleet_gpu_count``, ``gpufleet_gpu_model``, ``gpufleet_driver_min``...) come from ``--expect FILE``
(a YAML mapping of those variables) or from the inventory (``--inventory PATH``, this node's entry: ``--host``,
else its short host name).

``--drain``: on failure, drain this Slurm node (``--node``, else ``$SLURMD_NODENAME``, else the short host name)
with the reason ``gpufleet: <first failing check> (gpufleet-check)``, unless it is already drained or down: a
node someone else drained keeps their reason, one gpufleet drained keeps its own.  A healthy node is never
resumed here: ``gpufleet slurm-sync`` resumes what gpufleet drained, after enough passing runs.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
from pathlib import Path

import yaml

from fleet.audit import AUDIT_SCRIPT, analyse
from fleet.audit.expectations import Expectations

BUDGET_S = 50.0  # Slurm kills a HealthCheckProgram after 60 s
LINE_MAX = 400  # what one log line should hold


def _node_name(explicit: str | None) -> str:
    return explicit or os.environ.get("SLURMD_NODENAME") or socket.gethostname().split(".")[0]


def expectations(expect: str | None, inventory: str | None, host: str | None) -> Expectations:
    """The node's expectations; ValueError naming the file and what is wrong."""
    if expect:
        try:
            doc = yaml.safe_load(Path(expect).read_text()) or {}
        except (OSError, yaml.YAMLError) as e:
            raise ValueError(f"--expect {expect}: {e}") from None
        if not isinstance(doc, dict):
            raise ValueError(f"--expect {expect}: a mapping of gpufleet_* variables expected")
        return Expectations.from_vars(doc)
    if inventory:
        from fleet.inventory import InventoryError, PatternError, load_inventory

        name = host or socket.gethostname().split(".")[0]
        try:
            found = [h for h in load_inventory(inventory).select("all") if h.name == name]
        except (InventoryError, PatternError) as e:
            raise ValueError(f"--inventory {inventory}: {e}") from None
        if not found:
            raise ValueError(f"--inventory {inventory}: no host {name!r} (give --host)")
        return Expectations.from_vars(found[0].vars)
    return Expectations.from_vars({})


def gather(timeout: float = BUDGET_S) -> str:
    """Run the audit's gather script here; its framed output (a timeout leaves what it printed so far)."""
    try:
        r = subprocess.run(["sh", "-c", AUDIT_SCRIPT], capture_output=True, text=True, timeout=timeout, check=False)
        return r.stdout
    except subprocess.TimeoutExpired as e:
        out = e.stdout or b""
        return out.decode("utf-8", "replace") if isinstance(out, bytes) else out


def verdict_line(audit: dict) -> tuple[str, bool]:
    """(the one line, healthy) for an analysed audit (``HostAudit.to_dict()``)."""
    checks = audit.get("checks") or []
    bad = [c for c in checks if c.get("status") in ("fail", "error")]
    warn = [c["name"] for c in checks if c.get("status") == "warn"]
    if bad:
        text = " ; ".join(f"{c['name']}: {c.get('message', '')}" for c in bad)
        line = f"gpufleet-check: FAIL: {text}"
        return (line if len(line) <= LINE_MAX else line[:LINE_MAX - 1] + "…"), False
    passed = sum(1 for c in checks if c.get("status") == "pass")
    line = f"gpufleet-check: ok: {passed} checks passed" + (f" ({len(warn)} warn: {', '.join(warn)})" if warn else "")
    return (line if len(line) <= LINE_MAX else line[:LINE_MAX - 1] + "…"), True


def first_failure(audit: dict) -> str:
    return next((c["name"] for c in audit.get("checks") or [] if c.get("status") in ("fail", "error")), "failed")


def drain(node: str, check: str) -> str:
    """Drain ``node`` with gpufleet's reason unless it is already drained or down; what was done, in words."""
    from fleet.slurm.client import SlurmClient, SlurmError

    client = SlurmClient(timeout=5)
    try:
        state = client.nodes([node]).get(node)
        if state is None:
            return f"not drained: Slurm has no node {node!r}"
        if state.drained or state.down:
            return f"not drained again: {node} is already {state.describe()}"
        reason = f"gpufleet: {check} (gpufleet-check)"
        client.drain(node, reason)
        return f"drained {node}: {reason}"
    except SlurmError as e:
        return f"not drained: {e}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="gpufleet-check",
        description="Audit this node locally (GPUs, driver, ECC, Xids, PCIe, NVLink, fabric, InfiniBand, toolkit) "
                    "in under a minute: one line, exit 0 healthy, 1 not. For Slurm's HealthCheckProgram.")
    p.add_argument("--expect", help="YAML file of gpufleet_* expectations (gpufleet_gpu_count, gpufleet_gpu_model, "
                                    "gpufleet_driver_min...)")
    p.add_argument("--inventory", help="read the expectations from this inventory's entry for the node instead")
    p.add_argument("--host", help="the node's inventory name (default: its short host name)")
    p.add_argument("--drain", action="store_true", help="on failure, drain this Slurm node with a gpufleet reason")
    p.add_argument("--node", help="this node's Slurm name (default: $SLURMD_NODENAME, else the short host name)")
    p.add_argument("--json", help="also write the full audit of this node (facts and checks) to this path")
    p.add_argument("--timeout", type=float, default=BUDGET_S, help=f"seconds for the whole check (default "
                                                                    f"{BUDGET_S:g}; Slurm allows 60)")
    args = p.parse_args(argv)
    try:
        expect = expectations(args.expect, args.inventory, args.host)
    except ValueError as e:
        print(f"gpufleet-check: {e}", file=sys.stderr)
        return 2
    audit = analyse(gather(args.timeout), expect).to_dict()
    line, healthy = verdict_line(audit)
    if not healthy and args.drain:
        line += f" [{drain(_node_name(args.node), first_failure(audit))}]"
    print(line, flush=True)
    if args.json:
        from fleet.jsonio import write_json_atomic

        write_json_atomic(args.json, audit)
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
