"""Audit a fleet: one SSH round trip per host, pure analysis, one report.

The gathering script and the analysis live in :mod:`fleet.audit` (pure); this
module only runs the script through the fan-out and assembles the report.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import shutil
from typing import Iterable

from fleet import shell, table
from fleet.audit import AUDIT_SCRIPT, analyse
from fleet.audit.consistency import fleet_checks
from fleet.audit.expectations import Expectations
from fleet.fanout import FleetResult, run_fleet
from fleet.inventory import Host
from fleet.outcome import HostState, Recap, TaskFailed, status_for
from fleet.progress import Progress
from fleet.status import check_reasons, final_status, reason, state_reason
from verify.status import severity, worst
from fleet.transport import SshOptions, Transport

SCHEMA = "gpufleet.audit/1"


def gather(t: Transport) -> str:
    """The per-host remote work: run the gather script once; its output."""
    r = t.run(shell.script(AUDIT_SCRIPT))
    if r.exit_code != 0:
        raise TaskFailed(f"audit script exited {r.exit_code}: {r.tail(5)}")
    return r.stdout


def analyse_host(host: Host, output: str) -> dict:
    """A host's gather output, analysed against its inventory's expectations (pure)."""
    return analyse(output, Expectations.from_vars(host.vars)).to_dict()


def audit_hosts(hosts: Iterable[Host], options: SshOptions, progress: Progress | bool | None = None) -> FleetResult:
    """Every host's gather, one read-only command each: over OpenSSH's client where the host's entry allows
    (:mod:`fleet.openssh`), paramiko elsewhere.  Each output is analysed as it arrives, by the thread that
    collects the results (:func:`fleet.fanout.run_fleet`'s ``finish``), and dropped once analysed."""
    options = dataclasses.replace(options, openssh=shutil.which("ssh"))
    return run_fleet(hosts, gather, options, desc="audit", progress=progress, finish=analyse_host)


def host_entry(state: HostState, value: dict | None, message: str) -> dict:
    """A host's entry before the verdict: the node analysis (its facts, checks and their worst status) when the
    host was audited, else the status its state maps to."""
    if state is HostState.OK and value is not None:
        return {"state": state.value, **value}
    return {
        "status": status_for(state),
        "state": state.value,
        "message": message,
        "facts": {},
        "checks": [],
    }


def attach_fleet_checks(hosts: dict, host_vars: dict) -> None:
    """Add the fleet-consistency checks (versions against the fleet's majority per GPU model) to each audited
    host; its status is left to :func:`decide`."""
    for name, extra in fleet_checks(hosts, host_vars).items():
        h = hosts[name]
        h["checks"] = list(h.get("checks", [])) + [c.to_dict() for c in extra]


def host_reasons(h: dict) -> list[dict]:
    """Why a host's status is what it is: its state when its work did not end ``ok``; else each of its checks
    that did not pass (the node's, the fleet's, the history's), and the node analysis's own status when that is
    worse than them."""
    if h["state"] != HostState.OK.value:
        return [state_reason(h["state"], h.get("message") or "")]
    out = check_reasons(h.get("checks") or [])
    own = h.get("status")
    if own is not None and severity(own) > severity(worst(r["status"] for r in out)):
        out.append(reason("report", own, f"the node analysis says {own}"))
    return out


def decide_host(h: dict) -> None:
    """One host's final ``status`` and its ``reasons`` (:func:`fleet.status.final_status`)."""
    h["reasons"] = host_reasons(h)
    h["status"] = final_status(h["state"], h["reasons"])


def decide(report: dict) -> dict:
    """The audit's verdict, made in one place: every host's final status and reasons from its state and all its
    checks, then the report's counts and exit code.  Returns ``report``."""
    hosts = report["hosts"]
    for h in hosts.values():
        decide_host(h)
    recap = Recap({name: h["status"] for name, h in hosts.items()})
    del report["hosts"]  # put back last: the counts and the exit code come before the hosts in the document
    report["counts"] = recap.to_dict()
    report["exit_code"] = int(recap.exit_code)
    report["hosts"] = hosts
    return report


def add_fleet_checks(hosts: dict, host_vars: dict) -> None:
    """:func:`attach_fleet_checks`, then each host's status and reasons (:func:`decide_host`)."""
    attach_fleet_checks(hosts, host_vars)
    for h in hosts.values():
        decide_host(h)


def add_history_checks(report: dict, pasts: dict, gpus_past: dict) -> None:
    """Compare each audited host with its past audits (``fleet.history.changes``): its ``history`` block (Xids
    new or known, counter rises, GPU identity flags), the ``counters`` and ``gpu-identity`` checks, the ``xid``
    check's new/known note.  A report from :func:`collect_report` gets its verdict from :func:`decide`, called
    once after this; a report already decided (:func:`build_report`) is decided again by it, over all checks."""
    from fleet.history.changes import HostPast, annotate_xid_check, audited, compare_host

    hosts = report["hosts"]
    for name in audited(report):
        h = hosts[name]
        block, extra = compare_host(name, h, pasts.get(name) or HostPast(), gpus_past)
        h["history"] = block
        h["checks"] = list(h.get("checks", []))
        annotate_xid_check(h["checks"], block["xids"])
        h["checks"] += extra
    if "exit_code" in report:
        decide(report)


def collect_report(result: FleetResult, inventory_path: str, pattern: str) -> dict:
    """The audit report before its verdict: each host's entry (state, facts, its checks and the fleet's); add the
    history checks (:func:`add_history_checks`), then :func:`decide`."""
    hosts = {name: host_entry(r.state, r.value, r.message) for name, r in result.results.items()}
    for name, r in result.results.items():
        hosts[name]["address"] = r.host.address
        hosts[name]["duration_s"] = round(r.duration_s, 3)
    attach_fleet_checks(hosts, {name: r.host.vars for name, r in result.results.items()})
    return {
        "schema": SCHEMA,
        "generated": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "inventory": inventory_path,
        "pattern": pattern,
        "interrupted": result.interrupted,
        "hosts": hosts,
    }


def build_report(result: FleetResult, inventory_path: str, pattern: str) -> dict:
    """The audit report with its verdict, for a run without history checks: :func:`collect_report`, then
    :func:`decide`."""
    return decide(collect_report(result, inventory_path, pattern))


def status_label(h: dict) -> str:
    """The STATUS column: the verdict, or for a host whose work did not end ``ok``, what happened to it."""
    return h["status"] if h["state"] in ("ok", h["status"]) else f"{h['status']} ({h['state']})"


def render_table(report: dict, width: int | None = None) -> str:
    """One line per host (its failing and warning checks named), then every reason a host did not pass, whole
    (:func:`fleet.findings.render_findings`: worst host first, shared findings folded, wrapped to ``width``)."""
    from fleet.findings import render_findings

    rows = []
    for name, h in report["hosts"].items():
        facts = h.get("facts") or {}
        gpus = facts.get("gpus")
        n_smi = len(gpus) if isinstance(gpus, list) else None
        n_pci = facts.get("lspci_gpu_count")
        gpu_col = ("-" if n_smi is None and n_pci is None
                   else f"{n_smi if n_smi is not None else '?'}/{n_pci if n_pci is not None else '?'}")
        named = [r.get("name") for r in h.get("reasons") or [] if r.get("kind") == "check"]
        problems = (", ".join(named[:3]) + (f" (+{len(named) - 3})" if len(named) > 3 else "")) if named else ""
        if h["state"] != "ok":
            problems = "see below"
        rows.append([name, status_label(h), gpu_col, _models(gpus), facts.get("driver_version"),
                     facts.get("cuda_version"), problems])
    out = table.render(["HOST", "STATUS", "GPUS smi/pci", "MODEL", "DRIVER", "CUDA", "PROBLEMS"], rows, max_width=100)
    findings = render_findings(report["hosts"], width)
    if findings:
        out += "\n\nproblems (worst host first):\n" + "\n".join(findings)
    recap = Recap({name: h["status"] for name, h in report["hosts"].items()})
    return f"{out}\n\n{recap.line()}" + ("\ninterrupted (Ctrl-C): hosts that had not finished are marked so"
                                        if report.get("interrupted") else "")


def _models(gpus) -> str:
    if not isinstance(gpus, list) or not gpus:
        return "-"
    names: dict[str, int] = {}
    for g in gpus:
        n = str(g.get("name") or "?")
        names[n] = names.get(n, 0) + 1
    return ", ".join(f"{c}x {n}" for n, c in names.items())
