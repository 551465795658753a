"""gpufleet tasks: `gpufleet --list` (or `invoke --list`) shows them, `gpufleet --help TASK` explains each.

Each task is flags -> settings (fleet.options) -> one command (fleet.commands) -> exit code
(fleet.outcome.ExitCode: 0 every host passed, 1 a host failed or was not reached, 2 a usage,
inventory or configuration error, 130 interrupted by Ctrl-C).  Settings a flag does not give come
from fleet.config (invoke.yaml's gpufleet: section, Ansible's configuration, the defaults), read the
same way by `gpufleet` (fleet/cli.py) and `invoke`.
"""

from __future__ import annotations

from pathlib import Path

from invoke import Task, task
from invoke.exceptions import Exit

from fleet import config as fleet_config, options as opt
from fleet.commands import Outcome, common

try:  # a broken invoke.yaml is one line and exit 2 for `invoke` too (Invoke reads the file after this import)
    fleet_config.check_project_file(Path(__file__).resolve().parent)
except fleet_config.ConfigError as _e:
    raise opt.usage_error(str(_e)) from None


class GpufleetTask(Task):
    """An Invoke task that also takes Ansible's names for the shared flags: -i, -l/--limit, -f, -u."""

    def get_arguments(self, ignore_unknown_help=None):
        args = super().get_arguments(ignore_unknown_help)
        for a in args:
            a.names = tuple(a.names) + opt.FLAG_ALIASES.get(a.name, ())
        return args


def _config(c) -> fleet_config.Config:
    """The command's configuration (every task starts here)."""
    common.quiet_libraries()
    try:
        return fleet_config.from_context(c)
    except fleet_config.ConfigError as e:
        raise opt.usage_error(str(e)) from None


def _finish(outcome: Outcome, json_path=None, quiet: bool = False) -> None:
    """Print the command's text (``--quiet``: its one-line summary), write --json, exit with its code (0 returns)."""
    common.echo(outcome.line if quiet and outcome.line else outcome.text)
    common.write_json(json_path, outcome.document)
    if outcome.exit_code:
        raise Exit(code=int(outcome.exit_code))


HOST_TASK = dict(klass=GpufleetTask, auto_shortflags=False, iterable=["inventory"])


@task(**HOST_TASK, help={**opt.HELP_COMMON, "json": "also write the full report (schema gpufleet.audit/1) to this path",
                         **opt.HELP_OUTPUTS, **opt.HELP_HISTORY, **opt.HELP_NOTIFY, **opt.HELP_LOCK,
                         "quiet": opt.HELP_QUIET})
def audit(c, hosts="all", inventory=None, user=None, json=None, forks=None, timeout=None, connect_timeout=None,
          accept_new_host_keys=False, prom=None, junit=None, history=None, no_history=False, notify=None,
          remind_days=None, wait_lock=None, quiet=False):
    """Audit GPUs, driver, ECC, PCIe, throttling, XIDs and container toolkit on every selected host.

    One SSH round trip per host (OpenSSH's ssh where the host's entry allows,
    else paramiko; `ansible_connection: paramiko` keeps a host on paramiko,
    docs/hosts.md); each finding is checked against the host's
    inventory expectations (gpufleet_gpu_count, gpufleet_gpu_model,
    gpufleet_driver_min / gpufleet_driver_version, gpufleet_cuda_min).
    With the history (the default), each host is also compared with its past
    audits: Xids new or known since its last boot, error and throttle counters
    that rose (check `counters`, warns), GPUs that moved or came back from a
    failure (check `gpu-identity`, warns).  Below the table: every failing and
    warning check of every host with its reason, worst host first, findings
    many hosts share folded into one line.  Exit 0 all passed, 1 a host
    failed or was not reached, 2 a usage or configuration error, 130 Ctrl-C.
    """
    from fleet.commands import audit as command

    cfg = _config(c)
    db = opt.history_path(cfg, history, no_history)
    command_line, remind = opt.notify_settings(notify, remind_days, db)
    json_path = opt.output_path("--json", json)
    s = command.AuditSettings(hosts, opt.inventory_flags(inventory), user,
                              opt.ssh_options(cfg, "audit", forks, timeout, connect_timeout, accept_new_host_keys),
                              db, command_line, remind, opt.output_path("--prom", prom),
                              opt.output_path("--junit", junit), opt.wait_seconds(wait_lock), json_path)
    _finish(command.run(cfg, s), json_path, quiet)


@task(**HOST_TASK, help={**opt.HELP_COMMON, "wheelhouse": opt.HELP_WHEELHOUSE})
def push(c, hosts="all", inventory=None, user=None, wheelhouse=None, forks=None, timeout=None, connect_timeout=None,
         accept_new_host_keys=False):
    """Install the node-side verify/ package on every selected host (once per content hash).

    Builds a wheel of verify/, uploads it over SFTP to gpufleet_remote_dir
    (default ~/.cache/gpufleet) and installs it into a virtual environment made
    with --system-site-packages from the node's Python (ansible_python_interpreter),
    so the node's own torch is used.  Unchanged code uploads nothing.  Reports
    which torch / torchvision each node can import.
    """
    from fleet.commands import push as command

    cfg = _config(c)
    options = opt.ssh_options(cfg, "push", forks, timeout, connect_timeout, accept_new_host_keys)
    house = opt.wheelhouse(wheelhouse)
    _, selected = common.select(cfg, hosts, opt.inventory_flags(inventory), user)
    _finish(command.run(selected, options, house))


@task(**HOST_TASK, help=opt.HELP_VERIFY)
def verify(c, hosts="all", inventory=None, user=None, profile="quick", nproc="auto", timeout=None, out=None,
           force=False, multinode=False, rdzv_port=None, checks="all", wheelhouse=None, forks=None,
           connect_timeout=None, accept_new_host_keys=False, wait_lock=None, keep_runs=None, keep_days=None,
           prom=None, junit=None, history=None, no_history=False, duration=None, dcgm_level=None,
           dcgm_allow_skips=False, regression=None, baseline_runs=None, notify=None, remind_days=None, via="ssh",
           slurm_host=None, shared_dir=None, partition=None, qos=None, account=None, slurm_args=None, wait=False,
           pairwise=False, rounds=None, pair_timeout=None, pair_floor=None, topology="random", recheck_via=None,
           one_job=False, quiet=False):
    """Push verify/, run it under torchrun on every selected host, pull the reports and judge the fleet.

    Writes <out>/<UTC timestamp>/ (run.json, hosts/<host>.json, logs/, summary.json,
    summary.md, summary.html: the figures, plots and trends) and prints the fleet table:
    per-host status with its reasons, key figures with their ratio to the fleet median
    of the same GPU model, and stragglers.  Ctrl-C stops verify (torchrun and every
    rank) on every host and keeps what finished.  With the history (the default), each
    host's key figures are also compared with its own baseline: a regression fails the
    run even when the whole fleet slowed down together.  Exit 0 when every host passes,
    1 when any fails, is unreachable, is a straggler or regressed, 2 for a usage error,
    130 when interrupted.
    """
    from fleet.commands import verify as command

    flags = {k: v for k, v in locals().items() if k not in ("c", "command", "quiet")}  # the flags, by their names
    cfg = _config(c)
    _finish(command.run(cfg, command.job_from_flags(cfg, **flags)), quiet=quiet)


@task(name="hosts", **HOST_TASK,
      help={"hosts": opt.HELP_COMMON["hosts"], "inventory": opt.HELP_COMMON["inventory"],
            "user": opt.HELP_COMMON["user"],
            "json": "also write the selection (schema gpufleet.hosts/1, secrets masked) to this path"})
def hosts_(c, hosts="all", inventory=None, user=None, json=None):
    """List the hosts a pattern selects, without connecting anywhere: address, port, user and groups.

    Says where the inventory came from (-i, $GPUFLEET_INVENTORY, invoke.yaml, Ansible's
    configuration, the default).  Hosts gpufleet cannot use as the inventory describes them
    (a Jinja template in a connection variable, a connection plugin other than ssh/local) are
    listed with the reason.  Exit 0, or 2 for an inventory, pattern or configuration error.
    """
    from fleet.inventory.listing import hosts_document, render_hosts

    cfg = _config(c)
    flags = opt.inventory_flags(inventory)
    json_path = opt.output_path("--json", json)
    path, selected = common.select(cfg, hosts, flags, user)
    origin = common.inventory_origin(cfg, flags)
    text = f"inventory: {path} (from {origin})\n" + render_hosts(selected)
    _finish(Outcome(text, hosts_document(path.split(","), hosts, selected)), json_path)


@task(auto_shortflags=False, help={"run_dir": "a run directory written by `gpufleet verify`",
                                   "json": "also write the verdict (gpufleet.summary/1) to this path"})
def report(c, run_dir, json=None):
    """Judge a verify run again from its directory and print its table; the directory is left as it is.

    The verdict is the one the run printed (the same judging code, over the
    reports it fetched).  Exit codes as for verify.
    """
    from fleet.commands.verify import rejudge
    from fleet.runs.render import render_table

    json_path = opt.output_path("--json", json)
    try:
        summary = rejudge(run_dir)
    except (FileNotFoundError, ValueError) as e:
        raise opt.usage_error(str(e)) from None
    _finish(Outcome(render_table(summary), summary, summary["exit_code"]), json_path)


@task(name="history", klass=GpufleetTask, auto_shortflags=False, iterable=["inventory"], help={
    "hosts": "a host pattern resolved through the inventory (groups too), or host names and shell globs of hosts "
             "the inventory no longer holds (default: every host in the history)",
    "inventory": opt.HELP_COMMON["inventory"],
    "history": opt.HELP_HISTORY["history"],
    "metric": "show this metric's trend (a key such as matmul/bf16/tflops, or KEY:gpu0)",
    "days": "only runs of the last N days",
    "json": "also write the history (schema gpufleet.history/1) to this path",
})
def history_(c, hosts=None, inventory=None, history=None, metric=None, days=None, json=None):
    """Each host's recent runs from the history database: status, key figures, a small trend; GPU identities.

    Reads the database every audit, verify and provision run writes (it never creates one).
    """
    from fleet.history import UnknownMetric, history_main

    cfg = _config(c)
    db = opt.history_path(cfg, history)
    window = opt.positive_number("--days", days) if days is not None else None
    names = common.history_names(cfg, hosts, opt.inventory_flags(inventory))
    json_path = opt.output_path("--json", json)
    try:
        text, _ = history_main(db, names, metric, window, json_path)
    except UnknownMetric as e:
        raise opt.usage_error(str(e)) from None
    common.echo(text)


@task(name="slurm-sync", klass=GpufleetTask, auto_shortflags=False, iterable=["inventory"], help={
    "run_dir": "a run directory written by `gpufleet verify`",
    "apply": "drain and resume as planned (default: print the plan only)",
    "max_drain": "refuse to drain more than N nodes, or P%% of the run's nodes, in one run: drain nothing and "
                 "exit 1 (default 10%%, at least 1 node)",
    "resume_after": "resume a node gpufleet drained after this many consecutive passing runs in the history "
                    "(default 2)",
    "slurm_host": "run scontrol over SSH on this login node (default: here)",
    "inventory": "inventory for gpufleet_slurm_node (a host's Slurm node name; default: the host's name)",
    "history": opt.HELP_HISTORY["history"],
    "json": "also write the plan (schema gpufleet.slurm-sync/1) to this path",
})
def slurm_sync(c, run_dir, apply=False, max_drain=None, resume_after=None, slurm_host=None, inventory=None,
               history=None, json=None):
    """Drain the nodes a verify run failed and resume the ones gpufleet drained that pass again (dry run by default).

    A failing node is drained with the reason `gpufleet: <first failing check> (run <run id>)`.
    A node drained or down for any other reason is never touched; a node that was not judged
    (unreachable, timed out, skipped) is never drained; a node gpufleet drained is resumed after
    --resume-after consecutive passing runs.  More drains than --max-drain: nothing is drained,
    exit 1.  Applying the same run twice changes nothing.  Slurm that cannot be asked: one line,
    exit 2.  Exit 0, 1 (refused or not applied), 2.
    """
    from fleet.commands import slurm_sync as command
    from fleet.slurm.sync import DEFAULT_MAX_DRAIN, DEFAULT_RESUME_AFTER

    cfg = _config(c)
    after = (DEFAULT_RESUME_AFTER if resume_after is None
             else int(opt.positive_number("--resume-after", resume_after, integer=True)))
    json_path = opt.output_path("--json", json)
    s = command.SyncSettings(run_dir, bool(apply), max_drain or DEFAULT_MAX_DRAIN, after, slurm_host,
                             opt.inventory_flags(inventory), opt.history_path(cfg, history))
    _finish(command.run(cfg, s), json_path)


@task(**HOST_TASK, help={
    **opt.HELP_COMMON,
    "check": "dry run: print per host the commands it would run; change nothing (recorded as a dry run)",
    "version": "pin nvidia-container-toolkit (and its three companion packages) to this version, e.g. 1.17.8-1",
    "repo_url": "repository base URL, e.g. an internal mirror of https://nvidia.github.io/libnvidia-container/stable",
    "key_url": "the repository's signing key URL (default NVIDIA's gpgkey)",
    "containerd": "also configure containerd's nvidia runtime (docker is always configured when present)",
    "smoke_test": "after installing, run `docker run --rm --gpus all IMAGE nvidia-smi` where docker is present",
    "smoke_image": "image for --smoke-test (default: provision.settings.DEFAULT_SMOKE_IMAGE)",
    "json": "also write the full report (schema gpufleet.provision/2) to this path",
    "junit": opt.HELP_OUTPUTS["junit"],
    **opt.HELP_HISTORY,
    **opt.HELP_LOCK,
    "quiet": opt.HELP_QUIET,
})
def provision(c, hosts="all", inventory=None, user=None, check=False, version=None, repo_url=None, key_url=None,
              containerd=False, smoke_test=False, smoke_image=None, forks=None, timeout=None, connect_timeout=None,
              accept_new_host_keys=False, json=None, junit=None, history=None, no_history=False, wait_lock=None,
              quiet=False):
    """Install and configure nvidia-container-toolkit, idempotently (docs/provision.md).

    Per host: repository and signing key, the package, `nvidia-ctk runtime configure` for
    docker (and containerd), a runtime restart only when its configuration changed, then
    validation and the audit's toolkit check.  Inventory variables gpufleet_toolkit_repo_url,
    gpufleet_toolkit_key_url, gpufleet_toolkit_version, gpufleet_toolkit_runtimes; options win.
    With ansible_become the sudo password comes from $GPUFLEET_BECOME_PASSWORD or one prompt.
    """
    from fleet.commands import provision as command
    from provision.settings import Overrides, SettingsError

    cfg = _config(c)
    try:
        overrides = Overrides(repo_url, key_url, version, bool(containerd), bool(smoke_test), smoke_image).validated()
    except SettingsError as e:
        raise opt.usage_error(str(e)) from None
    json_path = opt.output_path("--json", json)
    s = command.ProvisionSettings(hosts, opt.inventory_flags(inventory), user,
                                  opt.ssh_options(cfg, "provision", forks, timeout, connect_timeout,
                                                  accept_new_host_keys),
                                  overrides, bool(check), opt.history_path(cfg, history, no_history),
                                  opt.output_path("--junit", junit), opt.wait_seconds(wait_lock))
    _finish(command.run(cfg, s), json_path, quiet)
