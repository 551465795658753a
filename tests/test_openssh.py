"""The audit's one command per host over OpenSSH's own client (fleet/openssh.py, issue 24).

The plan (host entry in, ``ssh`` argv or the reason it is paramiko's out) is pure and checked exactly; the rest
runs against real sshds (tests/sshd.py) with a counting ``ssh`` on PATH, so each test knows which client ran.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import sys
import threading
import time
from pathlib import Path

import pytest

from fleet.audit.run import audit_hosts
from fleet.inventory import Host
from fleet.openssh import OpenSshCommand, denied, not_connected, plan, tcp_timeout
from fleet.outcome import HostState, TimedOut, Unreachable
from fleet.transport import SshTransport, connect

REAL_SSH = shutil.which("ssh")
pytestmark = pytest.mark.skipif(REAL_SSH is None, reason="needs OpenSSH's client (openssh-client)")


def _plan(vars_: dict, **kw):
    opts = dict(ssh="/usr/bin/ssh", connect_timeout=10.0, known_hosts="/k/known_hosts",
                system_known_hosts="/etc/ssh/ssh_known_hosts", ssh_config="/k/ssh_config", accept_new_host_keys=False)
    opts.update(kw)
    return plan(Host("n1", vars_), **opts)


BASE = {"ansible_host": "10.0.0.5", "ansible_port": 2222, "ansible_user": "ops",
        "ansible_ssh_private_key_file": "/k/id_ed25519"}


def test_a_plain_entry_gets_this_exact_command_line():
    p = _plan(BASE)
    assert p.reason == ""
    assert p.argv == (
        "/usr/bin/ssh", "-T", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
        "-o", "UserKnownHostsFile=/k/known_hosts", "-o", "GlobalKnownHostsFile=/etc/ssh/ssh_known_hosts",
        "-o", "ConnectTimeout=10", "-o", "LogLevel=ERROR", "-F", "/k/ssh_config", "-i", "/k/id_ed25519",
        "-p", "2222", "-l", "ops", "--", "10.0.0.5")
    assert p.label == "ops@10.0.0.5:2222"
    assert p.keys == ("/k/id_ed25519",)


def test_the_inventorys_ssh_arguments_are_carried_over():
    p = _plan({**BASE, "ansible_ssh_common_args": "-o IdentitiesOnly=yes -C -o ServerAliveInterval=15 "
                                                  "-o ConnectTimeout=4 -o ForwardAgent=no -o ProxyJump=none "
                                                  "-o UserKnownHostsFile=/k/a_hosts"})
    assert p.argv[p.argv.index("-o", 6) + 1] == "UserKnownHostsFile=/k/a_hosts"
    assert "ConnectTimeout=4" in p.argv and p.connect_timeout == 4
    tail = p.argv[p.argv.index("/k/id_ed25519") + 1:]
    assert tail == ("-o", "IdentitiesOnly=yes", "-o", "ProxyCommand=none", "-o", "ProxyJump=none", "-C",
                    "-o", "ServerAliveInterval=15", "-o", "ForwardAgent=no", "-p", "2222", "-l", "ops",
                    "--", "10.0.0.5")


def test_no_port_user_or_config_leaves_them_to_ssh():
    p = _plan({"ansible_host": "gpu7"}, ssh_config=None)
    assert "-F" not in p.argv and "-p" not in p.argv and "-l" not in p.argv
    assert p.argv[-2:] == ("--", "gpu7")


@pytest.mark.parametrize("vars_, kw, reason", [
    ({"ansible_connection": "local"}, {}, "a local host"),
    ({**BASE, "ansible_connection": "paramiko"}, {}, "ansible_connection: paramiko"),
    (BASE, {"accept_new_host_keys": True}, "--accept-new-host-keys (new keys are recorded by gpufleet, one at a time)"),
    ({**BASE, "ansible_password": "hunter22"}, {}, "password authentication"),
    ({**BASE, "ansible_ssh_common_args": "-J bastion"}, {},
     "a jump host or ProxyCommand (one shared connection per jump host)"),
    ({**BASE, "ansible_ssh_common_args": "-o ProxyCommand='nc %h %p'"}, {},
     "a jump host or ProxyCommand (one shared connection per jump host)"),
    ({**BASE, "ansible_ssh_private_key_file": "/k/my key"}, {},
     "a file path with blanks, quotes or % (ssh would split or expand it)"),
    (BASE, {"known_hosts": "/k/%u_hosts"}, "a file path with blanks, quotes or % (ssh would split or expand it)"),
])
def test_entries_ssh_cannot_take_as_is_stay_with_paramiko(vars_, kw, reason):
    p = _plan(vars_, **kw)
    assert (p.argv, p.reason) == ((), reason)


def test_what_ssh_says_decides_the_next_step():
    # ssh's own words (sshconnect.c, sshconnect2.c), as OpenSSH 9 prints them
    assert not_connected(255, b"") is True
    assert not_connected(255, b"partial output") is False  # the command ran: its exit status is its own
    assert not_connected(3, b"") is False
    assert tcp_timeout("ssh: connect to host 10.9.9.9 port 22: Connection timed out\r\n") is True
    assert tcp_timeout("ssh: connect to host 10.9.9.9 port 22: Connection refused\r\n") is False
    assert tcp_timeout("kex_exchange_identification: Connection timed out during banner exchange") is False
    assert denied("ops@10.0.0.5: Permission denied (publickey,password).\r\n") == "publickey,password"
    assert denied("Host key verification failed.\r\n") is None


# --------------------------------------------------------------------------- against real sshds


@pytest.fixture
def counted(tmp_path, monkeypatch):
    """``ssh`` on PATH that logs each command line's first line (options, host, the command's start) and runs
the real client."""
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    log = tmp_path / "ssh.log"
    (bin_ / "ssh").write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" | head -n 1 >> {log}\nexec {REAL_SSH} "$@"\n')
    (bin_ / "ssh").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_}:{Path(REAL_SSH).parent}:/usr/bin:/bin")
    return log


def _calls(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


@pytest.fixture(scope="module")
def plain(farm):
    return farm.add_host("os-plain", fixture="rtx-3090-v12.xml")


def _host(farm, name: str, **extra) -> Host:
    return Host(name, {**farm.hosts[name].vars, **extra})


def test_the_audit_runs_over_ssh_and_finds_what_paramiko_finds(farm, plain, counted):
    over_ssh = audit_hosts([_host(farm, "os-plain")], farm.options(), progress=False)["os-plain"]
    calls = _calls(counted)
    assert len(calls) == 1, calls
    assert "StrictHostKeyChecking=yes" in calls[0] and "BatchMode=yes" in calls[0]
    assert f"UserKnownHostsFile={farm.known_hosts}" in calls[0]
    over_paramiko = audit_hosts([_host(farm, "os-plain", ansible_connection="paramiko")], farm.options(),
                                progress=False)["os-plain"]
    assert len(_calls(counted)) == 1  # paramiko's run did not call ssh
    assert (over_ssh.state, over_paramiko.state) == (HostState.OK, HostState.OK)
    assert over_ssh.value == over_paramiko.value  # facts and checks, exactly
    assert [g["name"] for g in over_ssh.value["facts"]["gpus"]] == ["NVIDIA GeForce RTX 3090"]


def test_an_unknown_host_key_is_refused_and_named_as_everywhere(farm, counted):
    farm.add_host("os-stranger", fixture="rtx-3090-v12.xml", known=False)
    before = farm.known_hosts.read_text()
    r = audit_hosts([_host(farm, "os-stranger")], farm.options(), progress=False)["os-stranger"]
    assert r.state is HostState.HOST_KEY_REJECTED
    assert r.message.startswith(f"unknown host key for [{farm.hosts['os-stranger'].address}]:"
                                f"{farm.hosts['os-stranger'].port}: verify its fingerprint")
    assert len(_calls(counted)) == 1  # ssh refused it; paramiko named it (no authentication was tried)
    assert farm.known_hosts.read_text() == before  # nothing recorded


def test_a_changed_host_key_is_refused(farm, plain, counted, tmp_path):
    other = farm.add_host("os-other", fixture="rtx-3090-v12.xml")
    lines = farm.known_hosts.read_text().splitlines()
    other_key = next(li for li in lines if li.startswith(f"[{other.address}]:{other.port} ")).split(" ", 1)[1]
    wrong = tmp_path / "wrong_hosts"
    wrong.write_text(f"[{plain.address}]:{plain.port} {other_key}\n")
    h = _host(farm, "os-plain", ansible_ssh_common_args=f"-o UserKnownHostsFile={wrong}")
    r = audit_hosts([h], farm.options(), progress=False)[h.name]
    assert r.state is HostState.HOST_KEY_REJECTED
    assert r.message.startswith(f"HOST KEY CHANGED for [{plain.address}]:{plain.port}")
    assert f"UserKnownHostsFile={wrong}" in _calls(counted)[0]


def test_a_refused_key_is_one_failed_login_not_two(farm, counted):
    farm.add_host("os-noauth", fixture="rtx-3090-v12.xml", authorized=False)
    h = farm.hosts["os-noauth"]
    r = audit_hosts([_host(farm, "os-noauth")], farm.options(), progress=False)["os-noauth"]
    assert r.state is HostState.AUTH_FAILED
    assert r.message == (f"authentication failed for {h.vars['ansible_user']}@{h.address}:{h.port} with key "
                         f"{farm.client_key} (ssh: permission denied; the server accepts publickey)")
    assert len(_calls(counted)) == 1


def _one_shot(farm, name: str, **kw) -> OpenSshCommand:
    t = connect(_host(farm, name), dataclasses.replace(farm.options(**kw), openssh=shutil.which("ssh")))
    assert isinstance(t, OpenSshCommand)
    return t


def test_exit_status_output_and_stdin_are_the_commands(farm, plain, counted):
    t = _one_shot(farm, "os-plain")
    try:
        r = t.run("cat; echo out; echo err >&2; exit 3", stdin="hello\n")
        assert (r.exit_code, r.stdout, r.stderr) == (3, "hello\nout\n", "err\n")
        r = t.run("echo partial; exit 255")  # the command's own 255, with output: not a connection failure
        assert (r.exit_code, r.stdout) == (255, "partial\n")
        assert len(_calls(counted)) == 2 and t._fallback is None
        r = t.run("exit 255")  # silent 255: ssh cannot tell it from its own failure; run again over paramiko
        assert r.exit_code == 255 and isinstance(t._fallback, SshTransport)
        assert len(_calls(counted)) == 3
    finally:
        t.close()


def test_a_command_past_its_timeout_is_killed(farm, plain):
    t = _one_shot(farm, "os-plain")
    try:
        start = time.monotonic()
        with pytest.raises(TimedOut, match=r"^command did not finish within 2s$"):
            t.run("sleep 60", timeout=2)
        assert time.monotonic() - start < 2 + 10 + 5  # its connect timeout plus the command's, and no more
    finally:
        t.close()


def test_closing_stops_a_running_command(farm, plain):
    t = _one_shot(farm, "os-plain")
    got: list = []

    def run() -> None:
        try:
            got.append(t.run("sleep 60"))
        except Unreachable as e:
            got.append(e)

    th = threading.Thread(target=run)
    th.start()
    time.sleep(2)
    pid = t._proc.pid
    # its own process group (a terminal's Ctrl-C is gpufleet's to handle), in gpufleet's session (one share
    # of the CPU under Linux's autogroup scheduler, not one per ssh)
    assert os.getpgid(pid) == pid
    if sys.version_info >= (3, 11):
        assert os.getsid(pid) == os.getsid(0)
    t.close()
    th.join(10)
    assert not th.is_alive()
    assert isinstance(got[0], Unreachable) and "closed during the command" in str(got[0])
