"""Slurm's node states parsed from real `scontrol -o show node` output, and slurm-sync's plan (pure): exact actions."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleet.slurm.jobs import route
from fleet.inventory.model import Host
from fleet.slurm.nodes import SlurmNode, parse_show_node
from fleet.slurm.sync import drain_reason, max_drain_count, plan, render

DATA = Path(__file__).resolve().parent / "data" / "slurm"


@pytest.fixture(scope="module")
def nodes():
    return parse_show_node((DATA / "scontrol-o-show-node.txt").read_text())


def test_states_and_reasons_from_real_output(nodes):
    assert sorted(nodes) == ["gpu1", "gpu2", "gpu3"]
    assert nodes["gpu1"] == SlurmNode("gpu1", "IDLE+DRAIN", "maintenance window", "root", "2026-11-23T16:37:01")
    assert (nodes["gpu1"].drained, nodes["gpu1"].ours, nodes["gpu1"].busy) == (True, False, False)
    assert (nodes["gpu2"].state, nodes["gpu2"].busy, nodes["gpu2"].drained, nodes["gpu2"].reason) == (
        "ALLOCATED", True, False, "")
    assert nodes["gpu3"].reason == "gpufleet: ecc:gpu1 (run 20261123T020000Z)" and nodes["gpu3"].ours


def test_down_and_draining_states():
    assert SlurmNode("n", "DOWN+NOT_RESPONDING").down
    assert SlurmNode("n", "IDLE*").base == "IDLE"
    draining = SlurmNode("n", "MIXED+DRAIN", "gpufleet: xid (run r)")
    assert draining.busy and draining.drained and draining.ours


def summary(statuses: dict, **extra) -> dict:
    hosts = {}
    for h, status in statuses.items():
        hosts[h] = {"status": status, "state": "ok" if status in ("pass", "warn", "fail") else "unreachable",
                    "failing_checks": [{"name": "compute/matmul/bf16", "status": "fail", "message": "wrong"}]
                    if status == "fail" else [], "message": ""}
        hosts[h].update(extra.get(h, {}))
    return {"run_id": "20261123T020000Z", "hosts": hosts}


def acts(p) -> dict:
    return {a.host: a.action for a in p.actions}


def test_plan_drains_failing_leaves_others_and_resumes_earned(nodes):
    nodes = dict(nodes, gpu4=SlurmNode("gpu4", "IDLE"), gpu5=SlurmNode("gpu5", "IDLE"),
                 gpu6=SlurmNode("gpu6", "IDLE+DRAIN", "gpufleet: xid (run x)"))
    s = summary({"gpu1": "fail", "gpu2": "pass", "gpu3": "pass", "gpu4": "fail", "gpu5": "unreachable",
                 "gpu6": "pass", "ghost": "fail"})
    p = plan(s, {}, nodes, {"gpu3": 2, "gpu6": 1}, resume_after=2, max_drain=5)
    assert acts(p) == {"gpu1": "none", "gpu2": "none", "gpu3": "resume", "gpu4": "drain", "gpu5": "none",
                       "gpu6": "none", "ghost": "none"}
    why = {a.host: a.why for a in p.actions}
    assert why["gpu1"] == 'left alone: idle+drain ("maintenance window" by root), not gpufleet\'s'
    assert why["gpu5"].startswith("not judged (unreachable")
    assert why["gpu6"] == "passing, 1 of 2 passing runs in a row needed to resume"
    assert p.drains[0].reason == "gpufleet: compute/matmul/bf16 (run 20261123T020000Z)"
    assert p.refused is None
    text = render(p, applied=False)
    assert text.startswith("slurm-sync for run 20261123T020000Z: 1 to drain, 1 to resume (dry run: --apply to do it)")


def test_already_drained_by_gpufleet_is_left_as_it_is(nodes):
    p = plan(summary({"gpu3": "fail"}), {}, nodes, {}, max_drain=1)
    assert acts(p) == {"gpu3": "none"} and p.actions[0].why.startswith("already drained by gpufleet")


def test_too_many_drains_drains_nothing_and_says_why():
    nodes = {f"n{i}": SlurmNode(f"n{i}", "IDLE") for i in range(3)}
    p = plan(summary({"n0": "fail", "n1": "fail", "n2": "pass"}), {}, nodes, {}, max_drain=1)
    assert len(p.drains) == 2 and p.refused.startswith("2 nodes would be drained, more than --max-drain allows (1)")
    assert "drain refused (see below)" in render(p, applied=False)
    assert render(p, applied=False).startswith("slurm-sync for run 20261123T020000Z: 0 to drain")


def test_straggler_or_regression_is_a_failure_named_in_the_reason():
    # judged for real: n0's own checks pass, its gpu3 is at half its baseline; the verdict fails it, sync reads that
    from fleet.runs.verdict import judge
    from tests.report_builder import arrived, node_report

    gpus = ["NVIDIA H100 80GB HBM3"] * 4
    runs = [arrived(node_report("n0", gpus, {f"matmul/bf16/tflops:gpu{i}": 350.0 if i == 3 else 700.0
                                             for i in range(4)}))]
    baseline = {"threshold": 0.9, "hosts": {"n0": {"matmul/bf16/tflops:gpu3": {"value": 700.0, "runs": 3}}}}
    s = judge(runs, {"run_id": "20261123T020000Z", "baseline": baseline}, reference={})
    assert s["hosts"]["n0"]["status"] == "fail" and [r["kind"] for r in s["hosts"]["n0"]["reasons"]] == [
        "regression", "straggler"]
    nodes = {"n0": SlurmNode("n0", "IDLE")}
    (a,) = plan(s, {}, nodes, {}, max_drain=1).actions
    assert a.action == "drain" and a.reason == "gpufleet: regressed on matmul/bf16/tflops:gpu3 (run 20261123T020000Z)"


def test_inventory_node_names_map_hosts_to_nodes():
    nodes = {"c-001": SlurmNode("c-001", "IDLE")}
    (a,) = plan(summary({"node1": "fail"}), {"node1": "c-001"}, nodes, {}, max_drain=1).actions
    assert (a.host, a.node, a.action) == ("node1", "c-001", "drain")


def test_max_drain_spec():
    assert [max_drain_count("10%", n) for n in (3, 10, 25, 1000)] == [1, 1, 2, 100]
    assert max_drain_count("3", 1000) == 3 and max_drain_count(0, 5) == 0
    for bad in ("ten", "-1", "150%"):
        with pytest.raises(ValueError):
            max_drain_count(bad, 10)


def test_reason_is_bounded():
    assert len(drain_reason("x" * 500, "20261123T020000Z")) == 120


def test_route_busy_unavailable_ours_unknown(nodes):
    hosts = [Host("gpu1"), Host("gpu2"), Host("gpu3"), Host("h4", {"gpufleet_slurm_node": "gpu9"})]
    r = route(hosts, nodes, wait=False)
    assert {h: x.how for h, x in r.items()} == {"gpu1": "unavailable", "gpu2": "busy", "gpu3": "ssh",
                                                "h4": "unknown"}
    assert route(hosts, nodes, wait=True)["gpu2"].how == "slurm"


class ScriptedSlurm:
    """A runner answering `squeue` with job 7's states in turn (the last one repeated) and `scontrol -o show job`
    with its record in the state squeue last gave (the real cluster's lines are in tests/data/slurm/ and
    tests/test_slurm_e2e.py); records every command."""

    def __init__(self, states: list[str]):
        self.states = list(states)
        self.state = ""
        self.calls: list[list[str]] = []

    def __call__(self, argv, timeout):
        from fleet.slurm.client import Result

        self.calls.append(argv)
        if argv[0] == "squeue":
            self.state = self.states.pop(0) if len(self.states) > 1 else self.states[0]
            return Result(0, f"7|{self.state}|Resources\n", "")
        if argv[:4] == ["scontrol", "-o", "show", "job"]:
            return Result(0, f"JobId=7 JobName=x JobState={self.state} Reason=None ExitCode=0:0 RunTime=00:00:01\n",
                          "")
        return Result(0, "", "")


def _wait_with(runner, wait=False, timeout=100.0):
    from fleet.runs.node import VerifySettings
    from fleet.slurm.client import SlurmClient
    from fleet.slurm.jobs import JobBook, SlurmSettings, _wait

    ticks = iter(range(0, 100000, 10))  # every poll, ten seconds pass
    s = VerifySettings(timeout=timeout)
    slurm = SlurmSettings("/shared", wait=wait, pending_s=60)
    book = JobBook(SlurmClient(runner), poll_s=0)
    book.add("h", "7")
    return _wait(book, "7", "h", s, slurm, lambda h, st: None, lambda: next(ticks), lambda _: None)


def test_squeue_output_parsed_exactly():
    from fleet.slurm.client import parse_squeue

    text = (DATA / "squeue-states.txt").read_text()
    assert parse_squeue(text) == {"2": ("FAILED", "NonZeroExitCode"), "3": ("PENDING", "Resources"),
                                  "1": ("RUNNING", "None")}
    assert parse_squeue("") == {} and parse_squeue("garbage\n|RUNNING|x\n4|RUNNING\n") == {}


class CountingSlurm:
    """squeue answers from a table; records every query (synthetic: exercises the book's sharing rule)."""

    def __init__(self, table: dict):
        self.table, self.queries = table, []

    def __call__(self, argv, timeout):
        from fleet.slurm.client import Result

        ids = argv[3].split("=", 1)[1].split(",")
        self.queries.append(ids)
        lines = "".join(f"{j}|{self.table[j]}|None\n" for j in ids if j in self.table)
        return Result(0, lines, "") if lines else Result(1, "", "slurm_load_jobs error: Invalid job id specified\n")


def test_one_squeue_per_tick_answers_every_host():
    from fleet.slurm.client import SlurmClient
    from fleet.slurm.jobs import JobBook

    now = [0.0]
    runner = CountingSlurm({"11": "RUNNING", "12": "PENDING"})
    book = JobBook(SlurmClient(runner), clock=lambda: now[0], poll_s=2.0)
    book.add("a", "11")
    book.add("b", "12")
    assert book.state("11") == ("RUNNING", "None") and book.state("12") == ("PENDING", "None")
    assert runner.queries == [["11", "12"]]  # one query for both hosts
    book.add("c", "13")
    now[0] = 1.0
    assert book.state("13") == ("", "")  # not asked about yet: no extra query within the tick
    assert runner.queries == [["11", "12"]]
    now[0] = 2.5
    runner.table["11"] = "COMPLETED"
    assert book.state("13") is None  # asked about, and squeue does not list it
    assert book.state("11") == ("COMPLETED", "None") and runner.queries == [["11", "12"], ["11", "12", "13"]]
    for host in ("a", "b", "c"):
        book.pop(host)
    now[0] = 5.0
    assert book.state("13") is None and runner.queries[-1] == ["13"]  # squeue exited 1: none of them known


def test_a_job_still_pending_at_its_deadline_is_cancelled_not_scheduled():
    from fleet.slurm.jobs import NotScheduled

    runner = ScriptedSlurm(["PENDING"])
    with pytest.raises(NotScheduled, match=r"Slurm job 7 still pending after 60 s \(Resources\): cancelled"):
        _wait_with(runner)
    assert runner.calls[-1] == ["scancel", "7"]


def test_with_wait_a_pending_job_may_wait_its_whole_timeout_then_runs_to_the_end():
    runner = ScriptedSlurm(["PENDING"] * 8 + ["RUNNING", "COMPLETED"])
    info = _wait_with(runner, wait=True, timeout=100)
    assert info["JobState"] == "COMPLETED" and ["scancel", "7"] not in runner.calls
    assert [c[0] for c in runner.calls] == ["squeue"] * 10 + ["scontrol"]  # its whole record once, at the end
    assert runner.calls[0] == ["squeue", "--noheader", "--states=all", "--jobs=7", "--format=%i|%T|%r"]


def test_a_job_running_past_its_timeout_is_cancelled_timed_out():
    from fleet.outcome import TimedOut

    runner = ScriptedSlurm(["RUNNING"])
    with pytest.raises(TimedOut, match="ran past 100 s"):
        _wait_with(runner, timeout=100)
    assert runner.calls[-1] == ["scancel", "7"]


def test_a_pairwise_run_directory_drains_its_culprit_host_and_never_a_links_two_ends(tmp_path):
    """A pairwise run keeps its pairs in run.json, no host records: slurm-sync reads it through the same
    ``rejudge`` as ``gpufleet report``, so the culprit host fails and is drained; a culprit link drains nobody."""
    from fleet.runs.pairwise import PairResult
    from fleet.runs.rejudge import rejudge
    from fleet.runs.run_dir import write_run

    idle = {f"gpu{i}": SlurmNode(f"gpu{i}", "IDLE") for i in range(1, 5)}
    names = {f"n{i}": f"gpu{i}" for i in range(1, 5)}

    def run_dir(name: str, pairs: list) -> Path:
        d = tmp_path / name
        d.mkdir()
        write_run(d, [], {"run_id": "20261207T020000Z", "pairwise": {"hosts": list(names), "floor": 0.7},
                          "pairs": [p.to_dict() for p in pairs]})
        return d

    culprit = run_dir("host", [PairResult(("n1", "n2"), 1, 10.0), PairResult(("n3", "n4"), 1, 10.0, "wrong"),
                               PairResult(("n3", "n1"), 2, 10.0), PairResult(("n4", "n2"), 2, 10.0, "wrong")])
    summary, meta = rejudge(culprit)
    assert meta["run_id"] == "20261207T020000Z"
    p = plan(summary, names, idle, {}, resume_after=2, max_drain=1)
    assert acts(p) == {"n1": "none", "n2": "none", "n3": "none", "n4": "drain"}
    assert [a.reason for a in p.drains] == ["gpufleet: pairwise culprit (run 20261207T020000Z)"]

    link = run_dir("link", [PairResult(("n1", "n2"), 1, 10.0, "wrong"), PairResult(("n3", "n4"), 1, 10.0),
                            PairResult(("n1", "n3"), 2, 10.0), PairResult(("n2", "n4"), 2, 10.0),
                            PairResult(("n1", "n2"), 3, 10.0, "wrong")])
    summary, _ = rejudge(link)
    assert summary["culprits"][0]["link"] == ["n1", "n2"] and summary["exit_code"] == 1
    assert acts(plan(summary, names, idle, {}, resume_after=2, max_drain=1)) == {f"n{i}": "none" for i in range(1, 5)}
