"""verify's stage code run for real in-process on the CPU, at small sizes."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from PIL import Image

import tests.verify_helpers  # noqa: F401
from verify import compute, ddp, memory, pipeline, profiles
from verify.timing import measure

CPU = torch.device("cpu")


@pytest.mark.parametrize("dt", compute.CPU_DTYPES)
def test_matmul_error_within_tolerance_and_corruption_caught(dt):
    clean = compute.matmul_error(CPU, dt, 256)
    assert 0 <= clean <= compute.TOLERANCE[dt]
    assert clean > 0 or dt == "fp32"  # rounding leaves some error in bf16
    corrupt = compute.matmul_error(CPU, dt, 256, corrupt=True)
    assert corrupt > compute.TOLERANCE[dt] and corrupt == pytest.approx(1.0, abs=0.2)


@pytest.mark.skipif(not compute.fp8_in_torch(), reason="this torch has no float8_e4m3fn/_scaled_mm")
def test_fp8_product_checked_on_the_cpu():
    # verify runs fp8 only on GPUs (Ada, Hopper); torch's CPU _scaled_mm runs the same product and check code
    clean = compute.matmul_error(CPU, "fp8", 256)
    assert 0 < clean <= compute.TOLERANCE["fp8"]
    a, b = compute.operands(CPU, "fp8", 256, 7)
    assert a.dtype == b.dtype == torch.float8_e4m3fn and b.stride() == (1, 256)  # column-major, as _scaled_mm wants
    assert compute.product(a, b, "fp8").dtype == torch.bfloat16
    corrupt = compute.matmul_error(CPU, "fp8", 256, corrupt=True)
    assert corrupt > compute.TOLERANCE["fp8"] and corrupt == pytest.approx(1.0, abs=0.2)


@pytest.mark.parametrize("dt, capability, torch_fp8, why", [
    ("fp8", (9, 0), True, None),  # Hopper
    ("fp8", (8, 9), True, None),  # Ada
    ("fp8", (8, 0), True, "no fp8 tensor cores on compute capability 8.0 (Ada, 8.9, and Hopper, 9.0, have them)"),
    ("fp8", (7, 5), True, "no fp8 tensor cores on compute capability 7.5 (Ada, 8.9, and Hopper, 9.0, have them)"),
    ("fp8", (9, 0), False, f"torch {torch.__version__} has no fp8 matmul (float8_e4m3fn and _scaled_mm)"),
    ("bf16", (7, 0), True, "no bf16 tensor cores on compute capability 7.0"),
    ("tf32", (7, 5), True, "no tf32 tensor cores on compute capability 7.5"),
    ("bf16", (8, 0), True, None),
    ("fp16", (7, 0), False, None),
    ("fp32", (6, 0), False, None),
])
def test_which_dtypes_a_gpu_has(dt, capability, torch_fp8, why):
    assert compute.why_unsupported(dt, capability, torch_fp8) == why


def test_throughput_is_the_best_of_the_sizes():
    tflops, n, iters, by_size = compute.best_matmul(CPU, "fp32", (256, 512), 0.05)
    assert sorted(by_size) == [256, 512] and n in by_size and iters >= 1
    assert tflops == by_size[n] == max(by_size.values())
    metrics, check = compute.throughput_check(CPU, "cpu0", "fp32", (256, 512), 0.05, None)
    assert set(metrics) == {"matmul/fp32/tflops:cpu0"}
    assert check["details"]["size"] in (256, 512) and sorted(check["details"]["tflops_by_size"]) == ["256", "512"]
    best = check["details"]["tflops_by_size"][str(check["details"]["size"])]
    assert check["observed"] == pytest.approx(best, abs=1e-4) == pytest.approx(max(
        check["details"]["tflops_by_size"].values()), abs=1e-4)
    assert "(best of 256: " in check["message"] and ", 512: " in check["message"]
    one = compute.throughput_check(CPU, "cpu0", "fp32", (256,), 0.05, None)[1]
    assert "best of" not in one["message"] and one["details"]["size"] == 256


def test_matmul_tflops_formula_and_cpu_measurement():
    assert compute.matmul_tflops(1024, 2 * 1024 ** 3 / 1e12) == pytest.approx(1.0)
    tflops, iters = compute.bench_matmul(CPU, "fp32", 256, 0.05)
    assert iters >= 1 and 1e-5 < tflops < 100  # a CPU does 10 GFLOP/s..100 TFLOP/s


def test_tf32_context_restores_setting():
    m = torch.backends.cuda.matmul
    attr = "fp32_precision" if hasattr(m, "fp32_precision") else "allow_tf32"
    before = getattr(m, attr)
    with compute.tf32(True):
        assert getattr(m, attr) in ("tf32", True)
    assert getattr(m, attr) == before


def test_cpu_copy_bandwidth_is_positive_and_plausible():
    gbps = memory.cpu_copy(8 << 20, 0.05)
    assert 0.05 < gbps < 10_000


def test_measure_times_real_work():
    seconds, iters = measure(lambda: sum(range(20000)), CPU, 0.05)
    assert iters >= 1 and 1e-6 < seconds < 1


def test_jpegs_are_real_decodable_images(tmp_path):
    paths = pipeline.make_jpegs(str(tmp_path), 3, 64)
    for p in paths:
        with Image.open(p) as img:
            assert img.format == "JPEG" and img.size == (64, 64) and img.mode == "RGB"
    assert len({open(p, "rb").read() for p in paths}) == 3  # different images
    ds = pipeline.JpegDataset(paths, 64)
    x = ds[0]
    assert x.shape == (3, 56, 56) and torch.isfinite(x).all()
    assert abs(float(x.mean())) < 3  # normalised


def test_pipeline_counts_every_image(tmp_path):
    prof = profiles.make("quick", "cpu")
    prof = dataclasses.replace(prof, jpeg_count=24, jpeg_side=64, jpeg_workers=1)
    ips, seen, bad = pipeline.run_pipeline(str(tmp_path), prof)
    assert (seen, bad) == (24, 0) and ips > 0


def test_convnet_and_datasets_shapes():
    ds = ddp.prototype_dataset(20, 32)
    x, y = ds.tensors
    assert x.shape == (20, 3, 32, 32) and int(y.max()) < ddp.CLASSES
    assert ddp.ConvNet()(x[:4]).shape == (4, ddp.CLASSES)


def test_loss_check():
    assert ddp.loss_check([2.3, 1.5, 0.4])["status"] == "pass"
    assert ddp.loss_check([2.3, 2.2, 2.25])["status"] == "fail"
    assert ddp.loss_check([2.3, 1.0, math.nan])["status"] == "fail"
