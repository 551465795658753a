"""fleet.sshargs: ssh argument strings in, the exact parsed result or the exact error out (pure).

Real-world strings are quoted from published inventories and docs, each with its source."""

from __future__ import annotations

import pytest

from fleet.sshargs import Jump, SshArgs, SshArgsError, parse, parse_jumps, proxy_command

PARSED = [
    ("", SshArgs()),
    ("   ", SshArgs()),
    # NVIDIA/deepops README.md ("If your DGX are on an un-routable subnet ..."), config/group_vars/dgx-servers.yml
    ('-o ProxyCommand="ssh -W %h:%p -q ubuntu@10.0.0.1"', SshArgs(proxy_command="ssh -W %h:%p -q ubuntu@10.0.0.1")),
    # Ansible docs, network platform guides (docs/docsite/rst/network/user_guide/platform_vyos.rst and others)
    ('-o ProxyCommand="ssh -W %h:%p -q bastion01"', SshArgs(proxy_command="ssh -W %h:%p -q bastion01")),
    # a terraform-generated inventory for OCI/Azure (templates/inventory.tpl: "ansible_ssh_common_args=...")
    ("-o ProxyJump=ubuntu@203.0.113.7 -o ServerAliveInterval=30 -o ServerAliveCountMax=10",
     SshArgs(jumps=(Jump("203.0.113.7", "ubuntu"),), server_alive_interval=30,
             ignored=("-o ServerAliveCountMax=10",))),
    # a published ini inventory: [cluster_vms:vars] ansible_ssh_common_args="-o ProxyJump=ec2-user@44.196.182.72"
    ("-o ProxyJump=ec2-user@44.196.182.72", SshArgs(jumps=(Jump("44.196.182.72", "ec2-user"),))),
    # Ansible's own ssh_args default (ansible.cfg [ssh_connection] ssh_args), as people copy it into inventories
    ("-C -o ControlMaster=auto -o ControlPersist=60s",
     SshArgs(compression=True, ignored=("-o ControlMaster=auto", "-o ControlPersist=60s"))),
    ("-J bastion", SshArgs(jumps=(Jump("bastion"),))),
    ("-J ops@jump1:2222,jump2", SshArgs(jumps=(Jump("jump1", "ops", 2222), Jump("jump2")))),
    ("-Jops@jump1", SshArgs(jumps=(Jump("jump1", "ops"),))),
    ("-o ProxyJump=ssh://ops@[2001:db8::1]:22", SshArgs(jumps=(Jump("2001:db8::1", "ops", 22),))),
    ("-o 'ProxyJump jump1'", SshArgs(jumps=(Jump("jump1"),))),
    ("-oProxyJump=jump1", SshArgs(jumps=(Jump("jump1"),))),
    ("-o proxyjump=jump1", SshArgs(jumps=(Jump("jump1"),))),
    ("-o ProxyJump=none", SshArgs(no_proxy=True)),
    ("-o ProxyCommand=none", SshArgs(no_proxy=True)),
    ("-o ProxyJump=jump1 -o ProxyJump=jump1", SshArgs(jumps=(Jump("jump1"),))),
    ("-i ~/.ssh/gpu_key -o IdentityFile=/keys/b -o IdentitiesOnly=yes",
     SshArgs(identity_files=("~/.ssh/gpu_key", "/keys/b"), identities_only=True)),
    ("-p 2222 -l ops", SshArgs(port=2222, user="ops")),
    ("-p2222 -o User=ops -o Port=2222", SshArgs(port=2222, user="ops")),
    ("-o ConnectTimeout=5", SshArgs(connect_timeout=5.0)),
    ("-o UserKnownHostsFile=/etc/gpufleet/known_hosts", SshArgs(known_hosts_files=("/etc/gpufleet/known_hosts",))),
    ("-o StrictHostKeyChecking=yes", SshArgs()),
    ("-qT -A", SshArgs(forward_agent=True, ignored=("-q", "-T"))),
    ("-o ForwardAgent=no -o Compression=yes", SshArgs(forward_agent=False, compression=True)),
    ("-o LogLevel=ERROR -o BatchMode=yes -o ControlPath=/tmp/%r@%h:%p",
     SshArgs(ignored=("-o LogLevel=ERROR", "-o BatchMode=yes", "-o ControlPath=/tmp/%r@%h:%p"))),
    # Options that turn host key checking off are ignored (gpufleet verifies host keys regardless) and recorded,
    # as written, for the run's one warning.  The usual pair, e.g. a terraform template for AWS:
    # ansible_ssh_common_args="-o ProxyJump=ubuntu@${...bastion.public_ip} -o StrictHostKeyChecking=no
    #                          -o UserKnownHostsFile=/dev/null"
    ("-o ProxyJump=ubuntu@198.51.100.4 -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null",
     SshArgs(jumps=(Jump("198.51.100.4", "ubuntu"),),
             host_key_overrides=("-o StrictHostKeyChecking=no", "-o UserKnownHostsFile=/dev/null"))),
    # dev00/otc-terraform os_example/ansible_inventory.tpl (ansible_ssh_extra_args)
    ("-o StrictHostKeyChecking=no", SshArgs(host_key_overrides=("-o StrictHostKeyChecking=no",))),
    ("-oStrictHostKeyChecking=accept-new", SshArgs(host_key_overrides=("-o StrictHostKeyChecking=accept-new",))),
    ("-o 'UserKnownHostsFile /dev/null'", SshArgs(host_key_overrides=("-o UserKnownHostsFile /dev/null",))),
    ("-o UserKnownHostsFile=none", SshArgs(host_key_overrides=("-o UserKnownHostsFile=none",))),
    ("-o 'UserKnownHostsFile=/etc/kh /dev/null'",
     SshArgs(known_hosts_files=("/etc/kh",), host_key_overrides=("-o UserKnownHostsFile=/etc/kh /dev/null",))),
]


@pytest.mark.parametrize("text,expected", PARSED, ids=[t or "empty" for t, _ in PARSED])
def test_parses(text, expected):
    assert parse(text) == expected


REFUSED = [
    ("-o PubkeyAcceptedKeyTypes=+ssh-rsa",
     "ssh option -o PubkeyAcceptedKeyTypes is not supported by gpufleet (supported: BatchMode, Compression, "
     "ConnectTimeout, ControlMaster, ControlPath, ControlPersist, ForwardAgent, IdentitiesOnly, IdentityFile, "
     "LogLevel, Port, ProxyCommand, ProxyJump, ServerAliveCountMax, ServerAliveInterval, StrictHostKeyChecking, "
     "User, UserKnownHostsFile)"),
    ("-v", "ssh option -v is not supported by gpufleet (supported: -o, -J, -i, -p, -l, -C, -A, -a, -q, -T)"),
    ("-L 8080:localhost:80",
     "ssh option -L is not supported by gpufleet (supported: -o, -J, -i, -p, -l, -C, -A, -a, -q, -T)"),
    ("bastion", "unexpected argument 'bastion' in the ssh arguments: only options are allowed there"),
    ("-J", "ssh option -J needs a value"),
    ("-o ProxyJump", "ssh option -o 'ProxyJump' is not Key=Value"),
    ('-o ProxyCommand="ssh -W %h:%p bastion', "ssh arguments cannot be split (No closing quotation): "
                                               "'-o ProxyCommand=\"ssh -W %h:%p bastion'"),
    ("-J a -o ProxyCommand='nc %h %p'",
     "both ProxyJump ('-J a') and ProxyCommand ('-o ProxyCommand=nc %h %p') are given; OpenSSH refuses that too: "
     "keep one"),
    ("-J a -J b",
     "ssh option ProxyJump is given twice with different values ('-J a', then '-J b'); OpenSSH would use the "
     "first: keep one"),
    ("-o ProxyCommand='nc %h %d'", "ProxyCommand token %d is not one OpenSSH expands there (%h %p %r %n %%)"),
    ("-J ops@jump:99999", "jump host 'ops@jump:99999': '99999' is not a port"),
    ("-J 'bad host'", "jump host 'bad host' is not [user@]host[:port]"),
    ("-J 'a;b@jump'", "jump host 'a;b@jump': 'a;b' is not a user name"),
    ("-p 0", "ssh option Port=0 is not a number from 1 to 65535"),
    ("-o ConnectTimeout=soon", "ssh option ConnectTimeout=soon is not a number from 1"),
    ("-o IdentitiesOnly=maybe", "ssh option IdentitiesOnly=maybe is not 'yes' or 'no'"),
]


@pytest.mark.parametrize("text,message", REFUSED, ids=[t for t, _ in REFUSED])
def test_refuses(text, message):
    with pytest.raises(SshArgsError) as e:
        parse(text)
    assert str(e.value) == message


def test_proxy_command_tokens_as_openssh_expands_them():
    assert proxy_command("ssh -W %h:%p -l %r jump # %n %%", "10.0.0.5", 2222, "ops", "node05") == \
        "ssh -W 10.0.0.5:2222 -l ops jump # node05 %"
    assert proxy_command("nc %h %p", "10.0.0.5", None, None) == "nc 10.0.0.5 22"
    with pytest.raises(SshArgsError, match="lone %"):
        proxy_command("nc %h %p %", "h", 22, "u")


def test_jump_chain_order_and_rendering():
    hops = parse_jumps("a@j1:2200, j2")
    assert hops == (Jump("j1", "a", 2200), Jump("j2"))
    assert [str(h) for h in hops] == ["a@j1:2200", "j2"]
