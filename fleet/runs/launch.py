"""``invoke verify``: push, run ``verify`` under torchrun on every host, pull the reports back.

What the executors share (torchrun's command line, the node-side run and stop
lines, the per-host work, the rendezvous on addresses) is :mod:`fleet.runs.node`;
this module runs the fleet over SSH (:data:`OVER_SSH`), or with the executor it is given (Slurm jobs:
:func:`fleet.slurm.jobs.executor`), and writes the run directory.

One :class:`fleet.runs.record.HostRun` per host carries everything from launch
to ``run.json``: the push summary, torchrun's exit status and output, the
report (validated once, on arrival).  One host's failure never loses another's
result; everything lands in the run directory (:mod:`fleet.runs.run_dir`), and
:func:`fleet.runs.verdict.judge` gives the verdict.

On each node the run lives in ``<install dir>/runs/<run id>/<host>/``: a
directory of its own per host, so nodes that share a home directory (NFS) never
write over each other's report.  The remote command records its process group
there (``pid``), so a Ctrl-C or a controller-side timeout stops torchrun and
every rank (:func:`stop_command`): nothing of the run is left behind.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
from pathlib import Path
from typing import Callable, Iterable

from fleet.fanout import run_fleet
from fleet.inventory import Host
from fleet.progress import Progress
from fleet.push import Artifact, build_wheel
from fleet.runs.node import Executor, VerifySettings, host_runs, node_task, rdzv_addr, stop_installed, stopped_members
from fleet.runs.record import FinishedRun, HostRun
from fleet.runs.run_dir import make_run_dir, write_run, write_summary
from fleet.runs.verdict import judge
from fleet.transport import SshOptions

__all__ = ["OVER_SSH", "run_verify", "verify_fleet"]


def run_verify(hosts: Iterable[Host], artifact: Artifact, s: VerifySettings, options: SshOptions,
               progress: Progress | bool | None = None) -> tuple[list[HostRun], bool]:
    """Every host's HostRun over SSH, in inventory order, and whether the run was interrupted."""
    hosts = list(hosts)
    if not isinstance(progress, Progress):
        progress = Progress.auto("verify", [h.name for h in hosts], progress)
    rendezvous_for = None
    if s.multinode:
        endpoint = f"{rdzv_addr(hosts[0])}:{s.rdzv_port}"  # an address, never a host name the nodes resolve
        ranks = {h.name: i for i, h in enumerate(hosts)}

        def rendezvous_for(h: Host) -> dict:
            return {"nnodes": len(hosts), "node_rank": ranks[h.name], "endpoint": endpoint, "local_addr": rdzv_addr(h)}

        options = dataclasses.replace(options, forks=max(options.forks, len(hosts)))  # all nodes at once

    installed: dict = {}  # host -> its absolute install directory, as its push found it
    result = run_fleet(hosts, node_task(artifact, s, progress.stage, rendezvous_for, installed), options,
                       desc="verify", progress=progress, stop=stop_installed(installed, s.run_id))
    runs = host_runs(result)
    if s.multinode:
        stopped_members(runs)
    return runs, result.interrupted


OVER_SSH = Executor("ssh", run_verify)


def verify_fleet(hosts: Iterable[Host], s: VerifySettings, options: SshOptions, out_base: str = "reports",
                 pattern: str = "", progress: Progress | bool | None = None,
                 on_started: Callable[[Path], None] | None = None, baseline: dict | None = None,
                 executor: Executor = OVER_SSH) -> FinishedRun:
    """The whole run: build, push, run, fetch, write the run directory (run.json, hosts/, logs/, summary.json and
    .md), judge; returns the :class:`FinishedRun` (the command writes summary.html and the outputs from it).

    ``baseline``: each host's own baseline from the history (``fleet.history.baseline.read_baselines``), kept in
    run.json and judged against; ``executor``: over SSH (the default) or as Slurm jobs
    (:func:`fleet.slurm.jobs.executor`)."""
    hosts = list(hosts)
    started = _dt.datetime.now(_dt.timezone.utc)
    run_dir = make_run_dir(out_base, started)
    if on_started:
        on_started(run_dir)
    s.run_id = s.run_id or run_dir.name
    artifact = build_wheel()
    if not isinstance(progress, Progress):
        progress = Progress.auto("verify", [h.name for h in hosts], progress)
    runs, interrupted = executor.run(hosts, artifact, s, options, progress)
    finished = _dt.datetime.now(_dt.timezone.utc)
    meta = {
        "run_id": s.run_id,
        "started": started.isoformat(timespec="seconds"),
        "finished": finished.isoformat(timespec="seconds"),
        "interrupted": interrupted,
        "pattern": pattern,
        "profile": s.profile,
        "nproc": s.nproc,
        "checks": list(s.checks) or "all",
        "multinode": s.multinode,
        "via": executor.via,
        "artifact": {"file": artifact.filename, "sha256_16": artifact.digest},
    }
    if baseline is not None:
        meta["baseline"] = baseline
    write_run(run_dir, runs, meta)
    summary = judge(runs, meta)
    write_summary(run_dir, summary)
    return FinishedRun(run_dir, runs, meta, summary)
