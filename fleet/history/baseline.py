"""Each host's own baseline for verify: the median of each key figure over its last passing runs.

The fleet-relative straggler rule cannot see the whole fleet slow down at once (a driver update, a firmware
setting): the median moves with it.  A host's own past can.  Before a verify run starts, :func:`read_baselines`
reads, per selected host, its last ``window`` (default 5) verify runs of the same profile that it passed
(status ``pass`` or ``warn``: a run where it was a straggler or a regression is recorded ``fail``), and
:func:`baselines` takes each key figure's median over them, for the keys with at least ``min_runs`` (3) values.
The result travels in run.json (``baseline``), so ``gpufleet report`` judges the run again the same way; the
regression rule itself is :func:`fleet.runs.verdict.find_regressions`.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from statistics import median
from typing import Iterable, Mapping

DEFAULT_THRESHOLD = 0.9
DEFAULT_WINDOW = 5
MIN_RUNS = 3


def is_judged(key: str) -> bool:
    """Whether a metric key (with or without ``:device``) is one the baseline judges: the fleet table's key
    figures (``matmul/<dtype>/tflops``, device copy, host-to-device copy, all_reduce bus bandwidth, DDP
    images/s)."""
    from fleet.runs.metrics import key_figures, split_key

    return bool(key_figures([split_key(key)[0]]))


def baselines(past: Mapping[str, list], min_runs: int = MIN_RUNS) -> dict:
    """{host: {key: {"value": median, "runs": n}}} from ``past`` = {host: [the metrics of each of its passing
    runs]} for the judged keys with at least ``min_runs`` values."""
    out = {}
    for host, runs in past.items():
        values: dict[str, list[float]] = {}
        for metrics in runs:
            for key, value in metrics.items():
                if is_judged(key) and isinstance(value, (int, float)):
                    values.setdefault(key, []).append(float(value))
        figures = {k: {"value": median(v), "runs": len(v)} for k, v in sorted(values.items()) if len(v) >= min_runs}
        if figures:
            out[host] = figures
    return out


def passing_runs(db: sqlite3.Connection, host: str, profile: str | None, window: int) -> list[dict]:
    """The metrics of ``host``'s last ``window`` passing verify runs of ``profile``, newest first."""
    rows = db.execute(
        "SELECT h.id FROM host_runs h JOIN runs r USING (run_id) WHERE h.host = ? AND r.kind = 'verify' "
        "AND h.status IN ('pass', 'warn') AND r.interrupted = 0 "
        "AND (? IS NULL OR json_extract(r.info, '$.profile') = ?) ORDER BY r.started DESC, r.run_id DESC LIMIT ?",
        (host, profile, profile, int(window))).fetchall()
    return [{k: v for k, v in db.execute("SELECT key, value FROM metrics WHERE host_run = ?", (row[0],))}
            for row in rows]


def read_baselines(db_path, hosts: Iterable[str], profile: str | None, window: int = DEFAULT_WINDOW,
                   threshold: float = DEFAULT_THRESHOLD) -> tuple[dict | None, dict, str | None]:
    """(the run's ``baseline`` document, the hosts' past :func:`trends`, None), or (None, {}, a one-line reason)
    when the history could not be read.
    The document: ``{"threshold", "window", "min_runs", "profile", "hosts": {host: {key: {"value", "runs"}}}}``."""
    from fleet.history.db import connect

    doc = {"threshold": threshold, "window": window, "min_runs": MIN_RUNS, "profile": profile, "hosts": {}}
    if db_path is None or not Path(db_path).exists():
        return doc, {}, None
    hosts = list(hosts)
    try:
        db = connect(db_path)
        try:
            doc["hosts"] = baselines({h: passing_runs(db, h, profile, window) for h in hosts})
            past = trends(db, hosts, profile)
        finally:
            db.close()
    except (OSError, sqlite3.Error, RuntimeError) as exc:
        return None, {}, f"history not read from {db_path} (no regression check this run): {exc}"
    return doc, past, None


def trends(db: sqlite3.Connection, hosts: Iterable[str], profile: str | None, limit: int = 30) -> dict:
    """{host: {base key: [[started, value], ...]}}: each host's key figures (the summary's host figures, as
    recorded) over its last ``limit`` verify runs of ``profile``, oldest first."""
    out = {}
    for host in hosts:
        rows = db.execute(
            "SELECT h.id, r.started FROM host_runs h JOIN runs r USING (run_id) WHERE h.host = ? AND r.kind = 'verify' "
            "AND (? IS NULL OR json_extract(r.info, '$.profile') = ?) ORDER BY r.started DESC, r.run_id DESC LIMIT ?",
            (host, profile, profile, int(limit))).fetchall()
        series: dict[str, list] = {}
        for pk, started in reversed(rows):
            for key, value in db.execute("SELECT key, value FROM metrics WHERE host_run = ? AND instr(key, ':') = 0",
                                         (pk,)):
                if is_judged(key):
                    series.setdefault(key, []).append([started, value])
        if series:
            out[host] = series
    return out


def with_run(past: Mapping[str, Mapping], summary: Mapping) -> dict:
    """``past`` trends (:func:`trends`, read before the run) with this run's host figures appended."""
    out = {h: {k: list(v) for k, v in series.items()} for h, series in past.items()}
    started = summary.get("started")
    for host, entry in (summary.get("hosts") or {}).items():
        for key, fig in (entry.get("metrics") or {}).items():
            if isinstance(fig, Mapping) and isinstance(fig.get("value"), (int, float)) and is_judged(key):
                out.setdefault(host, {}).setdefault(key, []).append([started, fig["value"]])
    return out
