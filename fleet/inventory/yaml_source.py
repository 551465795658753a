"""Ansible's YAML inventory (``all:`` with ``hosts:``, ``vars:``, ``children:``), text in, :class:`Source` out."""

from __future__ import annotations

from typing import Any

import yaml

from fleet.inventory.build import Source
from fleet.inventory.connection import Vaulted
from fleet.inventory.errors import InventoryError
from fleet.inventory.ranges import expand_host_pattern
from fleet.inventory.validate import check_host_name, validate_vars


class LineLoader(yaml.SafeLoader):
    """SafeLoader that remembers the line of every mapping key, and reads Ansible's ``!vault``/``!unsafe``."""


class Mapping(dict):
    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.lines: dict = {}
        self.line: int | None = None


def _construct_mapping(loader: LineLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    loader.flatten_mapping(node)  # YAML merge keys (<<)
    mapping = Mapping()
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=deep)
        value = loader.construct_object(value_node, deep=deep)
        try:
            hash(key)
        except TypeError:
            raise yaml.constructor.ConstructorError(None, None, "unhashable mapping key", key_node.start_mark) from None
        mapping[key] = value
        mapping.lines[key] = key_node.start_mark.line + 1
    mapping.line = node.start_mark.line + 1
    return mapping


LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
LineLoader.add_constructor("!vault", lambda loader, node: Vaulted(loader.construct_scalar(node)))
LineLoader.add_constructor("!unsafe", lambda loader, node: str(loader.construct_scalar(node)))


def load_yaml(text: str, path: str) -> Any:
    """YAML text as data, or an InventoryError naming the line ("invalid YAML: ...")."""
    try:
        return yaml.load(text, Loader=LineLoader)  # noqa: S506 - SafeLoader subclass
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        raise InventoryError(path, f"invalid YAML: {e.problem or e}", line=mark.line + 1 if mark else None) from None
    except yaml.YAMLError as e:
        raise InventoryError(path, f"invalid YAML: {e}") from None


def line_of(mapping: Any, key: Any) -> int | None:
    return getattr(mapping, "lines", {}).get(key) if mapping is not None else None


_GROUP_KEYS = {"hosts", "vars", "children"}


def from_data(data: Any, path: str) -> Source:
    if data is None:
        raise InventoryError(path, "inventory is empty")
    if not isinstance(data, dict):
        raise InventoryError(path, "top level must be a mapping of groups (e.g. 'all:')", line=1)
    src = Source(path)
    for gname, gbody in data.items():
        _group(src, str(gname), gbody, (), line_of(data, gname))
    return src


def _group(src: Source, name: str, body: Any, trail: tuple, line: int | None) -> None:
    path = src.path
    if name in trail:
        raise InventoryError(path, "group is its own ancestor (cycle in children)", line, name)
    if body is None:
        body = Mapping()
    if not isinstance(body, dict):
        raise InventoryError(path, f"group must be a mapping with hosts/vars/children, got {type(body).__name__}",
                             line, name)
    unknown = set(body) - _GROUP_KEYS
    if unknown:
        k = sorted(map(str, unknown))[0]
        raise InventoryError(path, "unknown key in group (expected hosts, vars or children)",
                             line_of(body, k) or line, f"{name}.{k}")
    src.add_group(name, line)
    gvars = body.get("vars") or {}
    if not isinstance(gvars, dict):
        raise InventoryError(path, "vars must be a mapping", line_of(body, "vars") or line, f"{name}.vars")
    validate_vars(gvars, f"{name}.vars", path, lambda k: line_of(gvars, k))
    src.group_vars[name].update(gvars)

    hosts = body.get("hosts") or {}
    if not isinstance(hosts, dict):
        raise InventoryError(path, "hosts must be a mapping of host names", line_of(body, "hosts") or line,
                             f"{name}.hosts")
    for pattern, hvars in hosts.items():
        hline = line_of(hosts, pattern)
        try:
            names, port = expand_host_pattern(str(pattern))
        except ValueError as e:
            raise InventoryError(path, str(e), hline, str(pattern)) from None
        if hvars is None:
            hvars = {}
        if not isinstance(hvars, dict):
            raise InventoryError(path, "host variables must be a mapping", hline, str(pattern))
        for hname in names:
            check_host_name(hname, path, hline)
        validate_vars(hvars, names[0] if len(names) == 1 else str(pattern), path,
                      lambda k, hv=hvars: line_of(hv, k))
        for hname in names:
            extra = {"ansible_port": port} if port is not None else {}
            src.add_host(hname, name, {**extra, **hvars})

    children = body.get("children") or {}
    if not isinstance(children, dict):
        raise InventoryError(path, "children must be a mapping of groups", line_of(body, "children") or line,
                             f"{name}.children")
    for cname, cbody in children.items():
        _group(src, str(cname), cbody, (*trail, name), line_of(children, cname))
        src.add_child(name, str(cname))
