"""The inventory's data model: :class:`Host` (merged variables, connection settings), :class:`Inventory`, errors.

Connection variables are read under every name Ansible accepts for them (``ansible_host`` or
``ansible_ssh_host``, ...).  What gpufleet cannot honour for one host (a Jinja template in a
connection variable, a connection plugin other than ssh/local) is that host's :attr:`Host.problem`,
never a refusal of the whole inventory.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any

INVENTORY_ENV = "GPUFLEET_INVENTORY"

# Host names and addresses go into ssh/known_hosts and file names: keep them boring (letters of any
# script, digits, and . : - _ [ ] % @ for IPv6 and zone ids); users likewise.
SAFE_HOST = re.compile(r"^[\w.:\-\[\]%@]+$")
SAFE_USER = re.compile(r"^[A-Za-z0-9_.][A-Za-z0-9_.\-]*\$?$")

# Every alias Ansible reads for a connection setting, first one wins when several are set.
ADDRESS_VARS = ("ansible_host", "ansible_ssh_host")
PORT_VARS = ("ansible_port", "ansible_ssh_port")
USER_VARS = ("ansible_user", "ansible_ssh_user")
KEY_FILE_VARS = ("ansible_ssh_private_key_file", "ansible_private_key_file")
PASSWORD_VARS = ("ansible_password", "ansible_ssh_pass")
BECOME_PASSWORD_VARS = ("ansible_become_password", "ansible_become_pass", "ansible_sudo_pass")
SSH_ARGS_VARS = ("ansible_ssh_common_args", "ansible_ssh_extra_args")
CONNECTION_VARS = (*ADDRESS_VARS, *PORT_VARS, *USER_VARS, *KEY_FILE_VARS, *PASSWORD_VARS, *BECOME_PASSWORD_VARS,
                   *SSH_ARGS_VARS, "ansible_connection", "ansible_become", "ansible_python_interpreter")
SECRET_VARS = frozenset((*PASSWORD_VARS, *BECOME_PASSWORD_VARS))

# Connection plugins that mean "SSH to the host" (gpufleet speaks SSH itself) or "this machine".
SSH_CONNECTIONS = frozenset({"ssh", "smart", "paramiko", "paramiko_ssh", "ansible.builtin.ssh",
                             "ansible.builtin.paramiko_ssh", "ansible.legacy.ssh"})
LOCAL_CONNECTIONS = frozenset({"local", "ansible.builtin.local", "ansible.legacy.local"})

_TEMPLATE = re.compile(r"\{\{|\{%")


class InventoryError(Exception):
    """A malformed inventory.  The message names the file, the line (when known) and the key."""

    def __init__(self, path: str | os.PathLike, message: str, line: int | None = None, key: str | None = None):
        self.path = str(path)
        self.line = line
        self.key = key
        where = self.path if line is None else f"{self.path}:{line}"
        what = f" [{key}]" if key else ""
        super().__init__(f"{where}:{what} {message}")


class PatternError(ValueError):
    """A ``--hosts`` pattern that selects nothing or cannot be read."""


class Vaulted(str):
    """An ``!vault`` value: gpufleet cannot decrypt it (the text is the ciphertext)."""


def truthy(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in {"1", "yes", "true", "on", "y"}


def is_template(value: Any) -> bool:
    return isinstance(value, str) and bool(_TEMPLATE.search(value))


def first(variables: dict, names: tuple) -> Any:
    """The value of the first of ``names`` that is set (Ansible's alias order)."""
    for name in names:
        if variables.get(name) is not None:
            return variables[name]
    return None


@dataclass(frozen=True)
class Host:
    """One inventory host with its merged variables and every group it belongs to (without ``all``)."""

    name: str
    vars: dict = field(default_factory=dict, compare=False, hash=False)
    groups: tuple = field(default=(), compare=False, hash=False)

    @property
    def address(self) -> str:
        a = first(self.vars, ADDRESS_VARS)
        return self.name if a is None else str(a)

    @property
    def port(self) -> int | None:
        p = first(self.vars, PORT_VARS)
        try:
            return None if p is None else int(p)
        except (TypeError, ValueError):
            return None  # a template or garbage: see problem

    @property
    def user(self) -> str | None:
        u = first(self.vars, USER_VARS)
        return None if u is None else str(u)

    @property
    def key_file(self) -> str | None:
        k = first(self.vars, KEY_FILE_VARS)
        return None if k is None else os.path.expanduser(str(k))

    @property
    def password(self) -> str | None:
        """The SSH password (ansible_password / ansible_ssh_pass): never logged, never reported."""
        p = first(self.vars, PASSWORD_VARS)
        return None if p in (None, "") else str(p)

    @property
    def become_password(self) -> str | None:
        """This host's own sudo password (ansible_become_password / ansible_become_pass / ansible_sudo_pass)."""
        p = first(self.vars, BECOME_PASSWORD_VARS)
        return None if p in (None, "") else str(p)

    @property
    def secrets(self) -> list:
        """The host's passwords, for scrubbing whatever is printed or written."""
        return [p for p in (self.password, self.become_password) if p]

    @property
    def ssh_args(self) -> str:
        """``ansible_ssh_common_args`` and ``ansible_ssh_extra_args`` joined with a space ("" when none)."""
        return " ".join(str(self.vars[k]) for k in SSH_ARGS_VARS if self.vars.get(k) not in (None, ""))

    @property
    def connection(self) -> str:
        c = self.vars.get("ansible_connection")
        return "ssh" if c in (None, "") else str(c)

    @property
    def is_local(self) -> bool:
        return self.connection in LOCAL_CONNECTIONS

    @property
    def become(self) -> bool:
        return truthy(self.vars.get("ansible_become", False))

    @property
    def python(self) -> str | None:
        p = self.vars.get("ansible_python_interpreter")
        return None if p is None else str(p)

    @property
    def problem(self) -> str | None:
        """None, or the one-line reason gpufleet cannot honour this host as the inventory describes it."""
        return host_problem(self.vars)


def host_problem(variables: dict) -> str | None:
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
    port = first(variables, PORT_VARS)
    if port is not None and (isinstance(port, bool) or not str(port).isdigit() or not 0 < int(port) < 65536):
        return f"port must be a number between 1 and 65535, got {port!r}"
    return None


def check_connection_value(key: str, value: Any) -> str | None:
    """Why a literal connection value is refused (shell metacharacters, a bad port), or None.

    Templates and vaulted values are not refused here: they become the host's :attr:`Host.problem`."""
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


@dataclass
class Inventory:
    """Hosts in inventory order, and every group's hosts (directly or through children, in order)."""

    path: str  # the sources, comma-separated, as given
    hosts: dict[str, Host]
    groups: dict[str, list[str]]
    children: dict[str, list[str]] = field(default_factory=dict)  # group -> direct child groups
    sources: list[str] = field(default_factory=list)

    def select(self, pattern: str) -> list[Host]:
        """Hosts matched by an Ansible host pattern, in inventory order (see :mod:`fleet.inventory.patterns`)."""
        from fleet.inventory.patterns import select_names

        names = select_names(pattern, self.hosts.keys(), self.groups)
        return [self.hosts[n] for n in names]
