"""The series under sustained load for summary.html: the burn's and the telemetry's checks in the hosts' reports.

:func:`read_host_reports` reads ``run_dir/hosts/<host>.json`` (the summary does not carry the series);
everything else here is pure: :func:`series_checks` picks the checks that carry a series, :func:`split` sorts
them by device and dtype, :func:`burn_marks` says which of a burn's figures made it warn or fail.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Sequence

from fleet.runs.metrics import number
from fleet.runs.run_dir import report_path
from verify.contract import BURN_SAG, BURN_SPREAD
from verify.reference import grade
from verify.status import severity
from verify.telemetry import CLOCK_FLOOR, HW_POWER_BRAKE, HW_SLOWDOWN, HW_THERMAL, SW_THERMAL

BURN = re.compile(r"burn/([^/:]+):(.+)")  # burn/bf16:gpu0; not burn/correct/bf16:gpu0 (no series)
TELEMETRY = re.compile(r"telemetry:(.+)")
# The telemetry series a report may carry, in panel order: key, name, unit, table header, the check's figure.
TELEMETRY_SERIES = (("sm_mhz", "SM clock", "MHz", "Mean SM MHz", "mean_sm_mhz"),
                    ("temp_c", "temperature", "°C", "Max °C", "max_temp_c"),
                    ("power_w", "power", "W", "Mean W", "mean_power_w"))
# The burn's own warning rule, from verify's torch-free contract (the same numbers verify/burn.py judges with).
SAG, SPREAD = BURN_SAG, BURN_SPREAD
MIN_SAMPLES = 4  # samples the burn needs before it judges a sag or a spread


def has_points(values: Any) -> bool:
    return isinstance(values, list) and any(number(v) is not None for v in values)


def series_kind(check: Any) -> Optional[str]:
    """``"burn"`` or ``"telemetry"`` for a check that carries a series to plot; None for any other."""
    if not isinstance(check, Mapping) or not isinstance(check.get("name"), str):
        return None
    details = check.get("details")
    if not isinstance(details, Mapping):
        return None
    if BURN.fullmatch(check["name"]):
        return "burn" if has_points(details.get("series_tflops")) else None
    if TELEMETRY.fullmatch(check["name"]) and check.get("status") != "skip":
        series = details.get("series")
        if isinstance(series, Mapping) and any(has_points(series.get(k)) for k, *_ in TELEMETRY_SERIES):
            return "telemetry"
    return None


def usable(checks: Any) -> list:
    """The checks of ``checks`` that carry a series, in order; none of anything that is not a list."""
    return [c for c in checks if series_kind(c)] if isinstance(checks, list) else []


def series_checks(reports: Mapping) -> dict:
    """``{host: [its burn and telemetry checks that carry a series, in report order]}`` of ``{host: verify
    report}`` (pure).  Hosts without such a check are left out; the checks are the reports' own dicts."""
    out = {}
    for host, report in reports.items():
        found = usable(report.get("checks") if isinstance(report, Mapping) else None)
        if found:
            out[host] = found
    return out


def read_host_reports(run_dir: str | os.PathLike, hosts: Iterable[str]) -> dict:
    """``{host: report}`` of ``run_dir/hosts/<host>.json`` for each of ``hosts``; a report that is missing,
    unreadable or no JSON is left out (its host just has no series on the page)."""
    out = {}
    for host in hosts:
        try:
            out[host] = json.loads((Path(run_dir) / report_path(str(host))).read_bytes())
        except (OSError, ValueError, RecursionError):
            continue
    return out


def worst(checks: Sequence[Mapping]) -> str:
    """The most severe status among ``checks`` (``pass`` for none)."""
    out = "pass"
    for c in checks:
        if severity(c.get("status")) > severity(out):
            out = str(c.get("status"))
    return out


def split(checks: Sequence[Mapping]) -> tuple[list, dict, list, list]:
    """``(burns [(device, dtype, check)], telemetry {device: check}, devices, dtypes)``, in report order."""
    burns, tele, devices, dtypes = [], {}, [], []
    for c in checks:
        kind = series_kind(c)
        if kind == "burn":
            dtype, device = BURN.fullmatch(c["name"]).groups()
            burns.append((device, dtype, c))
            dtypes += [dtype] if dtype not in dtypes else []
        elif kind == "telemetry":
            device = TELEMETRY.fullmatch(c["name"]).group(1)
            tele.setdefault(device, c)
        else:
            continue
        devices += [device] if device not in devices else []
    return burns, tele, devices, dtypes


def panels(burns: list, tele: Mapping) -> list:
    """``"burn"`` (when there is a burn series), then each telemetry key some device has a series of."""
    return (["burn"] if burns else []) + [k for k, *_ in TELEMETRY_SERIES
                                          if any(has_points(c["details"]["series"].get(k)) for c in tele.values())]


def points(values: list, seconds_per_point: float, offset: float = 0.0) -> tuple[list, list]:
    """``(x, y)``: each point at the middle of the seconds it covers, from ``offset``; non-numbers left out."""
    xs, ys = [], []
    for i, v in enumerate(values):
        if number(v) is not None:
            xs.append(offset + (i + 0.5) * seconds_per_point)
            ys.append(float(v))
    return xs, ys


def seconds_per_point(values: list, period: Any, samples: Any) -> float:
    """A downsampled point covers ``samples / len(values)`` original intervals of ``period`` seconds (1 s when the
    report does not say)."""
    period = number(period)
    period = period if period and period > 0 else 1.0
    samples = number(samples)
    return period * samples / len(values) if samples and samples >= len(values) else period


def sag_ratio(details: Mapping) -> Optional[float]:
    """The last quarter's median over the first quarter's; None where the report lacks one of them."""
    first, last = number(details.get("first_quarter")), number(details.get("last_quarter"))
    return last / first if first and last is not None else None


def burn_marks(check: Mapping) -> dict:
    """Which of a warning or failing burn's figures made it so: ``{"median" | "sag" | "spread": severity}``, by the
    burn's own rule (below the reference, a sag under :data:`SAG`, a spread over :data:`SPREAD`).  A passing
    burn's figures are not marked, nor one a rule does not explain (its status says it)."""
    level = severity(check.get("status"))
    details = check.get("details") if isinstance(check.get("details"), Mapping) else {}
    if level == 0:
        return {}
    marks = {}
    ratio = number(details.get("reference_ratio"))
    if ratio is not None and severity(grade(ratio, 1.0)[0]) > 0:
        marks["median"] = min(level, severity(grade(ratio, 1.0)[0]))
    samples = number(details.get("samples"))
    if (samples if samples is not None else len(details.get("series_tflops") or ())) < MIN_SAMPLES:
        return marks
    sag = sag_ratio(details)
    if sag is not None and sag < SAG:
        marks["sag"] = 1
    spread = number(details.get("spread"))
    if spread is not None and spread > SPREAD:
        marks["spread"] = 1
    return marks


def telemetry_marks(check: Mapping) -> dict:
    """Which of a warning or failing telemetry check's figures made it so, by verify.telemetry's rule:
    ``{"sm_mhz" | "temp_c" | "power_w": severity}``.  A hardware slowdown fails on the SM clock, a hardware thermal
    slowdown on the temperature, a power brake on the power; a software thermal slowdown warns on the temperature,
    a mean SM clock under ``CLOCK_FLOOR`` of its maximum on the clock.  A GPU never under load has no figure to
    mark (its status says it)."""
    if severity(check.get("status")) == 0:
        return {}
    details = check.get("details") if isinstance(check.get("details"), Mapping) else {}
    reasons = details.get("throttle_reasons")
    reasons = reasons if isinstance(reasons, int) and not isinstance(reasons, bool) else 0
    marks = {}
    for bit, key, level in ((SW_THERMAL, "temp_c", 1), (HW_SLOWDOWN, "sm_mhz", 2), (HW_THERMAL, "temp_c", 2),
                            (HW_POWER_BRAKE, "power_w", 2)):
        if reasons & bit:
            marks[key] = max(level, marks.get(key, 0))
    sm, top = number(details.get("mean_sm_mhz")), number(details.get("max_sm_mhz"))
    if sm is not None and top and sm < CLOCK_FLOOR * top:
        marks["sm_mhz"] = max(1, marks.get("sm_mhz", 0))
    return marks


def sustained_hosts(summary: Mapping, series: Mapping, cap: int) -> tuple[list, int]:
    """``(hosts to show, in run order; how many more had series)``: at most ``cap``, those with a failing or warning
    burn or telemetry check, or a status other than pass or warn, first."""
    hosts = summary.get("hosts") or {}
    have = [h for h in hosts if usable(series.get(h))]
    if len(have) <= cap:
        return have, 0
    urgent = [h for h in have if severity(worst(usable(series[h]))) > 0
              or (hosts[h] or {}).get("status") not in ("pass", "warn")]
    first = set(urgent)
    chosen = set((urgent + [h for h in have if h not in first])[:cap])
    return [h for h in have if h in chosen], len(have) - cap
