"""``verify --via slurm --multinode``'s pure parts (fleet/slurm/multinode.py): the members, the rendezvous on
addresses, the job's options and script as exact strings (the node script also run by the real ``sh``), the
members' meeting point and the job's deadlines against a scripted Slurm.  The real Slurm runs are in
tests/test_slurm_e2e.py."""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path

import pytest

from fleet.inventory.model import Host
from fleet.outcome import HostError, TimedOut
from fleet.runs.node import VerifySettings
from fleet.slurm.client import Result, SlurmClient
from fleet.slurm.jobs import Busy, NotScheduled, Route, Unavailable
from fleet.slurm.multinode import (
    Gang, JobEnd, JobWatch, exit_status, job_options, job_script, left_out, members, node_branch, node_script,
    parse_node_addrs, rendezvous, shared_dir_of, too_few,
)

DATA = Path(__file__).resolve().parent / "data" / "slurm"

ROUTES = {"a": Route("slurm", "gpu1", "node gpu1 is idle"), "b": Route("busy", "gpu2", "node gpu2 is allocated"),
          "c": Route("slurm", "gpu3", "node gpu3 is idle"),
          "d": Route("ssh", "gpu4", "drained by gpufleet (gpufleet: x): checked over SSH"),
          "e": Route("unavailable", "gpu5", "node gpu5 is idle+drain: left alone"),
          "f": Route("unknown", "gpu9", "Slurm has no node 'gpu9' (set gpufleet_slurm_node)"),
          "g": Route("recheck", "gpu6", "drained by gpufleet (gpufleet: x): re-checked in reservation "
                                        "gpufleet-recheck", "gpufleet: x")}
HOSTS = [Host(n, {"ansible_host": f"10.0.0.{i}"}) for i, n in enumerate("abcdef", start=1)]


def test_the_members_are_the_hosts_a_single_node_run_would_submit_in_inventory_order():
    assert [h.name for h in members(HOSTS, ROUTES)] == ["a", "c"]


def test_a_host_left_out_keeps_its_state_and_a_node_drained_by_gpufleet_is_unavailable():
    errors = {n: left_out(ROUTES[n]) for n in "bdefg"}
    assert {n: (type(e), str(e)) for n, e in errors.items()} == {
        "b": (Busy, "node gpu2 is allocated"),
        "d": (Unavailable, "node gpu4 is drained by gpufleet: a drained node takes no job, so it is not in the "
                           "multi-node job (re-check it with a run without --multinode)"),
        "e": (Unavailable, "node gpu5 is idle+drain: left alone"),
        "f": (HostError, "Slurm has no node 'gpu9' (set gpufleet_slurm_node)"),
        "g": (Unavailable, "node gpu6 is drained by gpufleet: a drained node takes no job, so it is not in the "
                           "multi-node job (re-check it with a run without --multinode)"),
    }


def test_fewer_than_two_nodes_is_said_with_what_became_of_the_others():
    assert too_few(["a"], ROUTES, HOSTS[:3]) == ("--multinode needs at least 2 Slurm nodes: only 1 node can join "
                                                 "(b: busy, c: slurm): no job submitted")
    assert too_few([], ROUTES, HOSTS[1:2]) == ("--multinode needs at least 2 Slurm nodes: no node can join "
                                               "(b: busy): no job submitted")


def test_node_addresses_are_taken_only_where_slurm_gives_an_ip_address():
    text = ("NodeName=gpu1 Arch=x86_64 CoresPerSocket=2 NodeAddr=127.0.1.1 NodeHostName=gpu1 Port=6818\n"
            "NodeName=gpu2 Arch=x86_64 NodeAddr=gpu2 NodeHostName=gpu2\n"
            "NodeName=gpu3 NodeAddr=fd00::3 NodeHostName=gpu3 State=IDLE\n")
    assert parse_node_addrs(text) == {"gpu1": "127.0.1.1", "gpu3": "fd00::3"}


def test_the_suites_slurm_gives_each_node_its_address():
    """scontrol's lines from the suite's cluster (tests/slurmcluster.py: NodeAddr=127.0.1.I)."""
    addrs = parse_node_addrs((DATA / "scontrol-o-show-node.txt").read_text())
    assert addrs == {"gpu1": "127.0.1.1", "gpu2": "127.0.1.2", "gpu3": "127.0.1.3"}


def test_the_rendezvous_is_on_the_first_members_address_each_node_its_own():
    hosts = [Host("a", {"ansible_host": "10.0.0.1"}), Host("c", {"ansible_host": "10.0.0.3",
                                                                  "gpufleet_rdzv_addr": "192.168.0.3"}),
             Host("g", {"ansible_host": "10.0.0.7"})]
    nodes = {"a": "gpu1", "c": "gpu3", "g": "gpu7"}
    assert rendezvous(hosts, nodes, {"gpu1": "127.0.1.1", "gpu7": "127.0.1.7"}, 29500) == {
        "a": {"nnodes": 3, "node_rank": 0, "endpoint": "127.0.1.1:29500", "local_addr": "127.0.1.1"},
        "c": {"nnodes": 3, "node_rank": 1, "endpoint": "127.0.1.1:29500", "local_addr": "192.168.0.3"},
        "g": {"nnodes": 3, "node_rank": 2, "endpoint": "127.0.1.1:29500", "local_addr": "127.0.1.7"},
    }
    # Slurm gives no address: the inventory's (gpufleet_rdzv_addr, else the SSH address)
    assert rendezvous(hosts[:2], nodes, {}, 29400)["c"]["endpoint"] == "10.0.0.1:29400"


def test_the_jobs_options_span_the_nodes_exclusively_with_a_time_limit_past_the_node_guard():
    s = VerifySettings(run_id="20261207T063000Z", timeout=240)
    assert job_options(["gpu1", "gpu3"], s, "gpu", None, "ops", ("--reservation=maint",), "/sh/r/slurm-%j.out") == [
        "--nodes=2", "--nodelist=gpu1,gpu3", "--exclusive", "--ntasks-per-node=1",
        "--job-name=gpufleet-verify-20261207T063000Z", "--time=6", "--output=/sh/r/slurm-%j.out",
        "--open-mode=append", "--partition=gpu", "--account=ops", "--reservation=maint"]
    assert "--time=2" in job_options(["a", "b"], VerifySettings(timeout=30), None, None, None, (), "x")


def test_the_node_script_and_the_job_script_exactly():
    branch = node_branch("gpu 1", "cd /opt/v && echo $$ > pid", "/sh/r/sl-1")
    assert branch == ("'gpu 1') exec >>/sh/r/sl-1/output.log 2>&1; sh -c 'cd /opt/v && echo $$ > pid'; rc=$?; "
                      "echo \"$rc\" >/sh/r/sl-1/exit; exit \"$rc\";;")
    script = node_script(["gpu1) true;;", "gpu2) false;;"])
    assert script == ('case "$SLURMD_NODENAME" in\n'
                      'gpu1) true;;\n'
                      'gpu2) false;;\n'
                      '*) echo "gpufleet: node $SLURMD_NODENAME is not in this run" >&2; exit 2;;\n'
                      'esac')
    assert job_script(2, "case x in\n*) :;;\nesac") == (
        "exec srun --nodes=2 --ntasks=2 --ntasks-per-node=1 --kill-on-bad-exit=0 sh -c 'case x in\n*) :;;\nesac'")


def test_each_node_runs_its_own_branch_under_the_real_sh(tmp_path):
    """What srun's task runs, run by sh with each node's name: its line's output and exit status land in its
    own directory; a node not in the run exits 2 and says so."""
    dirs = {n: tmp_path / n for n in ("sl-1", "sl-2")}
    for d in dirs.values():
        d.mkdir()
    lines = {"sl-1": "echo \"one's $SLURMD_NODENAME\"; exit 0", "sl-2": "echo two; exit 3"}
    script = node_script([node_branch(f"gpu{i}", lines[h], str(dirs[h])) for i, h in enumerate(dirs, start=1)])
    runs = {node: subprocess.run(["sh", "-c", script], env={"SLURMD_NODENAME": node, "PATH": "/usr/bin:/bin"},
                                 capture_output=True, text=True) for node in ("gpu1", "gpu2", "gpu9")}
    assert {n: r.returncode for n, r in runs.items()} == {"gpu1": 0, "gpu2": 3, "gpu9": 2}
    assert (dirs["sl-1"] / "output.log").read_text() == "one's gpu1\n"
    assert (dirs["sl-1"] / "exit").read_text() == "0\n"
    assert (dirs["sl-2"] / "output.log").read_text() == "two\n"
    assert (dirs["sl-2"] / "exit").read_text() == "3\n"
    assert runs["gpu9"].stderr == "gpufleet: node gpu9 is not in this run\n"
    assert runs["gpu1"].stdout == runs["gpu2"].stdout == ""  # all of it in the node's own log


def test_exit_status_file():
    assert [exit_status(b) for b in (b"0\n", b"124\n", b"", None, b"x")] == [0, 124, None, None, None]


def test_shared_dir_of_a_host():
    assert shared_dir_of("/shared/gpufleet", "R1", "sl-1") == "/shared/gpufleet/R1/sl-1"


def test_the_last_member_to_arrive_submits_once_and_everyone_gets_the_same_end():
    submitted = []

    def submit(branches):
        submitted.append(branches)
        return JobEnd("42", {"JobState": "COMPLETED"})

    gang = Gang(["a", "b", "c"], submit)
    got = {}
    threads = [threading.Thread(target=lambda n=n: got.__setitem__(n, gang.arrive(n, f"{n}) :;;")))
               for n in ("c", "a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)  # a ceiling: they end when the last one arrives
    assert submitted == [["a) :;;", "b) :;;", "c) :;;"]]  # member order, not arrival order
    assert {n: e.job for n, e in got.items()} == {"a": "42", "b": "42", "c": "42"}


def test_a_member_that_could_not_be_prepared_means_no_job():
    gang = Gang(["a", "b"], lambda branches: pytest.fail("submitted"))
    got = {}
    t = threading.Thread(target=lambda: got.__setitem__("a", gang.arrive("a", "a) :;;")))
    t.start()
    got["b"] = gang.arrive("b", None, "push failed: no space left on device")
    t.join(60)
    assert {n: e.error for n, e in got.items()} == {
        n: (HostError, "no job submitted: a member could not be prepared (b: push failed: no space left on device)")
        for n in "ab"}


class ScriptedSlurm:
    """A runner: sbatch prints job 9; squeue answers its states in turn (the last repeated); scontrol its record in
    the state squeue last gave; every command recorded."""

    def __init__(self, states):
        self.states, self.state, self.calls = list(states), "", []

    def __call__(self, argv, timeout):
        self.calls.append(argv)
        if argv[0] == "sbatch":
            return Result(0, "9\n", "")
        if argv[0] == "squeue":
            self.state = self.states.pop(0) if len(self.states) > 1 else self.states[0]
            return Result(0, f"9|{self.state}|Resources\n", "")
        if argv[0] == "scontrol":
            return Result(0, f"JobId=9 JobState={self.state} Reason=None ExitCode=0:0\n", "")
        return Result(0, "", "")


def _watch(runner, pending_s=60.0, timeout=100.0):
    ticks = iter(range(0, 100000, 10))  # every poll, ten seconds pass
    return JobWatch(SlurmClient(runner), VerifySettings(timeout=timeout), pending_s, clock=lambda: next(ticks),
                    sleep=lambda _: None)


def test_the_job_runs_to_its_end_with_one_squeue_per_poll():
    runner = ScriptedSlurm(["PENDING", "RUNNING", "RUNNING", "COMPLETED"])
    end = _watch(runner).run(["--nodes=2"], "exec srun true")
    assert (end.job, end.info["JobState"], end.error) == ("9", "COMPLETED", None)
    assert runner.calls[0] == ["sbatch", "--parsable", "--nodes=2", "--wrap=exec srun true"]
    assert [c[0] for c in runner.calls[1:]] == ["squeue"] * 4 + ["scontrol"]
    assert runner.calls[1] == ["squeue", "--noheader", "--states=all", "--jobs=9", "--format=%i|%T|%r"]


def test_a_job_pending_past_its_deadline_is_cancelled_and_not_scheduled():
    runner = ScriptedSlurm(["PENDING"])
    end = _watch(runner).run([], "x")
    assert end.error == (NotScheduled, "Slurm job 9 still pending after 60 s (Resources): cancelled")
    assert runner.calls[-1] == ["scancel", "9"]


def test_a_job_running_past_the_timeout_is_cancelled_and_timed_out():
    runner = ScriptedSlurm(["RUNNING"])
    end = _watch(runner, timeout=100).run([], "x")
    assert end.error == (TimedOut, "Slurm job 9 ran past 100 s: cancelled")
    assert runner.calls[-1] == ["scancel", "9"] and runner.calls.count(["scancel", "9"]) == 1


def test_ctrl_c_before_submission_submits_nothing_and_after_it_cancels_once():
    runner = ScriptedSlurm(["RUNNING"])
    w = _watch(runner)
    w.cancel()
    assert w.run([], "x").error == (HostError, "interrupted before the job was submitted") and runner.calls == []
    runner = ScriptedSlurm(["RUNNING", "CANCELLED"])
    w = _watch(runner)
    w.job = "9"
    w.cancel()
    w.cancel()
    assert runner.calls == [["scancel", "9"]]


def test_members_that_never_arrive_are_abandoned_and_the_others_released():
    gang = Gang(["a", "b"], lambda branches: pytest.fail("submitted"))
    got = {}
    t = threading.Thread(target=lambda: got.__setitem__("a", gang.arrive("a", "a) :;;")))
    t.start()
    gang.abandon("interrupted before every member was prepared")
    t.join(60)
    assert got["a"].error == (HostError, "interrupted before every member was prepared")


def test_a_member_the_fan_out_cannot_start_is_dropped_before_the_others_arrive():
    """A member whose inventory entry cannot be connected to never runs its task (fleet.fanout): it is dropped up
    front, so the last member to arrive settles the run without it."""
    gang = Gang(["a", "b"], lambda branches: pytest.fail("submitted"))
    gang.dropped["b"] = "ansible_port: 'x' is not a port number"
    assert gang.arrive("a", "a) :;;").error == (
        HostError, "no job submitted: a member could not be prepared (b: ansible_port: 'x' is not a port number)")


def test_via_slurm_takes_multinode():
    from fleet.options import slurm_settings
    from fleet.slurm.jobs import SlurmSettings

    assert slurm_settings("slurm", "/shared/gpufleet", "gpu", None, None, "--reservation=r", False, True) == \
        SlurmSettings("/shared/gpufleet", "gpu", None, None, ("--reservation=r",), False)


def test_pairwise_as_jobs_leaves_out_each_host_whose_node_takes_no_job_in_its_state():
    """``pair_runner`` on recorded ``scontrol -o show node`` output: an administrator's drain, a busy node, a node
    gpufleet drained and a node Slurm does not know are never paired, each with its state; with one node left,
    nothing is paired and it says why."""
    from fleet.slurm.jobs import SlurmSettings
    from fleet.slurm.multinode import pair_runner

    text = (DATA / "scontrol-o-show-node.txt").read_text()
    hosts = [Host(f"h{i}", {"gpufleet_slurm_node": f"gpu{i}"}) for i in (1, 2, 3, 9)]
    runner = pair_runner(SlurmClient(lambda argv, timeout: Result(0, text, "")), SlurmSettings("/shared"), hosts)
    assert runner.via == "slurm"
    assert {h: (type(e), str(e)) for h, e in runner.left_out.items()} == {
        "h1": (Unavailable, 'node gpu1 is idle+drain ("maintenance window" by root): left alone'),
        "h2": (Busy, "node gpu2 is allocated (running jobs): not checked; --wait queues behind them"),
        "h3": (Unavailable, "node gpu3 is drained by gpufleet: a drained node takes no job, so it is not in the "
                            "multi-node job (re-check it with a run without --multinode)"),
        "h9": (HostError, "Slurm has no node 'gpu9' (set gpufleet_slurm_node)")}
    idle = text.replace("State=ALLOCATED", "State=IDLE")
    runner = pair_runner(SlurmClient(lambda argv, timeout: Result(0, idle, "")), SlurmSettings("/shared"), hosts[:2])
    assert {h: (type(e), str(e)) for h, e in runner.left_out.items()} == {
        "h1": (Unavailable, 'node gpu1 is idle+drain ("maintenance window" by root): left alone'),
        "h2": (HostError, "--pairwise needs at least 2 Slurm nodes: only 1 node can join (h1: unavailable): no job "
                          "submitted")}
