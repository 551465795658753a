"""The ssh options of an inventory host (``ansible_ssh_common_args`` / ``ansible_ssh_extra_args``), parsed.

Pure: a string in, an :class:`SshArgs` or an :class:`SshArgsError` naming the exact
option out.  Ansible hands these strings to OpenSSH's ``ssh``; gpufleet speaks SSH
through paramiko, so it honours what it can reproduce faithfully and refuses the
rest -- an option is never silently dropped.

Honoured (see :data:`HONOURED`): jump hosts (``-J``, ``-o ProxyJump=``, chains
``a,b``), ``-o ProxyCommand=`` (``%h %p %r %n %%`` expanded as OpenSSH does, run
by ``/bin/sh`` as OpenSSH runs it), ``-i`` / ``IdentityFile``, ``IdentitiesOnly``,
``-p`` / ``Port``, ``-l`` / ``User``, ``UserKnownHostsFile`` (a real file),
``ConnectTimeout``, ``ServerAliveInterval``, ``-C`` / ``Compression``, ``-A`` /
``-a`` / ``ForwardAgent``, ``StrictHostKeyChecking=yes`` (what gpufleet always does).

Ignored, and told once per run (:attr:`SshArgs.host_key_overrides`, see
:func:`fleet.inventory.connection.host_key_warning`): ``StrictHostKeyChecking`` other than ``yes`` and
``UserKnownHostsFile=/dev/null`` (or ``none``).  Published inventories carry them to make OpenSSH skip host key
verification; gpufleet verifies host keys regardless (an unknown key is that host's error, with ``ssh-keyscan``
or ``--accept-new-host-keys`` as the remedy), so the host is still used, safely.

Accepted and not needed (see :data:`HARMLESS`, each with its reason): ``-q``,
``-T``, ``ControlMaster`` / ``ControlPersist`` / ``ControlPath``,
``ServerAliveCountMax``, ``LogLevel``, ``BatchMode``.

Refused with a reason: every option not named above.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field

HONOURED = {
    "proxyjump": "the jump host chain, each hop's host key verified like the target's",
    "proxycommand": "run by /bin/sh with %h %p %r %n %% expanded; its stdin/stdout carry the SSH connection",
    "identityfile": "offered before the inventory's key",
    "identitiesonly": "only the given keys: no agent, no default keys",
    "port": "the target's port (ansible_port wins; a different one is an error)",
    "user": "the target's user (ansible_user wins; a different one is an error)",
    "userknownhostsfile": "this host's known_hosts files (keys recorded with --accept-new-host-keys go to the first)",
    "connecttimeout": "this host's connect timeout",
    "serveraliveinterval": "an SSH keepalive every N seconds",
    "compression": "SSH compression",
    "forwardagent": "agent forwarding",
    "stricthostkeychecking": "'yes' is what gpufleet always does; any other value is ignored (host keys verified)",
}

HARMLESS = {
    "controlmaster": "gpufleet keeps one connection per host for the whole run: no multiplexing to set up",
    "controlpersist": "gpufleet keeps one connection per host for the whole run: no multiplexing to set up",
    "controlpath": "gpufleet keeps one connection per host for the whole run: no multiplexing to set up",
    "serveralivecountmax": "a lost connection is detected by the command timeout; keepalives only keep it open",
    "loglevel": "verbosity of OpenSSH's client; gpufleet reports per host itself",
    "batchmode": "gpufleet never prompts during a connection",
}

_FLAGS_HARMLESS = {
    "q": "quiet mode of OpenSSH's client; gpufleet reports per host itself",
    "T": "gpufleet never requests a terminal",
}
_FLAGS_WITH_VALUE = {"o", "J", "i", "p", "l"}
_FLAGS_HONOURED = {"C": ("compression", "yes"), "A": ("forwardagent", "yes"), "a": ("forwardagent", "no")}

# Option spellings, for messages: OpenSSH's own capitalisation.
_SPELLING = {k.lower(): k for k in (
    "ProxyJump", "ProxyCommand", "IdentityFile", "IdentitiesOnly", "Port", "User", "UserKnownHostsFile",
    "ConnectTimeout", "ServerAliveInterval", "Compression", "ForwardAgent", "StrictHostKeyChecking",
    "ControlMaster", "ControlPersist", "ControlPath", "ServerAliveCountMax", "LogLevel", "BatchMode")}

_HOST = re.compile(r"^[A-Za-z0-9_.\-%]+$|^\[[0-9A-Fa-f:.%A-Za-z]+\]$")
_USER = re.compile(r"^[A-Za-z0-9_.][A-Za-z0-9_.\-]*\$?$")
_TOKEN = re.compile(r"%(.)")
class SshArgsError(ValueError):
    """An ssh option gpufleet cannot honour, or a malformed one; the message names it."""


@dataclass(frozen=True)
class Jump:
    """One ProxyJump hop: ``[user@]host[:port]``; user and port None when not given (its ssh config decides)."""

    host: str
    user: str | None = None
    port: int | None = None

    def __str__(self) -> str:
        host = self.host
        return (f"{self.user}@" if self.user else "") + host + (f":{self.port}" if self.port else "")


@dataclass(frozen=True)
class SshArgs:
    """What a host's ssh arguments ask for.  Empty fields: not given."""

    jumps: tuple[Jump, ...] = ()  # in connection order: jumps[0] is reached first
    proxy_command: str | None = None  # the template, tokens unexpanded (see :func:`proxy_command`)
    no_proxy: bool = False  # ProxyJump=none / ProxyCommand=none: no proxy, not even ~/.ssh/config's
    identity_files: tuple[str, ...] = ()
    identities_only: bool = False
    port: int | None = None
    user: str | None = None
    known_hosts_files: tuple[str, ...] = ()
    connect_timeout: float | None = None
    server_alive_interval: int | None = None
    compression: bool = False
    forward_agent: bool | None = None
    ignored: tuple[str, ...] = field(default=())  # accepted as not needed: the options as written
    host_key_overrides: tuple[str, ...] = ()  # asks to skip host key verification, ignored: the options as written


def parse(text: str | None) -> SshArgs:
    """Parse ssh arguments as ``ssh`` would read them (``shlex``, getopt-style flags, ``-o Key=Value``)."""
    text = (text or "").strip()
    if not text:
        return SshArgs()
    try:
        words = shlex.split(text)
    except ValueError as e:
        raise SshArgsError(f"ssh arguments cannot be split ({e}): {text!r}") from None
    values: dict[str, tuple[str, str]] = {}  # key -> (value, as written)
    identity_files: list[str] = []
    ignored: list[str] = []
    i = 0
    while i < len(words):
        word = words[i]
        i += 1
        if not word.startswith("-") or word in ("-", "--") or word.startswith("--"):
            raise SshArgsError(f"unexpected argument {word!r} in the ssh arguments: only options are allowed there")
        j = 1
        while j < len(word):
            flag = word[j]
            j += 1
            if flag in _FLAGS_WITH_VALUE:
                if j < len(word):
                    arg = word[j:]
                elif i < len(words):
                    arg = words[i]
                    i += 1
                else:
                    raise SshArgsError(f"ssh option -{flag} needs a value")
                j = len(word)
                if flag == "o":
                    key, value = _split_option(arg)
                    written = f"-o {arg}"
                else:
                    key, value = {"J": "proxyjump", "i": "identityfile", "p": "port", "l": "user"}[flag], arg
                    written = f"-{flag} {arg}"
                if key == "identityfile":
                    identity_files.append(value)
                    continue
                if key in HARMLESS:
                    ignored.append(written)
                    continue
                _set(values, key, value, written)
            elif flag in _FLAGS_HARMLESS:
                ignored.append(f"-{flag}")
            elif flag in _FLAGS_HONOURED:
                key, value = _FLAGS_HONOURED[flag]
                _set(values, key, value, f"-{flag}")
            else:
                raise SshArgsError(f"ssh option -{flag} is not supported by gpufleet "
                                   f"(supported: -o, -J, -i, -p, -l, -C, -A, -a, -q, -T)")
    return _build(values, identity_files, ignored)


def _split_option(arg: str) -> tuple[str, str]:
    m = re.match(r"^\s*([A-Za-z]+)\s*(?:=\s*|\s+)(.*?)\s*$", arg, re.S)
    if not m or not m.group(2):
        raise SshArgsError(f"ssh option -o {arg!r} is not Key=Value")
    key = m.group(1).lower()
    if key not in HONOURED and key not in HARMLESS:
        raise SshArgsError(f"ssh option -o {m.group(1)} is not supported by gpufleet "
                           f"(supported: {', '.join(sorted(_SPELLING[k] for k in (*HONOURED, *HARMLESS)))})")
    return key, m.group(2)


def _set(values: dict, key: str, value: str, written: str) -> None:
    """OpenSSH keeps an option's first value; a second, different value is refused rather than dropped."""
    if key in values and values[key][0] != value:
        raise SshArgsError(f"ssh option {_SPELLING[key]} is given twice with different values "
                           f"({values[key][1]!r}, then {written!r}); OpenSSH would use the first: keep one")
    values.setdefault(key, (value, written))


def _yes_no(key: str, value: str) -> bool:
    v = value.lower()
    if v not in ("yes", "no"):
        raise SshArgsError(f"ssh option {_SPELLING[key]}={value} is not 'yes' or 'no'")
    return v == "yes"


def _int(key: str, value: str, low: int, high: int | None = None) -> int:
    try:
        n = int(value)
    except ValueError:
        n = None
    if n is None or n < low or (high is not None and n > high):
        raise SshArgsError(f"ssh option {_SPELLING[key]}={value} is not a number"
                           f" from {low}{f' to {high}' if high else ''}")
    return n


def _build(values: dict, identity_files: list[str], ignored: list[str]) -> SshArgs:
    v = {k: val for k, (val, _) in values.items()}
    out: dict = {"identity_files": tuple(identity_files), "ignored": tuple(ignored)}
    jump, command = v.get("proxyjump"), v.get("proxycommand")
    if jump is not None and command is not None and "none" not in (jump.lower(), command.lower()):
        raise SshArgsError(f"both ProxyJump ({values['proxyjump'][1]!r}) and ProxyCommand "
                           f"({values['proxycommand'][1]!r}) are given; OpenSSH refuses that too: keep one")
    if (jump or "").lower() == "none" or (command or "").lower() == "none":
        out["no_proxy"] = True
    elif jump is not None:
        out["jumps"] = parse_jumps(jump)
    elif command is not None:
        proxy_command(command, "h", 22, "u")  # refuse an unknown %-token now, not at connect time
        out["proxy_command"] = command
    overrides = []
    strict = v.get("stricthostkeychecking")
    if strict is not None and strict.lower() != "yes":
        overrides.append(values["stricthostkeychecking"][1])
    if "userknownhostsfile" in v:
        files = tuple(shlex.split(v["userknownhostsfile"]))
        kept = tuple(f for f in files if f not in ("/dev/null", "none"))
        if len(kept) != len(files) or not files:
            overrides.append(values["userknownhostsfile"][1])
        out["known_hosts_files"] = kept
    out["host_key_overrides"] = tuple(overrides)
    if "identitiesonly" in v:
        out["identities_only"] = _yes_no("identitiesonly", v["identitiesonly"])
    if "compression" in v:
        out["compression"] = _yes_no("compression", v["compression"])
    if "forwardagent" in v:
        out["forward_agent"] = _yes_no("forwardagent", v["forwardagent"])
    if "port" in v:
        out["port"] = _int("port", v["port"], 1, 65535)
    if "user" in v:
        if not _USER.match(v["user"]):
            raise SshArgsError(f"ssh option User={v['user']!r} is not a user name")
        out["user"] = v["user"]
    if "connecttimeout" in v:
        out["connect_timeout"] = float(_int("connecttimeout", v["connecttimeout"], 1))
    if "serveraliveinterval" in v:
        out["server_alive_interval"] = _int("serveraliveinterval", v["serveraliveinterval"], 0)
    return SshArgs(**out)


def parse_jumps(spec: str) -> tuple[Jump, ...]:
    """``[user@]host[:port][,...]`` (or ``ssh://[user@]host[:port]``), as ``ssh -J`` reads it."""
    hops = []
    for part in spec.split(","):
        hop = part.strip()
        if hop.startswith("ssh://"):
            hop = hop[len("ssh://"):]
        user = None
        if "@" in hop:
            user, hop = hop.rsplit("@", 1)
            if not _USER.match(user):
                raise SshArgsError(f"jump host {part.strip()!r}: {user!r} is not a user name")
        port = None
        m = re.match(r"^(\[[^\]]+\]|[^:]+)(?::([^:]*))?$", hop)
        if not m:
            raise SshArgsError(f"jump host {part.strip()!r} is not [user@]host[:port]")
        host, port_text = m.group(1), m.group(2)
        if port_text is not None:
            try:
                port = int(port_text)
            except ValueError:
                port = 0
            if not 0 < port < 65536:
                raise SshArgsError(f"jump host {part.strip()!r}: {port_text!r} is not a port")
        if not host or not _HOST.match(host):
            raise SshArgsError(f"jump host {part.strip()!r} is not [user@]host[:port]")
        hops.append(Jump(host.strip("[]"), user, port))
    return tuple(hops)


def proxy_command(template: str, host: str, port: int | None, user: str | None, name: str | None = None) -> str:
    """``template`` with OpenSSH's ProxyCommand tokens expanded: %h host, %p port, %r user, %n the name as given
    (the host's address, as ssh is given it by Ansible), %% a percent sign; any other token is refused."""
    def sub(m: re.Match) -> str:
        token = m.group(1)
        if token == "%":
            return "%"
        if token == "h":
            return host
        if token == "p":
            return str(port or 22)
        if token == "r":
            return user or ""
        if token == "n":
            return name or host
        raise SshArgsError(f"ProxyCommand token %{token} is not one OpenSSH expands there (%h %p %r %n %%)")
    if "%" in _TOKEN.sub("", template):
        raise SshArgsError("ProxyCommand ends with a lone %")
    return _TOKEN.sub(sub, template)
