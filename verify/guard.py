"""The busy-GPU guard: a GPU with someone else's compute processes on it is not benchmarked.

The guard asks ``nvidia-smi --query-compute-apps=pid,process_name,used_memory,gpu_uuid
--format=csv,noheader``; without nvidia-smi (or when it fails) there is no
guard.  verify's own processes (every rank's pid on this host) are excluded.
``--force`` benchmarks busy GPUs anyway.
"""

from __future__ import annotations

import shutil
import subprocess
from typing import Callable, Iterable, Mapping, Optional

QUERY = ["nvidia-smi", "--query-compute-apps=pid,process_name,used_memory,gpu_uuid", "--format=csv,noheader"]


def normalize_uuid(uuid: str) -> str:
    """``GPU-8f2c...`` and ``8F2C...`` compare equal."""
    u = str(uuid).strip().lower()
    return u[4:] if u.startswith("gpu-") else u


def _memory_mib(field: str) -> Optional[int]:
    parts = field.strip().split()
    if parts and parts[0].isdigit():
        return int(parts[0])
    return None  # "[N/A]", "[Not Supported]"


def parse_compute_apps(text: str) -> list:
    """Parse the CSV (no header) of ``--query-compute-apps``.

    One dict per process: ``pid`` (int), ``process_name``, ``used_memory_mib``
    (int or None) and ``gpu_uuid``.  A process name may itself hold commas, so
    the fields are taken from both ends.  Lines that do not parse (e.g. "No
    running processes found") are skipped.
    """
    apps = []
    for line in text.splitlines():
        raw = line.split(",")
        fields = [f.strip() for f in raw]
        if len(fields) < 4 or not fields[0].isdigit():
            continue
        apps.append({
            "pid": int(fields[0]),
            "process_name": ",".join(raw[1:-2]).strip(),
            "used_memory_mib": _memory_mib(fields[-2]),
            "gpu_uuid": fields[-1],
        })
    return apps


def query_compute_apps(run: Callable = subprocess.run) -> Optional[list]:
    """The compute processes nvidia-smi sees, or None where there is no nvidia-smi or it fails."""
    if shutil.which(QUERY[0]) is None:
        return None
    try:
        proc = run(QUERY, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    if proc.returncode != 0:
        return None
    return parse_compute_apps(proc.stdout)


def busy_devices(apps: Optional[Iterable[dict]], uuids: Mapping[int, str],
                 exclude_pids: Iterable[int] = ()) -> dict:
    """``{device index: [apps]}`` for the devices of ``uuids`` with foreign compute processes."""
    if not apps:
        return {}
    excluded = set(exclude_pids)
    by_uuid = {normalize_uuid(u): idx for idx, u in uuids.items()}
    busy: dict = {}
    for app in apps:
        idx = by_uuid.get(normalize_uuid(app["gpu_uuid"]))
        if idx is not None and app["pid"] not in excluded:
            busy.setdefault(idx, []).append(app)
    return busy


def describe(apps: Iterable[dict]) -> str:
    """``python (pid 123, 2048 MiB), ...`` for a skip message."""
    parts = []
    for a in apps:
        mem = f", {a['used_memory_mib']} MiB" if a.get("used_memory_mib") is not None else ""
        parts.append(f"{a['process_name'] or '?'} (pid {a['pid']}{mem})")
    return ", ".join(parts)
