"""What a host's connection variables mean, as Ansible's ``ssh`` connection and ``sudo`` become plugins read them.

Every setting is read under each name the plugin lists for it (its DOCUMENTATION ``vars:``), and when several
are set **the last one listed wins** (Ansible's ``ConfigManager._loop_entries`` keeps looping after a match), so
``ansible_ssh_host`` beats ``ansible_host``; the tuples below are in the plugin's order (docs/inventory.md has the
table).  :func:`ssh_target` turns a host's variables and ssh arguments (:mod:`fleet.sshargs`) into where and as
whom to connect, or a :class:`ConnectionProblem`: the one rule both the transport and ``gpufleet hosts`` use.

Pure, except :func:`missing_key_files` / :func:`preflight` (they look at the controller's files).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any, Iterable

from fleet import sshargs

# Host names and addresses go into ssh/known_hosts and file names: keep them boring (letters of any
# script, digits, and . : - _ [ ] % @ for IPv6 and zone ids); users likewise.
SAFE_HOST = re.compile(r"^[\w.:\-\[\]%@]+$")
SAFE_USER = re.compile(r"^[A-Za-z0-9_.][A-Za-z0-9_.\-]*\$?$")

# Each setting's variables in the order Ansible's plugin lists them: the last one set wins.
ADDRESS_VARS = ("ansible_host", "ansible_ssh_host")  # ssh plugin option `host` (after inventory_hostname)
PORT_VARS = ("ansible_port", "ansible_ssh_port")  # ssh `port`
USER_VARS = ("ansible_user", "ansible_ssh_user")  # ssh `remote_user`
KEY_FILE_VARS = ("ansible_private_key_file", "ansible_ssh_private_key_file")  # ssh `private_key_file`
PASSWORD_VARS = ("ansible_password", "ansible_ssh_pass", "ansible_ssh_password")  # ssh `password`
BECOME_PASSWORD_VARS = ("ansible_become_password", "ansible_become_pass", "ansible_sudo_pass")  # sudo `become_pass`
SSH_ARGS_VARS = ("ansible_ssh_common_args", "ansible_ssh_extra_args")  # ssh `ssh_common_args`, `ssh_extra_args`
HOST_KEY_CHECKING_VARS = ("ansible_host_key_checking", "ansible_ssh_host_key_checking")  # ssh `host_key_checking`
CONNECTION_VARS = (*ADDRESS_VARS, *PORT_VARS, *USER_VARS, *KEY_FILE_VARS, *PASSWORD_VARS, *BECOME_PASSWORD_VARS,
                   *SSH_ARGS_VARS, "ansible_connection", "ansible_become", "ansible_python_interpreter")
SECRET_VARS = frozenset((*PASSWORD_VARS, *BECOME_PASSWORD_VARS))
# How many SSH handshakes gpufleet runs at once with one jump host (bastion): below OpenSSH's stock
# ``MaxStartups 10:30:100``, past whose first number sshd drops new unauthenticated connections at random.
JUMP_HANDSHAKES_VAR = "gpufleet_jump_handshakes"
JUMP_HANDSHAKES_DEFAULT = 8

# Connection plugins that mean "SSH to the host" (gpufleet speaks SSH itself) or "this machine".
SSH_CONNECTIONS = frozenset({"ssh", "smart", "paramiko", "paramiko_ssh", "ansible.builtin.ssh",
                             "ansible.builtin.paramiko_ssh", "ansible.legacy.ssh"})
LOCAL_CONNECTIONS = frozenset({"local", "ansible.builtin.local", "ansible.legacy.local"})

_TEMPLATE = re.compile(r"\{\{|\{%")


class Vaulted(str):
    """An ``!vault`` value: gpufleet cannot decrypt it (the text is the ciphertext)."""


class ConnectionProblem(ValueError):
    """A host gpufleet cannot connect to as its inventory describes; the message says why, on one line."""


def truthy(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in {"1", "yes", "true", "on", "y"}


def is_template(value: Any) -> bool:
    return isinstance(value, str) and bool(_TEMPLATE.search(value))


def setting(variables: dict, names: tuple) -> Any:
    """The value Ansible's plugin takes for a setting listed under ``names``: the last of them that is set."""
    value = None
    for name in names:
        if variables.get(name) is not None:
            value = variables[name]
    return value


def setting_name(variables: dict, names: tuple) -> str | None:
    """Which of ``names`` :func:`setting` took its value from (None: none is set)."""
    chosen = None
    for name in names:
        if variables.get(name) is not None:
            chosen = name
    return chosen


def host_problem(variables: dict) -> str | None:
    """Why the connection variables themselves cannot be honoured (a template, a vaulted value, a foreign
    connection plugin, a bad port), or None.  :func:`problem` adds the ssh arguments."""
    for name in CONNECTION_VARS:
        value = variables.get(name)
        if name == "ansible_python_interpreter" and is_template(value):
            continue  # the node's default python3 is used instead (a template names the controller's python)
        if is_template(value):
            return f"{name} is a Jinja template ({value!r}); gpufleet does not render templates: set it literally"
        if isinstance(value, Vaulted):
            return f"{name} is vault-encrypted; gpufleet cannot decrypt it"
    connection = variables.get("ansible_connection")
    if connection not in (None, "") and connection not in SSH_CONNECTIONS | LOCAL_CONNECTIONS:
        return f"ansible_connection {connection!r} is not supported (gpufleet connects over ssh, or local)"
    port = setting(variables, PORT_VARS)
    if port is not None and (isinstance(port, bool) or not str(port).isdigit() or not 0 < int(port) < 65536):
        return f"port must be a number between 1 and 65535, got {port!r}"
    limit = variables.get(JUMP_HANDSHAKES_VAR)
    if limit is not None and jump_handshakes(variables) is None:
        return f"{JUMP_HANDSHAKES_VAR} must be a whole number of at least 1, got {limit!r}"
    return None


def jump_handshakes(variables: dict) -> int | None:
    """How many handshakes at once with this host's jump host (:data:`JUMP_HANDSHAKES_VAR`); None: not a count."""
    value = variables.get(JUMP_HANDSHAKES_VAR, JUMP_HANDSHAKES_DEFAULT)
    if isinstance(value, bool) or not str(value).strip().isdigit() or int(str(value).strip()) < 1:
        return None
    return int(str(value).strip())


def check_connection_value(key: str, value: Any) -> str | None:
    """Why a literal connection value is refused (shell metacharacters, a bad port), or None.

    Templates and vaulted values are not refused here: they become the host's problem."""
    if is_template(value) or isinstance(value, Vaulted):
        return None
    if key in PORT_VARS:
        if isinstance(value, bool) or not isinstance(value, (int, str)) or not str(value).isdigit() or not (
            0 < int(value) < 65536
        ):
            return f"port must be a number between 1 and 65535, got {value!r}"
    elif key in ADDRESS_VARS:
        if not isinstance(value, str) or not SAFE_HOST.match(value):
            return f"address carries characters that are not allowed: {value!r}"
    elif key in USER_VARS:
        if not isinstance(value, str) or not SAFE_USER.match(value):
            return f"user name carries characters that are not allowed: {value!r}"
    return None


def is_local(variables: dict) -> bool:
    return variables.get("ansible_connection") in LOCAL_CONNECTIONS


# --------------------------------------------------------------------------- the SSH target


@dataclass(frozen=True)
class KeyFile:
    """A private key file offered to the host, and the variable that named it (for messages)."""

    path: str  # ~ expanded
    variable: str  # e.g. "ansible_ssh_private_key_file", "ansible_ssh_common_args -i"


@dataclass(frozen=True)
class SshTarget:
    """Where and as whom to connect, as Ansible's ssh plugin and OpenSSH would (``port``/``user`` None: ssh's
    own default or ~/.ssh/config decides)."""

    address: str
    port: int | None
    user: str | None
    key_files: tuple[KeyFile, ...]  # in the order they are offered
    args: sshargs.SshArgs
    password: str | None = field(default=None, repr=False)  # never logged, never reported
    # what the inventory asks to turn host key checking off with, ignored (see host_key_warning)
    host_key_overrides: tuple[str, ...] = ()


ParseCache = dict  # ssh arguments text -> its SshArgs or SshArgsError: one parse per distinct text in a batch


def _parse(text: str, cache: ParseCache | None) -> sshargs.SshArgs:
    if cache is None:
        return sshargs.parse(text)
    if text not in cache:
        try:
            cache[text] = sshargs.parse(text)
        except sshargs.SshArgsError as e:
            cache[text] = e
    got = cache[text]
    if isinstance(got, sshargs.SshArgsError):
        raise got
    return got


def ssh_target(name: str, variables: dict, cache: ParseCache | None = None) -> SshTarget:
    """The SSH target of host ``name``, or :class:`ConnectionProblem` naming what cannot be honoured.
    ``cache``: a dict of the caller's, to parse each distinct ssh arguments text once over many hosts."""
    why = host_problem(variables)
    if why:
        raise ConnectionProblem(why)
    parsed: list[tuple[str, sshargs.SshArgs]] = []
    for var in SSH_ARGS_VARS:
        text = variables.get(var)
        if text in (None, ""):
            continue
        try:
            parsed.append((var, _parse(str(text), cache)))
        except sshargs.SshArgsError as e:
            raise ConnectionProblem(f"{var}: {e}") from None
    if len(parsed) == 1:
        args = parsed[0][1]
    else:
        try:  # as ssh sees them: one command line
            args = _parse(" ".join(str(variables[v]) for v, _ in parsed), cache)
        except sshargs.SshArgsError as e:
            raise ConnectionProblem(f"{' / '.join(v for v, _ in parsed)}: {e}") from None
    address = setting(variables, ADDRESS_VARS)
    port_value = setting(variables, PORT_VARS)
    port = None if port_value is None else int(port_value)
    user = setting(variables, USER_VARS)
    user = None if user is None else str(user)
    for what, mine, theirs, names in (("port", port, args.port, PORT_VARS), ("user", user, args.user, USER_VARS)):
        if mine is not None and theirs is not None and mine != theirs:
            raise ConnectionProblem(f"{setting_name(variables, names)} ({mine}) and the ssh arguments' {what} "
                                    f"({theirs}) differ: keep one")
    keys: list[KeyFile] = []
    for var, a in parsed:
        keys += [KeyFile(os.path.expanduser(k), f"{var} -i") for k in a.identity_files]
    key_file = setting(variables, KEY_FILE_VARS)
    if key_file not in (None, ""):
        keys.append(KeyFile(os.path.expanduser(str(key_file)), setting_name(variables, KEY_FILE_VARS)))
    password = setting(variables, PASSWORD_VARS)
    overrides = tuple(f"{var} {o}" for var, a in parsed for o in a.host_key_overrides)
    checking = setting_name(variables, HOST_KEY_CHECKING_VARS)
    if checking and not truthy(variables[checking]):
        overrides += (f"{checking}={variables[checking]}",)
    return SshTarget(
        address=name if address is None else str(address),
        port=port if port is not None else args.port,
        user=user if user is not None else args.user,
        key_files=tuple(keys),
        args=args,
        password=None if password in (None, "") else str(password),
        host_key_overrides=overrides,
    )


def problem(name: str, variables: dict, cache: ParseCache | None = None) -> str | None:
    """None, or the one line saying why gpufleet cannot connect to this host as its inventory describes it."""
    if is_local(variables):
        return host_problem(variables)
    try:
        ssh_target(name, variables, cache)
    except ConnectionProblem as e:
        return str(e)
    return None


def connect_problem(name: str, variables: dict, cache: ParseCache | None = None) -> str | None:
    """:func:`problem`, then the key files that cannot be read (reads the disk): why connecting to this host is
    refused before anything is contacted.  The transport refuses a host for exactly this, and ``gpufleet hosts``
    shows it."""
    if is_local(variables):
        return host_problem(variables)
    try:
        target = ssh_target(name, variables, cache)
    except ConnectionProblem as e:
        return str(e)
    missing = missing_key_files(target)
    return "; ".join(missing) if missing else None


# --------------------------------------------------------------------------- checks over the selected hosts


def missing_key_files(target: SshTarget) -> list[str]:
    """The target's key files that cannot be read, each as ``variable: path does not exist`` (reads the disk)."""
    return [why for key in target.key_files if (why := key_file_problem(key))]


def key_file_problem(key: KeyFile) -> str | None:
    """``variable: path does not exist`` (or ``cannot be read``), or None (reads the disk)."""
    if not os.path.exists(key.path):
        return f"{key.variable}: {key.path} does not exist"
    if not os.access(key.path, os.R_OK):
        return f"{key.variable}: {key.path} cannot be read"
    return None


def _hosts_phrase(names: list[str], limit: int = 5) -> str:
    shown = ", ".join(names[:limit])
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return f"host{'s' if len(names) != 1 else ''} {shown}{more}"


def _targets(hosts: Iterable, cache: ParseCache):
    """``(host, its SshTarget)`` for each host gpufleet reaches over SSH; a host whose entry cannot be honoured
    is left to its own problem (it is reported per host)."""
    for h in hosts:
        if is_local(h.vars):
            continue
        try:
            yield h, ssh_target(h.name, h.vars, cache)
        except ConnectionProblem:
            continue


def preflight(hosts: Iterable, cache: ParseCache | None = None) -> list[str]:
    """Configuration errors found before any host is contacted: one line per missing or unreadable key file,
    naming the file, the variable and the hosts that name it.  ``hosts``: objects with ``name`` and ``vars``
    (:class:`~fleet.inventory.model.Host`).  A host whose entry cannot be honoured at all is left to its own
    problem (it is reported per host)."""
    found: dict[str, dict[str, None]] = {}  # line -> the hosts naming it, in order
    cache = {} if cache is None else cache
    checked: dict[KeyFile, str | None] = {}  # each key file looked at once
    for h, target in _targets(hosts, cache):
        for key in target.key_files:
            if key not in checked:
                checked[key] = key_file_problem(key)
        for line in (checked[key] for key in target.key_files if checked[key]):
            found.setdefault(line, {})[h.name] = None
    return [f"{line} ({_hosts_phrase(list(names))}): a configuration error, no host was contacted"
            for line, names in found.items()]


def host_key_warning(hosts: Iterable, cache: ParseCache | None = None) -> str | None:
    """One line for the whole run when the inventory asks to turn host key checking off
    (``StrictHostKeyChecking=no``, ``UserKnownHostsFile=/dev/null``, ``ansible_host_key_checking: false``):
    what asked it, for how many hosts in which groups, and that gpufleet verifies host keys regardless."""
    by_option: dict[str, list] = {}
    cache = {} if cache is None else cache
    for h, target in _targets(hosts, cache):
        for option in target.host_key_overrides:
            by_option.setdefault(option, []).append(h)
    if not by_option:
        return None
    parts = []
    for option, hs in by_option.items():
        groups = sorted({g for h in hs for g in getattr(h, "groups", ()) if g not in ("all", "ungrouped")})
        where = f" in group{'s' if len(groups) != 1 else ''} {', '.join(groups[:5])}" + \
            (f" and {len(groups) - 5} more" if len(groups) > 5 else "") if groups else ""
        parts.append(f"{option} ({len(hs)} host{'s' if len(hs) != 1 else ''}{where})")
    return ("ignored: " + "; ".join(parts) + ": gpufleet verifies every host key against known_hosts; an unknown "
            "key is that host's error (add it with ssh-keyscan after checking its fingerprint, or run with "
            "--accept-new-host-keys)")
