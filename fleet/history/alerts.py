"""``--notify CMD``: tell people what changed, once, and remind them of what stays broken.

An alert is due until a ``--notify`` command has taken it (exited 0).  What was last delivered is kept per kind
of run (audit or verify) and host in the history (``delivered``, :mod:`fleet.history.db`), and a run alerts on a
host when, against that:

- its status **changed** from the last status delivered about it (``pass`` -> ``fail``, ``fail`` -> ``pass``,
  ...; a host never alerted on alerts only when it is not passing);
- it has a **new critical Xid**: a line of this boot that fails the ``xid`` check and that the last alert
  delivered about it did not cover (a run without ``--notify`` that saw it first does not make it old), even
  when it was failing already;
- it is **still failing** and neither an alert nor the start of its failure is newer than ``remind_days``
  (a ``reminder``).

Nothing else alerts: a node that stays broken is reported once, then once per reminder period; no storm.
When some host alerts, CMD runs once (through ``sh -c``: it is the operator's own command line, never built
from inventory values) with the JSON document ``gpufleet.notify/1`` on its standard input; the alerts are
recorded as delivered only when CMD exits 0.  A failed delivery, and a run without ``--notify``, consume
nothing: the next run with a working command raises the same alerts.

:func:`plan` is pure; :func:`read_state`, :func:`record_sent` and :func:`deliver` are the edges.  The statuses
and reasons alerted on are the verdict's (``status`` and ``reasons`` of each host): nothing here decides again.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import signal
import sqlite3
import subprocess
from dataclasses import dataclass, field
from typing import Iterable, Mapping

from fleet.runs.verdict import reasons_of

SCHEMA = "gpufleet.notify/1"
DEFAULT_REMIND_DAYS = 7.0
NOTIFY_TIMEOUT_S = 120
FAILING = ("fail", "error", "unreachable")


@dataclass
class HostAlertState:
    """What the history says about one host, for one kind of run, before this run is recorded."""

    previous: str | None = None  # its status in the last alert delivered about it; None: never alerted on
    failing_since: str | None = None  # start of its current run of failing statuses (ISO), None when not failing
    last_alert: str | None = None  # when the last alert about it was delivered (ISO)
    delivered_xids: tuple = ()  # the critical Xid lines the last delivered alert covered


@dataclass
class Alert:
    host: str
    status: str
    previous: str | None
    reason: str  # changed | new-xid | reminder
    failing_since: str | None = None
    details: dict = field(default_factory=dict)
    xids: list = field(default_factory=list)  # the critical Xid lines it covers (recorded as delivered with it)

    def to_dict(self) -> dict:
        return {"host": self.host, "status": self.status, "previous": self.previous, "reason": self.reason,
                "failing_since": self.failing_since, **self.details}


def _age_days(then: str | None, now: _dt.datetime) -> float | None:
    if not then:
        return None
    try:
        t = _dt.datetime.fromisoformat(then.replace("Z", "+00:00"))
    except ValueError:
        return None
    if t.tzinfo is None:
        t = t.replace(tzinfo=_dt.timezone.utc)
    return (now - t).total_seconds() / 86400


def plan(statuses: Mapping[str, str], states: Mapping[str, HostAlertState], new_xids: Mapping[str, list],
         remind_days: float | None, now: _dt.datetime, details: Mapping[str, dict] | None = None) -> list[Alert]:
    """The alerts this run raises (see the module's rules).  ``statuses``: this run's status per host;
    ``states``: per host, what was last delivered about it and since when it fails; ``new_xids``: per host,
    its critical Xid lines of this boot (those the last delivered alert covered are not new: an alert's
    ``new_xids`` detail, when the caller gives one, is set to the others); ``details``: per host, what to say
    about it."""
    out = []
    details = details or {}
    for host, status in statuses.items():
        st = states.get(host) or HostAlertState()
        extra = dict(details.get(host) or {})
        lines = list(new_xids.get(host) or [])
        fresh = [line for line in lines if line not in st.delivered_xids]
        if "new_xids" in extra:
            extra["new_xids"] = fresh
        failing = status in FAILING
        since = (st.failing_since or now.isoformat(timespec="seconds")) if failing else None
        if st.previous != status and (st.previous is not None or failing):
            out.append(Alert(host, status, st.previous, "changed", since, extra, lines))
        elif fresh:
            out.append(Alert(host, status, st.previous, "new-xid", since, extra, lines))
        elif failing and remind_days is not None:
            newest = max((t for t in (st.last_alert, st.failing_since) if t), default=None)
            age = _age_days(newest, now)
            if age is None or age >= remind_days:
                out.append(Alert(host, status, st.previous, "reminder", since, extra, lines))
    return out


def document(kind: str, run_id: str | None, alerts: Iterable[Alert], source: str | None, exit_code: int | None,
             now: _dt.datetime) -> dict:
    return {"schema": SCHEMA, "kind": kind, "run_id": run_id, "generated": now.isoformat(timespec="seconds"),
            "exit_code": exit_code, "source": source, "alerts": [a.to_dict() for a in alerts]}


# ------------------------------------------------------------------------------ the edges

def read_state(db: sqlite3.Connection, kind: str, hosts: Iterable[str]) -> dict[str, HostAlertState]:
    """Per host, its :class:`HostAlertState` for ``kind`` from the history (before this run is recorded): the last
    status delivered about it and when (``delivered``), and the start of its current failure (its runs)."""
    out = {}
    for host in hosts:
        st = HostAlertState()
        statuses = db.execute(
            "SELECT r.started, h.status FROM host_runs h JOIN runs r USING (run_id) WHERE h.host = ? AND r.kind = ? "
            "ORDER BY r.started DESC, r.run_id DESC LIMIT 1000", (host, kind)).fetchall()
        for started, status in statuses:
            if status not in FAILING:
                break
            st.failing_since = started
        row = db.execute("SELECT status, sent, xids FROM delivered WHERE kind = ? AND subject = ?",
                         (kind, host)).fetchone()
        if row is not None:
            st.previous, st.last_alert = row[0], row[1]
            if row[2] is not None:
                st.delivered_xids = tuple(json.loads(row[2]))
            else:  # delivered by an older gpufleet: what it had seen then counted as reported
                st.delivered_xids = tuple(r[0] for r in db.execute(
                    "SELECT DISTINCT e.key FROM events e JOIN host_runs h ON e.host_run = h.id JOIN runs r "
                    "USING (run_id) WHERE h.host = ? AND r.kind = ? AND e.kind = 'xid' AND r.started <= ? "
                    "ORDER BY e.key", (host, kind, row[1])))
        out[host] = st
    return out


def record_sent(db: sqlite3.Connection, kind: str, run_id: str | None, alerts: Iterable[Alert],
                sent: str) -> None:
    """Record alerts a command took (exited 0): each in ``alerts``, and its status as the host's last delivered."""
    alerts = list(alerts)
    db.execute("BEGIN IMMEDIATE")
    try:
        db.executemany("INSERT INTO alerts (host, kind, run_id, sent, status, reason) VALUES (?, ?, ?, ?, ?, ?)",
                       [(a.host, kind, run_id or "", sent, a.status, a.reason) for a in alerts])
        db.executemany("INSERT INTO delivered (kind, subject, status, run_id, sent, xids) VALUES (?, ?, ?, ?, ?, ?) "
                       "ON CONFLICT (kind, subject) DO UPDATE SET status = excluded.status, "
                       "run_id = excluded.run_id, sent = excluded.sent, xids = excluded.xids",
                       [(kind, a.host, a.status, run_id or "", sent, json.dumps(a.xids)) for a in alerts])
        db.execute("COMMIT")
    except sqlite3.Error:
        db.execute("ROLLBACK")
        raise


def deliver(command: str, doc: Mapping, timeout: float = NOTIFY_TIMEOUT_S) -> str | None:
    """Run ``command`` (``sh -c``) with ``doc`` as JSON on its standard input: None when it exited 0, else a
    one-line reason."""
    try:
        proc = subprocess.Popen(["sh", "-c", command], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)
    except OSError as exc:
        return f"--notify command could not start: {exc}"
    try:
        out, err = proc.communicate(json.dumps(doc, indent=2) + "\n", timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the whole group: a pipeline's children hold its pipes open
        proc.communicate()
        return f"--notify command did not finish within {timeout:g} s"
    if proc.returncode != 0:
        tail = (err or out).strip().splitlines()[-1:] or [""]
        return f"--notify command exited {proc.returncode}" + (f": {tail[0][:200]}" if tail[0] else "")
    return None


def notify(db_path, command: str, kind: str, run_id: str | None, statuses: Mapping[str, str],
           states: Mapping[str, HostAlertState], new_xids: Mapping[str, list], details: Mapping[str, dict],
           remind_days: float | None, source: str | None, exit_code: int | None,
           now: _dt.datetime | None = None) -> str:
    """Plan this run's alerts, deliver them through ``command`` when there are any, record them when it
    succeeded; returns one line saying what happened (never raises for a failed delivery)."""
    from fleet.history.db import connect

    now = now or _dt.datetime.now(_dt.timezone.utc)
    alerts = plan(statuses, states, new_xids, remind_days, now, details)
    if not alerts:
        return "--notify: nothing changed; no alert"
    problem = deliver(command, document(kind, run_id, alerts, source, exit_code, now))
    if problem:
        return problem + " (the alerts will be raised again by the next run)"
    if db_path is not None:
        try:
            db = connect(db_path)
            try:
                record_sent(db, kind, run_id, alerts, now.isoformat(timespec="seconds"))
            finally:
                db.close()
        except (OSError, sqlite3.Error, RuntimeError) as exc:
            return f"--notify: sent, but not recorded in {db_path}: {exc}"
    hosts = ", ".join(f"{a.host} ({a.reason})" for a in alerts)
    return f"--notify: {len(alerts)} alert{'s' if len(alerts) != 1 else ''} sent: {hosts}"


def read_states(db_path, kind: str, hosts: Iterable[str]) -> tuple[dict, str | None]:
    """({host: HostAlertState}, None), or ({}, a one-line reason) when the history could not be read."""
    from pathlib import Path

    from fleet.history.db import connect

    if db_path is None or not Path(db_path).exists():
        return {}, None
    try:
        db = connect(db_path)
        try:
            return read_state(db, kind, hosts), None
        finally:
            db.close()
    except (OSError, sqlite3.Error, RuntimeError) as exc:
        return {}, f"history not read from {db_path}: {exc}"


def _failing(checks: Iterable[Mapping]) -> list[dict]:
    return [{"name": c.get("name"), "status": c.get("status"), "message": c.get("message")}
            for c in checks if c.get("status") in ("fail", "error")]


def audit_subjects(report: Mapping) -> tuple[dict, dict, dict]:
    """(statuses, critical Xid lines of this boot, details) per host of an audit report (its verdict made,
    history checks included): the status and reasons as the report has them; :func:`plan` tells which Xid
    lines no delivered alert covered yet."""
    statuses, critical_lines, details = {}, {}, {}
    for host, h in (report.get("hosts") or {}).items():
        statuses[host] = h.get("status")
        xid = next((c for c in h.get("checks") or [] if c.get("name") == "xid"), {})
        critical = {f.get("xid") for f in (xid.get("details") or {}).get("findings") or []
                    if f.get("status") == "fail"}
        xids = (h.get("history") or {}).get("xids") or []
        critical_lines[host] = [x["line"] for x in xids if x.get("xid") in critical]
        details[host] = {"state": h.get("state"), "message": h.get("message") or "",
                         "failing_checks": _failing(h.get("checks") or []), "new_xids": critical_lines[host],
                         "known_xids": [x["line"] for x in xids if not x.get("new")],
                         "reasons": list(h.get("reasons") or [])}
    return statuses, critical_lines, details


def verify_subjects(summary: Mapping) -> tuple[dict, dict, dict]:
    """(statuses, {}, details) per host of a verify summary: the status and reasons the verdict decided (a
    straggler or a regression is ``fail`` there)."""
    statuses, details = {}, {}
    for host, h in (summary.get("hosts") or {}).items():
        statuses[host] = h.get("status")
        details[host] = {"state": h.get("state"), "message": h.get("message") or "",
                         "failing_checks": _failing(h.get("failing_checks") or []),
                         "stragglers": h.get("straggler_metrics") or [],
                         "regressions": h.get("regression_metrics") or [],
                         "reasons": reasons_of(h)}
    return statuses, {}, details
