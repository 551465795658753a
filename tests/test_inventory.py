"""Inventory loading, inheritance, validation and host patterns (pure: text in, hosts out)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleet.inventory import InventoryError, PatternError, load_inventory, parse_inventory
from fleet.config import PROJECT, from_context

REPO = Path(__file__).resolve().parents[1]

CLUSTER = """\
all:
  vars:
    ansible_user: ops
    site: ams
  children:
    gpu-nodes:
      vars:
        ansible_user: gpuops
        gpufleet_gpu_count: 8
      children:
        h100:
          vars: {gpufleet_gpu_model: H100}
          hosts:
            node01: {ansible_host: 10.0.0.11}
            node02: {ansible_host: 10.0.0.12, gpufleet_gpu_count: 4}
        a100:
          hosts:
            node11: {ansible_host: 10.0.1.11, ansible_port: "2222", ansible_user: alice}
    login:
      hosts:
        bastion:
    local:
      hosts:
        localhost: {ansible_connection: local}
"""


def inv():
    return parse_inventory(CLUSTER, "cluster.yaml")


def test_group_vars_inherit_and_host_vars_win():
    hosts = {h.name: h for h in inv().select("all")}
    assert hosts["node01"].user == "gpuops"  # child group beats all
    assert hosts["node01"].vars["site"] == "ams"  # inherited from all
    assert hosts["node01"].vars["gpufleet_gpu_count"] == 8
    assert hosts["node02"].vars["gpufleet_gpu_count"] == 4  # host var wins
    assert hosts["node11"].user == "alice" and hosts["node11"].port == 2222
    assert hosts["bastion"].user == "ops" and hosts["bastion"].address == "bastion"
    assert hosts["localhost"].is_local and not hosts["node01"].is_local


def test_patterns_groups_globs_lists_and_exclusion():
    i = inv()
    names = lambda p: [h.name for h in i.select(p)]  # noqa: E731
    assert names("gpu-nodes") == ["node01", "node02", "node11"]
    assert names("node0*") == ["node01", "node02"]
    assert names("h100,bastion") == ["node01", "node02", "bastion"]
    assert names("gpu-nodes,!node02") == ["node01", "node11"]
    assert names("!gpu-nodes") == ["bastion", "localhost"]
    assert names("gpu-nodes,&a100") == ["node11"]
    assert names("all") == ["node01", "node02", "node11", "bastion", "localhost"]


@pytest.mark.parametrize("pattern", ["nosuch", "gpu-nodes,nosuch", "node9*", "h100,!h100", ""])
def test_pattern_that_matches_nothing_is_an_error(pattern):
    with pytest.raises(PatternError):
        inv().select(pattern)


@pytest.mark.parametrize(
    "text, line, key, words",
    [
        ("all:\n  hosts:\n    a: {ansible_host: 1.2.3.4\n", 4, None, "invalid YAML"),
        ("all:\n  children:\n    gpus: [a, b]\n", 3, "gpus", "must be a mapping"),
        ("all:\n  hosts:\n    a:\n      ansible_port: ssh\n", 4, "a.ansible_port", "port must be a number"),
        ("all:\n  hosts:\n    a:\n      ansible_port: 70000\n", 4, "a.ansible_port", "port must be a number"),
        ("all:\n  hosts:\n    a:\n      ansible_host: '10.0.0.1; rm -rf /'\n", 4, "a.ansible_host", "not allowed"),
        ("all:\n  hosts:\n    'a$(reboot)':\n", 3, "a$(reboot)", "not allowed"),
        ("all:\n  hosts:\n    a:\n      ansible_user: 'root`id`'\n", 4, "a.ansible_user", "not allowed"),
        ("all:\n  hosts:\n    a:\n      gpufleet_gpu_count: eight\n", 4, "a.gpufleet_gpu_count", "gpufleet_gpu_count"),
        ("all:\n  hostz:\n    a:\n", 2, "all.hostz", "unknown key"),
        ("- a\n- b\n", 1, None, "top level must be a mapping"),
    ],
)
def test_malformed_inventory_names_file_line_and_key(text, line, key, words):
    with pytest.raises(InventoryError) as e:
        parse_inventory(text, "bad.yaml")
    msg = str(e.value)
    assert msg.startswith(f"bad.yaml:{line}:"), msg
    assert e.value.line == line
    if key:
        assert e.value.key == key and f"[{key}]" in msg
    assert words in msg


def test_empty_and_hostless_inventories_are_refused():
    with pytest.raises(InventoryError, match="empty"):
        parse_inventory("", "x.yaml")
    with pytest.raises(InventoryError, match="no hosts"):
        parse_inventory("all:\n  children:\n    g: {}\n", "x.yaml")


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(InventoryError, match=str(tmp_path / "nope.yaml")):
        load_inventory(tmp_path / "nope.yaml")


def test_shipped_inventories_load():
    local = load_inventory(REPO / "inventory" / "hosts.yaml").select("local")
    assert [h.name for h in local] == ["localhost"] and local[0].is_local
    example = load_inventory(REPO / "inventory" / "example-cluster.yaml")
    node12 = {h.name: h for h in example.select("a100")}["node12"]
    assert node12.become and node12.python == "/opt/conda/bin/python"
    assert node12.vars["gpufleet_gpu_count"] == 4


class _Ctx:
    def __init__(self, inventory=None):
        self.config = {"gpufleet": {"inventory": inventory}} if inventory else {}


def inventory_sources(c, flag):
    """The inventory sources a task with this context and ``--inventory`` flag reads (fleet.config)."""
    return from_context(c).inventory_sources((flag,) if flag else ())


def test_inventory_path_precedence_and_where_relative_paths_are_taken(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # defaults must not depend on where the user stands
    monkeypatch.delenv("GPUFLEET_INVENTORY", raising=False)
    assert inventory_sources(_Ctx(), None) == ([PROJECT / "inventory/hosts.yaml"], "the default")
    assert inventory_sources(_Ctx("conf.yaml"), None) == ([PROJECT / "conf.yaml"], "gpufleet.inventory in invoke.yaml")
    assert inventory_sources(_Ctx("/etc/g.yaml"), None) == ([Path("/etc/g.yaml")], "gpufleet.inventory in invoke.yaml")
    monkeypatch.setenv("GPUFLEET_INVENTORY", "env.yaml")
    assert inventory_sources(_Ctx("conf.yaml"), None) == ([tmp_path / "env.yaml"], "$GPUFLEET_INVENTORY")
    assert inventory_sources(_Ctx("conf.yaml"), "flag.yaml") == ([tmp_path / "flag.yaml"], "--inventory")


def test_default_inventory_puts_this_machine_where_the_documented_commands_look():
    inv = load_inventory(PROJECT / "inventory" / "hosts.yaml")
    assert [h.name for h in inv.select("gpu-nodes")] == ["localhost"] == [h.name for h in inv.select("local")]
