"""From parsed sources to an :class:`~fleet.inventory.model.Inventory`, as ``ansible-inventory --list`` computes it.

Membership is computed once every source has been read (a child group may be named before it is
defined; a group may have several parents); ``all`` holds every group without a parent, and
``ungrouped`` every host that is in no other group.  A host's variables, lowest first:

1. ``all``'s variables from the inventory files;
2. ``group_vars/all`` beside each source (sources in order);
3. the other groups' variables from the inventory files, parents before children: groups sorted by
   depth (longest path from ``all``), then ``ansible_group_priority`` (default 1), then name.  A priority set
   in an inventory file orders the groups and is then no variable (Ansible's ``Group.set_variable`` takes it
   out); one set in ``group_vars/`` stays a variable and orders nothing, as in Ansible;
4. ``group_vars/<group>`` beside each source (for each source in order, groups in that order);
5. the host's own variables from the inventory files (a later definition wins);
6. ``host_vars/<host>`` beside each source.

Later sources override earlier ones at every level.  Pure: no file access.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fleet.inventory.errors import InventoryError
from fleet.inventory.model import Host, Inventory


@dataclass
class Source:
    """What one inventory source says, before membership and precedence are computed."""

    path: str
    groups: list[str] = field(default_factory=list)  # in definition order
    group_vars: dict[str, dict] = field(default_factory=dict)
    children: dict[str, list[str]] = field(default_factory=dict)
    group_hosts: dict[str, list[str]] = field(default_factory=dict)  # direct members
    hosts: list[str] = field(default_factory=list)
    host_vars: dict[str, dict] = field(default_factory=dict)
    group_lines: dict[str, int | None] = field(default_factory=dict)

    def add_group(self, name: str, line: int | None = None) -> None:
        if name not in self.group_vars:
            self.groups.append(name)
            self.group_vars[name] = {}
            self.children[name] = []
            self.group_hosts[name] = []
            self.group_lines[name] = line

    def add_child(self, parent: str, child: str, line: int | None = None) -> None:
        self.add_group(parent, line)
        self.add_group(child, line)
        if child not in self.children[parent]:
            self.children[parent].append(child)

    def add_host(self, name: str, group: str | None, variables: dict | None = None) -> None:
        if name not in self.host_vars:
            self.hosts.append(name)
            self.host_vars[name] = {}
        if group is not None:
            self.add_group(group)
            if name not in self.group_hosts[group]:
                self.group_hosts[group].append(name)
        self.host_vars[name].update(variables or {})


@dataclass
class VarsFiles:
    """``group_vars/`` and ``host_vars/`` beside one source: entity name -> merged variables."""

    groups: dict[str, dict] = field(default_factory=dict)
    hosts: dict[str, dict] = field(default_factory=dict)


def build(sources: list[Source], vars_files: list[VarsFiles] | None = None, label: str | None = None,
          require_hosts: bool = True) -> Inventory:
    vars_files = vars_files or []
    label = label or ",".join(s.path for s in sources)
    groups: list[str] = ["all", "ungrouped"]
    gvars: dict[str, dict] = {"all": {}, "ungrouped": {}}
    children: dict[str, list[str]] = {"all": [], "ungrouped": []}
    direct: dict[str, list[str]] = {"all": [], "ungrouped": []}
    hosts: list[str] = []
    hvars: dict[str, dict] = {}
    where: dict[str, str] = {}
    for src in sources:
        for g in src.groups:
            if g not in gvars:
                groups.append(g)
                gvars[g], children[g], direct[g] = {}, [], []
                where[g] = src.path
            gvars[g].update(src.group_vars[g])
            children[g] += [c for c in src.children[g] if c not in children[g]]
            direct[g] += [h for h in src.group_hosts[g] if h not in direct[g]]
        for h in src.hosts:
            if h not in hvars:
                hosts.append(h)
                hvars[h] = {}
            hvars[h].update(src.host_vars[h])

    parents: dict[str, list[str]] = {g: [] for g in groups}
    for p in groups:
        for c in children[p]:
            parents[c].append(p)
    for g in groups:
        if g != "all" and not parents[g]:
            children["all"].append(g)
            parents[g].append("all")
    if parents["all"]:
        raise InventoryError(where.get("all", label), "group 'all' cannot be a child of another group", key="all")

    depth = _depths(groups, children, where, label)

    member_of: dict[str, set[str]] = {h: set() for h in hosts}
    for g in groups:
        for h in direct[g]:
            member_of[h].add(g)
    for h in hosts:
        own = member_of[h]
        if own <= {"all", "ungrouped"}:
            if h not in direct["ungrouped"]:
                direct["ungrouped"].append(h)
            own.add("ungrouped")
        elif "ungrouped" in own:
            own.discard("ungrouped")
            direct["ungrouped"].remove(h)

    ancestors = {g: _ancestors(g, parents) for g in groups}
    members: dict[str, list[str]] = {}
    for g in groups:
        seen: list[str] = []
        for sub in _descendants(g, children):
            seen += [h for h in direct[sub] if h not in seen]
        members[g] = seen if g != "all" else list(hosts)

    priorities = _priorities(gvars, where, label)

    def priority(g: str) -> int:
        return priorities.get(g, 1)

    out: dict[str, Host] = {}
    for h in hosts:
        mine: set[str] = set()
        for g in member_of[h]:
            mine |= ancestors[g] | {g}
        mine.discard("all")
        ordered = sorted(mine, key=lambda g: (depth[g], priority(g), g))
        merged: dict = {}
        merged.update(gvars["all"])
        for vf in vars_files:
            merged.update(vf.groups.get("all", {}))
        for g in ordered:
            merged.update(gvars[g])
        for vf in vars_files:
            for g in ordered:
                merged.update(vf.groups.get(g, {}))
        merged.update(hvars[h])
        for vf in vars_files:
            merged.update(vf.hosts.get(h, {}))
        out[h] = Host(h, merged, tuple(sorted(mine)))
    if require_hosts and not out:
        raise InventoryError(label, "inventory defines no hosts")
    return Inventory(label, out, members, {g: list(children[g]) for g in groups}, [s.path for s in sources])


def _priorities(gvars: dict[str, dict], where: dict[str, str], label: str) -> dict[str, int]:
    """Each group's ``ansible_group_priority`` from the inventory sources, taken out of its variables as Ansible's
    ``Group.set_variable`` takes it out (it orders the groups and is no variable of the hosts)."""
    out: dict[str, int] = {}
    for g, variables in gvars.items():
        if "ansible_group_priority" not in variables:
            continue
        value = variables.pop("ansible_group_priority")
        try:
            if isinstance(value, bool):
                raise ValueError
            out[g] = int(value)
        except (TypeError, ValueError):
            raise InventoryError(where.get(g, label), f"ansible_group_priority must be a whole number, got {value!r}",
                                 key=f"{g}.ansible_group_priority") from None
    return out


def _depths(groups: list[str], children: dict[str, list[str]], where: dict[str, str], label: str) -> dict[str, int]:
    depth = {g: 0 for g in groups}
    state: dict[str, int] = {}  # 1 visiting, 2 done

    def visit(g: str, trail: tuple) -> None:
        if state.get(g) == 1:
            raise InventoryError(where.get(g, label), f"group is its own ancestor (cycle in children: "
                                 f"{' -> '.join((*trail, g))})", key=g)
        if state.get(g) == 2:
            return
        state[g] = 1
        for c in children[g]:
            visit(c, (*trail, g))
        state[g] = 2

    for g in groups:
        visit(g, ())
    order: list[str] = []  # topological, parents first
    done: set[str] = set()

    def topo(g: str) -> None:
        if g in done:
            return
        done.add(g)
        for c in children[g]:
            topo(c)
        order.append(g)

    for g in groups:
        topo(g)
    for g in reversed(order):
        for c in children[g]:
            depth[c] = max(depth[c], depth[g] + 1)
    return depth


def _ancestors(group: str, parents: dict[str, list[str]]) -> set[str]:
    out: set[str] = set()
    todo = list(parents[group])
    while todo:
        p = todo.pop()
        if p not in out:
            out.add(p)
            todo += parents[p]
    return out


def _descendants(group: str, children: dict[str, list[str]]) -> list[str]:
    """The group, then its children breadth first (Ansible's order for a group's hosts)."""
    out, queue = [group], list(children[group])
    while queue:
        nxt: list[str] = []
        for c in queue:
            if c not in out:
                out.append(c)
                nxt += children[c]
        queue = nxt
    return out
