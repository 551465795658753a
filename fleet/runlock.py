"""One gpufleet run at a time per output directory or history database: an ``flock`` on a lock file.

``RunLock(path)`` takes an exclusive :func:`fcntl.flock` on ``path`` (created when missing) and, once it
holds it, writes who holds it into the file as JSON: ``pid``, ``host`` (the machine's name),
``command`` (the command line) and ``since`` (ISO 8601 UTC, as run.json writes times).  A second
run that finds the lock taken gets :class:`LockHeld`, whose message names the holder; the caller
maps it to exit 2 (:attr:`LockHeld.exit_code`).  ``acquire(wait_s)`` waits up to ``wait_s`` seconds
for the holder to finish instead (polling), then gives up the same way.

The lock is the ``flock``, never the file: the kernel releases it when the holder's process ends,
however it ends (SIGKILL, OOM, a reboot), so a file left behind by a dead run is not a lock and
the next run takes it at once.  The file is never deleted (deleting a lock file races with a run
that has just opened it); on release it is emptied.

Limits:

- The lock's descriptor is opened close-on-exec, so programs the run starts (ssh...) do not hold
  it; a child made by a bare ``fork`` (no exec) does, and keeps the lock until it exits too.
- ``flock`` is reliable on a local filesystem.  Over NFS it depends on the client and the mount
  (Linux emulates it with NFS byte-range locks since 2.6.12; ``local_lock=flock`` or
  ``local_lock=all`` mounts make it local to one client, so two machines would not see each
  other's lock).  With a reports directory or history database on NFS shared by several
  controllers, put the lock on a path all of them lock reliably, or run gpufleet from one
  machine only.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shlex
import socket
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

from fleet.outcome import ExitCode

LOCK_NAME = ".gpufleet.lock"
POLL_S = 0.2


def lock_path_for(target: str | os.PathLike) -> Path:
    """The lock file guarding ``target``: ``<dir>/.gpufleet.lock`` for a directory (a reports directory,
    existing or not, when ``target`` has no suffix), ``<file>.lock`` for a file (a history database)."""
    target = Path(target)
    if target.is_dir() or (not target.exists() and not target.suffix):
        return target / LOCK_NAME
    return target.with_name(target.name + ".lock")


def _command_line() -> str:
    argv = getattr(sys, "orig_argv", None) or sys.argv
    return shlex.join([str(a) for a in argv])


def _now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def describe_holder(holder: dict) -> str:
    """``pid 4242 on ctl01 since 2026-11-23T15:30:00Z, running: gpufleet verify --hosts all``."""
    if not holder:
        return "a process that has not described itself (the lock file is empty or unreadable)"
    text = f"pid {holder.get('pid', '?')} on {holder.get('host') or '?'} since {holder.get('since') or '?'}"
    if holder.get("command"):
        text += f", running: {holder['command']}"
    return text


class LockHeld(RuntimeError):
    """Another run holds the lock: ``holder`` is what it wrote (``pid``, ``host``, ``command``, ``since``;
    ``{}`` when it could not be read), ``path`` the lock file, ``waited_s`` how long this run waited."""

    exit_code = ExitCode.USAGE

    def __init__(self, holder: dict, path: str | os.PathLike = "", waited_s: float = 0.0):
        self.holder = dict(holder or {})
        self.path = str(path)
        self.waited_s = waited_s
        message = f"another gpufleet run holds the lock {self.path}: {describe_holder(self.holder)}"
        if waited_s:
            message += f" (still held after waiting {waited_s:g} s)"
        super().__init__(message)


class RunLock:
    """An exclusive lock on ``path`` for the length of a run; a context manager.

    ``command`` is what the holder's description says it runs (default: this process's command line);
    ``wait_s`` is what ``with RunLock(...)`` passes to :meth:`acquire`.
    """

    def __init__(self, path: str | os.PathLike, wait_s: float = 0.0, command: Optional[str] = None):
        self.path = Path(path)
        self.wait_s = wait_s
        self.command = command
        self.holder: dict = {}
        self._fd: Optional[int] = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def read_holder(self) -> dict:
        """What the lock file says about its holder (``{}`` when empty, missing or not ours)."""
        return _read_holder(self.path)

    def acquire(self, wait_s: float = 0.0, poll_s: float = POLL_S) -> "RunLock":
        """Take the lock: at once (``wait_s`` 0), or within ``wait_s`` seconds; else raise :class:`LockHeld`."""
        if self._fd is not None:
            raise RuntimeError(f"{self.path}: this RunLock is already held")
        if wait_s < 0:
            raise ValueError(f"wait_s must be >= 0, got {wait_s}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        start = time.monotonic()
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError as e:
                    if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                        raise
                waited = time.monotonic() - start
                if waited >= wait_s:
                    raise LockHeld(self._holder_with_retry(), self.path, wait_s)
                time.sleep(min(poll_s, wait_s - waited))
            self.holder = {"pid": os.getpid(), "host": socket.gethostname(),
                           "command": self.command if self.command is not None else _command_line(),
                           "since": _now_iso()}
            data = (json.dumps(self.holder, sort_keys=True) + "\n").encode()
            os.ftruncate(fd, 0)
            os.pwrite(fd, data, 0)
            os.fsync(fd)
        except BaseException:
            os.close(fd)  # closing drops the flock if it was taken
            raise
        self._fd = fd
        return self

    def _holder_with_retry(self, tries: int = 5, pause_s: float = 0.05) -> dict:
        # the holder empties the file and writes its description right after taking the lock: a
        # reader arriving in between sees nothing or half of it for a moment
        for _ in range(tries - 1):
            holder = self.read_holder()
            if holder:
                return holder
            time.sleep(pause_s)
        return self.read_holder()

    def release(self) -> None:
        """Empty the lock file and drop the lock (idempotent)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            os.ftruncate(fd, 0)
        except OSError:  # the description is a courtesy: the lock goes with the close below
            pass
        finally:
            os.close(fd)

    def __enter__(self) -> "RunLock":
        return self.acquire(self.wait_s)

    def __exit__(self, *exc) -> None:
        self.release()


def _read_holder(path: Path) -> dict:
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}
