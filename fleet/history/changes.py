"""What changed on an audited host since its past audits: Xids new or known, counters that rose, GPUs that moved.

Pure functions.  The past comes in as plain data read from the history before this run is recorded
(:func:`fleet.history.query.audit_past`); the findings go out as two checks per host and a ``history`` block in
the host's audit entry:

- **Xids, new or known.**  An Xid line (its identity: the kernel log's own timestamp makes each occurrence a line
  of its own) already recorded by an earlier audit of the same host *in the same boot* (the kernel's
  ``boot_id``) is ``known``, with when it was first seen; any other is ``new``.  The ``xid`` check keeps its
  verdict (a critical Xid fails the node until it reboots); its message and details say which is which.
- **Counters** (:data:`WARN_ON_RISE`): each counter's rise since the host's previous audit.  Since-boot counters
  (:data:`SINCE_BOOT`) restart at a reboot, so after one (another ``boot_id``), or whenever a counter went down
  (a reset), the rise is counted from zero.  Check ``counters``: warns when any rose, names each.
- **GPU identity** (check ``gpu-identity``, warns): a GPU whose UUID was last seen on another host (``moved``), a
  PCI slot whose GPU is not the one it held at the host's previous audit (``slot-changed``), a GPU that failed a
  per-GPU check before and comes back moved (``lemon``: back from repair, or swapped into another node).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping

from fleet.history.db import audit_counters, xid_events

# Counters whose rise warns: error counters and time spent in a throttle that protects the hardware.  Time in
# SW power cap, sync boost or idle rises on a healthy GPU and is not watched.
WARN_ON_RISE = (
    "ecc/aggregate_correctable", "ecc/aggregate_uncorrectable", "ecc/volatile_correctable",
    "ecc/volatile_uncorrectable", "retired_pages/single_bit", "retired_pages/double_bit",
    "remapped_rows/correctable", "remapped_rows/uncorrectable", "pcie/replays", "pcie/rollovers",
    "throttle_us/hw_slowdown", "throttle_us/hw_thermal", "throttle_us/hw_thermal_slowdown",
    "throttle_us/hw_power_brake", "throttle_us/hw_power_brake_slowdown", "throttle_us/sw_thermal",
    "ib/",  # every InfiniBand port counter the audit reads is an error counter (facts/infiniband.py)
)
# Counters that count since the driver loaded or the node booted (a reboot sets them back to zero).
SINCE_BOOT = ("ecc/volatile_", "pcie/", "throttle_us/", "ib/")


def _watched(key: str) -> bool:
    base = key.split(":", 1)[0]
    return any(base == w or (w.endswith("/") and base.startswith(w)) for w in WARN_ON_RISE)


@dataclass
class HostPast:
    """One host's past audits, as the history holds them."""

    previous: dict | None = None  # the last audit: {"run_id", "started", "status", "boot_id", "counters"}
    xids: dict = field(default_factory=dict)  # {(boot_id or "", line): first seen (ISO time)}
    slots: dict = field(default_factory=dict)  # {PCI slot: UUID} at the previous audit


@dataclass
class GpuPast:
    """One GPU's past sightings (by UUID), on any host."""

    last: dict | None = None  # {"host", "slot", "started"}: where it was last seen
    failed: dict | None = None  # {"host", "slot", "started"}: where it last failed a per-GPU check


def classify_xids(facts: Mapping, past: HostPast) -> list[dict]:
    """Each Xid line of this audit: ``{"xid", "pci", "line", "new", "first_seen"}`` (first_seen None when new)."""
    boot = facts.get("boot_id") or ""
    out = []
    for x in xid_events(facts):
        first = past.xids.get((boot, x["line"]))
        out.append({**x, "new": first is None, "first_seen": first})
    return out


def counter_deltas(facts: Mapping, past: HostPast) -> list[dict]:
    """The watched counters that rose since the previous audit: ``{"metric", "previous", "value", "delta"}``."""
    if past.previous is None:
        return []
    before = past.previous.get("counters") or {}
    rebooted = bool(facts.get("boot_id") and past.previous.get("boot_id")
                    and facts.get("boot_id") != past.previous.get("boot_id"))
    out = []
    for key, value in sorted(audit_counters(facts).items()):
        if not _watched(key) or key not in before:
            continue
        previous = before[key]
        restarted = value < previous or (rebooted and key.startswith(SINCE_BOOT))
        delta = value if restarted else value - previous
        if delta > 0:
            out.append({"metric": key, "previous": previous, "value": value, "delta": delta,
                        "restarted": restarted})
    return out


def gpu_flags(host: str, facts: Mapping, past: HostPast, gpus_past: Mapping[str, GpuPast]) -> list[dict]:
    """Identity findings for this host's GPUs: ``{"flag": "moved" | "slot-changed" | "lemon", "uuid", "slot",
    "message", ...}``."""
    out = []
    gpus = facts.get("gpus") if isinstance(facts.get("gpus"), list) else []
    for g in gpus:
        uuid, slot = g.get("uuid"), g.get("pci_bus_id")
        if not uuid:
            continue
        gp = gpus_past.get(uuid) or GpuPast()
        moved = gp.last is not None and gp.last.get("host") != host
        if moved:
            out.append({"flag": "moved", "uuid": uuid, "slot": slot, "from_host": gp.last["host"],
                        "from_slot": gp.last.get("slot"), "last_seen": gp.last.get("started"),
                        "message": f"GPU {uuid} (slot {slot}) was last seen on {gp.last['host']} "
                                   f"(slot {gp.last.get('slot')}, {gp.last.get('started')})"})
        before = past.slots.get(slot) if slot else None
        if before is not None and before != uuid:
            out.append({"flag": "slot-changed", "uuid": uuid, "slot": slot, "previous_uuid": before,
                        "message": f"slot {slot} held GPU {before} at the previous audit; now GPU {uuid}"})
        came_back = moved or (before is not None and before != uuid)
        if gp.failed is not None and came_back:
            out.append({"flag": "lemon", "uuid": uuid, "slot": slot, "failed_on": gp.failed["host"],
                        "failed_at": gp.failed.get("started"),
                        "message": f"GPU {uuid} failed a check on {gp.failed['host']} "
                                   f"({gp.failed.get('started')}) and is back in service here"})
    return out


def _check(name: str, status: str, message: str, details: dict) -> dict:
    return {"name": name, "status": status, "message": message, "observed": None, "expected": None,
            "details": details}


def annotate_xid_check(checks: list[dict], xids: list[dict]) -> None:
    """Say in the ``xid`` check which of its lines are new and which known (its status is left as it is)."""
    for c in checks:
        if c.get("name") != "xid" or not xids:
            continue
        new = [x for x in xids if x["new"]]
        known = [x for x in xids if not x["new"]]
        first = min((x["first_seen"] for x in known), default=None)
        note = (f"{len(new)} new since the last audit" if new else "") + (
            (", " if new else "") + f"{len(known)} known (first seen {first})" if known else "")
        c["message"] = f"{c.get('message', '')} [{note}]"
        details = dict(c.get("details") or {})
        details.update(new=[x["line"] for x in new], known=[{"line": x["line"], "first_seen": x["first_seen"]}
                                                           for x in known])
        c["details"] = details


def compare_host(host: str, entry: Mapping, past: HostPast, gpus_past: Mapping[str, GpuPast]) -> tuple:
    """(history block, checks to add) for one audited host's entry (an audit report's ``hosts[host]``)."""
    facts = entry.get("facts") or {}
    xids = classify_xids(facts, past)
    deltas = counter_deltas(facts, past)
    flags = gpu_flags(host, facts, past, gpus_past)
    prev = past.previous
    block = {"previous_run": None if prev is None else {k: prev.get(k) for k in ("run_id", "started", "status")},
             "xids": xids, "counter_deltas": deltas, "gpu_flags": flags}
    checks = []
    if prev is None:
        checks.append(_check("counters", "skip", "no previous audit of this host in the history", {}))
    elif deltas:
        parts = [f"{d['metric']} +{d['delta']:g}" + (" (since a reset)" if d["restarted"] else "") for d in deltas]
        checks.append(_check("counters", "warn", f"rose since the previous audit ({prev.get('started')}): "
                             + ", ".join(parts), {"deltas": deltas}))
    else:
        checks.append(_check("counters", "pass", f"no error or throttle counter rose since the previous audit "
                             f"({prev.get('started')})", {}))
    if flags:
        checks.append(_check("gpu-identity", "warn", "; ".join(f["message"] for f in flags), {"flags": flags}))
    elif facts.get("gpus"):
        checks.append(_check("gpu-identity", "pass", "every GPU is where the history last saw it", {}))
    return block, checks


def gpu_uuids(report: Mapping) -> set[str]:
    """Every GPU UUID an audit report's facts name."""
    out = set()
    for h in (report.get("hosts") or {}).values():
        gpus = (h.get("facts") or {}).get("gpus")
        if isinstance(gpus, list):
            out.update(g["uuid"] for g in gpus if isinstance(g, Mapping) and g.get("uuid"))
    return out


HISTORY_CHECK_NAMES = ("counters", "gpu-identity")


def audited(report: Mapping) -> Iterable[str]:
    """The hosts of an audit report that were audited (their facts were read)."""
    return [h for h, e in (report.get("hosts") or {}).items() if e.get("state") == "ok" and e.get("facts")]
