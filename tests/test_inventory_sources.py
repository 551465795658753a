"""Sources, formats, ranges, precedence, layering, per-host problems and the hosts listing (synthetic inventories,
written for these tests: the published ones are in tests/test_inventory_corpus.py)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from fleet.inventory import InventoryError, load_inventory, parse_inventory
from fleet.inventory.listing import MASK, hosts_document
from fleet.inventory.ranges import expand_host_pattern, expand_range
from fleet.config import PROJECT, from_context


@pytest.mark.parametrize("pattern, expected", [
    ("node[01:03]", ["node01", "node02", "node03"]),
    ("www[01:07:3].ex", ["www01.ex", "www04.ex", "www07.ex"]),
    ("[a:c]-x", ["a-x", "b-x", "c-x"]),
    ("10.0.0.[100:102]", ["10.0.0.100", "10.0.0.101", "10.0.0.102"]),
    ("r[1:2]n[1:2]", ["r1n1", "r1n2", "r2n1", "r2n2"]),
    ("[:2]x", ["0x", "1x", "2x"]),
])
def test_host_ranges(pattern, expected):
    assert expand_range(pattern) == expected


def test_host_port_and_ipv6():
    assert expand_host_pattern("node[1:2]:2222") == (["node1", "node2"], 2222)
    assert expand_host_pattern("fe80::1") == (["fe80::1"], None)
    assert expand_host_pattern("[fe80::1]:22") == (["fe80::1"], 22)


INI = """\
# synthetic
ungrouped-host ansible_host=10.9.9.9
[gpu:children]
h100
[h100]
node[01:02]:2222 gpufleet_gpu_count=8 flag=yes quoted="'8'" lst="[1, 2]"
[h100:vars]
ansible_user=ops
ansible_ssh_common_args=-o ProxyJump=bastion
[gpu:vars]
ansible_user=gpuops
site=ams
"""


def test_ini_sections_typing_ports_and_children_named_before_defined():
    inv = parse_inventory(INI, "cluster")
    n1 = inv.hosts["node01"]
    assert n1.port == 2222 and n1.user == "ops"  # the child group beats its parent
    assert n1.vars["gpufleet_gpu_count"] == 8 and n1.vars["flag"] == "yes" and n1.vars["quoted"] == "8"
    assert n1.vars["lst"] == [1, 2] and n1.vars["site"] == "ams"
    assert n1.ssh_args == "-o ProxyJump=bastion"
    assert sorted(n1.groups) == ["gpu", "h100"]
    assert inv.groups["ungrouped"] == ["ungrouped-host"] and inv.hosts["ungrouped-host"].address == "10.9.9.9"
    assert inv.groups["gpu"] == ["node01", "node02"]


def test_yaml_ranges_aliases_and_late_children():
    text = ("all:\n  children:\n    gpu:\n      children:\n        h100:\n    h100:\n      hosts:\n"
            "        www[01:05:2]:\n          ansible_ssh_host: 10.0.0.1\n          ansible_ssh_user: ops\n"
            "          ansible_ssh_port: 2200\n          ansible_ssh_pass: hunter2\n")
    inv = parse_inventory(text, "x.yaml")
    assert list(inv.hosts) == ["www01", "www03", "www05"]
    h = inv.hosts["www03"]
    assert (h.address, h.user, h.port, h.password) == ("10.0.0.1", "ops", 2200, "hunter2")
    assert inv.groups["gpu"] == ["www01", "www03", "www05"]


def test_a_file_in_no_format_says_which_were_tried():
    with pytest.raises(InventoryError) as e:
        parse_inventory("[broken\nx: [\n", "inventory")
    assert "tried YAML (line" in str(e.value) and "INI (line" in str(e.value)


def test_undefined_child_group_in_ini_is_an_error_naming_the_line():
    with pytest.raises(InventoryError) as e:
        parse_inventory("[gpu:children]\nnosuch\n[other]\nh1\n", "x.ini")
    assert e.value.line == 2 and "never defined" in str(e.value)


def test_template_and_foreign_connection_are_the_hosts_problem():
    text = "[a]\nh1 ansible_host=\"{{ lookup('env','X') }}\"\nh2 ansible_connection=docker\nh3\n"
    inv = parse_inventory(text, "x.ini")
    assert "Jinja" in inv.hosts["h1"].problem and "docker" in inv.hosts["h2"].problem
    assert inv.hosts["h3"].problem is None


def test_directory_vars_dirs_and_layering(tmp_path):
    base = tmp_path / "site"
    (base / "group_vars" / "gpu").mkdir(parents=True)
    (base / "host_vars").mkdir()
    (base / "10-hosts.ini").write_text("[gpu]\nn1\nn2\n[all:vars]\nx=inline\n")
    (base / "20-more.yml").write_text("gpu:\n  hosts:\n    n3:\n")
    (base / "README.md").write_text("not an inventory")
    (base / "group_vars" / "all.yml").write_text("x: from_group_vars_all\ny: 1\n")
    (base / "group_vars" / "gpu" / "a.yml").write_text("ansible_user: a\n")
    (base / "group_vars" / "gpu" / "b.yaml").write_text("ansible_user: b\n")
    (base / "host_vars" / "n2").write_text("ansible_port: 2022\n")
    over = tmp_path / "override.yml"
    over.write_text("all:\n  vars:\n    y: 2\n  hosts:\n    n1:\n      ansible_user: root\n")
    inv = load_inventory(f"{base},{over}")
    assert list(inv.hosts) == ["n1", "n2", "n3"]
    assert inv.hosts["n2"].vars["x"] == "from_group_vars_all"  # group_vars/all beats [all:vars]
    assert inv.hosts["n2"].user == "b" and inv.hosts["n2"].port == 2022  # files of a group dir in name order
    assert inv.hosts["n1"].user == "root"  # a later source's host variable
    assert inv.hosts["n3"].vars["y"] == 1  # group_vars/all beats any inventory file's all vars


def test_dynamic_script_and_ansible_inventory_json(tmp_path):
    listing = {"_meta": {"hostvars": {"n1": {"ansible_host": "10.1.1.1"}}}, "all": {"children": ["ungrouped", "gpu"]},
               "gpu": {"hosts": ["n1"], "vars": {"ansible_user": "ops"}}}
    (tmp_path / "list.json").write_text(json.dumps(listing))
    script = tmp_path / "dyn"
    script.write_text(f"#!{sys.executable}\nimport json, sys\nprint(json.dumps({listing!r}))\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    for src in (tmp_path / "list.json", script):
        h = load_inventory(src).hosts["n1"]
        assert (h.address, h.user, h.groups) == ("10.1.1.1", "ops", ("gpu",))


def test_hosts_document_masks_secrets():
    text = ("all:\n  hosts:\n    n1:\n      ansible_password: p\n      ansible_become_pass: q\n      api_token: t\n"
            "      ansible_ssh_private_key_file: ~/.ssh/id\n      db: {secret_key: s, name: x}\n")
    hosts = parse_inventory(text, "x.yaml").select("all")
    doc = hosts_document(["x.yaml"], "all", hosts)
    v = doc["hosts"]["n1"]["vars"]
    assert doc["schema"] == "gpufleet.hosts/1" and doc["hosts"]["n1"]["port"] is None
    assert v["ansible_password"] == v["ansible_become_pass"] == v["api_token"] == v["db"]["secret_key"] == MASK
    assert v["ansible_ssh_private_key_file"] == "~/.ssh/id" and v["db"]["name"] == "x"
    assert "p" not in json.dumps(doc).replace("ansible_password", "").split('"')[1::2]


class _Ctx:
    def __init__(self, inventory=None):
        self.config = {"gpufleet": {"inventory": inventory}} if inventory else {}


def inventory_sources(c, flag):
    """The inventory sources a task with this context and ``--inventory`` flag reads (fleet.config)."""
    return from_context(c).inventory_sources((flag,) if flag else ())


def test_comma_separated_sources_keep_precedence_and_relative_rules(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GPUFLEET_INVENTORY", raising=False)
    assert inventory_sources(_Ctx("a.yml,/etc/b"), None) == ([PROJECT / "a.yml", Path("/etc/b")],
                                                              "gpufleet.inventory in invoke.yaml")
    monkeypatch.setenv("GPUFLEET_INVENTORY", "e1,e2")
    assert inventory_sources(_Ctx(), None) == ([tmp_path / "e1", tmp_path / "e2"], "$GPUFLEET_INVENTORY")
    assert inventory_sources(_Ctx(), "f1,f2") == ([tmp_path / "f1", tmp_path / "f2"], "--inventory")


def test_hosts_task_lists_without_connecting_and_writes_json(tmp_path):
    inv = tmp_path / "inv"
    inv.write_text("[gpu]\nn[1:2] ansible_host=10.0.0.1 ansible_user=ops ansible_password=secret\n"
                   "n3 ansible_connection=winrm\n")
    out = tmp_path / "hosts.json"
    done = subprocess.run([sys.executable, "-m", "fleet.cli", "hosts", "--hosts", "gpu:!n2", "--inventory", str(inv),
                           "--json", str(out)], capture_output=True, text=True, cwd=tmp_path, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(PROJECT)})
    assert done.returncode == 0, done.stderr
    assert "n1" in done.stdout and "10.0.0.1" in done.stdout and "winrm" in done.stdout
    doc = json.loads(out.read_text())
    assert sorted(doc["hosts"]) == ["n1", "n3"] and doc["inventory"] == [str(inv)] and doc["pattern"] == "gpu:!n2"
    assert doc["hosts"]["n1"]["user"] == "ops" and doc["hosts"]["n1"]["groups"] == ["gpu"]
    assert "secret" not in out.read_text()
    bad = subprocess.run([sys.executable, "-m", "fleet.cli", "hosts", "--hosts", "nosuch", "--inventory", str(inv)],
                         capture_output=True, text=True, cwd=tmp_path, timeout=60,
                         env={**os.environ, "PYTHONPATH": str(PROJECT)})
    assert bad.returncode == 2 and "nosuch" in bad.stderr
