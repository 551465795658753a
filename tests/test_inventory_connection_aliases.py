"""The connection target of a host, as Ansible's own ``ssh`` connection and ``sudo`` become plugins resolve it.

Reference: ansible-core itself, offline.  For each host of an inventory, a child process loads the inventory with
Ansible's ``InventoryManager``/``VariableManager``, hands the host's variables to the ``ssh`` connection plugin
and the ``sudo`` become plugin exactly as ``TaskExecutor._set_connection_options`` does (``set_options(
var_options=...)`` with the variables ``C.config.get_plugin_vars`` lists) and reads ``get_option`` for the
address, port, user, key file, password and become password.  No host is contacted.  Every pair of alias
names of each setting (and the triple, where there are three) is a host of its own; without ansible-core
(a test-only dependency) these tests are skipped.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import subprocess
import sys

import pytest

from fleet.inventory import load_inventory
from fleet.inventory.connection import (
    ADDRESS_VARS,
    BECOME_PASSWORD_VARS,
    KEY_FILE_VARS,
    PASSWORD_VARS,
    PORT_VARS,
    USER_VARS,
)
from tests.test_inventory_corpus import ansible_env

HAVE_ANSIBLE = importlib.util.find_spec("ansible") is not None
needs_ansible = pytest.mark.skipif(not HAVE_ANSIBLE, reason="ansible-core is not installed (pip install ansible-core)")

ORACLE = r"""
import json, sys
from ansible import constants as C
from ansible.inventory.manager import InventoryManager
from ansible.parsing.dataloader import DataLoader
from ansible.playbook.play_context import PlayContext
from ansible.plugins.loader import become_loader, connection_loader, init_plugin_loader
from ansible.vars.manager import VariableManager

init_plugin_loader()
loader = DataLoader()
inventory = InventoryManager(loader=loader, sources=[sys.argv[1]])
variables = VariableManager(loader=loader, inventory=inventory)
out = {}
for host in inventory.get_hosts():
    hv = variables.get_vars(host=host, include_hostvars=False)
    ssh = connection_loader.get("ssh", PlayContext(), None)
    ssh.set_options(var_options={k: hv[k] for k in C.config.get_plugin_vars("connection", "ssh") if k in hv})
    sudo = become_loader.get("sudo")
    sudo.set_options(var_options={k: hv[k] for k in C.config.get_plugin_vars("become", "sudo") if k in hv})
    out[host.name] = {
        "address": ssh.get_option("host"), "port": ssh.get_option("port"), "user": ssh.get_option("remote_user"),
        "key_file": ssh.get_option("private_key_file"), "password": ssh.get_option("password"),
        "become_password": sudo.get_option("become_pass"),
    }
print(json.dumps(out))
"""

# setting -> (gpufleet's Host attribute, the alias names, a distinct value per name)
SETTINGS = {
    "address": (ADDRESS_VARS, lambda i: f"10.0.0.{i + 1}"),
    "port": (PORT_VARS, lambda i: 2200 + i),
    "user": (USER_VARS, lambda i: f"user{i}"),
    "key_file": (KEY_FILE_VARS, lambda i: f"/keys/id_{i}"),
    "password": (PASSWORD_VARS, lambda i: f"pw{i}"),
    "become_password": (BECOME_PASSWORD_VARS, lambda i: f"sudo{i}"),
}


def cases() -> dict[str, dict]:
    """host name -> its variables: every single alias, pair and triple of each setting, in both orders of
    writing (the order in the file must not matter: the plugin's order decides)."""
    out = {}
    for setting, (names, value) in SETTINGS.items():
        for r in range(1, len(names) + 1):
            for combo in itertools.combinations(range(len(names)), r):
                for order in ({combo, tuple(reversed(combo))}):
                    host = f"{setting}-{'-'.join(str(i) for i in order)}"
                    out[host] = {names[i]: value(i) for i in order}
    return out


def ansible_targets(path) -> dict:
    done = subprocess.run([sys.executable, "-c", ORACLE, str(path)], capture_output=True, text=True,
                          env=ansible_env(), timeout=300, check=True)
    return json.loads(done.stdout)


def gpufleet_target(host) -> dict:
    return {k: getattr(host, k) for k in SETTINGS}


def test_every_alias_pair_is_a_case():
    c = cases()
    assert c["address-1-0"] == {"ansible_ssh_host": "10.0.0.2", "ansible_host": "10.0.0.1"}
    assert c["password-0-1-2"] == {"ansible_password": "pw0", "ansible_ssh_pass": "pw1", "ansible_ssh_password": "pw2"}
    assert len(c) == 4 * 4 + 2 * 11  # 2 names: 2 singles + 1 pair in 2 orders; 3 names: 3 + 3 pairs * 2 + 2


@needs_ansible
def test_connection_target_is_ansibles_for_every_alias_pair(tmp_path):
    inv = tmp_path / "inventory.yml"
    inv.write_text(json.dumps({"all": {"hosts": cases()}}))
    theirs = ansible_targets(inv)
    mine = load_inventory(inv).hosts
    assert sorted(theirs) == sorted(mine)
    for name, expected in theirs.items():
        expected = dict(expected)
        if expected["address"] is None:
            expected["address"] = name
        assert gpufleet_target(mine[name]) == expected, name


@needs_ansible
def test_aliases_set_at_different_levels_still_follow_the_plugins_order(tmp_path):
    """``ansible_ssh_host`` in a group beats ``ansible_host`` on the host itself: the variables are merged first,
    then the plugin picks the last name it lists that is set."""
    inv = tmp_path / "hosts.ini"
    inv.write_text("[gpu]\nh1 ansible_host=10.0.0.1 ansible_port=1111 ansible_user=u1 ansible_password=p1\n"
                   "[gpu:vars]\nansible_ssh_host=10.9.9.9\nansible_ssh_port=2222\nansible_ssh_user=u2\n"
                   "ansible_ssh_pass=p2\n")
    theirs = ansible_targets(inv)["h1"]
    mine = gpufleet_target(load_inventory(inv).hosts["h1"])
    assert mine == theirs
    assert (mine["address"], mine["port"], mine["user"], mine["password"]) == ("10.9.9.9", 2222, "u2", "p2")


def test_the_brief_example_resolves_as_ansibles_ssh_plugin(tmp_path):
    """The ssh plugin lists ansible_host before ansible_ssh_host (and so on), and the last one set wins:
    b.example:2222 as u2 (checked against ansible-core by the tests above)."""
    inv = tmp_path / "hosts.ini"
    inv.write_text("h1 ansible_host=a.example ansible_ssh_host=b.example ansible_port=1111 ansible_ssh_port=2222 "
                   "ansible_user=u1 ansible_ssh_user=u2 ansible_private_key_file=/k1 "
                   "ansible_ssh_private_key_file=/k2 ansible_become_password=b1 ansible_sudo_pass=b3\n")
    h = load_inventory(inv).hosts["h1"]
    assert (h.address, h.port, h.user, h.key_file, h.become_password) == ("b.example", 2222, "u2", "/k2", "b3")
