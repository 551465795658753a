"""``verify --via slurm --multinode``: one Slurm job spanning the selected nodes.

The nodes a single-node run would submit jobs to (:func:`fleet.slurm.jobs.route`: not busy, not drained or down,
known to Slurm) are the job's members, in inventory order; a node routed elsewhere is not in the job and keeps its
state (``busy``, ``unavailable``, an error for a node Slurm does not know; a node drained by gpufleet is
``unavailable`` here: a drained node takes no job, and a multi-node run cannot include it over SSH).  Fewer than
two members: no job, each member an error saying why.

Each member is prepared over SSH as a single-node job's host is (verify pushed, its absolute install directory;
its report directory ``<shared dir>/<run id>/<host>/`` made; the rendezvous preflight of the SSH path, which picks
GLOO/NCCL_SOCKET_IFNAME).  Then ONE ``sbatch --nodes=k --nodelist=... --exclusive --ntasks-per-node=1`` whose
script runs ``srun`` with one task per node (:func:`job_script`); each task finds its branch by
``$SLURMD_NODENAME`` (:func:`node_script`) and starts that node's torchrun with ``nnodes=k``, its ``node_rank``
(its index among the members), the rendezvous on the FIRST member's address and ``local_addr`` its own.  An
address is the node's ``NodeAddr`` when Slurm gives an IP address there, else :func:`fleet.runs.node.rdzv_addr`
(never a host name: Slurm's NodeAddr defaults to the node's name).  Each node's output and torchrun's exit status
land beside its report (``output.log``, ``exit``); all three are read back over SSH and judged as over SSH
(:func:`fleet.runs.node.classify`, :func:`fleet.runs.node.stopped_members`).

The job is polled with one ``squeue`` every :data:`fleet.slurm.jobs.POLL_S`: pending past ``pending_s`` (or
``--timeout`` with ``--wait``) it is cancelled and the members are ``not_scheduled``; running past ``--timeout``
it is cancelled and they are ``timed_out`` (the node-side ``timeout`` guard, :data:`GUARD_GRACE_S` later, and
Slurm's ``--time`` are the guards behind it); Ctrl-C cancels it.
"""

from __future__ import annotations

import ipaddress
import math
import posixpath
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Mapping, Optional

from fleet.inventory import Host
from fleet.inventory.connection import connect_problem
from fleet.outcome import HostError, TimedOut
from fleet.push import Artifact
from fleet.runs.node import (
    IFNAME_VARS, VerifySettings, classify, fetch_file, hostname_note, node_run_dir, nproc_for, parse_preflight,
    preflight_command, rdzv_addr, run_command_line, stopped_members, torchrun_argv, verify_env,
)
from fleet.runs.record import HostRun, Member
from fleet.runs.run_dir import safe_name
from fleet.shell import quote
from fleet.slurm.client import SlurmClient, SlurmError
from fleet.slurm.jobs import POLL_S, Busy, NotScheduled, Unavailable, push_absolute, read_routes
from fleet.slurm.nodes import fields

GUARD_GRACE_S = 30.0  # the node-side `timeout` fires this long after --timeout: gpufleet's cancel comes first
MIN_NODES = 2
PREPARE_TIMEOUT_S = 60.0  # a ceiling on the one round trip that prepares a member (mkdir, preflight)


# -- pure parts ----------------------------------------------------------------------------------------------------

def members(hosts: list[Host], routes: Mapping) -> list[Host]:
    """The hosts in the job, in inventory order: those a single-node run would submit (route ``slurm``)."""
    return [h for h in hosts if routes[h.name].how == "slurm"]


def left_out(route) -> HostError:
    """The error of a host not in the job, from its route (``busy``, ``unavailable``, ``unknown`` as a single-node
    run says; a node drained by gpufleet is ``unavailable`` here)."""
    if route.how in ("ssh", "recheck"):  # drained by gpufleet: a single-node run re-checks it, this job cannot
        return Unavailable(f"node {route.node} is drained by gpufleet: a drained node takes no job, so it is not in "
                           f"the multi-node job (re-check it with a run without --multinode)")
    return {"busy": Busy, "unavailable": Unavailable}.get(route.how, HostError)(route.why)


def too_few(names: list[str], routes: Mapping, hosts: list[Host], flag: str = "--multinode") -> str:
    """The message of each remaining host when fewer than :data:`MIN_NODES` nodes can be in the job."""
    out = [h.name for h in hosts if h.name not in names]
    have = f"only {len(names)} node{'' if len(names) == 1 else 's'} can join" if names else "no node can join"
    return (f"{flag} needs at least {MIN_NODES} Slurm nodes: {have} ("
            + ", ".join(f"{n}: {routes[n].how}" for n in out) + "): no job submitted")


def parse_node_addrs(text: str) -> dict[str, str]:
    """``scontrol -o show node``'s lines -> ``{node: NodeAddr}``, only where NodeAddr is an IP address (Slurm's
    NodeAddr defaults to the node's name, which the nodes would have to resolve)."""
    out = {}
    for line in text.splitlines():
        f = fields(line.strip())
        name, addr = f.get("NodeName"), f.get("NodeAddr", "")
        if name and _is_ip(addr):
            out[name] = addr
    return out


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def rendezvous(hosts: list[Host], nodes: Mapping[str, str], addrs: Mapping[str, str], port: int) -> dict:
    """Each member's ``{nnodes, node_rank, endpoint, local_addr}``: the endpoint on the first member's address,
    ``local_addr`` its own; a node's address is its NodeAddr (``addrs``, node -> address) else
    :func:`rdzv_addr` of its host.  ``nodes``: host -> Slurm node."""
    def addr(h: Host) -> str:
        return addrs.get(nodes[h.name]) or rdzv_addr(h)

    endpoint = f"{addr(hosts[0])}:{port}"
    return {h.name: {"nnodes": len(hosts), "node_rank": i, "endpoint": endpoint, "local_addr": addr(h)}
            for i, h in enumerate(hosts)}


def shared_dir_of(shared_dir: str, run_id: str, host: str) -> str:
    """A host's directory on the shared filesystem: its report, its output and torchrun's exit status."""
    return posixpath.join(shared_dir, run_id, safe_name(host))


def node_branch(node: str, line: str, directory: str) -> str:
    """One node's branch of :func:`node_script`: its output to ``<directory>/output.log``, the run line (its own
    ``sh``, whose pid the line records), torchrun's exit status to ``<directory>/exit``."""
    out, status = quote(f"{directory}/output.log"), quote(f"{directory}/exit")
    return (f"{quote(node)}) exec >>{out} 2>&1; sh -c {quote(line)}; rc=$?; echo \"$rc\" >{status}; "
            f"exit \"$rc\";;")


def node_script(branches: list[str]) -> str:
    """What each srun task runs: the branch of the node it landed on (``$SLURMD_NODENAME``)."""
    return ("case \"$SLURMD_NODENAME\" in\n" + "".join(f"{b}\n" for b in branches)
            + "*) echo \"gpufleet: node $SLURMD_NODENAME is not in this run\" >&2; exit 2;;\nesac")


def job_script(count: int, script: str) -> str:
    """The batch script: one srun task per node, each running :func:`node_script`; a failed task does not kill
    the others (each node writes its own report)."""
    return (f"exec srun --nodes={count} --ntasks={count} --ntasks-per-node=1 --kill-on-bad-exit=0 "
            f"sh -c {quote(script)}")


def job_options(nodes: list[str], s: VerifySettings, partition: Optional[str], qos: Optional[str],
                account: Optional[str], extra: tuple, log: str, no_kill: bool = False) -> list[str]:
    """sbatch's options for the one job (argv words): its nodes, exclusive, one task per node, a time limit past
    the node-side guard.  ``no_kill``: the job goes on when one of its nodes fails (``--one-job``: each node's
    check is its own)."""
    minutes = max(1, math.ceil((s.timeout + GUARD_GRACE_S) / 60) + 1)
    opts = [f"--nodes={len(nodes)}", f"--nodelist={','.join(nodes)}", "--exclusive", "--ntasks-per-node=1",
            *(["--no-kill"] if no_kill else []), f"--job-name=gpufleet-verify-{s.run_id}", f"--time={minutes}",
            f"--output={log}", "--open-mode=append"]
    for flag, value in (("--partition", partition), ("--qos", qos), ("--account", account)):
        if value:
            opts.append(f"{flag}={value}")
    return opts + list(extra)


def fresh_dir_command(directory: str) -> str:
    """The shell line that makes a member's shared directory and removes an earlier run's ``exit`` there."""
    return f"mkdir -p {quote(directory)} && rm -f {quote(directory + '/exit')}"


def no_shared_dir(directory: str, r) -> HostError:
    """The error of a member whose shared directory could not be made (``r``: the command's result)."""
    return HostError(f"cannot make {directory} on the shared filesystem: "
                     f"{(r.stderr.strip().splitlines() or ['exit ' + str(r.exit_code)])[-1]}")


def exit_status(text: Optional[bytes]) -> Optional[int]:
    """The ``exit`` file's number; None when there is none (the node's task never ran)."""
    try:
        return int((text or b"").decode().strip())
    except ValueError:
        return None


# -- the job -------------------------------------------------------------------------------------------------------

FINAL = frozenset({"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED",
                   "BOOT_FAIL", "DEADLINE"})


@dataclass
class JobEnd:
    """How the job ended: its record (``info``), or the error every member reports (``error``: its class and
    message)."""

    job: str = ""
    info: dict = field(default_factory=dict)
    error: Optional[tuple] = None


@dataclass
class Gang:
    """The members' meeting point: each member's worker arrives with its node's part of the job (its branch; what
    a part is, the gang does not look at) or drops out; the last to arrive submits the job and waits for it; every
    member gets the same :class:`JobEnd`.

    All or nothing (``--multinode``: a rendezvous needs every member): a member that dropped out means no job.
    ``partial`` (``--one-job``: each node's check is its own): the job is submitted with the members that arrived,
    and none arrived means no job."""

    names: list  # the members' host names
    submit: Callable[[list], JobEnd]  # the parts of the members in the job, in member order -> how the job ended
    partial: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)
    branches: dict = field(default_factory=dict)
    dropped: dict = field(default_factory=dict)  # host -> why
    joined: list = field(default_factory=list)  # the members in the job, once submitted
    end: Optional[JobEnd] = None
    ended: threading.Event = field(default_factory=threading.Event)

    def arrive(self, host: str, branch, why: str = "") -> JobEnd:
        """Arrive with the node's part (None: it could not be prepared, ``why``); the job's end, once known."""
        with self.lock:
            if branch is None:
                self.dropped[host] = why
            else:
                self.branches[host] = branch
            last = len(self.branches) + len(self.dropped) == len(self.names)
        if last:
            try:
                who = "; ".join(f"{h}: {w}" for h, w in self.dropped.items())
                if self.dropped and not self.partial:
                    self.end = JobEnd(error=(HostError, f"no job submitted: a member could not be prepared ({who})"))
                elif not self.branches:
                    self.end = JobEnd(error=(HostError, f"no job submitted: no member could be prepared ({who})"))
                else:
                    self.joined = [n for n in self.names if n in self.branches]
                    self.end = self.submit([self.branches[n] for n in self.joined])
            finally:
                if self.end is None:
                    self.end = JobEnd(error=(HostError, "no job submitted"))
                self.ended.set()
        self.ended.wait()
        return self.end

    def drop_unstartable(self, hosts: list[Host]) -> None:
        """Drop now the members the fan-out cannot even start (an inventory entry that cannot be connected to: their
        task never runs, so they would never arrive)."""
        for h in hosts:
            problem = connect_problem(h.name, h.vars)
            if problem:
                self.dropped[h.name] = problem

    def abandon(self, why: str) -> None:
        """The run ended with members that never arrived (interrupted before their work began): release the
        others."""
        with self.lock:
            if self.end is None:
                self.end = JobEnd(error=(HostError, why))
        self.ended.set()


@dataclass
class JobWatch:
    """Submits the one job and polls it: one ``squeue`` every ``poll_s``; cancels it at its deadlines or on
    :meth:`cancel` (Ctrl-C)."""

    client: SlurmClient
    s: VerifySettings
    pending_s: float
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    poll_s: float = POLL_S
    on_running: Callable[[], None] = lambda: None
    job: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)
    cancelled: bool = False

    def cancel(self) -> None:
        with self.lock:
            job, first = self.job, not self.cancelled
            self.cancelled = True
        if job and first:
            try:
                self.client.cancel([job])
            except SlurmError:
                pass

    def run(self, options: list[str], script: str) -> JobEnd:
        with self.lock:
            if self.cancelled:
                return JobEnd(error=(HostError, "interrupted before the job was submitted"))
        try:
            job = self.client.sbatch(options, script)
        except SlurmError as exc:
            return JobEnd(error=(HostError, f"sbatch failed: {exc}"))
        with self.lock:
            self.job, late = job, self.cancelled
        if late:  # Ctrl-C came while sbatch ran
            self.client.cancel([job])
        try:
            return self._wait(job)
        except SlurmError as exc:
            self.client.cancel([job])
            return JobEnd(job, error=(HostError, f"Slurm job {job}: {exc}"))

    def _wait(self, job: str) -> JobEnd:
        start, running_since = self.clock(), None
        while True:
            seen = self.client.states([job]).get(job)
            if seen is None or seen[0] in FINAL:  # ended (or gone from squeue): its record says how
                info = self.client.job(job)
                if info is None:
                    return JobEnd(job, error=(HostError, f"Slurm job {job}: Slurm forgot it before gpufleet saw "
                                                         f"it end"))
                if info.get("JobState", "") in FINAL:
                    return JobEnd(job, info)
                seen = (info.get("JobState", ""), info.get("Reason", ""))
            state, reason = seen
            now = self.clock()
            if state == "RUNNING" and running_since is None:
                running_since = now
                self.on_running()
            if running_since is None and now - start > self.pending_s:
                self.cancel()
                return JobEnd(job, error=(NotScheduled, f"Slurm job {job} still {(state or 'pending').lower()} "
                                                        f"after {self.pending_s:g} s ({reason}): cancelled"))
            if running_since is not None and now - running_since > self.s.timeout:
                self.cancel()
                return JobEnd(job, error=(TimedOut, f"Slurm job {job} ran past {self.s.timeout:g} s: cancelled"))
            self.sleep(self.poll_s)


# -- the run -------------------------------------------------------------------------------------------------------

def node_addrs(client: SlurmClient, nodes: list[str]) -> dict[str, str]:
    """The nodes' NodeAddr (IP addresses only, :func:`parse_node_addrs`); {} when Slurm will not say (the
    inventory's addresses are used)."""
    try:
        r = client.run("scontrol", "-o", "show", "node", ",".join(nodes))
    except SlurmError:
        return {}
    return parse_node_addrs(r.stdout)


def _prepare(t, run: HostRun, rdzv: dict, env: dict, directory: str, stage) -> dict:
    """One round trip over SSH: the host's shared directory made (an earlier ``exit`` removed), and the SSH
    path's rendezvous preflight (:func:`fleet.runs.node.preflight_command`) on the node.  The environment with the
    interface towards the rendezvous (unless the inventory sets it); a note on a host name that would send peers
    elsewhere."""
    endpoint_addr = rdzv["endpoint"].rpartition(":")[0]
    r = t.run(f"{fresh_dir_command(directory)} && {{ {preflight_command(endpoint_addr)}; }}",
              timeout=PREPARE_TIMEOUT_S)
    if r.exit_code != 0:
        raise no_shared_dir(directory, r)
    found = parse_preflight(r.stdout, rdzv["local_addr"])
    note = hostname_note(t.host.name, found, rdzv["local_addr"])
    if note:
        stage(t.host.name, f"note: {note}")
        run.output += f"gpufleet: {note}\n"
    return {**{k: found.ifname for k in IFNAME_VARS}, **env} if found.ifname else env


@dataclass
class Pack:
    """One job of a run: its members (host names, in node-rank order), their rendezvous, the gang they meet in and
    the watch over the job."""

    names: list
    rdzv: dict  # host -> {nnodes, node_rank, endpoint, local_addr}
    nodes: list  # the members' Slurm nodes
    watch: JobWatch
    gang: Gang
    log: str


def _pack(client: SlurmClient, slurm, group: list[Host], nodes: Mapping, addrs: Mapping, s: VerifySettings,
          progress) -> Pack:
    names = [h.name for h in group]
    watch = JobWatch(client, s, s.timeout if slurm.wait else slurm.pending_s,
                     on_running=lambda: [progress.stage(n, "running") for n in names])
    log = posixpath.join(slurm.shared_dir, s.run_id, "slurm-%j.out")
    opts = job_options([nodes[n] for n in names], s, slurm.partition, slurm.qos, slurm.account, slurm.extra, log)

    def submit(branches: list) -> JobEnd:
        for n in names:
            progress.stage(n, "queued")
        return watch.run(opts, job_script(len(branches), node_script(branches)))

    gang = Gang(names, submit)
    gang.drop_unstartable(group)
    return Pack(names, rendezvous(group, nodes, addrs, s.rdzv_port), [nodes[n] for n in names], watch, gang, log)


def executor(client: SlurmClient, slurm, hosts: list[Host]):
    """``verify --via slurm --multinode``: the run as one job spanning the nodes (a
    :class:`fleet.runs.node.Executor`, :func:`run_multinode`).  The nodes' state is read here, before anything is
    written (Slurm unreachable: :class:`SlurmError`)."""
    from fleet.runs.node import Executor

    routes = read_routes(client, hosts, slurm.wait)

    def run(hosts, artifact: Artifact, s: VerifySettings, options, progress) -> tuple[list[HostRun], bool]:
        return run_multinode(client, slurm, routes, hosts, artifact, s, options, progress)

    return Executor("slurm", run)


def run_multinode(client: SlurmClient, slurm, routes: Mapping, hosts: list[Host], artifact: Artifact,
                  s: VerifySettings, options, progress) -> tuple[list[HostRun], bool]:
    """The run as one job (see the module): every host's HostRun in inventory order, and whether it was
    interrupted.  ``slurm``: a :class:`fleet.slurm.jobs.SlurmSettings`."""
    hosts = list(hosts)
    names = [h.name for h in members(hosts, routes)]
    few = too_few(names, routes, hosts) if len(names) < MIN_NODES else ""
    runs, interrupted = run_groups(client, slurm, routes, hosts, [] if few else [names], artifact, s, options,
                                   progress, few)
    stopped_members([r for r in runs if r.host in names and not few])
    return runs, interrupted


def run_groups(client: SlurmClient, slurm, routes: Mapping, hosts: list[Host], groups: list, artifact: Artifact,
               s: VerifySettings, options, progress, few: str = "") -> tuple[list[HostRun], bool]:
    """``groups`` (lists of host names, each in node-rank order) as jobs at once, one job per group; every host's
    HostRun in inventory order (a host in no group: its route's error, or ``few``), and whether the run was
    interrupted.  ``slurm``: a :class:`fleet.slurm.jobs.SlurmSettings`."""
    import dataclasses

    from fleet.fanout import run_fleet
    from fleet.runs.node import host_runs

    hosts = list(hosts)
    by_name = {h.name: h for h in hosts}
    nodes = {h.name: routes[h.name].node for h in hosts}
    addrs = node_addrs(client, [nodes[n] for g in groups for n in g]) if groups else {}
    packs = [_pack(client, slurm, [by_name[n] for n in g], nodes, addrs, s, progress) for g in groups]
    pack_of = {n: p for p in packs for n in p.names}

    def task(t) -> HostRun:
        host = t.host
        r = routes[host.name]
        pack = pack_of.get(host.name)
        if pack is None:
            if few and r.how == "slurm":
                raise HostError(few)
            raise left_out(r)
        me = pack.rdzv[host.name]
        run = HostRun(host.name, member=Member(me["node_rank"], me["nnodes"], me["endpoint"]))
        directory = shared_dir_of(slurm.shared_dir, s.run_id, host.name)
        branch, why = None, "its preparation stopped"
        try:
            try:
                pushed = push_absolute(t, run, artifact, s, progress.stage)
                env = _prepare(t, run, me, verify_env(host), directory, progress.stage)
                here = node_run_dir(s.run_id, host.name)
                argv = torchrun_argv(pushed.python, nproc_for(s.nproc, pushed.probe), f"{directory}/report.json", s,
                                     me)
                line = run_command_line(argv, env, pushed.directory, here, s.timeout + GUARD_GRACE_S)
                branch = node_branch(r.node, line, directory)
            except HostError as e:
                why = str(e)
                raise
            finally:
                end = pack.gang.arrive(host.name, branch, why)
            run.message = f"Slurm job {end.job} on {','.join(pack.nodes)} (node_rank {me['node_rank']})" \
                if end.job else ""
            if end.job:
                run.output += (fetch_file(t, f"{directory}/output.log") or b"").decode("utf-8", "replace")
            if end.error is not None:
                kind, message = end.error
                raise kind(message)
            progress.stage(host.name, "fetching")
            run.exit_code = exit_status(fetch_file(t, f"{directory}/exit"))
            data = fetch_file(t, f"{directory}/report.json")
        except HostError as e:
            e.partial = run
            raise
        state = end.info.get("JobState", "")
        if state == "TIMEOUT":
            raise TimedOut(f"Slurm job {end.job} hit its time limit", partial=run)
        if state not in ("COMPLETED", "FAILED"):
            raise HostError(f"Slurm job {end.job} ended {state} ({end.info.get('Reason', '')})", partial=run)
        if run.exit_code is None and data is None:
            raise HostError(f"Slurm job {end.job} ran no task on {r.node} (its log: "
                            f"{pack.log.replace('%j', end.job)})", partial=run)
        if data is not None:
            run.accept_report(data, "report.json")
        classify(run, s.timeout)
        return run

    def stop(t) -> None:
        pack = pack_of.get(t.host.name)
        if pack is not None:
            pack.watch.cancel()

    options = dataclasses.replace(options, forks=max(options.forks, len(hosts)))  # the members meet: all at once
    result = run_fleet(hosts, task, options, desc="verify", progress=progress, stop=stop)
    if result.interrupted:
        for pack in packs:
            pack.watch.cancel()
            pack.gang.abandon("interrupted before every member was prepared")
    return host_runs(result), result.interrupted


def pair_runner(client: SlurmClient, slurm, hosts: list[Host]):
    """``verify --via slurm --multinode --pairwise``: each round's pairs (and group of three) as jobs at once, one
    job per group (:func:`run_groups`: the group's nodes, ``--exclusive``, the pair timeout as the job's deadline
    and Slurm's ``--time``).  A host whose node takes no job (busy, drained, unknown to Slurm) is left out of the
    pairing with its route's error (:func:`left_out`); fewer than two left to pair: none is paired, each says why.
    The nodes' state is read here, before anything is written (Slurm unreachable: :class:`SlurmError`).  A
    :class:`fleet.runs.pairwise_run.PairRunner`."""
    from fleet.runs.pairwise_run import PairRunner

    hosts = list(hosts)
    routes = read_routes(client, hosts, slurm.wait)
    names = [h.name for h in members(hosts, routes)]
    left = {h.name: left_out(routes[h.name]) for h in hosts if h.name not in names}
    if len(names) < MIN_NODES:
        few = too_few(names, routes, hosts, "--pairwise")
        left.update({n: HostError(few) for n in names})

    def run(groups: list, by_name: Mapping[str, Host], artifact: Artifact, rs: VerifySettings, options,
            progress) -> tuple[dict, bool]:
        group_hosts = [by_name[n] for g in groups for n in g]
        runs, interrupted = run_groups(client, slurm, routes, group_hosts, [list(g) for g in groups], artifact, rs,
                                       options, progress)
        return {r.host: r for r in runs}, interrupted

    return PairRunner("slurm", run, left)
