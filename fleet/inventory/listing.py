"""``gpufleet hosts``: the selected hosts as a table and as the ``gpufleet.hosts/1`` document (secrets masked).

Masked (shown as ``********``): the password variables (``ansible_password``, ``ansible_ssh_pass``, the become
passwords), vault-encrypted values, and every variable whose name contains ``pass``, ``secret``, ``token`` or
``key`` unless it names a file or path (``..._file``, ``..._path``, ``..._dir``: ``ansible_ssh_private_key_file``
is shown).  Masking is recursive into mappings.
"""

from __future__ import annotations

from typing import Any

from fleet.inventory.model import SECRET_VARS, Host, Vaulted
from fleet.outcome import plural

SCHEMA = "gpufleet.hosts/1"
MASK = "********"
_SECRET_WORDS = ("pass", "secret", "token", "key")
_PATH_SUFFIXES = ("_file", "_path", "_dir")


def is_secret_name(name: Any) -> bool:
    n = str(name).lower()
    if n in SECRET_VARS:
        return True
    return any(w in n for w in _SECRET_WORDS) and not n.endswith(_PATH_SUFFIXES)


def mask(value: Any, name: Any = "") -> Any:
    if isinstance(value, Vaulted) or (is_secret_name(name) and value not in (None, "")):
        return MASK
    if isinstance(value, dict):
        return {str(k): mask(v, k) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [mask(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def hosts_document(sources: list[str], pattern: str, hosts: list[Host]) -> dict:
    return {
        "schema": SCHEMA,
        "inventory": list(sources),
        "pattern": pattern,
        "hosts": {
            h.name: {
                "address": h.address,
                "port": h.port,
                "user": h.user,
                "groups": sorted(g for g in h.groups if g != "all"),
                "vars": {str(k): mask(v, k) for k, v in sorted(h.vars.items(), key=lambda kv: str(kv[0]))},
                **({"problem": h.problem} if h.problem else {}),
            }
            for h in hosts
        },
    }


def render_hosts(hosts: list[Host]) -> str:
    """One line per host: name, address, port, user, groups (and what gpufleet cannot honour)."""
    rows = [("HOST", "ADDRESS", "PORT", "USER", "GROUPS")]
    for h in hosts:
        rows.append((h.name, h.address, "-" if h.port is None else str(h.port), h.user or "-",
                     ",".join(sorted(g for g in h.groups if g != "all")) or "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r[:4], widths)) + "  " + r[4] for r in rows]
    problems = [f"{h.name}: cannot be used: {h.problem}" for h in hosts if h.problem]
    summary = plural(len(hosts), "host") + (f", {len(problems)} that gpufleet cannot use" if problems else "")
    return "\n".join([*(line.rstrip() for line in lines), *problems, summary])
