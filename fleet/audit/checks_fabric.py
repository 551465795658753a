"""Checks of the fabric (links are what fail whole jobs): NVLink, InfiniBand/RoCE ports, the Fabric Manager.
Pure: HostFacts + Expectations -> Check.  One host-level check each, named in :data:`FABRIC_CHECK_NAMES`.

What is expected comes from the inventory (``gpufleet_nvlink_count``, ``gpufleet_ib_ports``,
``gpufleet_ib_rate``, ``gpufleet_ib_link_layer``), else from the host itself: the most common figure among
the host's GPUs of one model (NVLink) or ports of one adapter type and link layer (rate), computed with
:func:`fleet_majority`, the same function a fleet-wide comparison uses across hosts
(:func:`observed_figures` gives a host's figures for it).

- ``nvlink``: fails when a GPU has fewer active links than expected; skipped where no GPU has an active
  NVLink and none is expected (PCIe GPUs).  Error counters are reported, not judged.
- ``infiniband``: judges the compute rails (:func:`compute_rails`: the ports ``gpufleet_ib_ports`` names,
  else the host's largest set of identical ports): fails on a rail that is down (physically down: Polling,
  Disabled, which on RoCE means no carrier; or link up but not ACTIVE: no subnet manager), unless
  ``gpufleet_ib_ports`` counts fewer rails than are active; on fewer active rails than ``gpufleet_ib_ports``
  and on a rail slower than expected.  Other ports (front-end, spare) are reported in the message and
  ``details["other_ports"]``, not judged.  Skipped without any RDMA device.  Counters are reported, not judged.
- ``fabric-manager``: on a host whose GPUs report a fabric state or that has NVSwitches on its PCI bus,
  fails on a GPU whose fabric registration is not ``Completed``/``Success`` and on an installed
  ``nvidia-fabricmanager`` service that is not active; warns on an unhealthy fabric health summary and
  where nothing can confirm the fabric (NVSwitches, no per-GPU state, no service unit); skipped elsewhere.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Iterable, Mapping

from fleet.audit.expectations import Expectations
from fleet.audit.facts.fabric import fabric_ok, in_fabric, parse_fabric
from fleet.audit.facts.host import HostFacts
from fleet.audit.facts.infiniband import describe_state
from fleet.status import Check, Status

FABRIC_CHECK_NAMES = ("nvlink", "infiniband", "fabric-manager")


def fleet_majority(values: Iterable) -> tuple:
    """``(value, count)``: the most common of ``values`` (None ignored) and how often it occurs; a tie goes
    to the largest value (the figure the hardware has shown it reaches).  ``(None, 0)`` when empty."""
    counts = Counter(v for v in values if v is not None)
    if not counts:
        return None, 0
    return max(counts.items(), key=lambda kv: (kv[1], kv[0]))


def observed_figures(facts: HostFacts | Mapping) -> dict:
    """A host's fabric figures, for comparisons across the fleet; ``facts``: HostFacts or its ``to_dict()``
    (a host's ``"facts"`` in the audit report)::

        {"nvlink_active": {"<GPU model>": [active links per GPU]},
         "ib_active_ports": {"<link layer>": N}, "ib_rates_gbps": {"<link layer>": [rate per active port]}}

    Across hosts: ``fleet_majority(min(h["nvlink_active"][model]) for h in hosts with that model)``, and so on.
    """
    get = facts.get if isinstance(facts, Mapping) else (lambda key: getattr(facts, key))
    nvlink: dict = {}
    for gpu in get("nvlink") or []:
        nvlink.setdefault(gpu.get("name") or "unknown", []).append(gpu["active"])
    ports: dict = {}
    rates: dict = {}
    for port in get("ib_ports") or []:
        if port["active"]:
            layer = port.get("link_layer") or "unknown"
            ports[layer] = ports.get(layer, 0) + 1
            rates.setdefault(layer, []).append(port.get("rate_gbps"))
    return {"nvlink_active": nvlink, "ib_active_ports": ports, "ib_rates_gbps": rates}


def evaluate_fabric(facts: HostFacts, expect: Expectations) -> list[Check]:
    return [check_nvlink(facts, expect), check_infiniband(facts, expect), check_fabric_manager(facts)]


def _listing(numbers: Iterable) -> str:
    return ", ".join(str(n) for n in numbers)


# ---------------------------------------------------------------- NVLink

def _nonzero_counters(facts: HostFacts) -> dict:
    """{gpu: {counter: total}} for GPUs with a non-zero NVLink error counter."""
    out = {}
    for gpu in facts.nvlink_counters or []:
        bad = {k: v for k, v in gpu.get("totals", {}).items() if v}
        if bad:
            out[gpu["gpu"]] = bad
    return out


def _counter_note(counters: dict) -> str:
    if not counters:
        return ""
    parts = "; ".join(f"GPU {g}: " + ", ".join(f"{k} {v}" for k, v in sorted(c.items()))
                      for g, c in sorted(counters.items()))
    return (f"; NVLink error counters not zero ({parts}): counts since the driver loaded, reported as they stand "
            f"(replays and recoveries are retried by the hardware; a count that keeps growing means a bad link)")


def check_nvlink(facts: HostFacts, expect: Expectations) -> Check:
    name, expected = "nvlink", expect.nvlink_count
    if facts.nvlink is None:
        if facts.nvidia_smi_error is not None:
            return Check(name, Status.SKIP, "NVLink state unknown: nvidia-smi gave no report (see the nvidia-smi "
                                            "check)", expected=expected)
        if facts.nvlink_error is None:
            return Check(name, Status.SKIP, "NVLink state unknown: nvidia-smi nvlink did not run", expected=expected)
        if expected:
            return Check(name, Status.ERROR, f"cannot read NVLink state ({facts.nvlink_error}); "
                                             f"gpufleet_nvlink_count expects {expected} active links per GPU",
                         expected=expected)
        return Check(name, Status.SKIP, f"NVLink state unknown: {facts.nvlink_error}")
    gpus = facts.nvlink
    counters = _nonzero_counters(facts)
    details = {"gpus": {g["gpu"]: {"name": g.get("name"), "active": g["active"], "listed": g["total"],
                                   "inactive_links": [x["link"] for x in g["links"] if not x["active"]],
                                   "speed_gbs": sorted({x["speed_gbs"] for x in g["links"] if x["active"]})}
                        for g in gpus}}
    if counters:
        details["error_counters"] = counters
    if facts.nvlink_counters_error:
        details["error_counters_unknown"] = facts.nvlink_counters_error
    observed = {g["gpu"]: g["active"] for g in gpus}
    if not any(g["active"] for g in gpus):
        if expected:
            return Check(name, Status.FAIL,
                         f"no active NVLink on any GPU, the inventory expects {expected} per GPU: check the NVLink "
                         f"bridges / baseboard and that the Fabric Manager runs (NVSwitch systems)",
                         observed=observed, expected=expected, details=details)
        return Check(name, Status.SKIP, "no active NVLink on this host's GPUs (PCIe GPUs without NVLink or bridges)"
                                        + _counter_note(counters), observed=observed, details=details)
    if expected is not None:
        want = {g["gpu"]: expected for g in gpus}
        source = "gpufleet_nvlink_count"
    else:
        by_model: dict = {}
        for g in gpus:
            by_model.setdefault(g.get("name"), []).append(g["active"])
        majority = {model: fleet_majority(counts)[0] for model, counts in by_model.items()}
        want = {g["gpu"]: majority[g.get("name")] for g in gpus}
        source = "the most common count among this host's GPUs of the same model"
    details["expected_from"] = source
    short = [g for g in gpus if g["active"] < want[g["gpu"]]]
    if short:
        what = "; ".join(f"GPU {g['gpu']}: {g['active']} of {want[g['gpu']]} links active (inactive: "
                         f"{_listing(details['gpus'][g['gpu']]['inactive_links']) or 'not listed'})" for g in short)
        return Check(name, Status.FAIL,
                     f"NVLink down: {what} (expected from {source}): jobs using these GPUs lose NVLink bandwidth or "
                     f"fail; look for XID 74 in the kernel log, reset the GPU, reseat the bridge or RMA the "
                     f"board" + _counter_note(counters), observed=observed, expected=want, details=details)
    extra = [g["gpu"] for g in gpus if expected is not None and g["active"] > expected]
    note = (f"; GPU(s) {_listing(extra)} have more active links than gpufleet_nvlink_count={expected}: update the "
            f"inventory") if extra else ""
    counts = sorted(set(observed.values()))
    return Check(name, Status.PASS,
                 f"every GPU has its expected active NVLinks ({_listing(counts)}; expected from {source})" + note
                 + _counter_note(counters), observed=observed, expected=want, details=details)


# ---------------------------------------------------------------- InfiniBand / RoCE

_LINK_UP = 5


def _port_name(p: dict) -> str:
    return f"{p['device']}/{p['port']}"


def _ib_counters(ports: list) -> dict:
    out = {}
    for p in ports:
        bad = {k: v for k, v in (p.get("counters") or {}).items() if v}
        if bad:
            out[_port_name(p)] = bad
    return out


def _named(p: dict, names) -> bool:
    return _port_name(p) in names or p["device"] in names


def compute_rails(ports: list, expect: Expectations) -> tuple[list, str]:
    """``(rails, where they come from)``: the ports multi-node jobs use.  ``gpufleet_ib_ports`` as names: those
    ports; else the largest set of identical ports (same link layer and adapter model; with a
    ``gpufleet_ib_ports`` count, of ``gpufleet_ib_link_layer`` only).  Ties go to the set with more active
    ports, then the faster one, then InfiniBand.  A down port's rate is a placeholder (40 Gb/s on a down mlx5
    RoCE port), so the rate is not part of the identity: a rail slower than its set is judged as degraded."""
    if expect.ib_port_names:
        return [p for p in ports if _named(p, expect.ib_port_names)], "named by gpufleet_ib_ports"
    candidates = [p for p in ports if expect.ib_ports is None or p.get("link_layer") == expect.ib_link_layer]
    groups: dict = {}
    for p in candidates:
        groups.setdefault((p.get("link_layer"), p.get("hca_type")), []).append(p)
    if not groups:
        return [], f"no {expect.ib_link_layer} port"

    def rank(item):
        (layer, _), members = item
        active = [p for p in members if p["active"]]
        return (len(members), len(active), fleet_majority(p.get("rate_gbps") for p in active)[0] or 0,
                layer == "InfiniBand")

    (layer, model), rails = max(groups.items(), key=rank)
    return rails, f"the host's largest set of identical ports: {len(rails)} {layer} {model or '(model unknown)'}"


def _natural(p: dict) -> list:
    """Sort key: ``mlx5_5/1`` before ``mlx5_11/1``."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", _port_name(p))]


def _listing_ports(ports: list) -> str:
    """``"mlx5_5/1, mlx5_11/1 DOWN/Disabled (Ethernet: no carrier ...)"``: ports grouped by state."""
    groups: dict = {}
    for p in sorted(ports, key=_natural):
        groups.setdefault(describe_state(p), []).append(_port_name(p))
    return "; ".join(f"{', '.join(names)} {state}" for state, names in groups.items())


def check_infiniband(facts: HostFacts, expect: Expectations) -> Check:
    """The compute rails (:func:`compute_rails`) decide: a rail down or without a subnet manager, fewer active
    rails than ``gpufleet_ib_ports``, a rail slower than expected fail; other ports are reported, not judged."""
    name = "infiniband"
    layer, want_ports, want_rate, names = expect.ib_link_layer, expect.ib_ports, expect.ib_rate, expect.ib_port_names
    expected = {k: v for k, v in (("link_layer", layer if names is None else None), ("active_ports", want_ports),
                                  ("ports", list(names) if names else None), ("rate_gbps", want_rate))
                if v is not None} if (want_ports is not None or want_rate is not None or names) else None
    ports = facts.ib_ports
    if ports is None:
        if expected:
            return Check(name, Status.ERROR, f"cannot read the InfiniBand ports: {facts.ib_error or 'no output'}",
                         expected=expected)
        return Check(name, Status.SKIP, f"InfiniBand ports unknown: {facts.ib_error or 'no output'}")
    if not ports:
        if want_ports or names:
            what = f"{want_ports} active {layer} port(s)" if want_ports else f"the ports {', '.join(names)}"
            return Check(name, Status.FAIL,
                         f"no InfiniBand/RoCE device on this host (/sys/class/infiniband empty or absent), the "
                         f"inventory expects {what}: check the adapters and that their driver (mlx5_ib) is loaded",
                         observed=0, expected=expected)
        return Check(name, Status.SKIP, "no InfiniBand/RoCE device on this host", observed=0, expected=expected)
    rails, source = compute_rails(ports, expect)
    others = [p for p in ports if p not in rails]
    active_rails = [p for p in rails if p["active"]]
    fails, notes = [], []
    missing = [n for n in names or () if not any(_named(p, (n,)) for p in ports)]
    if missing:
        fails.append(f"{', '.join(missing)} named in gpufleet_ib_ports but not on this host (ports: "
                     f"{', '.join(_port_name(p) for p in ports)})")
    # a rail whose physical link is up but that is not ACTIVE: no subnet manager configured it
    logical = [p for p in rails if not p["active"] and p.get("phys_state_code") == _LINK_UP
               and p.get("link_layer") != "Ethernet"]
    if logical:
        fails.append("compute rail(s) link up but not ACTIVE (no subnet manager has configured them: check the "
                     "fabric's SM): " + _listing_ports(logical))
    down = [p for p in rails if not p["active"] and p not in logical]
    enough = want_ports is not None and len(active_rails) >= want_ports
    if down and enough:
        notes.append(f"port(s) down beyond the {want_ports} expected: {_listing_ports(down)}")
    elif down:
        fails.append(f"compute rail(s) down: {_listing_ports(down)}: {len(active_rails)} of {len(rails)} rails "
                     f"left, the node should not take multi-node work; check the cable, the transceiver and the "
                     f"switch port" + ("" if names or want_ports is not None else
                                       "; list the rails in gpufleet_ib_ports if a port is meant to be unused"))
    if want_ports is not None and len(active_rails) < want_ports:
        fails.append(f"{len(active_rails)} active {layer} compute rail(s), the inventory expects {want_ports}")
    elif want_ports is not None and len(active_rails) > want_ports:
        notes.append(f"{len(active_rails)} active {layer} ports, more than gpufleet_ib_ports={want_ports}")
    # rates: against the inventory, else against the rails' most common rate
    if want_rate is not None:
        rate, rate_source = want_rate, "gpufleet_ib_rate"
    else:
        rate, rate_source = fleet_majority(p.get("rate_gbps") for p in active_rails)[0], "the rails' most common rate"
    slow = [p for p in active_rails if p.get("rate_gbps") is not None and rate and p["rate_gbps"] < rate]
    if slow:
        fails.append(f"slower than expected ({rate_source}): " + ", ".join(
            f"{_port_name(p)} {p.get('rate')} < {rate:g} Gb/s" for p in slow)
            + ": a degraded width or speed; reseat or replace the cable/transceiver")
    other_down = [p for p in others if not p["active"]]
    counters = _ib_counters(ports)
    observed = {"active_ports": {lay: n for lay, n in observed_figures(facts)["ib_active_ports"].items()},
                "compute_rails": {"active": len(active_rails), "total": len(rails)},
                "ports": {_port_name(p): {"state": p.get("state"), "phys_state": p.get("phys_state"),
                                          "rate": p.get("rate"), "link_layer": p.get("link_layer")} for p in ports}}
    details = {"hca_types": sorted({p.get("hca_type") for p in ports if p.get("hca_type")}),
               "compute_rails": [_port_name(p) for p in rails], "rails_from": source}
    if others:
        details["other_ports"] = {_port_name(p): describe_state(p) for p in others}
    if counters:
        details["error_counters"] = counters
    if other_down:
        notes.append(f"not compute rails, reported only: {_listing_ports(other_down)}")
    note = ("; " + "; ".join(notes)) if notes else ""
    if counters:
        note += ("; error counters not zero on " + ", ".join(sorted(counters))
                 + " (since boot or the last reset; reported as they stand)")
    if fails:
        return Check(name, Status.FAIL, "; ".join(fails) + note, observed=observed, expected=expected, details=details)
    rates = sorted({p.get("rate") for p in active_rails if p.get("rate")})
    return Check(name, Status.PASS, f"{len(active_rails)} compute rail(s) ACTIVE/LinkUp ({'; '.join(rates)}; rails: "
                 f"{source})" + note, observed=observed, expected=expected, details=details)


# ---------------------------------------------------------------- Fabric Manager

def _service_text(service: dict) -> str:
    parts = [service.get("active_state") or "unknown"]
    if service.get("sub_state"):
        parts.append(f"({service['sub_state']})")
    if service.get("result") and service.get("result") != "success":
        parts.append(f"result {service['result']}")
    return " ".join(parts)


def check_fabric_manager(facts: HostFacts) -> Check:
    name = "fabric-manager"
    states = {g.index: parse_fabric(g.fabric) for g in facts.gpus}
    fabric = {i: f for i, f in states.items() if in_fabric(f)}
    switches = facts.nvswitches or []
    service = facts.fabric_manager
    unit_present = service is not None and service.get("load_state") not in (None, "not-found")
    details = {"gpus": {i: {k: v for k, v in f.items() if v is not None} for i, f in fabric.items()},
               "nvswitches": len(switches),
               "service": service if service is not None else (facts.fabric_manager_error or "unknown")}
    observed = {"fabric_states": {i: f"{f.get('state')}/{f.get('status')}" for i, f in fabric.items()},
                "nvswitches": len(switches), "service": service.get("active_state") if unit_present else None}
    if not fabric and not switches:
        bus = ("no NVSwitch is on the PCI bus" if facts.nvswitches is not None
               else f"the PCI bus was not read ({facts.nvswitch_error or 'not run'})")
        if facts.nvidia_smi_error is not None:
            return Check(name, Status.SKIP, f"fabric unknown: nvidia-smi gave no report and {bus}",
                         observed=observed, details=details)
        extra = ""
        if unit_present and service.get("active_state") == "active":
            extra = " (nvidia-fabricmanager is active anyway)"
        return Check(name, Status.SKIP, f"no NVSwitch fabric: no GPU reports a fabric state and {bus}" + extra,
                     observed=observed, details=details)
    fails, warns, notes = [], [], []
    reasons: dict = {}  # reason -> GPU indexes, so eight GPUs in one state make one sentence
    for i, f in sorted(fabric.items()):
        state, status = f.get("state"), f.get("status")
        if fabric_ok(f):
            summary = f.get("health_summary")
            if summary and summary.lower() != "healthy":
                reasons.setdefault(("warn", f"fabric health {summary}" + (
                    f" (bandwidth {f['health_bandwidth']})" if f.get("health_bandwidth") else "")), []).append(i)
            continue
        if (state or "").lower() == "in progress":
            why = ("fabric registration In Progress: the Fabric Manager has not configured the NVLink fabric (not "
                   "running, or its NVLink subnet manager missing on NVLink 5 systems); CUDA cannot initialise "
                   "(cudaErrorSystemNotReady)")
        elif (state or "").lower() == "not started":
            why = "fabric registration Not Started: the Fabric Manager is not running"
        elif (state or "").lower() == "completed":
            why = (f"fabric registration Completed with status {status!r}: the GPU failed to register and loses "
                   f"NVLink peer-to-peer; read the Fabric Manager log")
        else:
            why = f"fabric state {state!r}, status {status!r}"
        reasons.setdefault(("fail", why), []).append(i)
    for (level, why), indexes in reasons.items():
        (fails if level == "fail" else warns).append(f"GPU {_listing(indexes)} {why}")
    if unit_present and service.get("active_state") != "active":
        fails.append(f"nvidia-fabricmanager is {_service_text(service)}: start it (`systemctl start "
                     f"nvidia-fabricmanager`) and read its log (journalctl -u nvidia-fabricmanager); without it the "
                     f"NVSwitch fabric is neither configured after a reset nor monitored")
    elif not unit_present:
        where = ("no nvidia-fabricmanager unit on this host" if service is not None
                 else f"service state unknown ({facts.fabric_manager_error or 'systemctl not run'})")
        if fabric:
            notes.append(f"{where}: it may run inside the GPU Operator's driver container; the GPUs' own fabric "
                         f"state is what is judged")
        else:
            warns.append(f"{len(switches)} NVSwitch(es) on the PCI bus but {where}, and these GPUs report no fabric "
                         f"state (before Hopper): nothing confirms the fabric is configured")
    note = ("; " + "; ".join(notes)) if notes else ""
    if fails:
        return Check(name, Status.FAIL, "; ".join(fails) + note, observed=observed, expected="Completed/Success",
                     details=details)
    if warns:
        return Check(name, Status.WARN, "; ".join(warns) + note, observed=observed, expected="Completed/Success",
                     details=details)
    what = f"{len(fabric)} GPU(s) registered with the NVLink fabric (Completed/Success)" if fabric else \
        f"{len(switches)} NVSwitch(es) on the PCI bus"
    if unit_present:
        what += ", nvidia-fabricmanager active"
    return Check(name, Status.PASS, what + note, observed=observed, expected="Completed/Success", details=details)
