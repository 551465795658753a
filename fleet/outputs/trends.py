"""A host's trends on summary.html, read from ``trends`` (``{host: {metric: [[iso time, value], ...]}}``) (pure).

A trend needs two points: a metric with one point (the first run a host has) draws nothing, and a host without
any metric of two points gets no trend figure.  The x axis spans the runs (their times, or their order when a
time is missing or every point has the same one), never a default span of empty years around a single date.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any, Mapping, Optional

from fleet.outputs.flags import regressions
from fleet.runs.metrics import number

MIN_POINTS = 2
X_MARGIN = 0.06  # of the span, either side of the first and the last run


def when(text: Any) -> Optional[_dt.datetime]:
    """A naive UTC datetime of an ISO time; None for anything else."""
    try:
        t = _dt.datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo is None else t.astimezone(_dt.timezone.utc).replace(tzinfo=None)


def points(raw: Any) -> list:
    """``[(time or None, value)]`` of a trend's ``[[iso_time, value], ...]``, unusable points left out."""
    out = []
    for p in raw if isinstance(raw, (list, tuple)) else ():
        if isinstance(p, (list, tuple)) and len(p) >= 2 and number(p[1]) is not None:
            out.append((when(p[0]), number(p[1])))
    return out


def host_series(trend: Any) -> dict:
    """``{metric: points}`` of one host's trends, only the metrics with at least two points."""
    if not isinstance(trend, Mapping):
        return {}
    series = {k: points(v) for k, v in trend.items()}
    return {k: v for k, v in series.items() if len(v) >= MIN_POINTS}


def panel_order(summary: Mapping, series: Mapping) -> list:
    """The metrics to draw: the summary's key figures first, in their order, then the others by name."""
    keys = list(summary.get("key_figures") or [])
    return [k for k in keys if k in series] + sorted(k for k in series if k not in keys)


def x_axis(pts: list) -> tuple[list, bool, tuple]:
    """``(x of each point, dated, (left, right))``: the points' times when each has one and they span some time,
    else the run order 0, 1, ...; the range spans the first to the last run with a margin either side."""
    times = [t for t, _ in pts]
    if all(t is not None for t in times) and max(times) > min(times):
        lo, hi = min(times), max(times)
        return times, True, (lo - (hi - lo) * X_MARGIN, hi + (hi - lo) * X_MARGIN)
    last = max(1, len(pts) - 1)
    return list(range(len(pts))), False, (-last * X_MARGIN, last + last * X_MARGIN)


def y_range(lo: float, hi: float) -> tuple[float, float]:
    """The y range of a trend: at least 30 % of its top, so that a run-to-run wobble of 0.3 % stays flat while
    a drop of 8 % shows; from zero when it comes close."""
    if hi <= 0 or lo < 0:
        pad = 0.1 * (hi - lo) or 1.0
        return lo - pad, hi + pad
    bottom = min(lo - 0.1 * (hi - lo), 0.7 * hi)
    bottom = 0.0 if bottom < 0.15 * hi else bottom
    return bottom, hi + 0.12 * (hi - bottom)


def trend_order(summary: Mapping, slow: Mapping, regressed: Mapping) -> list:
    """The run's hosts in the order their trends are wanted: those with a straggler, a regression or a status
    other than pass or warn first, then the others, each group in run order."""
    hosts = summary.get("hosts") or {}
    urgent = [h for h in hosts if slow.get(h) or regressed.get(h) or hosts[h].get("status") not in ("pass", "warn")]
    first = set(urgent)
    return urgent + [h for h in hosts if h not in first]


def trend_hosts(summary: Mapping, trends: Mapping, slow: Mapping, regressed: Mapping, cap: int,
                total: Optional[int] = None) -> tuple[list, int]:
    """``(hosts to draw, in run order; how many more had a trend)``: at most ``cap``, first as
    :func:`trend_order`.  ``total``: how many hosts have a history when ``trends`` holds only some of them (read
    for the hosts the page draws); None: those in ``trends``."""
    hosts = summary.get("hosts") or {}
    have = {h for h in hosts if host_series(trends.get(h))}
    chosen = set([h for h in trend_order(summary, slow, regressed) if h in have][:cap])
    more = max(len(have) if total is None else total, len(have)) - len(chosen)
    return [h for h in hosts if h in chosen], more


def baselines(summary: Mapping, host: str) -> dict:
    """``{metric: baseline}`` of the host's whole-host regressions (a device's has no line on the host's trend)."""
    return {r.get("metric"): number(r.get("baseline")) for r in regressions(summary) or ()
            if r.get("host") == host and not r.get("gpu")}
