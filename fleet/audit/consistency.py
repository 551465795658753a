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
    ib = facts.get("infiniband")
    devices = ib.get("devices") if isinstance(ib, Mapping) else None
    if not isinstance(devices, list):
        return None
    return _one(d.get("fw_ver") for d in devices if isinstance(d, Mapping))


FIELDS: dict[str, tuple[str, Reader]] = {
    "consistency:driver": ("driver", lambda f: f.get("driver_version")),
    "consistency:cuda": ("CUDA", lambda f: f.get("cuda_version")),
    "consistency:vbios": ("VBIOS", lambda f: _one(g.get("vbios_version") for g in _gpus(f))),
    "consistency:ib-firmware": ("InfiniBand firmware", _ib_firmware),
    "consistency:kernel": ("kernel", lambda f: f.get("kernel")),
}
CHECK_NAMES = tuple(FIELDS)

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
