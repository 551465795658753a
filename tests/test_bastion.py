"""Hosts reachable only through a bastion, audited end to end over ProxyJump, -J, a jump chain and ProxyCommand.

The bastion and the nodes behind it run in a private network namespace (tests/sshd.py,
``add_bastion``): only the bastion is published on this machine's network, so a node
answers only through the bastion's sshd.  Needs root (unshare, nsenter).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from fleet.audit.run import audit_hosts
from fleet.inventory import Host
from fleet.outcome import PASSING, HostState
from tests.sshd import REPO, invoke_env

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="private test networks need root (unshare --net)")


@pytest.fixture(scope="module")
def lab(farm):
    b = farm.add_bastion("bastion")
    hop2 = farm.add_host("hop2", behind=b)
    key, kh = farm.client_key, farm.known_hosts
    # a jump host authenticates as with `ssh -J`: with its own ssh config (IdentityFile), never the node's key
    with open(farm.ssh_config, "a") as f:
        for h in (b, hop2):
            f.write(f"Host {h.address}\n  IdentityFile {key}\n")
    via = {
        "via-proxyjump": f"-o ProxyJump=root@{b.address}:{b.port} -o ServerAliveInterval=30 "
                         f"-o ServerAliveCountMax=10",
        "via-J": f"-J {b.address}:{b.port} -C -o ControlMaster=auto -o ControlPersist=60s",
        "via-chain": f"-J root@{b.address}:{b.port},root@{hop2.address}:{hop2.port}",
        # DeepOps' form: ProxyCommand="ssh -W %h:%p -q user@bastion"
        "via-proxycommand": f'-o ProxyCommand="ssh -W %h:%p -q -F /dev/null -i {key} -o UserKnownHostsFile={kh} '
                            f'-o BatchMode=yes -p {b.port} root@{b.address}"',
    }
    for name, args in via.items():
        farm.add_host(name, behind=b, extra_vars={"ansible_ssh_common_args": args})
    return farm, b, list(via)


def hosts(farm, names, **override):
    return [Host(n, {**farm.hosts[n].vars, **override.get(n, {})}) for n in names]


def test_a_node_behind_the_bastion_refuses_a_direct_connection(lab):
    farm, b, names = lab
    for n in names:
        h = farm.hosts[n]
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((h.address, h.port), timeout=3)
    direct = hosts(farm, names[:1], **{names[0]: {"ansible_ssh_common_args": ""}})
    r = audit_hosts(direct, farm.options())[names[0]]
    assert r.state is HostState.UNREACHABLE, r.message
    # while the bastion itself is reachable
    socket.create_connection((b.address, b.port), timeout=3).close()


def test_audit_through_the_bastion(lab):
    farm, b, names = lab
    result = audit_hosts(hosts(farm, names), farm.options())
    for n in names:
        r = result[n]
        assert r.state is HostState.OK, (n, r.message)
        assert r.value["status"] in PASSING, (n, r.value)
        assert r.value["facts"]["lspci_gpu_count"] == 1


def test_cli_audit_through_the_bastion(lab, tmp_path):
    farm, b, names = lab
    inv = farm.write_inventory(tmp_path / "inv.yaml", names=names)
    home = tmp_path / "home"
    env = invoke_env(farm, home)
    (home / ".ssh" / "config").write_text(farm.ssh_config.read_text())  # the jump hosts' IdentityFile
    out = tmp_path / "audit.json"
    p = subprocess.run([sys.executable, "-m", "fleet.cli", "audit", "--hosts", "gpu-nodes", "--inventory", str(inv),
                        "--json", str(out), "--connect-timeout", "5"], cwd=REPO, env=env, capture_output=True,
                       text=True, timeout=120)
    report = json.loads(out.read_text())
    assert p.returncode == 0, p.stdout + p.stderr
    assert {n: h["state"] for n, h in report["hosts"].items()} == {n: "ok" for n in names}


def test_the_jump_hosts_key_is_verified(lab, tmp_path):
    farm, b, names = lab
    kh = tmp_path / "known_hosts"  # the nodes' keys, not the bastion's
    kh.write_text("".join(line for line in farm.known_hosts.read_text().splitlines(keepends=True)
                          if not line.startswith(f"[{b.address}]:{b.port} ")))
    r = audit_hosts(hosts(farm, ["via-proxyjump"]), farm.options(known_hosts=str(kh)))["via-proxyjump"]
    assert r.state is HostState.HOST_KEY_REJECTED
    assert r.message.startswith(f"jump host root@{b.address}:{b.port}: unknown host key for [{b.address}]:{b.port}")


def test_a_dead_proxy_command_is_unreachable_with_its_reason(lab):
    farm, b, names = lab
    bad = {"via-proxycommand": {"ansible_ssh_common_args": "-o ProxyCommand='sh -c \"echo no route to %h >&2\"'"}}
    r = audit_hosts(hosts(farm, ["via-proxycommand"], **bad), farm.options())["via-proxycommand"]
    assert r.state is HostState.UNREACHABLE
    assert "ProxyCommand exited 0: no route to" in r.message, r.message


def test_options_gpufleet_cannot_honour_are_that_hosts_error(lab):
    farm, b, names = lab
    # host key checking turned off in the inventory: ignored (keys still verified, through the jump host too)
    bad = {"via-J": {"ansible_ssh_common_args": f"-J {b.address}:{b.port} -o StrictHostKeyChecking=no "
                                                f"-o UserKnownHostsFile=/dev/null"},
           "via-chain": {"ansible_ssh_common_args": "-o PubkeyAcceptedKeyTypes=+ssh-rsa"}}
    result = audit_hosts(hosts(farm, ["via-J", "via-chain", "via-proxyjump"], **bad), farm.options())
    assert result["via-J"].state is HostState.OK, result["via-J"].message
    assert result["via-chain"].state is HostState.ERROR
    assert "-o PubkeyAcceptedKeyTypes is not supported by gpufleet" in result["via-chain"].message
    assert result["via-proxyjump"].state is HostState.OK
