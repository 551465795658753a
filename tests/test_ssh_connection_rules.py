"""Connection settings at the edges, against real OpenSSH test hosts (tests/sshd.py).

* Options that turn host key checking off (``StrictHostKeyChecking=no``, ``UserKnownHostsFile=/dev/null``) are
  ignored with one warning for the run; host keys are still verified.
* A missing key file is a configuration error naming the file and the hosts, before any host is contacted.
* A wrong key: the host's message names the key offered.
* The connection target is Ansible's: ``ansible_ssh_port`` wins over ``ansible_port``, and so on.
* ``gpufleet hosts`` shows the problem the transport raises, from the same function.
"""

from __future__ import annotations

import pytest

from fleet.fanout import HostState, run_fleet
from fleet.inventory import Host
from fleet.inventory.listing import hosts_document, render_hosts
from fleet.transport import host_key_warning, preflight
from tests.sshd import free_port

OFF = "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null"


@pytest.fixture(scope="module")
def node(farm):
    return farm.add_host("rules-node", fixture=None, gpus=0)


def echo(hosts, options):
    return run_fleet(hosts, lambda t: t.run("echo reached").stdout.strip(), options, progress=False)


def host(node, name="n1", groups=("gpu",), **extra):
    return Host(name, {**node.vars, **extra}, groups)


def test_host_key_checking_off_in_the_inventory_is_ignored_with_one_warning(farm, node):
    hosts = [host(node, "n1", ansible_ssh_common_args=OFF), host(node, "n2", ansible_ssh_common_args=OFF),
             host(node, "n3", ("login",), ansible_ssh_extra_args="-o StrictHostKeyChecking=no")]
    r = echo(hosts, farm.options())
    assert {n: (h.state, h.value) for n, h in r.results.items()} == {n: (HostState.OK, "reached")
                                                                    for n in ("n1", "n2", "n3")}
    assert host_key_warning(hosts) == (
        "ignored: ansible_ssh_common_args -o StrictHostKeyChecking=no (2 hosts in group gpu); "
        "ansible_ssh_common_args -o UserKnownHostsFile=/dev/null (2 hosts in group gpu); "
        "ansible_ssh_extra_args -o StrictHostKeyChecking=no (1 host in group login): gpufleet verifies every "
        "host key against known_hosts; an unknown key is that host's error (add it with ssh-keyscan after "
        "checking its fingerprint, or run with --accept-new-host-keys)")
    assert host_key_warning([host(node)]) is None
    assert render_hosts(hosts).splitlines()[-2] == f"warning: {host_key_warning(hosts)}"
    assert hosts_document(["x"], "all", hosts)["warnings"] == [host_key_warning(hosts)]
    assert "problem" not in hosts_document(["x"], "all", hosts)["hosts"]["n1"]


def test_with_checking_off_in_the_inventory_an_unknown_key_is_still_refused(farm, node, tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    hosts = [host(node, ansible_ssh_common_args=OFF)]
    r = echo(hosts, farm.options(known_hosts=str(empty)))["n1"]
    assert r.state is HostState.HOST_KEY_REJECTED
    assert r.message.startswith(f"unknown host key for [{node.address}]:{node.port}: verify its fingerprint, "
                                f"then add it with `ssh-keyscan -p {node.port} {node.address} >> ~/.ssh/known_hosts` "
                                f"or re-run with --accept-new-host-keys"), r.message
    r = echo(hosts, farm.options(known_hosts=str(empty), accept_new_host_keys=True))["n1"]
    assert (r.state, r.value) == (HostState.OK, "reached")
    assert empty.read_text().startswith(f"[{node.address}]:{node.port} ssh-ed25519 ")  # recorded, not /dev/null


def test_a_missing_key_file_is_a_configuration_error_naming_it(farm, node, tmp_path):
    gone = tmp_path / "id_gone"
    hosts = [host(node, "n1", ansible_ssh_private_key_file=str(gone)),
             host(node, "n2", ansible_private_key_file="/etc/x", ansible_ssh_private_key_file=str(gone)),
             host(node, "n3", ansible_ssh_common_args=f"-i {tmp_path}/id_nope"),
             host(node, "n4")]
    assert preflight(hosts) == [
        f"ansible_ssh_private_key_file: {gone} does not exist (hosts n1, n2): a configuration error, "
        f"no host was contacted",
        f"ansible_ssh_common_args -i: {tmp_path}/id_nope does not exist (host n3): a configuration error, "
        f"no host was contacted"]
    assert preflight([host(node)]) == []
    r = echo(hosts, farm.options())
    assert (r["n1"].state, r["n1"].message) == (HostState.ERROR, f"ansible_ssh_private_key_file: {gone} does not "
                                                                  f"exist")
    assert r["n3"].state is HostState.ERROR and r["n4"].state is HostState.OK
    listing = render_hosts(hosts).splitlines()
    assert f"n1: cannot be used: ansible_ssh_private_key_file: {gone} does not exist" in listing
    assert hosts_document(["x"], "all", hosts)["hosts"]["n1"]["problem"] == r["n1"].message


def test_a_wrong_key_is_named_in_the_hosts_message(farm, node, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))  # no default ~/.ssh/id_* keys of this machine's user
    only = host(node, "only", ansible_ssh_private_key_file=str(farm.other_key),
                ansible_ssh_common_args="-o IdentitiesOnly=yes")
    r = echo([only], farm.options())["only"]
    assert r.state is HostState.AUTH_FAILED
    assert r.message == (f"authentication failed for {node.vars['ansible_user']}@{node.address}:{node.port} "
                         f"with key {farm.other_key}: Authentication failed."), r.message
    (tmp_path / ".ssh").mkdir()
    (tmp_path / ".ssh" / "id_ed25519").write_bytes(farm.other_key.read_bytes())
    two = host(node, "two", ansible_ssh_private_key_file=str(farm.other_key),
               ansible_ssh_common_args=f"-i {farm.other_key}.copy")
    (farm.other_key.parent / "id_other.copy").write_bytes(farm.other_key.read_bytes())
    r = echo([two], farm.options())["two"]
    assert r.state is HostState.AUTH_FAILED
    assert (f"with keys {farm.other_key}.copy, {farm.other_key} (and ~/.ssh/id_ed25519): "
            in r.message), r.message


def test_the_ssh_aliases_win_as_in_ansibles_ssh_plugin(farm, node):
    closed = free_port(node.address)  # nothing listens there: connecting to it would fail
    v = {k: val for k, val in node.vars.items() if k not in ("ansible_host", "ansible_port", "ansible_user")}
    h = Host("aliases", {**v, "ansible_host": "192.0.2.1", "ansible_ssh_host": node.address,
                         "ansible_port": closed, "ansible_ssh_port": node.port,
                         "ansible_user": "nobody-here", "ansible_ssh_user": node.vars["ansible_user"]})
    assert (h.address, h.port, h.user) == (node.address, node.port, node.vars["ansible_user"])
    r = echo([h], farm.options())["aliases"]
    assert (r.state, r.value) == (HostState.OK, "reached"), r.message
