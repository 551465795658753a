"""``verify``: one verify run with the history around it.

1. hosts selected; the reports directory's run lock taken (one run per directory; exit 2 when it is held or
   cannot be made); Slurm asked, for ``--via slurm`` (exit 2 when it cannot be);
2. before the run, from the history: each host's baseline (:mod:`fleet.history.baseline`) and, for
   ``--notify``, the hosts' alert states;
3. the run: pairwise rounds (:mod:`fleet.runs.pairwise_run`) or the fleet run (:mod:`fleet.runs.launch`, over SSH
   or as Slurm jobs), which writes the run directory and the verdict (:func:`fleet.runs.verdict.judge`);
4. after it: summary.html, with the trends of the hosts it draws (read from the history now, most urgent first);
   old run directories pruned (``--keep-runs``/``--keep-days``), the Prometheus textfile and the JUnit XML, the
   run recorded in the history, the alerts: each reads the verdict and decides nothing.

A history that cannot be read or written after the lock is taken is said and never fails the run.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from fleet.commands import Outcome, common
from fleet.config import Config
from fleet.options import usage_error
from fleet.transport import SshOptions


@dataclass(frozen=True)
class VerifyJob:
    """What one ``verify`` invocation asks for, flags already checked."""

    settings: object  # a fleet.runs.node.VerifySettings
    options: SshOptions
    base: Path  # the reports directory the run directory goes under
    pattern: str = "all"  # the --hosts pattern, kept in run.json
    inventory: tuple = ()  # -i, as given
    user: Optional[str] = None  # -u
    db: Optional[Path] = None  # the history database (None: --no-history)
    window: int = 5  # --baseline-runs
    threshold: float = 0.9  # --regression
    notify: Optional[str] = None  # --notify's command
    remind_days: float = 7.0
    keep_runs: Optional[int] = None
    keep_days: Optional[float] = None
    prom: Optional[Path] = None
    junit: Optional[Path] = None
    pairwise: object = None  # a fleet.runs.pairwise_run.PairwiseSettings for --pairwise
    slurm: object = None  # a fleet.slurm.jobs.SlurmSettings for --via slurm
    slurm_host: Optional[str] = None
    wait_lock: float = 0.0


@dataclass
class VerifyOutcome:
    run_dir: Path
    summary: dict  # the gpufleet.summary/1 document; its exit_code is the run's
    pruned: list  # the run directories --keep-runs/--keep-days removed


def run(config: Config, job: VerifyJob) -> Outcome:
    """Select, lock, run (:func:`run_verify_job`) and say where the run directory is."""
    from fleet.commands.slurm_sync import one_line, slurm_client
    from fleet.findings import terminal_width
    from fleet.runs.render import counts_line, render_table
    from fleet.slurm import jobs as slurm_jobs
    from fleet.slurm import multinode, onejob
    from fleet.slurm.client import SlurmError

    _, selected = common.select(config, job.pattern, job.inventory, job.user)
    common.ready_to_connect(selected)
    common.check_history(job.db)
    hosts = common.inventory_hosts(config, job.inventory) if job.slurm_host else {}
    try:  # one run per reports directory; no host is contacted before the lock is held
        with common.run_lock(job.base, job.wait_lock), slurm_client(config, job.slurm_host, hosts) as client:
            executor = pairing = None
            if job.slurm is not None and job.pairwise is not None:  # each pair a job
                pairing = multinode.pair_runner(client, job.slurm, selected)
            elif job.slurm is not None and job.settings.multinode:  # one job spanning the nodes
                executor = multinode.executor(client, job.slurm, selected)
            elif job.slurm is not None and job.slurm.one_job:  # the idle nodes' single-node checks in one job
                executor = onejob.executor(client, job.slurm, selected)
            elif job.slurm is not None:
                executor = slurm_jobs.executor(client, job.slurm, selected)
            result = run_verify_job(job, selected, executor, pairing)
    except SlurmError as e:  # Slurm could not be asked: nothing was submitted, no run directory made
        raise usage_error(f"--via slurm: {one_line(e)}") from None
    text = render_table(result.summary, width=terminal_width(sys.stdout))
    text += (f"\n\nrun directory: {result.run_dir}  (summary.html, summary.md, summary.json, run.json, hosts/, "
             f"logs/)")
    if result.pruned:
        n = len(result.pruned)
        common.note(f"pruned {n} old run director{'y' if n == 1 else 'ies'}: {', '.join(result.pruned)}")
    return common.with_config_errors(Outcome(text, result.summary, int(result.summary["exit_code"]),
                                             counts_line(result.summary)))


def run_verify_job(job: VerifyJob, hosts, executor=None, pairing=None) -> VerifyOutcome:
    """Run ``job`` on ``hosts`` (``executor``: the Slurm jobs' for ``--via slurm``, None over SSH; ``pairing``: the
    Slurm jobs' for ``--pairwise --via slurm``, a :class:`fleet.runs.pairwise_run.PairRunner`); the caller
    holds the run lock.  The finished run is handed forward in memory: summary.html, the outputs, the history
    record and the alerts read it, never the files the run just wrote."""
    from fleet.history.alerts import notify, read_states, verify_subjects
    from fleet.history.baseline import read_baselines, with_run
    from fleet.outputs.html import write_summary_html
    from fleet.runs import launch
    from fleet.runs.retention import prune

    hosts = list(hosts)
    names = [h.name for h in hosts]
    baseline, problem = (read_baselines(job.db, names, job.settings.profile, job.window, job.threshold)
                         if job.db is not None else (None, None))
    states, problem2 = read_states(job.db, "verify", names) if job.notify else ({}, None)
    for line in (problem, problem2):
        if line:
            common.note(line)

    def started(run_dir: Path) -> None:
        common.note(f"run directory: {run_dir}")

    if job.pairwise is not None:
        from fleet.runs.pairwise_run import OVER_SSH, pairwise_fleet

        done = pairwise_fleet(hosts, job.settings, job.options, job.pairwise, out_base=str(job.base),
                              pattern=job.pattern, on_started=started, runner=pairing or OVER_SSH)
        write_summary_html(done.run_dir, done.summary, reports={})
    else:
        done = launch.verify_fleet(hosts, job.settings, job.options, out_base=str(job.base), pattern=job.pattern,
                                   on_started=started, baseline=baseline, executor=executor or launch.OVER_SSH)
        past, with_history = page_trends(job, done.summary)
        write_summary_html(done.run_dir, done.summary, with_run(past, done.summary),
                           reports={r.host: r.report for r in done.runs if r.report is not None},
                           trend_total=with_history)
    pruned = (prune(job.base, job.keep_runs, job.keep_days, current=done.run_dir.name)
              if job.keep_runs is not None or job.keep_days is not None else [])
    common.outputs("verify", done.summary, job.prom, job.junit,
                   reports={r.host: r.report for r in done.runs if r.report is not None})
    run_id = common.record_history(job.db, "verify", done.summary, done.meta, done.runs)
    if job.notify:
        statuses, new_xids, details = verify_subjects(done.summary)
        common.note(notify(job.db, job.notify, "verify", run_id, statuses, states, new_xids, details,
                           job.remind_days, str(done.run_dir), done.summary["exit_code"]))
    return VerifyOutcome(done.run_dir, done.summary, pruned)


def page_trends(job: VerifyJob, summary: dict) -> tuple[dict, int]:
    """(the past trends summary.html draws, how many of the run's hosts have a history): read after the verdict,
    for the hosts the page shows first (:func:`fleet.outputs.trends.trend_order`), at most
    :data:`fleet.outputs.html.MAX_TREND_HOSTS` of them."""
    from fleet.history.baseline import read_trends
    from fleet.outputs.flags import flags
    from fleet.outputs.html import MAX_TREND_HOSTS
    from fleet.outputs.trends import trend_order

    if job.db is None:
        return {}, 0
    past, with_history, problem = read_trends(job.db, trend_order(summary, *flags(summary)), job.settings.profile,
                                              MAX_TREND_HOSTS)
    if problem:
        common.note(problem)
    return past, with_history


def job_from_flags(config: Config, *, hosts, inventory, user, profile, nproc, timeout, out, force, multinode,
                   rdzv_port, checks, wheelhouse, forks, connect_timeout, accept_new_host_keys, wait_lock, keep_runs,
                   keep_days, prom, junit, history, no_history, duration, dcgm_level, dcgm_allow_skips, regression,
                   baseline_runs, notify, remind_days, via, slurm_host, shared_dir, partition, qos, account,
                   slurm_args, wait, pairwise, rounds, pair_timeout, pair_floor, topology,
                   recheck_via=None, one_job=False) -> VerifyJob:
    """The verify task's flags (by name) as a :class:`VerifyJob`: every flag checked, nothing contacted."""
    from fleet import options as opt
    from fleet.history.baseline import DEFAULT_THRESHOLD, DEFAULT_WINDOW, MIN_RUNS
    from fleet.runs.node import DEFAULT_RDZV_PORT, VerifySettings
    from verify.contract import PROFILES

    settings = VerifySettings(
        profile=opt.choice("--profile", profile, PROFILES),
        nproc=str(nproc) if str(nproc) == "auto" else str(int(opt.positive_number("--nproc", nproc, integer=True))),
        timeout=opt.positive_number("--timeout", timeout if timeout is not None
                                    else config.setting("timeout", "verify")),
        force=bool(force), multinode=bool(multinode),
        rdzv_port=int(opt.positive_number("--rdzv-port", DEFAULT_RDZV_PORT if rdzv_port is None else rdzv_port,
                                          integer=True)),
        checks=opt.verify_checks(checks), wheelhouse=opt.wheelhouse(wheelhouse),
        duration=opt.positive_number("--duration", duration) if duration is not None else None,
        dcgm_level=int(opt.choice("--dcgm-level", str(dcgm_level), ("1", "2", "3", "4"))) if dcgm_level else None,
        dcgm_allow_skips=bool(dcgm_allow_skips))
    settings.timeout = opt.sustained_timeout(settings, timeout is not None)
    db = opt.history_path(config, history, no_history)
    window = DEFAULT_WINDOW if baseline_runs is None else int(opt.positive_number("--baseline-runs", baseline_runs,
                                                                                    integer=True))
    if window < MIN_RUNS:
        raise usage_error(f"--baseline-runs must be at least {MIN_RUNS}, got {baseline_runs}")
    command, remind = opt.notify_settings(notify, remind_days, db)
    slurm = opt.slurm_settings(opt.choice("--via", via, ("ssh", "slurm")), shared_dir, partition, qos, account,
                               slurm_args, wait, settings.multinode)
    if slurm_host and slurm is None:
        raise usage_error("--slurm-host needs --via slurm")
    recheck = opt.recheck_via(recheck_via, slurm is not None)  # --recheck-via
    together = opt.one_job(one_job, slurm is not None, settings.multinode, pairwise)  # --one-job
    if slurm is not None:
        slurm.recheck_via, slurm.one_job = recheck, together
    keep_runs, keep_days = opt.retention(keep_runs, keep_days)
    return VerifyJob(settings, opt.ssh_options(config, "verify", forks, timeout, connect_timeout,
                                               accept_new_host_keys),
                     opt.reports_dir(config, out), pattern=hosts, inventory=opt.inventory_flags(inventory), user=user,
                     db=db, window=window, threshold=opt.fraction("--regression", regression, DEFAULT_THRESHOLD),
                     notify=command, remind_days=remind, keep_runs=keep_runs, keep_days=keep_days,
                     prom=opt.output_path("--prom", prom), junit=opt.output_path("--junit", junit),
                     pairwise=opt.pairwise_settings(pairwise, settings.multinode, rounds,
                                                    pair_timeout, pair_floor, topology),
                     slurm=slurm, slurm_host=slurm_host, wait_lock=opt.wait_seconds(wait_lock))


def rejudge(run_dir) -> dict:
    """``report``: the verdict of a run directory, judged again from what it holds (read-only)."""
    from fleet.runs.rejudge import rejudge as judged

    return judged(run_dir)[0]
