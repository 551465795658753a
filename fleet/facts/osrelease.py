"""``/etc/os-release`` and ``uname -r``."""

from __future__ import annotations

import shlex


def parse_os_release(output: str) -> dict:
    """KEY=value lines (values possibly shell-quoted) -> {"id", "version_id", "pretty_name", ...} lowercased keys."""
    info = {}
    for line in output.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, raw = line.partition("=")
        try:
            parts = shlex.split(raw)
            value = parts[0] if parts else ""
        except ValueError:
            value = raw.strip("\"'")
        info[key.strip().lower()] = value
    return info


def parse_uname(output: str) -> str | None:
    value = output.strip().splitlines()
    return value[0].strip() if value else None
