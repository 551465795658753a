"""The fleet side of ``invoke provision``: fan out, verify with the audit, report, exit code.

``provision_hosts`` runs :class:`provision.apply.Provisioner` on every host (bounded
fan-out); ``audit_toolkit`` re-runs the audit on the hosts that were reached and keeps
its toolkit check, so the output ends with each node's verified state; ``build_report``
and ``render`` turn it all into the JSON report (``gpufleet.provision/1``) and the text.
"""

from __future__ import annotations

import datetime as _dt
from typing import Iterable

from fleet import table
from fleet.fanout import FleetResult, run_fleet
from fleet.inventory import Host
from fleet.outcome import PASS, PASSING, HostState, Recap, TaskFailed, status_for
from fleet.progress import Progress
from fleet.transport import SshOptions, Transport
from provision.apply import CHANGED, FAILED, OK, SKIPPED, provision_host
from provision.secrets import Scrubber, secrets_of
from provision.settings import Overrides, SettingsError, resolve

SCHEMA = "gpufleet.provision/2"
AUDIT_CHECKS = ("container-toolkit",)  # the audit's checks about the toolkit and docker's runtimes


def provision_hosts(hosts: Iterable[Host], overrides: Overrides, options: SshOptions, check: bool = False,
                    progress: Progress | bool | None = None) -> FleetResult:
    hosts = list(hosts)
    tasks = {}
    for h in hosts:
        try:
            settings = resolve(h.vars, overrides)
        except SettingsError as e:
            tasks[h.name] = _refuse(f"inventory: {e}")
        else:
            tasks[h.name] = (lambda s: lambda t: provision_host(t, s, check))(settings)
    return run_fleet(hosts, lambda t: tasks[t.host.name](t), options,
                     desc="provision --check" if check else "provision", progress=progress)


def _refuse(message: str):
    def task(t: Transport):
        raise TaskFailed(message, {"status": FAILED, "message": message, "steps": [], "validation": []})
    return task


def audit_toolkit(result: FleetResult, options: SshOptions, progress: Progress | bool | None = None) -> dict[str, dict]:
    """The audit's toolkit check on every host that was reached: ``{name: {"status", "message"}}``."""
    reached = [r.host for r in result if r.state in (HostState.OK, HostState.FAILED)]
    if not reached:
        return {}
    try:
        from fleet.audit import run as audit_run  # the audit is optional for provisioning; imported when used
    except ImportError as e:  # pragma: no cover - a partial install
        return {r.name: {"status": "skip", "message": f"audit unavailable: {e}", "checks": []} for r in reached}
    audited = audit_run.audit_hosts(reached, options, progress=progress)
    out = {}
    for r in audited:
        if r.state is HostState.OK and isinstance(r.value, dict):
            checks = [c for c in r.value.get("checks", []) if c.get("name") in AUDIT_CHECKS]
            out[r.host.name] = {"status": checks[0]["status"] if checks else "skip",
                                "message": "; ".join(c.get("message", "") for c in checks) or "no toolkit check",
                                "checks": checks}
        else:
            out[r.host.name] = {"status": "error", "message": f"audit {r.state.value}: {r.message}", "checks": []}
    return out


def host_entry(r, audit: dict | None) -> dict:
    """A host's entry: ``status`` in the shared vocabulary (pass when every step ended ok or changed),
    ``changed`` whether a step changed (or, in check mode, would change) the host."""
    value = r.value if isinstance(r.value, dict) else {}
    entry = dict(value)
    entry["changed"] = value.get("status") == CHANGED or any(s.get("status") == CHANGED for s in value.get("steps", []))
    entry["status"] = status_for(r.state, PASS)
    if r.state is not HostState.OK:
        entry["message"] = r.message
    entry.setdefault("steps", [])
    entry.setdefault("validation", [])
    entry["state"] = r.state.value
    entry["address"] = r.host.address
    entry["duration_s"] = round(r.duration_s, 3)
    if audit is not None:
        entry["audit"] = audit
    return entry


def build_report(result: FleetResult, inventory_path: str, pattern: str, check: bool,
                 audit: dict[str, dict] | None = None, password: str | Iterable[str | None] | None = None) -> dict:
    """The report, every secret masked: ``password`` (the sudo password, or a list of secrets) and every
    host's own SSH and become passwords from the inventory."""
    audit = audit or {}
    secrets = [password] if isinstance(password, str) or password is None else list(password)
    secrets += secrets_of(r.host for r in result)
    hosts = {name: host_entry(r, audit.get(name)) for name, r in result.results.items()}
    recap = _recap(hosts)
    report = {
        "schema": SCHEMA,
        "generated": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "inventory": inventory_path,
        "pattern": pattern,
        "check": check,
        "interrupted": result.interrupted,
        "counts": recap.to_dict(),
        "exit_code": int(recap.exit_code),
        "hosts": hosts,
    }
    return Scrubber(secrets)(report)


def _recap(hosts: dict) -> Recap:
    changed = [name for name, h in hosts.items() if h["changed"]]
    return Recap({name: h["status"] for name, h in hosts.items()}, changed=changed)


_MARK = {OK: "ok", CHANGED: "changed", SKIPPED: "skipped", FAILED: "FAILED"}


def render(report: dict) -> str:
    check = report.get("check")
    out: list[str] = []
    if check:
        out.append("check mode: nothing was changed; 'changed' steps list the commands they would run")
        out.append("")
    for name, h in report["hosts"].items():
        label = ("changed" if h["changed"] else "ok") if h["status"] in PASSING else h["status"].upper()
        head = f"{name}  {label}"
        if h.get("os"):
            head += f"  {h['os']} ({h.get('family') or '?'})"
        head += f"  {h.get('duration_s', 0):.1f}s"
        out.append(head)
        if h["status"] not in PASSING and h.get("message") and not any(
                s["status"] == FAILED for s in h.get("steps", [])):
            out.append(f"  {h['message']}")
        for s in h.get("steps", []):
            label = _MARK.get(s["status"], s["status"])
            if check and s["status"] == CHANGED:
                label = "would change"
            out.append(f"  {label:<13} {s['name']:<19} {s['message']}")
            if check or s["status"] == FAILED:
                for c in s.get("commands", []):
                    lines = c.splitlines() or [""]
                    out.append(f"{'':17}$ {lines[0]}")
                    out.extend(f"{'':19}{line}" for line in lines[1:])
            if s["status"] == FAILED and s.get("output"):
                out.extend(f"{'':17}| {line}" for line in s["output"].splitlines()[-6:])
        for v in h.get("validation", []):
            out.append(f"  {'check ' + v['status']:<13} {v['name']:<19} {v['message']}")
        out.append("")
    rows = [[name, h["audit"]["status"], h["audit"]["message"]]
            for name, h in report["hosts"].items() if h.get("audit")]
    if rows:
        out.append("verified state (the audit's toolkit check, run after provisioning):")
        out.append(table.render(["HOST", "TOOLKIT", "AUDIT SAYS"], rows, max_width=110))
        out.append("")
    out.append(_recap(report["hosts"]).line() + (" (check mode: changed = would change)" if check else ""))
    return "\n".join(out)
