"""Glue shared by the invoke tasks: flags -> inventory selection and SSH options.

Usage problems (bad inventory, a pattern that selects nothing, a bad flag) become
``invoke.exceptions.Exit`` with code 2 and a message naming what is wrong.
"""

from __future__ import annotations

import logging
import sys

from invoke.exceptions import Exit  # noqa: F401 - re-exported for tasks.py

from fleet.inventory import Host, InventoryError, PatternError, load_inventory, resolve_path
from fleet.transport import SshOptions

USAGE = 2

HELP_COMMON = {
    "hosts": "host pattern: group or host names, globs, comma-separated, '!name' excludes (default: all)",
    "inventory": "inventory file (default: $GPUFLEET_INVENTORY, gpufleet.inventory in invoke.yaml, else inventory/hosts.yaml)",
    "forks": "how many hosts to work on at once (default 32)",
    "timeout": "seconds a host's command may run before it is cut off",
    "connect_timeout": "seconds to wait for a host's TCP connect, SSH banner and authentication (default 10)",
    "accept_new_host_keys": "trust and record unknown host keys on first use (a changed key is still refused)",
}


HELP_WHEELHOUSE = ("air-gapped nodes: a directory of wheels (e.g. torch, torchvision) uploaded with verify and "
                   "installed there with pip --no-index --no-deps")


def wheelhouse(path: str | None):
    """``--wheelhouse DIR`` as a :class:`fleet.push.Wheelhouse` (None when not given)."""
    if not path:
        return None
    from fleet.push import Wheelhouse

    try:
        return Wheelhouse.from_dir(path)
    except (OSError, ValueError) as e:
        raise usage_error(f"--wheelhouse: {e}") from None


def usage_error(message: str) -> Exit:
    return Exit(f"gpufleet: {message}", code=USAGE)


def select(c, hosts: str | None, inventory: str | None) -> tuple[str, list[Host]]:
    configured = (c.config.get("gpufleet") or {}).get("inventory") if hasattr(c, "config") else None
    path = resolve_path(inventory, configured)
    try:
        inv = load_inventory(path)
        return path, inv.select(hosts or "all")
    except InventoryError as e:
        raise usage_error(f"inventory error: {e}") from None
    except PatternError as e:
        raise usage_error(f"{e} (inventory {path})") from None


def ssh_options(forks: int, timeout: float, connect_timeout: float, accept_new_host_keys: bool) -> SshOptions:
    for name, v in (("--forks", forks), ("--timeout", timeout), ("--connect-timeout", connect_timeout)):
        try:
            ok = float(v) > 0
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise usage_error(f"{name} must be a positive number, got {v!r}")
    return SshOptions(
        forks=int(forks),
        command_timeout=float(timeout),
        connect_timeout=float(connect_timeout),
        accept_new_host_keys=bool(accept_new_host_keys),
    )


def quiet_libraries() -> None:
    """paramiko logs handshake tracebacks for hosts we already report as unreachable."""
    logging.getLogger("paramiko").addHandler(logging.NullHandler())
    logging.getLogger("paramiko").propagate = False


def echo(text: str = "") -> None:
    print(text, flush=True)


def note(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def finish(table: str, report: dict, json_path: str | None, code: int) -> None:
    """Print the table, write ``--json`` atomically, and exit with ``code`` (0 returns normally)."""
    from fleet.jsonio import write_json_atomic

    echo(table)
    if json_path:
        write_json_atomic(json_path, report)
        note(f"report written to {json_path}")
    if code:
        raise Exit(code=code)
