"""Facts ``os-release`` (``/etc/os-release``), ``uname`` (``uname -r``) and ``boot-id`` (the kernel's random id of
the running boot: the history tells "since the last boot" with it)."""

from __future__ import annotations

import re
import shlex

from fleet.audit.facts.fact import Fact
from fleet.framing import Section


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


def _os_release(s: Section) -> dict:
    return {"os": parse_os_release(s.stdout)} if s.rc == 0 else {}


def _uname(s: Section) -> dict:
    return {"kernel": parse_uname(s.stdout)} if s.rc == 0 else {}


OS_RELEASE = Fact("os-release", """\
if [ -r /etc/os-release ]; then cat /etc/os-release
elif [ -r /usr/lib/os-release ]; then cat /usr/lib/os-release
else echo "no os-release file" >&2; return 1
fi""", _os_release)

UNAME = Fact("uname", "uname -r", _uname)


_BOOT_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def parse_boot_id(output: str) -> str | None:
    """/proc/sys/kernel/random/boot_id: a UUID, new at every boot; None for anything else."""
    value = output.strip().lower()
    return value if _BOOT_ID.match(value) else None


def _boot_id(s: Section) -> dict:
    return {"boot_id": parse_boot_id(s.stdout)} if s.rc == 0 else {}


BOOT_ID = Fact("boot-id", "cat /proc/sys/kernel/random/boot_id", _boot_id)
