"""A busy sshd's dropped connections are retried; authentication and host-key failures never are; a bastion's
connection is shared by every host behind it and its handshakes are bounded (issue 24).

Real sshds (tests/sshd.py) with OpenSSH's stock ``MaxStartups 10:30:100``, many inventory aliases each, and a
TCP forwarder that counts the connections a host receives and can drop the first ones as a busy sshd does.
"""

from __future__ import annotations

import os
import random
import socket
import threading

import pytest

from fleet.audit.run import audit_hosts
from fleet.fanout import run_command
from fleet.inventory import Host
from fleet.inventory.connection import connect_problem
from fleet.outcome import HostState
from fleet.transport import RETRY_MOST_S, retry_delay

STOCK = "10:30:100"  # OpenSSH's default MaxStartups


class Forwarder(threading.Thread):
    """Listens on a loopback port, counts connections, closes the first ``drop`` at once (as sshd past its
    MaxStartups does) and pipes the others to ``target``."""

    def __init__(self, target: tuple[str, int], drop: int = 0):
        super().__init__(daemon=True)
        self.target, self.drop = target, drop
        self.sock = socket.socket()
        self.sock.bind((target[0], 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            if self.accepted <= self.drop:
                c.close()
                continue
            t = socket.create_connection(self.target)
            for a, b in ((c, t), (t, c)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def stop(self) -> None:
        self.stopping.set()
        self.sock.close()


@pytest.fixture(scope="module")
def stock(farm):
    return farm.add_host("stock", max_startups=STOCK)


def _via(farm, host, fwd: Forwarder, **extra) -> Host:
    """``host`` reached through ``fwd``; its known_hosts entry copied under the forwarder's port."""
    line = next(li for li in farm.known_hosts.read_text().splitlines()
                if li.startswith(f"[{host.address}]:{host.port} "))
    with open(farm.known_hosts, "a") as f:
        f.write(f"[{host.address}]:{fwd.port} " + line.split(" ", 1)[1] + "\n")
    return Host(f"via-{fwd.port}", {**host.vars, "ansible_port": fwd.port, **extra})


def test_retry_delays_grow_jittered_and_bounded():
    rng = random.Random(7)
    delays = [retry_delay(i, rng) for i in range(12)]
    assert all(0.05 <= d <= 0.15 for d in delays[:1])
    assert all(0.5 * min(RETRY_MOST_S, 0.1 * 2 ** i) <= d <= 1.5 * min(RETRY_MOST_S, 0.1 * 2 ** i)
               for i, d in enumerate(delays))
    assert max(delays) <= 1.5 * RETRY_MOST_S
    assert len(set(delays)) == len(delays)  # jittered: hosts dropped together do not come back together


def test_the_jump_handshake_bound_must_be_a_count():
    assert connect_problem("n1", {"ansible_host": "10.0.0.1", "gpufleet_jump_handshakes": 0}) == (
        "gpufleet_jump_handshakes must be a whole number of at least 1, got 0")
    assert connect_problem("n1", {"ansible_host": "10.0.0.1", "gpufleet_jump_handshakes": "4"}) is None


def test_connections_dropped_before_the_handshake_are_tried_again(farm, stock):
    fwd = Forwarder((stock.address, stock.port), drop=3)
    fwd.start()
    try:
        h = _via(farm, stock, fwd)
        r = run_command([h], "echo hello", farm.options(connect_timeout=10), progress=False)[h.name]
    finally:
        fwd.stop()
    assert r.state is HostState.OK, r.message
    assert r.value.stdout == "hello\n"
    assert fwd.accepted == 4


def test_a_host_that_keeps_dropping_is_unreachable_after_its_connect_timeout(farm, stock):
    fwd = Forwarder((stock.address, stock.port), drop=10_000)
    fwd.start()
    try:
        h = _via(farm, stock, fwd)
        r = run_command([h], "true", farm.options(connect_timeout=2), progress=False)[h.name]
    finally:
        fwd.stop()
    assert r.state is HostState.UNREACHABLE
    assert "tries in 2s)" in r.message, r.message
    assert 2 <= fwd.accepted <= 2 / (0.5 * 0.1) + 1, fwd.accepted


@pytest.mark.parametrize("case", ["auth", "host key"])
def test_authentication_and_host_key_failures_are_never_tried_again(farm, stock, tmp_path, case):
    fwd = Forwarder((stock.address, stock.port))
    fwd.start()
    try:
        h = _via(farm, stock, fwd)
        if case == "auth":
            h = Host(h.name, {**h.vars, "ansible_ssh_private_key_file": str(farm.other_key)})
            options = farm.options(connect_timeout=10)
        else:
            (tmp_path / "empty").write_text("")
            options = farm.options(connect_timeout=10, known_hosts=str(tmp_path / "empty"))
        r = run_command([h], "true", options, progress=False)[h.name]
    finally:
        fwd.stop()
    expected = HostState.AUTH_FAILED if case == "auth" else HostState.HOST_KEY_REJECTED
    assert r.state is expected, r.message
    assert fwd.accepted == 1


def test_128_aliases_of_one_stock_sshd_at_forks_64_are_all_audited(farm, stock):
    names = farm.add_aliases([stock], 128, prefix="direct")
    hosts = [Host(n, farm.vars_of(n)) for n in names]
    result = audit_hosts(hosts, farm.options(forks=64, connect_timeout=30, command_timeout=120), progress=False)
    states = {n: result[n].state for n in names}
    assert states == {n: HostState.OK for n in names}, {n: result[n].message for n in names if not result[n].ok}


@pytest.mark.skipif(os.geteuid() != 0, reason="private test networks need root (unshare --net)")
def test_128_aliases_behind_one_stock_bastion_share_one_connection_to_it(farm):
    bastion = farm.add_bastion("stock-bastion", max_startups=STOCK)
    node = farm.add_host("behind-stock", behind=bastion)
    fwd = Forwarder((bastion.address, bastion.port))  # counts the connections the bastion gets
    fwd.start()
    line = next(li for li in farm.known_hosts.read_text().splitlines()
                if li.startswith(f"[{bastion.address}]:{bastion.port} "))
    with open(farm.known_hosts, "a") as f:
        f.write(f"[{bastion.address}]:{fwd.port} " + line.split(" ", 1)[1] + "\n")
    with open(farm.ssh_config, "a") as f:
        f.write(f"Host {bastion.address}\n  IdentityFile {farm.client_key}\n")
    names = farm.add_aliases([node], 128, prefix="behind")
    jump = {"ansible_ssh_common_args": f"-J root@{bastion.address}:{fwd.port}"}
    hosts = [Host(n, {**farm.vars_of(n), **jump}) for n in names]
    try:
        result = audit_hosts(hosts, farm.options(forks=64, connect_timeout=30, command_timeout=120), progress=False)
    finally:
        fwd.stop()
    states = {n: result[n].state for n in names}
    assert states == {n: HostState.OK for n in names}, {n: result[n].message for n in names if not result[n].ok}
    assert 1 <= fwd.accepted <= 3, fwd.accepted  # one shared connection (again only if every host had closed)


@pytest.mark.skipif(os.geteuid() != 0, reason="private test networks need root (unshare --net)")
def test_proxy_commands_to_one_stock_bastion_are_bounded_and_retried(farm):
    bastion = farm.add_bastion("stock-bastion-pc", max_startups=STOCK)
    node = farm.add_host("behind-stock-pc", behind=bastion)
    key, kh = farm.client_key, farm.known_hosts
    pc = (f'-o ProxyCommand="ssh -W %h:%p -q -F /dev/null -i {key} -o UserKnownHostsFile={kh} '
          f'-o BatchMode=yes -p {bastion.port} root@{bastion.address}"')
    names = farm.add_aliases([node], 48, prefix="pc")
    hosts = [Host(n, {**farm.vars_of(n), "ansible_ssh_common_args": pc}) for n in names]
    result = run_command(hosts, "echo ok", farm.options(forks=48, connect_timeout=30), progress=False)
    states = {n: result[n].state for n in names}
    assert states == {n: HostState.OK for n in names}, {n: result[n].message for n in names if not result[n].ok}
