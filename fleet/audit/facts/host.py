"""HostFacts: everything one audit learned about one host, as plain data, built from the facts' parsers."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Iterable, Mapping

from fleet.audit.facts.fact import Fact
from fleet.audit.facts.nvidia_smi import GpuFacts, NvidiaSmiFailure
from fleet.framing import Section
from fleet.plain import plain


@dataclass
class HostFacts:
    os: dict = field(default_factory=dict)  # os-release keys, lowercased: id, version_id, pretty_name...
    kernel: str | None = None  # uname -r
    boot_id: str | None = None  # /proc/sys/kernel/random/boot_id: which boot the since-boot counters count
    lspci_gpu_count: int | None = None  # NVIDIA 03xx devices on the bus; None when lspci could not run
    lspci_gpus: list = field(default_factory=list)
    lspci_error: str | None = None
    nvidia_smi_error: NvidiaSmiFailure | None = None  # None when nvidia-smi produced a usable report
    nvidia_smi_schema: str | None = None
    driver_version: str | None = None  # nvidia-smi's, else the kernel module's
    kernel_driver_version: str | None = None  # /proc/driver/nvidia/version or /sys/module/nvidia/version
    cuda_version: str | None = None
    attached_gpus: int | None = None  # what nvidia-smi's <attached_gpus> claims
    gpus: list[GpuFacts] = field(default_factory=list)  # one per <gpu> element: authoritative
    toolkit_version: str | None = None  # nvidia-ctk --version; None when absent
    toolkit_error: str | None = None
    docker_runtimes: list | None = None  # None when docker is absent or unreadable
    docker_error: str | None = None
    xids: list | None = None  # None means "unknown": the kernel log could not be read
    xid_source: str | None = None  # "dmesg", "journalctl" or None
    # Kernel log beyond XIDs (area: kernel/XID policy, fleet/audit/checks_kernel.py); same source as xids,
    # None when the log could not be read.
    sxids: list | None = None  # NVSwitch "SXid" lines
    kernel_events: list | None = None  # fallen off the bus (with or without Xid 79), RmInitAdapter / probe failed
    compute_processes: list = field(default_factory=list)
    # fabric area (facts/nvlink.py, facts/infiniband.py, facts/fabric.py): NVLink, InfiniBand/RoCE, Fabric Manager.
    # None means "not known" (the command did not run or failed: see the *_error next to it).
    nvlink: list | None = None  # nvidia-smi nvlink -s, per GPU: {gpu, name, uuid, links, active, total, all_inactive}
    nvlink_error: str | None = None
    nvlink_counters: list | None = None  # nvidia-smi nvlink -e, per GPU: {gpu, uuid, links, totals}, as they stand
    nvlink_counters_error: str | None = None
    ib_ports: list | None = None  # /sys/class/infiniband/*/ports/*: [{device, port, state, rate_gbps, ...}]; [] none
    ib_error: str | None = None
    nvswitches: list | None = None  # NVIDIA class-0680 PCI functions (NVSwitches): [{slot, class, device}]
    nvswitch_error: str | None = None
    fabric_manager: dict | None = None  # systemctl show nvidia-fabricmanager: {load_state, active_state, ...}
    fabric_manager_error: str | None = None
    notes: list = field(default_factory=list)  # discrepancies worth a human's eye (not checks)
    # --- GPU health area (fleet/audit/checks_gpu.py) ---
    gpus_lost: list = field(default_factory=list)  # [{pci_bus_id, reason, line}]: nvidia-smi got no handle
    driver_gpu_bus_ids: list | None = None  # /proc/driver/nvidia/gpus entries; None when not readable
    nvidia_smi_warnings: list = field(default_factory=list)  # stderr (or pre-XML) lines of a successful run

    @property
    def nvidia_smi_gpu_count(self) -> int | None:
        return None if self.nvidia_smi_error else len(self.gpus)

    def to_dict(self) -> dict:
        d = plain(self)
        d["nvidia_smi_error"] = self.nvidia_smi_error.to_dict() if self.nvidia_smi_error else None
        d["nvidia_smi_gpu_count"] = self.nvidia_smi_gpu_count
        for key in ("xids", "sxids", "kernel_events"):
            d[key] = "unknown" if getattr(self, key) is None else d[key]
        return d


_FIELDS = frozenset(f.name for f in fields(HostFacts))


def host_facts(sections: Mapping[str, Section], facts: Iterable[Fact]) -> HostFacts:
    """The script's sections -> HostFacts: each fact's parser on its section, merged in order.

    Pure; never raises on odd command output (it lands in the facts as errors).  A None value sets
    nothing; a field already set by an earlier fact is kept; ``notes`` accumulate.
    """
    values: dict = {"notes": []}
    for fact in facts:
        section = sections.get(fact.name, fact.absent)
        if section is None:
            continue
        for key, value in fact.parse(section).items():
            if key not in _FIELDS:
                raise KeyError(f"fact {fact.name} set {key!r}, which is not a HostFacts field")
            if key == "notes":
                values["notes"] += value
            elif value is not None:
                values.setdefault(key, value)
    f = HostFacts(**values)
    if f.kernel_driver_version and f.driver_version != f.kernel_driver_version:
        f.notes.append(f"kernel module reports driver {f.kernel_driver_version}, nvidia-smi {f.driver_version}")
    return f
