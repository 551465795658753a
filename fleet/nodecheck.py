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

Without a ``gpufleet_gpu_count`` from either, the GPUs the node should have are the ones Slurm schedules on it
(``Gres=gpu:N`` or ``gpu:TYPE:N`` in ``scontrol show node``, for the node named as for ``--drain``): the check
``gpu-count:slurm`` fails when fewer of them work (nvidia-smi reports fewer, or none) and says what the PCI bus
and the driver see.  Slurm that cannot be asked (no ``scontrol``, no controller within :data:`SLURM_TIMEOUT_S`)
skips that check with the reason.

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
import time
from pathlib import Path

import yaml

from fleet.audit import AUDIT_SCRIPT, analyse
from fleet.audit.expectations import Expectations
from fleet.status import Check, Status, worst

BUDGET_S = 50.0  # Slurm kills a HealthCheckProgram after 60 s
LINE_MAX = 400  # what one log line should hold
SLURM_TIMEOUT_S = 5.0  # for asking Slurm how many GPUs the node has (taken from the budget)


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


def slurm_gres(node: str, timeout: float = SLURM_TIMEOUT_S) -> tuple[str | None, str]:
    """``(Gres=, "")`` of ``node`` as Slurm has it, or ``(None, why not)``."""
    from fleet.slurm.client import SlurmClient, SlurmError

    try:
        found = SlurmClient(timeout=timeout).nodes([node]).get(node)
    except SlurmError as e:
        return None, str(e)
    if found is None:
        return None, f"Slurm has no node {node!r} (give --node)"
    return found.gres, ""


def _count(value) -> str:
    return "unknown" if value is None else str(value)


def slurm_count_check(facts: dict, node: str, gres: str | None, why_not: str = "") -> Check:
    """The ``gpu-count:slurm`` check (pure): the GPUs Slurm schedules on ``node`` (its ``Gres=``; None when Slurm
    could not say, ``why_not``) against those that work here (nvidia-smi reports them), with what the PCI bus
    (lspci) and the driver (/proc/driver/nvidia/gpus) see.  ``facts``: the audit's (``HostFacts.to_dict()``)."""
    from fleet.slurm.nodes import gres_gpus

    name = "gpu-count:slurm"
    if gres is None:
        return Check(name, Status.SKIP, f"no GPU count from Slurm: {why_not}")
    scheduled = gres_gpus(gres)
    if not scheduled:
        return Check(name, Status.SKIP, f"Slurm schedules no GPU on {node} (Gres={gres or '(null)'})")
    working = facts.get("nvidia_smi_gpu_count")
    driver = facts.get("driver_gpu_bus_ids")
    seen = f"PCI bus {_count(facts.get('lspci_gpu_count'))}, driver {_count(None if driver is None else len(driver))}"
    wanted = f"Slurm schedules {scheduled} GPU(s) on {node} (Gres={gres})"
    if working is None:
        said = ((facts.get("nvidia_smi_error") or {}).get("message") or "").strip()
        said = said.splitlines()[0][:120] if said else "no report"
        return Check(name, Status.FAIL, f"{wanted} but none works here: nvidia-smi: {said} ({seen})",
                     observed=0, expected=scheduled)
    if working < scheduled:
        return Check(name, Status.FAIL, f"{wanted} but only {working} work here (nvidia-smi {working}, {seen})",
                     observed=working, expected=scheduled)
    if working > scheduled:
        return Check(name, Status.WARN, f"{working} GPU(s) work here but Slurm schedules only {scheduled} on {node} "
                                        f"(Gres={gres}): is slurm.conf or gres.conf out of date?",
                     observed=working, expected=scheduled)
    return Check(name, Status.PASS, f"{working} GPU(s) work here, as Slurm schedules on {node} (Gres={gres}; {seen})",
                 observed=working, expected=scheduled)


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
    budget, ask_slurm = args.timeout, expect.gpu_count is None
    if ask_slurm:  # nothing says how many GPUs this node should have: Slurm does
        started = time.monotonic()
        gres, why_not = slurm_gres(_node_name(args.node), min(SLURM_TIMEOUT_S, budget / 2))
        budget -= time.monotonic() - started
    audit = analyse(gather(max(1.0, budget)), expect).to_dict()
    if ask_slurm:
        check = slurm_count_check(audit["facts"], _node_name(args.node), gres, why_not)
        audit["checks"].append(check.to_dict())
        audit["status"] = worst([Status(audit["status"]), check.status]).value
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
