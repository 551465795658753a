"""The history database: SQLite (standard library), WAL, short transactions, a versioned schema.

Two runs may write at once (two cron jobs, an audit beside a verify): the database is in WAL mode, every
connection waits up to :data:`BUSY_TIMEOUT_S` for a lock, and each ``record_*`` call is one short
``BEGIN IMMEDIATE`` transaction, so a writer never holds the lock while it works out what to write.

The schema's version is the one row of ``schema_version``; :data:`MIGRATIONS` is the ordered list of steps,
step ``i`` taking the database from version ``i`` to ``i + 1``.  :func:`connect` applies the missing ones,
in one transaction, to a database of any older version (a new file is version 0).  Never edit a released
step: append one.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import sqlite3
import time
import uuid as _uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

DEFAULT_PATH = "reports/history.sqlite"
BUSY_TIMEOUT_S = 30.0
KINDS = ("audit", "verify", "provision")

_V1 = """
CREATE TABLE runs (
    run_id TEXT PRIMARY KEY,          -- verify's run id, else audit-/provision-<time>-<random>
    kind TEXT NOT NULL,               -- audit | verify | provision
    started TEXT NOT NULL,            -- ISO 8601, UTC
    finished TEXT,
    exit_code INTEGER,
    interrupted INTEGER NOT NULL DEFAULT 0,
    info TEXT NOT NULL DEFAULT '{}'   -- JSON: pattern, inventory, profile...
);
CREATE INDEX runs_started ON runs (started);
CREATE TABLE host_runs (
    id INTEGER PRIMARY KEY,
    run_id TEXT NOT NULL REFERENCES runs (run_id),
    host TEXT NOT NULL,
    status TEXT NOT NULL,             -- pass | warn | fail | error | unreachable
    state TEXT NOT NULL,              -- fleet.outcome.HostState
    message TEXT NOT NULL DEFAULT '',
    UNIQUE (run_id, host)
);
CREATE INDEX host_runs_host ON host_runs (host);
CREATE TABLE checks (
    host_run INTEGER NOT NULL REFERENCES host_runs (id),
    name TEXT NOT NULL,
    status TEXT NOT NULL,
    message TEXT NOT NULL DEFAULT ''
);
CREATE INDEX checks_host_run ON checks (host_run);
CREATE TABLE metrics (                -- verify's metrics and figures; the audit's counters
    host_run INTEGER NOT NULL REFERENCES host_runs (id),
    key TEXT NOT NULL,                -- <test>/<variant>/<unit>[:<device>], as verify names them
    value REAL NOT NULL,
    PRIMARY KEY (host_run, key)
);
CREATE INDEX metrics_key ON metrics (key);
CREATE TABLE gpus (                   -- one row per GPU UUID and host it was seen on
    uuid TEXT NOT NULL,
    host TEXT NOT NULL,
    serial TEXT,
    first_seen TEXT NOT NULL,
    last_seen TEXT NOT NULL,
    PRIMARY KEY (uuid, host)
);
"""

# Version 2: what the audit compares with a host's past (fleet/history/changes.py) and the alerts sent.
_V2 = """
ALTER TABLE host_runs ADD COLUMN boot_id TEXT;  -- /proc/sys/kernel/random/boot_id at an audit; NULL unknown
CREATE TABLE events (                 -- findings with an identity of their own: kind 'xid', key its kernel-log line
    host_run INTEGER NOT NULL REFERENCES host_runs (id),
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT '{}',  -- JSON: xid, pci
    PRIMARY KEY (host_run, kind, key)
);
CREATE TABLE gpu_sightings (          -- each GPU an audit saw: where (host, PCI slot) and whether it failed there
    host_run INTEGER NOT NULL REFERENCES host_runs (id),
    uuid TEXT NOT NULL,
    serial TEXT,
    slot TEXT,                        -- PCI bus id
    failed INTEGER NOT NULL DEFAULT 0,  -- one of its per-GPU checks (<check>:gpuN) failed
    PRIMARY KEY (host_run, uuid)
);
CREATE INDEX gpu_sightings_uuid ON gpu_sightings (uuid);
CREATE TABLE alerts (                 -- what --notify reported, per host and kind of run
    host TEXT NOT NULL,
    kind TEXT NOT NULL,
    run_id TEXT NOT NULL,
    sent TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT NOT NULL              -- changed | new-xid | reminder
);
CREATE INDEX alerts_host ON alerts (host, kind, sent);
"""

# Version 3: what --notify last DELIVERED per kind of run and subject (a host), the state the alerts are planned
# against (fleet/history/alerts.py); seeded from the alerts an older gpufleet recorded (each was delivered).
_V3 = """
CREATE TABLE delivered (
    kind TEXT NOT NULL,               -- audit | verify
    subject TEXT NOT NULL,            -- the host
    status TEXT NOT NULL,             -- its status in the last alert a --notify command took (exit 0)
    run_id TEXT NOT NULL,
    sent TEXT NOT NULL,
    xids TEXT,                        -- JSON list: the critical Xid lines that alert covered; NULL (seeded from an
                                      -- older database): the host's Xid lines recorded up to `sent`
    PRIMARY KEY (kind, subject)
);
INSERT INTO delivered (kind, subject, status, run_id, sent)
    SELECT a.kind, a.host, a.status, a.run_id, a.sent FROM alerts a
    WHERE a.rowid = (SELECT b.rowid FROM alerts b WHERE b.kind = a.kind AND b.host = a.host
                     ORDER BY b.sent DESC, b.rowid DESC LIMIT 1);
"""

# Version 4: a year of nightly runs of thousands of hosts, read fast (docs/performance.md).  The verify profile is
# a column of `runs` (read without JSON); the metrics are one B-tree clustered by host run (WITHOUT ROWID: no
# rowid table beside the primary key, and no index by key, which doubled the file); the keys ever recorded
# are a table of their own (`metric_keys`, what `history --metric` is checked against).  Rebuilding the metrics
# of a large older database takes a while, once.
_V4 = """
ALTER TABLE runs ADD COLUMN profile TEXT;    -- verify's profile (info's "profile"); NULL for other kinds
ALTER TABLE host_runs ADD COLUMN figures TEXT;  -- JSON {key: value}: its metrics without ':device' (a copy, what
                                                -- the trends read); NULL (recorded before): read them in metrics
UPDATE runs SET profile = json_extract(info, '$.profile')
    WHERE json_valid(info) AND json_type(info, '$.profile') = 'text';
CREATE INDEX runs_kind_started ON runs (kind, started);
CREATE TABLE metrics_v4 (
    host_run INTEGER NOT NULL REFERENCES host_runs (id),
    key TEXT NOT NULL,
    value REAL NOT NULL,
    PRIMARY KEY (host_run, key)
) WITHOUT ROWID;
INSERT INTO metrics_v4 (host_run, key, value) SELECT host_run, key, value FROM metrics;
DROP TABLE metrics;
ALTER TABLE metrics_v4 RENAME TO metrics;
CREATE TABLE metric_keys (key TEXT PRIMARY KEY) WITHOUT ROWID;  -- every metric key recorded
INSERT OR IGNORE INTO metric_keys (key) SELECT DISTINCT key FROM metrics;
"""

# MIGRATIONS[i]: version i -> i + 1, an SQL script.
MIGRATIONS: list[str] = [_V1, _V2, _V3, _V4]
SCHEMA_VERSION = len(MIGRATIONS)


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def utc_iso(value: Any) -> str:
    """An ISO 8601 time (any offset, or naive UTC) -> ``YYYY-MM-DDTHH:MM:SS+00:00``; now when missing or unreadable."""
    try:
        t = _dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except (TypeError, ValueError):
        return now_iso()
    if t.tzinfo is None:
        t = t.replace(tzinfo=_dt.timezone.utc)
    return t.astimezone(_dt.timezone.utc).isoformat(timespec="seconds")


def connect(path: str | os.PathLike = DEFAULT_PATH) -> sqlite3.Connection:
    """Open (creating it and its directory) the history database, migrated to :data:`SCHEMA_VERSION`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None)  # transactions are explicit
    db.row_factory = sqlite3.Row
    db.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
    _wal(db)
    db.execute("PRAGMA synchronous = NORMAL")
    migrate(db)
    return db


def _wal(db: sqlite3.Connection) -> None:
    """Switch to WAL (it stays so in the file).  SQLite does not wait on its busy handler for this switch while
    another connection is creating the database, so wait here, as long as the busy timeout."""
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        try:
            db.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def statements(script: str) -> list[str]:
    """An SQL script's statements, split where SQLite says a statement is complete (a ';' in a comment is not
    an end).  Run one by one, not with ``executescript``, which would commit the migration's transaction."""
    out, buf = [], ""
    for piece in script.split(";"):
        buf += piece + ";"
        if sqlite3.complete_statement(buf):
            if buf.strip(" \n;"):
                out.append(buf)
            buf = ""
    return out


def schema_version(db: sqlite3.Connection) -> int:
    """The database's schema version: 0 when it has no ``schema_version`` table (or no row in it)."""
    if not db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'").fetchone():
        return 0
    row = db.execute("SELECT version FROM schema_version").fetchone()
    return int(row[0]) if row else 0


def migrate(db: sqlite3.Connection) -> int:
    """Apply the missing steps of :data:`MIGRATIONS` in one transaction; returns the version reached.  A database
    newer than this gpufleet is refused (it would be read wrongly)."""
    target = len(MIGRATIONS)
    if schema_version(db) == target:
        return target
    db.execute("BEGIN IMMEDIATE")  # re-read under the write lock: another process may have just migrated
    try:
        version = schema_version(db)
        if version > target:
            raise RuntimeError(f"history database schema version {version} is newer than this gpufleet's "
                               f"({target}): upgrade gpufleet")
        for step in MIGRATIONS[version:]:
            for statement in statements(step):
                db.execute(statement)
        db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        db.execute("DELETE FROM schema_version")
        db.execute("INSERT INTO schema_version (version) VALUES (?)", (target,))
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    return target


class _Tx:
    """``with _Tx(db):`` one ``BEGIN IMMEDIATE`` transaction, committed on success, rolled back otherwise."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> sqlite3.Connection:
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, exc_type, exc, tb) -> None:
        self.db.execute("COMMIT" if exc_type is None else "ROLLBACK")


def _number(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v)


def _time_of_run_id(run_id: Any) -> str | None:
    """A verify run id (its run directory's name, ``20261122T180602Z``) as an ISO time, or None."""
    try:
        t = _dt.datetime.strptime(str(run_id)[:16], "%Y%m%dT%H%M%SZ")
    except ValueError:
        return None
    return t.replace(tzinfo=_dt.timezone.utc).isoformat()


def _new_run_id(kind: str, started: str) -> str:
    stamp = started[:19].replace("-", "").replace(":", "")
    return f"{kind}-{stamp}Z-{_uuid.uuid4().hex[:8]}"


@dataclass
class HostRecord:
    """What one host's run leaves in the history, worked out before the write transaction begins."""

    host: str
    status: str
    state: str
    message: str = ""
    checks: list = field(default_factory=list)  # [(name, status, message)]
    metrics: dict = field(default_factory=dict)  # key -> float
    gpus: list = field(default_factory=list)  # [(uuid, serial or None)]
    boot_id: str | None = None
    events: list = field(default_factory=list)  # [(kind, key, detail dict)]
    sightings: list = field(default_factory=list)  # [(uuid, serial, slot, failed 0/1)]

    @classmethod
    def of(cls, host: str, h: Mapping, checks: Iterable[Mapping], metrics: Mapping[str, Any],
           gpus: Iterable[tuple] = ()) -> "HostRecord":
        return cls(host, str(h.get("status")), str(h.get("state")), str(h.get("message") or ""),
                   [(str(c.get("name")), str(c.get("status")), str(c.get("message") or "")) for c in checks],
                   {k: v for k, v in ((str(k), _number(v)) for k, v in metrics.items()) if v is not None},
                   list(gpus))


def _write(db: sqlite3.Connection, run: tuple, hosts: Iterable[HostRecord]) -> None:
    """One short transaction: the run's row (replacing a run of the same id and its hosts), then its hosts', each
    table in one ``executemany`` (the hosts' ids are given, the next after the largest, under the write lock)."""
    run_id, started = run[0], run[2]
    hosts = list(hosts)
    with _Tx(db):
        for table in ("checks", "metrics", "events", "gpu_sightings"):
            db.execute(f"DELETE FROM {table} WHERE host_run IN (SELECT id FROM host_runs WHERE run_id = ?)",
                       (run_id,))
        db.execute("DELETE FROM host_runs WHERE run_id = ?", (run_id,))
        db.execute("INSERT OR REPLACE INTO runs (run_id, kind, started, finished, exit_code, interrupted, info, "
                   "profile) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", run)
        first = db.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM host_runs").fetchone()[0]
        ids = range(first, first + len(hosts))
        db.executemany("INSERT INTO host_runs (id, run_id, host, status, state, message, boot_id, figures) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                       [(pk, run_id, h.host, h.status, h.state, h.message, h.boot_id, _figures(h.metrics))
                        for pk, h in zip(ids, hosts)])
        db.executemany("INSERT INTO checks (host_run, name, status, message) VALUES (?, ?, ?, ?)",
                       [(pk, *c) for pk, h in zip(ids, hosts) for c in h.checks])
        db.executemany("INSERT OR REPLACE INTO metrics (host_run, key, value) VALUES (?, ?, ?)",
                       [(pk, k, v) for pk, h in zip(ids, hosts) for k, v in h.metrics.items()])
        db.executemany("INSERT OR IGNORE INTO metric_keys (key) VALUES (?)",
                       [(k,) for k in sorted({k for h in hosts for k in h.metrics})])
        db.executemany(
            "INSERT INTO gpus (uuid, host, serial, first_seen, last_seen) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (uuid, host) DO UPDATE SET serial = COALESCE(excluded.serial, gpus.serial), "
            "first_seen = MIN(gpus.first_seen, excluded.first_seen), "
            "last_seen = MAX(gpus.last_seen, excluded.last_seen)",
            [(uuid, h.host, serial, started, started) for h in hosts for uuid, serial in h.gpus])
        db.executemany("INSERT OR REPLACE INTO events (host_run, kind, key, detail) VALUES (?, ?, ?, ?)",
                       [(pk, kind, key, json.dumps(detail, sort_keys=True))
                        for pk, h in zip(ids, hosts) for kind, key, detail in h.events])
        db.executemany("INSERT OR REPLACE INTO gpu_sightings (host_run, uuid, serial, slot, failed) "
                       "VALUES (?, ?, ?, ?, ?)", [(pk, *sg) for pk, h in zip(ids, hosts) for sg in h.sightings])


def _figures(metrics: Mapping[str, float]) -> str:
    """``host_runs.figures``: the metrics without ``:device``, as JSON (Python's float repr: read back exactly)."""
    return json.dumps({k: v for k, v in sorted(metrics.items()) if ":" not in k})


def _run_row(run_id: str, kind: str, started: str, finished: str | None, exit_code: Any, interrupted: Any,
             info: Mapping) -> tuple:
    profile = info.get("profile")
    return (run_id, kind, started, finished, exit_code if isinstance(exit_code, int) else None,
            int(bool(interrupted)), json.dumps(dict(info), sort_keys=True),
            profile if isinstance(profile, str) else None)


# ---------------------------------------------------------------- the audit's counters

_GPU_COUNTERS = (  # (facts field, metric prefix, keys or None for every numeric key)
    ("ecc", "ecc", ("aggregate_correctable", "aggregate_uncorrectable", "volatile_correctable",
                    "volatile_uncorrectable")),
    ("retired_pages", "retired_pages", ("single_bit", "double_bit")),
    ("remapped_rows", "remapped_rows", ("correctable", "uncorrectable")),
    ("pcie_replays", "pcie", ("replays", "rollovers")),
    ("clock_event_time_us", "throttle_us", None),
)


def audit_counters(facts: Mapping) -> dict[str, float]:
    """The counters an audit reads, as metrics: ``ecc/aggregate_uncorrectable:gpu0``,
    ``retired_pages/double_bit:gpu0``, ``remapped_rows/uncorrectable:gpu0``, ``pcie/replays:gpu0``,
    ``throttle_us/hw_thermal_slowdown:gpu0`` (microseconds since boot), ``ib/symbol_error:mlx5_0/1``."""
    out: dict[str, float] = {}
    gpus = facts.get("gpus")
    for g in gpus if isinstance(gpus, list) else []:
        device = f"gpu{g.get('index')}"
        for name, prefix, keys in _GPU_COUNTERS:
            block = g.get(name) or {}
            for key in keys if keys is not None else sorted(block):
                value = _number(block.get(key))
                if value is not None:
                    out[f"{prefix}/{key}:{device}"] = value
    ports = facts.get("ib_ports")
    for p in ports if isinstance(ports, list) else []:
        for key, value in sorted((p.get("counters") or {}).items()):
            value = _number(value)
            if value is not None:
                out[f"ib/{key}:{p.get('device')}/{p.get('port')}"] = value
    return out


def xid_events(facts: Mapping) -> list[dict]:
    """The audit's Xid lines as events, each ``{"xid", "pci", "line"}``, deduplicated by line (its identity:
    the kernel log's own timestamp makes two occurrences two lines)."""
    xids = facts.get("xids")
    seen, out = set(), []
    for x in xids if isinstance(xids, list) else []:
        line = str(x.get("line") or "").strip()
        if line and line not in seen:
            seen.add(line)
            out.append({"xid": x.get("xid"), "pci": x.get("pci"), "line": line})
    return out


def failed_gpus(checks: Iterable[Mapping]) -> set[str]:
    """UUIDs of the GPUs one of whose per-GPU checks (``<check>:gpuN``, details.uuid) failed."""
    out = set()
    for c in checks:
        details = c.get("details") if isinstance(c.get("details"), Mapping) else {}
        if c.get("status") == "fail" and details.get("uuid"):
            out.add(str(details["uuid"]))
    return out


def record_audit(db: sqlite3.Connection, report: Mapping, run_id: str | None = None) -> str:
    """Record an audit report (``fleet.audit.run.build_report``'s dict): per host its status, checks, the counters
    it read (:func:`audit_counters`) and each GPU's UUID and serial.  Returns the run id."""
    started = utc_iso(report.get("generated"))
    run_id = run_id or _new_run_id("audit", started)
    hosts = []
    for host, h in report.get("hosts", {}).items():
        facts = h.get("facts") or {}
        gpus = facts.get("gpus") if isinstance(facts.get("gpus"), list) else []
        record = HostRecord.of(host, h, h.get("checks") or [], audit_counters(facts),
                               [(g["uuid"], g.get("serial")) for g in gpus if g.get("uuid")])
        record.boot_id = facts.get("boot_id") if isinstance(facts.get("boot_id"), str) else None
        record.events = [("xid", x["line"], {"xid": x.get("xid"), "pci": x.get("pci")}) for x in xid_events(facts)]
        failed = failed_gpus(h.get("checks") or [])
        record.sightings = [(g["uuid"], g.get("serial"), g.get("pci_bus_id"), int(g["uuid"] in failed))
                            for g in gpus if g.get("uuid")]
        hosts.append(record)
    _write(db, _run_row(run_id, "audit", started, started, report.get("exit_code"), report.get("interrupted"),
                        {"schema": report.get("schema"), "pattern": report.get("pattern"),
                         "inventory": report.get("inventory")}), hosts)
    return run_id


def record_verify(db: sqlite3.Connection, summary: Mapping, meta: Mapping, runs: Iterable) -> str:
    """Record a verify run: ``summary`` (``fleet.runs.verdict.judge``), ``meta`` (run.json's fields) and the
    ``HostRun`` list: per host its status, its report's checks and every metric of its report, plus the
    summary's host figures under their base keys (a per-GPU metric's slowest GPU).  The status recorded is the
    verdict's (a straggler or a regression is ``fail`` there, so its figures never become a baseline).  The same
    run recorded again (judged again by ``gpufleet report``) replaces its record.  Returns the run id."""
    run_id = meta.get("run_id") or summary.get("run_id")
    started = utc_iso(meta.get("started") or summary.get("started") or _time_of_run_id(run_id))
    run_id = str(run_id or _new_run_id("verify", started))
    finished = meta.get("finished") or summary.get("finished")
    by_host = {r.host: r for r in runs}
    hosts = []
    for host, h in summary.get("hosts", {}).items():
        run = by_host.get(host)
        report = getattr(run, "report", None) or {}
        figures = h.get("metrics") or {}
        metrics = {k: v["value"] for k, v in figures.items() if isinstance(v, Mapping) and "value" in v}
        metrics.update(report.get("metrics") or {})
        hosts.append(HostRecord.of(host, h, run.checks if run is not None else [], metrics))
    _write(db, _run_row(run_id, "verify", started, utc_iso(finished) if finished else None, summary.get("exit_code"),
                        summary.get("interrupted", meta.get("interrupted")),
                        {"schema": summary.get("schema"), "profile": meta.get("profile"),
                         "pattern": meta.get("pattern")}), hosts)
    return run_id


def record_provision(db: sqlite3.Connection, report: Mapping, run_id: str | None = None) -> str:
    """Record a provision report (``provision.run.build_report``'s dict): per host its status, its steps,
    validation and audit checks as checks (``step:NAME``, ``validation:NAME``, the audit's own names), and the
    figures ``changed`` (0/1) and ``duration_s``.  Returns the run id."""
    started = utc_iso(report.get("generated"))
    run_id = run_id or _new_run_id("provision", started)
    hosts = []
    for host, h in report.get("hosts", {}).items():
        checks = [{**st, "name": f"step:{st.get('name')}"} for st in h.get("steps") or []]
        checks += [{**v, "name": f"validation:{v.get('name')}"} for v in h.get("validation") or []]
        checks += list((h.get("audit") or {}).get("checks") or [])
        hosts.append(HostRecord.of(host, h, checks, {"changed": 1 if h.get("changed") else 0,
                                                     "duration_s": h.get("duration_s")}))
    _write(db, _run_row(run_id, "provision", started, started, report.get("exit_code"), report.get("interrupted"),
                        {"schema": report.get("schema"), "pattern": report.get("pattern"),
                         "inventory": report.get("inventory"), "check": report.get("check")}), hosts)
    return run_id
