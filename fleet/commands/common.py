"""What every command does at its edges: select hosts, hold a lock, say a line, record the run, alert.

Each function here is one side effect with one-line failures: a problem with the controller's own files (a
reports directory or history that cannot be written, a lock held by another run) is a usage error (exit 2)
raised before any host is contacted; a history that cannot be written *after* the run is a note, never a
failure of the run.
"""

from __future__ import annotations

import dataclasses
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

from fleet.config import Config
from fleet.inventory import Host, InventoryError, PatternError, load_inventory
from fleet.inventory.connection import KEY_FILE_VARS, USER_VARS, setting
from fleet.options import usage_error


def quiet_libraries() -> None:
    """paramiko logs handshake tracebacks for hosts we already report as unreachable."""
    import logging

    logging.getLogger("paramiko").addHandler(logging.NullHandler())
    logging.getLogger("paramiko").propagate = False


def echo(text: str = "") -> None:
    print(text, flush=True)


def note(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def write_json(path: Optional[Path], document: dict) -> None:
    """``--json``: the command's document, written atomically (the path was checked before the run)."""
    if path is None:
        return
    from fleet.jsonio import write_json_atomic

    try:
        write_json_atomic(path, document)
    except OSError as e:
        raise usage_error(f"--json {path}: {e.strerror or e}") from None
    note(f"report written to {path}")


# -- hosts ----------------------------------------------------------------------------------------------
def select(config: Config, pattern: Optional[str], inventory: tuple = (), user: Optional[str] = None
           ) -> tuple[str, list[Host]]:
    """``(inventory sources joined with commas, selected hosts)``; a usage error names the file and where its
    path came from.  Hosts gpufleet cannot honour (:attr:`Host.problem`) are selected: each command reports
    them.  ``-u`` and Ansible's remote_user / private_key_file fill in what a host's inventory leaves unset."""
    paths, origin = config.inventory_sources(inventory)
    path = ",".join(str(p) for p in paths)
    try:
        hosts = load_inventory(paths).select(pattern or "all")
    except InventoryError as e:
        raise usage_error(f"inventory error: {e} (inventory from {origin})") from None
    except PatternError as e:
        raise usage_error(f"{e} (inventory {path})") from None
    defaults = config.host_defaults(user)
    return path, [with_defaults(h, defaults) for h in hosts]


def ready_to_connect(hosts: list[Host]) -> None:
    """Before any host is contacted: a key file the inventory names that cannot be read is a configuration error
    (one line per file, naming it and the hosts; exit 2); an inventory that turns host key checking off is said
    once (keys are verified all the same)."""
    from fleet.inventory.connection import host_key_warning, preflight

    cache: dict = {}
    errors = preflight(hosts, cache)
    if errors:
        for line in errors[:-1]:
            note(f"gpufleet: {line}")
        raise usage_error(errors[-1])
    warning = host_key_warning(hosts, cache)
    if warning:
        note(f"warning: {warning}")


def inventory_origin(config: Config, inventory: tuple = ()) -> str:
    """Where the inventory came from, in words (``gpufleet hosts`` says it)."""
    return config.inventory_sources(inventory)[1]


def with_defaults(host: Host, defaults: dict) -> Host:
    """``host`` with ``defaults`` (``ansible_user``, ``ansible_private_key_file``) where it sets no such value
    under any of Ansible's names for it."""
    add = {}
    if "ansible_user" in defaults and setting(host.vars, USER_VARS) is None:
        add["ansible_user"] = defaults["ansible_user"]
    if "ansible_private_key_file" in defaults and setting(host.vars, KEY_FILE_VARS) is None:
        add["ansible_private_key_file"] = defaults["ansible_private_key_file"]
    return dataclasses.replace(host, vars={**host.vars, **add}) if add else host


def history_names(config: Config, pattern: Optional[str], inventory: tuple = ()) -> Optional[list]:
    """``history --hosts``: the names a pattern selects from the inventory (groups, ranges, exclusions), or, where
    the inventory cannot resolve it (a host that left the inventory, no inventory at all), the pattern's terms
    as host names and shell globs; None for every host."""
    if not pattern:
        return None
    terms = [t.strip() for t in str(pattern).split(",") if t.strip()]
    paths, _ = config.inventory_sources(inventory)
    if inventory or any(Path(p).exists() for p in paths):
        try:
            return [h.name for h in load_inventory(paths).select(pattern)]
        except PatternError:
            pass  # not an inventory pattern: names and globs of the history
        except InventoryError as e:
            raise usage_error(f"inventory error: {e}") from None
    return terms


def inventory_hosts(config: Config, inventory: tuple = ()) -> dict:
    """{name: Host} of the inventory, or {} when there is none (slurm-sync and --slurm-host can run without)."""
    sources, _ = config.inventory_sources(inventory)
    if not inventory and not any(Path(s).exists() for s in sources):
        return {}
    try:
        return {h.name: h for h in load_inventory([str(s) for s in sources]).select("all")}
    except (InventoryError, PatternError, OSError) as e:
        raise usage_error(str(e)) from None


# -- locks ----------------------------------------------------------------------------------------------
@contextmanager
def held(path: Path, wait_s: float) -> Iterator[None]:
    """Hold the lock file ``path`` for the block.  Held by another run, or not creatable (a read-only or
    missing directory): a usage error, one line naming the path and the cause."""
    from fleet.runlock import LockHeld, RunLock

    lock = RunLock(path, wait_s=wait_s)
    try:
        lock.acquire(wait_s)
    except LockHeld as e:
        raise usage_error(str(e)) from None
    except OSError as e:
        raise usage_error(f"cannot take the lock {path}: {e.strerror or e}") from None
    try:
        yield
    finally:
        lock.release()


@contextmanager
def run_lock(directory: Path, wait_s: float) -> Iterator[None]:
    """One run per reports directory (made here when missing)."""
    from fleet.runlock import lock_path_for

    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise usage_error(f"reports directory {directory}: {e.strerror or e}") from None
    with held(lock_path_for(directory), wait_s):
        yield


@contextmanager
def history_lock(db: Optional[Path], kind: str, wait_s: float) -> Iterator[None]:
    """One audit (or provision) at a time per history database: ``<db>.<kind>.lock`` (nothing without a
    history).  A history whose directory cannot be written is a usage error before any host is contacted."""
    if db is None:
        yield
        return
    check_history(db)
    try:
        db.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise usage_error(f"history {db}: {e.strerror or e}") from None
    with held(db.with_name(f"{db.name}.{kind}.lock"), wait_s):
        yield


def check_history(db: Optional[Path]) -> None:
    """The history can be written (its directory, and the file where it exists): a usage error otherwise, before
    any host is contacted (verify takes no history lock, so it asks here)."""
    from fleet.jsonio import unwritable

    why = unwritable(db) if db is not None else None
    if why:
        raise usage_error(f"history {db}: cannot be written ({why})")


def no_host_authenticated(document: dict) -> Optional[str]:
    """One line when every host of a run failed authentication (the key or user is wrong for the whole fleet: a
    configuration error, exit 2); None when at least one host got in, or none was tried.  The first host's
    message names the key offered."""
    hosts = document.get("hosts") or {}
    states = [h.get("state") for h in hosts.values() if isinstance(h, dict)]
    if not states or any(s != "auth_failed" for s in states):
        return None
    first_name, first = next(iter(hosts.items()))
    n = len(states)
    return (f"authentication failed on {'the only host' if n == 1 else f'all {n} hosts'}: {first_name}: "
            f"{(first.get('message') or '').splitlines()[0] if first.get('message') else 'auth_failed'}")


def with_config_errors(outcome):
    """The command's outcome, with exit 2 and its line when no host authenticated."""
    from fleet.outcome import ExitCode

    why = no_host_authenticated(outcome.document)
    if why:
        note(f"gpufleet: {why}")
        outcome.exit_code = int(ExitCode.USAGE)
    return outcome


# -- after the run --------------------------------------------------------------------------------------
def record_history(path: Optional[Path], kind: str, *args) -> Optional[str]:
    """Record the finished run in the history database (a failure to record is said, never fatal); its run id."""
    from fleet.history import record

    run_id, said = record(path, kind, *args)
    if said:
        note(said)
    return run_id


def outputs(kind: str, doc: dict, prom, junit, reports=None) -> None:
    """--prom and --junit of a finished run (paths checked before the run; a write that fails now is said)."""
    from fleet.outputs import write_outputs

    try:
        lines = write_outputs(kind, doc, prom, junit, reports=reports)
    except OSError as e:
        lines = [f"an output was not written: {e.filename or ''} {e.strerror or e}".replace("  ", " ")]
    for line in lines:
        note(line)


__all__ = ["echo", "held", "history_lock", "inventory_hosts", "note", "outputs", "record_history", "run_lock",
           "select", "with_defaults", "write_json"]
