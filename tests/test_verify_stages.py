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
