"""Checks of the kernel log's NVIDIA lines: ``xid``, ``sxid`` and one check per other finding
(``kernel:fallen-off-bus``, ``kernel:rm-init-failed``, ``kernel:probe-failed``).  Pure.

An Xid's verdict is NVIDIA's immediate action for it (:mod:`fleet.audit.xid_catalog`), except where the driver's
own text says more, which then decides:

- "caused by previous Xid N" (Xid 45 after an NVLink error, ...): the line follows Xid N's action (for N in
  144-150 with N's lines on the same GPU in the log, the worst of their decoded actions);
- "RST: Yes" / "D-RST: Yes": the driver asks for a GPU reset (or a drain and reset): fail;
  "RST: No, D-RST: No" on a contained error: not a drain; the application is restarted: warn;
- Xid 154 "GPU recovery action changed ... to 0xN (label)": the action the driver names (None warns, any
  other fails);
- Xid 144-150 (NVLink5) in the driver's "UNIT Fatal|Nonfatal XCn in Link L (IntrInfo ErrorStatus ...)" form:
  NVIDIA's decode table (:mod:`fleet.audit.xid_nvlink5`) gives the unit's action for that status: IGNORE on a
  Nonfatal line passes (reported: NVIDIA leaves the GPU in service), IGNORE on a Fatal line warns, XID_154_EVAL
  warns (the Xid 154 the driver logs with it is judged on its own), RESET_GPU fails.  Where the table has no row
  for the unit and status, the line's own word decides: Fatal fails with the catalogue's headline action
  (WORKFLOW_NVLINK5_ERR), Nonfatal warns.  A 144-150 line not in that form follows the headline action.

An Xid the catalogue does not list warns and says so.  An SXid line's "Fatal" / "Non-fatal" decides; a line
without it follows the SXid catalogue.
"""

from __future__ import annotations

from fleet.audit import xid_catalog as cat
from fleet.audit import xid_nvlink5 as nvl5
from fleet.audit.facts.host import HostFacts
from fleet.audit.facts.kernel import normalize_pci
from fleet.status import Check, Status

KERNEL_CHECK_NAMES = ("xid", "sxid", "kernel:fallen-off-bus", "kernel:rm-init-failed", "kernel:probe-failed")
_UNKNOWN = ("kernel log not readable by this user (allow dmesg with sysctl kernel.dmesg_restrict=0, or add "
            "the user to the adm/systemd-journal group)")


def kernel_checks(facts: HostFacts) -> list[Check]:
    if facts.xids is None:
        return [Check("xid", Status.SKIP, f"XIDs unknown: {_UNKNOWN}", observed="unknown"),
                *(Check(name, Status.SKIP, f"unknown: {_UNKNOWN}", observed="unknown")
                  for name in KERNEL_CHECK_NAMES[1:])]
    return [xid_check(facts), sxid_check(facts), *(_event_check(facts, kind) for kind in _EVENTS)]


def classify_xid(x: dict, earlier: dict | None = None) -> dict:
    """One Xid line -> {status, action, advice, reason}: NVIDIA's action for it, or what the driver's text says.
    ``earlier``: {(GPU, Xid): classification} of the NVLink5 lines logged before it (see :func:`xid_check`), which
    a "caused by previous Xid N" line follows; without one of N on its GPU it follows N's catalogue action."""
    n = x["xid"]
    recovery, caused_by, reset = x.get("recovery_action"), x.get("caused_by"), x.get("reset")
    if recovery:
        label = recovery["label"]
        if recovery["code"] == 0:
            status, advice = cat.RECOVERY_ACTIONS["None"]
        else:
            status, advice = cat.RECOVERY_ACTIONS.get(label, (Status.FAIL, f"take the GPU out of service ({label})"))
        return {"status": status, "action": f"recovery action {label}", "advice": advice,
                "reason": f"the driver's recovery action is now {recovery['code']:#x} ({label})"}
    if caused_by is not None and caused_by != n:
        base = (earlier or {}).get((normalize_pci(x.get("pci")), caused_by)) or classify_xid({"xid": caused_by})
        return {**base, "reason": f"caused by previous Xid {caused_by} ({cat.xid_name(caused_by)}): follows "
                                  f"its action ({base['reason']})"}
    if reset and (reset["rst"] or reset["d_rst"]):
        what = "a drain and GPU reset (D-RST: Yes)" if reset["d_rst"] else "a GPU reset (RST: Yes)"
        return {"status": Status.FAIL, "action": "RESET_GPU", "advice": "drain the node and reset the GPU",
                "reason": f"the driver asks for {what}"}
    nvlink = nvl5.decode(n, x.get("message", ""))
    if nvlink is not None:
        return classify_nvlink5(n, nvlink)
    action = cat.xid_action(n)
    status, advice = cat.verdict(action)
    if reset and "contained" in x.get("message", "").lower() and "uncontained" not in x.get("message", "").lower():
        return {"status": Status.WARN, "action": action or "RESTART_APP", "advice": "restart the application",
                "reason": "contained error, the driver needs no reset (RST: No, D-RST: No)"}
    if action is None:
        return {"status": status, "action": None, "advice": advice,
                "reason": f"Xid {n} is not in NVIDIA's catalogue ({cat.CATALOG_VERSION})"}
    return {"status": status, "action": action, "advice": advice, "reason": f"NVIDIA's immediate action: {action}"}


def classify_nvlink5(n: int, d: dict) -> dict:
    """An Xid 144-150 line decoded by :func:`fleet.audit.xid_nvlink5.decode` -> {status, action, advice, reason}."""
    what = (f"{d['unit']} {d['severity']} link {d['link']}, IntrInfo {d['intrinfo']:#010x}, "
            f"error status {d['error_status']:#010x}" if d["intrinfo"] is not None
            else f"{d['unit']} {d['severity']} link {d['link']}, no IntrInfo / error status on the line")
    action, table = d["action"], f"NVIDIA's Xid {n} decode"
    if action is None:
        if d["severity"] == "Fatal":
            status, advice = cat.verdict(cat.xid_action(n))
            return {"status": status, "action": cat.xid_action(n), "advice": advice,
                    "reason": f"{what}: not in {table}; the driver says Fatal"}
        gap = ("the line gives no IntrInfo / error status to decode" if d["intrinfo"] is None
               else "no row of NVIDIA's decode table covers it")
        return {"status": Status.WARN, "action": None, "advice": f"watch the link; {gap} (check nvidia-smi nvlink -e)",
                "reason": f"{what}: not in {table}; the driver says Nonfatal"}
    via = " (its 'Action 2': the IntrInfo matches NVIDIA's action-2 pattern)" if d["action2"] else ""
    said = f"{what}: {table} says {action}{via} ({d['table_severity']}, investigate: {d['investigatory']})"
    if action == "IGNORE" and d["severity"] != "Fatal":
        return {"status": Status.PASS, "action": action, "advice": "no action (NVIDIA leaves the GPU in service)",
                "reason": said}
    if action == "IGNORE":
        return {"status": Status.WARN, "action": action, "advice": "NVIDIA's action is IGNORE, but the driver says "
                "Fatal: the application on this GPU likely failed; watch for a repeat", "reason": said}
    if action == "XID_154_EVAL":
        return {"status": Status.WARN, "action": action, "advice": "follow the recovery action of the Xid 154 "
                "logged with it (restart the application when there is none)", "reason": said}
    status, advice = cat.verdict(action)
    return {"status": status, "action": action, "advice": advice, "reason": said}


_RANK = {Status.PASS: 0, Status.WARN: 1, Status.FAIL: 2}


def _worst(statuses) -> Status:
    statuses = list(statuses)
    return Status.FAIL if Status.FAIL in statuses else Status.WARN if Status.WARN in statuses else Status.PASS


def xid_check(facts: HostFacts) -> Check:
    xids = facts.xids or []
    details = {"source": facts.xid_source, "lines": [x["line"] for x in xids[-5:]], "catalog": cat.CATALOG_SOURCE}
    if not xids:
        return Check("xid", Status.PASS, f"no NVIDIA XID in the kernel log ({facts.xid_source})", observed=[],
                     details=details)
    groups: dict[tuple, dict] = {}
    earlier: dict[tuple, dict] = {}   # (GPU, Xid 144-150) -> the worst decoded line so far
    for x in xids:
        c = classify_xid(x, earlier)
        if x["xid"] in nvl5.XIDS and nvl5.decode(x["xid"], x.get("message", "")) is not None:
            key = (normalize_pci(x["pci"]), x["xid"])
            if key not in earlier or _RANK[c["status"]] > _RANK[earlier[key]["status"]]:
                earlier[key] = c
        key = (x["xid"], c["status"].value, c["reason"])
        g = groups.setdefault(key, {"xid": x["xid"], "name": cat.xid_name(x["xid"]), "count": 0, "pci": [],
                                    **{k: (v.value if k == "status" else v) for k, v in c.items()}})
        g["count"] += 1
        pci = normalize_pci(x["pci"])
        if pci and pci not in g["pci"]:
            g["pci"].append(pci)
    findings = sorted(groups.values(), key=lambda g: (g["status"] != "fail", g["xid"]))
    status = _worst(Status(g["status"]) for g in findings)
    parts = [f"Xid {g['xid']} {g['name']}" + (f" x{g['count']}" if g["count"] > 1 else "")
             + (f" on {', '.join(g['pci'])}" if g["pci"] else "") + f": {g['advice']} ({g['reason']})"
             for g in findings]
    return Check("xid", status, "; ".join(parts), observed=sorted({x["xid"] for x in xids}),
                 expected="no Xid whose action takes the GPU out of service", details={**details, "findings": findings})


def sxid_check(facts: HostFacts) -> Check:
    sxids = facts.sxids or []
    if not sxids:
        return Check("sxid", Status.PASS, f"no NVSwitch SXid in the kernel log ({facts.xid_source})", observed=[])
    groups: dict[int, dict] = {}
    for s in sxids:
        g = groups.setdefault(s["sxid"], {"sxid": s["sxid"], "count": 0, "switches": [], "severity": None})
        g["count"] += 1
        where = " ".join(p for p in (s["switch"], s["pci"]) if p)
        if where not in g["switches"]:
            g["switches"].append(where)
        if s["severity"] == "fatal" or (s["severity"] and g["severity"] is None):
            g["severity"] = s["severity"]
    for g in groups.values():
        action = cat.SXIDS.get(g["sxid"])
        g["action"] = action
        if g["severity"] == "fatal":
            g["status"], g["reason"] = "fail", "the driver says Fatal"
            g["advice"] = cat.verdict(action)[1] if action else "drain the node: fatal NVSwitch error"
        elif g["severity"] == "non-fatal":
            g["status"], g["reason"] = "warn", "the driver says Non-fatal"
            g["advice"] = "watch the link; no action needed"
        else:
            st, g["advice"] = cat.verdict(action)
            g["status"] = st.value
            g["reason"] = (f"NVIDIA's immediate action: {action}" if action
                           else f"SXid {g['sxid']} is not in NVIDIA's SXid catalogue ({cat.CATALOG_VERSION})")
    findings = sorted(groups.values(), key=lambda g: (g["status"] != "fail", g["sxid"]))
    status = _worst(Status(g["status"]) for g in findings)
    message = "; ".join(f"SXid {g['sxid']}" + (f" x{g['count']}" if g["count"] > 1 else "")
                        + f" on {', '.join(g['switches'])}: {g['advice']} ({g['reason']})" for g in findings)
    return Check("sxid", status, message, observed=sorted(groups), expected="no fatal NVSwitch SXid",
                 details={"source": facts.xid_source, "lines": [s["line"] for s in sxids[-5:]], "findings": findings,
                          "catalog": cat.CATALOG_SOURCE})


_EVENTS = {
    "fallen-off-bus": ("fell off the bus", "the driver cannot reach it: drain and reboot the node (NVIDIA's action "
                       "for Xid 79: RESTART_BM); if it recurs check power, cooling and seating, then RMA"),
    "rm-init-failed": ("failed to initialise (RmInitAdapter failed)", "the driver cannot use it: check that driver "
                       "and GPU firmware (GSP) match, power and seating; drain until it initialises"),
    "probe-failed": ("not probed (probe routine failed)", "the NVIDIA module's probe failed, so a GPU on the bus "
                     "has no driver: check the kernel log around it (fallen off the bus, unsupported GPU)"),
}


_PASS = {"fallen-off-bus": "fallen off the bus", "rm-init-failed": "RmInitAdapter failed",
         "probe-failed": "probe routine failed"}


def _event_check(facts: HostFacts, kind: str) -> Check:
    name, (what, advice) = f"kernel:{kind}", _EVENTS[kind]
    events = [e for e in facts.kernel_events or [] if e["kind"] == kind]
    if not events:
        return Check(name, Status.PASS, f"no '{_PASS[kind]}' line in the kernel log ({facts.xid_source})", observed=[])
    gpus = sorted({e["pci"] for e in events if e["pci"]})
    if kind == "probe-failed":
        subject = f"{max(e['detail'] for e in events)} device(s)"
    else:
        subject = f"GPU(s) {', '.join(gpus)}" if gpus else "a GPU (address not logged)"
    note = ""
    if kind == "fallen-off-bus":
        with_79 = {normalize_pci(x["pci"]) for x in facts.xids or [] if x["xid"] == 79}
        without = [g for g in gpus if g not in with_79]
        note = (" (Xid 79 logged too)" if not without else " (no Xid 79 logged)" if without == gpus
                else f" (no Xid 79 logged for {', '.join(without)})")
    codes = sorted({str(e["detail"]) for e in events if kind == "rm-init-failed" and e["detail"]})
    if codes:
        note = f" ({', '.join(codes)})"
    return Check(name, Status.FAIL, f"{subject} {what}{note}: {advice}", observed=gpus or len(events),
                 expected=f"no '{what}' line",
                 details={"source": facts.xid_source, "count": len(events), "lines": [e["line"] for e in events[-5:]]})
