"""Nodes gpufleet drained, re-checked as Slurm jobs inside the maintenance reservation gpufleet holds for the run
(fleet/slurm/reservation.py, fleet.slurm.jobs.recheck_window).

The pure parts first (the exact scontrol argv, the routes, the window's commands against a scripted runner), then
against the real Slurm the suite starts (tests/slurmcluster.py), with the hosts and helpers of
tests/test_slurm_e2e.py: every end-to-end test leaves every node resumed and no reservation behind."""

from __future__ import annotations

import json

import pytest

from fleet.inventory import Host
from fleet.slurm import reservation
from fleet.slurm.client import Result, SlurmClient
from fleet.slurm.nodes import SlurmNode
from tests.test_slurm_e2e import (
    HOSTS, _planted, _vars, last_run, login_home, reason, removing_what_appears, sync, verify,
)

# `scontrol -o show reservation gpufleet-recheck` of Debian's Slurm 22.05.8 (the suite's cluster), for a
# reservation made by reservation.create_argv(["gpu2", "gpu3"], 16, "root")
SHOW = ("ReservationName=gpufleet-recheck StartTime=2026-12-07T06:38:42 EndTime=2026-12-07T06:54:42 "
        "Duration=00:16:00 Nodes=gpu[2-3] NodeCnt=2 CoreCnt=4 Features=(null) PartitionName=(null) "
        "Flags=MAINT,IGNORE_JOBS,SPEC_NODES TRES=cpu=4 Users=root Groups=(null) Accounts=(null) Licenses=(null) "
        "State=ACTIVE BurstBuffer=(null) Watts=n/a MaxStartDelay=(null)\n")
OURS = "gpufleet: collectives/allreduce_correct (run 20261201T020000Z)"


# ------------------------------------------------------------------------- pure

def test_the_reservation_commands_exactly():
    assert reservation.create_argv(["gpu2", "gpu3"], 16, "ops") == [
        "scontrol", "create", "reservation", "ReservationName=gpufleet-recheck", "Nodes=gpu2,gpu3", "StartTime=now",
        "Duration=16", "Users=ops", "Flags=maint,ignore_jobs"]
    assert reservation.update_argv(["gpu2"], 16, "ops") == [
        "scontrol", "update", "ReservationName=gpufleet-recheck", "Nodes=gpu2", "EndTime=now+16minutes", "Users=ops"]
    assert reservation.delete_argv() == ["scontrol", "delete", "ReservationName=gpufleet-recheck"]
    assert reservation.show_argv() == ["scontrol", "-o", "show", "reservation", "gpufleet-recheck"]


def test_the_reservation_lasts_a_job_s_whole_life_and_a_margin():
    assert reservation.minutes(240, 120) == 16  # 6 minutes pending + running, 10 for the push and the drain
    assert reservation.minutes(1800, 1800) == 70
    assert reservation.minutes(1, 0) == 11


def test_a_reservation_is_read_and_judged_gpufleet_s_by_its_name_and_maint_flag():
    info = reservation.parse_show(SHOW)
    assert (info["ReservationName"], info["Nodes"], info["Users"]) == ("gpufleet-recheck", "gpu[2-3]", "root")
    assert reservation.flags(info) == {"MAINT", "IGNORE_JOBS", "SPEC_NODES"}
    assert reservation.is_ours(info)
    assert not reservation.is_ours({**info, "Flags": "SPEC_NODES"})  # someone's reservation of that name
    assert not reservation.is_ours({**info, "ReservationName": "maint-week"})
    assert reservation.parse_show("Reservation gpufleet-recheck not found\n") is None


def test_slurm_host_lists():
    assert reservation.hostnames("gpu[2-3]") == ["gpu2", "gpu3"]
    assert reservation.hostnames("gpu[2-3,7],login01") == ["gpu2", "gpu3", "gpu7", "login01"]
    assert reservation.hostnames("n[008-010]-ib") == ["n008-ib", "n009-ib", "n010-ib"]
    assert reservation.hostnames("(null)") == [] and reservation.hostnames("") == []
    for bad in ("a[1-2]b[3]", "a[x]", "a[1"):
        with pytest.raises(ValueError, match="malformed host list"):
            reservation.hostnames(bad)


def test_route_rechecks_only_nodes_gpufleet_drained_that_run_no_jobs():
    from fleet.slurm.jobs import route

    nodes = {"gpu1": SlurmNode("gpu1", "IDLE+DRAIN", OURS), "gpu2": SlurmNode("gpu2", "MIXED+DRAIN", OURS),
             "gpu3": SlurmNode("gpu3", "IDLE+DRAIN", "maintenance", "root"),
             "gpu4": SlurmNode("gpu4", "DOWN+DRAIN+NOT_RESPONDING", OURS), "gpu5": SlurmNode("gpu5", "IDLE")}
    hosts = [Host(n) for n in nodes]
    r = route(hosts, nodes, wait=False, recheck_via="slurm")
    assert {h: x.how for h, x in r.items()} == {"gpu1": "recheck", "gpu2": "busy", "gpu3": "unavailable",
                                                "gpu4": "ssh", "gpu5": "slurm"}
    assert (r["gpu1"].reason, r["gpu1"].why) == (OURS, f"drained by gpufleet ({OURS}): re-checked in reservation "
                                                       f"gpufleet-recheck")
    assert r["gpu2"].why == ("node gpu2 is mixed+drain (drained by gpufleet, still running jobs): not re-checked")
    assert route(hosts, nodes, wait=True, recheck_via="slurm")["gpu2"].how == "busy"  # not queued behind them
    assert {h: x.how for h, x in route(hosts, nodes, wait=False, recheck_via="ssh").items()} == {
        "gpu1": "ssh", "gpu2": "busy", "gpu3": "unavailable", "gpu4": "ssh", "gpu5": "slurm"}


def test_a_recheck_job_asks_for_the_reservation():
    from fleet.runs.node import VerifySettings
    from fleet.slurm.jobs import SlurmSettings, job_options

    s = VerifySettings(timeout=240, run_id="20261207T060000Z")
    opts = job_options(Host("sl-2"), "gpu2", s, SlurmSettings("/shared", qos="q"), "/shared/x/slurm-%j.out",
                       "gpufleet-recheck")
    assert opts == ["--nodelist=gpu2", "--nodes=1", "--exclusive", "--job-name=gpufleet-verify-20261207T060000Z",
                    "--time=5", "--output=/shared/x/slurm-%j.out", "--open-mode=append",
                    "--reservation=gpufleet-recheck", "--qos=q"]


class ScriptedSlurm:
    """A runner with the answers of the real commands (synthetic node lines; the reservation's is :data:`SHOW`'s
    form): ``existing`` the reservation's ``show`` output (None: not found), ``states`` each node's state as
    ``scontrol -o show node`` gives it, changed by the ``update`` commands it is sent; records every command."""

    def __init__(self, existing: str | None, states: dict[str, tuple[str, str]]):
        self.existing, self.states, self.calls = existing, dict(states), []

    def __call__(self, argv, timeout):
        self.calls.append(argv)
        if argv[:4] == ["scontrol", "-o", "show", "reservation"]:
            return Result(0, self.existing, "") if self.existing else Result(1, f"Reservation {argv[4]} not found\n",
                                                                              "")
        if argv[:4] == ["scontrol", "-o", "show", "node"]:
            names = argv[4].split(",")
            return Result(0, "".join(f"NodeName={n} State={self.states[n][0]} Reason={self.states[n][1] or '(null)'}"
                                     f"\n" for n in names), "")
        if argv[:2] == ["scontrol", "update"] and argv[2].startswith("NodeName="):
            node = argv[2].split("=", 1)[1]
            self.states[node] = ("IDLE+DRAIN", argv[4].split("=", 1)[1]) if argv[3] == "State=DRAIN" else ("IDLE", "")
        if argv == ["id", "-un"]:
            return Result(0, "ops\n", "")
        return Result(0, "", "")


def _window(runner: ScriptedSlurm, routes: dict, body=lambda held: None, recheck_via: str = "slurm"):
    from fleet.runs.node import VerifySettings
    from fleet.slurm.jobs import JobBook, SlurmSettings, recheck_window

    client = SlurmClient(runner)
    notes: list = []
    s = VerifySettings(timeout=240, run_id="20261207T060000Z")
    with recheck_window(client, SlurmSettings("/shared", recheck_via=recheck_via), routes, s, JobBook(client),
                        notes.append, clock=lambda: 0.0, sleep=lambda _: None) as held:
        body(held)
    return held, notes


def test_the_window_creates_the_reservation_then_drains_the_node_again_and_deletes_it():
    from fleet.slurm.jobs import Route

    runner = ScriptedSlurm(None, {"gpu2": ("IDLE+DRAIN", OURS)})
    routes = {"sl-1": Route("slurm", "gpu1"), "sl-2": Route("recheck", "gpu2", "drained by gpufleet", OURS)}

    def job(held):  # what the host's task does: resume the node just before its job
        assert held == routes
        runner.states["gpu2"] = ("IDLE+MAINTENANCE+RESERVED", "")
        runner.calls.append(["(the run)"])

    held, notes = _window(runner, routes, job)
    assert runner.calls == [
        ["scontrol", "-o", "show", "reservation", "gpufleet-recheck"],
        ["id", "-un"],
        ["scontrol", "create", "reservation", "ReservationName=gpufleet-recheck", "Nodes=gpu2", "StartTime=now",
         "Duration=16", "Users=ops", "Flags=maint,ignore_jobs"],
        ["(the run)"],
        ["scontrol", "-o", "show", "node", "gpu2"],
        ["scontrol", "update", "NodeName=gpu2", "State=DRAIN", f"Reason={OURS}"],
        ["scontrol", "delete", "ReservationName=gpufleet-recheck"]]
    assert notes == []


def test_the_window_drains_and_deletes_also_when_the_run_fails():
    from fleet.slurm.jobs import Route

    runner = ScriptedSlurm(None, {"gpu2": ("IDLE+DRAIN", OURS)})

    def broken(held):
        runner.states["gpu2"] = ("IDLE+MAINTENANCE+RESERVED", "")
        raise OSError("the run broke")

    with pytest.raises(OSError, match="the run broke"):
        _window(runner, {"sl-2": Route("recheck", "gpu2", "", OURS)}, broken)
    assert runner.calls[-2:] == [["scontrol", "update", "NodeName=gpu2", "State=DRAIN", f"Reason={OURS}"],
                                 ["scontrol", "delete", "ReservationName=gpufleet-recheck"]]


def test_a_node_someone_drained_meanwhile_keeps_their_reason():
    from fleet.slurm.jobs import Route

    runner = ScriptedSlurm(None, {"gpu2": ("IDLE+DRAIN", OURS)})

    def admin(held):
        runner.states["gpu2"] = ("IDLE+DRAIN+MAINTENANCE+RESERVED", "disk swap [root@2026-12-07T06:40:00]")

    _window(runner, {"sl-2": Route("recheck", "gpu2", "", OURS)}, admin)
    assert not [c for c in runner.calls if c[:2] == ["scontrol", "update"]]
    assert runner.calls[-1] == ["scontrol", "delete", "ReservationName=gpufleet-recheck"]


def test_a_reservation_of_that_name_that_is_not_gpufleet_s_is_left_alone():
    from fleet.slurm.jobs import Route

    runner = ScriptedSlurm(SHOW.replace("Flags=MAINT,IGNORE_JOBS,SPEC_NODES", "Flags=SPEC_NODES"),
                           {"gpu2": ("IDLE+DRAIN", OURS)})
    held, _ = _window(runner, {"sl-2": Route("recheck", "gpu2", "", OURS)})
    assert held["sl-2"] == Route("error", "gpu2", "reservation gpufleet-recheck exists and is not gpufleet's "
                                                  "(Flags=SPEC_NODES, no MAINT): not re-checked; delete it, or "
                                                  "--recheck-via ssh")
    assert runner.calls == [["scontrol", "-o", "show", "reservation", "gpufleet-recheck"]]


def test_an_earlier_run_s_reservation_is_reused_and_the_node_it_left_in_service_drained_again():
    from fleet.slurm.jobs import Route

    # the earlier run resumed gpu3 for its re-check and died: gpu3 is in the reservation, not drained
    runner = ScriptedSlurm(SHOW, {"gpu2": ("IDLE+DRAIN", OURS), "gpu3": ("IDLE+MAINTENANCE+RESERVED", "")})
    routes = {"sl-2": Route("recheck", "gpu2", "", OURS), "sl-3": Route("slurm", "gpu3")}
    held, _ = _window(runner, routes)
    cut = "gpufleet: re-check cut short (run 20261207T060000Z)"
    assert held["sl-3"] == Route("unavailable", "gpu3", f"node gpu3 was left in service by an earlier run's "
                                                        f"re-check: drained again ({cut}); re-checked next run")
    assert held["sl-2"] == routes["sl-2"]
    assert runner.calls[:5] == [
        ["scontrol", "-o", "show", "reservation", "gpufleet-recheck"],
        ["scontrol", "-o", "show", "node", "gpu2,gpu3"],
        ["scontrol", "update", "NodeName=gpu3", "State=DRAIN", f"Reason={cut}"],
        ["id", "-un"],
        ["scontrol", "update", "ReservationName=gpufleet-recheck", "Nodes=gpu2", "EndTime=now+16minutes",
         "Users=ops"]]


def test_without_a_recheck_nothing_is_asked_and_with_ssh_nothing_at_all():
    from fleet.slurm.jobs import Route

    runner = ScriptedSlurm(None, {})
    routes = {"sl-1": Route("slurm", "gpu1")}
    assert _window(runner, routes)[0] == routes
    assert runner.calls == [["scontrol", "-o", "show", "reservation", "gpufleet-recheck"]]
    runner = ScriptedSlurm(None, {})
    assert _window(runner, {"sl-2": Route("ssh", "gpu2")}, recheck_via="ssh")[0] == {"sl-2": Route("ssh", "gpu2")}
    assert runner.calls == []


def test_recheck_via_flag():
    from invoke.exceptions import Exit

    from fleet.options import recheck_via

    assert recheck_via(None, True) == "slurm" and recheck_via(None, False) == "slurm"
    assert recheck_via("ssh", True) == "ssh"
    with pytest.raises(Exit, match="--recheck-via needs --via slurm"):
        recheck_via("ssh", False)
    with pytest.raises(Exit, match="--recheck-via must be one of slurm, ssh, got 'scp'"):
        recheck_via("scp", True)


# ------------------------------------------------------------------------- against the real Slurm

@pytest.fixture(scope="module")
def fleet(farm, slurm, tmp_path_factory):
    """The three hosts of tests/test_slurm_e2e.py (the default remote directory), their inventory, and an
    environment where Slurm's clients reach the test cluster."""
    from fleet.push import DEFAULT_REMOTE_DIR
    from tests.sshd import invoke_env

    for name in HOSTS:
        farm.add_host(name, fixture=None, gpus=0, extra_vars=_vars(farm, name))
    base = tmp_path_factory.mktemp("slurm-recheck")
    inv = base / "hosts.yaml"
    inv.write_text(farm.inventory(list(HOSTS)))
    env = invoke_env(farm, base / "home")
    env.update(slurm.env)
    remote = login_home() / DEFAULT_REMOTE_DIR
    with removing_what_appears(remote):
        yield {"inv": inv, "env": env, "base": base, "db": base / "history.sqlite",
               "shared": slurm.shared / "gpufleet", "remote": remote}


@pytest.fixture
def restored(slurm):
    """Afterwards: no gpufleet-recheck reservation, every node resumed and idle."""
    yield
    slurm.run("scontrol", "delete", "ReservationName=gpufleet-recheck")  # an error when there is none
    for node in HOSTS.values():
        slurm.run("scontrol", "update", f"nodename={node}", "state=resume")  # an error when not drained
    slurm.wait_nodes("idle", timeout=60)  # a resumed node is "not responding" until slurmctld's next ping


def _reservation(slurm) -> str:
    r = slurm.run("scontrol", "-o", "show", "reservation", "gpufleet-recheck")
    return r.stdout.strip() if r.returncode == 0 else ""


def _run_jobs(slurm, run_id: str) -> dict[str, dict]:
    """The run's jobs by node: their records."""
    r = slurm.run("squeue", "-h", "-t", "all", "-n", f"gpufleet-verify-{run_id}", "-o", "%i")
    records = [slurm.jobs(i)[0] for i in r.stdout.split()]
    return {j["NodeList"] or j["ReqNodeList"]: j for j in records}


@pytest.mark.slow
def test_a_node_gpufleet_drained_is_rechecked_in_its_reservation_and_resumed_after_clean_runs(fleet, slurm,
                                                                                             tmp_path, restored):
    slurm.run("scontrol", "update", "nodename=gpu2", "state=drain", f"reason={OURS}", check=True)  # as slurm-sync
    slurm.run("scontrol", "update", "nodename=gpu3", "state=drain", "reason=maintenance", check=True)
    theirs = reason(slurm, "gpu3")
    out = tmp_path / "reports"
    for night in range(2):
        r = verify(fleet, out)
        assert r.returncode == 0, r.stdout + r.stderr
        run_dir = last_run(out)
        summary = json.loads((run_dir / "summary.json").read_text())
        assert {h: (e["status"], e["state"]) for h, e in summary["hosts"].items()} == {
            "sl-1": ("pass", "ok"), "sl-2": ("pass", "ok"), "sl-3": ("skipped", "unavailable")}
        run = json.loads((run_dir / "run.json").read_text())
        sl2 = next(h for h in run["hosts"] if h["host"] == "sl-2")
        assert sl2["message"].startswith("Slurm job ")
        # the job's record said so when it ended (Slurm forgets a job's reservation once it is deleted)
        assert sl2["message"].endswith(" on gpu2 in reservation gpufleet-recheck")
        sl1 = next(h for h in run["hosts"] if h["host"] == "sl-1")
        assert sl1["message"].startswith("Slurm job ") and sl1["message"].endswith(" on gpu1")
        jobs = _run_jobs(slurm, run_dir.name)
        assert set(jobs) == {"gpu1", "gpu2"}  # never a job on the node someone else drained
        assert {n: j["JobState"] for n, j in jobs.items()} == {"gpu1": "COMPLETED", "gpu2": "COMPLETED"}
        shared = fleet["shared"] / run_dir.name / "sl-2" / "report.json"
        assert (run_dir / sl2["report"]).read_bytes() == shared.read_bytes()  # through the shared directory
        assert _reservation(slurm) == ""  # deleted at the end of the run
        state, why = reason(slurm, "gpu2")
        assert (state, why.split(" [")[0]) == ("IDLE+DRAIN", OURS)  # drained again, with its own reason
        assert reason(slurm, "gpu3") == theirs  # untouched, down to who drained it and when
        step = sync(fleet, run_dir, "--apply")
        assert step.returncode == 0, step.stdout + step.stderr
        if night == 0:
            assert reason(slurm, "gpu2")[0] == "IDLE+DRAIN"  # one passing run: not yet
            assert "passing, 1 of 2 passing runs in a row needed to resume" in step.stdout
        else:
            assert "DRAIN" not in reason(slurm, "gpu2")[0] and "resumed" in step.stdout
    assert reason(slurm, "gpu3") == theirs


@pytest.mark.slow
def test_recheck_via_ssh_checks_the_drained_node_over_ssh_without_a_reservation(fleet, slurm, tmp_path, restored):
    slurm.run("scontrol", "update", "nodename=gpu2", "state=drain", f"reason={OURS}", check=True)
    before = reason(slurm, "gpu2")
    out = tmp_path / "reports"
    r = verify(fleet, out, "--recheck-via", "ssh", hosts="sl-2")
    assert r.returncode == 0, r.stdout + r.stderr
    run_dir = last_run(out)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert {h: e["status"] for h, e in summary["hosts"].items()} == {"sl-2": "pass"}
    [host] = json.loads((run_dir / "run.json").read_text())["hosts"]
    assert not host["message"].startswith("Slurm job")  # over SSH
    assert _run_jobs(slurm, run_dir.name) == {}
    assert reason(slurm, "gpu2") == before  # never resumed nor drained again: the same reason, by, at
    assert _reservation(slurm) == ""


@pytest.mark.slow
def test_a_reservation_of_that_name_without_maint_is_not_gpufleet_s_and_stays(fleet, slurm, tmp_path, restored):
    slurm.run("scontrol", "update", "nodename=gpu2", "state=drain", f"reason={OURS}", check=True)
    slurm.run("scontrol", "create", "reservation", "ReservationName=gpufleet-recheck", "Nodes=gpu1",
              "StartTime=now", "Duration=30", "Users=root", check=True)
    theirs = _reservation(slurm)
    before = reason(slurm, "gpu2")
    r = verify(fleet, tmp_path / "reports", hosts="sl-2")
    assert r.returncode == 1, r.stdout + r.stderr
    summary = json.loads((last_run(tmp_path / "reports") / "summary.json").read_text())
    sl2 = summary["hosts"]["sl-2"]
    assert (sl2["status"], sl2["state"]) == ("error", "error")
    assert sl2["message"] == ("reservation gpufleet-recheck exists and is not gpufleet's (Flags=SPEC_NODES, no "
                              "MAINT): not re-checked; delete it, or --recheck-via ssh")
    assert _reservation(slurm) == theirs and reason(slurm, "gpu2") == before


@pytest.mark.slow
def test_an_earlier_run_s_reservation_is_reused_and_what_it_left_in_service_drained(fleet, slurm, tmp_path,
                                                                                   restored):
    """An earlier run died after resuming gpu1 for its re-check: its reservation still holds gpu1, in service."""
    slurm.run("scontrol", "create", "reservation", "ReservationName=gpufleet-recheck", "Nodes=gpu1",
              "StartTime=now", "Duration=30", "Users=root", "Flags=maint,ignore_jobs", check=True)
    slurm.run("scontrol", "update", "nodename=gpu2", "state=drain", f"reason={OURS}", check=True)
    out = tmp_path / "reports"
    r = verify(fleet, out, hosts="sl-1,sl-2")
    assert r.returncode == 0, r.stdout + r.stderr
    run_dir = last_run(out)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert {h: (e["status"], e["state"]) for h, e in summary["hosts"].items()} == {
        "sl-1": ("skipped", "unavailable"), "sl-2": ("pass", "ok")}
    cut = f"gpufleet: re-check cut short (run {run_dir.name})"
    assert summary["hosts"]["sl-1"]["message"] == (f"node gpu1 was left in service by an earlier run's re-check: "
                                                   f"drained again ({cut}); re-checked next run")
    state, why = reason(slurm, "gpu1")
    assert (state, why.split(" [")[0]) == ("IDLE+DRAIN", cut)
    [host] = [h for h in json.loads((run_dir / "run.json").read_text())["hosts"] if h["host"] == "sl-2"]
    assert host["message"].endswith(" on gpu2 in reservation gpufleet-recheck")
    assert set(_run_jobs(slurm, run_dir.name)) == {"gpu2"}
    assert _reservation(slurm) == ""



@pytest.mark.slow
def test_ctrl_c_during_a_recheck_cancels_its_job_drains_the_node_again_and_deletes_the_reservation(
        fleet, slurm, tmp_path, restored):
    import signal
    import subprocess
    import sys
    import time

    slurm.run("scontrol", "update", "nodename=gpu2", "state=drain", f"reason={OURS}", check=True)
    hanging = _planted(fleet, tmp_path, "sl-2", "rank-hang")
    out = tmp_path / "reports"
    proc = subprocess.Popen(
        [sys.executable, "-m", "fleet.cli", "verify", "--via", "slurm", "--shared-dir", str(fleet["shared"]),
         "--hosts", "sl-2", "--inventory", str(hanging), "--out", str(out), "--no-history", "--nproc", "2",
         "--checks", "collectives", "--timeout", "240"],
        cwd=tmp_path, env=fleet["env"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 180  # a ceiling for the push and the job's start, not a measure
    jobs: dict = {}
    while time.monotonic() < deadline and proc.poll() is None:
        runs = [p for p in out.iterdir() if p.is_dir()] if out.exists() else []
        jobs = _run_jobs(slurm, runs[0].name) if runs else {}
        if jobs.get("gpu2", {}).get("JobState") == "RUNNING":
            break
        time.sleep(0.5)
    assert jobs.get("gpu2", {}).get("JobState") == "RUNNING", (jobs, proc.poll())
    assert jobs["gpu2"]["Reservation"] == "gpufleet-recheck"  # while the reservation lives, its record says so
    running = reason(slurm, "gpu2")[0].split("+")
    assert running[0] == "ALLOCATED" and "DRAIN" not in running, running  # resumed, for its job only
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=300)  # a ceiling: the delete waits for the cancelled job to end
    assert proc.returncode == 130, stdout + stderr
    assert slurm.jobs(jobs["gpu2"]["JobId"])[0]["JobState"] == "CANCELLED"
    state, why = reason(slurm, "gpu2")
    assert "DRAIN" in state.split("+") and why.split(" [")[0] == OURS  # out of service again, with its reason
    assert _reservation(slurm) == "", stderr



class Answers:
    """A runner giving these results in turn (the last one repeated); records every command."""

    def __init__(self, *results: Result):
        self.results, self.calls = list(results), []

    def __call__(self, argv, timeout):
        self.calls.append(argv)
        return self.results.pop(0) if len(self.results) > 1 else self.results[0]


def test_the_delete_waits_for_the_reservation_s_jobs_to_end_then_says_it_could_not():
    """scontrol's answers as the suite's Slurm 22.05.8 gives them (on stderr, exit 1)."""
    from fleet.slurm.jobs import _delete

    in_use = Result(1, "", "delete_reservation ReservationName=gpufleet-recheck: Requested reservation is in use\n")
    gone = Result(1, "", "delete_reservation ReservationName=gpufleet-recheck: Requested reservation is invalid\n")
    assert [SlurmClient(Answers(r)).delete_reservation("gpufleet-recheck") for r in (in_use, gone, Result(0, "", ""))
            ] == ["in use", "gone", "deleted"]
    delete = ["scontrol", "delete", "ReservationName=gpufleet-recheck"]
    for runner in (Answers(in_use, in_use, Result(0, "", "")), Answers(gone)):
        notes: list = []
        _delete(SlurmClient(runner), notes.append, clock=lambda: 0.0, sleep=lambda _: None)
        assert notes == [] and runner.calls == [delete] * (3 if len(runner.calls) > 1 else 1)
    ticks = iter(range(0, 1000, 50))  # each try, 50 seconds pass
    runner, notes = Answers(in_use), []
    _delete(SlurmClient(runner), notes.append, clock=lambda: float(next(ticks)), sleep=lambda _: None)
    assert notes == ["gpufleet: reservation gpufleet-recheck still has jobs after 120 s: not deleted (scontrol "
                     "delete ReservationName=gpufleet-recheck once they end)"]
    assert len(runner.calls) == 3  # the deadline set at 0 s; tries seen at 50, 100 and 150 s, past the 120 s
