"""The run directory: what ``invoke verify`` leaves behind, and reading it back.  Only I/O: no judging.

Layout (``reports/<UTC timestamp>/`` by default; :func:`make_run_dir`); a run
directory is written once, by the run that made it, and never rewritten::

    run.json            the runner's record (below)
    hosts/<host>.json   each node's verify report, byte for byte as fetched
    logs/<host>.log     per-host logs: state, push summary, torchrun's exit status and output
    summary.json        gpufleet.summary/1 (fleet.runs.verdict.judge)
    summary.md          the same, as markdown (fleet.runs.render.render_markdown)

``run.json`` (schema ``gpufleet.run/1``)::

    {
      "schema": "gpufleet.run/1",
      "run_id": "20250101T120000Z",
      "started": "2025-01-01T12:00:00Z",      # ISO 8601 UTC strings
      "finished": "2025-01-01T12:03:10Z",
      "interrupted": false,                   # true when the operator stopped the run (Ctrl-C)
      ...                                     # profile, pattern, nproc, multinode, artifact
      "hosts": [
        {"host": "gpu-a1",                    # inventory name
         "state": "ok",                       # a fleet.outcome.HostState
         "message": "",                       # why, for a state other than ok (the run's last error line...)
         "log": "logs/gpu-a1.log",            # relative to the run dir
         "report": "hosts/gpu-a1.json",       # relative to the run dir, or null when none was fetched
         "exit_code": 0,                      # torchrun's exit status, or null when it did not run
         "duration_s": 41.2,
         "push": {...},                       # where verify was installed and what the node's Python has
         "member": {...}}                     # multi-node: each node's place in the rendezvous
      ]
    }

:func:`load_run` reads it back into :class:`fleet.runs.record.HostRun` records,
validating each report as it is read: a report file that is not a valid
``gpufleet.verify/1`` report turns its host into state ``bad_report`` with a
message naming the file and what is wrong.
"""

from __future__ import annotations

import json
import os
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Tuple

from fleet.jsonio import write_bytes_atomic, write_json_atomic, write_text_atomic
from fleet.outcome import HostState
from fleet.runs.record import HostRun, Member
from fleet.runs.render import render_markdown

RUN_SCHEMA = "gpufleet.run/1"
RUN_FILE = "run.json"
HOSTS_DIR = "hosts"
LOGS_DIR = "logs"
SUMMARY_JSON = "summary.json"
SUMMARY_MD = "summary.md"


def safe_name(host: str) -> str:
    """A file name for ``host``: characters other than letters, digits, ``.``, ``_``, ``-`` become ``_``."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", host)
    return "_" + name if name in ("", ".", "..") or name.startswith(".") else name


def report_path(host: str) -> str:
    """The report's path relative to the run dir."""
    return f"{HOSTS_DIR}/{safe_name(host)}.json"


def log_path(host: str) -> str:
    """The host log's path relative to the run dir."""
    return f"{LOGS_DIR}/{safe_name(host)}.log"


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


def _host_entry(r: HostRun) -> dict:
    entry = {"host": r.host, "state": r.state.value, "message": r.message, "log": r.log,
             "report": report_path(r.host) if r.raw is not None else None,
             "exit_code": r.exit_code, "duration_s": round(r.duration_s, 3)}
    if r.push:
        entry["push"] = r.push
    if r.member is not None:
        entry["member"] = r.member.to_dict()
    return entry


def run_record(runs: Iterable[HostRun], meta: Mapping[str, Any]) -> dict:
    """The run.json document for ``runs`` and ``meta`` (run_id, started, finished, anything else)."""
    doc = {"schema": RUN_SCHEMA}
    doc.update({k: v for k, v in meta.items() if k not in ("schema", "hosts")})
    doc.setdefault("run_id", None)
    doc.setdefault("started", None)
    doc.setdefault("finished", None)
    doc["hosts"] = [_host_entry(r) for r in runs]
    return doc


def _log_text(r: HostRun) -> str:
    header = f"# host {r.host}: state {r.state.value}" + (f" ({r.message})" if r.message else "") + "\n"
    if r.push.get("summary"):
        header += f"# push: {r.push['summary']}\n"
    if r.exit_code is not None:
        header += f"# torchrun exit status {r.exit_code}\n"
    return header + r.output


def write_summary(run_dir: str | os.PathLike, summary: Mapping) -> None:
    """summary.json and summary.md, each written atomically."""
    run_dir = Path(run_dir)
    write_json_atomic(run_dir / SUMMARY_JSON, summary)
    write_text_atomic(run_dir / SUMMARY_MD, render_markdown(summary) + "\n")


def write_run(run_dir: str | os.PathLike, runs: Iterable[HostRun], meta: Mapping[str, Any]) -> None:
    """Write each host's log (``logs/``), its report bytes unchanged (``hosts/``) and run.json.

    Sets each record's ``log``.  Judging is not done here: see :func:`fleet.runs.verdict.judge`.
    """
    run_dir = Path(run_dir)
    runs = list(runs)
    names = [safe_name(r.host) for r in runs]
    if len(set(names)) != len(names):
        raise ValueError("two hosts map to the same report file name: " + ", ".join(
            r.host for r in runs if names.count(safe_name(r.host)) > 1))
    for r in runs:
        r.log = log_path(r.host)
        write_text_atomic(run_dir / r.log, _log_text(r))
        if r.raw is not None:
            write_bytes_atomic(run_dir / report_path(r.host), r.raw)
    write_json_atomic(run_dir / RUN_FILE, run_record(runs, meta))


def _load_host(run_dir: Path, h: Mapping) -> HostRun:
    member = h.get("member")
    run = HostRun(host=h["host"], state=HostState(h.get("state") or "error"), message=str(h.get("message") or ""),
                  log=h.get("log"), push=h.get("push") or {}, exit_code=h.get("exit_code"),
                  duration_s=float(h.get("duration_s") or 0.0),
                  member=Member(**member) if isinstance(member, Mapping) else None)
    rel = h.get("report")
    if rel is None:
        if run.state is HostState.OK and run.member is None:
            run.state, run.message = HostState.BAD_REPORT, "no report was recorded for this host"
        return run
    try:
        data = (run_dir / rel).read_bytes()
    except OSError as e:
        if run.state is HostState.OK:
            run.state, run.message = HostState.BAD_REPORT, f"{rel}: {e.strerror or e}"
        return run
    state, message = run.state, run.message
    if not run.accept_report(data, rel) and state is not HostState.OK:
        run.state, run.message = state, message  # the run's own reason stands; the bad file is secondary
    return run


def load_run(run_dir: str | os.PathLike) -> Tuple[list, dict]:
    """``(runs, meta)`` from a run directory: a :class:`HostRun` per host (in run.json's order)
    and run.json's other fields (``run_id``, ``started``, ``finished``...).

    Raises ``FileNotFoundError`` when ``run_dir`` is not a directory and ``ValueError`` when
    run.json itself is missing or unreadable; a bad host report only marks that host ``bad_report``.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"{run_dir}: no such run directory")
    run_file = run_dir / RUN_FILE
    try:
        doc = json.loads(run_file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{run_file}: missing: not a gpufleet run directory") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{run_file}: invalid JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"{run_file}: unreadable: {e}") from None
    if not isinstance(doc, dict) or doc.get("schema") != RUN_SCHEMA or not isinstance(doc.get("hosts", []), list):
        raise ValueError(f"{run_file}: not a {RUN_SCHEMA} document")
    runs = []
    for h in doc.get("hosts", []):
        if not isinstance(h, dict) or not isinstance(h.get("host"), str):
            raise ValueError(f"{run_file}: host entry without a name: {h!r}")
        try:
            runs.append(_load_host(run_dir, h))
        except (ValueError, TypeError) as e:
            raise ValueError(f"{run_file}: host {h['host']!r}: {e}") from None
    meta = {k: v for k, v in doc.items() if k not in ("hosts", "schema")}
    meta.setdefault("run_id", run_dir.name)
    meta.setdefault("started", None)
    meta.setdefault("finished", None)
    return runs, meta
