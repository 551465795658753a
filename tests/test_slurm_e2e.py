"""gpufleet against a real Slurm (tests/slurmcluster.py: Debian's slurm-wlm and munge, one slurmctld and three
slurmd): verify as jobs, busy nodes skipped, slurm-sync's drains and resumes, and gpufleet-check as the
cluster's HealthCheckProgram.  Each inventory host is a real sshd test host (where verify is pushed) mapped to a
Slurm node with gpufleet_slurm_node; the jobs run the pushed verify for real (on the CPU, gloo).

The hosts set no ``gpufleet_remote_dir``: verify goes where the product puts it by default, ``.cache/gpufleet``
under the SSH login's home (the test hosts' login is this machine's user, so its real home, shared by the three
hosts as an NFS home would be), while the jobs start in the submit directory (the repository).  What the module
installs there is removed after it."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fleet.push import DEFAULT_REMOTE_DIR
from tests.sshd import REPO, fake_lspci, fake_nvidia_smi, fixture_slots, invoke_env, run_invoke

pytestmark = pytest.mark.slow

HOSTS = {"sl-1": "gpu1", "sl-2": "gpu2", "sl-3": "gpu3"}


def _vars(farm, name, **extra):
    return {"ansible_python_interpreter": sys.executable, "gpufleet_slurm_node": HOSTS[name], **extra}


def login_home() -> Path:
    """The test hosts' login's home directory (sshd's, from the password database)."""
    import pwd

    return Path(pwd.getpwuid(os.getuid()).pw_dir)


@contextlib.contextmanager
def removing_what_appears(directory: Path):
    """Remove, afterwards, what appeared in ``directory`` (and the directories up to it that did not exist)."""
    missing = [d for d in (directory, *directory.parents) if not d.exists()]
    before = set(directory.iterdir()) if directory.exists() else set()
    try:
        yield
    finally:
        for entry in (set(directory.iterdir()) if directory.exists() else set()) - before:
            shutil.rmtree(entry, ignore_errors=True)
        for d in missing:  # deepest first
            try:
                d.rmdir()
            except OSError:  # something else appeared there meanwhile: left as it is
                break


@pytest.fixture(scope="module")
def fleet(farm, slurm, tmp_path_factory):
    """The three hosts (without gpufleet_remote_dir: the default), their inventory, and an environment where
    Slurm's clients reach the test cluster."""
    for name in HOSTS:
        farm.add_host(name, fixture=None, gpus=0, extra_vars=_vars(farm, name))
    base = tmp_path_factory.mktemp("slurm-fleet")
    inv = base / "hosts.yaml"
    inv.write_text(farm.inventory(list(HOSTS)))
    assert "gpufleet_remote_dir" not in inv.read_text()
    env = invoke_env(farm, base / "home")
    env.update(slurm.env)
    remote = login_home() / DEFAULT_REMOTE_DIR
    with removing_what_appears(remote):
        yield {"inv": inv, "env": env, "base": base, "db": base / "history.sqlite",
               "shared": slurm.shared / "gpufleet", "remote": remote}


def verify(fleet, out: Path, *extra: str, inventory: Path | None = None, hosts: str = "gpu-nodes"):
    return run_invoke(["verify", "--via", "slurm", "--shared-dir", str(fleet["shared"]), "--hosts", hosts,
                       "--inventory", str(inventory or fleet["inv"]), "--out", str(out), "--history",
                       str(fleet["db"]), "--nproc", "1", "--checks", "collectives", "--timeout", "240", *extra],
                      fleet["env"], timeout=600)


def last_run(out: Path) -> Path:
    return sorted(p for p in out.iterdir() if p.is_dir())[-1]


def sync(fleet, run_dir: Path, *extra: str):
    return run_invoke(["slurm-sync", str(run_dir), "--inventory", str(fleet["inv"]), "--history", str(fleet["db"]),
                      *extra], fleet["env"])


def reason(slurm, node: str) -> tuple[str, str]:
    f = slurm.show_node(node)
    return f["State"], f.get("Reason", "")


def test_verify_via_slurm_passes_with_reports_through_the_shared_directory(fleet, slurm, tmp_path):
    r = verify(fleet, tmp_path / "reports")
    assert r.returncode == 0, r.stdout + r.stderr
    run_dir = last_run(tmp_path / "reports")
    summary = json.loads((run_dir / "summary.json").read_text())
    assert {h: e["status"] for h, e in summary["hosts"].items()} == {"sl-1": "pass", "sl-2": "pass", "sl-3": "pass"}
    run = json.loads((run_dir / "run.json").read_text())
    assert run["via"] == "slurm"
    installed = {h["push"]["directory"] for h in run["hosts"]}
    assert len(installed) == 1  # one install in the shared home, absolute: the jobs start in the repository
    [directory] = installed
    assert directory.startswith(f"{fleet['remote']}/verify-{run['artifact']['sha256_16']}-"), directory
    assert Path(directory, ".installed").is_file()
    for h in run["hosts"]:
        assert h["message"].startswith("Slurm job ") and h["message"].endswith(f" on {HOSTS[h['host']]}")
        shared = fleet["shared"] / run["run_id"] / h["host"] / "report.json"
        assert (run_dir / h["report"]).read_bytes() == shared.read_bytes()  # collected from the shared directory
        # the job ran the pushed verify, from its absolute path, in its own run folder there
        assert Path(directory, "runs", run["run_id"], h["host"], "pid").is_file()
    assert {j["JobState"] for j in _jobs(slurm, f"gpufleet-verify-{run['run_id']}")} == {"COMPLETED"}
    assert {j["WorkDir"] for j in _jobs(slurm, f"gpufleet-verify-{run['run_id']}")} == {str(REPO)}


def test_verify_via_slurm_on_one_node_by_name(fleet, slurm, tmp_path):
    r = verify(fleet, tmp_path / "reports", hosts="sl-2")
    assert r.returncode == 0, r.stdout + r.stderr
    run_dir = last_run(tmp_path / "reports")
    summary = json.loads((run_dir / "summary.json").read_text())
    assert {h: e["status"] for h, e in summary["hosts"].items()} == {"sl-2": "pass"}
    run = json.loads((run_dir / "run.json").read_text())
    [host] = run["hosts"]
    assert host["message"].startswith("Slurm job ") and host["message"].endswith(" on gpu2")
    assert host["push"]["directory"].startswith(f"{fleet['remote']}/verify-")
    [job] = _jobs(slurm, f"gpufleet-verify-{run['run_id']}")
    assert (job["JobState"], job["NodeList"], job["WorkDir"]) == ("COMPLETED", "gpu2", str(REPO))


def _jobs(slurm, name: str) -> list[dict]:
    r = slurm.run("squeue", "-h", "-t", "all", "-n", name, "-o", "%i")
    return [slurm.jobs(i)[0] for i in r.stdout.split()]


def test_a_node_busy_with_another_job_is_skipped_as_busy(fleet, slurm, tmp_path):
    blocker = slurm.sbatch("--nodelist=gpu3", "--exclusive", "--wrap=sleep 600")
    try:
        deadline = time.monotonic() + 30
        while slurm.jobs(blocker)[0]["JobState"] != "RUNNING" and time.monotonic() < deadline:
            time.sleep(0.2)
        r = verify(fleet, tmp_path / "reports")
        assert r.returncode == 0, r.stdout + r.stderr  # busy is a skip, not a failure
        summary = json.loads((last_run(tmp_path / "reports") / "summary.json").read_text())
        busy = summary["hosts"]["sl-3"]
        assert (busy["status"], busy["state"]) == ("skipped", "busy")
        assert "node gpu3 is allocated (running jobs)" in busy["message"]
        assert summary["counts"]["skipped"] == 1 and summary["counts"]["pass"] == 2
        assert slurm.jobs(blocker)[0]["JobState"] == "RUNNING"  # the other job was left alone
    finally:
        slurm.run("scancel", str(blocker))
    slurm.wait_nodes("idle", nodes=["gpu3"], timeout=60)


def test_slurm_sync_drains_ours_leaves_theirs_and_resumes_after_passing_runs(fleet, slurm, tmp_path):
    faulty = tmp_path / "faulty.yaml"
    doc = fleet["inv"].read_text().replace(
        "gpufleet_slurm_node: gpu2", "gpufleet_slurm_node: gpu2\n          gpufleet_verify_env:\n"
                                     "            GPUFLEET_VERIFY_FAULT: allreduce-wrong")
    assert doc != fleet["inv"].read_text()
    faulty.write_text(doc)
    slurm.run("scontrol", "update", "nodename=gpu3", "state=drain", "reason=maintenance", check=True)
    try:
        r = verify(fleet, tmp_path / "reports", inventory=faulty)
        assert r.returncode == 1, r.stdout + r.stderr
        run_dir = last_run(tmp_path / "reports")
        summary = json.loads((run_dir / "summary.json").read_text())
        assert summary["hosts"]["sl-2"]["status"] == "fail"
        assert (summary["hosts"]["sl-3"]["status"], summary["hosts"]["sl-3"]["state"]) == ("skipped", "unavailable")

        plan = sync(fleet, run_dir)  # a dry run first: nothing changes
        assert plan.returncode == 0, plan.stdout + plan.stderr
        assert "would drain" in plan.stdout and reason(slurm, "gpu2")[0] == "IDLE"
        applied = sync(fleet, run_dir, "--apply", "--json", str(tmp_path / "sync.json"))
        assert applied.returncode == 0, applied.stdout + applied.stderr
        state, why = reason(slurm, "gpu2")
        assert state == "IDLE+DRAIN"
        assert why.startswith(f"gpufleet: collectives/allreduce_correct (run {run_dir.name}) [")
        assert reason(slurm, "gpu3") == ("IDLE+DRAIN", reason(slurm, "gpu3")[1])
        assert reason(slurm, "gpu3")[1].startswith("maintenance [")  # the administrator's, untouched
        assert reason(slurm, "gpu1")[0] == "IDLE"
        doc = json.loads((tmp_path / "sync.json").read_text())
        assert {a["host"]: a["action"] for a in doc["actions"]} == {"sl-1": "none", "sl-2": "drain", "sl-3": "none"}
        again = sync(fleet, run_dir, "--apply")  # idempotent
        assert again.returncode == 0 and "0 to drain, 0 to resume" in again.stdout
        assert reason(slurm, "gpu2") == (state, why)

        # gpu2 passes again: re-checked as a job inside gpufleet's maintenance reservation (on the defaults;
        # --recheck-via ssh is tests/test_slurm_recheck.py's), drained again after each; resumed after two passes
        for night in range(2):
            r = verify(fleet, tmp_path / "reports")
            assert r.returncode == 0, r.stdout + r.stderr
            run = json.loads((last_run(tmp_path / "reports") / "run.json").read_text())
            sl2 = next(h for h in run["hosts"] if h["host"] == "sl-2")
            assert sl2["message"].startswith("Slurm job ") and \
                sl2["message"].endswith(" on gpu2 in reservation gpufleet-recheck"), sl2["message"]
            step = sync(fleet, last_run(tmp_path / "reports"), "--apply")
            assert step.returncode == 0, step.stdout + step.stderr
            if night == 0:
                assert reason(slurm, "gpu2")[0] == "IDLE+DRAIN"  # one passing run: not yet
            else:
                assert "DRAIN" not in reason(slurm, "gpu2")[0] and "resumed" in step.stdout
                slurm.wait_nodes("idle", nodes=["gpu2"], timeout=60)  # back in the job pool
        assert reason(slurm, "gpu3")[1].startswith("maintenance [")
    finally:
        for node in ("gpu2", "gpu3"):
            slurm.run("scontrol", "update", f"nodename={node}", "state=resume")  # an error when not drained
        slurm.wait_nodes("idle", timeout=60)  # a resumed node is "not responding" until slurmctld's next ping


def test_a_run_where_most_nodes_fail_drains_nothing(fleet, slurm, tmp_path):
    from fleet.runs.run_dir import write_run, write_summary
    from fleet.runs.verdict import judge
    from tests.report_builder import arrived, node_report

    slurm.wait_nodes("idle", timeout=60)
    wrong = [{"name": "collectives/allreduce_correct", "status": "fail", "message": "all_reduce result is wrong"}]
    runs = [arrived(node_report(h, [], {"allreduce/busbw_gbps": 1.0}, checks=wrong)) for h in ("sl-1", "sl-2")]
    runs.append(arrived(node_report("sl-3", [], {"allreduce/busbw_gbps": 1.0})))
    meta = {"run_id": "20261123T030000Z", "started": "2026-11-23T03:00:00+00:00", "finished": None}
    run_dir = tmp_path / "20261123T030000Z"
    run_dir.mkdir()
    write_run(run_dir, runs, meta)
    write_summary(run_dir, judge(runs, meta))
    r = sync(fleet, run_dir, "--apply")
    assert r.returncode == 1
    assert "refused: 2 nodes would be drained, more than --max-drain allows (1)" in r.stdout
    assert {n: slurm.node_states()[n] for n in ("gpu1", "gpu2", "gpu3")} == {"gpu1": "idle", "gpu2": "idle",
                                                                             "gpu3": "idle"}


def test_ctrl_c_cancels_every_job_the_run_submitted(fleet, slurm, tmp_path):
    import signal
    import subprocess

    hanging = tmp_path / "hanging.yaml"
    hanging.write_text(fleet["inv"].read_text().replace(
        "gpufleet_slurm_node: gpu", "gpufleet_verify_env:\n            GPUFLEET_VERIFY_FAULT: rank-hang\n"
                                    "          gpufleet_slurm_node: gpu"))
    assert hanging.read_text().count("rank-hang") == 3
    out = tmp_path / "reports"
    proc = subprocess.Popen(
        [sys.executable, "-m", "fleet.cli", "verify", "--via", "slurm", "--shared-dir", str(fleet["shared"]),
         "--hosts", "gpu-nodes", "--inventory", str(hanging), "--out", str(out), "--no-history", "--nproc", "2",
         "--checks", "collectives", "--timeout", "240"],
        cwd=tmp_path, env=fleet["env"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    jobs: list = []
    while time.monotonic() < deadline:
        runs = [p for p in out.iterdir() if p.is_dir()] if out.exists() else []
        if runs:
            jobs = _jobs(slurm, f"gpufleet-verify-{runs[0].name}")
            if len(jobs) == 3 and all(j["JobState"] == "RUNNING" for j in jobs):
                break
        time.sleep(0.5)
    assert len(jobs) == 3 and all(j["JobState"] == "RUNNING" for j in jobs), jobs
    time.sleep(3)  # the ranks are up and hanging in the collectives stage
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stdout + stderr  # communicate's 60 s is a ceiling, not a measure
    assert {j["JobId"]: slurm.jobs(j["JobId"])[0]["JobState"] for j in jobs} == {j["JobId"]: "CANCELLED"
                                                                                 for j in jobs}
    run = json.loads((last_run(out) / "run.json").read_text())
    assert run["interrupted"] is True
    assert {h["state"] for h in run["hosts"]} == {"interrupted"}
    slurm.wait_nodes("idle", timeout=60)  # nothing left running on the nodes


# ------------------------------------------------------------------------- --multinode as one job
# (before the health-check cluster below, for the reason it gives)

def _gpufleet(fleet, out: Path, *extra: str, inventory: Path | None = None):
    """``gpufleet verify --via slurm --multinode`` on the three hosts, run from the repository (the job's submit
    directory), on the defaults otherwise; a rendezvous port of its own (other runs may hold 29400)."""
    from tests.slurmcluster import free_ports

    argv = [sys.executable, "-m", "fleet.cli", "verify", "--via", "slurm", "--multinode", "--shared-dir",
            str(fleet["shared"]), "--hosts", "gpu-nodes", "--inventory", str(inventory or fleet["inv"]), "--out",
            str(out), "--no-history", "--nproc", "1", "--checks", "collectives", "--rdzv-port",
            str(free_ports(1)[0]), *extra]
    return subprocess.run(argv, cwd=REPO, env=fleet["env"], capture_output=True, text=True, timeout=900)


def _planted(fleet, tmp_path: Path, host: str, fault: str) -> Path:
    """The inventory with ``fault`` planted on ``host`` alone (its gpufleet_verify_env)."""
    node = HOSTS[host]
    doc = fleet["inv"].read_text().replace(
        f"gpufleet_slurm_node: {node}", f"gpufleet_slurm_node: {node}\n          gpufleet_verify_env:\n"
                                        f"            GPUFLEET_VERIFY_FAULT: {fault}")
    assert doc.count(fault) == 1
    path = tmp_path / f"{fault}.yaml"
    path.write_text(doc)
    return path


def _one_job(slurm, run_id: str) -> dict:
    [job] = _jobs(slurm, f"gpufleet-verify-{run_id}")
    return job


def test_verify_via_slurm_multinode_is_one_job_over_the_three_nodes(fleet, slurm, tmp_path):
    slurm.wait_nodes("idle", timeout=60)
    r = _gpufleet(fleet, tmp_path / "reports")
    assert r.returncode == 0, r.stdout + r.stderr
    run_dir = last_run(tmp_path / "reports")
    summary = json.loads((run_dir / "summary.json").read_text())
    assert {h: e["status"] for h, e in summary["hosts"].items()} == {"sl-1": "pass", "sl-2": "pass", "sl-3": "pass"}
    run = json.loads((run_dir / "run.json").read_text())
    assert (run["via"], run["multinode"]) == ("slurm", True)
    job = _one_job(slurm, run["run_id"])
    assert (job["JobState"], job["NumNodes"], job["NodeList"], job["WorkDir"]) == ("COMPLETED", "3", "gpu[1-3]",
                                                                                   str(REPO))
    endpoint = run["hosts"][0]["member"]["endpoint"]
    assert endpoint.startswith("127.0.1.1:")  # gpu1's NodeAddr: an address, not a host name
    ranks = []
    for i, h in enumerate(run["hosts"]):
        assert h["member"] == {"node_rank": i, "node_count": 3, "endpoint": endpoint}
        assert h["message"] == f"Slurm job {job['JobId']} on gpu1,gpu2,gpu3 (node_rank {i})"
        assert h["push"]["directory"].startswith(f"{fleet['remote']}/verify-")  # the default install, absolute
        shared = fleet["shared"] / run["run_id"] / h["host"]
        assert (run_dir / h["report"]).read_bytes() == (shared / "report.json").read_bytes()
        assert (shared / "exit").read_text() == "0\n"
        world = json.loads((shared / "report.json").read_text())["world"]
        assert (world["world_size"], world["node_count"], world["node"]["node_rank"]) == (3, 3, i)
        assert sorted(x["rank"] for x in world["ranks"]) == [0, 1, 2]
        ranks += world["node"]["ranks"]
    assert sorted(ranks) == [0, 1, 2]  # each rank on one node, once


def test_verify_via_slurm_multinode_with_a_wrong_all_reduce_on_one_node(fleet, slurm, tmp_path):
    """The planted fault corrupts the last rank's result (rank 2: sl-3's one rank) after the all_reduce
    (verify/collectives.py); verify's allreduce_correct is a check of the whole world (every rank's count of wrong
    elements is gathered), so each node's report fails it, naming rank 2: all three hosts fail, as over SSH, and
    the report says where (``--pairwise`` is what isolates the node)."""
    slurm.wait_nodes("idle", timeout=60)
    r = _gpufleet(fleet, tmp_path / "reports", inventory=_planted(fleet, tmp_path, "sl-3", "allreduce-wrong"))
    assert r.returncode == 1, r.stdout + r.stderr
    run_dir = last_run(tmp_path / "reports")
    summary = json.loads((run_dir / "summary.json").read_text())
    assert {h: e["status"] for h, e in summary["hosts"].items()} == {"sl-1": "fail", "sl-2": "fail", "sl-3": "fail"}
    wrong = ("all_reduce result differs from the sum of the ranks' contributions: rank 2 at 4KiB (1 wrong), rank 2 "
             "at 256KiB (1 wrong), rank 2 at 4MiB (1 wrong)")
    for host in HOSTS:
        report = json.loads((fleet["shared"] / run_dir.name / host / "report.json").read_text())
        failed = {c["name"]: c["message"] for c in report["checks"] if c["status"] == "fail"}
        assert failed == {"collectives/allreduce_correct": wrong}, host
        assert (fleet["shared"] / run_dir.name / host / "exit").read_text() == "0\n"  # a report written: exit 0
        if host == "sl-3":
            assert report["world"]["node"] == {"node_rank": 2, "ranks": [2]}  # rank 2 is sl-3's
    assert _one_job(slurm, run_dir.name)["JobState"] == "COMPLETED"


def test_verify_via_slurm_multinode_hung_ends_at_its_timeout_with_the_job_cancelled(fleet, slurm, tmp_path):
    """rank-hang: sl-3's rank sleeps in the collectives stage, the others wait for it in all_reduce (verify's
    process-group timeout, 300 s, is longer than the run's): gpufleet cancels the job once it has run --timeout,
    every member ``timed_out``.  (--timeout is also the SSH commands' limit: 120 s leaves room for verify's probe,
    which imports torch, on a loaded machine.)"""
    slurm.wait_nodes("idle", timeout=60)
    r = _gpufleet(fleet, tmp_path / "reports", "--timeout", "120",
                  inventory=_planted(fleet, tmp_path, "sl-3", "rank-hang"))
    assert r.returncode == 1, r.stdout + r.stderr
    run_dir = last_run(tmp_path / "reports")
    run = json.loads((run_dir / "run.json").read_text())
    job = _one_job(slurm, run["run_id"])
    assert {h["host"]: (h["state"], h["message"]) for h in run["hosts"]} == {
        h: ("timed_out", f"Slurm job {job['JobId']} ran past 120 s: cancelled") for h in HOSTS}
    assert job["JobState"] == "CANCELLED"
    assert slurm.run("squeue", "-h", "-j", job["JobId"]).stdout == ""  # neither pending nor running
    _nothing_left_running(slurm, run["run_id"])


def test_verify_via_slurm_multinode_leaves_busy_nodes_out_and_needs_two(fleet, slurm, tmp_path):
    """A node running someone's job is not in the multi-node job (busy, a skip); the two others are, as nodes 0
    and 1 of 2.  With a second node busy, one is left: nothing is submitted and it says why."""
    slurm.wait_nodes("idle", timeout=60)
    blockers = [slurm.sbatch("--nodelist=gpu3", "--exclusive", "--wrap=sleep 600")]
    try:
        _running(slurm, blockers)
        r = _gpufleet(fleet, tmp_path / "two")
        assert r.returncode == 0, r.stdout + r.stderr  # busy is a skip, not a failure
        run_dir = last_run(tmp_path / "two")
        summary = json.loads((run_dir / "summary.json").read_text())
        assert {h: (e["status"], e["state"]) for h, e in summary["hosts"].items()} == {
            "sl-1": ("pass", "ok"), "sl-2": ("pass", "ok"), "sl-3": ("skipped", "busy")}
        job = _one_job(slurm, run_dir.name)
        assert (job["JobState"], job["NumNodes"], job["NodeList"]) == ("COMPLETED", "2", "gpu[1-2]")
        for i, host in enumerate(("sl-1", "sl-2")):
            world = json.loads((fleet["shared"] / run_dir.name / host / "report.json").read_text())["world"]
            assert (world["world_size"], world["node_count"], world["node"]) == (2, 2, {"node_rank": i, "ranks": [i]})

        blockers.append(slurm.sbatch("--nodelist=gpu2", "--exclusive", "--wrap=sleep 600"))
        _running(slurm, blockers)
        r = _gpufleet(fleet, tmp_path / "one")
        run_dir = last_run(tmp_path / "one")
        summary = json.loads((run_dir / "summary.json").read_text())
        assert {h: (e["status"], e["state"]) for h, e in summary["hosts"].items()} == {
            "sl-1": ("error", "error"), "sl-2": ("skipped", "busy"), "sl-3": ("skipped", "busy")}
        assert summary["hosts"]["sl-1"]["message"] == ("--multinode needs at least 2 Slurm nodes: only 1 node can "
                                                       "join (sl-2: busy, sl-3: busy): no job submitted")
        assert r.returncode == summary["exit_code"] != 0, r.stdout + r.stderr
        assert _jobs(slurm, f"gpufleet-verify-{run_dir.name}") == []
        assert {slurm.jobs(b)[0]["JobState"] for b in blockers} == {"RUNNING"}  # the other jobs left alone
    finally:
        slurm.run("scancel", *map(str, blockers))
    slurm.wait_nodes("idle", timeout=60)


def _running(slurm, jobs: list) -> None:
    deadline = time.monotonic() + 60  # a ceiling
    while {slurm.jobs(j)[0]["JobState"] for j in jobs} != {"RUNNING"} and time.monotonic() < deadline:
        time.sleep(0.2)
    assert {slurm.jobs(j)[0]["JobState"] for j in jobs} == {"RUNNING"}


def test_verify_via_slurm_multinode_a_crashed_node_fails_and_the_nodes_it_stopped_say_so(fleet, slurm, tmp_path):
    """rank-exit: sl-3's rank exits abruptly in the collectives stage: sl-3's torchrun exits 1 with no report and
    fails; the others' all_reduce breaks, their reports say the run aborted (status error) and their messages name
    the crash, as stopped_members says over SSH.  The job ends FAILED (srun: the worst task's exit status)."""
    slurm.wait_nodes("idle", timeout=60)
    r = _gpufleet(fleet, tmp_path / "reports", inventory=_planted(fleet, tmp_path, "sl-3", "rank-exit"))
    assert r.returncode == 1, r.stdout + r.stderr
    run_dir = last_run(tmp_path / "reports")
    summary = json.loads((run_dir / "summary.json").read_text())
    job = _one_job(slurm, run_dir.name)
    assert job["JobState"] == "FAILED"
    assert {h: (e["status"], e["state"], e["message"]) for h, e in summary["hosts"].items() if h != "sl-3"} == {
        h: ("error", "ok", f"stopped: rank 2 on sl-3 exited (Slurm job {job['JobId']} on gpu1,gpu2,gpu3 (node_rank "
                           f"{i}))") for i, h in enumerate(("sl-1", "sl-2"))}
    crashed = summary["hosts"]["sl-3"]
    assert (crashed["status"], crashed["state"]) == ("fail", "failed")
    assert crashed["message"].startswith("verify exited 1 and wrote no report: "), crashed["message"]
    assert not (fleet["shared"] / run_dir.name / "sl-3" / "report.json").exists()
    assert {h: (fleet["shared"] / run_dir.name / h / "exit").read_text() for h in HOSTS} == {
        "sl-1": "1\n", "sl-2": "1\n", "sl-3": "1\n"}


def test_ctrl_c_cancels_the_multinode_job(fleet, slurm, tmp_path):
    """Ctrl-C while the job runs (sl-3's rank hangs, the others wait for it): the job is cancelled, every host
    ``interrupted``, gpufleet exits 130."""
    import signal

    from tests.slurmcluster import free_ports

    slurm.wait_nodes("idle", timeout=60)
    out = tmp_path / "reports"
    hanging = _planted(fleet, tmp_path, "sl-3", "rank-hang")
    proc = subprocess.Popen(
        [sys.executable, "-m", "fleet.cli", "verify", "--via", "slurm", "--multinode", "--shared-dir",
         str(fleet["shared"]), "--hosts", "gpu-nodes", "--inventory", str(hanging),
         "--out", str(out), "--no-history", "--nproc", "1", "--checks", "collectives", "--timeout", "240",
         "--rdzv-port", str(free_ports(1)[0])],
        cwd=REPO, env=fleet["env"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 240  # a ceiling: the push and the job's start on a loaded machine
    jobs: list = []
    while time.monotonic() < deadline and not (jobs and jobs[0]["JobState"] == "RUNNING"):
        runs = [p for p in out.iterdir() if p.is_dir()] if out.exists() else []
        jobs = _jobs(slurm, f"gpufleet-verify-{runs[0].name}") if runs else []
        time.sleep(0.5)
    assert len(jobs) == 1 and jobs[0]["JobState"] == "RUNNING", jobs
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)  # a ceiling, not a measure
    assert proc.returncode == 130, stdout + stderr
    assert slurm.jobs(jobs[0]["JobId"])[0]["JobState"] == "CANCELLED"
    run = json.loads((last_run(out) / "run.json").read_text())
    assert run["interrupted"] is True
    assert {h["state"] for h in run["hosts"]} == {"interrupted"}
    slurm.wait_nodes("idle", timeout=60)


# ------------------------------------------------------------------------- --pairwise, each pair a job

def _pairs(run_dir: Path) -> list[tuple]:
    return [(sorted(p["hosts"]), p["round"], p["status"]) for p in json.loads((run_dir / "summary.json").read_text())
            ["pairs"]]


def test_verify_via_slurm_pairwise_names_the_node_with_a_wrong_all_reduce_and_sync_drains_it_alone(fleet, slurm,
                                                                                                   tmp_path):
    """The three nodes: round 1 is one job over the three (pair_up's group of three), wrong; nothing is cleared, so
    sl-1 and sl-2 run as a pair, a job of two nodes, and are good: sl-3, bad with both, is the culprit.  The fault
    (allreduce-wrong on sl-3) follows the node whatever its rank.  slurm-sync's plan drains sl-3 and only sl-3."""
    slurm.wait_nodes("idle", timeout=60)
    out = tmp_path / "reports"
    r = _gpufleet(fleet, out, "--pairwise", inventory=_planted(fleet, tmp_path, "sl-3", "allreduce-wrong"))
    assert r.returncode == 1, r.stdout + r.stderr
    run_dir = last_run(out)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert {h: (e["status"], e["culprit"]) for h, e in summary["hosts"].items()} == {
        "sl-1": ("pass", False), "sl-2": ("pass", False), "sl-3": ("fail", True)}
    assert [c["host"] for c in summary["culprits"]] == ["sl-3"] and summary["unsettled"] == []
    assert _pairs(run_dir) == [(["sl-1", "sl-2", "sl-3"], 1, "wrong"), (["sl-1", "sl-2"], 2, "pass")]
    assert json.loads((run_dir / "run.json").read_text())["via"] == "slurm"
    [first] = _jobs(slurm, f"gpufleet-verify-{run_dir.name}-r1")
    [second] = _jobs(slurm, f"gpufleet-verify-{run_dir.name}-r2")
    assert [(j["JobState"], j["NumNodes"], j["NodeList"]) for j in (first, second)] == [
        ("COMPLETED", "3", "gpu[1-3]"), ("COMPLETED", "2", "gpu[1-2]")]
    plan = sync(fleet, run_dir, "--json", str(tmp_path / "plan.json"))  # a dry run
    assert plan.returncode == 0, plan.stdout + plan.stderr
    doc = json.loads((tmp_path / "plan.json").read_text())
    assert {a["host"]: a["action"] for a in doc["actions"]} == {"sl-1": "none", "sl-2": "none", "sl-3": "drain"}
    assert [a["reason"] for a in doc["actions"] if a["action"] == "drain"][0].startswith(
        f"gpufleet: pairwise culprit (run {run_dir.name})")
    assert {reason(slurm, n)[0] for n in HOSTS.values()} == {"IDLE"}  # nothing applied


def test_verify_via_slurm_pairwise_a_hung_pair_ends_at_its_pair_timeout_its_job_cancelled(fleet, slurm, tmp_path):
    """rank-hang on sl-3: the group of three hangs; gpufleet cancels its job once it has run --pair-timeout
    (Slurm's --time is past it), then sl-1 and sl-2 pass as a pair: sl-3 is the culprit, hung.  Nothing of the
    run is left running or queued."""
    slurm.wait_nodes("idle", timeout=60)
    out = tmp_path / "reports"
    r = _gpufleet(fleet, out, "--pairwise", "--pair-timeout", "120",
                  inventory=_planted(fleet, tmp_path, "sl-3", "rank-hang"))
    assert r.returncode == 1, r.stdout + r.stderr
    run_dir = last_run(out)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert {h: e["status"] for h, e in summary["hosts"].items()} == {"sl-1": "pass", "sl-2": "pass", "sl-3": "fail"}
    assert _pairs(run_dir) == [(["sl-1", "sl-2", "sl-3"], 1, "hang"), (["sl-1", "sl-2"], 2, "pass")]
    [hung] = _jobs(slurm, f"gpufleet-verify-{run_dir.name}-r1")
    assert hung["JobState"] == "CANCELLED"
    first = json.loads((run_dir / "pairs" / "r1-0" / "run.json").read_text())
    assert {h["state"] for h in first["hosts"]} == {"timed_out"}
    assert {h["message"] for h in first["hosts"]} == {f"Slurm job {hung['JobId']} ran past 120 s: cancelled"}
    assert slurm.run("squeue", "-h", "-n", f"gpufleet-verify-{run_dir.name}-r1").stdout == ""
    _nothing_left_running(slurm, run_dir.name)


def test_verify_via_slurm_pairwise_leaves_a_busy_node_out_in_its_state(fleet, slurm, tmp_path):
    """A node running someone's job is left out of the pairing (busy, a skip) and never paired; the two others
    are a pair, one job of two nodes."""
    slurm.wait_nodes("idle", timeout=60)
    blocker = slurm.sbatch("--nodelist=gpu2", "--exclusive", "--wrap=sleep 600")
    try:
        _running(slurm, [blocker])
        r = _gpufleet(fleet, tmp_path / "reports", "--pairwise")
        assert r.returncode == 0, r.stdout + r.stderr
        run_dir = last_run(tmp_path / "reports")
        summary = json.loads((run_dir / "summary.json").read_text())
        assert {h: (e["status"], e["state"]) for h, e in summary["hosts"].items()} == {
            "sl-1": ("pass", "ok"), "sl-2": ("skipped", "busy"), "sl-3": ("pass", "ok")}
        assert summary["hosts"]["sl-2"]["message"].startswith("node gpu2 is ")
        assert _pairs(run_dir) == [(["sl-1", "sl-3"], 1, "pass")]
        [job] = _jobs(slurm, f"gpufleet-verify-{run_dir.name}-r1")
        assert (job["JobState"], job["NodeList"]) == ("COMPLETED", "gpu[1,3]")
        assert slurm.jobs(blocker)[0]["JobState"] == "RUNNING"  # left alone
    finally:
        slurm.run("scancel", str(blocker))
    slurm.wait_nodes("idle", timeout=60)


def _nothing_left_running(slurm, run_id: str) -> None:
    """The nodes idle again and no process of the run left on this machine (Slurm kills a cancelled step's
    processes within KillWait, 5 s: 60 s is a ceiling)."""
    slurm.wait_nodes("idle", timeout=60)
    deadline = time.monotonic() + 60
    while _processes_of(run_id) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _processes_of(run_id) == []


def _processes_of(run_id: str) -> list[str]:
    """The command lines of this machine's processes that name ``run_id`` (torchrun's --rdzv_id, verify's --out)."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            line = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if entry.isdigit() and run_id in line and int(entry) != os.getpid():
            found.append(line)
    return found


# ------------------------------------------------------------------------- --one-job: the idle nodes in one job
# (the three idle nodes' single-node checks as ONE job, one srun task per node, each node judged alone)

def _counting(tmp_path: Path, env: dict) -> tuple[dict, Path]:
    """``env`` with ``sbatch`` and ``squeue`` on the PATH as wrappers that log each call (one line) to a file, then
    run the real program: how many times gpufleet ran each."""
    wrappers, log = tmp_path / "bin", tmp_path / "calls.log"
    wrappers.mkdir()
    for name in ("sbatch", "squeue"):
        real = subprocess.run(["sh", "-c", f"command -v {name}"], capture_output=True, text=True,
                              env=env).stdout.strip()
        (wrappers / name).write_text(f'#!/bin/sh\necho {name} >>"{log}"\nexec "{real}" "$@"\n')
        (wrappers / name).chmod(0o755)
    return {**env, "PATH": f"{wrappers}{os.pathsep}{env['PATH']}"}, log


def _verify_one_job(fleet, out: Path, *extra: str, inventory: Path | None = None, env: dict | None = None,
             nproc: str = "1", timeout: str = "240") -> subprocess.CompletedProcess:
    """``gpufleet verify --via slurm --one-job`` on the three hosts, from the repository (the job's submit
    directory)."""
    argv = [sys.executable, "-m", "fleet.cli", "verify", "--via", "slurm", "--one-job", "--shared-dir",
            str(fleet["shared"]), "--hosts", "gpu-nodes", "--inventory", str(inventory or fleet["inv"]), "--out",
            str(out), "--no-history", "--nproc", nproc, "--checks", "collectives", "--timeout", timeout, *extra]
    return subprocess.run(argv, cwd=REPO, env=env or fleet["env"], capture_output=True, text=True, timeout=900)


def _one_job_ran(r: subprocess.CompletedProcess, out: Path, code: int) -> tuple[Path, dict]:
    """The run's exit status checked; its run directory and summary."""
    assert r.returncode == code, r.stdout + r.stderr
    run_dir = last_run(out)
    return run_dir, json.loads((run_dir / "summary.json").read_text())


def test_one_job_checks_the_three_idle_nodes_in_one_submission(fleet, slurm, tmp_path):
    """Three idle nodes: one sbatch (counted at the program), one job over the three nodes, each node's own report
    and verdict, each host's message naming the one job."""
    slurm.wait_nodes("idle", timeout=60)
    env, calls = _counting(tmp_path, fleet["env"])
    run_dir, summary = _one_job_ran(_verify_one_job(fleet, tmp_path / "reports", env=env), tmp_path / "reports", 0)
    assert calls.read_text().splitlines().count("sbatch") == 1
    assert {h: e["status"] for h, e in summary["hosts"].items()} == {"sl-1": "pass", "sl-2": "pass", "sl-3": "pass"}
    run = json.loads((run_dir / "run.json").read_text())
    assert (run["via"], run["multinode"]) == ("slurm", False)
    [job] = _jobs(slurm, f"gpufleet-verify-{run['run_id']}")
    assert (job["JobState"], job["NumNodes"], job["NodeList"], job["WorkDir"]) == ("COMPLETED", "3", "gpu[1-3]",
                                                                                   str(REPO))
    assert {h["host"]: h["message"] for h in run["hosts"]} == {
        host: f"Slurm job {job['JobId']} on {node} (one job for 3 nodes)" for host, node in HOSTS.items()}
    assert {h["push"]["directory"].startswith(f"{fleet['remote']}/verify-") for h in run["hosts"]} == {True}
    shared = fleet["shared"] / run["run_id"]
    assert {h["host"]: ((run_dir / h["report"]).read_bytes() == (shared / h["host"] / "report.json").read_bytes(),
                        (shared / h["host"] / "exit").read_text(),
                        json.loads((shared / h["host"] / "report.json").read_text())["world"]["world_size"])
            for h in run["hosts"]} == {h: (True, "0\n", 1) for h in HOSTS}  # each node's own single-node run


def test_one_job_a_fault_on_one_node_fails_that_node_alone(fleet, slurm, tmp_path):
    """allreduce-wrong planted on sl-2: its own single-node run fails collectives/allreduce_correct; sl-1 and sl-3,
    in the same job, pass."""
    slurm.wait_nodes("idle", timeout=60)
    planted = _planted(fleet, tmp_path, "sl-2", "allreduce-wrong")
    out = tmp_path / "reports"
    run_dir, summary = _one_job_ran(_verify_one_job(fleet, out, inventory=planted), out, 1)
    assert {h: e["status"] for h, e in summary["hosts"].items()} == {"sl-1": "pass", "sl-2": "fail", "sl-3": "pass"}
    assert summary["hosts"]["sl-2"]["failing_checks"] == [{
        "name": "collectives/allreduce_correct", "status": "fail",
        "message": "all_reduce result differs from the sum of the ranks' contributions: rank 0 at 4KiB (1 wrong), "
                   "rank 0 at 256KiB (1 wrong), rank 0 at 4MiB (1 wrong)"}]
    [job] = _jobs(slurm, f"gpufleet-verify-{run_dir.name}")
    assert (job["JobState"], job["NumNodes"]) == ("COMPLETED", "3")


def test_one_job_a_hung_node_times_out_alone_and_nothing_is_left_running(fleet, slurm, tmp_path):
    """rank-hang planted on sl-3 (its last of two ranks sleeps; verify's process-group timeout, 300 s, is longer
    than the run's): sl-1 and sl-2 finish and pass; gpufleet cancels the job once it has run --timeout, and sl-3,
    with no exit status, is ``timed_out``.  Nothing of the run is left queued or running."""
    slurm.wait_nodes("idle", timeout=60)
    planted = _planted(fleet, tmp_path, "sl-3", "rank-hang")
    r = _verify_one_job(fleet, tmp_path / "reports", inventory=planted, nproc="2", timeout="180")
    run_dir, summary = _one_job_ran(r, tmp_path / "reports", 1)
    [job] = _jobs(slurm, f"gpufleet-verify-{run_dir.name}")
    assert {h: (e["status"], e["state"]) for h, e in summary["hosts"].items()} == {
        "sl-1": ("pass", "ok"), "sl-2": ("pass", "ok"), "sl-3": ("error", "timed_out")}
    assert summary["hosts"]["sl-3"]["message"] == f"Slurm job {job['JobId']} ran past 180 s: cancelled"
    assert job["JobState"] == "CANCELLED"
    shared = fleet["shared"] / run_dir.name
    assert {h: (shared / h / "exit").exists() for h in HOSTS} == {"sl-1": True, "sl-2": True, "sl-3": False}
    assert slurm.run("squeue", "-h", "-j", job["JobId"]).stdout == ""  # neither pending nor running
    _nothing_left_running(slurm, run_dir.name)


def test_one_job_leaves_a_busy_node_to_its_per_node_path(fleet, slurm, tmp_path):
    """A node running someone's job is not in the one job: ``busy`` (a skip) as without --one-job, its job left
    alone; the two idle nodes are the job's members."""
    slurm.wait_nodes("idle", timeout=60)
    blocker = slurm.sbatch("--nodelist=gpu2", "--exclusive", "--wrap=sleep 600")
    try:
        _running(slurm, [blocker])
        run_dir, summary = _one_job_ran(_verify_one_job(fleet, tmp_path / "reports"), tmp_path / "reports", 0)
        assert {h: (e["status"], e["state"]) for h, e in summary["hosts"].items()} == {
            "sl-1": ("pass", "ok"), "sl-2": ("skipped", "busy"), "sl-3": ("pass", "ok")}
        assert summary["hosts"]["sl-2"]["message"] == ("node gpu2 is allocated (running jobs): not checked; --wait "
                                                       "queues behind them")
        [job] = _jobs(slurm, f"gpufleet-verify-{run_dir.name}")
        assert (job["JobState"], job["NumNodes"], job["NodeList"]) == ("COMPLETED", "2", "gpu[1,3]")
        assert summary["hosts"]["sl-1"]["message"] == f"Slurm job {job['JobId']} on gpu1 (one job for 2 nodes)"
        assert slurm.jobs(blocker)[0]["JobState"] == "RUNNING"
    finally:
        slurm.run("scancel", str(blocker))
    slurm.wait_nodes("idle", timeout=60)


# ------------------------------------------------------------------------- gpufleet-check as HealthCheckProgram
# (last: its cluster's health checks run every 5 s on four nodes while it lives, a load the runs above need not carry)

@pytest.fixture(scope="module")
def health_cluster(tmp_path_factory):
    """A cluster of its own whose HealthCheckProgram is gpufleet-check --drain.  gpu1 and gpu2 are checked against
    an expectation file (one GPU): gpu1's nvidia-smi reports a healthy RTX 3090, gpu2's a lost GPU.  gpu3 and gpu4
    have no expectation file: Slurm schedules one GPU on gpu3 (Gres=gpu:1), which shows a healthy RTX 3090, and
    two on gpu4 (Gres=gpu:2), which shows only one."""
    from tests.slurmcluster import SlurmCluster, missing_tools

    if missing_tools():
        pytest.skip(f"Slurm/munge not installed (no {', '.join(missing_tools())}): see .ci/run")
    base = tmp_path_factory.mktemp("hc")
    wrapper = base / "health-check"
    cluster = SlurmCluster(base / "c", nodes=4, gpus={"gpu3": 1, "gpu4": 2},
                           extra_conf=[f"HealthCheckProgram={wrapper}", "HealthCheckInterval=5",
                                       "HealthCheckNodeState=ANY"])
    expect = base / "expect.yaml"
    expect.write_text("gpufleet_gpu_count: 1\n")
    for node in cluster.nodes:
        b = base / "bin" / node.name
        b.mkdir(parents=True)
        (b / "nvidia-smi").write_text(fake_nvidia_smi("rtx-3090-v12.xml", "lost" if node.name == "gpu2" else "ok"))
        (b / "lspci").write_text(fake_lspci(1, slots=fixture_slots("rtx-3090-v12.xml")))
        for tool in b.iterdir():
            tool.chmod(0o755)
        (base / f"args-{node.name}").write_text(f'--expect "{expect}"' if node.name in ("gpu1", "gpu2") else "")
    # Each slurmd sees its own run directory at the path slurm.conf names: the wrapper learns its node there.
    wrapper.write_text(
        "#!/bin/sh\n"
        f'node=$(cat "{cluster.node_mount}/run/gpufleet-node" 2>/dev/null) || exit 0\n'
        f'PATH="{base}/bin/$node:/usr/bin:/bin"; export PATH\n'
        f'PYTHONPATH="{REPO}"; export PYTHONPATH\n'
        f'SLURM_CONF="{cluster.conf}"; export SLURM_CONF\n'
        f'eval "set -- $(cat "{base}/args-$node")"\n'
        f'exec {sys.executable} -m fleet.nodecheck "$@" --drain --node "$node" '
        f'>> "{base}/check-$node.log" 2>&1\n')
    wrapper.chmod(0o755)
    for node in cluster.nodes:
        node.run_dir.mkdir(parents=True, exist_ok=True)
        (node.run_dir / "gpufleet-node").write_text(node.name + "\n")
    cluster.start()
    try:
        yield cluster, base
    finally:
        cluster.stop()


def _drained(cluster, base, node: str) -> dict:
    """The node's fields once the health check drained it (within a generous ceiling)."""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if cluster.show_node(node).get("State") == "IDLE+DRAIN":
            break
        time.sleep(1)
    f = cluster.show_node(node)
    log = base / f"check-{node}.log"
    assert f["State"] == "IDLE+DRAIN", log.read_text() if log.exists() else f
    return f


def test_gpufleet_check_as_health_check_program_drains_the_faulty_node(health_cluster):
    cluster, base = health_cluster
    f = _drained(cluster, base, "gpu2")
    assert f["Reason"].startswith("gpufleet: nvidia-smi (gpufleet-check) [")
    log = (base / "check-gpu2.log").read_text()
    assert "gpufleet-check: FAIL: nvidia-smi:" in log and "drained gpu2" in log
    healthy = (base / "check-gpu1.log").read_text()
    assert "gpufleet-check: ok:" in healthy


def test_gpufleet_check_without_expectations_holds_a_node_to_the_gpus_slurm_schedules(health_cluster):
    cluster, base = health_cluster
    f = _drained(cluster, base, "gpu4")
    assert f["Gres"] == "gpu:2"
    assert f["Reason"].startswith("gpufleet: gpu-count:slurm (gpufleet-check) [")
    # (a check run while slurmd was still registering says "not drained again: gpu4 is already unknown")
    assert ("gpufleet-check: FAIL: gpu-count:slurm: Slurm schedules 2 GPU(s) on gpu4 (Gres=gpu:2) but only 1 work here "
            "(nvidia-smi 1, PCI bus 1, driver unknown) [drained gpu4: gpufleet: gpu-count:slurm (gpufleet-check)]"
            in (base / "check-gpu4.log").read_text().splitlines())
    deadline = time.monotonic() + 90  # gpu3 has what Slurm schedules: checked, and left in service
    while time.monotonic() < deadline and not (base / "check-gpu3.log").exists():
        time.sleep(1)
    assert (base / "check-gpu3.log").read_text().splitlines()[0].startswith("gpufleet-check: ok: ")
    assert {n: cluster.show_node(n)["State"] for n in ("gpu1", "gpu3")} == {"gpu1": "IDLE", "gpu3": "IDLE"}


# ------------------------------------------------------------------------- Slurm's errors, one line

DATA = Path(__file__).parent / "data" / "slurm"


@pytest.mark.parametrize("capture, cause", [
    ("scontrol-show-node-unreachable.stderr", "Unable to contact slurm controller (connect failure)"),
    ("sbatch-unreachable.stderr", "Batch job submission failed: Unable to contact slurm controller (connect failure)"),
    ("scontrol-show-node-no-conf.stderr", "Unable to process configuration file (s_p_parse_file: cannot stat file "
                                          "/tmp/sd-probe/none.conf: No such file or directory)"),
    ("scontrol-show-node-configless.stderr", "Could not establish a configuration source (resolve_ctls_from_dns_srv: "
                                             "res_nsearch error: Unknown host)"),
])
def test_the_cause_of_a_slurm_error_is_one_line(capture, cause):
    from fleet.slurm.client import cause as cause_of

    assert cause_of((DATA / capture).read_text()) == cause


@pytest.mark.parametrize("argv, name", [
    (["scontrol", "-o", "show", "node", "gpu1,gpu2"], "scontrol show node"),
    (["scontrol", "update", "NodeName=gpu1", "State=DRAIN", "Reason=gpufleet: x"], "scontrol update"),
    (["sbatch", "--parsable", "--nodelist=gpu1", "--wrap=cd /x && y"], "sbatch"),
    (["squeue", "--noheader", "--jobs=1,2"], "squeue"),
])
def test_a_failed_slurm_command_is_named_without_its_options(argv, name):
    from fleet.slurm.client import command_name

    assert command_name(argv) == name


def test_an_unreachable_controller_is_one_line_naming_the_command_and_the_cause(slurm, tmp_path, monkeypatch):
    """The real scontrol, with the test cluster's slurm.conf but a controller port nothing listens on."""
    from fleet.slurm.client import SlurmClient, SlurmError
    from tests.slurmcluster import free_ports

    conf = tmp_path / "slurm.conf"
    conf.write_text(re.sub(r"(?m)^SlurmctldPort=\d+$", f"SlurmctldPort={free_ports(1)[0]}", slurm.conf.read_text()))
    assert conf.read_text() != slurm.conf.read_text()
    monkeypatch.setenv("SLURM_CONF", str(conf))
    with pytest.raises(SlurmError) as e:
        SlurmClient().nodes(["gpu1"])
    assert str(e.value) == "scontrol show node failed (exit 1): Unable to contact slurm controller (connect failure)"
