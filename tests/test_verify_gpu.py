"""verify on a real GPU: skipped, with the reason, where torch sees no CUDA device."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
import torch

from tests.verify_helpers import run_verify
from verify import compute, reference, report

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(),
                                 reason="needs CUDA: the GPU paths (CUDA events, NCCL, pinned copies, autocast) "
                                        "only run on an NVIDIA GPU")]

GPU_ARGS = ["--profile", "quick", "--device", "cuda", "--no-progress"]


@pytest.fixture(scope="module")
def gpu_run(tmp_path_factory):
    return run_verify(GPU_ARGS + ["--force"], str(tmp_path_factory.mktemp("gpu")), timeout=600)


def test_gpu_quick_report(gpu_run):
    assert gpu_run.report is not None, gpu_run.stderr[-3000:]
    assert report.validate(gpu_run.report) == []
    r = gpu_run.report
    assert r["status"] in ("pass", "warn"), [c for c in r["checks"] if c["status"] not in ("pass", "skip")]
    assert gpu_run.returncode == 0
    assert r["device"] == "cuda" and r["env"]["cuda_available"] and r["env"]["gpu_count"] >= 1
    assert r["env"]["cudnn_version"] and r["env"]["nccl_version"]
    m = r["metrics"]
    n = torch.cuda.device_count()
    for i in range(n):  # one process tests every visible GPU
        for dt in compute.dtypes_for(torch.device("cuda", i)):
            if compute.unsupported(torch.device("cuda", i), dt) is None:
                assert m[f"matmul/{dt}/tflops:gpu{i}"] > 0
                assert gpu_run.check(f"compute/matmul_correct/{dt}:gpu{i}")["status"] == "pass"
        for kind in ("d2d", "h2d", "d2h"):
            assert m[f"memory/{kind}/gbps:gpu{i}"] > 0
        for bs in (1, 32, 128):
            assert m[f"inference/resnet50/bs{bs}/images_per_s:gpu{i}"] > 0
    st = gpu_run.statuses()
    for name in ("collectives/allreduce_correct", "ddp/convnet/loss_decreases", "ddp/convnet/checkpoint",
                 "ddp/resnet50/checkpoint", "ddp/resnet50/throughput", "pipeline/jpeg"):
        assert st[name] == "pass", gpu_run.check(name)
    assert "float16" in gpu_run.check("ddp/resnet50/throughput")["message"]  # mixed precision (bf16 or fp16)


def test_gpu_figures_carry_reference_and_ratio(gpu_run):
    name = torch.cuda.get_device_name(0)
    ref = reference.lookup(name)
    if ref is None:
        pytest.skip(f"{name} is not in the reference table")
    c = gpu_run.check("compute/matmul/bf16:gpu0")
    assert c["reference"] == ref["matmul_tflops"]["bf16"]
    assert c["ratio"] == pytest.approx(c["observed"] / ref["matmul_tflops"]["bf16"]["achievable"], rel=1e-3)
    d2d = gpu_run.check("memory/d2d:gpu0")
    assert d2d["reference"] == ref["memory_gbps"] and d2d["ratio"] > 0
    assert gpu_run.check("memory/h2d:gpu0")["reference"] == ref["pcie_gbps"]


def test_gpu_tf32_is_really_faster_than_fp32(gpu_run):
    if compute.unsupported(torch.device("cuda", 0), "tf32"):
        pytest.skip("no TF32 on this GPU")
    m = gpu_run.report["metrics"]
    assert m["matmul/tf32/tflops:gpu0"] > 2 * m["matmul/fp32/tflops:gpu0"]
    assert m["matmul/bf16/tflops:gpu0"] > m["matmul/tf32/tflops:gpu0"]


@pytest.mark.parametrize("dt", compute.GPU_DTYPES)
def test_gpu_matmul_error_and_planted_corruption(dt):
    dev = torch.device("cuda", 0)
    if compute.unsupported(dev, dt):
        pytest.skip(compute.unsupported(dev, dt))
    assert compute.matmul_error(dev, dt, 1024) <= compute.TOLERANCE[dt]
    assert compute.matmul_error(dev, dt, 1024, corrupt=True) > compute.TOLERANCE[dt]


def test_gpu_torchrun_nccl_world(tmp_path):
    run = run_verify(GPU_ARGS + ["--force", "--checks", "collectives,ddp"], str(tmp_path),
                     nproc=1, timeout=600)
    assert run.report is not None, run.stderr[-3000:]
    assert run.returncode == 0, run.stdout
    assert run.report["world"]["backend"] == "nccl" and run.report["world"]["launcher"] == "torchrun"
    assert run.check("collectives/allreduce_correct")["status"] == "pass"
    assert run.check("ddp/resnet50/checkpoint")["status"] == "pass"


@pytest.mark.skipif(shutil.which("nvidia-smi") is None, reason="needs nvidia-smi: the guard asks it")
def test_gpu_guard_skips_a_busy_gpu_unless_forced(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import time, torch; x = torch.ones(1 << 20, device='cuda:0'); "
                               "print('ready', flush=True); time.sleep(300)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        (tmp_path / "busy").mkdir()
        busy = run_verify(GPU_ARGS + ["--checks", "compute"], str(tmp_path / "busy"), out="r.json")
        guard = busy.check("guard:gpu0")
        assert guard["status"] == "skip" and f"pid {holder.pid}" in guard["message"]
        assert not [c for c in busy.report["checks"]
                    if c["name"].startswith("compute/") and c["name"].endswith(":gpu0")]
        (tmp_path / "forced").mkdir()
        forced = run_verify(GPU_ARGS + ["--checks", "compute", "--force"], str(tmp_path / "forced"), out="r.json")
        assert forced.check("guard:gpu0")["status"] == "pass" and "--force" in forced.check("guard:gpu0")["message"]
        assert forced.report["metrics"]["matmul/fp32/tflops:gpu0"] > 0
    finally:
        holder.kill()
        holder.wait()
