"""What the tasks share: flags to typed options, host selection, default paths, and usage errors.

A usage problem (a bad inventory, a pattern that selects nothing, a flag that is
not a number, an output path that is a file) is an :class:`invoke.exceptions.Exit`
with :attr:`fleet.outcome.ExitCode.USAGE` (2) and one line naming what is wrong:
no traceback, and no host contacted.

Default paths do not depend on where you stand: the default inventory and the
reports directory are the project's (the directory holding ``tasks.py`` and
``invoke.yaml``); a relative path set in ``invoke.yaml`` is taken relative to
the project too.  A path given on the command line or in ``$GPUFLEET_INVENTORY``
is the user's own, relative to the current directory.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from contextlib import contextmanager
from typing import Iterator, Optional

from invoke.exceptions import Exit

from fleet.inventory import INVENTORY_ENV, Host, InventoryError, PatternError, load_inventory, split_sources
from fleet.outcome import ExitCode
from fleet.transport import SshOptions

PROJECT = Path(__file__).resolve().parents[1]  # where tasks.py, invoke.yaml, inventory/ and reports/ live
DEFAULT_INVENTORY = "inventory/hosts.yaml"
DEFAULT_REPORTS = "reports"
HISTORY_ENV = "GPUFLEET_HISTORY"

# Every task default in one place; invoke.yaml's `gpufleet:` section overrides them (e.g. `gpufleet: {forks: 64}`),
# a flag overrides both.  Per-task timeouts: `gpufleet: {timeout: {verify: 3600}}`.
DEFAULTS = {
    "forks": 32,
    "connect_timeout": 10,
    "timeout": {"audit": 120, "push": 600, "verify": 1800, "provision": 900},
}

HELP_COMMON = {
    "hosts": "Ansible host pattern: group or host names, globs, ~regex, group[0:2], comma-separated, '!name' "
             "excludes, '&group' intersects (default: all)",
    "inventory": "inventory: YAML, INI or JSON file, directory, or executable script; several separated by commas "
                 "(default: $GPUFLEET_INVENTORY, gpufleet.inventory in invoke.yaml, else the project's "
                 "inventory/hosts.yaml)",
    "forks": "how many hosts to work on at once (default 32)",
    "timeout": "seconds a host's work may run before it is cut off (audit 120, push 600, verify 1800, provision 900)",
    "connect_timeout": "seconds to wait for a host's TCP connect, SSH banner and authentication (default 10)",
    "accept_new_host_keys": "trust and record unknown host keys on first use (a changed key is still refused)",
}

HELP_CRON = {
    "wait_lock": "seconds to wait for another run holding this reports directory's lock (default: fail at once, "
                 "exit 2, naming the holder)",
    "keep_runs": "after the run, keep only the newest N run directories (the current one counts)",
    "keep_days": "after the run, remove run directories older than D days",
}

HELP_HISTORY = {
    "history": "the history database every run is recorded in (default: $GPUFLEET_HISTORY, gpufleet.history in "
               "invoke.yaml, else the project's reports/history.sqlite)",
    "no_history": "do not record this run in the history database",
}

HELP_NOTIFY = {
    "notify": "run this shell command with a JSON of what changed (gpufleet.notify/1) on its stdin, only when a "
              "host's status changed since its previous run (or it has a new critical Xid), and as a reminder "
              "for a host still failing after --remind-days; needs the history",
    "remind_days": "with --notify: remind of a host still failing after this many days (default 7)",
}

HELP_LOCK = {
    "wait_lock": "seconds to wait for another run of this kind holding the history database's lock (default: "
                 "fail at once, exit 2, naming the holder)",
}

HELP_OUTPUTS = {
    "prom": "also write a Prometheus textfile (for node_exporter's textfile collector) to this path, atomically",
    "junit": "also write JUnit XML (a test suite per host, a test case per check) to this path",
}

HELP_WHEELHOUSE = ("air-gapped nodes: a directory of wheels (e.g. torch, torchvision) uploaded with verify and "
                   "installed there with pip --no-index --no-deps")


def usage_error(message: str) -> Exit:
    return Exit(f"gpufleet: {message}", code=int(ExitCode.USAGE))


def _configured(c, key: str) -> Optional[str]:
    config = getattr(c, "config", None)
    section = (config.get("gpufleet") if config is not None else None) or {}
    value = section.get(key)
    return str(value) if value not in (None, "") else None


def project_path(value: str) -> Path:
    """A path from the project's configuration: absolute as given, else relative to the project."""
    path = Path(os.path.expanduser(value))
    return path if path.is_absolute() else PROJECT / path


def inventory_sources(c, explicit: Optional[str]) -> tuple[list[Path], str]:
    """``(sources, where they came from)``: ``--inventory`` beats ``$GPUFLEET_INVENTORY`` beats
    ``gpufleet.inventory`` in invoke.yaml beats the project's default.  Each may be several sources separated by
    commas (layered in order, as several ``ansible -i``)."""
    if explicit:
        return [Path(os.path.expanduser(p)).absolute() for p in split_sources(explicit)], "--inventory"
    if os.environ.get(INVENTORY_ENV):
        return ([Path(os.path.expanduser(p)).absolute() for p in split_sources(os.environ[INVENTORY_ENV])],
                f"${INVENTORY_ENV}")
    configured = _configured(c, "inventory")
    if configured:
        return [project_path(p) for p in split_sources(configured)], "gpufleet.inventory in invoke.yaml"
    return [PROJECT / DEFAULT_INVENTORY], "the default"


def reports_dir(c, explicit: Optional[str]) -> Path:
    """Where run directories go: ``--out``, else ``gpufleet.reports`` in invoke.yaml, else the project's reports/.

    Refused (usage error) when it exists and is not a directory."""
    if explicit:
        path = Path(os.path.expanduser(explicit)).absolute()
    else:
        configured = _configured(c, "reports")
        path = project_path(configured) if configured else PROJECT / DEFAULT_REPORTS
    if path.exists() and not path.is_dir():
        raise usage_error(f"--out {path}: exists and is not a directory")
    return path


def select(c, hosts: Optional[str], inventory: Optional[str]) -> tuple[str, list[Host]]:
    """``(inventory sources joined with commas, selected hosts)``; a usage error names the file and where its
    path came from.  Hosts gpufleet cannot honour (:attr:`Host.problem`) are selected: each task reports them."""
    paths, origin = inventory_sources(c, inventory)
    path = ",".join(str(p) for p in paths)
    try:
        inv = load_inventory(paths)
        return path, inv.select(hosts or "all")
    except InventoryError as e:
        raise usage_error(f"inventory error: {e} (inventory from {origin})") from None
    except PatternError as e:
        raise usage_error(f"{e} (inventory {path})") from None


def positive_number(name: str, value, integer: bool = False) -> float:
    """``value`` as a positive number, or a usage error naming the flag."""
    try:
        number = float(value)
        ok = number > 0 and (not integer or number == int(number))
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise usage_error(f"{name} must be a positive {'whole ' if integer else ''}number, got {value!r}")
    return number


def fraction(name: str, value, default: float) -> float:
    """A flag that is a fraction in (0, 1]; ``default`` when not given; a usage error naming the flag otherwise."""
    if value is None:
        return default
    v = positive_number(name, value)
    if v > 1:
        raise usage_error(f"{name} must be a fraction between 0 and 1, got {value}")
    return v


def setting(c, name: str, value, task: Optional[str] = None):
    """A flag's value: as given, else invoke.yaml's ``gpufleet.<name>``, else :data:`DEFAULTS`."""
    if value is not None:
        return value
    config = getattr(c, "config", None)
    section = (config.get("gpufleet") if config is not None else None) or {}
    for source in (section, DEFAULTS):
        found = source.get(name)
        if isinstance(found, dict) or hasattr(found, "get"):
            found = found.get(task) if task else None
        if found is not None:
            return found
    raise KeyError(f"no default for {name}")


def ssh_options(c, task: str, forks, timeout, connect_timeout, accept_new_host_keys: bool) -> SshOptions:
    """The SSH options from the common flags (each a usage error when not a positive number)."""
    return SshOptions(
        forks=int(positive_number("--forks", setting(c, "forks", forks), integer=True)),
        command_timeout=positive_number("--timeout", setting(c, "timeout", timeout, task)),
        connect_timeout=positive_number("--connect-timeout", setting(c, "connect_timeout", connect_timeout)),
        accept_new_host_keys=bool(accept_new_host_keys),
    )


def choice(name: str, value, choices: tuple) -> str:
    if str(value) not in choices:
        raise usage_error(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return str(value)


def verify_checks(text) -> tuple:
    """``--checks``: ``all`` (returns ``()``) or a comma-separated list of verify's stages, checked here,
    before any host is contacted."""
    from verify.cli import STAGES  # torch-free: the stage names only

    names = [n.strip() for n in str(text).split(",") if n.strip()]
    if names == ["all"]:
        return ()
    unknown = [n for n in names if n not in STAGES]
    if unknown or not names:
        raise usage_error(f"--checks: unknown stage(s) {', '.join(unknown) or '(none given)'}; "
                          f"choose from all, {', '.join(STAGES)}")
    return tuple(s for s in STAGES if s in names)


def wheelhouse(path: Optional[str]):
    """``--wheelhouse DIR`` as a :class:`fleet.push.Wheelhouse` (None when not given)."""
    if not path:
        return None
    from fleet.push import Wheelhouse

    try:
        return Wheelhouse.from_dir(path)
    except (OSError, ValueError) as e:
        raise usage_error(f"--wheelhouse: {e}") from None


def quiet_libraries() -> None:
    """paramiko logs handshake tracebacks for hosts we already report as unreachable."""
    logging.getLogger("paramiko").addHandler(logging.NullHandler())
    logging.getLogger("paramiko").propagate = False


def echo(text: str = "") -> None:
    print(text, flush=True)


def note(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def finish(table: str, report: dict, json_path: Optional[str], code: int) -> None:
    """Print the table, write ``--json`` atomically, and exit with ``code`` (0 returns normally)."""
    from fleet.jsonio import write_json_atomic

    echo(table)
    if json_path:
        write_json_atomic(json_path, report)
        note(f"report written to {json_path}")
    if code:
        raise Exit(code=int(code))


def retention(keep_runs, keep_days) -> tuple:
    """``(keep_runs, keep_days)`` from the flags (None when not given); a usage error when malformed."""
    runs = None
    if keep_runs is not None:
        try:
            runs = int(str(keep_runs))
        except ValueError:
            runs = -1
        if runs < 0:
            raise usage_error(f"--keep-runs must be a whole number >= 0, got {keep_runs!r}")
    days = positive_number("--keep-days", keep_days) if keep_days is not None else None
    return runs, days


@contextmanager
def run_lock(directory: Path, wait_lock) -> Iterator[None]:
    """Hold ``directory``'s run lock for the block; another run holding it is a usage error (exit 2) naming it."""
    from fleet.runlock import lock_path_for

    with _held(lock_path_for(directory), wait_lock):
        yield


@contextmanager
def _held(path: Path, wait_lock) -> Iterator[None]:
    """Hold the lock file ``path`` for the block (``--wait-lock`` seconds of waiting); held by another run: exit 2."""
    from fleet.runlock import LockHeld, RunLock

    wait = 0.0 if wait_lock is None else positive_number("--wait-lock", wait_lock)
    lock = RunLock(path, wait_s=wait)
    try:
        lock.acquire(wait)
    except LockHeld as e:
        raise usage_error(str(e)) from None
    try:
        yield
    finally:
        lock.release()


def history_path(c, explicit: Optional[str], no_history: bool = False) -> Optional[Path]:
    """The history database (None with ``--no-history``): ``--history``, else ``$GPUFLEET_HISTORY``, else
    ``gpufleet.history`` in invoke.yaml (relative to the project), else the project's ``reports/history.sqlite``."""
    if no_history:
        return None
    if explicit or os.environ.get(HISTORY_ENV):
        path = Path(os.path.expanduser(explicit or os.environ[HISTORY_ENV])).absolute()
    else:
        configured = _configured(c, "history")
        path = project_path(configured) if configured else PROJECT / DEFAULT_REPORTS / "history.sqlite"
    if path.exists() and not path.is_file():
        raise usage_error(f"--history {path}: exists and is not a file")
    return path


def record_history(path: Optional[Path], kind: str, *args) -> Optional[str]:
    """Record the finished run in the history database (a failure to record is said, never fatal); its run id."""
    from fleet.history import record

    run_id, said = record(path, kind, *args)
    if said:
        note(said)
    return run_id


@contextmanager
def history_lock(db: Optional[Path], kind: str, wait_lock) -> Iterator[None]:
    """One audit (or provision) at a time per history database: ``<db>.<kind>.lock`` (nothing without a history)."""
    if db is None:
        yield
        return
    with _held(db.with_name(f"{db.name}.{kind}.lock"), wait_lock):
        yield


def notify_settings(notify: Optional[str], remind_days, db: Optional[Path]) -> tuple:
    """``(command or None, remind days)`` from --notify / --remind-days; a usage error without a history."""
    if notify is not None and not str(notify).strip():
        raise usage_error("--notify needs a command")
    if notify and db is None:
        raise usage_error("--notify needs the history (it alerts on what changed since the previous run): "
                          "drop --no-history")
    from fleet.history.alerts import DEFAULT_REMIND_DAYS

    days = DEFAULT_REMIND_DAYS if remind_days is None else positive_number("--remind-days", remind_days)
    return (str(notify) if notify else None), days


def notify(command: Optional[str], db: Optional[Path], kind: str, run_id: Optional[str], subjects: tuple,
           states: dict, remind_days: float, source: Optional[str], exit_code: Optional[int]) -> None:
    """--notify: alert on what changed (see fleet.history.alerts), saying what happened on stderr."""
    if not command:
        return
    from fleet.history.alerts import notify as send

    statuses, new_xids, details = subjects
    note(send(db, command, kind, run_id, statuses, states, new_xids, details, remind_days, source, exit_code))


def _inventory_hosts(c, inventory: Optional[str]) -> dict:
    """{name: Host} of the inventory, or {} when there is none (these commands can run without one)."""
    sources, _ = inventory_sources(c, inventory)
    if not inventory and not any(Path(s).exists() for s in sources):
        return {}
    try:
        return {h.name: h for h in load_inventory([str(s) for s in sources]).select("all")}
    except (InventoryError, PatternError, OSError) as e:
        raise usage_error(str(e)) from None


def slurm_node_names(c, inventory: Optional[str]) -> dict:
    """{inventory host: its Slurm node}: ``gpufleet_slurm_node``, else the host's own name."""
    from fleet.slurm.nodes import node_of

    return {name: node_of(name, h.vars) for name, h in _inventory_hosts(c, inventory).items()}


@contextmanager
def slurm_client(c, slurm_host: Optional[str], inventory: Optional[str]) -> Iterator:
    """A :class:`fleet.slurm.client.SlurmClient` running here, or over SSH on ``slurm_host`` (an inventory host,
    with its connection variables, or an ssh name) for the block."""
    from fleet.outcome import HostError
    from fleet.slurm.client import SlurmClient, SlurmError, ssh_runner
    from fleet.transport import connect

    if not slurm_host:
        yield SlurmClient()
        return
    host = _inventory_hosts(c, inventory).get(slurm_host) or Host(slurm_host)
    try:
        transport = connect(host, ssh_options(c, "verify", None, None, None, False))
    except HostError as e:
        raise SlurmError(f"--slurm-host {slurm_host}: {e}") from None
    try:
        yield SlurmClient(ssh_runner(transport))
    finally:
        transport.close()


def slurm_settings(via: str, shared_dir: Optional[str], partition, qos, account, slurm_args, wait: bool,
                   multinode: bool):
    """``--via slurm``'s settings (a :class:`fleet.slurm.jobs.SlurmSettings`), None for ``--via ssh``; usage errors
    for what cannot work."""
    import shlex

    from fleet.slurm.jobs import SlurmSettings

    if via != "slurm":
        extra = [f for f, v in (("--shared-dir", shared_dir), ("--partition", partition), ("--qos", qos),
                                ("--account", account), ("--slurm-args", slurm_args), ("--wait", wait)) if v]
        if extra:
            raise usage_error(f"{extra[0]} needs --via slurm")
        return None
    if not shared_dir or not str(shared_dir).startswith("/"):
        raise usage_error("--via slurm needs --shared-dir: an absolute path on the cluster's shared filesystem, "
                          "the same on every node (the jobs write their reports there)")
    if multinode:
        raise usage_error("--multinode --via slurm is not supported yet: run --multinode over SSH")
    try:
        extra_args = tuple(shlex.split(slurm_args)) if slurm_args else ()
    except ValueError as e:
        raise usage_error(f"--slurm-args: {e}") from None
    return SlurmSettings(str(shared_dir), partition or None, qos or None, account or None, extra_args, bool(wait))


def pairwise_settings(pairwise: bool, multinode: bool, via_slurm: bool, rounds, pair_timeout, pair_floor,
                      topology: str):
    """``--pairwise``'s settings (a :class:`fleet.runs.pairwise_run.PairwiseSettings`), None without it."""
    given = [f for f, v in (("--rounds", rounds), ("--pair-timeout", pair_timeout), ("--pair-floor", pair_floor))
             if v is not None]
    if not pairwise:
        if given:
            raise usage_error(f"{given[0]} needs --pairwise")
        return None
    if not multinode:
        raise usage_error("--pairwise needs --multinode (it isolates the bad host or link of a multi-node run)")
    if via_slurm:
        raise usage_error("--pairwise --via slurm is not supported yet: run it over SSH")
    from fleet.runs.pairwise_run import PairwiseSettings

    return PairwiseSettings(
        rounds=1 if rounds is None else int(positive_number("--rounds", rounds, integer=True)),
        pair_timeout=120.0 if pair_timeout is None else positive_number("--pair-timeout", pair_timeout),
        floor=fraction("--pair-floor", pair_floor, 0.7),
        topology=choice("--topology", topology, ("random", "rack", "cross")))


def sustained_timeout(settings, explicit: bool) -> float:
    """verify's per-host timeout: as given; else, for nightly/acceptance or DCGM, room for the sustained stages
    (their duration, the short stages and DCGM's level's time limit).  A --duration longer
    than an explicit --timeout is a usage error."""
    from verify.dcgm import SUGGESTED_TIMEOUT_S
    from verify.profiles import DURATION

    budget = settings.duration if settings.duration is not None else DURATION.get(settings.profile, 0.0)
    dcgm = SUGGESTED_TIMEOUT_S.get(settings.dcgm_level, 0.0) if settings.dcgm_level else 0.0
    need = budget + dcgm + (600.0 if budget or dcgm else 0.0)
    if settings.duration is not None and settings.profile not in DURATION:
        raise usage_error(f"--duration is for --profile nightly or acceptance, not {settings.profile}")
    if explicit:
        if need > settings.timeout:
            raise usage_error(f"--timeout {settings.timeout:g} s is shorter than the run needs (about {need:g} s: "
                              f"the sustained stages, the short ones and DCGM)")
        return settings.timeout
    return max(settings.timeout, need)
