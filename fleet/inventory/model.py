"""The inventory's data model: :class:`Host` (merged variables, connection settings), :class:`Inventory`, errors.

Connection variables are read under every name Ansible's ssh plugin accepts for them, the last one it lists
winning when several are set (``ansible_ssh_host`` over ``ansible_host``: see :mod:`.connection`).  What gpufleet
cannot honour for one host (a Jinja template in a connection variable, a connection plugin other than ssh/local,
ssh arguments it cannot reproduce) is that host's :attr:`Host.problem`, never a refusal of the whole inventory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from fleet.inventory import connection as connection_rules
from fleet.inventory.connection import (  # noqa: F401 (re-exported: the names modules and tests use)
    ADDRESS_VARS,
    BECOME_PASSWORD_VARS,
    CONNECTION_VARS,
    KEY_FILE_VARS,
    LOCAL_CONNECTIONS,
    PASSWORD_VARS,
    PORT_VARS,
    SAFE_HOST,
    SAFE_USER,
    SECRET_VARS,
    SSH_ARGS_VARS,
    SSH_CONNECTIONS,
    USER_VARS,
    Vaulted,
    check_connection_value,
    host_problem,
    is_template,
    setting,
    truthy,
)
from fleet.inventory.errors import InventoryError, PatternError  # noqa: F401 (re-exported)
from fleet.inventory.patterns import select_names



@dataclass(frozen=True)
class Host:
    """One inventory host with its merged variables and every group it belongs to (without ``all``)."""

    name: str
    vars: dict = field(default_factory=dict, compare=False, hash=False)
    groups: tuple = field(default=(), compare=False, hash=False)

    @property
    def address(self) -> str:
        a = setting(self.vars, ADDRESS_VARS)
        return self.name if a is None else str(a)

    @property
    def port(self) -> int | None:
        p = setting(self.vars, PORT_VARS)
        try:
            return None if p is None else int(p)
        except (TypeError, ValueError):
            return None  # a template or garbage: see problem

    @property
    def user(self) -> str | None:
        u = setting(self.vars, USER_VARS)
        return None if u is None else str(u)

    @property
    def key_file(self) -> str | None:
        k = setting(self.vars, KEY_FILE_VARS)
        return None if k is None else os.path.expanduser(str(k))

    @property
    def password(self) -> str | None:
        """The SSH password (ansible_password / ansible_ssh_pass): never logged, never reported."""
        p = setting(self.vars, PASSWORD_VARS)
        return None if p in (None, "") else str(p)

    @property
    def become_password(self) -> str | None:
        """This host's own sudo password (ansible_become_password / ansible_become_pass / ansible_sudo_pass)."""
        p = setting(self.vars, BECOME_PASSWORD_VARS)
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
        """None, or the one-line reason gpufleet cannot connect to this host as the inventory describes it
        (:func:`fleet.inventory.connection.problem`: the transport refuses the host for the same reason)."""
        return connection_rules.problem(self.name, self.vars)


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
        names = select_names(pattern, self.hosts.keys(), self.groups)
        return [self.hosts[n] for n in names]
