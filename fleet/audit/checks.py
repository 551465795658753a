"""Checks: HostFacts + Expectations -> a list of Check records.  Pure.

Check names: :data:`CHECK_NAMES`, in the order :func:`evaluate` returns them; a per-GPU check is
named ``<check>:gpu<N>`` (N: nvidia-smi's index) and its ``details`` hold gpu/uuid/pci_bus_id.
The README's check table lists exactly these names (tests/test_readme_checks.py).

Thresholds:
- retired pages: fail at RETIRED_PAGES_LIMIT (60) single- plus double-bit retired pages, NVIDIA's
  replacement threshold in its Dynamic Page Retirement guide (the driver can retire at most 64), or when a
  retirement is pending (it takes effect at the next GPU reset/reboot).
- "N/A" (None in the facts) is never a failure: a check with nothing to look at is skipped.
"""

from __future__ import annotations

from fleet.audit.checks_kernel import KERNEL_CHECK_NAMES, kernel_checks
from fleet.audit.checks_fabric import FABRIC_CHECK_NAMES, evaluate_fabric
from fleet.audit import checks_gpu
from fleet.audit.expectations import Expectations, version_at_least, version_matches_pin
from fleet.audit.facts.host import HostFacts
from fleet.audit.facts.nvidia_smi import GpuFacts
from fleet.status import Check, Status

RETIRED_PAGES_LIMIT = 60
# Clock event reasons that mean the hardware is protecting itself; idle, SW power cap, sync boost,
# application/display clock settings are normal operation.
WARN_CLOCK_REASONS = {
    "hw_slowdown": "HW slowdown (power brake, over-temperature or power supply)",
    "hw_thermal_slowdown": "HW thermal slowdown (GPU too hot: check cooling and airflow)",
    "hw_power_brake_slowdown": "HW power brake (external power-brake signal: check the PSU/chassis)",
    "sw_thermal_slowdown": "SW thermal slowdown (GPU above its temperature target: check cooling)",
}
# Per-GPU checks, one each per GPU nvidia-smi reports, named "<check>:gpu<N>".
GPU_CHECKS = ("ecc", "pcie", "clocks", "persistence")
CHECK_NAMES = ("nvidia-smi", "gpu-count:lspci", "gpu-count:expected", "gpu-model", "driver-version", "cuda-version",
               *(f"{c}:gpuN" for c in GPU_CHECKS), *KERNEL_CHECK_NAMES, "container-toolkit",
               *FABRIC_CHECK_NAMES,  # fabric area
               *checks_gpu.HOST_CHECKS, *(f"{c}:gpuN" for c in checks_gpu.GPU_HEALTH_CHECKS))
_SMI_FAIL_KINDS = {"not-installed", "driver-library-mismatch", "driver-not-loaded", "no-devices", "timeout",
                   "gpu-lost"}


def evaluate(facts: HostFacts, expect: Expectations) -> list[Check]:
    checks = [_nvidia_smi(facts, expect), _lspci_count(facts), _expected_count(facts, expect),
              _model(facts, expect), _driver(facts, expect), _cuda(facts, expect)]
    for gpu in facts.gpus:
        checks += [_ecc(gpu), _pcie(gpu), _clocks(gpu), _persistence(gpu)]
    checks += [*kernel_checks(facts), _toolkit(facts, expect)]
    checks += evaluate_fabric(facts, expect)  # fabric area: nvlink, infiniband, fabric-manager
    checks += checks_gpu.evaluate_host(facts)
    for gpu in facts.gpus:
        checks += checks_gpu.evaluate_gpu(gpu)
    return checks


def _no_gpu_host(facts: HostFacts, expect: Expectations) -> bool:
    return facts.lspci_gpu_count == 0 and not expect.gpu_count


def _gpu_details(gpu: GpuFacts) -> dict:
    return {"gpu": gpu.index, "uuid": gpu.uuid, "pci_bus_id": gpu.pci_bus_id}


def _nvidia_smi(facts: HostFacts, expect: Expectations) -> Check:
    err = facts.nvidia_smi_error
    if err is None:
        return Check("nvidia-smi", Status.PASS, f"nvidia-smi reports {len(facts.gpus)} GPU(s)",
                     observed=len(facts.gpus), expected="an XML report",
                     details={"schema": facts.nvidia_smi_schema} if facts.nvidia_smi_schema else {})
    if err.kind in ("not-installed", "no-devices") and facts.lspci_gpu_count == 0 and not facts.driver_gpu_bus_ids:
        if expect.gpu_count == 0:
            return Check("nvidia-smi", Status.SKIP,
                         f"no NVIDIA GPU on the PCI bus, as the inventory expects (gpufleet_gpu_count: 0); "
                         f"nvidia-smi: {err.kind}", observed=err.kind, expected="no GPU")
        if expect.gpu_count is None:
            return Check("nvidia-smi", Status.WARN,
                         f"no NVIDIA GPU found: none on the PCI bus and nvidia-smi {err.kind.replace('-', ' ')}; "
                         f"set gpufleet_gpu_count: 0 for this host if it has none by design",
                         observed=err.kind, expected="an XML report")
    status = Status.FAIL if err.kind in _SMI_FAIL_KINDS else Status.ERROR
    return Check("nvidia-smi", status, err.message, observed=err.kind, expected="an XML report",
                 details={"rc": err.rc, "excerpt": err.excerpt})


def _lspci_count(facts: HostFacts) -> Check:
    name, lspci, smi = "gpu-count:lspci", facts.lspci_gpu_count, facts.nvidia_smi_gpu_count
    if lspci is None:
        return Check(name, Status.SKIP, f"cannot compare: {facts.lspci_error or 'no lspci output'}")
    if smi is None:
        return Check(name, Status.SKIP, f"cannot compare: nvidia-smi gave no report; lspci shows {lspci} NVIDIA GPU(s)",
                     observed=lspci)
    slots = [g["slot"] for g in facts.lspci_gpus]
    if lspci == smi:
        return Check(name, Status.PASS, f"{lspci} NVIDIA GPU(s) on the PCI bus, all seen by nvidia-smi",
                     observed=smi, expected=lspci)
    if lspci > smi:
        return Check(name, Status.FAIL,
                     f"lspci shows {lspci} NVIDIA GPU(s) but nvidia-smi only {smi}: a GPU has fallen off the bus "
                     f"or failed to initialise; look for XID 79 in dmesg, then reset/reseat the GPU or drain and "
                     f"RMA the node",
                     observed=smi, expected=lspci, details={"lspci_slots": slots})
    return Check(name, Status.WARN,
                 f"nvidia-smi reports {smi} GPU(s) but lspci shows only {lspci}: lspci may lack access to the PCI tree "
                 f"(container/VM) or its ID database is stale (update-pciids)",
                 observed=smi, expected=lspci, details={"lspci_slots": slots})


def _expected_count(facts: HostFacts, expect: Expectations) -> Check:
    name = "gpu-count:expected"
    if expect.gpu_count is None:
        return Check(name, Status.SKIP, "no gpufleet_gpu_count set for this host")
    observed = facts.nvidia_smi_gpu_count
    source = "nvidia-smi"
    if observed is None:
        observed, source = facts.lspci_gpu_count, "lspci"
    if observed is None:
        return Check(name, Status.ERROR, "cannot count GPUs: neither nvidia-smi nor lspci gave a result",
                     expected=expect.gpu_count)
    if observed == expect.gpu_count:
        return Check(name, Status.PASS, f"{observed} GPU(s) as expected ({source})", observed=observed,
                     expected=expect.gpu_count)
    return Check(name, Status.FAIL,
                 f"{source} shows {observed} GPU(s), the inventory expects {expect.gpu_count}: check for missing or "
                 f"fallen-off GPUs, or correct gpufleet_gpu_count", observed=observed, expected=expect.gpu_count)


def _model(facts: HostFacts, expect: Expectations) -> Check:
    name = "gpu-model"
    if expect.gpu_model is None:
        return Check(name, Status.SKIP, "no gpufleet_gpu_model set for this host")
    if not facts.gpus:
        return Check(name, Status.SKIP, "no GPU reported by nvidia-smi to compare", expected=expect.gpu_model)
    names = [g.name for g in facts.gpus]
    wrong = {g.index: g.name for g in facts.gpus if not expect.model_matches(g.name)}
    if not wrong:
        return Check(name, Status.PASS, f"all GPUs match {expect.gpu_model!r}", observed=sorted(set(map(str, names))),
                     expected=expect.gpu_model)
    return Check(name, Status.FAIL,
                 f"GPU(s) {sorted(wrong)} are {sorted(set(map(str, wrong.values())))}, not {expect.gpu_model!r}: "
                 f"wrong hardware in this node or wrong gpufleet_gpu_model",
                 observed=sorted(set(map(str, names))), expected=expect.gpu_model, details={"mismatched": wrong})


def _version_policy(name: str, what: str, observed: str | None, minimum: str | None, pinned: str | None) -> Check:
    expected = " and ".join(x for x in (pinned and f"== {pinned}", minimum and f">= {minimum}") if x)
    if observed is None:
        return Check(name, Status.FAIL, f"{what} version unknown (nvidia-smi gave none): fix nvidia-smi first",
                     expected=expected)
    try:
        if pinned and not version_matches_pin(observed, pinned):
            return Check(name, Status.FAIL, f"{what} {observed} is not the pinned {pinned}: install {pinned}",
                         observed=observed, expected=expected)
        if minimum and not version_at_least(observed, minimum):
            return Check(name, Status.FAIL, f"{what} {observed} is older than the minimum {minimum}: upgrade",
                         observed=observed, expected=expected)
    except ValueError as exc:
        return Check(name, Status.ERROR, f"cannot compare {what} version: {exc}", observed=observed, expected=expected)
    return Check(name, Status.PASS, f"{what} {observed} meets {expected}", observed=observed, expected=expected)


def _driver(facts: HostFacts, expect: Expectations) -> Check:
    if not (expect.driver_min or expect.driver_version):
        return Check("driver-version", Status.SKIP, "no gpufleet_driver_min or gpufleet_driver_version set",
                     observed=facts.driver_version)
    return _version_policy("driver-version", "driver", facts.driver_version, expect.driver_min, expect.driver_version)


def _cuda(facts: HostFacts, expect: Expectations) -> Check:
    if not expect.cuda_min:
        return Check("cuda-version", Status.SKIP, "no gpufleet_cuda_min set", observed=facts.cuda_version)
    return _version_policy("cuda-version", "CUDA", facts.cuda_version, expect.cuda_min, None)


def _ecc(gpu: GpuFacts) -> Check:
    name, details = f"ecc:gpu{gpu.index}", _gpu_details(gpu)
    observed = {"volatile_uncorrectable": gpu.ecc.get("volatile_uncorrectable"),
                "aggregate_uncorrectable": gpu.ecc.get("aggregate_uncorrectable"),
                "retired_pages": gpu.retired_pages, "remapped_rows": gpu.remapped_rows or None}
    fails, warns = [], []
    if (n := gpu.ecc.get("volatile_uncorrectable")):
        fails.append(f"{n} uncorrectable ECC error(s) since the last driver load: drain the node and reset the GPU")
    rows = gpu.remapped_rows
    if rows.get("pending"):
        fails.append("row remapping pending: reset the GPU (or reboot) to apply it")
    if rows.get("failure"):
        fails.append("row remapping failed: the GPU has run out of spare rows; RMA it")
    retired = [v for v in (gpu.retired_pages.get("single_bit"), gpu.retired_pages.get("double_bit")) if v is not None]
    if retired and sum(retired) >= RETIRED_PAGES_LIMIT:
        fails.append(f"{sum(retired)} retired pages, at or past NVIDIA's limit of {RETIRED_PAGES_LIMIT}: RMA the GPU")
    if gpu.retired_pages.get("pending"):
        fails.append("page retirement pending: reset the GPU (or reboot) to retire the page")
    if not fails and (n := gpu.ecc.get("aggregate_uncorrectable")):
        warns.append(f"{n} uncorrectable ECC error(s) over the GPU's lifetime (none since the driver loaded): watch it")
    known = [gpu.ecc.get("volatile_uncorrectable"), gpu.ecc.get("aggregate_uncorrectable"),
             rows.get("pending"), rows.get("failure"), *retired, gpu.retired_pages.get("pending")]
    if fails:
        return Check(name, Status.FAIL, "; ".join(fails), observed=observed, expected="no uncorrectable errors",
                     details=details)
    if warns:
        return Check(name, Status.WARN, "; ".join(warns), observed=observed, expected="no uncorrectable errors",
                     details=details)
    if all(v is None for v in known):
        return Check(name, Status.SKIP, f"GPU {gpu.index} reports no ECC counters (N/A: ECC unsupported or disabled)",
                     details=details)
    return Check(name, Status.PASS, f"GPU {gpu.index}: no uncorrectable ECC errors, no pending retirement/remap",
                 observed=observed, expected="no uncorrectable errors", details=details)


def is_idle(gpu: GpuFacts) -> bool:
    """Idle: performance state P8 or deeper, 0 % utilisation, or the GPU-idle clock reason active."""
    p = gpu.pstate_number
    return (p is not None and p >= 8) or gpu.utilization_gpu == 0 or gpu.clock_event_reasons.get("gpu_idle") is True


def _pcie(gpu: GpuFacts) -> Check:
    name, details, p = f"pcie:gpu{gpu.index}", _gpu_details(gpu), gpu.pcie
    wc, wm, gc, gm = (p.get("link_width_current"), p.get("link_width_max"),
                      p.get("link_gen_current"), p.get("link_gen_max"))
    observed = {"gen": gc, "width": wc}
    expected = {"gen": gm, "width": wm}
    if None in (wc, wm) and None in (gc, gm):
        return Check(name, Status.SKIP, f"GPU {gpu.index}: PCIe link maxima not reported (N/A)", observed=observed,
                     details=details)
    if wc is not None and wm is not None and wc < wm:
        return Check(name, Status.FAIL,
                     f"GPU {gpu.index} PCIe link is x{wc}, below its maximum x{wm}: reseat the GPU, check the riser "
                     f"and that the slot is wired x{wm}", observed=observed, expected=expected, details=details)
    if gc is not None and gm is not None and gc < gm:
        if is_idle(gpu):
            return Check(name, Status.PASS,
                         f"GPU {gpu.index} PCIe gen {gc} of {gm} while idle ({gpu.performance_state or 'util 0%'}): "
                         f"normal power saving", observed=observed, expected=expected,
                         details={**details, "idle": True})
        return Check(name, Status.FAIL,
                     f"GPU {gpu.index} PCIe link runs at gen {gc}, below its maximum gen {gm}, while busy: check the "
                     f"slot, riser and BIOS PCIe settings", observed=observed, expected=expected,
                     details={**details, "idle": False})
    return Check(name, Status.PASS, f"GPU {gpu.index} PCIe link at its maximum", observed=observed, expected=expected,
                 details=details)


def _clocks(gpu: GpuFacts) -> Check:
    name, details = f"clocks:gpu{gpu.index}", _gpu_details(gpu)
    reasons = gpu.clock_event_reasons
    if not reasons:
        return Check(name, Status.SKIP, f"GPU {gpu.index} reports no clock event reasons", details=details)
    active = sorted(r for r, on in reasons.items() if on)
    bad = [r for r in active if r in WARN_CLOCK_REASONS]
    if bad:
        return Check(name, Status.WARN,
                     f"GPU {gpu.index} clocks held down: " + "; ".join(WARN_CLOCK_REASONS[r] for r in bad),
                     observed=active, expected="no HW slowdown", details=details)
    return Check(name, Status.PASS,
                 f"GPU {gpu.index} clock reasons normal" + (f" ({', '.join(active)})" if active else ""),
                 observed=active, expected="no HW slowdown", details=details)


def _persistence(gpu: GpuFacts) -> Check:
    name, details, mode = f"persistence:gpu{gpu.index}", _gpu_details(gpu), gpu.persistence_mode
    if mode is None:
        return Check(name, Status.SKIP, f"GPU {gpu.index} persistence mode not reported (N/A)", details=details)
    if mode.lower() == "enabled":
        return Check(name, Status.PASS, f"GPU {gpu.index} persistence mode on", observed=mode, expected="Enabled",
                     details=details)
    return Check(name, Status.WARN,
                 f"GPU {gpu.index} persistence mode is {mode}: enable nvidia-persistenced (or `nvidia-smi -pm 1`) "
                 f"so the driver stays initialised between jobs", observed=mode, expected="Enabled", details=details)


def _toolkit(facts: HostFacts, expect: Expectations) -> Check:
    runtimes = facts.docker_runtimes
    details = {"docker_runtimes": runtimes if runtimes is not None else facts.docker_error}
    if facts.toolkit_version is None:
        if _no_gpu_host(facts, expect):
            return Check("container-toolkit", Status.SKIP, "no NVIDIA GPU on this host", details=details)
        return Check("container-toolkit", Status.WARN,
                     f"nvidia-container-toolkit not found ({facts.toolkit_error or 'no version'}): "
                     f"containers cannot use the GPUs; install nvidia-container-toolkit and run "
                     f"`nvidia-ctk runtime configure --runtime=docker`",
                     observed=None, expected="nvidia-ctk installed", details=details)
    note = ""
    if runtimes is not None and "nvidia" not in runtimes:
        note = "; Docker has no 'nvidia' runtime registered (`nvidia-ctk runtime configure --runtime=docker` if needed)"
    return Check("container-toolkit", Status.PASS, f"nvidia-container-toolkit {facts.toolkit_version}{note}",
                 observed=facts.toolkit_version, expected="nvidia-ctk installed", details=details)
