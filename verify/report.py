"""The report: building it, validating it, writing it atomically.

Schema ``gpufleet.verify/1`` (documented in docs/verify-report.md)::

    {"schema": "gpufleet.verify/1", "version": "0.1.0", "host": str,
     "started": ISO-8601 UTC, "finished": ISO-8601 UTC,
     "status": "pass" | "warn" | "fail" | "error", "profile": "quick" | "full",
     "device": "cpu" | "cuda", "env": {...},
     "metrics": {"<flat key>": number, ...},
     "checks": [{"name": str, "status": "pass|warn|fail|skip|error", "message": str, ...}, ...],
     "world": {"world_size": int, "node_count": int, "backend": str, "launcher": str,
               "ranks": [{"rank", "local_rank", "host", "device", "node"}, ...],
               "node": {"node_rank": int, "ranks": [int, ...]}}}

Each node of a run writes its own report (its local rank 0 does): the checks
and figures of the ranks it ran (``world.node.ranks``), with the checks of the
world stages every rank took part in; ``world.ranks`` maps every rank of the
whole run to its host and node.

Metric keys: ``<test>/<variant...>/<unit>`` and, for a figure of one device,
``:<device>`` where device is ``gpu<N>`` or ``cpu<N>``: under torchrun N is
the rank's global rank (on one node: its local rank, which is its CUDA index),
run alone N is the CUDA device index (``cpu0`` on a CPU).  ``world.ranks``
maps every rank to its host and torch device.  Node- or world-wide figures
have no suffix.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import re
import tempfile
from typing import Any

from verify import SCHEMA
from verify.status import CHECK_STATUSES, REPORT_STATUSES

METRIC_KEY = re.compile(r"^[a-z0-9_]+(/[A-Za-z0-9_.+-]+)+(:(gpu|cpu)[0-9]+)?$")
TOP_LEVEL = {"schema": str, "version": str, "host": str, "started": str, "finished": str, "status": str,
             "profile": str, "device": str, "env": dict, "metrics": dict, "checks": list, "world": dict}


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def device_label(kind: str, index: int) -> str:
    """``gpu0`` for a CUDA device, ``cpu1`` otherwise."""
    return f"{'gpu' if kind == 'cuda' else 'cpu'}{index}"


def jsonable(value: Any) -> Any:
    """``value`` with non-finite floats as strings ("nan", "inf") and tuples as lists: strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


def clean_metrics(metrics: dict) -> dict:
    """Finite numbers only, sorted by key (a non-finite figure is dropped; its check says why)."""
    return {k: float(v) for k, v in sorted(metrics.items())
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}


def validate(report: Any) -> list:
    """Every way ``report`` departs from the schema (an empty list: valid)."""
    if not isinstance(report, dict):
        return ["report is not an object"]
    errors = [f"{k}: missing or not {t.__name__}" for k, t in TOP_LEVEL.items() if not isinstance(report.get(k), t)]
    if errors:
        return errors
    if report["schema"] != SCHEMA:
        errors.append(f"schema: {report['schema']!r} is not {SCHEMA!r}")
    if report["status"] not in REPORT_STATUSES:
        errors.append(f"status: {report['status']!r} not one of {REPORT_STATUSES}")
    for key, value in report["metrics"].items():
        if not METRIC_KEY.match(key):
            errors.append(f"metrics: bad key {key!r}")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            errors.append(f"metrics: {key} is not a finite number")
    errors += _validate_checks(report["checks"])
    errors += _validate_world(report["world"])
    return errors


def _validate_checks(checks: list) -> list:
    errors, seen = [], set()
    for i, c in enumerate(checks):
        if not isinstance(c, dict) or not all(isinstance(c.get(k), str) for k in ("name", "status", "message")):
            errors.append(f"checks[{i}]: needs string name, status and message")
            continue
        if c["status"] not in CHECK_STATUSES:
            errors.append(f"checks[{i}] {c['name']}: status {c['status']!r} not one of {CHECK_STATUSES}")
        if c["name"] in seen:
            errors.append(f"checks[{i}]: duplicate name {c['name']!r}")
        seen.add(c["name"])
    return errors


def _validate_world(world: dict) -> list:
    errors = []
    for k in ("world_size", "node_count"):
        if not isinstance(world.get(k), int) or world[k] < 1:
            errors.append(f"world.{k}: not a positive integer")
    ranks = world.get("ranks")
    if not isinstance(ranks, list) or (isinstance(world.get("world_size"), int) and len(ranks) != world["world_size"]):
        errors.append("world.ranks: not a list of world_size entries")
    else:
        for i, r in enumerate(ranks):
            if not isinstance(r, dict) or not {"rank", "local_rank", "host", "device"} <= set(r):
                errors.append(f"world.ranks[{i}]: needs rank, local_rank, host and device")
    node = world.get("node")
    if node is not None and not (isinstance(node, dict) and isinstance(node.get("node_rank"), int)
                                 and isinstance(node.get("ranks"), list)
                                 and all(isinstance(r, int) for r in node["ranks"])):
        errors.append("world.node: needs an integer node_rank and a list of integer ranks")
    return errors


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomic(path: str, report: dict) -> None:
    """Write ``report`` as JSON to ``path`` through a temporary file in the same directory and os.replace."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".verify-report-", suffix=".tmp", dir=directory)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a report is as readable as any file
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(jsonable(report), f, indent=2, allow_nan=False)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
