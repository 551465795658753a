"""Telemetry under load: NVML sampled every second while the burn runs, and judged (the judging is pure).

Sampled per GPU (``nvidia-ml-py``, imported as ``pynvml``): GPU temperature, HBM temperature (where NVML has it),
power, SM and memory clocks, the SM clock's maximum, and the clock event (throttle) reasons bitmask.  Judged over
the samples taken under load:

- HW slowdown, HW thermal slowdown or HW power brake (NVML's ``clocksEventReasonHwSlowdown`` 0x8,
  ``HwThermalSlowdown`` 0x40, ``HwPowerBrakeSlowdown`` 0x80) in any sample **fails**: the hardware protected
  itself under load;
- SW thermal slowdown (0x20) **warns**, as does a mean SM clock below ``clock_floor`` (0.8) of its maximum;
- otherwise it passes, with the summary figures: max temperature, max HBM temperature, mean power, mean SM clock.

"Under load": the samples whose GPU utilisation (NVML's, the share of the last sample period a kernel ran) is at
least :data:`LOAD_UTIL` percent; the burn's set-up (seeded operands made on the host, the first product) leaves
the GPU idle for seconds, and idle clocks would drag the mean SM clock below the floor.  The mean SM clock and
mean power are taken over those; the throttle reasons and the temperatures over every sample.  Where NVML gives
no utilisation, every sample counts.  Each GPU is sampled only while its own stage runs.

Without NVML (a CPU machine, no ``nvidia-ml-py``, no driver) the sampler says why and the check is skipped.
The report keeps a downsampled series per GPU for the HTML report's plots.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from statistics import mean
from typing import Optional

from verify.status import FAIL, PASS, SKIP, WARN, make_check

HW_SLOWDOWN, SW_THERMAL, HW_THERMAL, HW_POWER_BRAKE = 0x8, 0x20, 0x40, 0x80
HW_REASONS = {HW_SLOWDOWN: "HW slowdown", HW_THERMAL: "HW thermal slowdown", HW_POWER_BRAKE: "HW power brake"}
CLOCK_FLOOR = 0.8
LOAD_UTIL = 80  # percent: a sample at or above it was taken under load
FIELDS = ("t", "temp_c", "hbm_temp_c", "power_w", "sm_mhz", "mem_mhz", "sm_max_mhz", "reasons", "util_pct")


@dataclass
class Series:
    """One GPU's samples: a list per field, aligned."""

    samples: list = field(default_factory=list)  # [{field: value}]

    def column(self, name: str) -> list:
        return [s[name] for s in self.samples if s.get(name) is not None]


def nvml():
    """The ``pynvml`` module, initialised; raises RuntimeError naming why it cannot be used."""
    try:
        import pynvml  # nvidia-ml-py
    except ImportError:
        raise RuntimeError("nvidia-ml-py (pynvml) is not installed: pip install nvidia-ml-py") from None
    try:
        pynvml.nvmlInit()
    except Exception as exc:  # noqa: BLE001 - NVMLError_LibraryNotFound, DriverNotLoaded...
        raise RuntimeError(f"NVML unusable: {exc}") from None
    return pynvml


def read(pynvml, handle) -> dict:
    """One sample of one GPU; a field NVML does not give is None."""
    def get(fn, *args):
        try:
            return fn(handle, *args)
        except Exception:  # noqa: BLE001 - NVMLError_NotSupported on this GPU: the field is absent
            return None

    power = get(pynvml.nvmlDeviceGetPowerUsage)
    util = get(pynvml.nvmlDeviceGetUtilizationRates)
    reasons_fn = (getattr(pynvml, "nvmlDeviceGetCurrentClocksEventReasons", None)
                  or pynvml.nvmlDeviceGetCurrentClocksThrottleReasons)
    hbm = None
    field_id = getattr(pynvml, "NVML_FI_DEV_MEMORY_TEMP", None)
    if field_id is not None:
        values = get(pynvml.nvmlDeviceGetFieldValues, [field_id])
        if values and getattr(values[0], "nvmlReturn", 1) == 0:
            hbm = values[0].value.uiVal
    return {"t": time.monotonic(), "temp_c": get(pynvml.nvmlDeviceGetTemperature, pynvml.NVML_TEMPERATURE_GPU),
            "hbm_temp_c": hbm, "power_w": None if power is None else power / 1000.0,
            "sm_mhz": get(pynvml.nvmlDeviceGetClockInfo, pynvml.NVML_CLOCK_SM),
            "mem_mhz": get(pynvml.nvmlDeviceGetClockInfo, pynvml.NVML_CLOCK_MEM),
            "sm_max_mhz": get(pynvml.nvmlDeviceGetMaxClockInfo, pynvml.NVML_CLOCK_SM),
            "reasons": get(reasons_fn), "util_pct": None if util is None else util.gpu}


class Sampler:
    """``with Sampler(uuids) as s:`` samples every ``period_s`` in a thread of its own until the block ends;
    ``s.series[uuid]`` (NVML's ``GPU-...`` UUIDs).  ``s.problem`` says why nothing was sampled (no NVML)."""

    def __init__(self, uuids: list, period_s: float = 1.0) -> None:
        self.uuids, self.period_s = list(uuids), period_s
        self.series = {u: Series() for u in self.uuids}
        self.problem: Optional[str] = None
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def __enter__(self) -> "Sampler":
        try:
            pynvml = nvml()
            handles = {u: pynvml.nvmlDeviceGetHandleByUUID(u) for u in self.uuids}
        except Exception as exc:  # noqa: BLE001 - RuntimeError from nvml(), NVMLError for a bus id
            self.problem = str(exc)
            return self

        def loop():
            while not self._stop.is_set():
                for b, h in handles.items():
                    self.series[b].samples.append(read(pynvml, h))
                self._stop.wait(self.period_s)

        self._thread = threading.Thread(target=loop, name="gpufleet-telemetry", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


def judge(series: Series, clock_floor: float = CLOCK_FLOOR) -> tuple:
    """(status, message, summary figures) for one GPU's samples under load (pure)."""
    if not series.samples:
        return SKIP, "no telemetry sample", {}
    reasons = series.column("reasons")
    seen = 0
    for r in reasons:
        seen |= int(r)
    util_known = any(x.get("util_pct") is not None for x in series.samples)
    loaded = Series([x for x in series.samples if (x.get("util_pct") or 0) >= LOAD_UTIL]) if util_known else series
    temps, hbm = series.column("temp_c"), series.column("hbm_temp_c")
    power, sm, sm_max = loaded.column("power_w"), loaded.column("sm_mhz"), series.column("sm_max_mhz")
    figures = {"samples": len(series.samples), "loaded_samples": len(loaded.samples),
               "max_temp_c": max(temps) if temps else None,
               "max_hbm_temp_c": max(hbm) if hbm else None, "mean_power_w": round(mean(power), 1) if power else None,
               "mean_sm_mhz": round(mean(sm), 1) if sm else None, "max_sm_mhz": max(sm_max) if sm_max else None,
               "throttle_reasons": seen}
    hw = [name for bit, name in HW_REASONS.items() if seen & bit]
    if hw:
        hits = sum(1 for r in reasons if int(r) & (HW_SLOWDOWN | HW_THERMAL | HW_POWER_BRAKE))
        return FAIL, (f"{', '.join(hw)} under load in {hits} of {len(reasons)} samples (max {figures['max_temp_c']} C"
                      f", mean {figures['mean_power_w']} W)"), figures
    problems = []
    if not loaded.samples:
        problems.append(f"the GPU never reached {LOAD_UTIL}% utilisation in {len(series.samples)} samples: not "
                        "under load")
    if seen & SW_THERMAL:
        problems.append("SW thermal slowdown under load")
    if sm and sm_max and mean(sm) < clock_floor * max(sm_max):
        problems.append(f"mean SM clock {mean(sm):.0f} MHz below {clock_floor:.0%} of its maximum {max(sm_max)} MHz")
    summary = (f"max {figures['max_temp_c']} C" + (f" (HBM {figures['max_hbm_temp_c']} C)" if hbm else "")
               + f", mean {figures['mean_power_w']} W, mean SM clock {figures['mean_sm_mhz']} MHz")
    if problems:
        return WARN, "; ".join(problems) + f" ({summary})", figures
    return PASS, f"no throttling under load: {summary}", figures


def checks(sampler: Sampler, labels: dict, downsample) -> tuple:
    """Metrics and checks from a finished sampler; ``labels``: UUID -> device label."""
    if sampler.problem is not None:
        return {}, [make_check(f"telemetry:{label}", SKIP, f"telemetry not sampled: {sampler.problem}",
                               device=label) for label in labels.values()]
    metrics, out = {}, []
    for uuid, label in labels.items():
        series = sampler.series[uuid]
        status, message, figs = judge(series)
        keep = {k: downsample(series.column(k)) for k in ("temp_c", "power_w", "sm_mhz") if series.column(k)}
        out.append(make_check(f"telemetry:{label}", status, message, device=label,
                              details={**figs, "series": keep, "period_s": sampler.period_s}))
        for key, name in (("max_temp_c", "max_temp_c"), ("mean_power_w", "mean_power_w"),
                          ("mean_sm_mhz", "mean_sm_mhz")):
            if figs.get(key) is not None:
                metrics[f"telemetry/{name}:{label}"] = float(figs[key])
    return metrics, out
