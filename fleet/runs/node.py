"""What every executor of a verify run shares (SSH fan-out, Slurm jobs, pairwise rounds): one node's run.

The settings (:class:`VerifySettings`), torchrun's command line (:func:`torchrun_argv`), the node-side run and
stop lines (:func:`run_command_line`, :func:`stop_command`), where a run lives on a node
(:func:`node_run_dir`), fetching its report (:func:`fetch_file`), the node's outcome (:func:`classify`), the
per-host work over SSH (:func:`node_task`) and the multi-node rendezvous on addresses gpufleet knows
(:func:`rdzv_addr`, :func:`preflight_command`, :func:`parse_preflight`, :func:`stopped_members`).  No executor
owns this module: :mod:`fleet.runs.launch`, :mod:`fleet.slurm.jobs` and :mod:`fleet.runs.pairwise_run` import it,
and it imports none of them.

Multi-node: every node writes its own report (its local rank 0 does, of that node's ranks), so each host's
verdict is its own; verify exits 0 once its report is written, so a node whose checks fail does not look like a
crashed worker to torchrun.  A node that crashed (no report) fails; the nodes its crash stopped say so
(``stopped: rank 3 on b exited``) and are ``error``, not failed.
"""

from __future__ import annotations

import ipaddress
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Optional

from fleet.inventory import Host
from fleet.outcome import HostError, HostState, TaskFailed, Unreachable
from fleet.progress import Stage
from fleet.push import Artifact, Wheelhouse, prune_runs_command, push
from fleet.runs.record import HostRun, Member
from fleet.runs.run_dir import safe_name
from fleet.shell import quote
from fleet.transport import Transport
from verify.contract import SUSTAINED  # torch-free: what the controller may know of verify

VERIFY_ENV_VAR = "gpufleet_verify_env"  # inventory: extra environment for verify (NCCL_*, OMP_NUM_THREADS...)
RDZV_ADDR_VAR = "gpufleet_rdzv_addr"  # inventory: the node's address on the data network, when not the SSH one
IFNAME_VARS = ("GLOO_SOCKET_IFNAME", "NCCL_SOCKET_IFNAME")  # set to the interface found on the node, unless given
DEFAULT_RDZV_PORT = 29400
STOP_TIMEOUT_S = 15.0  # how long stopping a node's run may take
KEEP_NODE_RUNS = 5  # run folders kept on a node (its reports and pid files); older ones are removed


@dataclass(frozen=True)
class Executor:
    """How a verify run reaches its nodes: ``run(hosts, artifact, settings, options, progress)`` returns every
    host's :class:`HostRun` in inventory order and whether the run was interrupted.  Over SSH
    (:data:`fleet.runs.launch.OVER_SSH`) or as Slurm jobs (:func:`fleet.slurm.jobs.executor`): the run
    (:func:`fleet.runs.launch.verify_fleet`) does not know which."""

    via: str  # "ssh" or "slurm", kept in run.json
    run: Callable


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
        if rendezvous.get("local_addr"):  # the node's own address: torchrun's lookup of its host name may be wrong
            argv.append(f"--local_addr={rendezvous['local_addr']}")
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
    if run.report is None:  # every node writes its own report, a multi-node member too
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


def stop_installed(installed: dict, run_id: str):
    """Ctrl-C or a timeout: stop the run on a host at the absolute directory its push found (``installed``: host
    -> that directory, filled by :func:`node_task`); a host not pushed yet has nothing running."""

    def stop(t: Transport) -> None:
        directory = installed.get(t.host.name)
        if directory:
            stop_remote(t, directory, run_id)

    return stop


def node_task(artifact: Artifact, s: VerifySettings, stage: Stage, rendezvous_for=None,
              installed: Optional[dict] = None):
    """The per-host work: push, run, fetch.  Returns the host's HostRun; a host error carries it as ``partial``.
    ``installed``: filled with each host's absolute install directory as its push finds it (for the stop).

    ``rendezvous_for(host)``: a multi-node run's ``{nnodes, node_rank, endpoint, local_addr}`` for the host; the
    node is then probed first (:func:`preflight_command`): its interface towards the rendezvous goes into
    GLOO/NCCL_SOCKET_IFNAME (unless the inventory sets them) and a host name that resolves elsewhere is noted."""

    def task(t: Transport) -> HostRun:
        host = t.host
        run = HostRun(host.name)
        try:
            pushed = push_for(t, run, artifact, s, stage)
            if installed is not None:
                installed[host.name] = pushed.directory
            rdzv = rendezvous_for(host) if rendezvous_for else None
            env = verify_env(host)
            if rdzv:
                run.member = Member(rdzv["node_rank"], rdzv["nnodes"], rdzv["endpoint"])
                env = _with_preflight(t, run, rdzv, env, stage)
            here = node_run_dir(s.run_id, host.name)
            argv = torchrun_argv("venv/bin/python", nproc_for(s.nproc, pushed.probe), f"{here}/report.json", s, rdzv)
            line = run_command_line(argv, env, pushed.directory, here, s.timeout)
            stage(host.name, "running")
            try:
                r = t.run(line, timeout=s.timeout + 30)
            except HostError as e:
                if not isinstance(e, Unreachable):  # the connection still works: leave nothing running
                    stop_remote(t, pushed.directory, s.run_id)
                raise
            run.output, run.exit_code = run.output + r.stdout + r.stderr, r.exit_code
            stage(host.name, "fetching")
            data = fetch_file(t, f"{pushed.directory}/{here}/report.json")
        except HostError as e:
            e.partial = run  # keep what we had: the push summary, the output so far
            raise
        if data is not None:
            run.accept_report(data, "report.json")
        classify(run, s.timeout)
        return run

    return task


def _with_preflight(t: Transport, run: HostRun, rdzv: dict, env: dict, stage: Stage) -> dict:
    """Probe the node for the rendezvous (one round trip); the note goes to its log and progress; the env
    with the interface found (where the inventory did not set one)."""
    endpoint_addr = rdzv["endpoint"].rpartition(":")[0]
    r = t.run(preflight_command(endpoint_addr), timeout=30)
    found = parse_preflight(r.stdout, rdzv.get("local_addr") or endpoint_addr)
    note = hostname_note(t.host.name, found, rdzv.get("local_addr") or "")
    if note:
        stage(t.host.name, f"note: {note}")
        run.output += f"gpufleet: {note}\n"
    if found.ifname:
        env = {**{k: found.ifname for k in IFNAME_VARS}, **env}  # the inventory's own choice wins
    return env


def host_runs(result) -> list[HostRun]:
    """Each host's HostRun from a fan-out's results, finished with how its work ended."""
    runs = []
    for r in result:
        run = r.value if isinstance(r.value, HostRun) else HostRun(r.host.name)
        runs.append(run.finish(r.state, r.message, r.duration_s))
    return runs


# -- rendezvous on addresses gpufleet knows ------------------------------------------------------------------------

def rdzv_addr(host: Host) -> str:
    """The address the node is reached on for the rendezvous: ``gpufleet_rdzv_addr`` (a data network of its own),
    else the address gpufleet connects to."""
    return str(host.vars.get(RDZV_ADDR_VAR) or host.address)


_MARK = "--gpufleet--"


def preflight_command(endpoint_addr: str) -> str:
    """One round trip on the node: its host name, what that resolves to there, the route to the rendezvous
    address, its addresses (to find the interface when the route is local).  Never fails: a missing tool prints
    nothing (``getent`` missing: the node's Python resolves the name)."""
    resolve = ('getent ahosts "$n" 2>/dev/null || python3 -c \'import socket, sys; print(socket.gethostbyname('
               'sys.argv[1]))\' "$n" 2>/dev/null')
    return (f"n=$(uname -n); echo \"$n\"; echo {_MARK}; {{ {resolve}; }} | sed -n 1p; echo {_MARK}; "
            f"ip -o route get {quote(endpoint_addr)} 2>/dev/null | sed -n 1p; echo {_MARK}; "
            "ip -o addr show 2>/dev/null; exit 0")


@dataclass(frozen=True)
class Preflight:
    hostname: str = ""
    resolves_to: str = ""  # the first address the node's host name resolves to there ("" for none)
    ifname: str = ""  # the interface towards the rendezvous address ("" when not found)


def route_interface(route: str, addrs: str, local_addr: str) -> str:
    """The interface from ``ip -o route get ADDR``'s line (pure).  A route of type ``local`` (the rendezvous
    address is this node's own) goes over ``lo``: then the interface holding ``local_addr`` in ``ip -o addr
    show``'s lines, which is the one peers reach."""
    words = route.split()
    dev = words[words.index("dev") + 1] if "dev" in words[:-1] else ""
    if words[:1] != ["local"]:
        return dev
    for line in addrs.splitlines():  # "2: eth0    inet 10.0.0.7/24 brd ... scope global eth0\ ..."
        parts = line.split()
        for i, w in enumerate(parts[:-1]):
            if w in ("inet", "inet6") and parts[i + 1].split("/")[0] == local_addr:
                return parts[1].rstrip(":").split("@")[0]
    return dev


def parse_preflight(text: str, local_addr: str) -> Preflight:
    """:func:`preflight_command`'s output (pure)."""
    parts = (text.split(_MARK) + ["", "", "", ""])[:4]
    name = parts[0].strip().splitlines()[0].strip() if parts[0].strip() else ""
    resolved = parts[1].split()[0] if parts[1].split() else ""
    route = parts[2].strip().splitlines()[0] if parts[2].strip() else ""
    return Preflight(name, resolved, route_interface(route, parts[3], local_addr))


def _loopback(addr: str) -> bool:
    try:
        return ipaddress.ip_address(addr).is_loopback
    except ValueError:
        return False


def hostname_note(host: str, found: Preflight, local_addr: str) -> str:
    """A line naming a node whose host name would send its peers elsewhere (pure): it resolves to a loopback
    address (Debian's 127.0.1.1) or to nothing, while gpufleet reaches the node on a routable address.  Empty
    when nothing is amiss."""
    if not found.hostname or not local_addr or _loopback(local_addr) or found.resolves_to == local_addr:
        return ""
    if not found.resolves_to:
        return f"{host}: host name {found.hostname!r} does not resolve; using {local_addr} (the address gpufleet " \
               f"connects to)"
    if _loopback(found.resolves_to):
        return f"{host}: host name {found.hostname!r} resolves to {found.resolves_to}; using {local_addr} (the " \
               f"address gpufleet connects to)"
    return ""


# -- one crashed member stops the others ---------------------------------------------------------------------------

_FAILED_RANK = re.compile(r"^\s*rank\s*:\s*(\d+)\b", re.M)


def crashed_ranks(output: str) -> list[int]:
    """The global ranks torchrun names in its failure summary (``rank : 3 (local_rank: 1)``) (pure)."""
    return sorted({int(m) for m in _FAILED_RANK.findall(output)})


_EXITCODE = re.compile(r"^\s*exitcode\s*:\s*(-?\d+)", re.M)


def _terminated(output: str) -> bool:
    """torchrun's summary names only ranks ended by SIGTERM: its agent stopped them (a peer node went away)."""
    codes = _EXITCODE.findall(output)
    return bool(codes) and all(int(c) == -15 for c in codes)


def _crashed(run: HostRun) -> bool:
    return run.report is None and run.state is HostState.FAILED and not _terminated(run.output)


def stopped_members(runs: Iterable[HostRun]) -> None:
    """Pure, on one multi-node group's finished runs: when a member crashed (no report), the members whose own
    run was cut short by it (their report says the run aborted, or they wrote none) say so and are ``error``
    (interrupted), not failed; only the crashed member fails."""
    runs = list(runs)
    crashed = [r for r in runs if _crashed(r)]
    if not crashed or len(crashed) == len(runs):
        return
    who = "; ".join(f"rank {', '.join(map(str, crashed_ranks(r.output)))} on {r.host} exited"
                    if crashed_ranks(r.output) else f"{r.host} exited {r.exit_code}" for r in crashed)
    for r in runs:
        if r in crashed:
            continue
        aborted = r.report is not None and any(c.get("name") == "run" and c.get("status") == "error"
                                               for c in r.report["checks"])
        if aborted or (r.report is None and r.state in (HostState.FAILED, HostState.TIMED_OUT)):
            r.message = f"stopped: {who}" + (f" ({r.message})" if r.message else "")
            if r.report is None:
                r.state = HostState.INTERRUPTED
