"""The ``history`` text: per host, its recent runs (status, key figures) and a small trend of one metric."""

from __future__ import annotations

from typing import Iterable, Mapping, Sequence

from fleet import table
from fleet.runs.verdict import higher_is_better, key_figures

BARS = "▁▂▃▄▅▆▇█"
COUNTER_PREFIXES = ("ecc/", "retired_pages/", "remapped_rows/", "pcie/", "throttle_us/", "ib/")
AUDIT_FIGURES = ("ecc/aggregate_uncorrectable", "remapped_rows/uncorrectable", "pcie/replays")
RECENT = 10  # runs shown per host (the trend spans every run in the window)


def sparkline(values: Sequence[float | None]) -> str:
    """One bar per value (``▁`` lowest to ``█`` highest; a space for a missing value; flat ``▄`` when all equal)."""
    known = [v for v in values if v is not None]
    if not known:
        return " " * len(values)
    lo, hi = min(known), max(known)
    if hi == lo:
        return "".join(" " if v is None else BARS[3] for v in values)
    return "".join(" " if v is None else BARS[min(int((v - lo) / (hi - lo) * len(BARS)), len(BARS) - 1)]
                   for v in values)


def figure(metrics: Mapping[str, float], key: str) -> float | None:
    """A run's figure for ``key``: the exact key, else over its per-device keys ``key:DEVICE`` the sum of a
    counter, the slowest device of a figure."""
    if key in metrics:
        return metrics[key]
    values = [v for k, v in metrics.items() if k.startswith(key + ":")]
    if not values:
        return None
    if key.startswith(COUNTER_PREFIXES):
        return sum(values)
    return min(values) if higher_is_better(key) else max(values)


def _bases(runs: Iterable[Mapping]) -> set[str]:
    return {k.split(":", 1)[0] for r in runs for k in r["metrics"]}


def default_figures(runs: Sequence[Mapping]) -> list[str]:
    """The figures worth a column: verify's key figures, then the audit's error counters, at most four."""
    bases = _bases(runs)
    return (key_figures(bases) + [k for k in AUDIT_FIGURES if k in bases])[:4]


def _fmt(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:.0f}" if v == int(v) or abs(v) >= 100 else f"{v:.3g}"


def render_host(name: str, entry: Mapping, metric: str | None = None) -> str:
    runs = entry["runs"]
    figures = [metric] if metric else default_figures(runs)
    rows = [[r["started"][:16].replace("T", " "), r["kind"], r["status"], r["run_id"],
             *(_fmt(figure(r["metrics"], f)) for f in figures)] for r in runs[-RECENT:]]
    out = [f"{name}: {len(runs)} run{'s' if len(runs) != 1 else ''}"
           + (f", {len(entry.get('gpus', []))} GPUs known" if entry.get("gpus") else "")]
    if rows:
        out.append(table.render(["STARTED", "KIND", "STATUS", "RUN", *figures], rows, max_width=40))
    trend = metric or (figures[0] if figures else None)
    series = [figure(r["metrics"], trend) for r in runs] if trend else []
    known = [v for v in series if v is not None]
    if known:
        out.append(f"trend {trend}: {sparkline(series)}  {_fmt(known[0])} -> {_fmt(known[-1])} "
                   f"(min {_fmt(min(known))}, max {_fmt(max(known))}, {len(known)} runs)")
    moved = [g for g in entry.get("gpus", []) if len(g["hosts"]) > 1]
    for g in moved:
        out.append(f"GPU {g['uuid']} (serial {g['serial'] or '?'}) also seen on: "
                   + ", ".join(h for h in g["hosts"] if h != name))
    return "\n".join(out)


def render(doc: Mapping, metric: str | None = None) -> str:
    """The whole text: one block per host, or a line saying nothing was recorded."""
    if not doc["hosts"]:
        return "no run recorded for these hosts in this window"
    return "\n\n".join(render_host(name, entry, metric) for name, entry in doc["hosts"].items())
