"""A real Slurm cluster on this machine, started by the test suite itself.

:class:`SlurmCluster` runs one ``munged``, one ``slurmctld`` and N ``slurmd`` (Debian's
``slurm-wlm`` and ``munge``), every file of theirs under ``base_dir``:

* ``munged`` is the cluster's own: a key generated into ``base_dir/munge``, its own socket, pid,
  seed and log files.  ``slurm.conf`` names that socket (``AuthInfo=socket=...``), so the daemons
  and the clients (which read the same ``slurm.conf`` through ``SLURM_CONF``) use it; this
  machine's ``/etc/munge``, ``/etc/slurm`` and any system ``munged`` are never read or touched.
* each ``slurmd`` plays one node (``gpu1``..``gpuN``, ``slurmd -N gpuI``): its own
  ``NodeAddr=127.0.1.I``, its own ``Port=``, and its own spool and run directories.  ``slurm.conf``
  names one ``SlurmdSpoolDir`` and one ``SlurmdPidFile`` (under ``base_dir/node``); each ``slurmd``
  runs in a mount namespace of its own (``unshare --mount --propagation private``) where that
  node's directories (``base_dir/nodes/gpuI/{spool,run}``) are bind-mounted over those paths.  The
  rest of the filesystem is shared, ``base_dir/shared`` included: a job on any node sees it.
* the ports (``slurmctld``'s and each node's) are picked free below the kernel's ephemeral range.

Stopping kills everything started here: each ``slurmd`` and every process left in its mount
namespace (``slurmstepd`` and the jobs' processes, which a ``slurmd`` does not keep as children),
then ``slurmctld``, then ``munged``; also when :meth:`SlurmCluster.start` fails halfway.

The clients find the cluster through the environment: :attr:`SlurmCluster.env`
(``SLURM_CONF``) to merge into a subprocess's environment, or :meth:`SlurmCluster.run`, which also
drops ``SLURM_*``/``SBATCH_*``/``SRUN_*``... variables inherited from an outer Slurm job.
See docs/testing-slurm.md.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

from tests.sshd import descendants

SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DAEMONS = ("munged", "slurmctld", "slurmd", "slurmstepd")
CLIENTS = ("sbatch", "srun", "squeue", "scontrol", "scancel", "sinfo")
NS_TOOLS = ("unshare", "nsenter", "mount")
# Variables an outer Slurm job or a user's shell may set that would steer our clients elsewhere.
_CLIENT_ENV_PREFIXES = ("SLURM_", "SBATCH_", "SRUN_", "SALLOC_", "SQUEUE_", "SINFO_", "SCONTROL_", "SCANCEL_")
TERMINAL_JOB_STATES = frozenset({"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY",
                                 "BOOT_FAIL", "DEADLINE", "PREEMPTED", "REVOKED", "SPECIAL_EXIT"})
UNIX_PATH_MAX = 107  # sun_path holds 108 bytes, NUL included


def which(tool: str) -> str | None:
    """``tool`` on PATH, or in the system's sbin/bin directories (daemons live in /usr/sbin)."""
    return shutil.which(tool) or shutil.which(tool, path=SYSTEM_PATH)


def missing_tools() -> list[str]:
    """The Slurm and munge programs this harness needs that this machine lacks (empty: it can run)."""
    return [t for t in (*DAEMONS, *CLIENTS, "munge") if which(t) is None]


def system_daemons() -> list[str]:
    """``munged``/``slurmctld``/``slurmd`` processes running on this machine, as ``pid comm args``.

    The harness never needs or touches them (its own sockets, ports and files); they are named in
    start-up errors, where a collision is worth ruling out."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            comm = Path(f"/proc/{entry}/comm").read_text().strip()
            if comm not in ("munged", "slurmctld", "slurmd"):
                continue
            args = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # gone meanwhile
            continue
        found.append(f"{entry} {comm} {args.strip()}")
    return sorted(found)


def _clean_environ(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_CLIENT_ENV_PREFIXES)}
    env.update(extra)
    return env


def _tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as e:
        return f"(cannot read {path}: {e.strerror})"
    return "\n".join(text.splitlines()[-lines:]) or "(empty)"


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("0.0.0.0", port))  # slurmd and slurmctld bind every address
        except OSError:
            return False
    return True


def free_ports(count: int) -> list[int]:
    """``count`` consecutive free TCP ports below the ephemeral range (where outgoing connections take theirs)."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    top = max(low, 12000) - count
    for _ in range(200):
        base = random.randrange(10000, top)
        ports = list(range(base, base + count))
        if all(_port_free(p) for p in ports):
            return ports
    raise RuntimeError(f"no {count} consecutive free TCP ports found below {low}")


def _mnt_ns(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/mnt")
    except OSError:
        return None


def _open_ns(pid: int) -> int | None:
    try:
        return os.open(f"/proc/{pid}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None


def _pids_in_mnt_ns(ns: str) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and _mnt_ns(int(entry)) == ns:
            pids.append(int(entry))
    return pids


def _kill(pids: list[int], sig: int = signal.SIGKILL) -> None:
    for pid in pids:
        if pid == os.getpid():
            continue
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def _stop(proc: subprocess.Popen | None, grace: float = 5.0) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds; the process and any children it still has."""
    if proc is None:
        return
    kids = descendants(proc.pid) if proc.poll() is None else []
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    _kill(kids)


class SlurmError(RuntimeError):
    """The cluster did not start, or a job did not finish in time (the message names the log to read)."""


@dataclass
class SlurmNode:
    """One ``slurmd``: a node named ``name`` at ``address``:``port``, its files under ``root``."""

    name: str
    index: int  # 1-based: gpu1 is index 1
    address: str
    port: int
    root: Path
    proc: subprocess.Popen | None = None
    mnt_ns: str | None = None  # "mnt:[inode]" of its mount namespace, once it runs
    # held open until stop() has swept the namespace: a namespace lives while a descriptor refers to it, so its
    # inode cannot go to another one (a later unshare anywhere) whose processes the sweep would kill
    ns_fd: int | None = None

    @property
    def spool(self) -> Path:  # seen by this slurmd as the cluster's SlurmdSpoolDir
        return self.root / "spool"

    @property
    def run_dir(self) -> Path:  # seen by this slurmd as the directory of SlurmdPidFile and SlurmdLogFile
        return self.root / "run"

    @property
    def log(self) -> Path:
        return self.run_dir / "slurmd.log"

    @property
    def output(self) -> Path:  # its stdout and stderr (what it says before its log is open)
        return self.root / "slurmd.out"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None


class SlurmCluster:
    """``munged`` + ``slurmctld`` + ``nodes`` × ``slurmd`` under ``base_dir`` (see the module docstring).

    ``with SlurmCluster(path) as c:`` starts and stops it; or :meth:`start` / :meth:`stop`.
    ``cpus``: the CPUs each node declares (``SlurmdParameters=config_overrides``: a node is believed,
    whatever this machine has).  ``extra_conf``: more ``slurm.conf`` lines, written before the node and
    partition lines (``HealthCheckProgram=...``); a later line overrides an earlier one.  ``gpus``: node name ->
    the GPUs Slurm schedules there, ``N`` (``Gres=gpu:N``) or ``"TYPE:N"`` (``Gres=gpu:TYPE:N``), declared in
    ``gres.conf`` with stand-in device files: Slurm's view of the node, whatever this machine has.
    """

    def __init__(self, base_dir: Path, nodes: int = 3, cpus: int = 2, memory_mb: int = 1000,
                 prefix: str = "gpu", partition: str = "gpu", cluster_name: str = "gpufleet",
                 extra_conf: Sequence[str] = (), gpus: Mapping[str, int | str] | None = None):
        if nodes < 1 or nodes > 250:
            raise ValueError("nodes: 1 to 250")
        self.base_dir = Path(base_dir).resolve()
        self.cpus = cpus
        self.memory_mb = memory_mb
        self.partition = partition
        self.cluster_name = cluster_name
        self.extra_conf = list(extra_conf)
        self.gpus = dict(gpus or {})
        self.conf = self.base_dir / "slurm.conf"
        self.shared = self.base_dir / "shared"
        self.munge_dir = self.base_dir / "munge"
        self.munge_key = self.munge_dir / "munge.key"
        self.munge_socket = self.munge_dir / "munge.socket"
        self.munge_log = self.munge_dir / "munged.log"
        self.ctld_dir = self.base_dir / "ctld"
        self.ctld_log = self.ctld_dir / "slurmctld.log"
        self.node_mount = self.base_dir / "node"  # what slurm.conf names; each slurmd sees its own there
        ports = free_ports(nodes + 1)
        self.ctld_port = ports[0]
        self.nodes = [SlurmNode(f"{prefix}{i}", i, f"127.0.1.{i}", ports[i], self.base_dir / "nodes" / f"{prefix}{i}")
                      for i in range(1, nodes + 1)]
        unknown = sorted(set(self.gpus) - {n.name for n in self.nodes})
        if unknown:
            raise ValueError(f"gpus: no node {unknown[0]!r} in this cluster")
        for spec in self.gpus.values():
            _gpu_spec(spec)  # N or TYPE:N, or ValueError
        self.munged: subprocess.Popen | None = None
        self.slurmctld: subprocess.Popen | None = None
        self.started = False
        self.start_seconds: float | None = None
        self.stop_seconds: float | None = None

    # ------------------------------------------------------------------ what tests use

    @property
    def env(self) -> dict[str, str]:
        """What a Slurm client needs in its environment to reach this cluster (merge into os.environ)."""
        return {"SLURM_CONF": str(self.conf)}

    def environ(self) -> dict[str, str]:
        """A full environment for a client: os.environ without inherited Slurm client variables, plus :attr:`env`."""
        return _clean_environ(self.env)

    @property
    def node_names(self) -> list[str]:
        return [n.name for n in self.nodes]

    @property
    def addresses(self) -> dict[str, str]:
        return {n.name: n.address for n in self.nodes}

    def node(self, key: int | str) -> SlurmNode:
        """A node by name (``"gpu2"``) or 1-based index (``2``)."""
        for n in self.nodes:
            if key in (n.name, n.index):
                return n
        raise KeyError(f"no node {key!r} in {self.node_names}")

    def run(self, *args: str, timeout: float = 60, check: bool = False, cwd: Path | str | None = None,
            input: str | None = None) -> subprocess.CompletedProcess:
        """Run a Slurm client (``run("squeue", "-h")``) against this cluster; text output captured.

        The working directory is ``shared`` unless ``cwd`` says otherwise (so ``slurm-%j.out`` lands there)."""
        return subprocess.run(list(args), env=self.environ(), cwd=str(cwd or self.shared), capture_output=True,
                              text=True, timeout=timeout, check=check, input=input)

    def on_node(self, key: int | str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        """Run a command in a node's mount namespace (where its spool and run directories are mounted).

        Jobs need no such thing (Slurm runs them there); this is for looking at a node's own files."""
        node = self.node(key)
        if node.proc is None or node.proc.poll() is not None:
            raise SlurmError(f"{node.name}'s slurmd is not running")
        return subprocess.run(["nsenter", f"--mount=/proc/{node.proc.pid}/ns/mnt", "--", *args],
                              env=self.environ(), capture_output=True, text=True, timeout=timeout)

    def sbatch(self, *args: str, timeout: float = 30) -> int:
        """Submit a batch job (``sbatch --parsable ARGS``); its job id."""
        r = self.run("sbatch", "--parsable", *args, timeout=timeout)
        if r.returncode != 0:
            raise SlurmError(f"sbatch {' '.join(args)} failed ({r.returncode}): {r.stderr.strip()}")
        return int(r.stdout.strip().split(";")[0])

    def node_states(self) -> dict[str, str]:
        """``{node: state}`` as sinfo's ``%t`` prints it (``idle``, ``alloc``, ``drain``, ``idle*``...)."""
        r = self.run("sinfo", "-h", "-N", "-o", "%N %t", timeout=15)
        if r.returncode != 0:
            raise SlurmError(f"sinfo failed ({r.returncode}): {r.stderr.strip()}")
        return dict(line.split() for line in r.stdout.splitlines() if line.strip())

    def show_node(self, name: str) -> dict[str, str]:
        """``scontrol show node NAME``'s fields (``State``, ``Reason``...)."""
        r = self.run("scontrol", "-o", "show", "node", name, timeout=15)
        if r.returncode != 0:
            raise SlurmError(f"scontrol show node {name} failed ({r.returncode}): {r.stderr.strip()}")
        return _fields(r.stdout.strip())

    def jobs(self, job_id: int | str) -> list[dict[str, str]]:
        """``scontrol show job ID``'s records (one per array task), each as its fields (``JobState``...)."""
        r = self.run("scontrol", "-o", "show", "job", str(job_id), timeout=15)
        if r.returncode != 0:
            raise SlurmError(f"scontrol show job {job_id} failed ({r.returncode}): {r.stderr.strip()}")
        return [_fields(line) for line in r.stdout.splitlines() if line.strip()]

    def wait_job(self, job_id: int | str, timeout: float = 60) -> list[dict[str, str]]:
        """Wait until every record of a job (each array task) is in a final state; their fields."""
        deadline = time.monotonic() + timeout
        while True:
            records = self.jobs(job_id)
            # an array job's pending tasks share one record (ArrayTaskId=1-2): its state is PENDING, not final
            if records and all(r.get("JobState") in TERMINAL_JOB_STATES for r in records):
                return records
            if time.monotonic() > deadline:
                states = ", ".join(f"{r.get('JobId')}:{r.get('JobState')}({r.get('Reason')})" for r in records)
                raise SlurmError(f"job {job_id} not finished after {timeout}s: {states}; "
                                 f"slurmctld log {self.ctld_log}:\n{_tail(self.ctld_log)}")
            time.sleep(0.2)

    def wait_nodes(self, state: str = "idle", timeout: float = 30, nodes: list[str] | None = None) -> None:
        """Wait until each of ``nodes`` (all by default) is in ``state`` (sinfo's ``%t``)."""
        names = nodes or self.node_names
        deadline = time.monotonic() + timeout
        while True:
            states = self.node_states()
            if all(states.get(n) == state for n in names):
                return
            self._check_alive()
            if time.monotonic() > deadline:
                raise SlurmError(f"nodes not {state} after {timeout}s: {states}; "
                                 + "; ".join(f"{n.name} log {n.log}:\n{_tail(n.log)}" for n in self.nodes
                                             if states.get(n.name) != state)
                                 + f"\nslurmctld log {self.ctld_log}:\n{_tail(self.ctld_log)}")
            time.sleep(0.1)

    # ------------------------------------------------------------------ start and stop

    def __enter__(self) -> SlurmCluster:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self, timeout: float = 60) -> SlurmCluster:
        """Start munged, slurmctld and every slurmd; return once every node is idle (within ``timeout``)."""
        missing = missing_tools() + [t for t in NS_TOOLS if which(t) is None]
        if missing:
            raise SlurmError(f"missing programs: {', '.join(missing)} (Debian: apt-get install slurm-wlm munge)")
        if os.geteuid() != 0:
            raise SlurmError("the Slurm test cluster runs as root (SlurmUser=root, mount namespaces)")
        if self.started:
            raise SlurmError(f"the cluster in {self.base_dir} is already started")
        t0 = time.monotonic()
        atexit.register(self.stop)
        self.started = True
        try:
            self._write_files()
            self._start_munged()
            self._start_slurmctld()
            for node in self.nodes:
                self._start_slurmd(node)
            self.wait_nodes("idle", timeout=max(5.0, timeout - (time.monotonic() - t0)))
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - t0
        return self

    def stop(self) -> None:
        """Stop everything started here (idempotent): the nodes and their jobs, slurmctld, munged."""
        if not self.started:
            return
        t0 = time.monotonic()
        for node in self.nodes:
            _stop(node.proc)
            if node.mnt_ns and node.ns_fd is not None:
                # slurmstepd and the jobs' processes: not the slurmd's children, but in its namespace
                leftovers = _pids_in_mnt_ns(node.mnt_ns)
                _kill(leftovers)
                _wait_gone(leftovers, 5)
            if node.ns_fd is not None:
                os.close(node.ns_fd)
                node.ns_fd = None
        _stop(self.slurmctld, grace=10)
        _stop(self.munged)
        self.started = False
        atexit.unregister(self.stop)
        self.stop_seconds = time.monotonic() - t0

    # ------------------------------------------------------------------ internals

    def _check_alive(self) -> None:
        for what, proc, log in (("munged", self.munged, self.munge_log),
                                ("slurmctld", self.slurmctld, self.ctld_log),
                                *((f"slurmd {n.name}", n.proc, n.log) for n in self.nodes)):
            if proc is not None and proc.poll() is not None:
                raise self._failed(f"{what} exited with code {proc.returncode}", log)

    def _failed(self, what: str, log: Path, output: Path | None = None) -> SlurmError:
        text = f"{what}; log {log}:\n{_tail(log)}"
        if output is not None and _says_more(output, log):
            text += f"\nits output {output}:\n{_tail(output)}"
        others = system_daemons()
        mine = {str(p.pid) for p in (self.munged, self.slurmctld, *(n.proc for n in self.nodes)) if p}
        others = [d for d in others if d.split()[0] not in mine]
        if others:
            text += "\n(other munge/slurm daemons on this machine, not ours: " + "; ".join(others) + ")"
        return SlurmError(text)

    def _write_files(self) -> None:
        if len(str(self.munge_socket)) > UNIX_PATH_MAX:
            raise SlurmError(f"base_dir too long for a Unix socket path: {self.munge_socket}")
        for d in (self.base_dir, self.munge_dir, self.ctld_dir, self.ctld_dir / "state", self.shared,
                  self.node_mount / "spool", self.node_mount / "run"):
            d.mkdir(parents=True, exist_ok=True)
        for node in self.nodes:
            node.spool.mkdir(parents=True, exist_ok=True)
            node.run_dir.mkdir(parents=True, exist_ok=True)
        # munged refuses a key others may read, and directories others may write
        for d in (self.base_dir, self.munge_dir):
            os.chmod(d, 0o755)
        os.chmod(self.shared, 0o777 | 0o1000)  # jobs of any user may write there
        if not self.munge_key.exists():
            r = subprocess.run([which("mungekey") or "mungekey", "--create", f"--keyfile={self.munge_key}"],
                               capture_output=True, text=True) if which("mungekey") else None
            if r is None or r.returncode != 0:  # munge < 0.5.14 has no mungekey
                self.munge_key.write_bytes(os.urandom(1024))
        os.chmod(self.munge_key, 0o600)
        plugstack = self.base_dir / "plugstack.conf"  # empty: never /etc/slurm's SPANK plugins
        plugstack.write_text("")
        host = socket.gethostname().split(".")[0]  # slurmctld must find its own short hostname in SlurmctldHost
        lines = [
            f"ClusterName={self.cluster_name}",
            f"SlurmctldHost={host}(127.0.0.1)",
            f"SlurmctldPort={self.ctld_port}",
            f"SlurmdPort={self.nodes[0].port}",  # each node names its own Port= below
            "SlurmUser=root",
            "SlurmdUser=root",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"AuthInfo=socket={self.munge_socket}",
            f"StateSaveLocation={self.ctld_dir / 'state'}",
            f"SlurmctldPidFile={self.ctld_dir / 'slurmctld.pid'}",
            f"SlurmctldLogFile={self.ctld_log}",
            f"SlurmdSpoolDir={self.node_mount / 'spool'}",
            f"SlurmdPidFile={self.node_mount / 'run' / 'slurmd.pid'}",
            f"SlurmdLogFile={self.node_mount / 'run' / 'slurmd.log'}",
            f"PlugStackConfig={plugstack}",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",
            "JobCompType=jobcomp/none",
            "MpiDefault=none",
            "ReturnToService=2",
            "SlurmdParameters=config_overrides",
            "MailProg=/bin/true",
            "SlurmctldDebug=info",
            "SlurmdDebug=info",
            # a batch job is scheduled at once, not up to 3 s later; every pending job is looked at each second
            # (a job held by a drained node runs within 1 s of its resume, not at the next backfill pass, 30 s)
            "SchedulerParameters=batch_sched_delay=0,sched_interval=1",
            "MinJobAge=3600",  # finished jobs stay visible to scontrol for an hour
            "KillWait=5",
            "InactiveLimit=0",
            *(["GresTypes=gpu"] if self.gpus else []),
            *self.extra_conf,
            *(f"NodeName={n.name} NodeHostname={n.name} NodeAddr={n.address} Port={n.port} "
              f"CPUs={self.cpus} Boards=1 SocketsPerBoard=1 CoresPerSocket={self.cpus} ThreadsPerCore=1 "
              f"RealMemory={self.memory_mb}" + (f" Gres=gpu:{self.gpus[n.name]}" if n.name in self.gpus else "")
              + " State=UNKNOWN" for n in self.nodes),
            f"PartitionName={self.partition} Nodes=ALL Default=YES MaxTime=INFINITE State=UP",
        ]
        self.conf.write_text("\n".join(lines) + "\n")
        gres = self.base_dir / "gres.conf"  # beside slurm.conf, where slurmd reads it
        if self.gpus:
            # slurmd drops a GPU without a device file: each node's GPUs get empty files of their own, named as
            # the driver's are (nvidia0...); slurmd logs "not a valid character or block device" and keeps them,
            # and with TaskPlugin=task/none nothing opens them
            dev = self.base_dir / "dev"
            lines = []
            for name, spec in self.gpus.items():
                kind, count = _gpu_spec(spec)
                (dev / name).mkdir(parents=True, exist_ok=True)
                for i in range(count):
                    (dev / name / f"nvidia{i}").touch()
                files = f"{dev / name}/nvidia[0-{count - 1}]" if count > 1 else f"{dev / name}/nvidia0"
                if count:
                    lines.append(f"NodeName={name} Name=gpu" + (f" Type={kind}" if kind else "")
                                 + f" Count={count} File={files}\n")
            gres.write_text("".join(lines))
        elif gres.exists():
            gres.unlink()

    def _popen(self, argv: list[str], output: Path) -> subprocess.Popen:
        with open(output, "a") as out:
            # A session of its own: a Ctrl-C at the terminal reaches pytest, whose teardown stops it in order.
            # SIGTERM when this process dies without stopping it (pytest killed, a CI timeout).
            return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                    env=self.environ(), cwd=str(self.base_dir), start_new_session=True,
                                    preexec_fn=_die_with_parent)

    def _start_munged(self) -> None:
        self.munged = self._popen([
            which("munged"), "--foreground", f"--socket={self.munge_socket}", f"--key-file={self.munge_key}",
            f"--pid-file={self.munge_dir / 'munged.pid'}", f"--log-file={self.munge_log}",
            f"--seed-file={self.munge_dir / 'munged.seed'}", "--num-threads=4",
            # --force: munged wants every directory above its socket open to all (o+x) so that any user can
            # reach it; pytest's temporary directories are 0700.  Forced, it warns and runs (root's clients
            # and daemons reach it all the same).
            "--force",
        ], self.munge_log)  # in the foreground munged logs to stderr, not to --log-file
        deadline = time.monotonic() + 10
        while True:
            if self.munged.poll() is not None:
                raise self._failed(f"munged exited with code {self.munged.returncode}", self.munge_log)
            if self.munge_socket.exists():
                r = subprocess.run([which("munge"), f"--socket={self.munge_socket}", "-n"], capture_output=True)
                if r.returncode == 0:
                    return
            if time.monotonic() > deadline:
                raise self._failed("munged not answering on its socket after 10s", self.munge_log)
            time.sleep(0.05)

    def _start_slurmctld(self) -> None:
        self.slurmctld = self._popen([which("slurmctld"), "-D", "-i", "-f", str(self.conf)],
                                     self.ctld_dir / "slurmctld.out")
        deadline = time.monotonic() + 20
        while True:
            if self.slurmctld.poll() is not None:
                raise self._failed(f"slurmctld exited with code {self.slurmctld.returncode}", self.ctld_log,
                                   self.ctld_dir / "slurmctld.out")
            r = self.run("scontrol", "ping", timeout=15)
            if r.returncode == 0 and "is UP" in r.stdout:
                return
            if time.monotonic() > deadline:
                raise self._failed(f"slurmctld not answering after 20s ({(r.stdout + r.stderr).strip()})",
                                   self.ctld_log, self.ctld_dir / "slurmctld.out")
            time.sleep(0.1)

    def _start_slurmd(self, node: SlurmNode) -> None:
        spool, run = self.node_mount / "spool", self.node_mount / "run"
        node.mnt_ns = node.ns_fd = None  # a previous start's namespace is gone
        script = ('set -e; mount --bind "$1" "$2"; mount --bind "$3" "$4"; shift 4; exec "$@"')
        node.proc = self._popen([
            which("unshare"), "--mount", "--propagation", "private", "sh", "-c", script, "sh",
            str(node.spool), str(spool), str(node.run_dir), str(run),
            which("slurmd"), "-D", "-N", node.name, "-f", str(self.conf),
        ], node.output)
        # its mount namespace, once unshare has made it (compared with ours: never mistake ours for it)
        ours = _mnt_ns(os.getpid())
        pid_file = node.run_dir / "slurmd.pid"
        deadline = time.monotonic() + 10
        while True:
            if node.proc.poll() is not None:
                raise self._failed(f"slurmd {node.name} exited with code {node.proc.returncode}", node.log,
                                   node.output)
            ns = _mnt_ns(node.proc.pid)
            if ns and ns != ours and node.mnt_ns is None:
                fd = _open_ns(node.proc.pid)
                if fd is not None and os.readlink(f"/proc/self/fd/{fd}") == ns:
                    node.mnt_ns, node.ns_fd = ns, fd
                elif fd is not None:
                    os.close(fd)
            if node.mnt_ns and pid_file.exists():  # written through its bind mount: the mounts are in place
                return
            if time.monotonic() > deadline:
                raise self._failed(f"slurmd {node.name} wrote no pid file ({pid_file}) after 10s", node.log,
                                   node.output)
            time.sleep(0.05)


def _gpu_spec(spec: int | str) -> tuple[str | None, int]:
    """``2`` -> (None, 2); ``"a100:2"`` -> ("a100", 2)."""
    kind, _, count = str(spec).rpartition(":")
    if not count.isdigit():
        raise ValueError(f"gpus: {spec!r} is not N or TYPE:N")
    return kind or None, int(count)


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the parent (this Python) exits (Linux PR_SET_PDEATHSIG)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG; kept across exec (unshare -> sh -> slurmd)


def _says_more(output: Path, log: Path) -> bool:
    """Whether a daemon's stdout/stderr ends with something its log lacks (what it said before opening its log).

    In the foreground (``-D``) a Slurm daemon writes each log line to stderr too, as ``slurmd: message``."""
    try:
        said = [line for line in output.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return False
    if not said:
        return False
    try:
        logged = log.read_text(errors="replace")
    except OSError:
        return True
    return said[-1].split(": ", 1)[-1] not in logged


def _wait_gone(pids: list[int], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for pid in pids:
        while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
            try:  # a zombie child of ours: reap it
                if os.waitpid(pid, os.WNOHANG)[0]:
                    break
            except ChildProcessError:
                pass
            if _is_zombie(pid):
                break
            time.sleep(0.02)


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


_FIELD = re.compile(r"(?:^|\s)([A-Za-z_:/]+)=")


def _fields(line: str) -> dict[str, str]:
    """``Key=value`` pairs of one ``scontrol -o`` line; a value runs up to the next `` Key=`` (values hold spaces)."""
    out: dict[str, str] = {}
    matches = list(_FIELD.finditer(line))
    for m, nxt in zip(matches, [*matches[1:], None]):
        out[m.group(1)] = line[m.end(): nxt.start() if nxt else len(line)].strip()
    return out
