"""The controller's own files: written atomically (a reader never sees a half-written report), with the mode
the umask gives (an ops group can read the reports and the page), and asked beforehand whether they can be
written at all.  Files that hold secrets are written ``private`` (0600) and say so where they are documented."""

from __future__ import annotations

import errno
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Optional


def umask() -> int:
    """The process's umask, read without changing it (``/proc/self/status``; else set and restored at once)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    current = os.umask(0o022)
    os.umask(current)
    return current


def write_bytes_atomic(path: str | os.PathLike, data: bytes, private: bool = False) -> Path:
    """Write ``data`` to a temporary file beside ``path``, fsync it, then rename it over ``path``.  The file's mode
    is what the umask gives a new file (0644 under umask 022), or 0600 when ``private``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    done = False
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), 0o600 if private else 0o666 & ~umask())
            os.fsync(f.fileno())
        os.replace(tmp, path)
        done = True
    finally:
        if not done:
            os.unlink(tmp)
    return path


def write_text_atomic(path: str | os.PathLike, text: str, private: bool = False) -> Path:
    return write_bytes_atomic(path, text.encode(), private)


def write_json_atomic(path: str | os.PathLike, data: Any, private: bool = False) -> Path:
    return write_text_atomic(path, json.dumps(data, indent=2, default=str) + "\n", private)


def unwritable(path: str | os.PathLike) -> Optional[str]:
    """Why a file at ``path`` could not be written (its nearest existing directory, or the file itself where it
    exists, is read-only or not writable), in the kernel's words; None when it can be."""
    target = Path(path)
    if not target.exists():
        target = target.parent
        while not target.exists() and target != target.parent:
            target = target.parent
    try:
        if os.statvfs(target).f_flag & os.ST_RDONLY:
            return os.strerror(errno.EROFS)
    except OSError as e:
        return e.strerror or str(e)
    mode = os.W_OK | (os.X_OK if target.is_dir() else 0)
    return None if os.access(target, mode) else os.strerror(errno.EACCES)
