"""``verify --via slurm``: one Slurm job per node, so that no benchmark ever runs beside someone's job.

Per selected host (its Slurm node: ``gpufleet_slurm_node``, else its inventory name), from the node's state
read once before anything is submitted (:func:`route`):

- **busy** (running someone's jobs): not checked, ``busy`` (a skip, not a failure), unless ``--wait`` queues
  a job behind theirs;
- **drained or down by someone else**: ``unavailable``, left alone;
- **drained by gpufleet** (and running no jobs): re-checked as a job like an idle node's, inside the maintenance
  reservation gpufleet holds for the run (:mod:`fleet.slurm.reservation`, :func:`recheck_window`), so that it can
  earn its way back (``slurm-sync`` resumes it after enough passing runs); with ``--recheck-via ssh``, checked
  directly over SSH instead, as before; still running jobs (draining): ``busy``, not re-checked;
- otherwise: verify is pushed over SSH as usual, then submitted as a job pinned to the node
  (``--nodelist``, ``--exclusive``, the partition/QoS/account given, a time limit from ``--timeout``) running
  the pushed verify under torchrun with the host's ``gpufleet_verify_env``.  The job starts in the submit
  directory, so its script names the install directory and its Python by the absolute paths the push resolved
  on the node (``gpufleet_remote_dir`` may be relative to the login's home, as the default is).  The report is
  written to ``<shared dir>/<run id>/<host>/report.json`` on the cluster's shared filesystem and read back from
  there.

The run's jobs are polled together (:class:`JobBook`: one ``squeue`` every :data:`POLL_S` for all of them, an
ended job's record read once).  A job still pending at its deadline is cancelled and the host is
``not_scheduled``; one running past ``--timeout`` is cancelled and ``timed_out``.  Ctrl-C cancels every job this
run submitted.

With ``--one-job`` (:mod:`fleet.slurm.onejob`), the hosts routed to a job share ONE job instead, one ``srun`` task
per node; every other host goes its way as above (:func:`executor`'s ``together``).
"""

from __future__ import annotations

import math
import posixpath
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Mapping

from fleet.inventory import Host
from fleet.outcome import HostError, HostState, TimedOut
from fleet.push import Artifact
from fleet.runs.node import (
    VerifySettings, fetch_file, classify, node_run_dir, node_task, nproc_for, push_for, run_command_line,
    stop_installed, torchrun_argv, verify_env,
)
from fleet.runs.record import HostRun
from fleet.runs.run_dir import safe_name
from fleet.shell import quote
from fleet.slurm import reservation
from fleet.slurm.client import SlurmClient, SlurmError
from fleet.slurm.nodes import SlurmNode, node_of

POLL_S = 2.0
DEFAULT_PENDING_S = 120.0  # without --wait: how long an idle node's job may stay pending before it is given up


class Busy(HostError):
    state = HostState.BUSY


class NotScheduled(HostError):
    state = HostState.NOT_SCHEDULED


class Unavailable(HostError):
    state = HostState.UNAVAILABLE


@dataclass
class SlurmSettings:
    shared_dir: str  # on the cluster's shared filesystem, the same path on every node
    partition: str | None = None
    qos: str | None = None
    account: str | None = None
    extra: tuple = ()  # --slurm-args, split
    wait: bool = False  # queue behind other jobs instead of skipping a busy node
    pending_s: float = DEFAULT_PENDING_S
    recheck_via: str = "slurm"  # a node gpufleet drained: a job in its reservation (slurm), or over SSH (ssh)
    one_job: bool = False  # --one-job: the idle nodes' checks in one job (fleet.slurm.onejob)


@dataclass
class Route:
    how: str  # slurm | recheck | ssh | busy | unavailable | unknown | error
    node: str
    why: str = ""
    reason: str = ""  # recheck: the node's drain reason, written again after the re-check


def route(hosts: list[Host], nodes: Mapping[str, SlurmNode], wait: bool, recheck_via: str = "ssh"
          ) -> dict[str, Route]:
    """How each host is checked, from its node's state (pure).  ``recheck_via``: how a node gpufleet drained is
    checked: ``slurm`` (a job in gpufleet's reservation: ``recheck``) or ``ssh`` (directly, beside Slurm)."""
    out = {}
    for h in hosts:
        name = node_of(h.name, h.vars)
        n = nodes.get(name)
        if n is None:
            out[h.name] = Route("unknown", name, f"Slurm has no node {name!r} (set gpufleet_slurm_node)")
        elif n.drained and n.ours and n.busy:
            out[h.name] = Route("busy", name, f"node {name} is {n.state.lower()} (drained by gpufleet, still running "
                                              f"jobs): not re-checked")
        elif n.drained and n.ours and not n.down and recheck_via == "slurm":
            out[h.name] = Route("recheck", name, f"drained by gpufleet ({n.reason}): re-checked in reservation "
                                                 f"{reservation.NAME}", n.reason)
        elif (n.drained or n.down) and n.ours:
            out[h.name] = Route("ssh", name, f"drained by gpufleet ({n.reason}): checked over SSH")
        elif n.drained or n.down:
            out[h.name] = Route("unavailable", name, f"node {name} is {n.describe()}: left alone")
        elif n.busy and not wait:
            out[h.name] = Route("busy", name, f"node {name} is {n.state.lower()} (running jobs): not checked; "
                                              f"--wait queues behind them")
        else:
            out[h.name] = Route("slurm", name, f"node {name} is {n.state.lower()}")
    return out


def read_routes(client: SlurmClient, hosts: list[Host], wait: bool, recheck_via: str = "ssh") -> dict[str, Route]:
    """:func:`route` on the nodes' state as Slurm gives it now (one ``scontrol -o show node``; :class:`SlurmError`
    when Slurm cannot be asked)."""
    return route(hosts, client.nodes(sorted({node_of(h.name, h.vars) for h in hosts})), wait, recheck_via)


def job_options(host: Host, node: str, s: VerifySettings, slurm: SlurmSettings, log: str,
                reservation_name: str | None = None) -> list[str]:
    """sbatch's options for one host's job (argv words; quoted when sent over SSH); ``reservation_name``: the
    reservation the job runs in (a re-check)."""
    minutes = max(1, math.ceil(s.timeout / 60) + 1)
    opts = [f"--nodelist={node}", "--nodes=1", "--exclusive", f"--job-name=gpufleet-verify-{s.run_id}",
            f"--time={minutes}", f"--output={log}", "--open-mode=append"]
    if reservation_name:
        opts.append(f"--reservation={reservation_name}")
    for flag, value in (("--partition", slurm.partition), ("--qos", slurm.qos), ("--account", slurm.account)):
        if value:
            opts.append(f"{flag}={value}")
    return opts + list(slurm.extra)


@dataclass
class JobBook:
    """The jobs this run submitted and waits on (host -> job id): Ctrl-C cancels every one of them, and one
    ``squeue`` for all of them, at most every ``poll_s``, tells each host's worker its job's state (one query per
    tick for the run, not one per host)."""

    client: SlurmClient | None = None
    clock: Callable[[], float] = time.monotonic
    poll_s: float = POLL_S
    jobs: dict = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    _states: dict = field(default_factory=dict)  # the last query's answer
    _asked: frozenset = frozenset()  # the jobs it asked about
    _at: float | None = None  # when

    def add(self, host: str, job: str) -> None:
        with self.lock:
            self.jobs[host] = job

    def pop(self, host: str) -> str | None:
        with self.lock:
            return self.jobs.pop(host, None)

    def state(self, job: str) -> tuple[str, str] | None:
        """``(JobState, Reason)`` of ``job`` as of the last query, asking again when it is ``poll_s`` old; ``("",
        "")`` while no query has asked about it yet; None once Slurm no longer lists it."""
        with self.lock:
            now = self.clock()
            if self._at is None or now - self._at >= self.poll_s:
                asked = frozenset(self.jobs.values()) | {job}
                self._states, self._asked, self._at = self.client.states(sorted(asked)), asked, now
            if job not in self._asked:
                return ("", "")
            return self._states.get(job)


def _exit_status(info: Mapping) -> int | None:
    """``ExitCode=rc:signal`` -> the shell's exit status (128 + signal when killed)."""
    rc, _, sig = str(info.get("ExitCode", "")).partition(":")
    try:
        rc_i, sig_i = int(rc), int(sig or 0)
    except ValueError:
        return None
    return 128 + sig_i if sig_i else rc_i


FINAL = frozenset({"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED",
                   "BOOT_FAIL", "DEADLINE"})


def push_absolute(t, run: HostRun, artifact: Artifact, s: VerifySettings, stage: Callable[[str, str], None]):
    """Push verify to the host for a job (:func:`fleet.runs.node.push_for`); its install directory must be
    absolute, since a job starts in the submit directory, not the login's home."""
    pushed = push_for(t, run, artifact, s, stage)
    if not posixpath.isabs(pushed.directory):
        raise HostError(f"verify's install directory {pushed.directory!r} is not absolute: a Slurm job would not "
                        "find it")
    return pushed


def node_line(host: Host, pushed, s: VerifySettings, report: str, guard: float) -> str:
    """A node's single-node run as a job runs it: torchrun from the pushed environment (absolute paths), the host's
    ``gpufleet_verify_env``, the report to ``report`` (on the shared filesystem), the node-side ``timeout`` at
    ``guard`` seconds."""
    argv = torchrun_argv(pushed.python, nproc_for(s.nproc, pushed.probe), report, s)
    return run_command_line(argv, verify_env(host), pushed.directory, node_run_dir(s.run_id, host.name), guard)


def slurm_task(artifact: Artifact, s: VerifySettings, slurm: SlurmSettings, client: SlurmClient,
               routes: Mapping[str, Route], book: JobBook, stage: Callable[[str, str], None],
               installed: dict | None = None, clock: Callable[[], float] = time.monotonic,
               sleep: Callable[[float], None] = time.sleep):
    """The per-host work under Slurm (see the module); ``installed``: filled with the absolute install directory of
    each host run over SSH (for the stop)."""
    direct = node_task(artifact, s, stage, installed=installed)

    def task(t) -> HostRun:
        host = t.host
        r = routes[host.name]
        if r.how == "busy":
            raise Busy(r.why)
        if r.how == "unavailable":
            raise Unavailable(r.why)
        if r.how in ("unknown", "error"):
            raise HostError(r.why)
        if r.how == "ssh":
            return direct(t)
        run = HostRun(host.name)
        try:
            pushed = push_absolute(t, run, artifact, s, stage)
            shared = posixpath.join(slurm.shared_dir, s.run_id, safe_name(host.name))
            report = f"{shared}/report.json"
            line = node_line(host, pushed, s, report, s.timeout)
            t.run(f"mkdir -p {quote(shared)}", timeout=30)  # the shared directory, as the job will see it
            if r.how == "recheck":  # drained: inside the reservation now, back in the pool for its job only
                try:
                    client.resume(r.node)
                except SlurmError as exc:
                    raise HostError(f"{r.node} could not be resumed for its re-check: {exc}") from None
            stage(host.name, "queued")
            try:
                job = client.sbatch(job_options(host, r.node, s, slurm, f"{shared}/slurm-%j.out",
                                                reservation.NAME if r.how == "recheck" else None), line)
            except SlurmError as exc:
                raise HostError(f"sbatch failed: {exc}") from None
            book.add(host.name, job)
            run.message = f"Slurm job {job} on {r.node}"
            info = _wait(book, job, host.name, s, slurm, stage, clock, sleep)
            book.pop(host.name)
            if info.get("Reservation") not in (None, "", "(null)"):  # as Slurm's record says (a re-check's)
                run.message += f" in reservation {info['Reservation']}"
            run.exit_code = _exit_status(info)
            state = info.get("JobState", "")
            run.output = (fetch_file(t, f"{shared}/slurm-{job}.out") or b"").decode("utf-8", "replace")
            stage(host.name, "fetching")
            data = fetch_file(t, report)
        except HostError as e:
            e.partial = run
            raise
        if state == "TIMEOUT":
            raise TimedOut(f"Slurm job {job} hit its time limit on {r.node}", partial=run)
        if state not in ("COMPLETED", "FAILED"):
            raise HostError(f"Slurm job {job} ended {state} on {r.node} ({info.get('Reason', '')})", partial=run)
        if data is not None:
            run.accept_report(data, "report.json")
        classify(run, s.timeout)
        return run

    return task


def _wait(book: JobBook, job: str, host: str, s: VerifySettings, slurm: SlurmSettings, stage, clock, sleep) -> dict:
    """Poll the job (through the book's shared query) until it ends, then read its whole record once (ExitCode,
    Reason); cancel it at its deadline (pending: not_scheduled; running: timed_out)."""
    client = book.client
    start = clock()
    pending_limit = s.timeout if slurm.wait else slurm.pending_s
    running_since = None
    while True:
        try:
            seen = book.state(job)
            if seen is None or seen[0] in FINAL:  # ended (or gone from squeue): its record says how
                info = client.job(job)
                if info is None:
                    raise HostError(f"Slurm job {job}: Slurm forgot it before gpufleet saw it end")
                if info.get("JobState", "") in FINAL:
                    return info
                seen = (info.get("JobState", ""), info.get("Reason", ""))
        except SlurmError as exc:
            client.cancel([job])
            raise HostError(f"Slurm job {job}: {exc}") from None
        state, reason = seen
        now = clock()
        if state == "RUNNING" and running_since is None:
            running_since = now
            stage(host, "running")
        if running_since is None and now - start > pending_limit:
            client.cancel([job])
            raise NotScheduled(f"Slurm job {job} still {(state or 'pending').lower()} after {pending_limit:g} s "
                               f"({reason}): cancelled")
        if running_since is not None and now - running_since > s.timeout + 30:
            client.cancel([job])
            raise TimedOut(f"Slurm job {job} ran past {s.timeout:g} s: cancelled")
        sleep(POLL_S)


def stopper(client: SlurmClient, book: JobBook, s: VerifySettings, routes: Mapping[str, Route], installed: dict):
    """Ctrl-C: cancel the host's job (or stop its SSH-run verify at its absolute install directory)."""
    ssh_stop = stop_installed(installed, s.run_id)

    def stop(t) -> None:
        job = book.pop(t.host.name)
        if job:
            try:
                client.cancel([job])
            except SlurmError:
                pass
        elif routes.get(t.host.name) and routes[t.host.name].how == "ssh":
            ssh_stop(t)

    return stop


DELETE_WAIT_S = 120.0  # how long the reservation's delete may wait for its cancelled jobs to end


def _note(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


@contextmanager
def recheck_window(client: SlurmClient, slurm: SlurmSettings, routes: Mapping[str, Route], s: VerifySettings,
                   book: JobBook, note: Callable[[str], None] = _note, clock: Callable[[], float] = time.monotonic,
                   sleep: Callable[[float], None] = time.sleep):
    """Around the run: gpufleet's maintenance reservation (:mod:`fleet.slurm.reservation`) on the nodes routed
    ``recheck``; yields the routes the run uses (a host whose re-check cannot be held: ``error``, saying why).

    Before: a reservation of that name that is not gpufleet's leaves the drained nodes unchecked; one an earlier
    run left is reused, and its nodes that run left in service (resumed, never drained again) are drained again
    (``gpufleet: re-check cut short``) and not checked now.  After (also on an error or Ctrl-C): the run's jobs
    still known are cancelled, each re-checked node is drained again with its own reason (unless someone else
    drained it meanwhile), and the reservation is deleted once its jobs have ended (at most
    :data:`DELETE_WAIT_S`).  What cannot be done afterwards is said (``note``), never raised over the run."""
    if slurm.recheck_via != "slurm":
        yield routes
        return
    from fleet.slurm.sync import drain_reason

    out = dict(routes)
    mine = {h: r for h, r in routes.items() if r.how == "recheck"}
    existing = client.reservation(reservation.NAME)
    if existing is not None and not reservation.is_ours(existing):
        why = (f"reservation {reservation.NAME} exists and is not gpufleet's (Flags={existing.get('Flags', '')}, "
               f"no MAINT): not re-checked; delete it, or --recheck-via ssh")
        out.update({h: Route("error", r.node, why) for h, r in mine.items()})
        yield out
        return
    nodes = sorted({r.node for r in mine.values()})
    stale = reservation.hostnames(existing.get("Nodes", "")) if existing else []
    now = client.nodes(stale) if stale else {}
    for name in (n for n in stale if n in now and not now[n].drained and n not in nodes):
        why = drain_reason("re-check cut short", s.run_id)
        client.drain(name, why)
        out.update({h: Route("unavailable", name, f"node {name} was left in service by an earlier run's re-check: "
                                                  f"drained again ({why}); re-checked next run")
                    for h, r in routes.items() if r.node == name})
    if not nodes:
        if existing:
            _delete(client, note, clock, sleep)
        yield out
        return
    length = reservation.minutes(s.timeout, s.timeout if slurm.wait else slurm.pending_s)
    try:
        user = client.user()
        client.run(*(reservation.update_argv if existing else reservation.create_argv)(nodes, length, user))
    except SlurmError as exc:
        why = f"reservation {reservation.NAME} could not be {'updated' if existing else 'created'}: {exc}"
        out.update({h: Route("error", r.node, why) for h, r in mine.items()})
        yield out
        return
    try:
        yield out
    finally:
        _close(client, book, mine, note, clock, sleep)


def _close(client: SlurmClient, book: JobBook, mine: Mapping[str, Route], note, clock, sleep) -> None:
    """The end of a re-check window: the jobs cancelled, the nodes drained again, the reservation deleted."""
    try:
        left = list(book.jobs.values())
        if left:
            client.cancel(left)
        now = client.nodes(sorted({r.node for r in mine.values()}))
    except SlurmError as exc:
        note(f"gpufleet: after the re-check: {exc}")
        now = {}
    kept = False
    for r in {r.node: r for r in mine.values()}.values():
        n = now.get(r.node)
        if n is None or n.drained:  # unknown now, or still (or again: someone else's reason) drained
            continue
        try:
            client.drain(r.node, r.reason)
        except SlurmError as exc:
            kept = True  # the reservation is what still keeps jobs off it
            note(f"gpufleet: {r.node} could not be drained again after its re-check ({exc}): drain it "
                 f"(Reason=\"{r.reason}\") before reservation {reservation.NAME} ends")
    if not kept:
        _delete(client, note, clock, sleep)


def _delete(client: SlurmClient, note, clock, sleep) -> None:
    """Delete the reservation once no job is in it (Slurm refuses while one is), waiting at most DELETE_WAIT_S."""
    deadline = clock() + DELETE_WAIT_S
    try:
        while client.delete_reservation(reservation.NAME) == "in use":
            if clock() > deadline:
                note(f"gpufleet: reservation {reservation.NAME} still has jobs after {DELETE_WAIT_S:g} s: not "
                     f"deleted (scontrol delete ReservationName={reservation.NAME} once they end)")
                return
            sleep(1.0)
    except SlurmError as exc:
        note(f"gpufleet: reservation {reservation.NAME} not deleted: {exc}")


def executor(client: SlurmClient, settings: SlurmSettings, hosts: list[Host], together=None):
    """The run as Slurm jobs, one per node (a :class:`fleet.runs.node.Executor`; ``--multinode``'s one job spanning
    the nodes is :func:`fleet.slurm.multinode.executor`).  The nodes' state is read here, before anything is
    written (Slurm unreachable: :class:`SlurmError`).

    ``together`` (``--one-job``: :func:`fleet.slurm.onejob.executor` passes it): called with the run's routes (the
    re-check window's), its hosts, the artifact, the settings and the progress, it returns the hosts whose checks
    share one job: an object with ``names`` (those hosts), ``task(t)`` and ``stop(t)`` (a member's work and its
    Ctrl-C) and ``close(interrupted)`` (after the fan-out).  Every other host goes its own way, as below."""
    import dataclasses

    from fleet.fanout import run_fleet
    from fleet.runs.node import Executor, host_runs

    routes = read_routes(client, hosts, settings.wait, settings.recheck_via)

    def run(hosts, artifact: Artifact, s: VerifySettings, options, progress) -> tuple[list[HostRun], bool]:
        hosts = list(hosts)
        book = JobBook(client)
        installed: dict = {}  # hosts routed over SSH: their absolute install directories
        with recheck_window(client, settings, routes, s, book) as held:  # gpufleet's reservation, if any
            task = slurm_task(artifact, s, settings, client, held, book, progress.stage, installed)
            stop = stopper(client, book, s, held, installed)
            shared = together(held, hosts, artifact, s, progress) if together else None
            if shared is not None:
                task, stop = _shared(shared, task), _shared(shared, stop, "stop")
                # the members wait for each other in the job: all of them at once, and forks for the others
                options = dataclasses.replace(options, forks=min(len(hosts), options.forks + len(shared.names)))
            result = run_fleet(hosts, task, options, desc="verify", progress=progress, stop=stop)
            if shared is not None:
                shared.close(result.interrupted)
            left = list(book.jobs.values())  # interrupted before their task could collect them
            if left:
                client.cancel(left)
        return host_runs(result), result.interrupted

    return Executor("slurm", run)


def _shared(shared, own: Callable, what: str = "task") -> Callable:
    """``own`` for a host on its own, ``shared``'s ``task`` or ``stop`` for a host in the shared job."""
    theirs = getattr(shared, what)

    def one(t):
        return theirs(t) if t.host.name in shared.names else own(t)

    return one
