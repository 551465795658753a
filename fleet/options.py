"""Flags to typed settings, and nothing else: every flag checked before any host is contacted.

A usage problem (a flag that is not a number, a choice not offered, two flags that cannot go together) is an
:class:`invoke.exceptions.Exit` with :attr:`fleet.outcome.ExitCode.USAGE` (2) and one line naming what is wrong:
no traceback, and no host contacted.  Where a flag is not given, :class:`fleet.config.Config` gives the value
(invoke.yaml, Ansible's configuration, the defaults).
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Optional

from invoke.exceptions import Exit

from fleet.config import Config
from fleet.jsonio import unwritable
from fleet.outcome import ExitCode
from fleet.transport import SshOptions
from verify.contract import STAGES  # torch-free: what the controller may know of verify

HELP_COMMON = {
    "hosts": "Ansible host pattern: group or host names, globs, ~regex, group[0:2], comma-separated, '!name' "
             "excludes, '&group' intersects (default: all); -l/--limit is the same flag",
    "inventory": "inventory: YAML, INI or JSON file, directory, or executable script; repeat -i (or separate with "
                 "commas) to layer several, as Ansible does (default: $GPUFLEET_INVENTORY, gpufleet.inventory in "
                 "invoke.yaml, Ansible's inventory ($ANSIBLE_INVENTORY, ansible.cfg), else the project's "
                 "inventory/hosts.yaml)",
    "forks": "how many hosts to work on at once (default: gpufleet.forks in invoke.yaml, forks in ansible.cfg, "
             "else 32)",
    "user": "SSH user for hosts whose inventory sets none (as Ansible's -u: an inventory's ansible_user wins; "
            "default: remote_user in ansible.cfg, else ~/.ssh/config's or your login name)",
    "timeout": "seconds a host's work may run before it is cut off (audit 120, push 600, verify 1800, provision 900)",
    "connect_timeout": "seconds to wait for a host's TCP connect, SSH banner and authentication (default: "
                       "gpufleet.connect_timeout in invoke.yaml, timeout in ansible.cfg, else 10)",
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
    "notify": "run this shell command with a JSON of what changed (gpufleet.notify/1) on its stdin when a host's "
              "status differs from the one last delivered (or it has a new critical Xid), and as a reminder for a "
              "host still failing after --remind-days; an alert stays due until the command exits 0; needs the "
              "history",
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

HELP_QUIET = "print only the one-line summary (the counts and the exit code), not the table and its findings"

HELP_WHEELHOUSE = ("air-gapped nodes: a directory of wheels (e.g. torch, torchvision) uploaded with verify and "
                   "installed there with pip --no-index --no-deps")

HELP_VERIFY = {
    **HELP_COMMON,
    "profile": "quick (default; about a minute), full (larger sizes, longer sweeps), nightly (quick plus a few "
               "minutes of burn and memory test per GPU) or acceptance (full plus 30 minutes of them)",
    "duration": "nightly/acceptance: seconds of sustained stages per GPU (burn 70 %, memory test 30 %; "
                "default 300 / 1800); --timeout grows to fit",
    "dcgm_level": "also run DCGM's diagnostic `dcgmi diag -r N` (1-4); a node without dcgmi (or whose host engine "
                  "is down) fails: asked for means required; each DCGM test is a check",
    "dcgm_allow_skips": "a test DCGM skipped is not a failure (it is by default)",
    "nproc": "ranks per host: auto (one per GPU; 1 on a host without) or a number",
    "timeout": "seconds verify may run on a host before it is stopped (default 1800)",
    "out": "directory under which the run directory <UTC timestamp>/ is made "
           "(default: gpufleet.reports in invoke.yaml, else the project's reports/)",
    "force": "benchmark GPUs even when other compute processes are using them",
    "multinode": "one torchrun per host joined by c10d rendezvous on the first host: all_reduce across nodes "
                 "(with --via slurm: one job over the nodes, srun starting each node's torchrun)",
    "rdzv_port": "rendezvous port on the first host for --multinode (default 29400)",
    "checks": f"comma-separated verify stages ({', '.join(STAGES)}) or all; checked before any host is contacted; "
              "a stage named here must run: one that cannot fails the node (asked for means required)",
    "wheelhouse": HELP_WHEELHOUSE,
    **HELP_CRON,
    **HELP_OUTPUTS,
    **HELP_HISTORY,
    "via": "ssh (default: torchrun over SSH on each host) or slurm (one job per node through the scheduler, with "
           "--one-job one job for the idle nodes' single-node checks, or with --multinode one job spanning the "
           "nodes; busy nodes are skipped, nodes drained by others left alone)",
    "slurm_host": "with --via slurm: run sbatch/squeue/scontrol/scancel over SSH on this login node "
                  "(an inventory host or an ssh name; default: here)",
    "shared_dir": "with --via slurm: a directory on the cluster's shared filesystem, the same path on every "
                  "node, where the jobs write their reports (required)",
    "partition": "with --via slurm: the jobs' partition",
    "qos": "with --via slurm: the jobs' QoS",
    "account": "with --via slurm: the jobs' account",
    "slurm_args": "with --via slurm: more sbatch options, one string (e.g. '--reservation=gpufleet')",
    "wait": "with --via slurm: queue behind other jobs on busy nodes instead of skipping them",
    "one_job": "with --via slurm: the idle nodes' single-node checks in ONE job (sbatch --nodes=K --nodelist=... "
               "--exclusive --no-kill), one srun task per node: one sbatch for all of them instead of one per "
               "node, and one job for the squeue poll to follow and scontrol to read back. The job starts only "
               "when all its nodes are free at once, so it suits a maintenance window or a reservation "
               "(--slurm-args '--reservation=R'). Each node still gets its own report and its own verdict; busy "
               "and drained nodes are handled as without it (not with --multinode or --pairwise)",
    "recheck_via": "with --via slurm: how a node gpufleet drained is re-checked: slurm (default: a job inside the "
                   "maintenance reservation gpufleet-recheck that gpufleet creates for the run, the node drained "
                   "again after it) or ssh (directly over SSH, beside whatever Slurm runs)",
    "pairwise": "with --multinode: find the bad host or link by pairing hosts (two-node all_reduce sweeps at "
                "once, suspects re-paired with good hosts) instead of one ring over every host; with --via slurm "
                "each pair is a Slurm job (busy and drained nodes left out)",
    "rounds": "with --pairwise: rounds of fresh random pairings before re-pairing suspects (default 1)",
    "pair_timeout": "with --pairwise: seconds each pair may run before it is stopped and counted as hung "
                    "(default 120; with --via slurm the pair's job is cancelled then, and its --time set past it)",
    "pair_floor": "with --pairwise: a pair below this fraction of the median pair's bus bandwidth is slow "
                  "(default 0.7)",
    "topology": "with --pairwise: random (default), rack (pair within a gpufleet_rack first) or cross (across "
                "racks)",
    "regression": "a figure below this fraction of the host's own baseline (the median of its last passing "
                  "runs of the same profile) is a regression: exit 1 (default 0.9)",
    "baseline_runs": "how many of a host's last passing runs make its baseline (default 5, at least 3 needed)",
    **HELP_NOTIFY,
    "quiet": HELP_QUIET,
}

# Ansible's short and long names for the flags every host task shares (tasks.py's GpufleetTask adds them).
FLAG_ALIASES = {"inventory": ("i",), "hosts": ("limit", "l"), "forks": ("f",), "user": ("u",)}


def usage_error(message: str) -> Exit:
    return Exit(f"gpufleet: {message}", code=int(ExitCode.USAGE))


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


def choice(name: str, value, choices: tuple) -> str:
    if str(value) not in choices:
        raise usage_error(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return str(value)


def inventory_flags(value) -> tuple:
    """``-i``/``--inventory`` as given: repeated (a list), one string, or nothing."""
    if value is None:
        return ()
    if isinstance(value, (list, tuple)):
        return tuple(str(v) for v in value if str(v).strip())
    return (str(value),) if str(value).strip() else ()


def ssh_options(config: Config, task: str, forks, timeout, connect_timeout, accept_new_host_keys: bool
                ) -> SshOptions:
    """The SSH options from the common flags (each a usage error when not a positive number)."""
    return SshOptions(
        forks=int(positive_number("--forks", forks if forks is not None else config.setting("forks"), integer=True)),
        command_timeout=positive_number("--timeout", timeout if timeout is not None
                                        else config.setting("timeout", task)),
        connect_timeout=positive_number("--connect-timeout", connect_timeout if connect_timeout is not None
                                        else config.setting("connect_timeout")),
        accept_new_host_keys=bool(accept_new_host_keys),
    )


def verify_checks(text) -> tuple:
    """``--checks``: ``all`` (returns ``()``) or a comma-separated list of verify's stages, checked here,
    before any host is contacted."""
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


def wait_seconds(wait_lock) -> float:
    """``--wait-lock``: seconds to wait for another run's lock (0: fail at once)."""
    return 0.0 if wait_lock is None else positive_number("--wait-lock", wait_lock)


def history_path(config: Config, explicit: Optional[str], no_history: bool = False) -> Optional[Path]:
    """The history database (None with ``--no-history``); refused when it exists and is not a file."""
    if no_history:
        return None
    path = config.history_path(explicit)
    if path.exists() and not path.is_file():
        raise usage_error(f"--history {path}: exists and is not a file")
    return path


def reports_dir(config: Config, explicit: Optional[str]) -> Path:
    """Where run directories go; refused when it exists and is not a directory."""
    path = config.reports_dir(explicit)
    if path.exists() and not path.is_dir():
        raise usage_error(f"--out {path}: exists and is not a directory")
    return path


def output_path(flag: str, value: Optional[str]) -> Optional[Path]:
    """An output file a flag names (``--json``, ``--prom``, ``--junit``), checked before any host is contacted:
    its directory exists and is writable, and the path is not a directory."""
    if not value:
        return None
    import os

    path = Path(os.path.expanduser(str(value))).absolute()
    if path.is_dir():
        raise usage_error(f"{flag} {path}: is a directory")
    if not path.parent.is_dir():
        raise usage_error(f"{flag} {path}: directory {path.parent} does not exist")
    why = unwritable(path)
    if why:
        raise usage_error(f"{flag} {path}: cannot be written ({why})")
    return path


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


def slurm_settings(via: str, shared_dir: Optional[str], partition, qos, account, slurm_args, wait: bool,
                   multinode: bool):
    """``--via slurm``'s settings (a :class:`fleet.slurm.jobs.SlurmSettings`), None for ``--via ssh``; usage errors
    for what cannot work."""
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
    try:
        extra_args = tuple(shlex.split(slurm_args)) if slurm_args else ()
    except ValueError as e:
        raise usage_error(f"--slurm-args: {e}") from None
    return SlurmSettings(str(shared_dir), partition or None, qos or None, account or None, extra_args, bool(wait))


def one_job(value: bool, via_slurm: bool, multinode: bool, pairwise: bool) -> bool:
    """``--one-job``: single-node checks of the idle nodes in one Slurm job; a usage error without ``--via slurm``,
    or with ``--pairwise`` or ``--multinode`` (runs of their own kind)."""
    if not value:
        return False
    if not via_slurm:
        raise usage_error("--one-job needs --via slurm")
    for flag, given in (("--pairwise", pairwise), ("--multinode", multinode)):
        if given:
            raise usage_error(f"--one-job is for single-node checks: not with {flag}")
    return True


def recheck_via(value, via_slurm: bool) -> str:
    """``--recheck-via``: how ``--via slurm`` checks a node gpufleet drained (slurm, the default, or ssh); a usage
    error without ``--via slurm`` or for another choice."""
    if value is None:
        return "slurm"
    if not via_slurm:
        raise usage_error("--recheck-via needs --via slurm")
    return choice("--recheck-via", value, ("slurm", "ssh"))


def pairwise_settings(pairwise: bool, multinode: bool, rounds, pair_timeout, pair_floor,
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
    from verify.contract import DCGM_SUGGESTED_TIMEOUT_S, DURATION

    budget = settings.duration if settings.duration is not None else DURATION.get(settings.profile, 0.0)
    level = settings.dcgm_level or (1 if "dcgm" in settings.checks else None)  # --checks dcgm runs level 1
    dcgm = DCGM_SUGGESTED_TIMEOUT_S.get(level, 0.0) if level else 0.0
    need = budget + dcgm + (600.0 if budget or dcgm else 0.0)
    if settings.duration is not None and settings.profile not in DURATION:
        raise usage_error(f"--duration is for --profile nightly or acceptance, not {settings.profile}")
    if explicit:
        if need > settings.timeout:
            raise usage_error(f"--timeout {settings.timeout:g} s is shorter than the run needs (about {need:g} s: "
                              f"the sustained stages, the short ones and DCGM)")
        return settings.timeout
    return max(settings.timeout, need)
