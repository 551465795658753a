"""Facts ``nvidia-smi`` (``nvidia-smi -q -x``: XML, schemas v10-v13, and its failure modes) and
``compute-apps`` (``--query-compute-apps`` CSV).

XML is parsed safely: a document declaring any ``<!ENTITY`` is refused before it reaches the parser
(no entity-expansion bombs, no external entities).  The ``<!DOCTYPE nvidia_smi_log SYSTEM "nvsmi_device_vNN.dtd">``
line real files carry is harmless: expat never fetches external DTDs.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

from fleet.audit.facts.fact import Fact, succeeded
from fleet.audit.facts.values import clean, leading_int
from fleet.framing import Section


class NvidiaSmiParseError(ValueError):
    """The nvidia-smi XML could not be (or must not be) parsed."""


@dataclass
class NvidiaSmiFailure:
    """Why nvidia-smi gave no usable output.  ``kind`` is a stable identifier."""

    # kind: not-installed | driver-library-mismatch | driver-not-loaded | no-devices | gpu-lost | timeout |
    #       failed | garbage | unsafe-xml
    kind: str
    message: str
    rc: int | None = None
    excerpt: str = ""

    def to_dict(self) -> dict:
        return {"kind": self.kind, "message": self.message, "rc": self.rc, "excerpt": self.excerpt}


@dataclass
class GpuFacts:
    index: int
    name: str | None
    uuid: str | None
    pci_bus_id: str | None
    memory_total_mib: int | None
    persistence_mode: str | None = None  # "Enabled" / "Disabled" / None (N/A)
    performance_state: str | None = None  # "P0".."P12" / None
    utilization_gpu: int | None = None  # percent
    mig_mode: str | None = None  # current MIG mode: "Enabled" / "Disabled" / None
    mig_devices: int = 0
    ecc_mode: str | None = None
    pcie: dict = field(default_factory=dict)  # link_gen_current/max, link_width_current/max (ints or None)
    ecc: dict = field(default_factory=dict)  # volatile_/aggregate_ correctable/uncorrectable (ints or None)
    retired_pages: dict = field(default_factory=dict)  # single_bit, double_bit (ints or None), pending (bool or None)
    # remapped_rows: correctable, uncorrectable (ints), pending, failure (bools); {} if N/A
    remapped_rows: dict = field(default_factory=dict)
    clock_event_reasons: dict = field(default_factory=dict)  # short name -> True (active) / False
    processes: list = field(default_factory=list)  # [{pid, type, process_name, used_memory_mib}]
    fabric: dict = field(default_factory=dict)  # fabric area: raw <fabric> leaves {tag: text}; see facts/fabric.py
    # --- GPU health and remedy fields (audit-gpu area: fleet/audit/checks_gpu.py) ---
    product_brand: str | None = None  # "NVIDIA", "Tesla", "GeForce", "NVIDIA RTX", "Quadro"...
    vbios_version: str | None = None  # <vbios_version>: compared with the fleet's (fleet/audit/consistency.py)
    mig_mode_pending: str | None = None  # <pending_mig>: differs from mig_mode until the next GPU reset
    ecc_mode_pending: str | None = None  # <pending_ecc>: differs from ecc_mode until the next GPU reset
    # gpu_reset_status: reset_required, drain_and_reset_recommended (bools; None: N/A or deprecated)
    reset_status: dict = field(default_factory=dict)
    recovery_action: str | None = None  # <gpu_recovery_action>: None/"None" means nothing to do
    sram_threshold_exceeded: bool | None = None  # <ecc_errors><aggregate><sram_threshold_exceeded>
    # temperature (deg C, ints or None): gpu, slowdown, shutdown (absolute thresholds, v12 and older);
    # tlimit (margin to T.Limit), slowdown_tlimit, shutdown_tlimit (v13 T.Limit scale); memory, memory_max
    temperature: dict = field(default_factory=dict)
    power_limit: dict = field(default_factory=dict)  # watts (floats or None): enforced, default, requested
    # clocks_event_reasons_counters: microseconds since boot per reason (hw_thermal, hw_power_brake, ...)
    clock_event_time_us: dict = field(default_factory=dict)
    pcie_replays: dict = field(default_factory=dict)  # replays, rollovers since the last reset (ints or None)
    serial: str | None = None  # <serial>: the board's serial number, kept with the UUID in the run history

    @property
    def pstate_number(self) -> int | None:
        m = re.fullmatch(r"P(\d+)", self.performance_state or "")
        return int(m.group(1)) if m else None


@dataclass
class NvidiaSmiLog:
    driver_version: str | None
    cuda_version: str | None
    attached_gpus: int | None
    gpus: list[GpuFacts]
    schema: str | None = None  # e.g. "v12", from the DOCTYPE


# ---------------------------------------------------------------- failure classification

_KNOWN_FAILURES = [
    ("driver/library version mismatch", "driver-library-mismatch",
     "NVML driver/library version mismatch: the loaded kernel module and the user-space libraries differ "
     "(typically after a driver upgrade); reboot the node or reload the nvidia kernel modules"),
    ("couldn't communicate with the nvidia driver", "driver-not-loaded",
     "nvidia-smi cannot talk to the NVIDIA driver: the kernel module is not loaded or not installed; "
     "check `lsmod | grep nvidia` and dmesg, reinstall or load the driver"),
    ("no devices were found", "no-devices",
     "nvidia-smi found no GPU: the driver sees no device "
     "(GPU fallen off the bus, disabled, or passed through elsewhere)"),
]


# "Unable to determine the device handle for GPU 0000:02:00.0: GPU is lost.  Reboot the system to recover this GPU"
# (NVML_ERROR_GPU_IS_LOST, exit 15) and its "Unknown Error" variant ("...for GPU0000:0B:00.0: Unknown Error").
_LOST = re.compile(r"Unable to determine the device handle for GPU\s*"
                   r"(?P<bus>[0-9A-Fa-f]+:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}\.[0-7])\s*:\s*(?P<reason>[^\n]*)",
                   re.IGNORECASE)
_LOST_WORDS = "unable to determine the device handle for gpu"  # _LOST's literal start, lowercased
# nvidia-smi exits with the NVML return code: 15 is NVML_ERROR_GPU_IS_LOST.
NVML_ERROR_GPU_IS_LOST = 15
GPU_LOST_REMEDY = ("drain the node; reset the GPU (`nvidia-smi -r -i <bus id>` once no process uses it) or reboot; "
                   "if it is lost again, reseat it (check its power cables and riser) or RMA it")


def normalize_bus_id(value: str | None) -> str | None:
    """``00000000:3B:00.0`` / ``3b:00.0`` / ``0000:3b:00.0`` -> ``0000:3b:00.0`` (4-digit domain, lowercase)."""
    if not value:
        return None
    m = re.fullmatch(r"(?:([0-9A-Fa-f]+):)?([0-9A-Fa-f]{1,2}):([0-9A-Fa-f]{1,2})\.([0-7])", value.strip())
    if not m:
        return None
    domain = int(m.group(1) or "0", 16)
    return f"{domain:04x}:{int(m.group(2), 16):02x}:{int(m.group(3), 16):02x}.{m.group(4)}"


def parse_lost_gpus(text: str) -> list[dict]:
    """The GPUs nvidia-smi could not get a handle for: [{pci_bus_id, reason, line}], in order, once each."""
    lost, seen = [], set()
    if _LOST_WORDS not in text.lower():  # the case-blind scan of a whole XML report is slow; this is not
        return lost
    for m in _LOST.finditer(text):
        bus = normalize_bus_id(m["bus"])
        if bus in seen:
            continue
        seen.add(bus)
        lost.append({"pci_bus_id": bus, "reason": m["reason"].strip(), "line": m.group(0).strip()[:200]})
    return lost


def _excerpt(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def classify_failure(rc: int | None, stdout: str, stderr: str) -> NvidiaSmiFailure | None:
    """A recognised failure, or None when the output looks like XML worth parsing."""
    text = f"{stdout}\n{stderr}"
    low = text.lower()
    if rc == 127 or re.search(r"nvidia-smi: (command )?not found|no such file or directory", low):
        return NvidiaSmiFailure("not-installed",
                                "nvidia-smi is not installed (or not on PATH): install the NVIDIA driver utilities",
                                rc, _excerpt(stderr))
    for needle, kind, message in _KNOWN_FAILURES:
        if needle in low:
            return NvidiaSmiFailure(kind, message, rc, _excerpt(text))
    if "<nvidia_smi_log" not in stdout and (lost := parse_lost_gpus(text)):
        buses = ", ".join(g["pci_bus_id"] for g in lost)
        reasons = "; ".join(sorted({g["reason"] for g in lost}))
        return NvidiaSmiFailure("gpu-lost",
                                f"GPU {buses} lost: the driver cannot reach it ({reasons}, exit {rc}); "
                                f"{GPU_LOST_REMEDY}", rc, _excerpt(text))
    if "<nvidia_smi_log" not in stdout and rc == NVML_ERROR_GPU_IS_LOST:
        return NvidiaSmiFailure("gpu-lost",
                                f"a GPU is lost: nvidia-smi exited {rc} (NVML_ERROR_GPU_IS_LOST) without naming it; "
                                f"find it in dmesg (XID 79) and {GPU_LOST_REMEDY}", rc, _excerpt(text))
    if rc in (124, 137):
        return NvidiaSmiFailure("timeout",
                                f"nvidia-smi did not finish in time (exit {rc}): the driver may be hung; "
                                f"check dmesg for XIDs",
                                rc, _excerpt(text))
    if "<nvidia_smi_log" not in stdout:
        if rc:
            return NvidiaSmiFailure("failed", f"nvidia-smi failed with exit status {rc}: {_excerpt(text, 120)}",
                                    rc, _excerpt(text))
        return NvidiaSmiFailure("garbage",
                                f"nvidia-smi printed something that is not its XML report: {_excerpt(stdout, 80)!r}",
                                rc, _excerpt(text))
    return None


# ---------------------------------------------------------------- XML

def safe_fromstring(text: str) -> ET.Element:
    """Parse XML, refusing entity declarations (billion laughs, external entities).

    Whitespace (and a byte-order mark) before the XML declaration is tolerated: expat refuses it.
    """
    text = text.lstrip("\ufeff \t\r\n")
    if re.search(r"<!ENTITY", text, re.IGNORECASE):
        raise NvidiaSmiParseError("refusing XML that declares entities (<!ENTITY ...>): "
                                  "possible entity-expansion bomb or external entity")
    try:
        return ET.fromstring(text)
    except ET.ParseError as exc:
        raise NvidiaSmiParseError(f"malformed XML: {exc}") from exc


def _t(el: ET.Element | None, path: str) -> str | None:
    if el is None:
        return None
    found = el.find(path)
    return clean(found.text) if found is not None else None


def _i(el: ET.Element | None, path: str) -> int | None:
    return leading_int(_t(el, path))


def _yes(value: str | None) -> bool | None:
    if value is None:
        return None
    low = value.lower()
    if low in ("yes", "true", "active", "enabled"):
        return True
    if low in ("no", "false", "not active", "disabled"):
        return False
    return None


def _sum(values: list[int | None]) -> int | None:
    nums = [v for v in values if v is not None]
    return sum(nums) if nums else None


def _ecc_counts(block: ET.Element | None) -> tuple[int | None, int | None]:
    """(correctable, uncorrectable) for a <volatile>/<aggregate> block, any schema.

    v11+: sram_/dram_ correctable/uncorrectable (v13 splits sram_uncorrectable_parity/_secded);
    v10 and older: single_bit/total and double_bit/total.
    """
    if block is None:
        return None, None
    corr, unc = [], []
    for child in block:
        tag = child.tag
        if tag == "single_bit":
            corr.append(_i(child, "total"))
        elif tag == "double_bit":
            unc.append(_i(child, "total"))
        elif "uncorrectable" in tag:
            unc.append(leading_int(child.text))
        elif "correctable" in tag:
            corr.append(leading_int(child.text))
    return _sum(corr), _sum(unc)


def _clock_reasons(gpu: ET.Element) -> dict:
    block = gpu.find("clocks_event_reasons")
    if block is None:
        block = gpu.find("clocks_throttle_reasons")
    reasons = {}
    if block is None:
        return reasons
    for child in block:
        name = re.sub(r"^clocks?_(event|throttle)_reasons?_", "", child.tag)
        active = _yes(clean(child.text))
        if active is not None:
            reasons[name] = active
    return reasons


def _float(el: ET.Element | None, path: str) -> float | None:
    m = re.match(r"[+-]?\d+(\.\d+)?", _t(el, path) or "")
    return float(m.group()) if m else None


def _first(el: ET.Element | None, *paths: str) -> str | None:
    for path in paths:
        if (value := _t(el, path)) is not None:
            return value
    return None


def _recovery_action(gpu: ET.Element) -> str | None:
    """<gpu_recovery_action>: "None" (nothing to do) is a value here, not a placeholder; N/A is None."""
    el = gpu.find("gpu_recovery_action")
    raw = (el.text or "").strip() if el is not None else ""
    return "None" if raw.lower() == "none" else clean(raw)


def _temperature(gpu: ET.Element) -> dict:
    t = gpu.find("temperature")
    return {"gpu": _i(t, "gpu_temp"), "slowdown": _i(t, "gpu_temp_slow_threshold"),
            "shutdown": _i(t, "gpu_temp_max_threshold"), "tlimit": _i(t, "gpu_temp_tlimit"),
            "slowdown_tlimit": _i(t, "gpu_temp_slow_tlimit_threshold"),
            "shutdown_tlimit": _i(t, "gpu_temp_max_tlimit_threshold"),
            "memory": _i(t, "memory_temp"), "memory_max": _i(t, "gpu_temp_max_mem_threshold")}


def _power_limit(gpu: ET.Element) -> dict:
    """The board's power limits: <gpu_power_readings> (v12+) or <power_readings> (older); never the module's."""
    p = gpu.find("gpu_power_readings")
    if p is None:
        p = gpu.find("power_readings")
    if p is None:
        return {}
    return {"enforced": _float(p, "current_power_limit") if p.find("current_power_limit") is not None
            else _float(p, "enforced_power_limit"),
            "default": _float(p, "default_power_limit"),
            "requested": _float(p, "requested_power_limit") if p.find("requested_power_limit") is not None
            else _float(p, "power_limit")}


def _clock_event_times(gpu: ET.Element) -> dict:
    """<clocks_event_reasons_counters>: microseconds spent in each reason since boot, by short name."""
    block = gpu.find("clocks_event_reasons_counters")
    if block is None:
        block = gpu.find("clocks_throttle_reasons_counters")
    times = {}
    for child in block if block is not None else ():
        name = re.sub(r"^clocks?_(event|throttle)_reasons?_counters?_", "", child.tag)
        name = re.sub(r"therm(?:al)?(?:_slowdown)?", "thermal", name)  # sw_therm_slowdown -> sw_thermal
        times[name] = leading_int(child.text)
    return times


def _processes(gpu: ET.Element) -> list[dict]:
    procs = []
    for p in gpu.findall("processes/process_info"):
        procs.append({"pid": _i(p, "pid"), "type": _t(p, "type"), "process_name": _t(p, "process_name"),
                      "used_memory_mib": _i(p, "used_memory")})
    return procs


def _gpu(index: int, gpu: ET.Element) -> GpuFacts:
    link = gpu.find("pci/pci_gpu_link_info")
    ecc = gpu.find("ecc_errors")
    vol_c, vol_u = _ecc_counts(ecc.find("volatile") if ecc is not None else None)
    agg_c, agg_u = _ecc_counts(ecc.find("aggregate") if ecc is not None else None)
    retired = gpu.find("retired_pages")
    pending = _t(retired, "pending_retirement")
    if pending is None:
        pending = _t(retired, "pending_blacklist")
    remap = gpu.find("remapped_rows")
    remapped = {}
    if remap is not None and len(remap):
        remapped = {"correctable": _i(remap, "remapped_row_corr"), "uncorrectable": _i(remap, "remapped_row_unc"),
                    "pending": _yes(_t(remap, "remapped_row_pending")),
                    "failure": _yes(_t(remap, "remapped_row_failure"))}
    return GpuFacts(
        index=index,
        name=_t(gpu, "product_name"),
        uuid=_t(gpu, "uuid"),
        serial=_t(gpu, "serial"),  # the history's GPU identity table (fleet/history): UUID and serial
        pci_bus_id=_t(gpu, "pci/pci_bus_id") or clean(gpu.get("id")),
        memory_total_mib=_i(gpu, "fb_memory_usage/total"),
        persistence_mode=_t(gpu, "persistence_mode"),
        performance_state=_t(gpu, "performance_state"),
        utilization_gpu=_i(gpu, "utilization/gpu_util"),
        mig_mode=_t(gpu, "mig_mode/current_mig"),
        mig_devices=len(gpu.findall("mig_devices/mig_device")),
        ecc_mode=_t(gpu, "ecc_mode/current_ecc"),
        pcie={"link_gen_current": _i(link, "pcie_gen/current_link_gen"),
              "link_gen_max": _i(link, "pcie_gen/max_link_gen"),
              "link_width_current": _i(link, "link_widths/current_link_width"),
              "link_width_max": _i(link, "link_widths/max_link_width")},
        ecc={"volatile_correctable": vol_c, "volatile_uncorrectable": vol_u,
             "aggregate_correctable": agg_c, "aggregate_uncorrectable": agg_u},
        retired_pages={"single_bit": _i(retired, "multiple_single_bit_retirement/retired_count"),
                       "double_bit": _i(retired, "double_bit_retirement/retired_count"),
                       "pending": _yes(pending)},
        remapped_rows=remapped,
        clock_event_reasons=_clock_reasons(gpu),
        processes=_processes(gpu),
        fabric={e.tag: (e.text or "").strip() for e in gpu.iterfind("fabric//*") if not len(e)},  # fabric area
        product_brand=_t(gpu, "product_brand"),
        vbios_version=_t(gpu, "vbios_version"),
        mig_mode_pending=_t(gpu, "mig_mode/pending_mig"),
        ecc_mode_pending=_t(gpu, "ecc_mode/pending_ecc"),
        reset_status={"reset_required": _yes(_t(gpu, "gpu_reset_status/reset_required")),
                      "drain_and_reset_recommended": _yes(_t(gpu, "gpu_reset_status/drain_and_reset_recommended"))},
        recovery_action=_recovery_action(gpu),
        sram_threshold_exceeded=_yes(_first(ecc, "aggregate/sram_threshold_exceeded", "sram_threshold_exceeded")),
        temperature=_temperature(gpu),
        power_limit=_power_limit(gpu),
        clock_event_time_us=_clock_event_times(gpu),
        pcie_replays={"replays": _i(gpu, "pci/replay_counter"), "rollovers": _i(gpu, "pci/replay_rollover_counter")},
    )


def parse_xml(text: str) -> NvidiaSmiLog:
    """Parse ``nvidia-smi -q -x`` output.  Raises NvidiaSmiParseError on unsafe or malformed input."""
    root = safe_fromstring(text)
    if root.tag != "nvidia_smi_log":
        raise NvidiaSmiParseError(f"expected <nvidia_smi_log>, got <{root.tag}>")
    m = re.search(r"nvsmi_device_(v\d+)\.dtd", text[:500])
    return NvidiaSmiLog(
        driver_version=_t(root, "driver_version"),
        cuda_version=_t(root, "cuda_version"),
        attached_gpus=_i(root, "attached_gpus"),
        gpus=[_gpu(i, g) for i, g in enumerate(root.findall("gpu"))],
        schema=m.group(1) if m else None,
    )


def parse_compute_apps(output: str) -> list[dict]:
    """``--query-compute-apps=pid,process_name,used_memory,gpu_uuid --format=csv,noheader`` lines.

    The process name may itself contain ", ", so pid is split from the left and memory/uuid from the right.
    """
    apps = []
    for line in output.splitlines():
        line = line.strip()
        if not line or line.lower().startswith("no running"):
            continue
        head, sep, rest = line.partition(", ")
        parts = rest.rsplit(", ", 2) if sep else []
        if len(parts) != 3 or not head.strip().isdigit():
            continue
        name, memory, uuid = parts
        apps.append({"pid": int(head), "process_name": name.strip(), "used_memory_mib": leading_int(memory),
                     "gpu_uuid": clean(uuid)})
    return apps


def _split_preamble(stdout: str) -> tuple[str, list[str]]:
    """(the XML from its declaration or root on, the non-blank lines printed before it: warnings)."""
    m = re.search(r"<\?xml|<!DOCTYPE|<nvidia_smi_log", stdout)
    if not m:
        return stdout, []
    before = [line.strip() for line in stdout[: m.start()].splitlines() if line.strip()]
    return stdout[m.start():], before


def _nvidia_smi(s: Section) -> dict:
    failure = classify_failure(s.rc, s.stdout, s.stderr)
    xml, preamble = _split_preamble(s.stdout)
    if failure is None:
        try:
            log = parse_xml(xml)
        except NvidiaSmiParseError as exc:
            kind = "unsafe-xml" if "ENTITY" in str(exc) else "garbage"
            failure = NvidiaSmiFailure(kind, f"nvidia-smi output could not be parsed: {exc}", s.rc, _excerpt(s.stdout))
    if failure is not None:
        lost = parse_lost_gpus(f"{s.stdout}\n{s.stderr}") if failure.kind == "gpu-lost" else []
        return {"nvidia_smi_error": failure, "gpus_lost": lost}
    notes = []
    if log.attached_gpus is not None and log.attached_gpus != len(log.gpus):
        notes.append(f"nvidia-smi says attached_gpus={log.attached_gpus} but reports {len(log.gpus)} <gpu> "
                     f"element(s); the elements are counted")
    if s.rc != 0:
        notes.append(f"nvidia-smi exited {s.rc} but printed a parsable report")
    lost = parse_lost_gpus(f"{s.stdout}\n{s.stderr}")
    warnings = [line for line in preamble + [ln.strip() for ln in s.stderr.splitlines() if ln.strip()]
                if not _LOST.search(line)]
    return {"nvidia_smi_schema": log.schema, "driver_version": log.driver_version, "cuda_version": log.cuda_version,
            "attached_gpus": log.attached_gpus, "gpus": log.gpus, "notes": notes, "gpus_lost": lost,
            "nvidia_smi_warnings": warnings[:20]}


def parse_driver_gpus(output: str) -> list[str]:
    """``ls /proc/driver/nvidia/gpus``: one directory per GPU the kernel driver holds, named by bus ID."""
    return sorted({b for line in output.split() if (b := normalize_bus_id(line))})


def _driver_gpus(s: Section) -> dict:
    return {"driver_gpu_bus_ids": parse_driver_gpus(s.stdout)} if s.rc == 0 else {}


def _compute_apps(s: Section) -> dict:
    return {"compute_processes": parse_compute_apps(s.stdout)} if s.rc == 0 else {}


NVIDIA_SMI = Fact("nvidia-smi", "nvidia-smi -q -x", _nvidia_smi, timeout=60,
                  absent=Section("", "nvidia-smi section missing from the audit output", 127))

# The GPUs the kernel driver holds (no root needed); absent when the module is not loaded.
DRIVER_GPUS = Fact("driver-gpus", "ls /proc/driver/nvidia/gpus", _driver_gpus, timeout=10)

# Only worth asking when the full query worked (a hung or broken nvidia-smi would just hang or fail again).
COMPUTE_APPS = Fact("compute-apps",
                    "nvidia-smi --query-compute-apps=pid,process_name,used_memory,gpu_uuid --format=csv,noheader",
                    _compute_apps, timeout=30, when=succeeded("nvidia-smi"))
