"""Compute: matmul throughput per dtype, and a matmul checked against a float64 reference.

Inputs are random normal (never zeros: zeros run faster than real data),
sizes are multiples of 256, every figure is taken after a warm-up, with CUDA
events on GPU and perf_counter on CPU.  dtypes: fp32, tf32, bf16 and fp16 on
GPU (tf32/bf16 only from compute capability 8.0), fp32 and bf16 on CPU.

Correctness: ``C = A @ B`` in the dtype under test is compared with the same
product in float64 (on the CPU, from the same rounded inputs).  Inputs are
N(0, 1), so an element of C has standard deviation sqrt(K); the error is
``max|C - C64| / sqrt(K)`` and must stay under :data:`TOLERANCE` for the dtype.
A silent data corruption shifts an element by far more.
"""

from __future__ import annotations

import contextlib
import math
from typing import Iterator

import torch

from verify import faults, reference
from verify.status import ERROR, FAIL, PASS, SKIP, make_check
from verify.timing import measure

GPU_DTYPES = ("fp32", "tf32", "bf16", "fp16")
CPU_DTYPES = ("fp32", "bf16")
TORCH_DTYPE = {"fp32": torch.float32, "tf32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
# max |C - C64| / sqrt(K): output rounding is 2^-24 (fp32), 2^-11 (fp16), 2^-8 (bf16) of |C| (up
# to ~5 sigma), tf32 also rounds its inputs to 10 mantissa bits; each tolerance leaves room for that.
TOLERANCE = {"fp32": 1e-3, "tf32": 2e-2, "bf16": 1e-1, "fp16": 2e-2}
SEED = 20240501


def matmul_tflops(n: int, seconds: float) -> float:
    """TFLOP/s of one n×n×n product (2·n³ floating-point operations) taking ``seconds``."""
    return 2.0 * n ** 3 / seconds / 1e12


@contextlib.contextmanager
def tf32(enabled: bool) -> Iterator[None]:
    """Allow (or forbid) TF32 in CUDA fp32 matmuls for the duration."""
    m = torch.backends.cuda.matmul
    if hasattr(m, "fp32_precision"):
        old = m.fp32_precision
        m.fp32_precision = "tf32" if enabled else "ieee"
        try:
            yield
        finally:
            m.fp32_precision = old
    else:  # older torch
        old = m.allow_tf32
        m.allow_tf32 = enabled
        try:
            yield
        finally:
            m.allow_tf32 = old


def dtypes_for(device: torch.device) -> tuple:
    return GPU_DTYPES if device.type == "cuda" else CPU_DTYPES


def unsupported(device: torch.device, dt: str):
    """Why ``dt`` has no hardware path on ``device`` (None where it has one)."""
    if device.type == "cuda" and dt in ("tf32", "bf16"):
        major, minor = torch.cuda.get_device_capability(device)
        if major < 8:
            return f"no {dt} tensor cores on compute capability {major}.{minor}"
    return None


def _randn(n: int, dt: str, device: torch.device, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, n, generator=g).to(device=device, dtype=TORCH_DTYPE[dt])


def bench_matmul(device: torch.device, dt: str, n: int, min_time: float) -> tuple:
    """``(TFLOP/s, iterations)`` of n×n×n products in ``dt`` on ``device``."""
    a, b = _randn(n, dt, device, SEED), _randn(n, dt, device, SEED + 1)
    out = torch.empty_like(a)
    repeat = 3 if faults.planted("compute-slow") else 1  # planted fault: a device at a third of its speed

    def step():
        for _ in range(repeat):
            torch.matmul(a, b, out=out)

    with tf32(dt == "tf32"):
        seconds, iters = measure(step, device, min_time)
    return matmul_tflops(n, seconds), iters


def matmul_error(device: torch.device, dt: str, n: int, corrupt: bool = False) -> float:
    """``max|C - C64| / sqrt(n)`` for one n×n×n product in ``dt`` on ``device``."""
    a, b = _randn(n, dt, device, SEED + 2), _randn(n, dt, device, SEED + 3)
    with tf32(dt == "tf32"):
        c = torch.matmul(a, b).to("cpu", torch.float64)
    if corrupt:  # planted fault: one element off by one standard deviation
        c[n // 2, n // 3] += math.sqrt(n)
    ref = a.to("cpu", torch.float64) @ b.to("cpu", torch.float64)
    return (c - ref).abs().max().item() / math.sqrt(n)


def throughput_check(device, label, dt, n, min_time, ref) -> tuple:
    tflops, iters = bench_matmul(device, dt, n, min_time)
    figure = reference.expected(ref, "matmul", dt)
    fields = reference.assess(tflops, figure, "TFLOP/s")
    fields["message"] = f"{dt} {n}x{n}x{n} x{iters}: " + fields["message"]
    check = make_check(f"compute/matmul/{dt}:{label}", observed=round(tflops, 4), device=label, **fields)
    return {f"matmul/{dt}/tflops:{label}": tflops}, check


def correctness_check(device, label, dt, n) -> dict:
    err = matmul_error(device, dt, n, corrupt=faults.planted("matmul-corrupt"))
    tol = TOLERANCE[dt]
    ok = err <= tol  # False for NaN too
    msg = (f"{dt} {n}x{n}x{n} vs float64: max error {err:.3g} sigma "
           f"({'within' if ok else 'OVER'} tolerance {tol:g})")
    return make_check(f"compute/matmul_correct/{dt}:{label}", PASS if ok else FAIL, msg,
                      observed=err if math.isfinite(err) else str(err), expected=tol, device=label)


def run(device: torch.device, label: str, prof, ref) -> tuple:
    """Metrics and checks of the compute stage for one device."""
    metrics, checks = {}, []
    for dt in dtypes_for(device):
        why = unsupported(device, dt)
        if why:
            checks.append(make_check(f"compute/matmul/{dt}:{label}", SKIP, why, device=label))
            continue
        for name, job in ((f"compute/matmul/{dt}:{label}", lambda dt=dt: throughput_check(
                device, label, dt, prof.matmul_n, prof.min_time, ref)),
                          (f"compute/matmul_correct/{dt}:{label}", lambda dt=dt: ({}, correctness_check(
                              device, label, dt, prof.matmul_check_n)))):
            try:
                m, c = job()
                metrics.update(m)
                checks.append(c)
            except Exception as exc:  # noqa: BLE001 - e.g. out of memory: this check errs, the run goes on
                checks.append(make_check(name, ERROR, f"{type(exc).__name__}: {exc}", device=label))
    return metrics, checks
