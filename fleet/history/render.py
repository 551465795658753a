"""The ``history`` text: per host, its recent runs (status, key figures) and a small trend of one metric."""

from __future__ import annotations

from typing import Iterable, Mapping, Sequence

from fleet import table
from fleet.runs.metrics import higher_is_better, key_figures

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
    """A host's block: its run count, its recent runs (with ``metric``: the runs that have it) with their
    figures, the trend of ``metric`` (else of its first figure), and its GPUs also seen on another host."""
    runs = entry["runs"]
    figures = [metric] if metric else default_figures(runs)
    shown = [r for r in runs if figure(r["metrics"], metric) is not None] if metric else runs
    rows = [[r["started"][:16].replace("T", " "), r["kind"], r["status"], r["run_id"],
             *(_fmt(figure(r["metrics"], f)) for f in figures)] for r in shown[-RECENT:]]
    gpus = entry.get("gpus") or []
    out = [f"{name}: {_count(len(runs), 'run')}" + (f", {_count(len(gpus), 'GPU')} known" if gpus else "")]
    if rows:
        out.append(table.render(["STARTED", "KIND", "STATUS", "RUN", *figures], rows, max_width=40))
    trend = metric or (figures[0] if figures else None)
    series = [v for v in (figure(r["metrics"], trend) for r in runs) if v is not None] if trend else []
    if series:
        out.append(f"trend {trend}: {sparkline(series)}  {_fmt(series[0])} -> {_fmt(series[-1])} "
                   f"(min {_fmt(min(series))}, max {_fmt(max(series))}, {_count(len(series), 'run')})")
    for g in gpus:
        if len(g["hosts"]) > 1:
            out.append(f"GPU {g['uuid']} (serial {g['serial'] or '?'}) also seen on: "
                       + ", ".join(h for h in g["hosts"] if h != name))
    return "\n".join(out)


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def render(doc: Mapping, metric: str | None = None) -> str:
    """The whole text: one block per host, or a line saying nothing was recorded."""
    if not doc["hosts"]:
        return "no run recorded for these hosts in this window"
    return "\n\n".join(render_host(name, entry, metric) for name, entry in doc["hosts"].items())
