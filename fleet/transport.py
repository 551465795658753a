"""Talking to one host: over SSH (Fabric/paramiko, host keys verified) or locally.

Both transports offer the same small surface -- ``run``, ``put``, ``get`` and
``close`` -- and raise :class:`HostError` subclasses that carry the host state
the fan-out records (unreachable, auth failed, host key rejected, timed out).

Files travel over SFTP; a server without the ``sftp`` subsystem (hardened
configurations) gets them streamed over an exec channel instead (``cat``, as
Ansible's piped transfer does), remembered per connection.

Host keys are :mod:`fleet.host_keys`; the connections shared on the way to jump
hosts, :mod:`fleet.jump_pool`.  The module stays over 500 lines for one reason:
:class:`SshTransport` is one connection's whole life (connect with retries through
its jump chain, run with become, put and get with the no-SFTP fallback, stop,
close), and its parts share the connection's state.
"""

from __future__ import annotations

import errno
import os
import random
import select
import shlex
import shutil
import signal
import socket
import subprocess
import threading
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import paramiko
from fabric import Config, Connection

from fleet import channel_guard, openssh, sshargs
from fleet.host_keys import KnownHosts, RejectUnknown, TrustOnFirstUse, UnknownKey, fingerprint, known_hosts_name
from fleet.inventory import Host
from fleet.jump_pool import Chain, JumpPool
from fleet.inventory.connection import connect_problem, host_key_warning, jump_handshakes, preflight, ssh_target
from fleet.outcome import AuthFailed, CommandResult, HostError, HostKeyRejected, TimedOut, Unreachable, Unusable
from fleet.shell import become as become_command, quote

__all__ = ["CommandResult", "LocalTransport", "SshOptions", "SshTransport", "Transport", "connect",
           "host_key_warning", "preflight"]

USER_KNOWN_HOSTS = "~/.ssh/known_hosts"
SYSTEM_KNOWN_HOSTS = "/etc/ssh/ssh_known_hosts"
EOF_GRACE_S = 2.0  # after a command's exit status, how long its output's EOF may take
RETRY_FIRST_S = 0.1  # a connection dropped before authentication: the first wait before trying again...
RETRY_MOST_S = 2.0  # ...doubling up to this, each jittered by +-50%, all within the connect timeout


def retry_delay(attempt: int, rng: random.Random) -> float:
    """The wait before try ``attempt + 2`` of a connection a busy sshd dropped: exponential, jittered so that
    the hosts a daemon dropped together do not come back together."""
    return min(RETRY_MOST_S, RETRY_FIRST_S * 2 ** attempt) * rng.uniform(0.5, 1.5)


@dataclass
class SshOptions:
    """How to reach hosts.  Every wait is bounded."""

    forks: int = 32
    connect_timeout: float = 10.0
    command_timeout: float = 300.0
    accept_new_host_keys: bool = False
    known_hosts: str = USER_KNOWN_HOSTS
    system_known_hosts: str = SYSTEM_KNOWN_HOSTS
    ssh_config: str | None = None  # None: ~/.ssh/config and /etc/ssh/ssh_config, as Fabric does
    sudo_password: str | None = field(default=None, repr=False)  # never logged, never reported
    # the run's task is one read-only command per host (the audit): this OpenSSH client (its path, found once
    # per run) runs it where the host's entry allows (fleet.openssh); None, or where ssh could not connect:
    # paramiko
    openssh: str | None = None
    known_hosts_lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)
    jumps: JumpPool = field(default_factory=JumpPool, repr=False, compare=False)  # shared by the run's hosts
    host_keys: KnownHosts = field(default_factory=lambda: KnownHosts(), repr=False, compare=False)  # read once


class Transport(Protocol):
    host: Host

    def run(self, command: str, timeout: float | None = None, stdin: str | None = None,
            sudo: bool = False) -> CommandResult: ...

    def put(self, local: str | os.PathLike, remote: str) -> None: ...

    def get(self, remote: str, local: str | os.PathLike) -> None: ...

    def close(self) -> None: ...


# --------------------------------------------------------------------------- the host's connection variables
# --------------------------------------------------------------------------- host keys


# --------------------------------------------------------------------------- commands


def _with_become(command: str, stdin: str | None, sudo: bool, password: str | None) -> tuple[str, str | None]:
    """The command line and stdin for running ``command``, through sudo when asked.

    The password only ever travels on stdin, and only to a sudo that asks for it.
    """
    if not sudo:
        return command, stdin
    if stdin is not None:
        raise ValueError("a command run through sudo cannot take input on stdin (that is where the password goes)")
    line = become_command(command, with_password=bool(password))
    return line, (password + "\n") if password else None


def _exec_bytes(transport: paramiko.Transport, command: str, stdin: bytes | None, timeout: float,
                chunk: int = 1 << 20) -> tuple[int | None, bytes, bytes]:
    """Run one command on an open SSH transport, stdin and output as bytes, exactly as sent and received.

    Returns ``(exit status, stdout, stderr)``; exit status ``None`` when ``timeout``
    passed first (the channel is closed, which ends the remote command's session),
    ``-1`` when the server closed the channel without an exit status.
    """
    if transport is None or not transport.is_active():
        raise EOFError("SSH transport is not active")
    deadline = time.monotonic() + timeout
    chan = transport.open_session(timeout=min(timeout, 30))
    try:
        chan.exec_command(command)
        if stdin:
            chan.settimeout(max(0.2, deadline - time.monotonic()))  # a full window waits, up to the deadline
            try:
                chan.sendall(stdin)
            except (OSError, EOFError, paramiko.SSHException):
                pass  # the command finished without reading its input
        try:
            chan.shutdown_write()
        except (OSError, EOFError, paramiko.SSHException):
            pass
        # Wait in select() on the channel's event pipe (readable when output, EOF or the close arrives), not
        # in timed polls: hundreds of waiting hosts then cost no wake-ups, and no GIL, until there is work.
        chan.fileno()
        out, err = bytearray(), bytearray()
        exited_at = None
        while True:
            if chan.recv_ready():
                out += chan.recv(chunk)
                continue
            if chan.recv_stderr_ready():
                err += chan.recv_stderr(chunk)
                continue
            if chan.eof_received or chan.closed:
                break
            now = time.monotonic()
            if now > deadline:
                return None, bytes(out), bytes(err)
            wait = min(1.0, deadline - now)
            if chan.exit_status_ready():
                # sshd may send the exit status before the last of the output: wait for its EOF,
                # briefly (a background child holding stdout open never sends one)
                exited_at = exited_at or now
                if now - exited_at > EOF_GRACE_S:
                    break
                wait = min(wait, EOF_GRACE_S - (now - exited_at) + 0.01)
            select.select([chan], [], [], max(0.0, wait))
        if not chan.exit_status_ready() and not chan.closed:  # output ended; the command may still run
            if not chan.status_event.wait(max(0.0, deadline - time.monotonic())):
                return None, bytes(out), bytes(err)
        code = chan.recv_exit_status() if chan.exit_status_ready() else -1
        if not transport.is_active() and code == -1:
            raise EOFError("connection closed")
        return code, bytes(out), bytes(err)
    finally:
        chan.close()


# Piped transfers, for servers without SFTP.  Exit statuses the callers map to Python errors.
_NO_SUCH_FILE, _NOT_READABLE, _SHORT_WRITE = 44, 45, 46


def piped_put_command(remote: str, size: int) -> str:
    """Write stdin to ``remote`` through a temporary file beside it, checked for ``size`` bytes, then renamed."""
    return (
        f"p={quote(remote)}; t=\"$p.gpufleet-part.$$\"; "
        'cat > "$t" || { rm -f -- "$t"; exit 1; }; '
        f'n=$(wc -c < "$t"); [ $n -eq {int(size)} ] || {{ rm -f -- "$t"; exit {_SHORT_WRITE}; }}; '
        'mv -f -- "$t" "$p" || { rm -f -- "$t"; exit 1; }'
    )


def piped_get_command(remote: str) -> str:
    """``remote``'s bytes on stdout; a missing or unreadable file is told by the exit status."""
    return (
        f"p={quote(remote)}; "
        f'[ -e "$p" ] || exit {_NO_SUCH_FILE}; [ -r "$p" ] || exit {_NOT_READABLE}; exec cat -- "$p"'
    )


# --------------------------------------------------------------------------- SSH


class _Transport(paramiko.Transport):
    """paramiko's Transport, tuned for a controller holding hundreds of connections at once:

    * its thread wakes once a second, not ten times, to check it should still run (paramiko's
      ``_active_check_timeout``): 64 idle connections no longer cost 640 wake-ups, each taking the GIL
      from the threads doing work;
    * AES-GCM first among the ciphers (the rest still offered, in paramiko's order): its tag is checked
      in C, where paramiko checks a CTR cipher's MAC byte by byte in Python;
    * nothing is sent on a channel after its close (:mod:`fleet.channel_guard`): OpenSSH would drop the whole
      connection, and with it every host sharing it through a jump host.
    """

    _active_check_timeout = 1.0
    _preferred_ciphers = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com",
                          *(c for c in paramiko.Transport._preferred_ciphers if "gcm" not in c))

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._closes_sent: weakref.WeakSet = weakref.WeakSet()  # the channels whose close went out

    def _send_message(self, data) -> None:
        # every channel message passes here in order (under clear_to_send_lock for the user's and the channels'
        # threads), so the check and the send are one step as seen from a close
        buf = data.packet.getbuffer()
        try:
            kind, rid = channel_guard.recipient(buf)
        finally:
            buf.release()
        if rid is not None:
            live = [c for c in self._channels.values() if c.active and c.remote_chanid == rid]
            if kind == channel_guard.CLOSE:
                self._closes_sent.update(live)
            elif channel_guard.stale(kind, rid, [(c.remote_chanid, c in self._closes_sent) for c in live]):
                return
        super()._send_message(data)


# paramiko's words for bytes that are no SSH packet: a stream cut or garbled during the handshake (seen through a
# jump host under load), worth another try like a dropped connection, never a server's answer
BROKEN_STREAM = frozenset({"Invalid packet blocking", "Mismatched MAC"})


class _Dropped(Unreachable):
    """The server dropped the connection before authentication (reset, closed, no banner): worth another try."""


def t_authenticated(transport: paramiko.Transport | None) -> bool:
    return bool(transport is not None and transport.is_authenticated())


class _ProxyCommand(paramiko.ProxyCommand):
    """paramiko's ProxyCommand, whose close may run twice (ours, and the transport thread's) and reaps the process."""

    def close(self) -> None:
        try:
            os.kill(self.process.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()


class SshTransport:
    """One host over SSH, with its inventory's connection variables and ssh arguments (see :mod:`fleet.sshargs`):
    jump hosts as Fabric gateways (each hop's host key verified like the target's), a ProxyCommand as a
    :class:`paramiko.ProxyCommand`, password authentication.  An entry that cannot be honoured is
    :class:`Unusable` here, before anything is contacted.  No message carries the host's passwords."""

    def __init__(self, host: Host, options: SshOptions):
        self.host = host
        self.options = options
        self._sftp_absent = False  # the server has no sftp subsystem: files go over exec channels
        self._secrets = host.secrets
        self._become_password = host.become_password or options.sudo_password
        why = connect_problem(host.name, host.vars)
        if why:
            raise Unusable(self._scrub(why))
        target = ssh_target(host.name, host.vars)  # the rule gpufleet hosts shows: see fleet.inventory.connection
        self.target = target
        self.args = target.args
        port, user = target.port, target.user
        self.connect_timeout = self.args.connect_timeout or options.connect_timeout
        self.known_hosts = list(self.args.known_hosts_files) or [options.known_hosts]
        cfg = Config(runtime_ssh_path=options.ssh_config) if options.ssh_config else Config()
        cfg.timeouts.connect = int(max(1, self.connect_timeout))
        self._cfg = cfg
        connect_kwargs = self._timeouts()
        keys = [k.path for k in target.key_files]
        if keys:
            connect_kwargs["key_filename"] = keys
        if self.args.identities_only:
            connect_kwargs.update(allow_agent=False, look_for_keys=False)
        if self.args.compression:
            connect_kwargs["compress"] = True
        if target.password:
            connect_kwargs["password"] = target.password
        self._rng = random.Random()  # the jitter of this host's connection retries
        self._handshakes = jump_handshakes(host.vars) or 1
        # jump hosts: jumps[0] is reached directly (or as its own ssh config says), each next one through it;
        # the connections to them are shared by every host of the run behind the same chain (JumpPool)
        self._chain_key: tuple = (tuple(str(j) for j in self.args.jumps), tuple(self.known_hosts),
                                  options.ssh_config, self.connect_timeout, options.accept_new_host_keys)
        self._chain: Chain | None = options.jumps.acquire(self._chain_key, self._build_hops) if self.args.jumps \
            else None
        self.hops: list[Connection] = self._chain.hops if self._chain else []
        if self.hops:
            gateway = self.hops[-1]
        elif self.args.proxy_command or self.args.no_proxy:
            gateway = False  # ours, not ~/.ssh/config's
        else:
            gateway = None  # ~/.ssh/config decides (ProxyJump / ProxyCommand there are Fabric's)
        self.conn = Connection(target.address, user=user, port=port, config=cfg, connect_kwargs=connect_kwargs,
                               gateway=gateway, forward_agent=self.args.forward_agent)
        self._setup_client(self.conn.client)
        self._proxy: _ProxyCommand | None = None

    def _build_hops(self) -> list[Connection]:
        hops: list[Connection] = []
        for jump in self.args.jumps:
            hop = Connection(jump.host, user=jump.user, port=jump.port, config=self._cfg,
                             connect_kwargs=self._timeouts(), gateway=hops[-1] if hops else None)
            self._setup_client(hop.client)
            hops.append(hop)
        return hops

    def _timeouts(self) -> dict:
        ct = self.connect_timeout
        return {"banner_timeout": ct, "auth_timeout": ct, "channel_timeout": ct, "transport_factory": _Transport}

    def _setup_client(self, client: paramiko.SSHClient) -> None:
        """Host keys: the system's and the user's known_hosts; unknown keys refused (or recorded, when asked)."""
        # read once per run and shared (paramiko has no setter for them): the system's, then the user's files
        client._system_host_keys = self.options.host_keys.get((os.path.expanduser(self.options.system_known_hosts),))
        client._host_keys = self.options.host_keys.get(tuple(os.path.expanduser(p) for p in self.known_hosts))
        if self.options.accept_new_host_keys:
            client.set_missing_host_key_policy(
                TrustOnFirstUse(os.path.expanduser(self.known_hosts[0]), self.options.known_hosts_lock))
        else:
            client.set_missing_host_key_policy(RejectUnknown())

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            if len(secret) >= 3:
                text = text.replace(secret, "********")
        return text

    @staticmethod
    def _conn_label(conn: Connection) -> str:
        port = conn.port
        return f"{conn.user}@{conn.host}" + ("" if port == 22 else f":{port}")

    def _label(self) -> str:
        return self._conn_label(self.conn)

    def open(self) -> None:
        if self.conn.is_connected:
            return
        try:
            if self._chain is not None:
                self._open_chain(self._chain)
            if self.args.proxy_command:  # the ProxyCommand's own connection (a bastion's sshd) is bounded too
                with self.options.jumps.gate(f"ProxyCommand {self.args.proxy_command}", self._handshakes):
                    self._retrying(self.conn, self._open_proxied)
            else:
                self._retrying(self.conn, lambda: self._open_one(self.conn, ""))
        except HostError as e:
            self.close()
            raise type(e)(self._scrub(str(e)), e.partial) from None
        if self.args.server_alive_interval:
            for c in (*self.hops, self.conn):
                c.transport.set_keepalive(self.args.server_alive_interval)

    def _open_chain(self, chain: Chain) -> None:
        """Open the shared connections to the jump hosts, once for all the hosts behind them: at most
        ``gpufleet_jump_handshakes`` handshakes with a jump host at once.  A failure is every waiting host's."""
        with chain.lock:
            if chain.failure is not None:
                raise type(chain.failure)(str(chain.failure))
            try:
                for i, hop in enumerate(chain.hops):
                    if hop.is_connected:
                        continue
                    via = (f"jump host {self._conn_label(hop)}: " if i == 0 else
                           f"jump host {self._conn_label(hop)} (via {self._conn_label(chain.hops[i - 1])}): ")
                    with self.options.jumps.gate(self._conn_label(hop), self._handshakes):
                        self._retrying(hop, lambda h=hop, v=via: self._open_one(h, v))
            except HostError as e:
                chain.failure = e
                raise

    def _open_proxied(self) -> None:
        self._proxy = self._start_proxy()
        self.conn.connect_kwargs["sock"] = self._proxy
        try:
            self._open_one(self.conn, "")
        except _Dropped:
            self._close_proxy()
            raise
        finally:
            self.conn.connect_kwargs.pop("sock", None)

    def _retrying(self, conn: Connection, attempt) -> None:
        """``attempt()``, tried again after a jittered, growing wait (:func:`retry_delay`) while the server drops
        the connection before authentication (a busy sshd past its ``MaxStartups``), within the connect timeout.
        Authentication and host key failures are never tried again."""
        start, tries = time.monotonic(), 0
        while True:
            try:
                attempt()
                return
            except _Dropped as e:
                tries += 1
                delay = retry_delay(tries - 1, self._rng)
                if time.monotonic() - start + delay >= self.connect_timeout:
                    raise Unreachable(str(e) + (f" ({tries} tries in {self.connect_timeout:g}s)" if tries > 1
                                                else "")) from None
                conn.client.close()
                time.sleep(delay)

    def _start_proxy(self) -> _ProxyCommand:
        """The ProxyCommand, tokens expanded, run as OpenSSH runs it: ``exec`` by /bin/sh."""
        command = sshargs.proxy_command(self.args.proxy_command, self.conn.host, self.conn.port, self.conn.user,
                                        self.host.address)
        try:
            return _ProxyCommand(shlex.join(["/bin/sh", "-c", "exec " + command]))
        except OSError as e:
            raise Unreachable(f"cannot start the ProxyCommand for {self._label()}: {e.strerror or e}") from None

    def _proxy_said(self) -> str:
        """The ProxyCommand's last words on stderr, once it has exited."""
        proc = getattr(self._proxy, "process", None)
        if proc is None:
            return ""
        try:
            proc.wait(timeout=2)
            err = proc.stderr.read().decode(errors="replace").strip() if proc.stderr else ""
        except (subprocess.TimeoutExpired, OSError, ValueError):
            return ""
        lines = err.splitlines()[-3:]
        return f" (ProxyCommand exited {proc.returncode}" + (f": {' | '.join(lines)})" if lines else ")")

    def _offered(self, conn: Connection) -> str:
        """`` with key /k (and agent keys)``: the credentials offered to ``conn``, named (never a password)."""
        kw = conn.connect_kwargs
        keys = kw.get("key_filename") or []
        keys = [keys] if isinstance(keys, str) else list(keys)
        extra = []
        if kw.get("allow_agent", True) and os.environ.get("SSH_AUTH_SOCK"):
            extra.append("agent keys")
        if kw.get("look_for_keys", True):
            defaults = [p for p in ("~/.ssh/id_rsa", "~/.ssh/id_ecdsa", "~/.ssh/id_ed25519", "~/.ssh/id_dsa")
                        if os.path.exists(os.path.expanduser(p))]
            extra += defaults
        if kw.get("password"):
            extra.append("a password")
        if keys:
            text = f" with key{'s' if len(keys) > 1 else ''} {', '.join(keys)}"
            return text + (f" (and {', '.join(extra)})" if extra else "")
        return f" with {', '.join(extra)}" if extra else ""

    def _open_one(self, conn: Connection, via: str) -> None:
        """Open ``conn`` (the target, or a jump host named in ``via``), each failure mapped to its host state."""
        ct = self.connect_timeout
        label = self._conn_label(conn)
        name = known_hosts_name(conn.host, conn.port)
        proxied = conn is self.conn and self._proxy is not None
        try:
            conn.open()
        except UnknownKey:
            raise HostKeyRejected(
                f"{via}unknown host key for {name}: verify its fingerprint, then add it with "
                f"`ssh-keyscan -p {conn.port} {quote(conn.host)} >> ~/.ssh/known_hosts` "
                f"or re-run with --accept-new-host-keys to trust it on first use"
            ) from None
        except paramiko.BadHostKeyException as e:
            raise HostKeyRejected(
                f"{via}HOST KEY CHANGED for {name}: got {fingerprint(e.key)}, known_hosts has "
                f"{fingerprint(e.expected_key)}. This may be an attack or a reinstalled host; "
                f"if expected, remove the old key with `ssh-keygen -R {quote(name)}`"
            ) from None
        except paramiko.AuthenticationException as e:
            raise AuthFailed(f"{via}authentication failed for {label}{self._offered(conn)}: {e}") from None
        except (socket.timeout, TimeoutError):
            raise Unreachable(f"{via}connection to {label} timed out after {ct:g}s") from None
        except paramiko.ChannelException as e:  # the jump host could not open the way on
            raise Unreachable(f"jump host {self._conn_label(self.hops[-1]) if self.hops else '?'} could not "
                              f"connect to {conn.host}:{conn.port}: {e.text or e}") from None
        except paramiko.SSHException as e:
            t = conn.client.get_transport()
            inner = getattr(t, "saved_exception", None) or e
            msg = str(inner)
            if str(e) == "No authentication methods available":
                raise AuthFailed(f"{via}authentication failed for {label}: no key, agent or password to offer "
                                 f"(ansible_ssh_private_key_file, ansible_password, or ~/.ssh/config)") from None
            if proxied:
                msg = f"{via}SSH handshake with {label} through the ProxyCommand failed: {msg}{self._proxy_said()}"
            elif "banner" in msg.lower() or msg == "No existing session":
                msg = f"{via}no SSH handshake from {label} within {ct:g}s (port open, sshd not answering)"
            else:
                msg = f"{via}SSH handshake with {label} failed: {msg}"
            dropped = ("banner" in str(e).lower() or str(e) in BROKEN_STREAM
                       or isinstance(inner, (EOFError, ConnectionError))) and not t_authenticated(t)
            raise (_Dropped if dropped else Unreachable)(msg) from None
        except ConnectionError as e:  # reset or aborted by the server: sshd dropped it (a refusal is not retried)
            kind = Unreachable if isinstance(e, ConnectionRefusedError) else _Dropped
            raise kind(f"{via}cannot connect to {label}: {e.strerror or e}") from None
        except (socket.gaierror, OSError) as e:
            raise Unreachable(f"{via}cannot connect to {label}: {e.strerror or e}") from None
        except EOFError:
            said = self._proxy_said() if proxied else ""
            raise _Dropped(f"{via}{label} closed the connection during the handshake{said}") from None

    def run(self, command: str, timeout: float | None = None, stdin: str | None = None,
            sudo: bool = False) -> CommandResult:
        self.open()
        timeout = self.options.command_timeout if timeout is None else timeout
        command, stdin = _with_become(command, stdin, sudo and self.conn.user != "root", self._become_password)
        code, out, err = self._exec_bytes(command, stdin.encode() if stdin else None, "command", timeout)
        return CommandResult(command, code, out.decode(errors="replace"), err.decode(errors="replace"))

    def _sftp_available(self) -> bool:
        """Open the connection's SFTP session once; False when the server has no ``sftp`` subsystem.

        A server without it rejects the subsystem request (paramiko: ``SSHException("Channel
        closed.")``) or closes the channel at once (``EOFError``) while the connection itself
        stays up; a lost connection is :class:`Unreachable`.
        """
        if self._sftp_absent:
            return False
        try:
            self.conn.sftp()
            return True
        except (socket.timeout, TimeoutError) as e:
            raise Unreachable(f"SFTP to {self._label()} timed out: {e or type(e).__name__}") from None
        except (EOFError, paramiko.SSHException) as e:
            t = self.conn.client.get_transport()
            if t is None or not t.is_active() or isinstance(e, paramiko.ChannelException):
                raise Unreachable(f"SFTP to {self._label()} failed: {e or type(e).__name__}") from None
            self._sftp_absent = True
            return False

    def _exec_bytes(self, command: str, stdin: bytes | None, what: str,
                    timeout: float | None = None) -> tuple[int, bytes, bytes]:
        """Run ``command`` (the ``what``: command, upload, download): a lost connection is
        :class:`Unreachable`, one past ``timeout`` :class:`TimedOut` (its channel is closed)."""
        timeout = self.options.command_timeout if timeout is None else timeout
        try:
            code, out, err = _exec_bytes(self.conn.client.get_transport(), command, stdin, timeout)
        except (socket.timeout, TimeoutError, EOFError, paramiko.SSHException, OSError) as e:
            raise Unreachable(f"connection to {self._label()} lost during the {what}: "
                              f"{e or type(e).__name__}") from None
        if code is None:
            raise TimedOut(f"{what} did not finish within {timeout:g}s")
        if code == -1:
            raise Unreachable(f"connection to {self._label()} lost during the {what}")
        return code, out, err

    def put(self, local: str | os.PathLike, remote: str) -> None:
        self.open()
        if not self._sftp_available():
            data = Path(local).read_bytes()
            code, _, err = self._exec_bytes(piped_put_command(remote, len(data)), data, "upload")
            if code == _SHORT_WRITE:
                raise Unreachable(f"upload to {self._label()}:{remote} was cut short")
            if code != 0:
                raise OSError(f"upload to {self._label()}:{remote} failed: {err.decode(errors='replace').strip()}")
            return
        try:
            self.conn.put(str(local), remote)
        except (socket.timeout, TimeoutError, EOFError, paramiko.SSHException) as e:
            raise Unreachable(f"upload to {self._label()} failed: {e}") from None

    def get(self, remote: str, local: str | os.PathLike) -> None:
        self.open()
        if not self._sftp_available():
            code, out, err = self._exec_bytes(piped_get_command(remote), None, "download")
            if code == _NO_SUCH_FILE:
                raise FileNotFoundError(errno.ENOENT, "No such file", remote)
            if code == _NOT_READABLE:
                raise PermissionError(errno.EACCES, "Permission denied", remote)
            if code != 0:
                raise OSError(f"download of {self._label()}:{remote} failed: {err.decode(errors='replace').strip()}")
            Path(local).write_bytes(out)
            return
        try:
            self.conn.get(remote, str(local))
        except (socket.timeout, TimeoutError, EOFError, paramiko.SSHException) as e:
            raise Unreachable(f"download from {self._label()} failed: {e}") from None

    def close(self) -> None:
        self.conn.close()
        self._close_proxy()
        chain, self._chain = self._chain, None
        if chain is not None:
            self.options.jumps.release(self._chain_key, chain)

    def _close_proxy(self) -> None:
        proxy, self._proxy = self._proxy, None
        if proxy is not None:
            try:
                proxy.close()
            except OSError:
                pass


# --------------------------------------------------------------------------- local


class LocalTransport:
    """``ansible_connection: local``: run on this machine, no SSH."""

    def __init__(self, host: Host, options: SshOptions):
        self.host = host
        self.options = options

    def run(self, command: str, timeout: float | None = None, stdin: str | None = None,
            sudo: bool = False) -> CommandResult:
        timeout = self.options.command_timeout if timeout is None else timeout
        password = self.host.become_password or self.options.sudo_password
        command, stdin = _with_become(command, stdin, sudo and os.geteuid() != 0, password)
        proc = subprocess.Popen(
            ["/bin/sh", "-c", command],
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=Path.home(),  # as over SSH: commands start in the home directory
            start_new_session=True,
        )
        try:
            out, err = proc.communicate(stdin, timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise TimedOut(f"command did not finish within {timeout:g}s") from None
        return CommandResult(command, proc.returncode, out, err)

    def put(self, local: str | os.PathLike, remote: str) -> None:
        dest = _home_relative(remote)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(local, dest)

    def get(self, remote: str, local: str | os.PathLike) -> None:
        shutil.copyfile(_home_relative(remote), local)

    def close(self) -> None:
        pass


def _home_relative(path: str) -> Path:
    """Remote paths are absolute or relative to the home directory, as over SFTP."""
    p = Path(os.path.expanduser(path))
    return p if p.is_absolute() else Path.home() / p


def connect(host: Host, options: SshOptions) -> Transport:
    """The host's transport; an inventory entry that cannot be honoured is :class:`Unusable`, for the reason
    ``gpufleet hosts`` shows (:func:`fleet.inventory.connection.connect_problem`)."""
    problem = connect_problem(host.name, host.vars)
    if problem:
        raise Unusable(problem)
    if host.is_local:
        return LocalTransport(host, options)
    if options.openssh:
        how = openssh.plan(host, ssh=options.openssh, connect_timeout=options.connect_timeout,
                           known_hosts=options.known_hosts, system_known_hosts=options.system_known_hosts,
                           ssh_config=options.ssh_config, accept_new_host_keys=options.accept_new_host_keys)
        if how.argv:
            return openssh.OpenSshCommand(host, how, options.command_timeout, lambda: SshTransport(host, options))
    return SshTransport(host, options)
