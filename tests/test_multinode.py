"""Multi-node runs, the pure parts: each node's own report, the rendezvous on addresses, a crashed member.

The ``ip`` and resolver lines are this build machine's own output (``ip -o route get``, ``ip -o addr show``,
``getent ahosts``), as :func:`fleet.runs.node.preflight_command` collects them.
"""

from __future__ import annotations

import json

from fleet.inventory import Host
from fleet.outcome import HostState
from fleet.runs.node import (
    Preflight, VerifySettings, classify, crashed_ranks, hostname_note, parse_preflight, preflight_command, rdzv_addr,
    route_interface, stopped_members, torchrun_argv,
)
from fleet.runs.record import HostRun, Member
from tests.report_builder import arrived, node_report

ADDRS = """\
1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever preferred_lft forever
1: lo    inet6 ::1/128 scope host \\       valid_lft forever preferred_lft forever
4: eth0    inet 192.0.2.2/24 brd 192.0.2.255 scope global eth0\\       valid_lft forever preferred_lft forever
4: eth0    inet6 fd00::2/64 scope global nodad \\       valid_lft forever preferred_lft forever
"""
ROUTE_AWAY = "10.1.2.3 via 192.0.2.1 dev eth0 src 192.0.2.2 uid 0 \\    cache "
ROUTE_LOCAL = "local 192.0.2.2 dev lo src 192.0.2.2 uid 0 \\    cache <local> "
ROUTE_LOOPBACK = "local 127.0.0.5 dev lo src 127.0.0.1 uid 0 \\    cache <local> "


def test_the_interface_towards_the_rendezvous():
    assert route_interface(ROUTE_AWAY, ADDRS, "192.0.2.2") == "eth0"
    # the rendezvous is on this node: the route is over lo, but peers reach the interface holding the address
    assert route_interface(ROUTE_LOCAL, ADDRS, "192.0.2.2") == "eth0"
    # every node on loopback (the test hosts): lo it is
    assert route_interface(ROUTE_LOOPBACK, ADDRS, "127.0.0.5") == "lo"
    assert route_interface("", ADDRS, "192.0.2.2") == ""  # no `ip` on the node: nothing is set
    assert route_interface("garbage dev", "", "x") == ""


def test_the_preflight_output_is_parsed():
    text = ("vm\n--gpufleet--\n127.0.0.1       STREAM vm\n--gpufleet--\n" + ROUTE_LOCAL + "\n--gpufleet--\n" + ADDRS)
    assert parse_preflight(text, "192.0.2.2") == Preflight("vm", "127.0.0.1", "eth0")
    assert parse_preflight("\n--gpufleet--\n--gpufleet--\n--gpufleet--\n", "192.0.2.2") == Preflight("", "", "")
    assert parse_preflight("", "192.0.2.2") == Preflight("", "", "")
    assert "ip -o route get 10.0.0.7" in preflight_command("10.0.0.7")


def test_a_host_name_resolving_to_loopback_is_named_before_anything_hangs():
    found = Preflight("node7", "127.0.1.1", "eth0")
    assert hostname_note("b", found, "10.0.0.7") == \
        "b: host name 'node7' resolves to 127.0.1.1; using 10.0.0.7 (the address gpufleet connects to)"
    assert hostname_note("b", Preflight("node7", "", ""), "10.0.0.7") == \
        "b: host name 'node7' does not resolve; using 10.0.0.7 (the address gpufleet connects to)"
    assert hostname_note("b", Preflight("node7", "10.0.0.7", "eth0"), "10.0.0.7") == ""
    assert hostname_note("b", found, "127.0.0.3") == ""  # every node on loopback: nothing to say
    assert hostname_note("b", Preflight("", "", ""), "10.0.0.7") == ""  # nothing learnt


def test_rendezvous_addresses_and_torchruns_line():
    assert rdzv_addr(Host("b", {"ansible_host": "10.0.0.7"})) == "10.0.0.7"
    assert rdzv_addr(Host("b", {"ansible_host": "10.0.0.7", "gpufleet_rdzv_addr": "172.16.0.7"})) == "172.16.0.7"
    s = VerifySettings(run_id="r1", checks=("compute",))
    argv = torchrun_argv("py", 1, "out.json", s, {"nnodes": 2, "node_rank": 1, "endpoint": "10.0.0.6:29400",
                                                  "local_addr": "10.0.0.7"})
    assert argv[3:10] == ["--nnodes=2", "--node_rank=1", "--rdzv_backend=c10d", "--rdzv_endpoint=10.0.0.6:29400",
                          "--rdzv_id=r1", "--rdzv_conf=is_host=false", "--local_addr=10.0.0.7"]


TORCHRUN_CRASH = """\
[rank1]: RuntimeError: boom
E1207 03:10:00.000000 1 torch/distributed/elastic/multiprocessing/api.py:1] failed (exitcode: 1)
Root Cause (first observed failure):
[0]:
  time      : 2026-12-07_03:10:00
  host      : vm
  rank      : 3 (local_rank: 1)
  exitcode  : 1 (pid: 4242)
"""
TORCHRUN_STOPPED = """\
Root Cause (first observed failure):
[0]:
  host      : vm
  rank      : 0 (local_rank: 0)
  exitcode  : -15 (pid: 4243)
"""


def _aborted(host):
    return arrived(node_report(host, [], {}, checks=[
        {"name": "run", "status": "error", "message": "run aborted: Terminated: terminated by SIGTERM"}]))


def test_a_crashed_member_fails_and_the_member_it_stopped_says_so():
    assert crashed_ranks(TORCHRUN_CRASH) == [3] and crashed_ranks("no summary") == []
    crashed = HostRun("b", exit_code=1, output=TORCHRUN_CRASH, member=Member(1, 2, "10.0.0.6:29400"))
    classify(crashed, 60)
    assert crashed.state is HostState.FAILED and crashed.status == "fail"
    a = _aborted("a")
    a.exit_code, a.member = 1, Member(0, 2, "10.0.0.6:29400")
    classify(a, 60)
    stopped_members([a, crashed])
    assert (a.state, a.status, a.message) == (HostState.OK, "error", "stopped: rank 3 on b exited")
    assert crashed.status == "fail" and crashed.message.startswith("verify exited 1 and wrote no report")


def test_a_member_stopped_before_it_wrote_a_report_is_interrupted_not_failed():
    crashed = HostRun("b", exit_code=1, output=TORCHRUN_CRASH)
    stopped = HostRun("a", exit_code=1, output=TORCHRUN_STOPPED)
    for r in (crashed, stopped):
        classify(r, 60)
    stopped_members([stopped, crashed])
    assert (stopped.state, stopped.status) == (HostState.INTERRUPTED, "error")
    assert stopped.message.startswith("stopped: rank 3 on b exited (verify exited 1 and wrote no report")
    assert crashed.status == "fail"


def test_healthy_and_failing_members_are_left_as_their_reports_say():
    good = arrived(node_report("a", [], {}))
    bad = arrived(node_report("b", [], {}, checks=[
        {"name": "compute/matmul_correct/fp32:cpu1", "status": "fail", "message": "max error 1 sigma"}]))
    for r in (good, bad):
        r.exit_code = 0
        classify(r, 60)
    stopped_members([good, bad])
    assert (good.status, good.message, bad.status, bad.message) == ("pass", "", "fail", "")
    both = [HostRun("a", exit_code=1, output=TORCHRUN_CRASH), HostRun("b", exit_code=1, output=TORCHRUN_CRASH)]
    for r in both:
        classify(r, 60)
    stopped_members(both)  # both crashed: both fail, neither was stopped by the other
    assert [r.status for r in both] == ["fail", "fail"]


def test_a_member_without_a_report_is_no_longer_passed_on_its_exit_status():
    r = HostRun("b", exit_code=0, output="", member=Member(1, 2, "10.0.0.6:29400"))
    classify(r, 60)
    assert r.state is HostState.FAILED and r.message == "verify exited 0 and wrote no report"


def _rank(rank, node, checks, metrics=None):
    scoped = [(scope, {"name": name, "status": status, "message": ""}) for scope, name, status in checks]
    return (metrics or {}, scoped, {"rank": rank, "local_rank": rank % 2, "node": node, "host": "h", "device": "x"})


def test_each_node_reports_its_own_ranks_and_the_world_checks():
    from verify.runner import merge, node_share

    ranks = [
        _rank(0, 0, [("rank", "env/cuda", "pass"), ("world", "collectives/allreduce_correct", "pass"),
                     ("device", "compute/m:cpu0", "pass")], {"m:cpu0": 1.0, "allreduce/busbw_gbps": 2.0}),
        _rank(1, 0, [("rank", "env/cuda", "pass"), ("world", "collectives/allreduce_correct", "pass"),
                     ("device", "compute/m:cpu1", "pass")], {"m:cpu1": 1.0}),
        _rank(2, 1, [("rank", "env/cuda", "pass"), ("world", "collectives/allreduce_correct", "pass"),
                     ("device", "compute/m:cpu2", "fail")], {"m:cpu2": 0.5}),
        _rank(3, 1, [("rank", "env/cuda", "warn"), ("world", "collectives/allreduce_correct", "pass"),
                     ("device", "compute/m:cpu3", "pass")], {"m:cpu3": 1.0}),
    ]
    node1 = node_share(list(reversed(ranks)), 1)
    assert [e["rank"] for _, _, e in node1] == [2, 3]
    metrics, checks = merge([(m, s) for m, s, _ in node1], [2, 3])
    assert metrics == {"m:cpu2": 0.5, "m:cpu3": 1.0}
    assert [(c["name"], c["status"]) for c in checks] == [
        ("env/cuda", "pass"), ("collectives/allreduce_correct", "pass"), ("compute/m:cpu2", "fail"),
        ("env/cuda:rank3", "warn"), ("compute/m:cpu3", "pass")]
    node0 = node_share(ranks, 0)
    metrics, checks = merge([(m, s) for m, s, _ in node0], [0, 1])
    assert metrics == {"m:cpu0": 1.0, "allreduce/busbw_gbps": 2.0, "m:cpu1": 1.0}
    assert [c["status"] for c in checks] == ["pass"] * 4
    assert json.dumps(checks)  # plain JSON
