"""One read-only command per host over OpenSSH's own client (``ssh``), as Ansible's default connection does.

Why: at a thousand hosts the audit's controller CPU was paramiko's (about 30 ms per host even one host at a
time: the handshake and the packets in Python); ``ssh`` does the same work in C, in a process of its own, and
the controller only waits on a pipe (docs/performance.md).

When: a fan-out whose task is **one read-only command per host** (the audit's gather) asks for it with
:attr:`fleet.transport.SshOptions.openssh` (the client's path), and :func:`plan` finds the host's entry one that ``ssh``
takes as is: key or agent authentication, no jump host or ProxyCommand, no ``--accept-new-host-keys``, not
``ansible_connection: paramiko``.  Everything else, and every connection ``ssh`` fails to make (exit 255 with
nothing on stdout: a refused or dropped connection, a host key refused), goes to the paramiko transport
(:class:`fleet.transport.SshTransport`), which tries dropped connections again with its
backoff and names each failure as everywhere else.  Two failures are final at once, not tried twice: a TCP
connection that timed out (a second wait would double the slowest part of a dead host), and an authentication
refused (one failed login per host per run).  Host keys are verified the same way either way:
``StrictHostKeyChecking=yes`` against the same known_hosts files, ``BatchMode=yes`` so nothing prompts.
"""

from __future__ import annotations

import contextlib
import getpass
import math
import os
import re
import select
import signal
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass

from fleet.inventory import Host
from fleet.inventory.connection import ssh_target
from fleet.outcome import AuthFailed, CommandResult, TimedOut, Unreachable

# ssh in a process group of its own: a terminal's Ctrl-C reaches gpufleet, which stops the hosts itself, and not
# ssh directly.  Not a session of its own: Linux's autogroup scheduler gives each session an equal share of the
# CPU, so 64 sessions of ssh would take the CPU from everything else on the machine (a login node's other
# users; the test hosts' sshds in the bench, where it made the audit 1.5x slower than xargs).
OWN_GROUP: dict = {"process_group": 0} if sys.version_info >= (3, 11) else {"start_new_session": True}
PARAMIKO_CONNECTIONS = frozenset({"paramiko", "paramiko_ssh"})
SSH_FAILED = 255  # ssh's own exit status when it could not connect, authenticate or keep the connection
UNSAFE_PATH = re.compile(r"[\s\"'%\\]")  # ssh splits its file lists on blanks and expands % tokens: not these
TCP_TIMEOUT = re.compile(r"^ssh: connect to host .* port \d+: Connection timed out\r?$", re.M)
DENIED = re.compile(r"^\S+: Permission denied \(([^)]*)\)\.\r?$", re.M)  # sshconnect2.c, after every method


@dataclass(frozen=True)
class Plan:
    """How ``ssh`` reaches a host: ``argv`` up to (not including) the command, or why it cannot (``reason``)."""

    argv: tuple[str, ...] = ()
    reason: str = ""
    label: str = ""  # user@address[:port], as the paramiko transport names it
    keys: tuple[str, ...] = ()  # the key files offered (for an authentication failure's message)
    connect_timeout: float = 10.0


def plan(host: Host, *, ssh: str, connect_timeout: float, known_hosts: str, system_known_hosts: str,
         ssh_config: str | None, accept_new_host_keys: bool) -> Plan:
    """The ``ssh`` command line for ``host`` (pure: the inventory entry and the run's options in, argv out)."""
    if host.is_local:
        return Plan(reason="a local host")
    if host.vars.get("ansible_connection") in PARAMIKO_CONNECTIONS:
        return Plan(reason=f"ansible_connection: {host.vars['ansible_connection']}")
    if accept_new_host_keys:
        return Plan(reason="--accept-new-host-keys (new keys are recorded by gpufleet, one at a time)")
    t = ssh_target(host.name, host.vars)
    a = t.args
    if t.password:
        return Plan(reason="password authentication")
    if a.jumps or a.proxy_command:
        return Plan(reason="a jump host or ProxyCommand (one shared connection per jump host)")
    ct = a.connect_timeout or connect_timeout
    files = [os.path.expanduser(p) for p in (a.known_hosts_files or (known_hosts,))]
    keys = [k.path for k in t.key_files]
    paths = [*files, os.path.expanduser(system_known_hosts), *keys, *([ssh_config] if ssh_config else [])]
    if any(UNSAFE_PATH.search(p) for p in paths):
        return Plan(reason="a file path with blanks, quotes or % (ssh would split or expand it)")
    argv = [ssh, "-T", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
            "-o", "UserKnownHostsFile=" + " ".join(files),
            "-o", "GlobalKnownHostsFile=" + os.path.expanduser(system_known_hosts),
            "-o", f"ConnectTimeout={max(1, math.ceil(ct))}", "-o", "LogLevel=ERROR"]
    if ssh_config:
        argv += ["-F", ssh_config]
    for k in keys:
        argv += ["-i", k]
    if a.identities_only:
        argv += ["-o", "IdentitiesOnly=yes"]
    if a.no_proxy:
        argv += ["-o", "ProxyCommand=none", "-o", "ProxyJump=none"]
    if a.compression:
        argv.append("-C")
    if a.server_alive_interval:
        argv += ["-o", f"ServerAliveInterval={a.server_alive_interval}"]
    if a.forward_agent is not None:
        argv += ["-o", f"ForwardAgent={'yes' if a.forward_agent else 'no'}"]
    if t.port is not None:
        argv += ["-p", str(t.port)]
    if t.user is not None:
        argv += ["-l", t.user]
    argv += ["--", t.address]
    label = f"{t.user or getpass.getuser()}@{t.address}" + ("" if t.port in (None, 22) else f":{t.port}")
    return Plan(argv=tuple(argv), label=label, connect_timeout=ct, keys=tuple(keys))


def not_connected(code: int, stdout: bytes) -> bool:
    """``ssh`` failed before the command ran: its own exit status, and not a byte of the command's output.
    (A command that itself exits 255 silently is run again over paramiko: the command is read-only.)"""
    return code == SSH_FAILED and not stdout


def tcp_timeout(stderr: str) -> bool:
    """The TCP connection timed out (no answer at all): not worth a second wait over paramiko."""
    return bool(TCP_TIMEOUT.search(stderr))


def denied(stderr: str) -> str | None:
    """The methods the server refused (``publickey``...) when ``ssh`` could not authenticate; else None.
    Not tried again over paramiko: one failed authentication per run, as everywhere else."""
    m = DENIED.search(stderr)
    return m.group(1) if m else None


def wait_exit(proc: subprocess.Popen, timeout: float) -> bool:
    """Wait for ``proc`` to exit, at most ``timeout`` seconds, asleep in the kernel (a pidfd): False if it did
    not.  Where pidfds are missing, :meth:`subprocess.Popen.wait` (which polls)."""
    try:
        fd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):
        try:
            proc.wait(timeout)
            return True
        except subprocess.TimeoutExpired:
            return False
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        if not poller.poll(max(0, int(timeout * 1000))):
            return False
    finally:
        os.close(fd)
    proc.wait()
    return True


@contextlib.contextmanager
def _input(stdin: str | None):
    """The command's standard input: nothing, or ``stdin`` from a file (written before ssh starts)."""
    if stdin is None:
        yield subprocess.DEVNULL
        return
    with tempfile.TemporaryFile() as f:
        f.write(stdin.encode())
        f.seek(0)
        yield f


class OpenSshCommand:
    """Run one command on ``host`` with ``ssh`` (:func:`plan`); :attr:`fallback` is the paramiko transport that
    takes over when ``ssh`` could not connect, and serves ``put``/``get``."""

    def __init__(self, host: Host, the_plan: Plan, command_timeout: float, fallback):
        self.host = host
        self.plan = the_plan
        self.command_timeout = command_timeout
        self._fallback_factory = fallback
        self._fallback = None
        self._proc: subprocess.Popen | None = None
        self._lock = threading.Lock()
        self._closed = False

    @property
    def fallback(self):
        if self._fallback is None:
            self._fallback = self._fallback_factory()
        return self._fallback

    def run(self, command: str, timeout: float | None = None, stdin: str | None = None,
            sudo: bool = False):
        if sudo or self._fallback is not None:
            return self.fallback.run(command, timeout=timeout, stdin=stdin, sudo=sudo)
        timeout = self.command_timeout if timeout is None else timeout
        # ssh writes into files, as ``xargs ... > out`` does: it never waits for this process to read a pipe,
        # and this thread sleeps until ssh exits (no wake-up per block of output, none per poll)
        with tempfile.TemporaryFile() as out_f, tempfile.TemporaryFile() as err_f, \
                _input(stdin) as in_f:
            with self._lock:
                if self._closed:
                    raise Unreachable(f"connection to {self.plan.label} closed before the command")
                proc = self._proc = subprocess.Popen([*self.plan.argv, command], stdin=in_f, stdout=out_f,
                                                     stderr=err_f, **OWN_GROUP)
            if not wait_exit(proc, self.plan.connect_timeout + timeout):
                self._kill(proc)
                proc.wait()
                raise TimedOut(f"command did not finish within {timeout:g}s")
            out_f.seek(0)
            err_f.seek(0)
            out, err = out_f.read(), err_f.read()
        text = err.decode(errors="replace")
        if self._closed:
            raise Unreachable(f"connection to {self.plan.label} closed during the command")
        if proc.returncode < 0:
            raise Unreachable(f"ssh to {self.plan.label} was killed by signal {-proc.returncode}")
        if not_connected(proc.returncode, out):
            if tcp_timeout(text):
                raise Unreachable(f"connection to {self.plan.label} timed out after "
                                  f"{self.plan.connect_timeout:g}s")
            methods = denied(text)
            if methods is not None:
                keys = self.plan.keys
                offered = f" with key{'s' if len(keys) > 1 else ''} {', '.join(keys)}" if keys else ""
                raise AuthFailed(f"authentication failed for {self.plan.label}{offered} (ssh: permission denied; "
                                 f"the server accepts {methods})")
            return self.fallback.run(command, timeout=timeout, stdin=stdin)
        return CommandResult(command, proc.returncode, out.decode(errors="replace"), text)

    def put(self, local, remote: str) -> None:
        self.fallback.put(local, remote)

    def get(self, remote: str, local) -> None:
        self.fallback.get(remote, local)

    @staticmethod
    def _kill(proc: subprocess.Popen) -> None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def close(self) -> None:
        with self._lock:
            self._closed = True
            proc = self._proc
        if proc is not None and proc.poll() is None:
            self._kill(proc)
        if self._fallback is not None:
            self._fallback.close()
