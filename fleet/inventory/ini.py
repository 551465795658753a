"""Ansible's INI inventory, text in, :class:`Source` out.

``[group]``, ``[group:vars]``, ``[group:children]``, hosts before any section (``ungrouped``), inline
``key=value`` host variables split as a shell does and typed as Ansible types them (Python literals:
``8`` is a number, ``'8'`` after shell quoting is still ``8``, ``"'8'"`` is a string), ``host:port``,
ranges, ``#`` and ``;`` comments.  A child group may be named before its section; one that is never
defined is an error, as in Ansible.
"""

from __future__ import annotations

import ast
import re
import shlex
import warnings
from typing import Any

from fleet.inventory.build import Source
from fleet.inventory.errors import InventoryError
from fleet.inventory.ranges import expand_host_pattern
from fleet.inventory.validate import check_host_name, validate_vars

_SECTION = re.compile(r"^\[([^:\]\s]+)(?::(\w+))?\]\s*(?:#.*)?$")
_GROUP_NAME = re.compile(r"^([^:\]\s]+)\s*(?:#.*)?$")


def parse_value(text: str) -> Any:
    """An INI value as Ansible types it (``ast.literal_eval``, else the text)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SyntaxWarning)
            value = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text
    return _coerce(value)


def _coerce(value: Any) -> Any:
    if isinstance(value, (list, tuple, set)):
        return [_coerce(v) for v in value]
    if isinstance(value, dict):
        return {k: _coerce(v) for k, v in value.items()}
    if value is ...:
        return "..."
    if isinstance(value, complex):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    return value


def parse_ini(text: str, path: str = "<inventory>", known_groups: frozenset | set = frozenset()) -> Source:
    """``known_groups``: groups earlier sources of the same inventory defined (they may be named as children)."""
    src = Source(path)
    src.add_group("all")
    src.add_group("ungrouped")
    pending: dict[str, dict] = {}  # group named in [x:children] or [x:vars] but not (yet) defined
    group, state = "ungrouped", "hosts"
    defined = {"all", "ungrouped", *known_groups}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        m = _SECTION.match(line)
        if m:
            group, state = m.group(1), m.group(2) or "hosts"
            if state not in ("hosts", "children", "vars"):
                raise InventoryError(path, f"section [{group}:{state}] has unknown type {state!r}", number, group)
            if group not in defined and state == "vars" and group not in pending:
                pending[group] = {"line": number, "state": "vars", "parents": []}
            src.add_group(group, number)
            if group in pending and state != "vars":
                if pending[group]["state"] == "children":
                    _resolve(src, group, pending)
                else:
                    del pending[group]
            if state != "vars":
                defined.add(group)
            continue
        if line.startswith("[") and line.endswith("]"):
            raise InventoryError(path, f"invalid section entry {line!r}: no spaces or other characters are allowed "
                                 "in a section name", number)
        if state == "hosts":
            _host_line(src, line, group, path, number)
        elif state == "vars":
            if "=" not in line:
                raise InventoryError(path, f"expected key=value, got {line!r}", number, f"{group}:vars")
            key, value = (part.strip() for part in line.split("=", 1))
            parsed = {key: parse_value(value)}
            validate_vars(parsed, f"{group}.vars", path, lambda k, n=number: n)
            src.group_vars[group].update(parsed)
        else:  # children
            cm = _GROUP_NAME.match(line)
            if not cm:
                raise InventoryError(path, f"expected a group name, got {line!r}", number, f"{group}:children")
            child = cm.group(1)
            if child not in defined:
                decl = pending.setdefault(child, {"line": number, "state": "children", "parents": []})
                decl["parents"].append(group)
                if decl["state"] == "vars":  # [child:vars] came first: still undefined as a group
                    decl["state"] = "children"
            else:
                src.add_child(group, child)
    for name, decl in pending.items():
        if decl["state"] == "vars":
            raise InventoryError(path, f"section [{name}:vars] is for a group that is never defined", decl["line"],
                                 name)
        raise InventoryError(path, f"section [{decl['parents'][-1]}:children] names group {name!r}, which is never "
                             "defined", decl["line"], name)
    return src


def _resolve(src: Source, group: str, pending: dict) -> None:
    for parent in pending[group]["parents"]:
        src.add_child(parent, group)
    del pending[group]


def _host_line(src: Source, line: str, group: str, path: str, number: int) -> None:
    try:
        tokens = shlex.split(line, comments=True)
    except ValueError as e:
        raise InventoryError(path, f"cannot split host line {line!r}: {e}", number) from None
    if not tokens:
        return
    pattern = tokens[0]
    if pattern.strip() == "---":
        raise InventoryError(path, "host '---' is a sign this is a YAML file", number)
    try:
        names, port = expand_host_pattern(pattern)
    except ValueError as e:
        raise InventoryError(path, str(e), number, pattern) from None
    if pattern.endswith(":") and port is None:
        raise InventoryError(path, f"host {pattern!r} ends in ':' (reserved for a port)", number, pattern)
    variables: dict = {}
    for token in tokens[1:]:
        if "=" not in token:
            raise InventoryError(path, f"expected key=value host variable, got {token!r}", number, pattern)
        key, value = token.split("=", 1)
        variables[key] = parse_value(value)
    for name in names:
        check_host_name(name, path, number)
    validate_vars(variables, names[0] if len(names) == 1 else pattern, path, lambda k: number)
    for name in names:
        src.add_host(name, group, {**({"ansible_port": port} if port is not None else {}), **variables})
