"""Test hosts in network namespaces on a bridge (tests/netfarm.py), with real traffic: SSH through gpufleet's own
transport, TCP between the hosts, a shaped link, a dropped one, and torch.distributed (gloo) across two hosts.

Needs root, ip, tc, nft, unshare and nsenter (the ``bridge`` fixture skips with the reason otherwise); the gloo
tests need torch in this Python (they run it inside the namespaces).
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from fleet.fanout import HostState, run_command
from fleet.inventory import Host
from fleet.transport import connect
from tests.netfarm import (
    BridgeNetwork,
    NetfarmError,
    NetNs,
    send,
    start_sink,
    sweep_stale_bridges,
    unavailable,
)
from tests.sshd import IP, REPO, stop_process

SINK_PORT = 5201
SSH_PORT = 22


class Net:
    def __init__(self, farm, bridge):
        self.farm, self.bridge = farm, bridge
        self.a_ns, self.b_ns = bridge.add_namespace("nodea"), bridge.add_namespace("nodeb")
        self.a = farm.add_host("nodea", netns=self.a_ns)
        self.b = farm.add_host("nodeb", netns=self.b_ns)
        self.sink_b = start_sink(self.b_ns, SINK_PORT)
        self.sink_a = start_sink(self.a_ns, SINK_PORT)

    def host(self, name: str) -> Host:
        return Host(name, dict(self.farm.hosts[name].vars))


@pytest.fixture(scope="module")
def net(farm, bridge):
    n = Net(farm, bridge)
    yield n
    stop_process(n.sink_a)
    stop_process(n.sink_b)


@pytest.fixture(autouse=True)
def _healthy_links(net):
    """Every test starts and ends with both links whole, whatever it did."""
    for ns in (net.a_ns, net.b_ns):
        net.bridge.unshape(ns)
        net.bridge.undrop(ns)
    yield
    for ns in (net.a_ns, net.b_ns):
        net.bridge.unshape(ns)
        net.bridge.undrop(ns)


# --------------------------------------------------------------------------- the hosts and SSH


def test_hosts_have_their_own_addresses_on_the_bridge(net):
    subnet = net.bridge.subnet
    assert net.bridge.bridge == f"gfbr{net.bridge.index:04d}" and len(net.bridge.bridge) <= 15
    assert net.a_ns.address == str(subnet.network_address + 2)
    assert net.b_ns.address == str(subnet.network_address + 3)
    assert net.bridge.gateway == str(subnet.network_address + 1)
    for h, ns in ((net.a, net.a_ns), (net.b, net.b_ns)):
        assert (h.address, h.port, h.netns) == (ns.address, SSH_PORT, ns)
        assert h.vars["ansible_host"] == ns.address and h.vars["ansible_port"] == SSH_PORT
        # known_hosts names a port-22 host by its bare address, as ssh and paramiko look it up
        known = net.farm.known_hosts.read_text().splitlines()
        assert any(line.startswith(f"{ns.address} ssh-ed25519 ") for line in known)
        # the root-side veth is on the bridge, up; the other end is eth0 in the namespace
        master = Path(f"/sys/class/net/{ns.veth}/master").resolve().name
        assert master == net.bridge.bridge
        assert Path(f"/sys/class/net/{ns.veth}/operstate").read_text().strip() == "up"
        route = ns.run([IP, "-4", "route", "show", "default"]).stdout.split()
        assert route[:5] == ["default", "via", net.bridge.gateway, "dev", "eth0"]


def test_ssh_to_each_host_through_gpufleets_transport(net):
    command = f"uname -n; {IP} -o -4 addr show dev eth0; echo $SSH_CONNECTION"
    for name, ns in (("nodea", net.a_ns), ("nodeb", net.b_ns)):
        t = connect(net.host(name), net.farm.options())
        try:
            r = t.run(command)
        finally:
            t.close()
        assert r.exit_code == 0, r.stderr
        uname, addr, conn = r.stdout.splitlines()
        assert uname == name
        fields = addr.split()
        assert fields[1:4] == ["eth0", "inet", f"{ns.address}/24"], addr
        client, _, server, port = conn.split()
        # the test process reaches the host over the bridge: from the bridge's address, to the namespace's
        assert (client, server, port) == (net.bridge.gateway, ns.address, str(SSH_PORT))


def test_fanout_reaches_both_hosts(net):
    result = run_command([net.host("nodea"), net.host("nodeb")], "uname -n; cat /etc/hosts", net.farm.options())
    assert {n: r.state for n, r in result.results.items()} == {"nodea": HostState.OK, "nodeb": HostState.OK}
    for name in ("nodea", "nodeb"):
        lines = result[name].value.stdout.splitlines()
        assert lines[0] == name
        # each namespace sees the network's own /etc/hosts: the hosts know each other by name
        assert f"{net.a_ns.address}\tnodea" in lines and f"{net.b_ns.address}\tnodeb" in lines


# --------------------------------------------------------------------------- traffic between the hosts


def test_a_reaches_b_over_the_bridge(net):
    r = send(net.a_ns, net.b_ns.address, SINK_PORT, "hello from nodea")
    assert r["answer"]["bytes"] == 16 and r["answer"]["head"] == "hello from nodea"
    assert r["answer"]["peer"] == net.a_ns.address  # bridged, not routed or NATed: B sees A's own address
    r = send(net.b_ns, "nodea", SINK_PORT, "hello from nodeb")  # by name, through the namespaces' /etc/hosts
    assert r["answer"]["head"] == "hello from nodeb" and r["answer"]["peer"] == net.b_ns.address


def bulk(src: NetNs, dst: NetNs, size: int = 4 << 20) -> float:
    r = send(src, dst.address, SINK_PORT, size, timeout=5)
    assert r["answer"]["bytes"] == size and r["answer"]["sha256"] == r["sent_sha256"]
    return r["mbit_s"]


def test_shaping_slows_the_link_both_ways(net):
    before = max(bulk(net.a_ns, net.b_ns) for _ in range(2))
    net.bridge.shape(net.b_ns, "8mbit")
    qdisc = net.b_ns.run(["tc", "qdisc", "show", "dev", "eth0"]).stdout
    assert "tbf" in qdisc and "rate 8Mbit" in qdisc, qdisc
    into_b = bulk(net.a_ns, net.b_ns)  # the bridge-side veth's qdisc
    out_of_b = bulk(net.b_ns, net.a_ns, 1 << 20)  # eth0's, in B's namespace (1 MiB: a second at 8 Mbit/s)
    net.bridge.unshape(net.b_ns)
    after = max(bulk(net.a_ns, net.b_ns) for _ in range(2))
    print(f"A->B 4 MiB: {before:.0f} Mbit/s; shaped 8mbit: A->B {into_b:.2f}, B->A (1 MiB) {out_of_b:.2f}; "
          f"unshaped again {after:.0f}")
    # measured here: 3800-6800 Mbit/s unshaped (2 vCPUs), 7.7 Mbit/s shaped
    assert before > 200 and after > 200
    assert 4 < into_b < 12 and 4 < out_of_b < 12
    assert "tbf" not in net.b_ns.run(["tc", "qdisc", "show", "dev", "eth0"]).stdout


def test_drop_blackholes_all_but_ssh(net):
    assert "answer" in send(net.a_ns, net.b_ns.address, SINK_PORT, "before", timeout=2)
    net.bridge.drop(net.b_ns, [SSH_PORT])
    r = send(net.a_ns, net.b_ns.address, SINK_PORT, "during", timeout=2)
    assert r.get("error") == "TimeoutError", r  # dropped, not refused: a black hole
    assert r["seconds"] > 1.9, r  # it waited its whole timeout: a black hole, not a refusal
    # and B cannot get out either (its output chain)
    assert send(net.b_ns, net.a_ns.address, SINK_PORT, "out", timeout=2).get("error") == "TimeoutError"
    # while SSH to B still works, a new connection as well as over gpufleet's transport
    result = run_command([net.host("nodeb")], "uname -n", net.farm.options())
    assert result["nodeb"].state is HostState.OK and result["nodeb"].value.stdout.strip() == "nodeb"
    net.bridge.undrop(net.b_ns)
    r = send(net.a_ns, net.b_ns.address, SINK_PORT, "after", timeout=2)
    assert r["answer"]["head"] == "after"


# --------------------------------------------------------------------------- torch.distributed (gloo)

# One rank: init (gloo, tcp:// rendezvous), a warm-up all_reduce; then for each phase, wait for its go file,
# all_reduce a tensor of N floats, check the sum, print one JSON line.  An error prints a JSON line and exits 3.
RANK = r"""
import datetime, json, os, sys, time
rank, init, n, timeout, gate, phases = (int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), float(sys.argv[4]),
                                        sys.argv[5], int(sys.argv[6]))
import torch
import torch.distributed as dist

def say(**kw):
    print(json.dumps({"rank": rank, "host": os.uname().nodename, **kw}), flush=True)

phase = "init"
try:
    t0 = time.monotonic()
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=2,
                            timeout=datetime.timedelta(seconds=timeout))
    x = torch.ones(16)
    dist.all_reduce(x)
    say(phase="init", seconds=time.monotonic() - t0, ok=bool((x == 2).all()))
    for phase in range(phases):
        go = os.path.join(gate, f"go{phase}")
        while not os.path.exists(go):
            time.sleep(0.01)
        x = torch.arange(n, dtype=torch.float32) * (rank + 1)
        t0 = time.monotonic()
        dist.all_reduce(x)
        seconds = time.monotonic() - t0
        say(phase=phase, seconds=seconds, ok=bool(torch.equal(x, torch.arange(n, dtype=torch.float32) * 3)))
    dist.destroy_process_group()
except Exception as e:  # noqa: BLE001 -- the point: report any failure, and exit (never hang in teardown)
    say(phase=phase, error=f"{type(e).__name__}: {e}"[:500])
    sys.stdout.flush()
    os._exit(3)
"""

GLOO_ENV = {"GLOO_SOCKET_IFNAME": "eth0"}


class GlooJob:
    """Two ranks, rank 0 in ``a`` (the rendezvous: its address), rank 1 in ``b``, phases released by the test."""

    port = 29400

    def __init__(self, a: NetNs, b: NetNs, work: Path, n: int, phases: int, timeout: float = 5.0):
        GlooJob.port += 1  # a fresh rendezvous port each job (in A's own port space)
        self.gate = work / f"gate{GlooJob.port}"
        self.gate.mkdir(parents=True)
        self.phases = phases
        env = {**os.environ, **GLOO_ENV}
        init = f"tcp://{a.address}:{GlooJob.port}"
        self.lines: queue.SimpleQueue = queue.SimpleQueue()
        self.procs = []
        for rank, ns in enumerate((a, b)):
            with open(work / f"rank{rank}.log", "a") as log:
                p = ns.popen([sys.executable, "-c", RANK, str(rank), init, str(n), str(timeout), str(self.gate),
                              str(phases)], env=env, stdout=subprocess.PIPE, stderr=log, text=True,
                             start_new_session=True)
            threading.Thread(target=self._read, args=(p,), daemon=True).start()
            self.procs.append(p)

    def _read(self, p: subprocess.Popen) -> None:
        for line in p.stdout:
            self.lines.put(json.loads(line))

    def results(self, count: int = 2, timeout: float = 60) -> list[dict]:
        """The next ``count`` JSON lines (one per rank), by rank; fails after ``timeout`` seconds."""
        out, deadline = [], time.monotonic() + timeout
        while len(out) < count:
            try:
                out.append(self.lines.get(timeout=max(0.01, deadline - time.monotonic())))
            except queue.Empty:
                pytest.fail(f"the gloo ranks said {len(out)} of {count} lines within {timeout}s: {out}")
        return sorted(out, key=lambda r: r["rank"])

    def go(self, phase: int) -> None:
        (self.gate / f"go{phase}").touch()

    def wait(self, timeout: float = 30) -> list[int]:
        codes = []
        for p in self.procs:
            try:
                codes.append(p.wait(timeout))
            except subprocess.TimeoutExpired:
                self.kill()
                pytest.fail(f"a gloo rank still runs {timeout}s on (hung)")
        return codes

    def kill(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(5)


@pytest.fixture
def gloo(net, tmp_path):
    pytest.importorskip("torch")
    jobs: list[GlooJob] = []

    def start(n: int = 1024, phases: int = 1, timeout: float = 5.0) -> GlooJob:
        job = GlooJob(net.a_ns, net.b_ns, tmp_path, n, phases, timeout)
        jobs.append(job)
        return job

    yield start
    for job in jobs:
        job.kill()


def test_gloo_all_reduce_across_two_namespaces(net, gloo):
    job = gloo(n=1000, phases=1)
    ready = job.results()
    assert [(r["host"], r["ok"]) for r in ready] == [("nodea", True), ("nodeb", True)], ready
    job.go(0)
    done = job.results()
    assert [(r["rank"], r["phase"], r["ok"]) for r in done] == [(0, 0, True), (1, 0, True)], done
    assert job.wait() == [0, 0]


def test_gloo_all_reduce_slower_on_a_shaped_link(net, gloo):
    n = 256 * 1024  # 1 MiB of float32: each rank sends and receives about that much
    job = gloo(n=n, phases=2, timeout=30)
    job.results()
    job.go(0)
    healthy = job.results()
    net.bridge.shape(net.b_ns, "8mbit")
    job.go(1)
    shaped = job.results()
    assert job.wait() == [0, 0]
    assert all(r["ok"] for r in healthy + shaped), (healthy, shaped)
    t_healthy, t_shaped = max(r["seconds"] for r in healthy), max(r["seconds"] for r in shaped)
    print(f"gloo all_reduce of 1 MiB, 2 ranks: {t_healthy * 1000:.1f} ms healthy, {t_shaped * 1000:.0f} ms with "
          "nodeb at 8mbit")
    # 1 MiB each way at 8 Mbit/s is ~1.05 s; healthy: milliseconds (measured 5-50 ms)
    assert t_shaped > 0.8, shaped
    assert t_shaped > 10 * t_healthy, (healthy, shaped)


def test_gloo_all_reduce_errors_out_when_a_link_drops(net, gloo):
    timeout = 5.0
    job = gloo(n=1024, phases=1, timeout=timeout)
    assert all(r["ok"] for r in job.results())
    net.bridge.drop(net.b_ns, [SSH_PORT])  # SSH stays up; gloo's connections are black-holed
    t0 = time.monotonic()
    job.go(0)
    failed = job.results(timeout=timeout + 20)
    codes = job.wait(timeout=10)
    elapsed = time.monotonic() - t0
    print(f"gloo all_reduce with nodeb dropped: both ranks failed after {elapsed:.1f}s: "
          f"{[r['error'][-80:] for r in failed]}")
    assert codes == [3, 3]
    assert [r["phase"] for r in failed] == [0, 0]
    for r in failed:
        assert "Timed out" in r["error"], r
    assert elapsed > timeout - 0.5, elapsed  # gloo's own timeout ended it (results() above is only a ceiling)
    # SSH to the dropped host still works: the operator can still reach it to find out
    assert run_command([net.host("nodeb")], "true", net.farm.options())["nodeb"].state is HostState.OK
    net.bridge.undrop(net.b_ns)
    again = gloo(n=1024, phases=1, timeout=timeout)
    again.results()
    again.go(0)
    assert all(r["ok"] for r in again.results()) and again.wait() == [0, 0]


def test_gloo_rendezvous_errors_out_when_a_link_is_down_from_the_start(net, gloo):
    timeout = 5.0
    net.bridge.drop(net.b_ns, [SSH_PORT])
    t0 = time.monotonic()
    job = gloo(n=16, phases=1, timeout=timeout)
    failed = job.results(timeout=timeout + 30)
    codes = job.wait(timeout=10)
    elapsed = time.monotonic() - t0
    print(f"gloo rendezvous with nodeb dropped: failed after {elapsed:.1f}s: {[r['error'][:90] for r in failed]}")
    assert codes == [3, 3] and [r["phase"] for r in failed] == ["init", "init"], failed
    assert "timed out" in failed[1]["error"].lower(), failed  # rank 1 cannot reach the store on nodea


# --------------------------------------------------------------------------- setup and cleanup


def _links(prefix: str) -> set[str]:
    return {n for n in os.listdir("/sys/class/net") if n.startswith(prefix)}


def test_a_four_host_network_with_sshds_is_made_and_removed_completely(farm, tmp_path):
    reason = unavailable()
    if reason:
        pytest.skip(reason)
    t0 = time.monotonic()
    network = BridgeNetwork(tmp_path / "net4")
    nss = [network.add_namespace(f"quad{i}") for i in range(4)]
    hosts = [farm.add_host(f"quad{i}", netns=ns) for i, ns in enumerate(nss)]
    setup = time.monotonic() - t0
    result = run_command([Host(h.name, dict(h.vars)) for h in hosts], "uname -n", farm.options())
    assert {n: r.value.stdout.strip() for n, r in result.results.items()} == {f"quad{i}": f"quad{i}" for i in range(4)}
    bridge, veths = network.bridge, [ns.veth for ns in nss]
    pids = [p for ns in nss for p in ns.pids()]
    assert len(pids) >= 8  # a holder and an sshd in each
    assert _links(bridge) == {bridge} and all(os.path.exists(f"/sys/class/net/{v}") for v in veths)
    t1 = time.monotonic()
    network.close()
    teardown = time.monotonic() - t1
    print(f"4 hosts on a bridge: set up in {setup:.2f}s (bridge {network.setup_seconds:.2f}s, with 4 sshds), "
          f"removed in {teardown:.2f}s")
    assert not _links(bridge) and not any(os.path.exists(f"/sys/class/net/{v}") for v in veths)
    assert not [p for p in pids if os.path.exists(f"/proc/{p}") and _not_zombie(p)]
    network.close()  # idempotent
    for h in hosts:
        h.stop()


def _not_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_a_failed_setup_leaves_nothing_behind(bridge, tmp_path, monkeypatch):
    # a subnet in use: refused before anything is made
    with pytest.raises(NetfarmError, match="in use"):
        BridgeNetwork(tmp_path / "taken", subnet_index=bridge.index)
    # a namespace whose setup fails half-way (its holder and veth made, its route not)
    network = BridgeNetwork(tmp_path / "half")
    real_run = NetNs.run

    def failing_run(self, argv, **kw):
        if "route" in argv:
            raise NetfarmError("simulated failure")
        return real_run(self, argv, **kw)

    monkeypatch.setattr(NetNs, "run", failing_run)
    with pytest.raises(NetfarmError, match="simulated"):
        network.add_namespace("half")
    ns = network["half"]
    holder = ns.pid
    assert os.path.exists(f"/sys/class/net/{ns.veth}")
    network.close()
    assert not _links(network.bridge) and not os.path.exists(f"/sys/class/net/{ns.veth}")
    assert not _not_zombie(holder)


EXITING = r"""
import sys, time
sys.path.insert(0, sys.argv[1])
from pathlib import Path
from tests.netfarm import BridgeNetwork
network = BridgeNetwork(Path(sys.argv[2]))
ns = network.add_namespace("leftover")
print(network.bridge, ns.veth, ns.pid, flush=True)
if sys.argv[3] == "hang":
    time.sleep(600)
"""


def test_atexit_and_a_killed_run_leave_nothing_behind(tmp_path):
    reason = unavailable()
    if reason:
        pytest.skip(reason)
    # a run that exits without close(): atexit removes its bridge, veth and namespace
    r = subprocess.run([sys.executable, "-c", EXITING, str(REPO), str(tmp_path / "exit"), "exit"],
                       capture_output=True, text=True, timeout=60)
    bridge, veth, holder = r.stdout.split()
    assert r.returncode == 0, r.stderr
    assert not os.path.exists(f"/sys/class/net/{bridge}") and not os.path.exists(f"/sys/class/net/{veth}")
    assert not _not_zombie(int(holder))
    # a SIGKILLed run: its namespace's holder dies with it (PR_SET_PDEATHSIG) and the next run sweeps its bridge
    p = subprocess.Popen([sys.executable, "-c", EXITING, str(REPO), str(tmp_path / "kill"), "hang"],
                         stdout=subprocess.PIPE, text=True)
    bridge, veth, holder = p.stdout.readline().split()
    p.kill()
    p.wait(10)
    deadline = time.monotonic() + 10
    while _not_zombie(int(holder)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _not_zombie(int(holder))
    assert os.path.exists(f"/sys/class/net/{bridge}")
    assert bridge in sweep_stale_bridges()
    assert not os.path.exists(f"/sys/class/net/{bridge}")
    deadline = time.monotonic() + 10  # the veth goes with its namespace, which the kernel tears down asynchronously
    while os.path.exists(f"/sys/class/net/{veth}") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not os.path.exists(f"/sys/class/net/{veth}")
