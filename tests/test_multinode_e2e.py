"""`gpufleet verify --multinode` end to end: two real sshd test hosts on the defaults (the install directory
gpufleet picks, no remote directory set), one torchrun per host joined by a c10d rendezvous, the real verify on
the CPU, a matmul fault planted on one host through its ``gpufleet_verify_env``.  Run after run, the faulty host
fails with its own rank's checks and the healthy one passes (before: whichever node held rank 0 took the other's
failures, or was torn down by torchrun when the faulty node exited non-zero)."""

from __future__ import annotations

import json
import sys

import pytest

from tests.sshd import free_port, invoke_env
from tests.test_cli import gpufleet

pytestmark = pytest.mark.slow

RUNS = 3


@pytest.fixture(scope="module")
def pair(farm, tmp_path_factory):
    base = tmp_path_factory.mktemp("multinode")
    farm.add_host("mn-a", fixture=None, gpus=0, extra_vars={
        "ansible_python_interpreter": sys.executable, "gpufleet_verify_env": {"OMP_NUM_THREADS": "1"}})
    farm.add_host("mn-b", fixture=None, gpus=0, extra_vars={
        "ansible_python_interpreter": sys.executable,
        "gpufleet_verify_env": {"OMP_NUM_THREADS": "1", "GPUFLEET_VERIFY_FAULT": "matmul-corrupt"}})
    inv = base / "hosts.yaml"
    inv.write_text(farm.inventory(["mn-a", "mn-b"]))
    return {"inv": inv, "env": invoke_env(farm, base / "home"), "address": farm.hosts["mn-a"].address}


@pytest.mark.parametrize("attempt", range(RUNS))
def test_the_faulty_host_fails_and_the_healthy_one_passes_every_time(pair, tmp_path, attempt):
    out = tmp_path / "reports"
    r = gpufleet(["verify", "--hosts", "mn-a,mn-b", "--inventory", str(pair["inv"]), "--out", str(out),
                  "--multinode", "--checks", "compute", "--nproc", "1", "--no-history",
                  "--rdzv-port", str(free_port(pair["address"]))], env=pair["env"], timeout=600)
    assert r.returncode == 1, r.stdout + r.stderr  # a host failed
    (run_dir,) = [p for p in out.iterdir() if p.is_dir()]
    summary = json.loads((run_dir / "summary.json").read_text())
    hosts = summary["hosts"]
    assert {n: (h["state"], h["status"]) for n, h in hosts.items()} == {"mn-a": ("ok", "pass"),
                                                                       "mn-b": ("ok", "fail")}, hosts
    reports = {n: json.loads((run_dir / "hosts" / f"{n}.json").read_text()) for n in ("mn-a", "mn-b")}
    (b_rank,) = reports["mn-b"]["world"]["node"]["ranks"]
    (a_rank,) = reports["mn-a"]["world"]["node"]["ranks"]
    assert {a_rank, b_rank} == {0, 1}
    # b's failures are b's own, named after the rank b ran; a's report has none of them
    assert sorted(c["name"] for c in hosts["mn-b"]["failing_checks"]) == [
        f"compute/matmul_correct/bf16:cpu{b_rank}", f"compute/matmul_correct/fp32:cpu{b_rank}"]
    assert hosts["mn-a"]["failing_checks"] == []
    assert reports["mn-b"]["faults"] == ["matmul-corrupt"] and "faults" not in reports["mn-a"]
    assert f"matmul/fp32/tflops:cpu{a_rank}" in reports["mn-a"]["metrics"]
    assert not any(k.endswith(f":cpu{b_rank}") for k in reports["mn-a"]["metrics"])
    # both torchruns ended cleanly: verify exits 0 once its report is written
    record = {h["host"]: h for h in json.loads((run_dir / "run.json").read_text())["hosts"]}
    assert {n: record[n]["exit_code"] for n in ("mn-a", "mn-b")} == {"mn-a": 0, "mn-b": 0}
    assert {n: record[n]["member"]["node_rank"] for n in ("mn-a", "mn-b")} == {"mn-a": 0, "mn-b": 1}


def test_a_crashed_member_fails_and_the_member_it_stopped_says_so(farm, tmp_path):
    """``rank-exit`` on both hosts: the one that holds the last rank exits abruptly in the collectives stage.
    Only it fails; the other, cut short, is an error that names the rank that went away."""
    names = ["mn-x", "mn-y"]
    for name in names:
        farm.add_host(name, fixture=None, gpus=0, extra_vars={
            "ansible_python_interpreter": sys.executable,
            "gpufleet_verify_env": {"OMP_NUM_THREADS": "1", "GPUFLEET_VERIFY_FAULT": "rank-exit"}})
    inv = tmp_path / "hosts.yaml"
    inv.write_text(farm.inventory(names))
    out = tmp_path / "reports"
    r = gpufleet(["verify", "--hosts", ",".join(names), "--inventory", str(inv), "--out", str(out), "--multinode",
                  "--checks", "collectives", "--nproc", "1", "--no-history",
                  "--rdzv-port", str(free_port(farm.hosts["mn-x"].address))],
                 env=invoke_env(farm, tmp_path / "home"), timeout=600)
    assert r.returncode == 1, r.stdout + r.stderr
    (run_dir,) = [p for p in out.iterdir() if p.is_dir()]
    hosts = json.loads((run_dir / "summary.json").read_text())["hosts"]
    (crashed,) = [n for n in names if hosts[n]["status"] == "fail"]
    (stopped,) = set(names) - {crashed}
    assert hosts[crashed]["state"] == "failed" and "wrote no report" in hosts[crashed]["message"], hosts
    assert hosts[stopped]["status"] == "error", hosts
    assert hosts[stopped]["message"].startswith(f"stopped: rank 1 on {crashed} exited"), hosts
