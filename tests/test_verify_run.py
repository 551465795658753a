"""End-to-end: ``python -m verify`` and ``torchrun -m verify`` as real subprocesses on the CPU.

Each expensive run happens once, in a module-scoped fixture.  Planted faults
(GPUFLEET_VERIFY_FAULT, test-only) must make exactly their check fail.
"""

from __future__ import annotations

import json
import os

import pytest

from tests.verify_helpers import run_verify
from verify import SCHEMA, report

CPU_ARGS = ["--profile", "quick", "--device", "cpu", "--no-progress"]


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    """One process, every stage, the default --out (verify-report.json in the cwd)."""
    return run_verify(CPU_ARGS, str(tmp_path_factory.mktemp("single")), out=None)


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    """torchrun, 2 gloo ranks, every stage."""
    return run_verify(CPU_ARGS, str(tmp_path_factory.mktemp("two")), nproc=2)


def _assert_valid(run):
    assert run.report is not None, run.stderr[-3000:]
    assert report.validate(run.report) == [], report.validate(run.report)
    assert run.report["schema"] == SCHEMA


def test_single_process_quick_report(single):
    _assert_valid(single)
    assert single.returncode == 0, single.stdout + single.stderr[-3000:]
    assert single.path.endswith("verify-report.json")
    r = single.report
    assert r["status"] == "pass" and r["profile"] == "quick" and r["device"] == "cpu"
    assert r["world"]["world_size"] == 1 and r["world"]["launcher"] == "single-process"
    assert r["world"]["ranks"][0]["device"] == "cpu0"
    for key in ("matmul/fp32/tflops:cpu0", "matmul/bf16/tflops:cpu0", "memory/copy/gbps:cpu0",
                "ddp/resnet50/images_per_s", "ddp/convnet/images_per_s", "inference/resnet50/bs1/images_per_s:cpu0",
                "inference/resnet50/bs4/images_per_s:cpu0", "pipeline/jpeg/images_per_s"):
        assert r["metrics"][key] > 0, key
    st = single.statuses()
    assert st["collectives/allreduce_correct"] == "pass"
    assert st["collectives/allreduce_busbw"] == "skip"  # a world of one has no bus bandwidth
    assert st["ddp/convnet/loss_decreases"] == "pass"
    assert st["ddp/convnet/checkpoint"] == st["ddp/resnet50/checkpoint"] == "pass"
    assert st["ddp/resnet50/params_in_sync"] == "skip"
    assert st["compute/matmul_correct/fp32:cpu0"] == st["compute/matmul_correct/bf16:cpu0"] == "pass"
    assert r["env"]["torch_version"] and r["env"]["python"] and r["env"]["cuda_available"] is False
    assert "verify: pass" in single.stdout
    assert not [f for f in os.listdir(os.path.dirname(single.path)) if f.endswith(".tmp")]


def test_quick_profile_records_what_each_stage_took(single, two_ranks):
    # how long the quick profile takes is measured by bench/bench_verify.py, not asserted here (a busy machine
    # is slower); the report records each stage's seconds, and every stage timed was one the run was asked for
    for run in (single, two_ranks):
        stages = run.report["stages"]
        assert stages and set(stages) <= set(run.report["options"]["checks"]) and all(v >= 0 for v in stages.values())


def test_two_ranks_ddp_allreduce_checkpoint_pass(two_ranks):
    _assert_valid(two_ranks)
    assert two_ranks.returncode == 0, two_ranks.stdout + two_ranks.stderr[-3000:]
    r = two_ranks.report
    assert r["status"] == "pass"
    assert r["world"]["world_size"] == 2 and r["world"]["node_count"] == 1
    assert r["world"]["launcher"] == "torchrun" and r["world"]["backend"] == "gloo"
    assert [x["rank"] for x in r["world"]["ranks"]] == [0, 1]
    assert [x["device"] for x in r["world"]["ranks"]] == ["cpu0", "cpu1"]
    st = two_ranks.statuses()
    for name in ("collectives/barrier", "collectives/broadcast", "collectives/allreduce_correct",
                 "collectives/allreduce_busbw", "ddp/convnet/loss_decreases", "ddp/convnet/params_in_sync",
                 "ddp/resnet50/params_in_sync", "ddp/convnet/checkpoint", "ddp/resnet50/checkpoint",
                 "ddp/resnet50/throughput"):
        assert st[name] == "pass", (name, two_ranks.check(name))
    m = r["metrics"]
    assert m["allreduce/busbw_gbps"] > 0
    # busbw = algbw * 2(n-1)/n, and n = 2
    assert m["allreduce/busbw_gbps"] == pytest.approx(m["allreduce/algbw_gbps"] * 1.0)
    for rank in (0, 1):  # every rank's per-device figures were gathered to rank 0
        assert m[f"matmul/fp32/tflops:cpu{rank}"] > 0
        assert m[f"inference/resnet50/bs1/images_per_s:cpu{rank}"] > 0
        assert st[f"compute/matmul_correct/bf16:cpu{rank}"] == "pass"
    assert "pipeline/jpeg/images_per_s" in m  # rank 0 only, no device suffix
    assert not any(k.startswith("pipeline/") and ":" in k for k in m)


@pytest.fixture(scope="module")
def faulted(tmp_path_factory):
    """One short run per planted fault, with only the stage it targets."""
    runs = {}
    cases = {"ddp-perturb": (2, "ddp"), "checkpoint-corrupt": (2, "ddp"),
             "allreduce-wrong": (2, "collectives"), "matmul-corrupt": (None, "compute")}
    for fault, (nproc, stage) in cases.items():
        runs[fault] = run_verify(CPU_ARGS + ["--checks", stage], str(tmp_path_factory.mktemp(fault)),
                                 nproc=nproc, fault=fault)
    return runs


@pytest.mark.parametrize("fault,expected", [
    ("ddp-perturb", {"ddp/convnet/params_in_sync", "ddp/resnet50/params_in_sync"}),
    ("checkpoint-corrupt", {"ddp/convnet/checkpoint", "ddp/resnet50/checkpoint"}),
    ("allreduce-wrong", {"collectives/allreduce_correct"}),
    ("matmul-corrupt", {"compute/matmul_correct/fp32:cpu0", "compute/matmul_correct/bf16:cpu0"}),
])
def test_planted_fault_fails_exactly_its_check(faulted, fault, expected):
    run = faulted[fault]
    _assert_valid(run)
    assert run.returncode == 0, run.stdout + run.stderr[-3000:]  # a report was written: it carries the verdict
    assert run.report["status"] == "fail"
    assert run.failing() == expected
    assert run.report["faults"] == [fault]
    for name in expected:
        assert "rank" in run.check(name)["message"] or "OVER" in run.check(name)["message"]


def test_fault_runs_still_pass_their_other_checks(faulted):
    st = faulted["ddp-perturb"].statuses()
    assert st["ddp/convnet/checkpoint"] == st["ddp/convnet/loss_decreases"] == "pass"
    st = faulted["allreduce-wrong"].statuses()
    assert st["collectives/broadcast"] == st["collectives/allreduce_busbw"] == "pass"


@pytest.mark.parametrize("fault,timeout", [("rank-exit", 60), ("rank-hang", 5)])
def test_a_dead_or_stuck_rank_ends_the_run_with_an_error(tmp_path, fault, timeout):
    run = run_verify(CPU_ARGS + ["--checks", "collectives", "--timeout", str(timeout)], str(tmp_path),
                     nproc=2, fault=fault, timeout=150)
    assert run.returncode != 0
    _assert_valid(run)
    assert run.report["status"] == "error"
    assert run.check("run")["status"] == "error" and "aborted" in run.check("run")["message"]
    # rank 0 notices in the collectives stage (peer gone, timeout, or torchrun's SIGTERM)
    assert run.statuses().get("stage/collectives", "error") == "error"
    assert not any(k.startswith("allreduce/") for k in run.report["metrics"])


def test_cuda_requested_without_cuda_is_an_error(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    run = run_verify(["--device", "cuda", "--checks", "compute"], str(tmp_path), timeout=120)
    assert run.returncode == 0  # its report says error
    _assert_valid(run)
    assert run.report["status"] == "error"
    assert run.check("env/cuda")["status"] == "fail"


def test_usage_error_exits_2(tmp_path):
    run = run_verify(["--profile", "enormous"], str(tmp_path), timeout=60)
    assert run.returncode == 2 and "invalid choice" in run.stderr and run.report is None


def test_two_nodes_each_write_their_own_report_and_exit_0(tmp_path):
    """Two torchruns joined by a c10d rendezvous on this machine (two "nodes"), a matmul fault planted on the
    second: each node's report holds its own rank's checks and the world's, and neither torchrun fails."""
    import subprocess
    import sys

    from tests.sshd import free_port
    from tests.verify_helpers import REPO

    port = free_port()
    procs = {}
    for node in (0, 1):
        d = tmp_path / f"node{node}"
        d.mkdir()
        env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS="1")
        env.pop("GPUFLEET_VERIFY_FAULT", None)
        if node == 1:
            env["GPUFLEET_VERIFY_FAULT"] = "matmul-corrupt"
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", f"--node_rank={node}",
               "--rdzv_backend=c10d", f"--rdzv_endpoint=127.0.0.1:{port}", "--rdzv_id=two-nodes",
               f"--rdzv_conf=is_host={'true' if node == 0 else 'false'}", "--local_addr=127.0.0.1",
               "--nproc_per_node=1", "-m", "verify", *CPU_ARGS, "--checks", "collectives,compute", "--out",
               "report.json"]
        procs[node] = subprocess.Popen(cmd, cwd=d, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                       text=True)
    outs = {node: p.communicate(timeout=300)[0] for node, p in procs.items()}
    assert {node: p.returncode for node, p in procs.items()} == {0: 0, 1: 0}, outs
    reports = {}
    for node in (0, 1):
        with open(tmp_path / f"node{node}" / "report.json", encoding="utf-8") as f:
            reports[node] = json.load(f)
        assert report.validate(reports[node]) == []
    by_node = {}
    for r in reports.values():  # the c10d rendezvous numbers the nodes in its own order: go by the report
        by_node[r["world"]["node"]["node_rank"]] = r
    assert sorted(by_node) == [0, 1]
    faulty = next(r for r in reports.values() if r.get("faults") == ["matmul-corrupt"])
    healthy = next(r for r in reports.values() if "faults" not in r)
    (bad_rank,) = faulty["world"]["node"]["ranks"]
    (good_rank,) = healthy["world"]["node"]["ranks"]
    assert {bad_rank, good_rank} == {0, 1}
    assert faulty["status"] == "fail" and healthy["status"] == "pass"
    assert {c["name"] for c in faulty["checks"] if c["status"] == "fail"} == {
        f"compute/matmul_correct/fp32:cpu{bad_rank}", f"compute/matmul_correct/bf16:cpu{bad_rank}"}
    for r, mine, other in ((faulty, bad_rank, good_rank), (healthy, good_rank, bad_rank)):
        names = {c["name"]: c["status"] for c in r["checks"]}
        assert names["collectives/allreduce_correct"] == "pass"  # the world stage is on every node's report
        assert f"matmul/fp32/tflops:cpu{mine}" in r["metrics"]
        assert not any(k.endswith(f":cpu{other}") for k in r["metrics"])  # the other node's figures are its own
        assert [(e["rank"], e["node"]) for e in r["world"]["ranks"]] == [(0, 0), (1, 1)]
        assert r["world"]["node_count"] == 2 and r["world"]["world_size"] == 2
