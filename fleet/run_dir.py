"""The run directory: what ``invoke verify`` leaves behind, and reading it back.

Layout (``reports/<UTC timestamp>/`` by default; :func:`make_run_dir`)::

    run.json            the runner's record (below)
    hosts/<host>.json   each node's verify report, byte for byte as fetched
    logs/<host>.log     per-host logs (written by the runner; named in run.json)
    summary.json        gpufleet.summary/1 (fleet.verdict.summarize)
    summary.md          the same, as markdown (fleet.summary_render.render_markdown)

``run.json`` (schema ``gpufleet.run/1``)::

    {
      "schema": "gpufleet.run/1",
      "run_id": "20250101T120000Z",
      "started": "2025-01-01T12:00:00Z",      # ISO 8601 UTC strings (any JSON value is kept)
      "finished": "2025-01-01T12:03:10Z",
      ...                                     # any other keys the runner adds (profile, pattern,
                                              # argv, nproc...) are kept and returned in meta
      "hosts": [
        {"host": "gpu-a1",                    # inventory name
         "state": "ok",                       # ok|failed|unreachable|auth_failed|host_key_rejected|
                                              # timed_out|error|bad_report
         "message": "",                       # why, for a state other than ok (tail of output...)
         "log": "logs/gpu-a1.log",            # relative to the run dir, or null
         "report": "hosts/gpu-a1.json"}       # relative to the run dir, or null when none was fetched
      ]
    }

:func:`load_run` reads it back into :class:`fleet.verdict.HostRun` records.  A
report file that is not valid UTF-8 JSON, not an object, or not schema
``gpufleet.verify/1`` turns its host into state ``bad_report`` with a message
naming the file and, for a JSON syntax error, the line and column.  Without a
run.json (a hand-assembled directory) every ``hosts/*.json`` is a host in
state ``ok`` and the run id is the directory's name.
"""

from __future__ import annotations

import json
import os
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Tuple

from fleet.jsonio import write_bytes_atomic, write_json_atomic, write_text_atomic
from fleet.summary_render import render_markdown
from fleet.verdict import REPORT_SCHEMA, HostRun, summarize

RUN_SCHEMA = "gpufleet.run/1"
RUN_FILE = "run.json"
HOSTS_DIR = "hosts"
SUMMARY_JSON = "summary.json"
SUMMARY_MD = "summary.md"


def safe_name(host: str) -> str:
    """A file name for ``host``: characters other than letters, digits, ``.``, ``_``, ``-`` become ``_``."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", host)
    return "_" + name if name in ("", ".", "..") or name.startswith(".") else name


def report_path(host: str) -> str:
    """The report's path relative to the run dir."""
    return f"{HOSTS_DIR}/{safe_name(host)}.json"


def make_run_dir(base: str | os.PathLike = "reports", now: Optional[datetime] = None) -> Path:
    """Create and return a new ``base/<UTC timestamp>`` directory; never reuses an existing one."""
    now = now or datetime.now(timezone.utc)
    stamp = now.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    Path(base).mkdir(parents=True, exist_ok=True)
    for i in range(1000):
        path = Path(base) / (stamp if i == 0 else f"{stamp}-{i}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise FileExistsError(f"no free run directory for {stamp} under {base}")


def parse_report(data: bytes, name: str = "report") -> Tuple[Optional[dict], Optional[str]]:
    """``(report, None)`` for a valid verify report, or ``(None, why)`` naming ``name`` and where it broke."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        return None, f"{name}: not UTF-8 (byte {e.start})"
    try:
        report = json.loads(text)
    except json.JSONDecodeError as e:
        return None, f"{name}: invalid JSON at line {e.lineno} column {e.colno}: {e.msg}"
    if not isinstance(report, dict):
        return None, f"{name}: a JSON {type(report).__name__}, not an object"
    schema = report.get("schema")
    if schema != REPORT_SCHEMA:
        return None, f"{name}: schema {schema!r}, expected {REPORT_SCHEMA!r}"
    return report, None


def run_record(runs: Iterable[HostRun], meta: Mapping[str, Any]) -> dict:
    """The run.json document for ``runs`` and ``meta`` (run_id, started, finished, anything else)."""
    doc = {"schema": RUN_SCHEMA}
    doc.update({k: v for k, v in meta.items() if k not in ("schema", "hosts")})
    doc.setdefault("run_id", None)
    doc.setdefault("started", None)
    doc.setdefault("finished", None)
    doc["hosts"] = [{"host": r.host, "state": r.state, "message": r.message, "log": r.log,
                     "report": report_path(r.host) if (r.raw is not None or r.report is not None) else None}
                    for r in runs]
    return doc


def write_summary(run_dir: str | os.PathLike, summary: Mapping) -> None:
    """summary.json and summary.md, each written atomically (``invoke report`` re-renders with this)."""
    run_dir = Path(run_dir)
    write_json_atomic(run_dir / SUMMARY_JSON, summary)
    write_text_atomic(run_dir / SUMMARY_MD, render_markdown(summary) + "\n")


def write_run(run_dir: str | os.PathLike, runs: Iterable, meta: Mapping[str, Any],
              summary: Optional[Mapping] = None, reference=None) -> dict:
    """Write hosts/*.json (``raw`` bytes unchanged, else the parsed report as JSON), run.json,
    summary.json and summary.md; returns the summary (computed by
    :func:`fleet.verdict.summarize` with ``reference`` unless given)."""
    run_dir = Path(run_dir)
    runs = [HostRun.coerce(r) for r in runs]
    names = [safe_name(r.host) for r in runs]
    if len(set(names)) != len(names):
        raise ValueError("two hosts map to the same report file name: " + ", ".join(
            r.host for r in runs if names.count(safe_name(r.host)) > 1))
    for r in runs:
        if r.raw is not None:
            write_bytes_atomic(run_dir / report_path(r.host), r.raw)
        elif r.report is not None:
            write_json_atomic(run_dir / report_path(r.host), r.report)
    write_json_atomic(run_dir / RUN_FILE, run_record(runs, meta))
    if summary is None:
        summary = summarize(runs, meta.get("run_id"), meta.get("started"), meta.get("finished"), reference)
    write_summary(run_dir, summary)
    return dict(summary)


def _load_host(run_dir: Path, host: str, state: str, message: str, log: Optional[str],
               rel: Optional[str]) -> HostRun:
    run = HostRun(host=host, state=state, message=message, log=log)
    if rel is None:
        if state == "ok":
            run.state, run.message = "bad_report", "no report was recorded for this host"
        return run
    path = run_dir / rel
    try:
        data = path.read_bytes()
    except OSError as e:
        if state == "ok":
            run.state, run.message = "bad_report", f"{rel}: {e.strerror or e}"
        return run
    run.raw = data
    report, why = parse_report(data, rel)
    if report is not None:
        run.report = report
    elif state == "ok":
        run.state, run.message = "bad_report", why
    return run


def load_run(run_dir: str | os.PathLike) -> Tuple[list, dict]:
    """``(runs, meta)`` from a run directory: a :class:`HostRun` per host (in run.json's order)
    and run.json's other fields (``run_id``, ``started``, ``finished``...).

    Raises ``FileNotFoundError`` when ``run_dir`` is not a directory and ``ValueError`` when
    run.json itself is unreadable; a bad host report only marks that host ``bad_report``.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"{run_dir}: no such run directory")
    run_file = run_dir / RUN_FILE
    if not run_file.exists():
        runs = [_load_host(run_dir, p.stem, "ok", "", None, f"{HOSTS_DIR}/{p.name}")
                for p in sorted((run_dir / HOSTS_DIR).glob("*.json"))]
        return runs, {"run_id": run_dir.name, "started": None, "finished": None}
    try:
        doc = json.loads(run_file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{run_file}: invalid JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"{run_file}: unreadable: {e}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("hosts", []), list):
        raise ValueError(f"{run_file}: not a {RUN_SCHEMA} document")
    runs = []
    for h in doc.get("hosts", []):
        if not isinstance(h, dict) or not isinstance(h.get("host"), str):
            raise ValueError(f"{run_file}: host entry without a name: {h!r}")
        runs.append(_load_host(run_dir, h["host"], str(h.get("state") or "error"), str(h.get("message") or ""),
                               h.get("log"), h.get("report")))
    meta = {k: v for k, v in doc.items() if k not in ("hosts", "schema")}
    meta.setdefault("run_id", run_dir.name)
    meta.setdefault("started", None)
    meta.setdefault("finished", None)
    return runs, meta
