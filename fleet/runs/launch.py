"""``invoke verify``: push, run ``verify`` under torchrun on every host, pull the reports back.

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
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Optional

from fleet.fanout import run_fleet
from fleet.history.baseline import with_run
from fleet.inventory import Host
from fleet.outputs.html import write_summary_html
from fleet.outcome import HostError, HostState, TaskFailed, Unreachable
from fleet.progress import Progress, Stage
from fleet.push import Artifact, Wheelhouse, build_wheel, install_dir, prune_runs_command, push
from fleet.runs.record import HostRun, Member
from fleet.runs.run_dir import make_run_dir, safe_name, write_run, write_summary
from fleet.runs.verdict import judge
from fleet.shell import quote
from fleet.transport import SshOptions, Transport
from verify.profiles import SUSTAINED  # torch-free: the profile names only

VERIFY_ENV_VAR = "gpufleet_verify_env"  # inventory: extra environment for verify (NCCL_*, OMP_NUM_THREADS...)
DEFAULT_RDZV_PORT = 29400
STOP_TIMEOUT_S = 15.0  # how long stopping a node's run may take
KEEP_NODE_RUNS = 5  # run folders kept on a node (its reports and pid files); older ones are removed


@dataclass
class VerifySettings:
    profile: str = "quick"
    nproc: str = "auto"  # "auto" or a number
    run_id: str = ""
    timeout: float = 1800.0  # seconds verify may run on a node
    force: bool = False
    multinode: bool = False
    rdzv_port: int = DEFAULT_RDZV_PORT
    checks: tuple = ()  # verify stages to run; () for all
    wheelhouse: Wheelhouse | None = None  # air-gapped nodes: wheels installed beside verify
    duration: float | None = None  # nightly/acceptance: seconds of sustained stages per device
    dcgm_level: int | None = None  # also `dcgmi diag -r N` where present
    dcgm_allow_skips: bool = False


def nproc_for(setting: str, probe: dict) -> int:
    """``auto``: one rank per CUDA GPU, one CPU rank on a host without; else the number given."""
    if str(setting) == "auto":
        return max(1, int(probe.get("gpu_count") or 0))
    n = int(setting)
    if n < 1:
        raise ValueError("--nproc must be 'auto' or a positive number")
    return n


def torchrun_argv(python: str, nproc: int, out: str, s: VerifySettings, rendezvous: dict | None = None) -> list[str]:
    argv = [python, "-m", "torch.distributed.run"]
    if rendezvous:
        argv += [
            f"--nnodes={rendezvous['nnodes']}",
            f"--node_rank={rendezvous['node_rank']}",
            "--rdzv_backend=c10d",
            f"--rdzv_endpoint={rendezvous['endpoint']}",
            f"--rdzv_id={s.run_id}",
            f"--rdzv_conf=is_host={'true' if rendezvous['node_rank'] == 0 else 'false'}",
        ]
    else:
        argv.append("--standalone")
    argv += [f"--nproc_per_node={nproc}", "-m", "verify", "--profile", s.profile, "--out", out]
    if s.force:
        argv.append("--force")
    if s.checks:
        argv += ["--checks", ",".join(s.checks)]
    if s.duration is not None:
        argv += ["--duration", f"{s.duration:g}"]
    if s.dcgm_level is not None:
        argv += ["--dcgm-level", str(int(s.dcgm_level))]
    if s.dcgm_allow_skips:
        argv.append("--dcgm-allow-skips")
    if s.profile in SUSTAINED or s.dcgm_level is not None:  # the ranks wait on each other that long
        argv += ["--timeout", f"{max(300.0, s.timeout):g}"]
    return argv


def node_run_dir(run_id: str, host: str) -> str:
    """Where one host's run lives on the node, relative to the install directory: its own directory,
    even when nodes share a home."""
    return f"runs/{run_id}/{safe_name(host)}"


def run_command_line(argv: list[str], env: dict, directory: str, run_dir: str, timeout: float,
                     keep_runs: int = KEEP_NODE_RUNS) -> str:
    """The node-side shell line.

    It records its process group in ``<run_dir>/pid`` and ``exec``s the run, so
    the group (torchrun and every rank) is the shell's own and
    :func:`stop_command` can end all of it.  The node-side ``timeout`` (when
    the node has it) is the second guard behind the controller's; it signals
    the whole group too.  ``run_dir`` is relative to ``directory``.  Before it
    starts, the node's older run folders are pruned to the newest ``keep_runs``
    (this one included).
    """
    exports = "".join(f"export {k}={quote(v)}; " for k, v in sorted(env.items()) if _env_name_ok(k))
    command = " ".join(quote(a) for a in argv)
    guard = f"timeout -k 15 {int(timeout)} " if timeout else ""
    return (
        f"cd {quote(directory)} && mkdir -p {quote(run_dir)} && {{ {prune_runs_command('.', keep_runs)} >/dev/null; }} "
        f"&& echo $$ > {quote(run_dir + '/pid')} && {exports}"
        f"if command -v timeout >/dev/null 2>&1; then exec {guard}{command} 2>&1; else exec {command} 2>&1; fi"
    )


# Pure sh over /proc (no ps, no awk): the run's process and every descendant, found before any is signalled,
# since torchrun starts each rank in a session of its own and a rank whose parent dies is re-parented to init.
_STOP = r"""
case "$p" in ""|*[!0-9]*) exit 0;; esac
[ -d "/proc/$p" ] || { rm -f "$f"; exit 0; }
pairs=""
for d in /proc/[0-9]*; do
    read -r l < "$d/stat" 2>/dev/null || continue
    rest=${l##*) }; set -- $rest
    pairs="$pairs ${d#/proc/}:$2"
done
tree=" $p "; grew=1
while [ "$grew" = 1 ]; do
    grew=0
    for pair in $pairs; do
        c=${pair%%:*}; pp=${pair##*:}
        case "$tree" in *" $pp "*) case "$tree" in *" $c "*) ;; *) tree="$tree$c "; grew=1;; esac;; esac
    done
done
kill -TERM $tree 2>/dev/null
i=0
while [ "$i" -lt 50 ]; do
    alive=""
    for q in $tree; do
        read -r l < "/proc/$q/stat" 2>/dev/null || continue
        rest=${l##*) }; set -- $rest; [ "$1" = Z ] || alive="$alive $q"  # a zombie has ended
    done
    [ -z "$alive" ] && break
    sleep 0.1; i=$((i+1))
done
[ -n "$alive" ] && kill -KILL $alive 2>/dev/null
rm -f "$f"
exit 0
"""


def stop_command(run_dir: str) -> str:
    """Stop a run started by :func:`run_command_line`: TERM it and every descendant, KILL what is left after 5 s."""
    pidfile = quote(run_dir + "/pid")
    return f'f={pidfile}; [ -f "$f" ] || exit 0; read -r p < "$f"\n{_STOP}'


def _env_name_ok(name: str) -> bool:
    return bool(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name))


def verify_env(host: Host) -> dict:
    env = host.vars.get(VERIFY_ENV_VAR) or {}
    if not isinstance(env, dict):
        raise TaskFailed(f"{VERIFY_ENV_VAR} must be a mapping of environment variables")
    bad = [k for k in env if not _env_name_ok(str(k))]
    if bad:
        raise TaskFailed(f"{VERIFY_ENV_VAR}: invalid variable name {bad[0]!r}")
    return {str(k): str(v) for k, v in env.items()}


# torchrun's own lines around a child's failure: its log prefix, its banner, its traceback of the agent.
_TORCHRUN_NOISE = re.compile(
    r"^([EWI]\d{4} |\s*(time|host|rank|exitcode|error_file|traceback)\s*:|[=-]{10,}|Failures:|Root Cause|"
    r"\[\d+\]:$|\s*<NO_OTHER_FAILURES>|.*torch\.distributed\.elastic|.*ChildFailedError|Traceback |  File |"
    r"\s+\^+$|verify FAILED|\s*raise |\s*return |.*warnings\.warn|To enable traceback)")
_ERROR_LINE = re.compile(r"(^|: )([A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit)\b|error:|Error:|FAILED|Killed)")


def last_error_line(output: str) -> str:
    """The line that says why a run failed: the child's own last error, not torchrun's banner.

    Prefers the last line naming an error (``[rank1]: RuntimeError: ...``) that
    is not torchrun's; else the last line that is not torchrun's; else "".
    """
    lines = [ln.rstrip() for ln in output.splitlines() if ln.strip()]
    own = [ln for ln in lines if not _TORCHRUN_NOISE.match(ln)]
    for ln in reversed(own):
        if _ERROR_LINE.search(ln):
            return ln.strip()[:300]
    return own[-1].strip()[:300] if own else ""


def classify(run: HostRun, timeout: float) -> None:
    """Pure: the node's outcome from torchrun's exit status and the report it left (already validated)."""
    if run.exit_code in (124, 137):  # the node-side `timeout` stopped it (a report may say "aborted")
        run.state, run.message = HostState.TIMED_OUT, f"verify did not finish within {timeout:g}s on the node"
        return
    if run.state is HostState.BAD_REPORT:
        return
    why = last_error_line(run.output)
    if run.report is None and run.member is None:
        run.state = HostState.FAILED
        run.message = f"verify exited {run.exit_code} and wrote no report" + (f": {why}" if why else "")
    elif run.exit_code not in (0, 1):
        run.state = HostState.FAILED
        status = run.report["status"] if run.report is not None else None
        run.message = f"verify exited {run.exit_code} (report status {status!r})" + (f": {why}" if why else "")


def fetch_file(t: Transport, remote: str) -> Optional[bytes]:
    """The remote file's bytes, or None when it does not exist."""
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / "report.json"
        try:
            t.get(remote, local)
        except FileNotFoundError:
            return None
        except OSError as e:  # SFTP "no such file" arrives as IOError/OSError
            if "No such file" not in str(e):
                raise
            return None
        return local.read_bytes()


def stop_remote(t: Transport, directory: str, run_id: str) -> None:
    """Stop this host's run of ``run_id`` (a no-op when none is running)."""
    t.run(stop_command(f"{directory}/{node_run_dir(run_id, t.host.name)}"), timeout=STOP_TIMEOUT_S)


def push_for(t: Transport, run: HostRun, artifact: Artifact, s: VerifySettings, stage: Stage):
    """Push verify to the host (once per content hash) and record the push in its HostRun."""
    stage(t.host.name, "pushing")
    pushed = push(t, artifact, wheelhouse=s.wheelhouse)
    run.push = {"directory": pushed.directory, "uploaded": pushed.uploaded, "probe": pushed.probe,
                "summary": pushed.summary()}
    return pushed


def node_task(artifact: Artifact, s: VerifySettings, stage: Stage, rendezvous_for=None):
    """The per-host work: push, run, fetch.  Returns the host's HostRun; a host error carries it as ``partial``."""

    def task(t: Transport) -> HostRun:
        host = t.host
        run = HostRun(host.name)
        try:
            pushed = push_for(t, run, artifact, s, stage)
            rdzv = rendezvous_for(host) if rendezvous_for else None
            if rdzv:
                run.member = Member(rdzv["node_rank"], rdzv["nnodes"], rdzv["endpoint"])
            here = node_run_dir(s.run_id, host.name)
            argv = torchrun_argv("venv/bin/python", nproc_for(s.nproc, pushed.probe), f"{here}/report.json", s, rdzv)
            line = run_command_line(argv, verify_env(host), pushed.directory, here, s.timeout)
            stage(host.name, "running")
            try:
                r = t.run(line, timeout=s.timeout + 30)
            except HostError as e:
                if not isinstance(e, Unreachable):  # the connection still works: leave nothing running
                    stop_remote(t, pushed.directory, s.run_id)
                raise
            run.output, run.exit_code = r.stdout + r.stderr, r.exit_code
            stage(host.name, "fetching")
            data = fetch_file(t, f"{pushed.directory}/{here}/report.json")
        except HostError as e:
            e.partial = run  # keep what we had: the push summary, the output so far
            raise
        if data is not None:
            run.member = None  # this node held rank 0: its report speaks for the run
            run.accept_report(data, "report.json")
        elif run.member is not None and r.exit_code not in (0, 1):
            run.member = None
        classify(run, s.timeout)
        return run

    return task


def run_verify(hosts: Iterable[Host], artifact: Artifact, s: VerifySettings, options: SshOptions,
               progress: Progress | bool | None = None, slurm=None) -> tuple[list[HostRun], bool]:
    """Every host's HostRun, in inventory order, and whether the run was interrupted.  ``slurm``: (a
    :class:`fleet.slurm.client.SlurmClient`, :class:`fleet.slurm.jobs.SlurmSettings`) to run it as Slurm jobs."""
    hosts = list(hosts)
    if not isinstance(progress, Progress):
        progress = Progress.auto("verify", [h.name for h in hosts], progress)
    if slurm is not None:
        return _run_under_slurm(hosts, artifact, s, options, progress, *slurm)  # (client, settings, routes)
    rendezvous_for = None
    if s.multinode:
        first = hosts[0]
        endpoint = f"{first.address}:{s.rdzv_port}"
        ranks = {h.name: i for i, h in enumerate(hosts)}

        def rendezvous_for(h: Host) -> dict:
            return {"nnodes": len(hosts), "node_rank": ranks[h.name], "endpoint": endpoint}

        options = dataclasses.replace(options, forks=max(options.forks, len(hosts)))  # all nodes at once

    def stop(t: Transport) -> None:
        stop_remote(t, install_dir(t.host, artifact, s.wheelhouse), s.run_id)

    result = run_fleet(hosts, node_task(artifact, s, progress.stage, rendezvous_for), options, desc="verify",
                       progress=progress, stop=stop)
    return host_runs(result), result.interrupted


def host_runs(result) -> list[HostRun]:
    """Each host's HostRun from a fan-out's results, finished with how its work ended."""
    runs = []
    for r in result:
        run = r.value if isinstance(r.value, HostRun) else HostRun(r.host.name)
        runs.append(run.finish(r.state, r.message, r.duration_s))
    return runs


def _run_under_slurm(hosts: list[Host], artifact: Artifact, s: VerifySettings, options: SshOptions,
                     progress: Progress, client, slurm, routes) -> tuple[list[HostRun], bool]:
    from fleet.slurm.jobs import JobBook, slurm_task, stopper

    book = JobBook(client)
    result = run_fleet(hosts, slurm_task(artifact, s, slurm, client, routes, book, progress.stage), options,
                       desc="verify", progress=progress, stop=stopper(client, book, artifact, s, routes))
    left = list(book.jobs.values())  # interrupted before their task could collect them
    if left:
        client.cancel(left)
    return host_runs(result), result.interrupted


def verify_fleet(hosts: Iterable[Host], s: VerifySettings, options: SshOptions, out_base: str = "reports",
                 pattern: str = "", progress: Progress | bool | None = None,
                 on_started: Callable[[Path], None] | None = None, baseline: dict | None = None,
                 trends: dict | None = None, slurm=None) -> tuple[Path, dict]:
    """The whole run: build, push, run, fetch, write the run directory, judge; returns (run_dir, summary).

    ``baseline``: each host's own baseline from the history (``fleet.history.baseline.read_baselines``), kept in
    run.json and judged against; ``trends``: the hosts' past key figures, plotted in summary.html."""
    hosts = list(hosts)
    if slurm is not None:  # the nodes' state, read before anything is written (Slurm unreachable: SlurmError)
        from fleet.slurm.jobs import route
        from fleet.slurm.nodes import node_of

        client, slurm_settings = slurm
        slurm = (client, slurm_settings, route(hosts, client.nodes(sorted({node_of(h.name, h.vars) for h in hosts})),
                                               slurm_settings.wait))
    started = _dt.datetime.now(_dt.timezone.utc)
    run_dir = make_run_dir(out_base, started)
    if on_started:
        on_started(run_dir)
    s.run_id = s.run_id or run_dir.name
    artifact = build_wheel()
    runs, interrupted = run_verify(hosts, artifact, s, options, progress=progress, slurm=slurm)
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
        "via": "slurm" if slurm is not None else "ssh",
        "artifact": {"file": artifact.filename, "sha256_16": artifact.digest},
    }
    if baseline is not None:
        meta["baseline"] = baseline
    write_run(run_dir, runs, meta)
    summary = judge(runs, meta)
    write_summary(run_dir, summary)
    write_summary_html(run_dir, summary, with_run(trends or {}, summary))
    return run_dir, summary

