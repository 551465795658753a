"""Fleet consistency without a golden file: versions that differ from the fleet's majority, per GPU model.

Pure: host entries of the audit report in (``{"facts": {...}, "checks": [...], ...}``), extra checks per
host out.  For every GPU model, each version the audit read (driver, CUDA, VBIOS, InfiniBand firmware,
kernel) is compared with the value most of that model's hosts have; a host that differs from a strict
majority warns, naming the majority value and how many hosts have it.  No per-model thresholds: the
fleet is the reference.  Where the inventory pins a version (``gpufleet_driver_version``), the pin is
checked by its own check and the fleet's majority is not consulted for it.
"""

from __future__ import annotations

from collections import Counter
from typing import Callable, Iterable, Mapping, Optional

from fleet.audit.checks_fabric import compute_rails
from fleet.audit.expectations import Expectations
from fleet.status import Check, Status

# check name -> (what, how to read it from a host's facts); a reader returns None when the host has no value.
Reader = Callable[[Mapping], Optional[str]]


def _one(values: Iterable) -> Optional[str]:
    """The single value of a host's per-device values ("a, b" when its devices disagree; None when none)."""
    found = sorted({str(v) for v in values if v not in (None, "")})
    return ", ".join(found) if found else None


def _gpus(facts: Mapping) -> list:
    gpus = facts.get("gpus")
    return gpus if isinstance(gpus, list) else []


def _ib_firmware(facts: Mapping) -> Optional[str]:
    ports = facts.get("ib_ports")
    return _one(p.get("fw_ver") for p in ports if isinstance(p, Mapping)) if isinstance(ports, list) else None


FIELDS: dict[str, tuple[str, Reader]] = {
    "consistency:driver": ("driver", lambda f: f.get("driver_version")),
    "consistency:cuda": ("CUDA", lambda f: f.get("cuda_version")),
    "consistency:vbios": ("VBIOS", lambda f: _one(g.get("vbios_version") for g in _gpus(f))),
    "consistency:ib-firmware": ("InfiniBand firmware", _ib_firmware),
    "consistency:kernel": ("kernel", lambda f: f.get("kernel")),
}
# Fabric figures a host must not fall below the fleet's majority on (fail, not warn: a missing link or a
# slow port fails whole jobs): the weakest GPU's NVLinks, the compute rails' active count and slowest rate;
# an inventory expectation replaces the fleet's majority (checked by the host's own `nvlink` / `infiniband`
# check).
FABRIC_CHECKS = {"consistency:nvlink": "gpufleet_nvlink_count", "consistency:infiniband": ("gpufleet_ib_ports",
                                                                                             "gpufleet_ib_rate")}
CHECK_NAMES = tuple(FIELDS) + tuple(FABRIC_CHECKS)

# inventory pins that take a field out of the fleet comparison
PINNED_BY = {"consistency:driver": "gpufleet_driver_version"}


def gpu_model(facts: Mapping) -> Optional[str]:
    """The host's GPU model (its first GPU's name), or None for a host nvidia-smi reported no GPU on."""
    gpus = _gpus(facts)
    name = gpus[0].get("name") if gpus and isinstance(gpus[0], Mapping) else None
    return str(name) if name else None


def majority(values: Iterable[str]) -> tuple[Optional[str], int]:
    """``(value, count)`` held by more than half of ``values``; ``(None, count of the commonest)`` when none is."""
    values = list(values)
    if not values:
        return None, 0
    value, count = Counter(values).most_common(1)[0]
    return (value, count) if count * 2 > len(values) else (None, count)


def fleet_checks(hosts: Mapping[str, Mapping], pins: Mapping[str, Mapping] | None = None) -> dict[str, list]:
    """Extra checks per host name, for the hosts that were audited and have GPUs; ``pins``: host -> its
    inventory variables (a pinned field is left to the pin's own check)."""
    pins = pins or {}
    groups: dict[str, list[str]] = {}
    for name, h in hosts.items():
        model = gpu_model(h.get("facts") or {}) if h.get("state") == "ok" else None
        if model:
            groups.setdefault(model, []).append(name)
    out: dict[str, list] = {}
    for model, members in groups.items():
        for name, check in _fabric(model, {n: hosts[n]["facts"] for n in members}, pins).items():
            out.setdefault(name, []).extend(check)
        for check, (what, read) in FIELDS.items():
            observed = {n: read(hosts[n]["facts"]) for n in members}
            known = {n: v for n, v in observed.items() if v is not None}
            if len(known) < 2:
                continue
            value, count = majority(known.values())
            for n in members:
                if n not in known:
                    continue
                if PINNED_BY.get(check) and (pins.get(n) or {}).get(PINNED_BY[check]) is not None:
                    continue
                out.setdefault(n, []).append(_check(check, what, model, known[n], value, count, len(known)))
    return out


def _check(name: str, what: str, model: str, observed: str, value: Optional[str], count: int, n: int) -> Check:
    details = {"gpu_model": model, "majority": value, "majority_hosts": count, "hosts": n}
    if value is None:
        return Check(name, Status.PASS, f"{what} {observed}; the {n} {model} hosts have no majority value "
                     f"(the commonest is on {count})", observed=observed, details=details)
    if observed == value:
        return Check(name, Status.PASS, f"{what} {observed}, as {count} of {n} {model} hosts",
                     observed=observed, expected=value, details=details)
    return Check(name, Status.WARN, f"{what} {observed} differs from the fleet's {value} ({count} of {n} {model} "
                 f"hosts)", observed=observed, expected=value, details=details)


def _nvlink_weakest(facts: Mapping) -> Optional[int]:
    """Active NVLinks of the host's weakest GPU; None without NVLink figures."""
    gpus = facts.get("nvlink")
    active = [g.get("active") for g in gpus if isinstance(g, Mapping)] if isinstance(gpus, list) else []
    active = [a for a in active if isinstance(a, int)]
    return min(active) if active else None


def _ib_figures(facts: Mapping) -> dict:
    """The compute rails' link layer -> (active rails, slowest active rail's Gb/s).  The rails are the host's
    largest set of identical ports (:func:`fleet.audit.checks_fabric.compute_rails`): a front-end or spare port
    that is down does not make a host differ from the fleet."""
    out: dict = {}
    ports = [p for p in facts.get("ib_ports") or [] if isinstance(p, Mapping) and "device" in p and "active" in p]
    rails, _ = compute_rails([dict(p) for p in ports], Expectations())
    for p in rails:
        if p.get("active"):
            n, slowest = out.get(p.get("link_layer") or "unknown", (0, None))
            rate = p.get("rate_gbps")
            slowest = rate if slowest is None or (rate is not None and rate < slowest) else slowest
            out[p.get("link_layer") or "unknown"] = (n + 1, slowest)
    return out


def _fabric(model: str, facts: Mapping[str, Mapping], pins: Mapping[str, Mapping]) -> dict[str, list]:
    """consistency:nvlink and consistency:infiniband for one GPU model's hosts."""
    out: dict[str, list] = {}

    def pinned(host: str, names) -> bool:
        names = (names,) if isinstance(names, str) else names
        return any((pins.get(host) or {}).get(v) is not None for v in names)

    links = {h: _nvlink_weakest(f) for h, f in facts.items()}
    links = {h: v for h, v in links.items() if v is not None and not pinned(h, FABRIC_CHECKS["consistency:nvlink"])}
    if len(links) >= 2:
        value, count = majority(links.values())
        for h, v in links.items():
            if value is None:
                continue
            status = Status.FAIL if v < value else Status.PASS
            out.setdefault(h, []).append(Check(
                "consistency:nvlink", status,
                f"{v} active NVLinks on the host's weakest GPU; the fleet's {model} hosts have {value} ({count} of "
                f"{len(links)})" + ("" if status is Status.PASS else ": a link is down; reseat, or check the NVLink "
                                                                     "bridge/baseboard"),
                observed=v, expected=value, details={"gpu_model": model, "majority_hosts": count,
                                                     "hosts": len(links)}))
    figures = {h: _ib_figures(f) for h, f in facts.items()
               if not pinned(h, FABRIC_CHECKS["consistency:infiniband"])}
    layers = sorted({layer for fig in figures.values() for layer in fig})
    for layer in layers:
        have = {h: fig[layer] for h, fig in figures.items() if layer in fig}
        if len(have) < 2:
            continue
        ports, ports_n = majority(n for n, _ in have.values())
        rate, rate_n = majority(r for _, r in have.values() if r is not None)
        for h, (n, slowest) in have.items():
            problems = []
            if ports is not None and n < ports:
                problems.append(f"{n} active {layer} port(s) where the fleet's {model} hosts have {ports} "
                                f"({ports_n} of {len(have)})")
            if rate is not None and slowest is not None and slowest < rate:
                problems.append(f"a port at {slowest:g} Gb/s where the fleet's {model} hosts run {rate:g} "
                                f"({rate_n} of {len(have)})")
            message = "; ".join(problems) or (f"{n} active {layer} port(s), the slowest at "
                                              f"{slowest:g} Gb/s, as the fleet's {model} hosts"
                                              if slowest is not None else f"{n} active {layer} port(s), as the fleet")
            out.setdefault(h, []).append(Check(
                "consistency:infiniband", Status.FAIL if problems else Status.PASS, message,
                observed={"ports": n, "slowest_gbps": slowest}, expected={"ports": ports, "gbps": rate},
                details={"gpu_model": model, "link_layer": layer}))
    return out
