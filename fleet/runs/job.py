"""The verify job: one verify run with the history around it.

The ``verify`` task turns its flags into a :class:`VerifyJob`, takes the run lock, opens the Slurm client where
``--via slurm`` asks for one and calls :func:`run_verify_job`; everything between that and the exit code is here:

1. before the run, from the history: each host's baseline and trends (:mod:`fleet.history.baseline`) and, for
   ``--notify``, the hosts' alert states;
2. the run: pairwise rounds (:mod:`fleet.runs.pairwise_run`) or the fleet run (:mod:`fleet.runs.launch`, over SSH
   or as Slurm jobs);
3. after it: old run directories pruned (``--keep-runs``/``--keep-days``), the Prometheus textfile and the JUnit
   XML, the run recorded in the history, the alerts.

What the operator should hear goes through ``note`` (one line each); nothing here exits or parses flags.  A
history that cannot be read or written is said and never fails the run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Optional

from fleet.history import record
from fleet.history.alerts import DEFAULT_REMIND_DAYS, notify, read_states, verify_subjects
from fleet.history.baseline import DEFAULT_THRESHOLD, DEFAULT_WINDOW, read_baselines
from fleet.inventory import Host
from fleet.outputs import write_outputs
from fleet.runs import launch
from fleet.runs.retention import prune
from fleet.runs.run_dir import load_run
from fleet.transport import SshOptions


@dataclass(frozen=True)
class VerifyJob:
    """What one ``verify`` invocation asks for, flags already checked."""

    settings: launch.VerifySettings
    options: SshOptions
    base: Path  # the reports directory the run directory goes under
    pattern: str = ""  # the --hosts pattern, kept in run.json
    db: Optional[Path] = None  # the history database (None: --no-history)
    window: int = DEFAULT_WINDOW  # --baseline-runs
    threshold: float = DEFAULT_THRESHOLD  # --regression
    notify: Optional[str] = None  # --notify's command
    remind_days: float = DEFAULT_REMIND_DAYS
    keep_runs: Optional[int] = None
    keep_days: Optional[float] = None
    prom: Optional[str] = None
    junit: Optional[str] = None
    pairwise: object = None  # a fleet.runs.pairwise_run.PairwiseSettings for --pairwise


@dataclass
class VerifyOutcome:
    run_dir: Path
    summary: dict  # the gpufleet.summary/1 document; its exit_code is the run's
    pruned: list  # the run directories --keep-runs/--keep-days removed


def run_verify_job(job: VerifyJob, hosts: Iterable[Host], slurm=None,
                   note: Callable[[str], None] = lambda line: None) -> VerifyOutcome:
    """Run ``job`` on ``hosts`` (``slurm``: ``(SlurmClient, SlurmSettings)`` for ``--via slurm``); the caller
    holds the run lock."""
    hosts = list(hosts)
    names = [h.name for h in hosts]
    baseline, trends, problem = (read_baselines(job.db, names, job.settings.profile, job.window, job.threshold)
                                 if job.db is not None else (None, {}, None))
    states, problem2 = read_states(job.db, "verify", names) if job.notify else ({}, None)
    for line in (problem, problem2):
        if line:
            note(line)

    def started(run_dir: Path) -> None:
        note(f"run directory: {run_dir}")

    if job.pairwise is not None:
        from fleet.runs.pairwise_run import pairwise_fleet

        run_dir, summary = pairwise_fleet(hosts, job.settings, job.options, job.pairwise, out_base=str(job.base),
                                          pattern=job.pattern, on_started=started)
    else:
        run_dir, summary = launch.verify_fleet(hosts, job.settings, job.options, out_base=str(job.base),
                                               pattern=job.pattern, on_started=started, baseline=baseline,
                                               trends=trends, slurm=slurm)
    pruned = (prune(job.base, job.keep_runs, job.keep_days, current=run_dir.name)
              if job.keep_runs is not None or job.keep_days is not None else [])
    runs, meta = load_run(run_dir) if (job.prom or job.db) else ([], {})  # the records the run wrote, read once
    for line in write_outputs("verify", summary, job.prom, job.junit,
                              reports={r.host: r.report for r in runs if r.report is not None}):
        note(line)
    run_id, said = record(job.db, "verify", summary, meta, runs)
    if said:
        note(said)
    if job.notify:
        statuses, new_xids, details = verify_subjects(summary)
        note(notify(job.db, job.notify, "verify", run_id, statuses, states, new_xids, details, job.remind_days,
                    str(run_dir), summary["exit_code"]))
    return VerifyOutcome(run_dir, summary, pruned)


__all__ = ["VerifyJob", "VerifyOutcome", "run_verify_job"]
