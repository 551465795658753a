"""``verify --via slurm --one-job``'s pure parts (fleet/slurm/onejob.py): the job's options and script as exact
strings (a node's branch run by the real ``sh``), the partial gang, each member judged alone from its own exit
status, and the flag's usage errors.  The real Slurm runs are the --one-job tests
of tests/test_slurm_e2e.py."""

from __future__ import annotations

import json
import subprocess
import threading

import pytest

from fleet.inventory.model import Host
from fleet.outcome import HostError, HostState, TimedOut
from fleet.push import PushResult, prune_runs_command
from fleet.runs.node import VerifySettings
from fleet.runs.record import HostRun
from fleet.slurm.jobs import NotScheduled, SlurmSettings, node_line
from fleet.slurm.multinode import Gang, JobEnd, node_branch
from fleet.slurm.onejob import job_options, job_script, judge, message
from tests.report_builder import node_report

S = VerifySettings(run_id="20261207T150000Z", timeout=240, nproc="1", checks=("collectives",))
LOG = "/sh/20261207T150000Z/slurm-%j.out"


def test_the_jobs_options_pin_the_nodes_exclusively_and_go_on_when_one_fails():
    slurm = SlurmSettings("/sh", "gpu", "high", "ops", ("--reservation=maint",))
    assert job_options(["gpu1", "gpu2", "gpu3"], S, slurm, LOG) == [
        "--nodes=3", "--nodelist=gpu1,gpu2,gpu3", "--exclusive", "--ntasks-per-node=1", "--no-kill",
        "--job-name=gpufleet-verify-20261207T150000Z", "--time=6", "--output=/sh/20261207T150000Z/slurm-%j.out",
        "--open-mode=append", "--partition=gpu", "--qos=high", "--account=ops", "--reservation=maint"]
    assert job_options(["gpu2"], VerifySettings(run_id="R", timeout=30), SlurmSettings("/sh"), "x") == [
        "--nodes=1", "--nodelist=gpu2", "--exclusive", "--ntasks-per-node=1", "--no-kill",
        "--job-name=gpufleet-verify-R", "--time=2", "--output=x", "--open-mode=append"]


def test_each_branch_is_the_nodes_single_node_run_with_its_env_and_the_guard_past_the_timeout():
    host = Host("sl-1", {"gpufleet_verify_env": {"OMP_NUM_THREADS": "1"}})
    pushed = PushResult("/home/ops/.cache/gpufleet/verify-ab", "/home/ops/.cache/gpufleet/verify-ab/venv/bin/python",
                        False, {"gpu_count": 0})
    line = node_line(host, pushed, S, "/sh/20261207T150000Z/sl-1/report.json", S.timeout + 30)
    assert line == (
        "cd /home/ops/.cache/gpufleet/verify-ab && mkdir -p runs/20261207T150000Z/sl-1 && "
        f"{{ {prune_runs_command('.')} >/dev/null; }} && echo $$ > runs/20261207T150000Z/sl-1/pid && "
        "export OMP_NUM_THREADS=1; "
        "if command -v timeout >/dev/null 2>&1; then exec timeout -k 15 270 "
        "/home/ops/.cache/gpufleet/verify-ab/venv/bin/python -m torch.distributed.run --standalone "
        "--nproc_per_node=1 -m verify --profile quick --out /sh/20261207T150000Z/sl-1/report.json --checks "
        "collectives 2>&1; else exec /home/ops/.cache/gpufleet/verify-ab/venv/bin/python -m torch.distributed.run "
        "--standalone --nproc_per_node=1 -m verify --profile quick --out /sh/20261207T150000Z/sl-1/report.json "
        "--checks collectives 2>&1; fi")
    script = job_script([("gpu1", node_branch("gpu1", "true", "/sh/R/sl-1")),
                         ("gpu3", node_branch("gpu3", "false", "/sh/R/sl-3"))])
    assert script == (
        "exec srun --nodes=2 --ntasks=2 --ntasks-per-node=1 --kill-on-bad-exit=0 sh -c 'case \"$SLURMD_NODENAME\" in\n"
        "gpu1) exec >>/sh/R/sl-1/output.log 2>&1; sh -c true; rc=$?; echo \"$rc\" >/sh/R/sl-1/exit; exit \"$rc\";;\n"
        "gpu3) exec >>/sh/R/sl-3/output.log 2>&1; sh -c false; rc=$?; echo \"$rc\" >/sh/R/sl-3/exit; exit \"$rc\";;\n"
        "*) echo \"gpufleet: node $SLURMD_NODENAME is not in this run\" >&2; exit 2;;\nesac'")


def test_a_failing_node_does_not_stop_the_others_branch_under_the_real_sh(tmp_path):
    """The whole batch script run by ``sh``, with a stand-in ``srun`` that runs its one task here (its options
    dropped) as the node named by ``SLURMD_NODENAME``: each node's output and status land in its own directory."""
    dirs = {n: tmp_path / n for n in ("sl-1", "sl-3")}
    for d in dirs.values():
        d.mkdir()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text('#!/bin/sh\nwhile case "$1" in --*) true;; *) false;; esac; do shift; done\n'
                                  'exec "$@"\n')
    (bin_dir / "srun").chmod(0o755)
    script = job_script([("gpu1", node_branch("gpu1", "echo ok", str(dirs["sl-1"]))),
                         ("gpu3", node_branch("gpu3", "echo broken >&2; exit 1", str(dirs["sl-3"])))])
    runs = {n: subprocess.run(["sh", "-c", script], capture_output=True, text=True,
                              env={"SLURMD_NODENAME": n, "PATH": f"{bin_dir}:/usr/bin:/bin"}) for n in ("gpu1", "gpu3")}
    assert {n: r.returncode for n, r in runs.items()} == {"gpu1": 0, "gpu3": 1}
    assert {h: ((d / "exit").read_text(), (d / "output.log").read_text()) for h, d in dirs.items()} == {
        "sl-1": ("0\n", "ok\n"), "sl-3": ("1\n", "broken\n")}


def test_the_partial_gang_submits_the_members_that_arrived_in_member_order():
    submitted = []

    def submit(parts):
        submitted.append(parts)
        return JobEnd("42", {"JobState": "COMPLETED"})

    gang = Gang(["a", "b", "c"], submit, partial=True)
    got = {}

    def arrive(name, part, why=""):
        got[name] = gang.arrive(name, part, why)

    arrivals = (("c", ("gpu3", "c) :;;")), ("b", None, "push failed: no space left on device"),
                ("a", ("gpu1", "a) :;;")))
    threads = [threading.Thread(target=arrive, args=a) for a in arrivals]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)  # a ceiling: they end when the last one arrives
    assert submitted == [[("gpu1", "a) :;;"), ("gpu3", "c) :;;")]]
    assert gang.joined == ["a", "c"] and gang.dropped == {"b": "push failed: no space left on device"}
    assert {n: (e.job, e.error) for n, e in got.items()} == {"a": ("42", None), "b": ("42", None), "c": ("42", None)}


def test_a_partial_gang_with_no_member_prepared_submits_nothing():
    gang = Gang(["a", "b"], lambda parts: pytest.fail("submitted"), partial=True)
    gang.dropped["b"] = "ansible_port: 'x' is not a port number"
    assert gang.arrive("a", None, "push failed: exit 1").error == (
        HostError, "no job submitted: no member could be prepared (b: ansible_port: 'x' is not a port number; "
                   "a: push failed: exit 1)")
    assert gang.joined == []


def _report(status: str) -> bytes:
    checks = [{"name": "collectives/allreduce_correct", "status": status, "message": "x"}]
    return json.dumps(node_report("sl-1", [], {}, checks=checks)).encode()


CANCELLED = JobEnd("9", error=(TimedOut, "Slurm job 9 ran past 240 s: cancelled"))
COMPLETED = JobEnd("9", {"JobState": "COMPLETED", "Reason": "None"})


def _judged(end, code, data):
    """(state, status, message) of a member judged alone, or the error it raises."""
    try:
        run = judge(HostRun("sl-1"), end, code, data, "gpu1", LOG, 240)
    except HostError as e:
        assert isinstance(e.partial, HostRun) and e.partial.exit_code == code
        return type(e).__name__, str(e)
    return run.state.value, run.status, run.message


@pytest.mark.parametrize("end, code, data, expected", [
    # its run ended: judged as a single-node run, whatever became of the job
    (COMPLETED, 0, _report("pass"), ("ok", "pass", "")),
    (COMPLETED, 1, _report("fail"), ("ok", "fail", "")),
    (CANCELLED, 0, _report("pass"), ("ok", "pass", "")),  # finished before gpufleet's cancel: kept
    (JobEnd("9", {"JobState": "FAILED"}), 1, None, ("failed", "fail", "verify exited 1 and wrote no report")),
    (COMPLETED, 124, None, ("timed_out", "error", "verify did not finish within 240s on the node")),
    (CANCELLED, 143, None, ("TimedOut", "Slurm job 9 ran past 240 s: cancelled")),  # the cancel's SIGTERM
    # no exit status: the job's end says why
    (CANCELLED, None, None, ("TimedOut", "Slurm job 9 ran past 240 s: cancelled")),
    (JobEnd("9", error=(NotScheduled, "Slurm job 9 still pending after 120 s (Resources): cancelled")), None, None,
     ("NotScheduled", "Slurm job 9 still pending after 120 s (Resources): cancelled")),
    (JobEnd(error=(HostError, "sbatch failed: sbatch failed (exit 1): Invalid account")), None, None,
     ("HostError", "sbatch failed: sbatch failed (exit 1): Invalid account")),
    (COMPLETED, None, None,
     ("HostError", "Slurm job 9 ran no task on gpu1 (its log: /sh/20261207T150000Z/slurm-9.out)")),
    (JobEnd("9", {"JobState": "TIMEOUT"}), None, None,
     ("TimedOut", "Slurm job 9 hit its time limit before gpu1's run ended")),
    (JobEnd("9", {"JobState": "NODE_FAIL", "Reason": "NodeDown"}), None, None,
     ("HostError", "Slurm job 9 ended NODE_FAIL before gpu1's run ended (NodeDown)")),
], ids=["pass", "fail", "finished-before-cancel", "crashed", "node-guard", "sigterm-at-cancel", "hung-at-cancel",
        "not-scheduled", "sbatch-failed", "no-task", "slurm-time-limit", "node-fail"])
def test_each_member_is_judged_alone_from_its_own_exit_status(end, code, data, expected):
    assert _judged(end, code, data) == expected


def test_one_hung_member_does_not_change_the_others_verdict():
    """The same job's end for three members: the two whose runs ended keep their verdicts."""
    got = [_judged(CANCELLED, code, data) for code, data in ((0, _report("pass")), (1, _report("fail")),
                                                             (None, None))]
    assert got == [("ok", "pass", ""), ("ok", "fail", ""), ("TimedOut", "Slurm job 9 ran past 240 s: cancelled")]
    assert HostState.TIMED_OUT.value == "timed_out"


def test_a_members_message_names_the_one_job():
    assert message("42", "gpu2", 3) == "Slurm job 42 on gpu2 (one job for 3 nodes)"
    assert message("42", "gpu2", 1) == "Slurm job 42 on gpu2 (one job for 1 node)"


def test_one_job_flag():
    from invoke.exceptions import Exit

    from fleet.options import one_job

    assert one_job(False, False, True, True) is False and one_job(True, True, False, False) is True
    for args, line in (((True, False, False, False), "--one-job needs --via slurm"),
                       ((True, True, True, False), "--one-job is for single-node checks: not with --multinode"),
                       ((True, True, True, True), "--one-job is for single-node checks: not with --pairwise")):
        with pytest.raises(Exit) as e:
            one_job(*args)
        assert line in str(e.value.message)
