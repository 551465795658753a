"""Reads of the history database: runs per host, a metric's series, the GPU identity table, and the
``gpufleet.history/1`` document built from them.  Nothing here writes."""

from __future__ import annotations

import datetime as _dt
import fnmatch
import sqlite3
from typing import Iterable

SCHEMA = "gpufleet.history/1"


def since(days: float | None, now: _dt.datetime | None = None) -> str | None:
    """The ISO time ``days`` before ``now`` (UTC), or None for no limit."""
    if days is None:
        return None
    now = now or _dt.datetime.now(_dt.timezone.utc)
    return (now - _dt.timedelta(days=days)).astimezone(_dt.timezone.utc).isoformat(timespec="seconds")


def hosts(db: sqlite3.Connection, patterns: Iterable[str] | None = None) -> list[str]:
    """Every recorded host, sorted; with ``patterns``, those matching one of them (a name, or a shell glob)."""
    names = [r[0] for r in db.execute("SELECT DISTINCT host FROM host_runs ORDER BY host")]
    if patterns is None:
        return names
    patterns = list(patterns)
    return [n for n in names if any(n == p or fnmatch.fnmatchcase(n, p) for p in patterns)]


PER_HOST_UP_TO = 64  # up to this many hosts asked for, each one's runs are read by the host index


def runs_by_host(db: sqlite3.Connection, patterns: Iterable[str] | None = None, metric: str | None = None,
                 days: float | None = None, now: _dt.datetime | None = None) -> dict[str, list[dict]]:
    """{host: [{run_id, kind, started, status, metrics}]}, oldest run first; ``metric`` keeps that key only
    (and its per-device keys ``KEY:DEVICE``), ``days`` the runs started within that many days of ``now``.
    Reads the runs in the window, then their hosts (by host for a few hosts, else by run), then those host runs'
    metrics by primary key: never the whole history for a few hosts or a few days."""
    wanted = hosts(db, patterns)
    cutoff = since(days, now)
    out: dict[str, list[dict]] = {h: [] for h in wanted}
    runs = {r[0]: (r[1], r[2]) for r in db.execute(
        "SELECT run_id, kind, started FROM runs WHERE (? IS NULL OR started >= ?)", (cutoff, cutoff))}
    if len(wanted) <= PER_HOST_UP_TO:
        rows = [(pk, host, run_id, status) for host in wanted for pk, run_id, status in db.execute(
            "SELECT id, run_id, status FROM host_runs WHERE host = ?", (host,)) if run_id in runs]
    else:
        rows = [(pk, host, run_id, status) for run_id in runs for pk, host, status in db.execute(
            "SELECT id, host, status FROM host_runs WHERE run_id = ?", (run_id,)) if host in out]
    ids = {}
    for pk, host, run_id, status in sorted(rows, key=lambda r: (runs[r[2]][1], r[2])):
        entry = {"run_id": run_id, "kind": runs[run_id][0], "started": runs[run_id][1], "status": status,
                 "metrics": {}}
        out[host].append(entry)
        ids[pk] = entry
    where = "" if metric is None else " AND (key = ? OR substr(key, 1, length(?)) = ?)"
    extra = () if metric is None else (metric, metric + ":", metric + ":")
    chunk_ids = sorted(ids)
    for n in range(0, len(chunk_ids), 500):
        chunk = chunk_ids[n:n + 500]
        for pk, key, value in db.execute(
                f"SELECT host_run, key, value FROM metrics WHERE host_run IN ({','.join('?' * len(chunk))}){where} "
                "ORDER BY host_run, key", (*chunk, *extra)):
            ids[pk]["metrics"][key] = value
    return out


def checks(db: sqlite3.Connection, host: str, run_id: str) -> list[dict]:
    """A host's checks in one run, in the order they were recorded."""
    return [dict(r) for r in db.execute(
        "SELECT c.name, c.status, c.message FROM checks c JOIN host_runs h ON h.id = c.host_run "
        "WHERE h.host = ? AND h.run_id = ? ORDER BY c.rowid", (host, run_id))]


def metric_series(db: sqlite3.Connection, host: str, key: str, days: float | None = None,
                  now: _dt.datetime | None = None) -> list[tuple[str, float]]:
    """[(started, value)] of one exact metric key on one host, oldest first."""
    cutoff = since(days, now)
    return [(r[0], r[1]) for r in db.execute(
        "SELECT r.started, m.value FROM metrics m JOIN host_runs h ON h.id = m.host_run JOIN runs r USING (run_id) "
        "WHERE h.host = ? AND m.key = ? AND (? IS NULL OR r.started >= ?) ORDER BY r.started, r.run_id",
        (host, key, cutoff, cutoff))]


def metric_bases(db: sqlite3.Connection) -> list[str]:
    """Every metric key the history holds, without its ``:device`` suffix, sorted."""
    return sorted({str(r[0]).split(":", 1)[0] for r in db.execute("SELECT key FROM metric_keys")})


def gpu_identities(db: sqlite3.Connection, patterns: Iterable[str] | None = None) -> list[dict]:
    """[{uuid, serial, first_seen, last_seen, hosts}] per GPU UUID, sorted by UUID; ``hosts`` every host it was
    seen on, sorted (one GPU on two hosts: moved, or two hosts reporting the same UUID).  With ``patterns``,
    the GPUs seen on a matching host."""
    wanted = set(hosts(db, patterns)) if patterns is not None else None
    gpus: dict[str, dict] = {}
    for r in db.execute("SELECT uuid, host, serial, first_seen, last_seen FROM gpus ORDER BY uuid, host"):
        g = gpus.setdefault(r["uuid"], {"uuid": r["uuid"], "serial": None, "first_seen": r["first_seen"],
                                        "last_seen": r["last_seen"], "hosts": []})
        g["serial"] = g["serial"] or r["serial"]
        g["first_seen"] = min(g["first_seen"], r["first_seen"])
        g["last_seen"] = max(g["last_seen"], r["last_seen"])
        g["hosts"].append(r["host"])
    return [g for g in gpus.values() if wanted is None or wanted.intersection(g["hosts"])]


def document(db: sqlite3.Connection, patterns: Iterable[str] | None = None, metric: str | None = None,
             days: float | None = None, now: _dt.datetime | None = None) -> dict:
    """The ``gpufleet.history/1`` document: {"schema", "hosts": {host: {"runs": [...], "gpus": [...]}}};
    a host's ``gpus`` are the GPUs seen on it, each with every host it was seen on."""
    runs = runs_by_host(db, patterns, metric, days, now)
    identities = gpu_identities(db, patterns)
    return {"schema": SCHEMA,
            "hosts": {host: {"runs": host_runs, "gpus": [g for g in identities if host in g["hosts"]]}
                      for host, host_runs in runs.items()}}


def audit_past(db: sqlite3.Connection, host_names: Iterable[str], uuids: Iterable[str]) -> tuple[dict, dict]:
    """What the history knows before an audit is recorded: ({host: HostPast}, {uuid: GpuPast}) for the given
    hosts and GPU UUIDs (see :mod:`fleet.history.changes`)."""
    from fleet.history.changes import GpuPast, HostPast

    pasts = {}
    for host in host_names:
        past = HostPast()
        row = db.execute(
            "SELECT h.id, r.run_id, r.started, h.status, h.boot_id FROM host_runs h JOIN runs r USING (run_id) "
            "WHERE h.host = ? AND r.kind = 'audit' AND h.state = 'ok' ORDER BY r.started DESC, r.run_id DESC "
            "LIMIT 1", (host,)).fetchone()
        if row is not None:
            past.previous = {"run_id": row["run_id"], "started": row["started"], "status": row["status"],
                             "boot_id": row["boot_id"],
                             "counters": {k: v for k, v in db.execute(
                                 "SELECT key, value FROM metrics WHERE host_run = ?", (row["id"],))}}
            past.slots = {slot: uuid for uuid, slot in db.execute(
                "SELECT uuid, slot FROM gpu_sightings WHERE host_run = ? AND slot IS NOT NULL", (row["id"],))}
        past.xids = {(boot or "", key): first for boot, key, first in db.execute(
            "SELECT h.boot_id, e.key, MIN(r.started) FROM events e JOIN host_runs h ON h.id = e.host_run "
            "JOIN runs r USING (run_id) WHERE h.host = ? AND e.kind = 'xid' GROUP BY h.boot_id, e.key", (host,))}
        pasts[host] = past
    gpus = {}
    for uuid in uuids:
        gp = GpuPast()
        sightings = db.execute(
            "SELECT h.host, s.slot, r.started, s.failed FROM gpu_sightings s JOIN host_runs h ON h.id = s.host_run "
            "JOIN runs r USING (run_id) WHERE s.uuid = ? ORDER BY r.started, r.run_id", (uuid,)).fetchall()
        for host, slot, started, failed in sightings:
            gp.last = {"host": host, "slot": slot, "started": started}
            if failed:
                gp.failed = {"host": host, "slot": slot, "started": started}
        gpus[uuid] = gp
    return pasts, gpus


def passes_in_a_row(db: sqlite3.Connection, host: str, kind: str = "verify", until: str | None = None) -> int:
    """How many of ``host``'s latest ``kind`` runs (started at or before ``until``, an ISO time) passed in a row:
    status ``pass`` or ``warn`` (a straggler or a regression is recorded ``fail``)."""
    n = 0
    for (status,) in db.execute(
            "SELECT h.status FROM host_runs h JOIN runs r USING (run_id) WHERE h.host = ? AND r.kind = ? "
            "AND (? IS NULL OR r.started <= ?) ORDER BY r.started DESC, r.run_id DESC", (host, kind, until, until)):
        if status not in ("pass", "warn"):
            break
        n += 1
    return n
