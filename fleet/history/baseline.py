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

import json
import sqlite3
from itertools import groupby
from operator import itemgetter
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
    judged: dict[str, bool] = {}  # is_judged per key, worked out once per call
    out = {}
    for host, runs in past.items():
        values: dict[str, list[float]] = {}
        for metrics in runs:
            for key, value in metrics.items():
                ok = judged.get(key)
                if ok is None:
                    ok = judged[key] = is_judged(key)
                if ok and isinstance(value, (int, float)):
                    values.setdefault(key, []).append(float(value))
        figures = {k: {"value": median(v), "runs": len(v)} for k, v in sorted(values.items()) if len(v) >= min_runs}
        if figures:
            out[host] = figures
    return out


# Below this many hosts still short of their window, the walk over the runs (newest first, every host of a run
# at once) stops and each of them is read on its own (by the host index): a host missing from the recent runs
# (new, or out of the fleet) never makes the walk read the whole history.
PER_HOST_BELOW = 64
_CHUNK = 500  # host run ids per metrics query


def verify_runs(db: sqlite3.Connection, profile: str | None, completed_only: bool) -> list[tuple[str, str]]:
    """[(run_id, started)] of the verify runs of ``profile`` (None: any), newest first; ``completed_only``:
    not interrupted."""
    return [(r[0], r[1]) for r in db.execute(
        "SELECT run_id, started FROM runs WHERE kind = 'verify' AND (? IS NULL OR profile = ?) "
        f"{'AND interrupted = 0 ' if completed_only else ''}ORDER BY started DESC, run_id DESC",
        (profile, profile))]


def latest_host_runs(db: sqlite3.Connection, hosts: Iterable[str], runs: list[tuple[str, str]], limit: int,
                     statuses: tuple | None = None, per_host_below: int | None = None,
                     figures: bool = False) -> dict[str, list]:
    """{host: [(host run id, started)]}: each host's first ``limit`` entries in ``runs`` (newest first, as
    :func:`verify_runs` gives them) whose status is one of ``statuses`` (None: any), newest first (``figures``:
    (host run id, started, its ``figures`` column)).  Walks the runs reading all of a run's hosts in one query;
    the last few hosts short of ``limit`` (fewer than ``per_host_below``) are read one by one over the runs not
    walked yet."""
    per_host_below = PER_HOST_BELOW if per_host_below is None else per_host_below
    column = "figures" if figures else "NULL"
    out: dict[str, list] = {h: [] for h in hosts}
    short = set(out) if limit > 0 else set()
    i = 0
    while i < len(runs) and len(short) >= max(per_host_below, 1):
        run_id, started = runs[i]
        for pk, host, status, fig in _rows(db, f"SELECT id, host, status, {column} FROM host_runs WHERE run_id = ?",
                                           (run_id,)):
            if host in short and (statuses is None or status in statuses):
                out[host].append((pk, started, fig) if figures else (pk, started))
                if len(out[host]) >= limit:
                    short.discard(host)
        i += 1
    if short and i < len(runs):
        position = {run_id: j for j, (run_id, _) in enumerate(runs) if j >= i}
        for host in sorted(short):
            rows = sorted((position[run_id], pk, fig) for pk, run_id, status, fig in _rows(
                db, f"SELECT id, run_id, status, {column} FROM host_runs WHERE host = ?", (host,))
                if run_id in position and (statuses is None or status in statuses))
            out[host] += [(pk, runs[j][1], fig) if figures else (pk, runs[j][1])
                          for j, pk, fig in rows[:limit - len(out[host])]]
    return out


def _rows(db: sqlite3.Connection, sql: str, args: Iterable) -> list[tuple]:
    """A query's rows as plain tuples (whatever the connection's row factory: these reads return many)."""
    cur = db.cursor()
    cur.row_factory = None
    try:
        return cur.execute(sql, tuple(args)).fetchall()
    finally:
        cur.close()


def metrics_of(db: sqlite3.Connection, ids: Iterable[int], base_keys_only: bool = False,
               keys: list[str] | None = None) -> dict[int, dict]:
    """{host run id: {key: value}} for the given host runs (``base_keys_only``: the keys without ``:device``;
    ``keys``: only these, when there are at most :data:`_CHUNK` of them), in queries of :data:`_CHUNK` ids, each
    host run's metrics one range of the primary key."""
    ids = sorted(set(ids))
    out: dict[int, dict] = {pk: {} for pk in ids}
    where = " AND instr(key, ':') = 0" if base_keys_only else ""
    only = list(keys) if keys is not None and len(keys) <= _CHUNK else []
    if only:
        where += f" AND key IN ({','.join('?' * len(only))})"
    for n in range(0, len(ids), _CHUNK):
        chunk = ids[n:n + _CHUNK]
        for pk, group in groupby(_rows(db, f"SELECT host_run, key, value FROM metrics WHERE host_run IN "
                                           f"({','.join('?' * len(chunk))}){where} ORDER BY host_run, key",
                                       chunk + only),
                                 itemgetter(0)):
            out[pk] = {key: value for _, key, value in group}
    return out


def passing_runs(db: sqlite3.Connection, host: str, profile: str | None, window: int) -> list[dict]:
    """The metrics of ``host``'s last ``window`` passing verify runs of ``profile``, newest first."""
    return all_passing_runs(db, [host], profile, window)[host]


def _passing_picks(db: sqlite3.Connection, hosts: Iterable[str], profile: str | None, window: int) -> dict:
    return latest_host_runs(db, hosts, verify_runs(db, profile, completed_only=True), int(window), ("pass", "warn"))


def all_passing_runs(db: sqlite3.Connection, hosts: Iterable[str], profile: str | None,
                     window: int, keys: list[str] | None = None) -> dict[str, list[dict]]:
    """{host: the metrics of its last ``window`` passing (``pass``, ``warn``) verify runs of ``profile`` that
    were not interrupted, newest first}: what :func:`baselines` takes (``keys``: only these metrics, as
    :func:`metrics_of`)."""
    picked = _passing_picks(db, hosts, profile, window)
    metrics = metrics_of(db, (pk for rows in picked.values() for pk, _ in rows), keys=keys)
    return {host: [metrics[pk] for pk, _ in rows] for host, rows in picked.items()}


def judged_keys(db: sqlite3.Connection, base_only: bool = False) -> list[str]:
    """The recorded metric keys (``metric_keys``) the baseline judges (``base_only``: those without ``:device``)."""
    return [k for (k,) in db.execute("SELECT key FROM metric_keys ORDER BY key")
            if is_judged(k) and not (base_only and ":" in k)]


def read_baselines(db_path, hosts: Iterable[str], profile: str | None, window: int = DEFAULT_WINDOW,
                   threshold: float = DEFAULT_THRESHOLD) -> tuple[dict | None, str | None]:
    """(the run's ``baseline`` document, None), or (None, a one-line reason) when the history could not be read.
    The document: ``{"threshold", "window", "min_runs", "profile", "hosts": {host: {key: {"value", "runs"}}}}``.
    Read before the run; the page's trends are read after it (:func:`read_trends`), for the hosts it draws."""
    from fleet.history.db import connect

    doc = {"threshold": threshold, "window": window, "min_runs": MIN_RUNS, "profile": profile, "hosts": {}}
    if db_path is None or not Path(db_path).exists():
        return doc, None
    try:
        db = connect(db_path)
        try:
            doc["hosts"] = baselines(all_passing_runs(db, list(hosts), profile, window, judged_keys(db)))
        finally:
            db.close()
    except (OSError, sqlite3.Error, RuntimeError) as exc:
        return None, f"history not read from {db_path} (no regression check this run): {exc}"
    return doc, None


def read_trends(db_path, order: Iterable[str], profile: str | None, cap: int,
                limit: int = 30) -> tuple[dict, int, str | None]:
    """(the past :func:`trends` of the first ``cap`` hosts of ``order`` that have a recorded verify run of
    ``profile``, how many hosts of ``order`` have one, None), or ({}, 0, a one-line reason) when the history could
    not be read.  What summary.html draws: a few hosts' trends (the most urgent first, as ``order`` gives them),
    and a count of the others; the figures of every host of a large fleet are never decoded for it."""
    from fleet.history.db import connect

    if db_path is None or not Path(db_path).exists():
        return {}, 0, None
    try:
        db = connect(db_path)
        try:
            recorded = latest_host_runs(db, list(order), verify_runs(db, profile, completed_only=False), 1)
            have = [h for h, rows in recorded.items() if rows]
            past = trends(db, have[:max(0, cap)], profile, limit)
        finally:
            db.close()
    except (OSError, sqlite3.Error, RuntimeError) as exc:
        return {}, 0, f"history not read from {db_path} (no trends on summary.html): {exc}"
    return past, len(have), None


def trends(db: sqlite3.Connection, hosts: Iterable[str], profile: str | None, limit: int = 30) -> dict:
    """{host: {base key: [[started, value], ...]}}: each host's key figures (the summary's host figures, as
    recorded) over its last ``limit`` verify runs of ``profile``, oldest first.  Read from each host run's
    ``figures`` (one column of the rows the walk reads anyway), from ``metrics`` for the host runs recorded
    before it existed."""
    picked = latest_host_runs(db, hosts, verify_runs(db, profile, completed_only=False), int(limit), figures=True)
    older = metrics_of(db, (pk for rows in picked.values() for pk, _, fig in rows if fig is None),
                       base_keys_only=True)
    keys = set(judged_keys(db, base_only=True))
    out = {}
    for host, rows in picked.items():
        series: dict[str, list] = {}
        for pk, started, fig in reversed(rows):
            for key, value in (older[pk] if fig is None else json.loads(fig)).items():
                if key in keys:
                    series.setdefault(key, []).append([started, value])
        if series:
            out[host] = {key: series[key] for key in sorted(series)}
    return out


def with_run(past: Mapping[str, Mapping], summary: Mapping) -> dict:
    """``past`` trends (:func:`trends`, read before this run is recorded) with this run's host figures appended, for
    the hosts in ``past`` (a host without a past has one point: no trend; a large run's other hosts cost nothing)."""
    out = {h: {k: list(v) for k, v in series.items()} for h, series in past.items()}
    started = summary.get("started")
    hosts = summary.get("hosts") or {}
    for host in out:
        for key, fig in ((hosts.get(host) or {}).get("metrics") or {}).items():
            if isinstance(fig, Mapping) and isinstance(fig.get("value"), (int, float)) and is_judged(key):
                out.setdefault(host, {}).setdefault(key, []).append([started, fig["value"]])
    return out
