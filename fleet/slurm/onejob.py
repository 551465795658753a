"""``verify --via slurm --one-job``: the idle nodes' single-node checks as ONE Slurm job, one ``srun`` task per node.

Per-node jobs (:mod:`fleet.slurm.jobs`) cost one ``sbatch`` per node; for thousands of nodes that is thousands of
submissions.  Here the nodes a per-node run would submit a job to (:func:`fleet.slurm.jobs.route`: ``slurm``, the
idle ones) are the members of one job; every other host keeps the per-node path exactly (busy, unavailable, a node
gpufleet drained re-checked in its reservation or over SSH).  Slurm's job arrays cannot do this: an array's
``--nodelist`` applies to every task, so no task can be pinned to a node.

Each member is prepared over SSH as a per-node job's host is (verify pushed, its absolute install directory, its
directory ``<shared dir>/<run id>/<host>/`` made) and arrives at a partial :class:`fleet.slurm.multinode.Gang`: a
member that cannot be prepared has its own error and the job goes ahead with the members that arrived (none: no
job).  The job is ``sbatch --nodes=K --nodelist=... --exclusive --ntasks-per-node=1 --no-kill`` whose script runs
``srun`` with one task per node and ``--kill-on-bad-exit=0`` (:func:`fleet.slurm.multinode.job_script`); each task
takes its node's branch by ``$SLURMD_NODENAME`` (:func:`fleet.slurm.multinode.node_branch`): that node's
single-node run (:func:`fleet.slurm.jobs.node_line`: torchrun, the host's ``gpufleet_verify_env``, the node-side
``timeout``), its output and exit status written beside its report.  The job is polled with one ``squeue`` every
:data:`fleet.slurm.jobs.POLL_S` (:class:`fleet.slurm.multinode.JobWatch`): pending past ``pending_s`` (``--wait``:
``--timeout``) it is cancelled, every member ``not_scheduled``; running past ``--timeout`` it is cancelled.

Each member is judged alone (:func:`judge`), from its own ``exit`` file, report and output, as a single-node run
(:func:`fleet.runs.node.classify`): a node whose run ended keeps its verdict whatever the others did; a node with
no ``exit`` file when the job was cancelled at ``--timeout`` is ``timed_out``; one whose task never ran is an
error naming why.  Ctrl-C cancels the job.

The members wait for each other's preparation and for the job: the fan-out runs them all at once (one thread and
one SSH connection each while the job runs).
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from typing import Callable, Mapping, Optional

from fleet.inventory import Host
from fleet.outcome import HostError, TimedOut
from fleet.push import Artifact
from fleet.runs.node import VerifySettings, classify, fetch_file
from fleet.runs.record import HostRun
from fleet.slurm import multinode
from fleet.slurm.client import SlurmClient
from fleet.slurm.jobs import SlurmSettings, executor as jobs_executor, node_line, push_absolute
from fleet.slurm.multinode import (
    GUARD_GRACE_S, PREPARE_TIMEOUT_S, Gang, JobEnd, JobWatch, exit_status, fresh_dir_command, no_shared_dir,
    node_branch, shared_dir_of,
)

CANCELLED_STATUSES = (143,)  # sh's status for a run SIGTERM ended: what gpufleet's scancel sends


# -- pure parts ----------------------------------------------------------------------------------------------------

def job_options(nodes: list[str], s: VerifySettings, slurm: SlurmSettings, log: str) -> list[str]:
    """sbatch's options for the one job (argv words): the members' nodes, exclusive, one task per node, going on
    when a node fails (``--no-kill``), a time limit past the node-side guard, the partition/QoS/account and
    ``--slurm-args`` as for per-node jobs."""
    return multinode.job_options(nodes, s, slurm.partition, slurm.qos, slurm.account, slurm.extra, log, no_kill=True)


def job_script(parts: list[tuple[str, str]]) -> str:
    """The batch script for the members in the job (``parts``: ``(node, branch)`` in member order): one ``srun``
    task per node, each running its node's branch."""
    return multinode.job_script(len(parts), multinode.node_script([branch for _, branch in parts]))


def message(job: str, node: str, count: int) -> str:
    """A member's message: its job, its node, how many nodes the job has."""
    return f"Slurm job {job} on {node} (one job for {count} node{'' if count == 1 else 's'})"


def judge(run: HostRun, end: JobEnd, exit_code: Optional[int], data: Optional[bytes], node: str, log: str,
          timeout: float) -> HostRun:
    """One member's outcome, from its own ``exit`` status, report and output and how the job ended (pure; raises
    the member's error with ``run`` as its partial result).

    - an exit status: its run ended, judged as a single-node run (:func:`fleet.runs.node.classify`), whatever
      happened to the others; but 143 (SIGTERM) after gpufleet cancelled the job at ``--timeout`` is that cancel's:
      ``timed_out``;
    - no exit status: how the job ended says why: gpufleet's cancel at ``--timeout`` (``timed_out``) or at its
      pending deadline (``not_scheduled``), an error of the job (sbatch or squeue failed), Slurm's own time limit
      (``timed_out``), a job that ended without running the node's task (its log named), or another end
      (``NODE_FAIL``, ``CANCELLED`` by someone) with Slurm's reason."""
    run.exit_code = exit_code
    if exit_code is not None:
        if end.error is not None and end.error[0] is TimedOut and exit_code in CANCELLED_STATUSES:
            raise TimedOut(end.error[1], partial=run)
        if data is not None:
            run.accept_report(data, "report.json")
        classify(run, timeout)
        return run
    if end.error is not None:
        kind, why = end.error
        raise kind(why, partial=run)
    state = end.info.get("JobState", "")
    if state == "TIMEOUT":
        raise TimedOut(f"Slurm job {end.job} hit its time limit before {node}'s run ended", partial=run)
    if state in ("COMPLETED", "FAILED"):
        raise HostError(f"Slurm job {end.job} ran no task on {node} (its log: {log.replace('%j', end.job)})",
                        partial=run)
    raise HostError(f"Slurm job {end.job} ended {state} before {node}'s run ended ({end.info.get('Reason', '')})",
                    partial=run)


# -- the job -------------------------------------------------------------------------------------------------------

@dataclass
class OneJob:
    """The members' one job: their gang (partial), the watch over the job, its log; a member's work
    (:meth:`task`), its Ctrl-C (:meth:`stop`) and the end of the fan-out (:meth:`close`), as
    :func:`fleet.slurm.jobs.executor` calls them."""

    names: list  # the members' host names, in inventory order
    nodes: dict  # host -> Slurm node
    gang: Gang
    watch: JobWatch
    log: str
    artifact: Artifact
    s: VerifySettings
    shared_dir: str
    stage: Callable[[str, str], None]

    def task(self, t) -> HostRun:
        """Prepare the member over SSH, arrive at the gang, then judge it alone from what its task left."""
        host, s = t.host, self.s
        node = self.nodes[host.name]
        run = HostRun(host.name)
        directory = shared_dir_of(self.shared_dir, s.run_id, host.name)
        part, why = None, "its preparation stopped"
        try:
            try:
                pushed = push_absolute(t, run, self.artifact, s, self.stage)
                r = t.run(fresh_dir_command(directory), timeout=PREPARE_TIMEOUT_S)
                if r.exit_code != 0:
                    raise no_shared_dir(directory, r)
                line = node_line(host, pushed, s, f"{directory}/report.json", s.timeout + GUARD_GRACE_S)
                part = (node, node_branch(node, line, directory))
            except HostError as e:
                why = str(e)
                raise
            finally:
                end = self.gang.arrive(host.name, part, why)
            code = data = None
            if end.job:
                run.message = message(end.job, node, len(self.gang.joined))
                self.stage(host.name, "fetching")
                run.output += (fetch_file(t, f"{directory}/output.log") or b"").decode("utf-8", "replace")
                code = exit_status(fetch_file(t, f"{directory}/exit"))
                data = fetch_file(t, f"{directory}/report.json")
        except HostError as e:
            e.partial = run
            raise
        return judge(run, end, code, data, node, self.log, s.timeout)

    def stop(self, t) -> None:
        """Ctrl-C on a member: cancel the job (once)."""
        self.watch.cancel()

    def close(self, interrupted: bool) -> None:
        """After the fan-out: an interrupted run cancels the job and releases members still waiting."""
        if interrupted:
            self.watch.cancel()
            self.gang.abandon("interrupted before every member was prepared")


def one_job(client: SlurmClient, slurm: SlurmSettings, routes: Mapping, hosts: list[Host], artifact: Artifact,
            s: VerifySettings, progress) -> OneJob:
    """The run's one job: its members are the hosts routed ``slurm`` (:func:`fleet.slurm.multinode.members`)."""
    group = multinode.members(hosts, routes)
    names = [h.name for h in group]
    nodes = {n: routes[n].node for n in names}
    log = posixpath.join(slurm.shared_dir, s.run_id, "slurm-%j.out")
    watch = JobWatch(client, s, s.timeout if slurm.wait else slurm.pending_s,
                     on_running=lambda: [progress.stage(n, "running") for n in gang.joined])

    def submit(parts: list) -> JobEnd:
        for n in gang.joined:
            progress.stage(n, "queued")
        return watch.run(job_options([node for node, _ in parts], s, slurm, log), job_script(parts))

    gang = Gang(names, submit, partial=True)
    gang.drop_unstartable(group)
    return OneJob(names, nodes, gang, watch, log, artifact, s, slurm.shared_dir, progress.stage)


def executor(client: SlurmClient, slurm: SlurmSettings, hosts: list[Host]):
    """``verify --via slurm --one-job``: :func:`fleet.slurm.jobs.executor` with the idle nodes' checks in
    :func:`one_job` (a :class:`fleet.runs.node.Executor`).  The nodes' state is read here, before anything is
    written (Slurm unreachable: :class:`fleet.slurm.client.SlurmError`)."""

    def together(routes: Mapping, hosts: list[Host], artifact: Artifact, s: VerifySettings, progress) -> OneJob:
        return one_job(client, slurm, routes, hosts, artifact, s, progress)

    return jobs_executor(client, slurm, hosts, together=together)
