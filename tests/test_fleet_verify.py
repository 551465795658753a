"""`invoke verify` end to end: real sshd hosts, each running the real verify on the CPU.

Hosts: three healthy, one whose verify fails (a planted matmul corruption), one
whose report is corrupted on the node, one that crashes mid-run, one that is
down, and (in the straggler run) one planted slow.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

import pytest

from fleet.inventory import parse_inventory
from fleet.outcome import HostState
from fleet.runs.launch import verify_fleet
from fleet.runs.node import VerifySettings
from fleet.runs.run_dir import load_run
from tests.sshd import crash, invoke_env, run_invoke

pytestmark = pytest.mark.slow

CORRUPTER = '''\
import atexit, sys
def _corrupt():
    if "--out" in sys.argv:
        try:
            with open(sys.argv[sys.argv.index("--out") + 1], "w") as f:
                f.write('{"schema": "gpufleet.verify/1", "status": "pa')
        except OSError:
            pass
atexit.register(_corrupt)
'''


def _vars(farm, name, **extra):
    return {"ansible_python_interpreter": sys.executable,
            "gpufleet_remote_dir": str(farm.root / name / "cache"), **extra}


@pytest.fixture(scope="module")
def verify_hosts(farm):
    for name in ("v-a", "v-b", "v-c"):
        farm.add_host(name, fixture=None, gpus=0, extra_vars=_vars(farm, name))
    farm.add_host("v-fail", fixture=None, gpus=0,
                  extra_vars=_vars(farm, "v-fail", gpufleet_verify_env={"GPUFLEET_VERIFY_FAULT": "matmul-corrupt"}))
    site = farm.root / "corrupter"
    site.mkdir()
    (site / "sitecustomize.py").write_text(CORRUPTER)
    farm.add_host("v-corrupt", fixture=None, gpus=0,
                  extra_vars=_vars(farm, "v-corrupt", gpufleet_verify_env={"PYTHONPATH": str(site)}))
    farm.add_host("v-crash", fixture=None, gpus=0, extra_vars=_vars(farm, "v-crash"))
    farm.add_down_host("v-down")
    return parse_inventory(farm.inventory(["v-a", "v-b", "v-c", "v-fail", "v-corrupt", "v-crash", "v-down"]), "v.yaml")


def crash_when_running(farm, name, timeout=120):
    """Crash host ``name`` as soon as its verify run has started."""
    cache = farm.root / name / "cache"

    def watch():
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(cache.glob("verify-*/runs/*")):
                time.sleep(0.5)
                crash(farm.hosts[name])
                return
            time.sleep(0.1)

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    return t


@pytest.fixture(scope="module")
def run(farm, verify_hosts, tmp_path_factory):
    watcher = crash_when_running(farm, "v-crash")
    out = tmp_path_factory.mktemp("runs")
    settings = VerifySettings(profile="quick", nproc="1", timeout=240, checks=("compute",))
    done = verify_fleet(verify_hosts.select("all"), settings, farm.options(command_timeout=240), out_base=str(out),
                        pattern="all", progress=False)
    run_dir, summary = done.run_dir, done.summary
    watcher.join(1)
    return run_dir, summary


def test_healthy_hosts_verify_and_their_metrics_are_kept(run):
    run_dir, summary = run
    assert set(summary["hosts"]) == {"v-a", "v-b", "v-c", "v-fail", "v-corrupt", "v-crash", "v-down"}
    # six hosts verify at once on the test machine's CPUs, so one healthy host's figures may fall more than 10 %
    # below the other two: then the straggler rule fails it, with that reason and no other
    slow = {s["host"] for s in summary["stragglers"]}
    for name in ("v-a", "v-b", "v-c"):
        h = summary["hosts"][name]
        assert h["state"] == "ok" and h["failing_checks"] == [], h
        if name in slow:
            assert h["status"] == "fail" and h["straggler"] is True, h
            assert {r["kind"] for r in h["reasons"]} == {"straggler"}, h["reasons"]
        else:
            assert h["status"] == "pass" and h["reasons"] == [], h
        assert h["metrics"]["matmul/fp32/tflops"]["value"] > 0
        report = json.loads((run_dir / "hosts" / f"{name}.json").read_text())
        assert report["schema"] == "gpufleet.verify/1"
        assert report["metrics"]["matmul/fp32/tflops:cpu0"] == h["metrics"]["matmul/fp32/tflops"]["value"]
    assert summary["fleet"]["cpu"]["metrics"]["matmul/fp32/tflops"]["n"] >= 3
    assert (run_dir / "summary.md").read_text().count("v-a") >= 1
    assert (run_dir / "logs" / "v-a.log").exists()


def test_failures_are_recorded_per_host_and_others_kept(run):
    run_dir, summary = run
    hosts = summary["hosts"]
    assert hosts["v-fail"]["status"] == "fail"
    assert any(c["name"].startswith("compute/matmul_correct") for c in hosts["v-fail"]["failing_checks"])
    assert hosts["v-corrupt"]["state"] == "bad_report" and hosts["v-corrupt"]["status"] == "error"
    assert "invalid JSON" in hosts["v-corrupt"]["message"]
    # the node's own (corrupt) bytes are kept unchanged for inspection
    assert (run_dir / "hosts" / "v-corrupt.json").read_text() == '{"schema": "gpufleet.verify/1", "status": "pa'
    assert hosts["v-crash"]["state"] == "unreachable" and hosts["v-crash"]["status"] == "unreachable"
    assert hosts["v-down"]["state"] == "unreachable"
    assert summary["exit_code"] == 1


def test_report_gives_the_runs_verdict_and_never_rewrites_the_run_directory(run, tmp_path):
    run_dir, summary = run
    runs, meta = load_run(run_dir)
    assert meta["run_id"] == run_dir.name and meta["profile"] == "quick"
    assert {r.host: r.state for r in runs}["v-corrupt"] is HostState.BAD_REPORT
    before = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    env = invoke_env_for_report()
    r = run_invoke(["report", str(run_dir), "--json", str(tmp_path / "again.json")], env)
    assert r.returncode == 1
    assert "v-a" in r.stdout and "v-corrupt" in r.stdout
    assert json.loads((tmp_path / "again.json").read_text()) == json.loads((run_dir / "summary.json").read_text())
    assert {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()} == before
    r = run_invoke(["report", str(tmp_path / "nope")], env)
    assert r.returncode == 2 and "nope" in r.stderr


def invoke_env_for_report():
    import os

    env = dict(os.environ)
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
    return env


def test_planted_slow_host_is_a_straggler(farm, tmp_path):
    names = ["s-1", "s-2", "s-3", "s-4", "s-slow"]
    # one thread per rank: the controller and the test's sshds keep the other core, so the healthy hosts' CPU
    # figures stay close to each other (with two threads they wander by more than the 10 % floor on a busy machine)
    for name in names[:-1]:
        farm.add_host(name, fixture=None, gpus=0,
                      extra_vars=_vars(farm, name, gpufleet_verify_env={"OMP_NUM_THREADS": "1"}))
    farm.add_host("s-slow", fixture=None, gpus=0, extra_vars=_vars(farm, "s-slow", gpufleet_verify_env={
        "OMP_NUM_THREADS": "1", "GPUFLEET_VERIFY_FAULT": "compute-slow"}))
    inv = parse_inventory(farm.inventory(names), "s.yaml")
    settings = VerifySettings(profile="quick", nproc="1", timeout=240, checks=("compute",))
    # one host at a time, so that the healthy hosts' figures are not blurred by each other
    summary = verify_fleet(inv.select("all"), settings, farm.options(command_timeout=240, forks=1),
                           out_base=str(tmp_path), progress=False).summary
    slow = [s for s in summary["stragglers"] if s["host"] == "s-slow"]
    assert slow, summary["stragglers"]
    assert any(s["metric"].startswith("matmul/") and s["ratio"] < 0.9 for s in slow)
    assert summary["hosts"]["s-slow"]["straggler"] is True
    assert summary["exit_code"] == 1


def test_invoke_verify_via_ssh_and_usage_errors(farm, verify_hosts, tmp_path):
    inv = tmp_path / "hosts.yaml"
    inv.write_text(farm.inventory(["v-a"]))
    env = invoke_env(farm, tmp_path / "home")
    out = tmp_path / "reports"
    r = run_invoke(["verify", "--hosts", "v-a", "--inventory", str(inv), "--out", str(out), "--nproc", "2",
                    "--checks", "collectives"], env, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "v-a" in r.stdout and "run directory:" in r.stdout
    (run_dir,) = [p for p in out.iterdir() if p.is_dir()]
    report = json.loads((run_dir / "hosts" / "v-a.json").read_text())
    assert report["world"]["world_size"] == 2
    assert report["metrics"]["allreduce/busbw_gbps"] > 0
    r = run_invoke(["verify", "--inventory", str(inv), "--profile", "huge"], env)
    assert r.returncode == 2 and "--profile" in r.stderr
    r = run_invoke(["verify", "--inventory", str(inv), "--nproc", "zero"], env)
    assert r.returncode == 2 and "--nproc" in r.stderr


def test_multinode_all_reduce_across_two_hosts(farm, verify_hosts, tmp_path):
    from tests.sshd import free_port

    settings = VerifySettings(profile="quick", nproc="1", timeout=240, multinode=True,
                              rdzv_port=free_port(farm.hosts["v-a"].address),
                              checks=("collectives",))
    done = verify_fleet(verify_hosts.select("v-a,v-b"), settings, farm.options(command_timeout=240),
                        out_base=str(tmp_path), progress=False)
    run_dir, summary = done.run_dir, done.summary
    written = sorted(p.stem for p in (run_dir / "hosts").iterdir())
    assert written == ["v-a", "v-b"]  # every node writes its own report, of its own rank
    reports = {n: json.loads((run_dir / "hosts" / f"{n}.json").read_text()) for n in written}
    assert sorted(r["world"]["node"]["ranks"][0] for r in reports.values()) == [0, 1]
    for r in reports.values():
        assert r["world"]["world_size"] == 2 and r["world"]["node_count"] == 2, r["world"]
        assert r["metrics"]["allreduce/busbw_gbps"] > 0
        assert {c["name"]: c["status"] for c in r["checks"]}["collectives/allreduce_correct"] == "pass"
    records = {h["host"]: h for h in json.loads((run_dir / "run.json").read_text())["hosts"]}
    assert {n: (records[n]["member"]["node_rank"], records[n]["member"]["node_count"]) for n in written} == \
        {"v-a": (0, 2), "v-b": (1, 2)}
    assert {n: (h["state"], h["status"]) for n, h in summary["hosts"].items()} == {"v-a": ("ok", "pass"),
                                                                                   "v-b": ("ok", "pass")}
    assert summary["exit_code"] == 0


def test_four_hosts_sharing_one_empty_home_all_pass_run_after_run(farm, tmp_path):
    """One NFS home seen by every node: installs race into one directory, and each host's report is its own."""
    shared = tmp_path / "nfs-home" / "gpufleet"
    names = [f"nfs-{i}" for i in range(4)]
    for name in names:
        farm.add_host(name, fixture=None, gpus=0, extra_vars={"ansible_python_interpreter": sys.executable,
                                                               "gpufleet_remote_dir": str(shared)})
    inv = parse_inventory(farm.inventory(names), "nfs.yaml")
    settings = VerifySettings(profile="quick", nproc="1", timeout=240, checks=("compute",))
    for round_ in range(3):
        done = verify_fleet(inv.select("all"), VerifySettings(**{**settings.__dict__, "run_id": ""}),
                            farm.options(command_timeout=240, forks=4), out_base=str(tmp_path / f"round{round_}"),
                            progress=False)
        run_dir, summary = done.run_dir, done.summary
        # four hosts benchmark at once on the test machine's CPUs: a healthy host's figures may fall more than
        # 10 % below the others', and the straggler rule then fails it, with that reason and no other
        slow = {s["host"] for s in summary["stragglers"]}
        assert {n: (h["state"], h["failing_checks"]) for n, h in summary["hosts"].items()} == \
            {n: ("ok", []) for n in names}, (round_, summary["hosts"])
        assert {n: h["status"] for n, h in summary["hosts"].items()} == \
            {n: "fail" if n in slow else "pass" for n in names}, (round_, summary["hosts"])
        assert {n: {r["kind"] for r in h["reasons"]} for n, h in summary["hosts"].items()} == \
            {n: {"straggler"} if n in slow else set() for n in names}, (round_, summary["hosts"])
        (install,) = [p for p in shared.iterdir() if p.name.startswith("verify-") and ".tmp." not in p.name]
        for n in names:  # what each host's verdict was made from is that host's own report
            assert (run_dir / "hosts" / f"{n}.json").read_bytes() == \
                (install / "runs" / run_dir.name / n / "report.json").read_bytes()
        assert len({(run_dir / "hosts" / f"{n}.json").read_bytes() for n in names}) == 4
