"""GPU health checks beyond the basics: lost and missing GPUs, the driver's remedy fields, temperature,
power cap, throttle time, PCIe replays, SRAM threshold, pending mode changes, ECC on data-centre GPUs,
nvidia-smi's warnings.  Pure: HostFacts -> Check records.

Per-GPU checks are named ``<check>:gpu<N>`` like :data:`fleet.audit.checks.GPU_CHECKS`; the verdicts and
the documents they come from are in the README's check table and tests/golden/audit/*/expected.md.
"""

from __future__ import annotations

import re

from fleet.audit.facts.host import HostFacts
from fleet.audit.facts.nvidia_smi import GPU_LOST_REMEDY, GpuFacts, normalize_bus_id
from fleet.status import Check, Status

HOST_CHECKS = ("gpu-missing", "nvidia-smi-warnings")
GPU_HEALTH_CHECKS = ("recovery", "temperature", "power-limit", "throttle-time", "pcie-replay", "sram",
                     "pending-reset", "ecc-mode")

# nvmlDeviceGpuRecoveryAction_t, as nvidia-smi prints <gpu_recovery_action> (NVIDIA's A100/H100 GPU memory
# error management guide, "Error Recovery and Response Flags").
RECOVERY_ACTIONS = {
    "reset": "reset the GPU: stop its processes, then `nvidia-smi -r -i <gpu>`",
    "gpu_reset": "reset the GPU: stop its processes, then `nvidia-smi -r -i <gpu>`",
    "reboot": "reboot the node (the fault may have left the OS inconsistent)",
    "node_reboot": "reboot the node (the fault may have left the OS inconsistent)",
    "drain_p2p": "drain peer-to-peer traffic: stop the multi-GPU jobs using this GPU",
    "drain_and_reset": "drain the node (stop P2P/NVLink jobs), then reset the GPU",
    "recover_imex_domain": "recover the IMEX domain",
    "bus_reset": "reset the GPU's PCIe bus",
    "system_reboot": "reboot the system",
}
# Time in a hardware slowdown since boot: any at all means the hardware protected itself.
HW_THROTTLE_COUNTERS = {
    "hw_slowdown": "HW slowdown",
    "hw_thermal": "HW thermal slowdown",
    "hw_thermal_slowdown": "HW thermal slowdown",
    "hw_power_brake": "HW power brake",
    "hw_power_brake_slowdown": "HW power brake",
}
# Brands nvidia-smi gives data-centre boards (A100/H100/L4/T4: "NVIDIA"; older: "Tesla").
DATACENTER_BRANDS = {"nvidia", "tesla"}
_DATACENTER_NAME = re.compile(r"\b(Tesla|[ABHL]\d{1,3}[A-Z]?|GB?\d{3}|T4|V100|P100|P40|P4)\b")


def evaluate_host(facts: HostFacts) -> list[Check]:
    return [gpu_missing(facts), nvidia_smi_warnings(facts)]


def evaluate_gpu(gpu: GpuFacts) -> list[Check]:
    return [recovery(gpu), temperature(gpu), power_limit(gpu), throttle_time(gpu), pcie_replay(gpu), sram(gpu),
            pending_reset(gpu), ecc_mode(gpu)]


def _details(gpu: GpuFacts) -> dict:
    return {"gpu": gpu.index, "uuid": gpu.uuid, "pci_bus_id": gpu.pci_bus_id}


# ---------------------------------------------------------------- host level

def gpu_missing(facts: HostFacts) -> Check:
    """Every GPU the driver (/proc/driver/nvidia/gpus) holds, and every one lspci sees when it sees more than
    nvidia-smi reports, must be in nvidia-smi's report; a GPU nvidia-smi lost is missing."""
    name = "gpu-missing"
    lost = {g["pci_bus_id"]: g for g in facts.gpus_lost}
    reported = {normalize_bus_id(g.pci_bus_id) for g in facts.gpus} - {None}
    seen: dict[str, list[str]] = {}
    for bus in facts.driver_gpu_bus_ids or []:
        seen.setdefault(bus, []).append("driver")
    # lspci's slots name the missing GPUs only when lspci sees more than nvidia-smi reports: equal counts with
    # different IDs are not a missing GPU (gpu-count:lspci judges the counts).
    if len(facts.lspci_gpus) > len(reported):
        for g in facts.lspci_gpus:
            if (bus := normalize_bus_id(g.get("slot"))) is not None:
                seen.setdefault(bus, []).append("lspci")
    for bus in lost:
        seen.setdefault(bus, []).append("nvidia-smi (lost)")
    if facts.nvidia_smi_error is not None and not lost:
        return Check(name, Status.SKIP, "nvidia-smi gave no report to compare with the driver and lspci",
                     details={"seen": seen})
    # nvidia-smi failing on a lost GPU reports none of the others: only the lost ones are known to be missing.
    missing = sorted(lost) if facts.nvidia_smi_error is not None else sorted(b for b in seen if b not in reported)
    observed = sorted(reported)
    if missing:
        what = []
        for bus in missing:
            why = f"lost ({lost[bus]['reason']})" if bus in lost else "not in nvidia-smi's report"
            what.append(f"{bus} [{', '.join(seen[bus])}] {why}")
        return Check(name, Status.FAIL,
                     f"{len(missing)} GPU(s) seen by the driver or lspci but missing from nvidia-smi: "
                     f"{'; '.join(what)}: {GPU_LOST_REMEDY}",
                     observed=observed, expected=sorted(seen), details={"missing": missing, "seen": seen})
    if not seen:
        if facts.lspci_gpu_count is not None:
            return Check(name, Status.PASS, f"lspci sees {facts.lspci_gpu_count} NVIDIA GPU(s), nvidia-smi reports "
                         f"{len(reported)}; no driver GPU list to compare bus IDs", observed=observed)
        return Check(name, Status.SKIP, "no GPU list from the driver or lspci to compare", observed=observed)
    return Check(name, Status.PASS, f"all {len(seen)} GPU(s) the driver/lspci see are in nvidia-smi's report",
                 observed=observed, expected=sorted(seen))


_WARNING_REMEDIES = (
    ("inforom is corrupted", "the GPU's infoROM (where it keeps ECC and retired-page records) is corrupted: the "
                             "GPU works but those records may be lost; drain it and have the infoROM reflashed "
                             "or the GPU replaced (RMA)"),
)


def nvidia_smi_warnings(facts: HostFacts) -> Check:
    name = "nvidia-smi-warnings"
    if facts.nvidia_smi_error is not None:
        return Check(name, Status.SKIP, "nvidia-smi failed (see the nvidia-smi check)")
    lines = facts.nvidia_smi_warnings
    if not lines:
        return Check(name, Status.PASS, "nvidia-smi printed no warning", observed=[])
    remedies = []
    for needle, remedy in _WARNING_REMEDIES:
        if any(needle in line.lower() for line in lines) and remedy not in remedies:
            remedies.append(remedy)
    more = f" (+{len(lines) - 1} more)" if len(lines) > 1 else ""
    message = f"nvidia-smi warned while reporting: {lines[0]}{more}"
    if remedies:
        message += ": " + "; ".join(remedies)
    return Check(name, Status.WARN, message, observed=lines, expected="no warning")


# ---------------------------------------------------------------- per GPU

def recovery(gpu: GpuFacts) -> Check:
    """The driver's own remedy: gpu_reset_status and gpu_recovery_action."""
    name, details = f"recovery:gpu{gpu.index}", _details(gpu)
    rs, action = gpu.reset_status, gpu.recovery_action
    observed = {"reset_required": rs.get("reset_required"),
                "drain_and_reset_recommended": rs.get("drain_and_reset_recommended"), "recovery_action": action}
    fails = []
    if action is not None and action.lower() != "none":
        key = action.strip().lower().replace(" ", "_")
        fails.append(f"the driver asks for recovery action {action!r}: "
                     f"{RECOVERY_ACTIONS.get(key, 'follow NVIDIA’s documentation for this action')}")
    if rs.get("drain_and_reset_recommended"):
        fails.append("the driver recommends drain and reset: move the jobs off this node, then reset the GPU")
    elif rs.get("reset_required"):
        fails.append("the driver says a GPU reset is required: stop its processes, then `nvidia-smi -r` (or reboot)")
    if fails:
        return Check(name, Status.FAIL, f"GPU {gpu.index}: " + "; ".join(fails), observed=observed,
                     expected="no recovery action", details=details)
    if all(v is None for v in observed.values()):
        return Check(name, Status.SKIP, f"GPU {gpu.index} reports no reset status or recovery action (N/A)",
                     details=details)
    return Check(name, Status.PASS, f"GPU {gpu.index}: the driver asks for no reset or recovery",
                 observed=observed, expected="no recovery action", details=details)


def temperature(gpu: GpuFacts) -> Check:
    name, details, t = f"temperature:gpu{gpu.index}", _details(gpu), gpu.temperature
    fails, warns = [], []
    cur, slow, shut = t.get("gpu"), t.get("slowdown"), t.get("shutdown")
    margin, slow_t, shut_t = t.get("tlimit"), t.get("slowdown_tlimit"), t.get("shutdown_tlimit")
    mem, mem_max = t.get("memory"), t.get("memory_max")
    if cur is not None and shut is not None and cur >= shut:
        fails.append(f"{cur} C, at or above its shutdown temperature {shut} C")
    elif cur is not None and slow is not None and cur >= slow:
        warns.append(f"{cur} C, at or above its slowdown temperature {slow} C: clocks are being cut")
    elif margin is not None and shut_t is not None and margin <= shut_t:
        fails.append(f"T.Limit margin {margin} C, at or past its shutdown threshold ({shut_t} C)")
    elif margin is not None and slow_t is not None and margin <= slow_t:
        warns.append(f"T.Limit margin {margin} C, at or past its slowdown threshold ({slow_t} C): clocks are being cut")
    if mem is not None and mem_max is not None and mem >= mem_max:
        fails.append(f"memory (HBM) at {mem} C, at or above its maximum operating temperature {mem_max} C")
    observed = {k: v for k, v in t.items() if v is not None}
    comparable = (cur is not None and (slow is not None or shut is not None)) or \
                 (margin is not None and (slow_t is not None or shut_t is not None)) or \
                 (mem is not None and mem_max is not None)
    if fails or warns:
        status = Status.FAIL if fails else Status.WARN
        return Check(name, status, f"GPU {gpu.index} too hot: " + "; ".join(fails + warns)
                     + ": check the fans, airflow and inlet temperature", observed=observed,
                     expected="below the slowdown threshold", details=details)
    if not comparable:
        return Check(name, Status.SKIP, f"GPU {gpu.index} reports no temperature with a threshold (N/A)",
                     observed=observed or None, details=details)
    return Check(name, Status.PASS, f"GPU {gpu.index} temperature below its slowdown threshold",
                 observed=observed, expected="below the slowdown threshold", details=details)


def power_limit(gpu: GpuFacts) -> Check:
    name, details, p = f"power-limit:gpu{gpu.index}", _details(gpu), gpu.power_limit
    enforced, default = p.get("enforced"), p.get("default")
    observed = {k: v for k, v in p.items() if v is not None}
    if enforced is None or default is None:
        return Check(name, Status.SKIP, f"GPU {gpu.index} power limits not reported (N/A)", observed=observed or None,
                     details=details)
    if enforced < default:
        return Check(name, Status.WARN,
                     f"GPU {gpu.index} power capped at {enforced:g} W, below its default {default:g} W: it runs "
                     f"slower under load; restore it (`nvidia-smi -pl {default:g}`) unless the cap is intended "
                     f"(or check for a BMC/chassis power cap)", observed=observed, expected=f">= {default:g} W",
                     details=details)
    return Check(name, Status.PASS, f"GPU {gpu.index} power limit {enforced:g} W (default {default:g} W)",
                 observed=observed, expected=f">= {default:g} W", details=details)


def throttle_time(gpu: GpuFacts) -> Check:
    name, details, times = f"throttle-time:gpu{gpu.index}", _details(gpu), gpu.clock_event_time_us
    known = {k: v for k, v in times.items() if v is not None}
    if not known:
        return Check(name, Status.SKIP, f"GPU {gpu.index} reports no clock event counters (schema before v13, or N/A)",
                     details=details)
    hw = {k: v for k, v in known.items() if k in HW_THROTTLE_COUNTERS and v > 0}
    if hw:
        what = ", ".join(f"{HW_THROTTLE_COUNTERS[k]} {v / 1e6:.1f} s" for k, v in sorted(hw.items()))
        return Check(name, Status.WARN,
                     f"GPU {gpu.index} spent time in hardware slowdown since boot ({what}): the hardware protected "
                     f"itself (heat, power supply or power-brake signal); check cooling and PSUs",
                     observed=known, expected="no HW slowdown time", details=details)
    return Check(name, Status.PASS, f"GPU {gpu.index}: no time in hardware slowdown since boot", observed=known,
                 expected="no HW slowdown time", details=details)


def pcie_replay(gpu: GpuFacts) -> Check:
    name, details, r = f"pcie-replay:gpu{gpu.index}", _details(gpu), gpu.pcie_replays
    replays, rollovers = r.get("replays"), r.get("rollovers")
    if replays is None and rollovers is None:
        return Check(name, Status.SKIP, f"GPU {gpu.index} reports no PCIe replay counter (N/A)", details=details)
    observed = {"replays": replays, "rollovers": rollovers}
    # A count since the last reset cannot tell a noisy link from a long uptime: a healthy HGX H100 board
    # (tests/golden/audit/hgx-h100-fabric-healthy) shows 106-174 per GPU.  Only a counter that wrapped
    # (rollovers) says the link retransmits all the time; the rate between runs is the history's to judge.
    if rollovers:
        return Check(name, Status.WARN,
                     f"GPU {gpu.index}: the PCIe replay counter rolled over {rollovers} time(s) since the last reset "
                     f"({replays or 0} now): the link keeps retransmitting corrupted packets; reseat the GPU, check "
                     f"the riser/cable", observed=observed, expected="no rollover", details=details)
    return Check(name, Status.PASS, f"GPU {gpu.index}: {replays or 0} PCIe replay(s) since the last reset, no "
                 f"counter rollover", observed=observed, expected="no rollover", details=details)


def sram(gpu: GpuFacts) -> Check:
    name, details, exceeded = f"sram:gpu{gpu.index}", _details(gpu), gpu.sram_threshold_exceeded
    if exceeded is None:
        return Check(name, Status.SKIP, f"GPU {gpu.index} reports no SRAM error threshold (N/A)", details=details)
    if exceeded:
        return Check(name, Status.FAIL,
                     f"GPU {gpu.index} has exceeded its SRAM uncorrectable-error threshold: drain it and RMA it",
                     observed=True, expected=False, details=details)
    return Check(name, Status.PASS, f"GPU {gpu.index} below its SRAM error threshold", observed=False,
                 expected=False, details=details)


def pending_reset(gpu: GpuFacts) -> Check:
    name, details = f"pending-reset:gpu{gpu.index}", _details(gpu)
    pairs = {"ECC": (gpu.ecc_mode, gpu.ecc_mode_pending), "MIG": (gpu.mig_mode, gpu.mig_mode_pending)}
    observed = {k: {"current": c, "pending": p} for k, (c, p) in pairs.items() if c is not None or p is not None}
    pending = [f"{k} mode {c} -> {p}" for k, (c, p) in pairs.items()
               if c is not None and p is not None and c.lower() != p.lower()]
    if pending:
        return Check(name, Status.WARN,
                     f"GPU {gpu.index} has a mode change waiting for a reset ({'; '.join(pending)}): it does not "
                     f"apply until the GPU is reset (`nvidia-smi -r`) or the node rebooted", observed=observed,
                     expected="current == pending", details=details)
    if not observed:
        return Check(name, Status.SKIP, f"GPU {gpu.index} reports no ECC or MIG mode (N/A)", details=details)
    return Check(name, Status.PASS, f"GPU {gpu.index}: no ECC/MIG mode change pending", observed=observed,
                 expected="current == pending", details=details)


def is_datacenter(gpu: GpuFacts) -> bool:
    if gpu.product_brand is not None:
        return gpu.product_brand.strip().lower() in DATACENTER_BRANDS
    return bool(gpu.name and _DATACENTER_NAME.search(gpu.name) and not re.search(r"GeForce|RTX|Quadro", gpu.name))


def ecc_mode(gpu: GpuFacts) -> Check:
    name, details, mode = f"ecc-mode:gpu{gpu.index}", _details(gpu), gpu.ecc_mode
    if mode is None:
        return Check(name, Status.SKIP, f"GPU {gpu.index} has no ECC mode (N/A: not supported)", details=details)
    dc = is_datacenter(gpu)
    if mode.lower() == "disabled" and dc:
        return Check(name, Status.WARN,
                     f"GPU {gpu.index} ({gpu.name}) is a data-centre GPU running with ECC disabled: memory errors go "
                     f"undetected; enable it (`nvidia-smi -e 1`, then reset the GPU) unless that is intended",
                     observed=mode, expected="Enabled", details={**details, "brand": gpu.product_brand})
    note = "" if dc or mode.lower() == "enabled" else " (not a data-centre GPU)"
    return Check(name, Status.PASS, f"GPU {gpu.index} ECC {mode}{note}",
                 observed=mode, expected="Enabled" if dc else None, details={**details, "brand": gpu.product_brand})
