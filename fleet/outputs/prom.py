"""A Prometheus textfile for node_exporter's textfile collector, from an audit report or a verify summary.

Pure renderers (:func:`audit_textfile`, :func:`verify_textfile`) and atomic writers
(:func:`write_audit_textfile`, :func:`write_verify_textfile`): the collector never reads half a file.

Every family starts ``gpufleet_``; values are in base units (seconds, bytes, bytes per second,
ratios 0-1).  The families both commands write (``gpufleet_host_status``,
``gpufleet_last_run_timestamp_seconds``...) carry a ``command`` label (``audit``, ``verify``) and the
same HELP text, so both files can sit in one textfile directory.  See ``docs/outputs.md``.
"""

from __future__ import annotations

import datetime as _dt
import math
import os
import re
from pathlib import Path
from typing import Any, Mapping, Optional

from fleet.jsonio import write_text_atomic
from fleet.outcome import STATUSES
from verify.status import ORDER

# Check statuses as a number (gpufleet_audit_check_status): their place in the one order of statuses
# (verify.status.ORDER: pass 0, skip 1, warn 2, fail 3, error 4); higher is worse.
CHECK_CODES = {status: code for code, status in enumerate(ORDER)}

_NAME_RE = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_DEVICE_RE = re.compile(r"^(?P<base>.+):(?P<device>[a-z]+\d+)$")


# --------------------------------------------------------------------------- exposition format


def escape_label(value: Any) -> str:
    """A label value as the text format wants it: backslash, double quote and newline escaped."""
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def format_value(value: float) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def metric_name(*parts: str) -> str:
    """``gpufleet_`` + the parts in snake_case: anything but ``[a-z0-9]`` becomes ``_``, runs collapsed."""
    body = "_".join(p for p in parts if p)
    body = re.sub(r"[^a-z0-9]+", "_", body.lower()).strip("_")
    name = f"gpufleet_{body}"
    if not _NAME_RE.match(name):  # cannot happen after the substitution; a guard against a future change
        raise ValueError(f"not a Prometheus metric name: {name!r}")
    return name


class Exposition:
    """Families in insertion order; each family's HELP and TYPE once, then its samples."""

    def __init__(self) -> None:
        self._families: dict[str, dict] = {}

    def family(self, name: str, help_text: str, kind: str = "gauge") -> None:
        self._families.setdefault(name, {"help": help_text, "type": kind, "samples": {}})

    def add(self, name: str, labels: Mapping[str, Any], value: Optional[float], help_text: str = "",
            kind: str = "gauge") -> None:
        """One sample; a None value is left out (unknown is not zero).  A repeated label set keeps the first."""
        if value is None:
            return
        self.family(name, help_text, kind)
        key = tuple((k, str(v)) for k, v in labels.items())
        self._families[name]["samples"].setdefault(key, value)

    def render(self) -> str:
        lines = []
        for name, fam in self._families.items():
            if not fam["samples"]:
                continue
            lines.append(f"# HELP {name} {escape_help(fam['help'])}")
            lines.append(f"# TYPE {name} {fam['type']}")
            for labels, value in fam["samples"].items():
                body = ",".join(f'{k}="{escape_label(v)}"' for k, v in labels)
                lines.append(f"{name}{{{body}}} {format_value(value)}" if body else f"{name} {format_value(value)}")
        return "\n".join(lines) + "\n" if lines else ""


def timestamp(iso: Optional[str]) -> Optional[float]:
    """Seconds since the epoch of an ISO 8601 time (naive means UTC); None when absent or unreadable."""
    if not iso:
        return None
    try:
        t = _dt.datetime.fromisoformat(str(iso).replace("Z", "+00:00"))
    except ValueError:
        return None
    if t.tzinfo is None:
        t = t.replace(tzinfo=_dt.timezone.utc)
    return t.timestamp()


# --------------------------------------------------------------------------- shared families

HOST_STATUS = ("gpufleet_host_status", "Host status of the last run, one-hot over the status label "
               "(pass, warn, fail, error, unreachable).")
HOST_STATE = ("gpufleet_host_state_info", "How the work on the host ended in the last run (1; the state label).")
HOSTS = ("gpufleet_hosts", "Hosts per status in the last run.")
LAST_RUN = ("gpufleet_last_run_timestamp_seconds", "When the last run wrote its report, seconds since the epoch.")
EXIT_CODE = ("gpufleet_exit_code", "The last run's exit code (0 every host passed, 1 a host failed, 130 interrupted).")
INTERRUPTED = ("gpufleet_interrupted", "1 when the last run was interrupted (Ctrl-C).")
DURATION = ("gpufleet_host_duration_seconds", "Seconds the last run spent on the host.")


def _common(exp: Exposition, command: str, doc: Mapping, hosts: Mapping[str, Mapping], when: Optional[str]) -> None:
    for host, h in hosts.items():
        for status in STATUSES:
            exp.add(HOST_STATUS[0], {"command": command, "host": host, "status": status},
                    int(h.get("status") == status), HOST_STATUS[1])
        if h.get("state"):
            exp.add(HOST_STATE[0], {"command": command, "host": host, "state": h["state"]}, 1, HOST_STATE[1])
    counts = doc.get("counts") or {}
    for status in STATUSES:
        if isinstance(counts.get(status), int):
            exp.add(HOSTS[0], {"command": command, "status": status}, counts[status], HOSTS[1])
    exp.add(LAST_RUN[0], {"command": command}, timestamp(when), LAST_RUN[1])
    if isinstance(doc.get("exit_code"), int):
        exp.add(EXIT_CODE[0], {"command": command}, doc["exit_code"], EXIT_CODE[1])
    exp.add(INTERRUPTED[0], {"command": command}, int(bool(doc.get("interrupted"))), INTERRUPTED[1])


def _number(value: Any) -> Optional[float]:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return value if math.isfinite(value) else None


def _split_check(name: str) -> tuple[str, str]:
    """``("ecc", "gpu1")`` for ``ecc:gpu1``; ``(name, "")`` without a device suffix."""
    m = _DEVICE_RE.match(name)
    return (m.group("base"), m.group("device")) if m else (name, "")


# --------------------------------------------------------------------------- audit

# (path in a GPU's facts, family suffix, scale to base units, HELP)
GPU_FACTS = (
    (("memory_total_mib",), "gpu_memory_total_bytes", 1024 * 1024, "GPU memory, bytes."),
    (("utilization_gpu",), "gpu_utilization_ratio", 0.01, "GPU utilisation when audited, 0-1."),
    (("temperature", "gpu"), "gpu_temperature_celsius", 1, "GPU temperature, degrees Celsius."),
    (("ecc", "volatile_correctable"), "gpu_ecc_volatile_correctable_errors", 1,
     "Correctable ECC errors since the driver loaded."),
    (("ecc", "volatile_uncorrectable"), "gpu_ecc_volatile_uncorrectable_errors", 1,
     "Uncorrectable ECC errors since the driver loaded."),
    (("ecc", "aggregate_correctable"), "gpu_ecc_aggregate_correctable_errors", 1,
     "Correctable ECC errors over the GPU's life."),
    (("ecc", "aggregate_uncorrectable"), "gpu_ecc_aggregate_uncorrectable_errors", 1,
     "Uncorrectable ECC errors over the GPU's life."),
    (("remapped_rows", "correctable"), "gpu_remapped_rows_correctable", 1, "Rows remapped for correctable errors."),
    (("remapped_rows", "uncorrectable"), "gpu_remapped_rows_uncorrectable", 1,
     "Rows remapped for uncorrectable errors."),
    (("remapped_rows", "pending"), "gpu_remapped_rows_pending", 1, "1 when a row remapping waits for a GPU reset."),
    (("remapped_rows", "failure"), "gpu_remapped_rows_failure", 1, "1 when a row remapping failed."),
    (("pcie", "link_gen_current"), "gpu_pcie_link_generation", 1, "Current PCIe link generation."),
    (("pcie", "link_gen_max"), "gpu_pcie_link_generation_max", 1, "Maximum PCIe link generation."),
    (("pcie", "link_width_current"), "gpu_pcie_link_width_lanes", 1, "Current PCIe link width, lanes."),
    (("pcie", "link_width_max"), "gpu_pcie_link_width_lanes_max", 1, "Maximum PCIe link width, lanes."),
    (("pcie_replays", "replays"), "gpu_pcie_replays", 1, "PCIe replays since the last reset."),
)


def _dig(d: Any, path: tuple) -> Any:
    for p in path:
        if not isinstance(d, Mapping):
            return None
        d = d.get(p)
    return d


def _gpu_label(g: Any, pos: int) -> str:
    """``gpu<index>`` as nvidia-smi numbers it (the checks' suffix); the list position when it has none."""
    index = g.get("index") if isinstance(g, Mapping) else None
    return f"gpu{index if isinstance(index, int) and not isinstance(index, bool) else pos}"


def audit_textfile(report: Mapping) -> str:
    """The textfile of a ``gpufleet.audit/1`` report: host status, checks, GPU facts, last run time."""
    exp = Exposition()
    hosts = report.get("hosts") or {}
    _common(exp, "audit", report, hosts, report.get("generated"))
    for host, h in hosts.items():
        exp.add(DURATION[0], {"command": "audit", "host": host}, _number(h.get("duration_s")), DURATION[1])
    for host, h in hosts.items():
        facts = h.get("facts") or {}
        info = {k: facts.get(k) for k in ("driver_version", "cuda_version", "kernel") if facts.get(k)}
        if info or facts:
            exp.add("gpufleet_audit_host_info", {"host": host, **{k: info.get(k, "") for k in
                                                                  ("driver_version", "cuda_version", "kernel")}},
                    1, "Versions the audit read on the host (1; the labels).")
        gpus = facts.get("gpus")
        if isinstance(gpus, list):
            exp.add("gpufleet_audit_gpus", {"host": host}, len(gpus), "GPUs nvidia-smi lists.")
        exp.add("gpufleet_audit_pci_gpus", {"host": host}, _number(facts.get("lspci_gpu_count")),
                "NVIDIA GPUs on the PCI bus (lspci).")
    for host, h in hosts.items():
        gpus = (h.get("facts") or {}).get("gpus")
        for pos, g in enumerate(gpus if isinstance(gpus, list) else ()):
            if not isinstance(g, Mapping):
                continue
            gpu = _gpu_label(g, pos)
            exp.add("gpufleet_audit_gpu_info", {"host": host, "gpu": gpu, "name": g.get("name") or "",
                                                "uuid": g.get("uuid") or "", "pci_bus_id": g.get("pci_bus_id") or "",
                                                "vbios_version": g.get("vbios_version") or ""},
                    1, "A GPU nvidia-smi lists (1; the labels).")
    for path, suffix, scale, help_text in GPU_FACTS:
        for host, h in hosts.items():
            gpus = (h.get("facts") or {}).get("gpus")
            for pos, g in enumerate(gpus if isinstance(gpus, list) else ()):
                raw = _dig(g, path)
                value = int(raw) if isinstance(raw, bool) else _number(raw)
                if value is not None:
                    value = value * scale if scale != 1 else value
                exp.add(metric_name("audit", suffix), {"host": host, "gpu": _gpu_label(g, pos)}, value,
                        help_text)
    codes = ", ".join(f"{k} {v}" for k, v in CHECK_CODES.items())
    for host, h in hosts.items():
        for c in h.get("checks") or ():
            check, gpu = _split_check(str(c.get("name", "")))
            exp.add("gpufleet_audit_check_status", {"host": host, "check": check, "gpu": gpu},
                    CHECK_CODES.get(c.get("status")), f"Each check's status as a number: {codes}.")
    return exp.render()


# --------------------------------------------------------------------------- verify

# unit suffix of a metric key -> (family suffix, factor to base units); the longest match wins
_UNITS = (
    ("images_per_s", "images_per_second", 1),
    ("tflops", "flops_per_second", 1e12),
    ("gflops", "flops_per_second", 1e9),
    ("gbps", "bytes_per_second", 1e9),
    ("per_s", "per_second", 1),
    ("seconds", "seconds", 1),
    ("ms", "seconds", 1e-3),
    ("us", "seconds", 1e-6),
    ("s", "seconds", 1),
)


# the verify families this module names itself: a metric key that would map onto one gets ``_metric`` appended
VERIFY_FAMILIES = frozenset(f"gpufleet_verify_{n}" for n in (
    "host_info", "gpus", "check_status", "fleet_ratio", "reference_ratio", "straggler", "straggler_ratio",
    "stragglers", "regressions", "regression_ratio", "regression_value", "regression_baseline"))


def verify_metric(base: str) -> tuple[str, float]:
    """``(family name, factor)`` of a verify metric base key: ``matmul/bf16/tflops`` ->
    ``("gpufleet_verify_matmul_bf16_flops_per_second", 1e12)``; ``allreduce/busbw_gbps`` ->
    ``("gpufleet_verify_allreduce_busbw_bytes_per_second", 1e9)``."""
    name, factor = _verify_metric(base)
    return (name + "_metric" if name in VERIFY_FAMILIES else name), factor


def _verify_metric(base: str) -> tuple[str, float]:
    parts = re.split(r"[^A-Za-z0-9]+", base)
    joined = "_".join(parts).lower()
    for unit, suffix, factor in _UNITS:
        if joined == unit or joined.endswith("_" + unit):
            stem = joined[: len(joined) - len(unit)]
            return metric_name("verify", stem, suffix), factor
    return metric_name("verify", joined), 1


def _scaled(value: float, factor: float) -> float:
    return value if factor == 1 else value * factor


def verify_textfile(summary: Mapping, reports: Optional[Mapping[str, Mapping]] = None) -> str:
    """The textfile of a ``gpufleet.summary/1`` verdict.

    ``reports``: host -> its ``gpufleet.verify/1`` report (``load_run``'s runs), for one sample per GPU
    (``gpu="gpu3"``) of every metric; without it, each host's figure from the summary (its worst GPU)
    is written with ``gpu=""``.  A report's un-suffixed value is written with ``gpu=""`` too.
    """
    exp = Exposition()
    hosts = summary.get("hosts") or {}
    _common(exp, "verify", summary, hosts, summary.get("finished") or summary.get("started"))
    for host, h in hosts.items():
        exp.add("gpufleet_verify_host_info", {"host": host, "gpu_model": h.get("gpu_model") or ""}, 1,
                "The host's GPU model in the last verify run (1; the label).")
        exp.add("gpufleet_verify_gpus", {"host": host}, _number(h.get("gpu_count")), "GPUs the verify report lists.")
    for host, h in hosts.items():
        for c in (h.get("failing_checks") or []) + (h.get("warning_checks") or []):
            check, gpu = _split_check(str(c.get("name", "")))
            exp.add("gpufleet_verify_check_status", {"host": host, "check": check, "gpu": gpu},
                    CHECK_CODES.get(c.get("status")),
                    "A failing or warning verify check's status as a number: warn 2, fail 3, error 4.")
    samples: list[tuple[str, str, str, float]] = []  # (base, host, gpu, value)
    for host, h in hosts.items():
        report = (reports or {}).get(host)
        metrics = report.get("metrics") if isinstance(report, Mapping) else None
        if isinstance(metrics, Mapping):
            for key, raw in metrics.items():
                value = _number(raw)
                if value is None or not isinstance(key, str):
                    continue
                m = _DEVICE_RE.match(key)
                samples.append((m.group("base"), host, m.group("device"), value) if m else (key, host, "", value))
        else:
            for base, fig in (h.get("metrics") or {}).items():
                value = _number(fig.get("value") if isinstance(fig, Mapping) else None)
                if value is not None:
                    samples.append((base, host, "", value))
    for base in sorted({s[0] for s in samples}):
        name, factor = verify_metric(base)
        for b, host, gpu, value in samples:
            if b == base:
                exp.add(name, {"host": host, "gpu": gpu}, _scaled(value, factor),
                        f"verify's {base} (scaled to base units); gpu empty for the host's own figure.")
    for host, h in hosts.items():
        for base, fig in (h.get("metrics") or {}).items():
            if isinstance(fig, Mapping):
                exp.add("gpufleet_verify_fleet_ratio", {"host": host, "metric": base}, _number(fig.get("fleet_ratio")),
                        "The host's figure over the median of the hosts with the same GPU model.")
                exp.add("gpufleet_verify_reference_ratio", {"host": host, "metric": base},
                        _number(fig.get("reference_ratio")),
                        "The host's figure over the achievable reference figure for its GPU model.")
    for host, h in hosts.items():
        exp.add("gpufleet_verify_straggler", {"host": host}, int(bool(h.get("straggler"))),
                "1 when the host straggles on any metric (fleet or inside the node).")
    for s in summary.get("stragglers") or ():
        exp.add("gpufleet_verify_straggler_ratio",
                {"host": s.get("host", ""), "metric": s.get("metric", ""), "gpu": s.get("gpu") or "",
                 "scope": s.get("scope", "")},
                _number(s.get("ratio")), "A straggler: its value over the group's median (gpu empty: the host's "
                                         "figure among the fleet; else one GPU among the node's).")
    counts = summary.get("counts") or {}
    exp.add("gpufleet_verify_stragglers", {}, _number(counts.get("stragglers")), "Straggler records in the last run.")
    regressions = summary.get("regressions")
    if isinstance(regressions, list) and summary.get("baseline") is not None:  # judged against a history
        exp.add("gpufleet_verify_regressions", {}, len(regressions), "Regressions against the host's history.")
        for r in regressions:
            labels = {"host": r.get("host", ""), "gpu": r.get("gpu") or "", "metric": r.get("metric", "")}
            exp.add("gpufleet_verify_regression_ratio", labels, _number(r.get("ratio")),
                    "A regression: the value over the host's baseline.")
            factor = verify_metric(str(r.get("metric", "")))[1]
            for field, help_text in (("value", "A regression: the value of the last run (base units)."),
                                     ("baseline", "A regression: the host's baseline (base units).")):
                value = _number(r.get(field))
                exp.add(f"gpufleet_verify_regression_{field}", labels,
                        None if value is None else _scaled(value, factor), help_text)
    return exp.render()


# --------------------------------------------------------------------------- writers


def write_audit_textfile(path: str | os.PathLike, report: Mapping) -> Path:
    """Write :func:`audit_textfile` atomically (node_exporter reads ``*.prom``: name the file so)."""
    return write_text_atomic(path, audit_textfile(report))


def write_verify_textfile(path: str | os.PathLike, summary: Mapping,
                          reports: Optional[Mapping[str, Mapping]] = None) -> Path:
    """Write :func:`verify_textfile` atomically."""
    return write_text_atomic(path, verify_textfile(summary, reports))


__all__ = ["audit_textfile", "verify_textfile", "write_audit_textfile", "write_verify_textfile",
                          "escape_label", "metric_name", "verify_metric", "CHECK_CODES"]
