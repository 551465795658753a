"""Ansible-compatible YAML inventory: load, validate, and select hosts by pattern.

The format is Ansible's YAML inventory::

    all:
      vars: {ansible_user: ops}
      children:
        gpu-nodes:
          vars: {gpufleet_gpu_count: 8}
          hosts:
            node01: {ansible_host: 10.0.0.11}

Group variables inherit down the ``children`` tree; a host's own variables win.
A host listed in several groups gets the variables of all of them (deeper
groups win over their parents, as in Ansible).
"""

from __future__ import annotations

import fnmatch
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import yaml

INVENTORY_ENV = "GPUFLEET_INVENTORY"

# Host names and addresses go into ssh/known_hosts and file names: keep them boring.
_SAFE_HOST = re.compile(r"^[A-Za-z0-9_.:\-\[\]%]+$")
_SAFE_USER = re.compile(r"^[A-Za-z0-9_.][A-Za-z0-9_.\-]*\$?$")


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


@dataclass(frozen=True)
class Host:
    """One inventory host with its merged variables."""

    name: str
    vars: dict = field(default_factory=dict, compare=False, hash=False)
    groups: tuple = field(default=(), compare=False, hash=False)

    @property
    def address(self) -> str:
        return str(self.vars.get("ansible_host", self.name))

    @property
    def port(self) -> int | None:
        p = self.vars.get("ansible_port")
        return None if p is None else int(p)

    @property
    def user(self) -> str | None:
        u = self.vars.get("ansible_user")
        return None if u is None else str(u)

    @property
    def key_file(self) -> str | None:
        k = self.vars.get("ansible_ssh_private_key_file")
        return None if k is None else os.path.expanduser(str(k))

    @property
    def is_local(self) -> bool:
        return str(self.vars.get("ansible_connection", "ssh")) == "local"

    @property
    def become(self) -> bool:
        return _truthy(self.vars.get("ansible_become", False))

    @property
    def python(self) -> str | None:
        p = self.vars.get("ansible_python_interpreter")
        return None if p is None else str(p)


@dataclass
class Inventory:
    path: str
    hosts: dict[str, Host]
    groups: dict[str, list[str]]  # group name -> host names (transitively, in order)

    def select(self, pattern: str) -> list[Host]:
        """Hosts matched by an Ansible-style pattern, in inventory order.

        ``a,b`` (or ``a:b``) is a union; ``!x`` removes; ``&x`` intersects; each
        term is a group name, a host name or a shell glob over both.
        """
        names = select_names(pattern, self.hosts.keys(), self.groups)
        return [self.hosts[n] for n in names]


def _truthy(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in {"1", "yes", "true", "on", "y"}


def select_names(pattern: str, hosts: Iterable[str], groups: dict[str, list[str]]) -> list[str]:
    """Pure pattern matching; see :meth:`Inventory.select`."""
    order = list(hosts)
    terms = [t.strip() for t in re.split(r"[,:]", pattern or "") if t.strip()]
    if not terms:
        raise PatternError("empty host pattern")
    chosen: set[str] = set()
    plus_seen = False
    for term in terms:
        op = term[0] if term[0] in "!&" else "+"
        body = term[1:] if op != "+" else term
        matched = _match_term(body, order, groups)
        if not matched:
            raise PatternError(f"pattern term {term!r} matches no host or group")
        if op == "+":
            plus_seen = True
            chosen |= matched
        elif op == "&":
            chosen &= matched
        else:
            if not plus_seen:  # "!x" alone means "all but x"
                chosen |= set(order)
                plus_seen = True
            chosen -= matched
    result = [n for n in order if n in chosen]
    if not result:
        raise PatternError(f"pattern {pattern!r} leaves no host")
    return result


def _match_term(term: str, hosts: list[str], groups: dict[str, list[str]]) -> set[str]:
    if term in groups:
        return set(groups[term])
    if term in hosts:
        return {term}
    out: set[str] = set()
    if any(c in term for c in "*?["):
        for g, members in groups.items():
            if fnmatch.fnmatchcase(g, term):
                out |= set(members)
        out |= {h for h in hosts if fnmatch.fnmatchcase(h, term)}
    return out


# --------------------------------------------------------------------------- loading


class _LineLoader(yaml.SafeLoader):
    """SafeLoader that remembers the line of every mapping key."""


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    mapping = _Mapping()
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=deep)
        value = loader.construct_object(value_node, deep=deep)
        try:
            hash(key)
        except TypeError:
            raise yaml.constructor.ConstructorError(
                None, None, "unhashable mapping key", key_node.start_mark
            ) from None
        mapping[key] = value
        mapping.lines[key] = key_node.start_mark.line + 1
    mapping.line = node.start_mark.line + 1
    return mapping


class _Mapping(dict):
    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.lines: dict = {}
        self.line: int | None = None


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_inventory(path: str | os.PathLike) -> Inventory:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise InventoryError(path, f"cannot read inventory: {e.strerror or e}") from None
    return parse_inventory(text, path)


def parse_inventory(text: str, path: str | os.PathLike = "<inventory>") -> Inventory:
    """Parse and validate inventory text (pure: no file or network access)."""
    try:
        data = yaml.load(text, Loader=_LineLoader)  # noqa: S506 - SafeLoader subclass
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark else None
        raise InventoryError(path, f"invalid YAML: {e.problem or e}", line=line) from None
    except yaml.YAMLError as e:
        raise InventoryError(path, f"invalid YAML: {e}") from None
    if data is None:
        raise InventoryError(path, "inventory is empty")
    if not isinstance(data, dict):
        raise InventoryError(path, "top level must be a mapping of groups (e.g. 'all:')", line=1)

    builder = _Builder(str(path))
    for gname, gbody in data.items():
        builder.group(str(gname), gbody, parents=(), line=_line_of(data, gname))
    hosts = builder.finish()
    if not hosts:
        raise InventoryError(path, "inventory defines no hosts")
    return Inventory(str(path), hosts, builder.members)


def _line_of(mapping: Any, key: Any) -> int | None:
    return getattr(mapping, "lines", {}).get(key) if mapping is not None else None


_GROUP_KEYS = {"hosts", "vars", "children"}


class _Builder:
    def __init__(self, path: str):
        self.path = path
        self.members: dict[str, list[str]] = {}
        self.group_vars: dict[str, dict] = {}
        self.group_depth: dict[str, int] = {}
        self.host_entries: dict[str, list[tuple[int, str, dict]]] = {}
        self.host_lines: dict[str, int | None] = {}
        self.parents_of: dict[str, set[str]] = {}

    def error(self, msg: str, line: int | None, key: str) -> InventoryError:
        return InventoryError(self.path, msg, line=line, key=key)

    def group(self, name: str, body: Any, parents: tuple, line: int | None) -> None:
        if name in parents:
            raise self.error("group is its own ancestor (cycle in children)", line, name)
        if body is None:
            body = _Mapping()
        if not isinstance(body, dict):
            raise self.error(
                f"group must be a mapping with hosts/vars/children, got {type(body).__name__}", line, name
            )
        unknown = set(body) - _GROUP_KEYS
        if unknown:
            k = sorted(map(str, unknown))[0]
            raise self.error(
                "unknown key in group (expected hosts, vars or children)", _line_of(body, k) or line, f"{name}.{k}"
            )
        depth = len(parents)
        self.group_depth[name] = max(self.group_depth.get(name, 0), depth)
        self.members.setdefault(name, [])
        self.parents_of.setdefault(name, set()).update(parents[-1:])
        gvars = body.get("vars") or {}
        if not isinstance(gvars, dict):
            raise self.error("vars must be a mapping", _line_of(body, "vars") or line, f"{name}.vars")
        self.group_vars.setdefault(name, {}).update(gvars)
        self._validate_vars(gvars, f"{name}.vars")

        hosts = body.get("hosts") or {}
        if not isinstance(hosts, dict):
            raise self.error("hosts must be a mapping of host names", _line_of(body, "hosts") or line, f"{name}.hosts")
        for hname, hvars in hosts.items():
            hline = _line_of(hosts, hname)
            hname = str(hname)
            if not _SAFE_HOST.match(hname):
                raise self.error("host name carries characters that are not allowed", hline, hname)
            if hvars is None:
                hvars = {}
            if not isinstance(hvars, dict):
                raise self.error("host variables must be a mapping", hline, hname)
            self._validate_vars(hvars, hname, hvars)
            self.host_entries.setdefault(hname, []).append((depth, name, dict(hvars)))
            self.host_lines.setdefault(hname, hline)
            for g in (*parents, name):
                if hname not in self.members.setdefault(g, []):
                    self.members[g].append(hname)

        children = body.get("children") or {}
        if not isinstance(children, dict):
            raise self.error("children must be a mapping of groups", _line_of(body, "children") or line,
                             f"{name}.children")
        for cname, cbody in children.items():
            self.group(str(cname), cbody, (*parents, name), _line_of(children, cname))
            for h in self.members.get(str(cname), []):
                for g in (*parents, name):
                    if h not in self.members[g]:
                        self.members[g].append(h)

    def _validate_vars(self, v: dict, where: str, lines_from: Any = None) -> None:
        src = lines_from if lines_from is not None else v
        for key, value in v.items():
            line = _line_of(src, key)
            label = f"{where}.{key}"
            if key == "ansible_port":
                if isinstance(value, bool) or not isinstance(value, (int, str)) or not str(value).isdigit() or not (
                    0 < int(value) < 65536
                ):
                    raise self.error(f"port must be a number between 1 and 65535, got {value!r}", line, label)
            elif key == "ansible_host":
                if not isinstance(value, str) or not _SAFE_HOST.match(value):
                    raise self.error(f"address carries characters that are not allowed: {value!r}", line, label)
            elif key == "ansible_user":
                if not isinstance(value, str) or not _SAFE_USER.match(value):
                    raise self.error(f"user name carries characters that are not allowed: {value!r}", line, label)
            elif key == "ansible_connection":
                if value not in ("ssh", "local", "paramiko", "smart"):
                    raise self.error(f"unsupported connection {value!r} (use ssh or local)", line, label)
            elif key.startswith("gpufleet_"):
                from fleet.audit.expectations import Expectations  # local import: optional module

                try:
                    Expectations.from_vars({key: value})
                except ValueError as e:
                    raise self.error(str(e), line, label) from None

    def finish(self) -> dict[str, Host]:
        ordered_groups = sorted(self.group_depth, key=lambda g: (self.group_depth[g], g != "all"))
        out: dict[str, Host] = {}
        for hname, entries in self.host_entries.items():
            groups = [g for g in ordered_groups if hname in self.members.get(g, [])]
            merged: dict = {}
            for g in groups:  # shallow groups first, deeper groups override
                merged.update(self.group_vars.get(g, {}))
            for _, _, hv in sorted(entries, key=lambda e: e[0]):
                merged.update(hv)
            out[hname] = Host(hname, merged, tuple(groups))
        if "all" not in self.members:
            self.members["all"] = list(out)
        return out
