"""Retention: prune old run directories under a reports directory (``--keep-runs N`` / ``--keep-days D``).

:func:`plan_prune` is pure (names and mtimes in, names out); :func:`prune` lists a directory and
applies it.  The rules:

- Only directories named as gpufleet run ids are considered: ``YYYYMMDDTHHMMSSZ`` with an optional
  ``-N`` suffix (:func:`fleet.runs.run_dir.make_run_dir`), a valid UTC time.  Anything else in the
  reports directory (files, other directories, symbolic links, the lock file) is never touched.
- The run being written (``current``) is never removed.
- ``keep_runs=N``: the N newest run directories are kept, the older ones removed.  "Newest" is by
  run id (its timestamp, then its ``-N`` suffix), the order in which runs were made; the current
  run counts as one of the N when it is among them.  ``N`` is at least 0 (0: only the current run
  stays).
- ``keep_days=D``: a run directory is removed when it is older than D days (strictly), its age
  measured from the *later* of its run id's time and its mtime: a run whose name or whose
  directory is recent is not old, so a clock gone wrong on either side never removes a recent run.
- Both given: a directory is removed when either rule removes it (the union): ``--keep-runs 50
  --keep-days 30`` keeps at most 50 runs, none older than 30 days.
- Neither given: nothing is removed.

The history database keeps its rows: pruning removes run directories only.
"""

from __future__ import annotations

import calendar
import os
import re
import shutil
import time
from datetime import datetime
from pathlib import Path
from typing import Iterable, Optional, Sequence, Tuple, Union

RUN_ID_RE = re.compile(r"^(\d{8}T\d{6}Z)(?:-([1-9]\d*))?$")
DAY_S = 86400.0


def run_id_key(name: str) -> Optional[Tuple[float, int]]:
    """``(epoch seconds of the run id's UTC time, suffix)`` for a gpufleet run id, else None."""
    m = RUN_ID_RE.match(name)
    if not m:
        return None
    try:
        stamp = time.strptime(m.group(1), "%Y%m%dT%H%M%SZ")
    except ValueError:
        return None
    return float(calendar.timegm(stamp)), int(m.group(2) or 0)


def _epoch(now: Union[float, datetime, None]) -> float:
    if now is None:
        return time.time()
    if isinstance(now, datetime):
        if now.tzinfo is None:
            raise ValueError("now must be an aware datetime (UTC) or epoch seconds")
        return now.timestamp()
    return float(now)


def _check(keep_runs: Optional[int], keep_days: Optional[float]) -> None:
    if keep_runs is not None and (isinstance(keep_runs, bool) or not isinstance(keep_runs, int) or keep_runs < 0):
        raise ValueError(f"keep_runs must be a whole number >= 0, got {keep_runs!r}")
    if keep_days is not None and not keep_days >= 0:
        raise ValueError(f"keep_days must be >= 0, got {keep_days!r}")


def plan_prune(run_dirs: Iterable[Tuple[str, float]], keep_runs: Optional[int], keep_days: Optional[float],
               now: Union[float, datetime, None], current: Optional[str]) -> list:
    """The names of the run directories to remove, oldest first (see the module's rules).

    ``run_dirs`` is ``(name, mtime)`` pairs (mtime in epoch seconds); names that are not run ids are
    ignored.  ``current`` is the name of the run being written (a path is reduced to its last part).
    """
    _check(keep_runs, keep_days)
    current = os.path.basename(os.path.normpath(str(current))) if current else None
    runs = []
    for name, mtime in run_dirs:
        key = run_id_key(name)
        if key is not None:
            runs.append((key, name, float(mtime)))
    runs.sort(reverse=True)  # newest first
    remove = set()
    if keep_runs is not None:
        remove.update(name for _, name, _ in runs[keep_runs:])
    if keep_days is not None:
        cutoff = _epoch(now) - keep_days * DAY_S
        remove.update(name for (started, _), name, mtime in runs if max(started, mtime) < cutoff)
    remove.discard(current)
    return [name for _, name, _ in reversed(runs) if name in remove]


class PruneError(OSError):
    """Some run directories could not be removed: ``removed`` lists those that were, ``failed``
    ``(name, error)`` for the others."""

    def __init__(self, base_dir, removed: Sequence[str], failed: Sequence[Tuple[str, str]]):
        self.removed = list(removed)
        self.failed = list(failed)
        super().__init__(f"{base_dir}: could not remove " + "; ".join(f"{n}: {e}" for n, e in failed))


def list_run_dirs(base_dir: Union[str, os.PathLike]) -> list:
    """``(name, mtime)`` for each real directory (not a symbolic link) in ``base_dir`` named as a run id."""
    found = []
    with os.scandir(base_dir) as entries:
        for entry in entries:
            if run_id_key(entry.name) is not None and entry.is_dir(follow_symlinks=False):
                found.append((entry.name, entry.stat(follow_symlinks=False).st_mtime))
    return found


def prune(base_dir: Union[str, os.PathLike], keep_runs: Optional[int] = None, keep_days: Optional[float] = None,
          now: Union[float, datetime, None] = None, current: Optional[str] = None) -> list:
    """Remove the run directories under ``base_dir`` that :func:`plan_prune` names; returns their names.

    Nothing else in ``base_dir`` is touched.  Run it while holding the run lock
    (:class:`fleet.runlock.RunLock`), so that no other run is writing a directory meanwhile.  A
    directory that cannot be removed does not stop the others: :class:`PruneError` says which.
    A ``base_dir`` that does not exist has nothing to prune.
    """
    _check(keep_runs, keep_days)
    if keep_runs is None and keep_days is None:
        return []
    base = Path(base_dir)
    try:
        found = list_run_dirs(base)
    except FileNotFoundError:
        return []
    removed, failed = [], []
    for name in plan_prune(found, keep_runs, keep_days, now, current):
        path = base / name
        if path.is_symlink() or not path.is_dir():  # changed since it was listed: leave it
            continue
        try:
            shutil.rmtree(path)
        except OSError as e:
            failed.append((name, e.strerror or str(e)))
        else:
            removed.append(name)
    if failed:
        raise PruneError(base, removed, failed)
    return removed
