"""fleet.inventory.connection.ssh_target: a host's variables in, the exact SSH target or the exact refusal out
(pure; the real-sshd side is tests/test_ssh_connection_rules.py)."""

from __future__ import annotations

import pytest

from fleet.inventory import Host
from fleet.inventory.connection import ConnectionProblem, KeyFile, SshTarget, host_key_warning, problem, ssh_target
from fleet.sshargs import Jump, SshArgs


def test_target_from_aliases_and_ssh_arguments():
    t = ssh_target("n1", {"ansible_ssh_host": "10.0.0.9", "ansible_host": "10.0.0.1", "ansible_ssh_port": 2222,
                          "ansible_ssh_common_args": "-J ops@bastion -o StrictHostKeyChecking=no",
                          "ansible_ssh_extra_args": "-i /keys/extra -o UserKnownHostsFile=/dev/null",
                          "ansible_ssh_private_key_file": "/keys/main", "ansible_ssh_pass": "pw"})
    assert t == SshTarget(
        address="10.0.0.9", port=2222, user=None,
        key_files=(KeyFile("/keys/extra", "ansible_ssh_extra_args -i"),
                   KeyFile("/keys/main", "ansible_ssh_private_key_file")),
        args=SshArgs(jumps=(Jump("bastion", "ops"),), identity_files=("/keys/extra",),
                     host_key_overrides=("-o StrictHostKeyChecking=no", "-o UserKnownHostsFile=/dev/null")),
        password="pw",
        host_key_overrides=("ansible_ssh_common_args -o StrictHostKeyChecking=no",
                            "ansible_ssh_extra_args -o UserKnownHostsFile=/dev/null"))
    assert "pw" not in repr(t)


def test_port_and_user_from_the_ssh_arguments_when_the_inventory_sets_none():
    t = ssh_target("n1", {"ansible_ssh_common_args": "-p 2200 -l ops"})
    assert (t.address, t.port, t.user) == ("n1", 2200, "ops")


@pytest.mark.parametrize("variables,message", [
    ({"ansible_port": 22, "ansible_ssh_port": 2222, "ansible_ssh_common_args": "-p 22"},
     "ansible_ssh_port (2222) and the ssh arguments' port (22) differ: keep one"),
    ({"ansible_user": "a", "ansible_ssh_extra_args": "-l b"},
     "ansible_user (a) and the ssh arguments' user (b) differ: keep one"),
    ({"ansible_ssh_extra_args": "-L 80:x:80"},
     "ansible_ssh_extra_args: ssh option -L is not supported by gpufleet (supported: -o, -J, -i, -p, -l, -C, -A, "
     "-a, -q, -T)"),
    ({"ansible_ssh_common_args": "-J a", "ansible_ssh_extra_args": "-J b"},
     "ansible_ssh_common_args / ansible_ssh_extra_args: ssh option ProxyJump is given twice with different values "
     "('-J a', then '-J b'); OpenSSH would use the first: keep one"),
    ({"ansible_host": "{{ lookup('env', 'X') }}"},
     "ansible_host is a Jinja template (\"{{ lookup('env', 'X') }}\"); gpufleet does not render templates: set it "
     "literally"),
])
def test_refusals_name_the_variable(variables, message):
    with pytest.raises(ConnectionProblem) as e:
        ssh_target("n1", variables)
    assert str(e.value) == message
    assert problem("n1", variables) == message == Host("n1", variables).problem


def test_a_local_host_has_no_ssh_problem():
    v = {"ansible_connection": "local", "ansible_ssh_extra_args": "-L 80:x:80"}
    assert problem("localhost", v) is None


def test_ansible_host_key_checking_false_is_told_too():
    hosts = [Host(f"n{i}", {"ansible_host_key_checking": False}, ("gpu", "h100")) for i in range(7)]
    hosts.append(Host("n7", {"ansible_host_key_checking": True}))
    assert host_key_warning(hosts) == (
        "ignored: ansible_host_key_checking=False (7 hosts in groups gpu, h100): gpufleet verifies every host key "
        "against known_hosts; an unknown key is that host's error (add it with ssh-keyscan after checking its "
        "fingerprint, or run with --accept-new-host-keys)")
