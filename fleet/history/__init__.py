"""The run history: every audit, verify and provision run recorded per host in one SQLite database.

``db``: open (WAL, busy timeout, forward migrations) and record; ``query``: read runs, metric series and
the GPU identity table back; ``render``: the per-host text with a small trend; :func:`history_main` ties
them together for the ``history`` task.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from fleet.history.db import (
    DEFAULT_PATH, SCHEMA_VERSION, connect, record_audit, record_provision, record_verify, schema_version,
)
from fleet.history.query import SCHEMA, document, gpu_identities, metric_bases, metric_series, runs_by_host
from fleet.history.render import render, sparkline
from fleet.jsonio import write_json_atomic

__all__ = ["DEFAULT_PATH", "SCHEMA", "SCHEMA_VERSION", "UnknownMetric", "connect", "document", "gpu_identities",
           "history_main",
           "metric_series", "read_audit_past", "record", "record_audit", "record_provision", "record_run",
           "record_verify", "render", "runs_by_host",
           "schema_version", "sparkline"]


_RECORDERS = {"audit": record_audit, "verify": record_verify, "provision": record_provision}


def record_run(db_path, kind: str, *args) -> tuple[str | None, str | None]:
    """Open the database at ``db_path``, record one run (``kind`` audit, verify or provision; ``args`` what
    that ``record_*`` takes after the connection) and close it: (run id, None), or (None, a one-line reason)
    when the history could not be written, so that a run never fails for its history."""
    try:
        db = connect(db_path)
        try:
            return _RECORDERS[kind](db, *args), None
        finally:
            db.close()
    except (OSError, sqlite3.Error, RuntimeError) as exc:
        return None, f"history not recorded in {db_path}: {exc}"


def record(db_path, kind: str, *args) -> tuple[str | None, str | None]:
    """:func:`record_run` where there is a history (``db_path`` None: nothing): (run id, the line that says
    where it was recorded or why it was not)."""
    if db_path is None:
        return None, None
    run_id, problem = record_run(db_path, kind, *args)
    return run_id, problem or f"recorded in the history: {db_path} (run {run_id})"


def read_audit_past(db_path, report: dict) -> tuple[tuple | None, str | None]:
    """((pasts, gpus_past), None) for an audit report's hosts and GPUs from the history at ``db_path`` (empty
    when the database does not exist yet), or (None, a one-line reason) when it could not be read."""
    from fleet.history.changes import audited, gpu_uuids
    from fleet.history.query import audit_past

    names = audited(report)
    if not Path(db_path).exists():
        return ({}, {}), None
    try:
        db = connect(db_path)
        try:
            return audit_past(db, names, sorted(gpu_uuids(report))), None
        finally:
            db.close()
    except (OSError, sqlite3.Error, RuntimeError) as exc:
        return None, f"history not read from {db_path}: {exc}"


class UnknownMetric(ValueError):
    """``history --metric KEY`` where the history holds no such metric: the message lists the known ones."""

    def __init__(self, metric: str, known: list[str]):
        shown = ", ".join(known[:40]) + (f" and {len(known) - 40} more" if len(known) > 40 else "")
        super().__init__(f"--metric {metric}: the history holds no such metric; known: {shown or 'none yet'}")


def history_main(db_path, pattern_hosts: list[str] | None, metric: str | None, days: float | None,
                 json_path=None) -> tuple[str, dict]:
    """(text, doc) for ``history``: ``pattern_hosts`` host names or shell globs (None: every host), ``metric``
    a metric key (or its base, without ``:device``), ``days`` how far back (None: everything).
    Writes ``doc`` to ``json_path`` when given."""
    if not Path(db_path).exists():  # reading creates nothing
        doc = {"schema": SCHEMA, "hosts": {}}
        text = f"no history yet: {db_path} does not exist (audit, verify and provision runs write it)"
    else:
        db = connect(db_path)
        try:
            if metric is not None:
                known = metric_bases(db)
                if metric.split(":", 1)[0] not in known:
                    raise UnknownMetric(metric, known)
            doc = document(db, pattern_hosts, metric, days)
        finally:
            db.close()
        text = render(doc, metric)
    if json_path:
        write_json_atomic(json_path, doc)
    return text, doc
