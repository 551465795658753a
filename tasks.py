"""gpufleet tasks: `invoke --list` shows them, `invoke --help TASK` explains each.

Tasks are thin: parse flags, call the library in fleet/, turn the outcome into an
exit code (fleet.outcome.ExitCode: 0 every host passed, 1 a host failed or was not
reached, 2 a usage or inventory error, 130 interrupted by Ctrl-C).  The same tasks
run as `gpufleet TASK` (fleet/cli.py), whose own parser errors also exit 2.
"""

from __future__ import annotations

from invoke import task

from fleet import options as cli, push as push_lib
from fleet.audit import run as audit_run
from fleet.fanout import run_fleet
from fleet.outcome import ExitCode, Recap, status_for
from fleet.outputs import write_outputs
from fleet.runs import launch
from fleet.runs.render import render_table
from fleet.runs.run_dir import load_run
from fleet.runs.verdict import judge
from provision import run as provision_run
from provision.secrets import become_password
from provision.settings import DEFAULT_SMOKE_IMAGE, Overrides, SettingsError
from verify.profiles import PROFILES


@task(
    auto_shortflags=False,
    help={
        **cli.HELP_COMMON,
        "json": "also write the full report (schema gpufleet.audit/1) to this path",
        **cli.HELP_OUTPUTS,
        **cli.HELP_HISTORY,
        **cli.HELP_NOTIFY,
        **cli.HELP_LOCK,
    },
)
def audit(c, hosts="all", inventory=None, json=None, forks=None, timeout=None, connect_timeout=None,
          accept_new_host_keys=False, prom=None, junit=None, history=None, no_history=False, notify=None,
          remind_days=None, wait_lock=None):
    """Audit GPUs, driver, ECC, PCIe, throttling, XIDs and container toolkit on every selected host.

    One SSH round trip per host; each finding is checked against the host's
    inventory expectations (gpufleet_gpu_count, gpufleet_gpu_model,
    gpufleet_driver_min / gpufleet_driver_version, gpufleet_cuda_min).
    With the history (the default), each host is also compared with its past
    audits: Xids new or known since its last boot, error and throttle counters
    that rose (check `counters`, warns), GPUs that moved or came back from a
    failure (check `gpu-identity`, warns).
    """
    from fleet.history import read_audit_past
    from fleet.history.alerts import audit_subjects, read_states

    cli.quiet_libraries()
    path, selected = cli.select(c, hosts, inventory)
    options = cli.ssh_options(c, "audit", forks, timeout, connect_timeout, accept_new_host_keys)
    db = cli.history_path(c, history, no_history)
    command, remind = cli.notify_settings(notify, remind_days, db)
    with cli.history_lock(db, "audit", wait_lock):
        result = audit_run.audit_hosts(selected, options)
        report = audit_run.build_report(result, path, hosts)
        states: dict = {}
        if db is not None:
            past, problem = read_audit_past(db, report)
            if past is not None:
                audit_run.add_history_checks(report, *past)
            states, problem2 = read_states(db, "audit", report["hosts"]) if command else ({}, None)
            for p in (problem, problem2):
                if p:
                    cli.note(p)
        _outputs("audit", report, prom, junit)
        run_id = cli.record_history(db, "audit", report)
        cli.notify(command, db, "audit", run_id, audit_subjects(report), states, remind, json, report["exit_code"])
    cli.finish(audit_run.render_table(report), report, json, _code(report["exit_code"], result.interrupted))


@task(auto_shortflags=False, help={**cli.HELP_COMMON, "wheelhouse": cli.HELP_WHEELHOUSE})
def push(c, hosts="all", inventory=None, wheelhouse=None, forks=None, timeout=None, connect_timeout=None,
         accept_new_host_keys=False):
    """Install the node-side verify/ package on every selected host (once per content hash).

    Builds a wheel of verify/, uploads it over SFTP to gpufleet_remote_dir
    (default ~/.cache/gpufleet) and installs it into a virtual environment made
    with --system-site-packages from the node's Python (ansible_python_interpreter),
    so the node's own torch is used.  Unchanged code uploads nothing.  Reports
    which torch / torchvision each node can import.
    """
    cli.quiet_libraries()
    _, selected = cli.select(c, hosts, inventory)
    options = cli.ssh_options(c, "push", forks, timeout, connect_timeout, accept_new_host_keys)
    artifact = push_lib.build_wheel()
    house = cli.wheelhouse(wheelhouse)
    cli.note(f"verify wheel {artifact.filename} (content {artifact.digest})")
    result = run_fleet(selected, lambda t: push_lib.push(t, artifact, deep=True, wheelhouse=house), options,
                       desc="push")
    recap = Recap({r.host.name: status_for(r.state, "pass") for r in result})
    cli.finish(push_lib.render_table(result) + "\n\n" + recap.line(), {}, None,
               _code(recap.exit_code, result.interrupted))


@task(
    auto_shortflags=False,
    help={
        **cli.HELP_COMMON,
        "profile": "quick (default; about a minute), full (larger sizes, longer sweeps), nightly (quick plus a few "
                   "minutes of burn and memory test per GPU) or acceptance (full plus 30 minutes of them)",
        "duration": "nightly/acceptance: seconds of sustained stages per GPU (burn 70 %, memory test 30 %; "
                    "default 300 / 1800); --timeout grows to fit",
        "dcgm_level": "also run DCGM's diagnostic `dcgmi diag -r N` (1-4) where dcgmi is present; each DCGM test is "
                      "a check",
        "dcgm_allow_skips": "a test DCGM skipped is not a failure (it is by default)",
        "nproc": "ranks per host: auto (one per GPU; 1 on a host without) or a number",
        "timeout": "seconds verify may run on a host before it is stopped (default 1800)",
        "out": "directory under which the run directory <UTC timestamp>/ is made "
               "(default: gpufleet.reports in invoke.yaml, else the project's reports/)",
        "force": "benchmark GPUs even when other compute processes are using them",
        "multinode": "one torchrun per host joined by c10d rendezvous on the first host: all_reduce across nodes",
        "rdzv_port": "rendezvous port on the first host for --multinode (default 29400)",
        "checks": "comma-separated verify stages (collectives, ddp, compute, memory, inference, pipeline) or all; "
                  "checked before any host is contacted",
        "wheelhouse": cli.HELP_WHEELHOUSE,
        **cli.HELP_CRON,
        **cli.HELP_OUTPUTS,
        **cli.HELP_HISTORY,
        "via": "ssh (default: torchrun over SSH on each host) or slurm (one job per node through the scheduler; "
               "busy nodes are skipped, nodes drained by others left alone)",
        "slurm_host": "with --via slurm: run sbatch/squeue/scontrol/scancel over SSH on this login node "
                      "(an inventory host or an ssh name; default: here)",
        "shared_dir": "with --via slurm: a directory on the cluster's shared filesystem, the same path on every "
                      "node, where the jobs write their reports (required)",
        "partition": "with --via slurm: the jobs' partition",
        "qos": "with --via slurm: the jobs' QoS",
        "account": "with --via slurm: the jobs' account",
        "slurm_args": "with --via slurm: more sbatch options, one string (e.g. '--reservation=gpufleet')",
        "wait": "with --via slurm: queue behind other jobs on busy nodes instead of skipping them",
        "pairwise": "with --multinode: find the bad host or link by pairing hosts (two-node all_reduce sweeps at "
                    "once, suspects re-paired with good hosts) instead of one ring over every host",
        "rounds": "with --pairwise: rounds of fresh random pairings before re-pairing suspects (default 1)",
        "pair_timeout": "with --pairwise: seconds each pair may run before it is stopped and counted as hung "
                        "(default 120)",
        "pair_floor": "with --pairwise: a pair below this fraction of the median pair's bus bandwidth is slow "
                      "(default 0.7)",
        "topology": "with --pairwise: random (default), rack (pair within a gpufleet_rack first) or cross (across "
                    "racks)",
        "regression": "a figure below this fraction of the host's own baseline (the median of its last passing "
                      "runs of the same profile) is a regression: exit 1 (default 0.9)",
        "baseline_runs": "how many of a host's last passing runs make its baseline (default 5, at least 3 needed)",
        **cli.HELP_NOTIFY,
    },
)
def verify(c, hosts="all", inventory=None, profile="quick", nproc="auto", timeout=None, out=None,
           force=False, multinode=False, rdzv_port=str(launch.DEFAULT_RDZV_PORT), checks="all", wheelhouse=None,
           forks=None, connect_timeout=None, accept_new_host_keys=False, wait_lock=None, keep_runs=None,
           keep_days=None, prom=None, junit=None, history=None, no_history=False, duration=None, dcgm_level=None,
           dcgm_allow_skips=False, regression=None,
           baseline_runs=None, notify=None, remind_days=None, via="ssh", slurm_host=None, shared_dir=None,
           partition=None, qos=None, account=None, slurm_args=None, wait=False, pairwise=False, rounds=None,
           pair_timeout=None, pair_floor=None, topology="random"):
    """Push verify/, run it under torchrun on every selected host, pull the reports and judge the fleet.

    Writes <out>/<UTC timestamp>/ (run.json, hosts/<host>.json, logs/, summary.json,
    summary.md) and prints the fleet table: per-host status and key figures with
    their ratio to the fleet median of the same GPU model, and stragglers.
    Ctrl-C stops verify (torchrun and every rank) on every host and keeps what
    finished.  With the history (the default), each host's key figures are also
    compared with its own baseline: a regression fails the run even when the
    whole fleet slowed down together.  summary.html plots the figures and trends.
    Exit 0 when every host passes, 1 when any fails, is unreachable, is a
    straggler or regressed, 2 for a usage error, 130 when interrupted.
    """
    from fleet.history.baseline import DEFAULT_THRESHOLD, DEFAULT_WINDOW, MIN_RUNS
    from fleet.runs.job import VerifyJob, run_verify_job
    from fleet.slurm.client import SlurmError

    cli.quiet_libraries()
    settings = launch.VerifySettings(
        profile=cli.choice("--profile", profile, PROFILES),
        nproc=str(nproc) if str(nproc) == "auto" else str(int(cli.positive_number("--nproc", nproc, integer=True))),
        timeout=cli.positive_number("--timeout", cli.setting(c, "timeout", timeout, "verify")),
        force=bool(force), multinode=bool(multinode),
        rdzv_port=int(cli.positive_number("--rdzv-port", rdzv_port, integer=True)),
        checks=cli.verify_checks(checks), wheelhouse=cli.wheelhouse(wheelhouse),
        duration=cli.positive_number("--duration", duration) if duration is not None else None,
        dcgm_level=int(cli.choice("--dcgm-level", str(dcgm_level), ("1", "2", "3", "4"))) if dcgm_level else None,
        dcgm_allow_skips=bool(dcgm_allow_skips))
    settings.timeout = cli.sustained_timeout(settings, timeout is not None)
    db = cli.history_path(c, history, no_history)
    window = DEFAULT_WINDOW if baseline_runs is None else int(cli.positive_number("--baseline-runs", baseline_runs,
                                                                                    integer=True))
    if window < MIN_RUNS:
        raise cli.usage_error(f"--baseline-runs must be at least {MIN_RUNS}, got {baseline_runs}")
    command, remind = cli.notify_settings(notify, remind_days, db)
    slurm = cli.slurm_settings(cli.choice("--via", via, ("ssh", "slurm")), shared_dir, partition, qos, account,
                               slurm_args, wait, settings.multinode)
    if slurm_host and slurm is None:
        raise cli.usage_error("--slurm-host needs --via slurm")
    keep_runs, keep_days = cli.retention(keep_runs, keep_days)
    job = VerifyJob(settings, cli.ssh_options(c, "verify", forks, timeout, connect_timeout, accept_new_host_keys),
                    cli.reports_dir(c, out), pattern=hosts, db=db, window=window,
                    threshold=cli.fraction("--regression", regression, DEFAULT_THRESHOLD), notify=command,
                    remind_days=remind, keep_runs=keep_runs, keep_days=keep_days, prom=prom, junit=junit,
                    pairwise=cli.pairwise_settings(pairwise, settings.multinode, slurm is not None, rounds,
                                                   pair_timeout, pair_floor, topology))
    _, selected = cli.select(c, hosts, inventory)
    try:  # one run per reports directory; no host is contacted before the lock is held
        with cli.run_lock(job.base, wait_lock), cli.slurm_client(c, slurm_host, inventory) as client:
            result = run_verify_job(job, selected, None if slurm is None else (client, slurm), note=cli.note)
    except SlurmError as e:  # Slurm could not be asked: nothing was submitted, no run directory made
        raise cli.usage_error(f"--via slurm: {e}") from None
    run_dir, summary, pruned = result.run_dir, result.summary, result.pruned
    cli.echo(render_table(summary))
    cli.echo(f"\nrun directory: {run_dir}  (summary.html, summary.md, summary.json, run.json, hosts/, logs/)")
    if pruned:
        cli.note(f"pruned {len(pruned)} old run director{'y' if len(pruned) == 1 else 'ies'}: {', '.join(pruned)}")
    if summary["exit_code"]:
        raise cli.Exit(code=summary["exit_code"])


@task(
    name="hosts",
    auto_shortflags=False,
    help={
        "hosts": cli.HELP_COMMON["hosts"],
        "inventory": cli.HELP_COMMON["inventory"],
        "json": "also write the selection (schema gpufleet.hosts/1, secrets masked) to this path",
    },
)
def hosts_(c, hosts="all", inventory=None, json=None):
    """List the hosts a pattern selects, without connecting anywhere: address, port, user and groups.

    Hosts gpufleet cannot use as the inventory describes them (a Jinja template in a connection
    variable, a connection plugin other than ssh/local) are listed with the reason.  Exit 0, or 2
    for an inventory or pattern error.
    """
    from fleet.inventory.listing import hosts_document, render_hosts

    path, selected = cli.select(c, hosts, inventory)
    document = hosts_document(path.split(","), hosts, selected)
    cli.finish(render_hosts(selected), document, json, 0)


@task(auto_shortflags=False, help={"run_dir": "a run directory written by `invoke verify`",
                                   "json": "also write the verdict (gpufleet.summary/1) to this path"})
def report(c, run_dir, json=None):
    """Judge a verify run again from its directory and print its table; the directory is left as it is.

    The verdict is the one the run printed (the same judging code, over the
    reports it fetched).  Exit codes as for verify.
    """
    try:
        runs, meta = load_run(run_dir)
    except (FileNotFoundError, ValueError) as e:
        raise cli.usage_error(str(e)) from None
    if meta.get("pairwise"):
        from fleet.runs.pairwise_run import judge_pairwise

        summary = judge_pairwise(meta)
    else:
        summary = judge(runs, meta)
    cli.finish(render_table(summary), summary, json, summary["exit_code"])


@task(
    name="history",
    auto_shortflags=False,
    help={
        "hosts": "host names or shell globs of the hosts to show (default: every host in the history)",
        "history": cli.HELP_HISTORY["history"],
        "metric": "show this metric's trend (a key such as matmul/bf16/tflops, or KEY:gpu0)",
        "days": "only runs of the last N days",
        "json": "also write the history (schema gpufleet.history/1) to this path",
    },
)
def history_(c, hosts=None, history=None, metric=None, days=None, json=None):
    """Each host's recent runs from the history database: status, key figures, a small trend; GPU identities.

    Reads the database every audit, verify and provision run writes (it never creates one).
    """
    from fleet.history import history_main

    db = cli.history_path(c, history)
    window = cli.positive_number("--days", days) if days is not None else None
    names = [h.strip() for h in hosts.split(",") if h.strip()] if hosts else None
    text, _ = history_main(db, names, metric, window, json)
    cli.echo(text)


@task(
    name="slurm-sync",
    auto_shortflags=False,
    help={
        "run_dir": "a run directory written by `invoke verify`",
        "apply": "drain and resume as planned (default: print the plan only)",
        "max_drain": "refuse to drain more than N nodes, or P%% of the run's nodes, in one run: drain nothing and "
                     "exit 1 (default 10%%, at least 1 node)",
        "resume_after": "resume a node gpufleet drained after this many consecutive passing runs in the history "
                        "(default 2)",
        "slurm_host": "run scontrol over SSH on this login node (default: here)",
        "inventory": "inventory for gpufleet_slurm_node (a host's Slurm node name; default: the host's name)",
        "history": cli.HELP_HISTORY["history"],
        "json": "also write the plan (schema gpufleet.slurm-sync/1) to this path",
    },
)
def slurm_sync(c, run_dir, apply=False, max_drain=None, resume_after=None, slurm_host=None, inventory=None,
               history=None, json=None):
    """Drain the nodes a verify run failed and resume the ones gpufleet drained that pass again (dry run by default).

    A failing node is drained with the reason `gpufleet: <first failing check> (run <run id>)`.
    A node drained or down for any other reason is never touched; a node that was not judged
    (unreachable, timed out, skipped) is never drained; a node gpufleet drained is resumed after
    --resume-after consecutive passing runs.  More drains than --max-drain: nothing is drained,
    exit 1.  Applying the same run twice changes nothing.  Exit 0, 1 (refused or not applied), 2.
    """
    from fleet.slurm.apply import sync
    from fleet.slurm.client import SlurmError
    from fleet.slurm.sync import DEFAULT_MAX_DRAIN, DEFAULT_RESUME_AFTER

    after = (DEFAULT_RESUME_AFTER if resume_after is None
             else int(cli.positive_number("--resume-after", resume_after, integer=True)))
    db = cli.history_path(c, history)
    node_names = cli.slurm_node_names(c, inventory)
    try:
        with cli.slurm_client(c, slurm_host, inventory) as client:
            text, doc, code = sync(run_dir, client, node_names, db, bool(apply), max_drain or DEFAULT_MAX_DRAIN,
                                   after)
    except (FileNotFoundError, ValueError) as e:
        raise cli.usage_error(str(e)) from None
    except SlurmError as e:
        cli.note(f"gpufleet: slurm-sync: {e}")
        raise cli.Exit(code=int(ExitCode.HOSTS_FAILED)) from None
    cli.finish(text, doc, json, code)


@task(
    auto_shortflags=False,
    help={
        **cli.HELP_COMMON,
        "check": "dry run: print per host the commands it would run; change nothing",
        "version": "pin nvidia-container-toolkit (and its three companion packages) to this version, e.g. 1.17.8-1",
        "repo_url": "repository base URL, e.g. an internal mirror of https://nvidia.github.io/libnvidia-container/stable",
        "key_url": "the repository's signing key URL (default NVIDIA's gpgkey)",
        "containerd": "also configure containerd's nvidia runtime (docker is always configured when present)",
        "smoke_test": "after installing, run `docker run --rm --gpus all IMAGE nvidia-smi` where docker is present",
        "smoke_image": f"image for --smoke-test (default {DEFAULT_SMOKE_IMAGE})",
        "json": "also write the full report (schema gpufleet.provision/2) to this path",
        "junit": cli.HELP_OUTPUTS["junit"],
        **cli.HELP_HISTORY,
        **cli.HELP_LOCK,
    },
)
def provision(c, hosts="all", inventory=None, check=False, version=None, repo_url=None, key_url=None,
              containerd=False, smoke_test=False, smoke_image=None, forks=None, timeout=None, connect_timeout=None,
              accept_new_host_keys=False, json=None, junit=None, history=None, no_history=False, wait_lock=None):
    """Install and configure nvidia-container-toolkit, idempotently (README: invoke provision).

    Per host: repository and signing key, the package, `nvidia-ctk runtime configure` for
    docker (and containerd), a runtime restart only when its configuration changed, then
    validation and the audit's toolkit check.  Inventory variables gpufleet_toolkit_repo_url,
    gpufleet_toolkit_key_url, gpufleet_toolkit_version, gpufleet_toolkit_runtimes; options win.
    With ansible_become the sudo password comes from $GPUFLEET_BECOME_PASSWORD or one prompt.
    """
    cli.quiet_libraries()
    try:
        overrides = Overrides(repo_url, key_url, version, bool(containerd), bool(smoke_test), smoke_image).validated()
    except SettingsError as e:
        raise cli.usage_error(str(e)) from None
    path, selected = cli.select(c, hosts, inventory)
    options = cli.ssh_options(c, "provision", forks, timeout, connect_timeout, accept_new_host_keys)
    db = cli.history_path(c, history, no_history)
    options.sudo_password = become_password(selected)
    with cli.history_lock(db, "provision", wait_lock):
        result = provision_run.provision_hosts(selected, overrides, options, check=bool(check))
        audit = provision_run.audit_toolkit(result, options)
        report = provision_run.build_report(result, path, hosts, bool(check), audit, options.sudo_password)
        _outputs("provision", report, None, junit)
        cli.record_history(db, "provision", report)
    cli.finish(provision_run.render(report), report, json, _code(report["exit_code"], result.interrupted))


def _outputs(kind: str, doc: dict, prom, junit) -> None:
    """--prom and --junit of an audit or a provision run (verify's: fleet.runs.job)."""
    for line in write_outputs(kind, doc, prom, junit):
        cli.note(line)


def _code(code: int, interrupted: bool) -> int:
    return int(ExitCode.INTERRUPTED if interrupted else code)
