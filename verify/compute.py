"""Compute: matmul throughput per dtype, and a matmul checked against a float64 reference.

Inputs are random normal (never zeros: zeros run faster than real data),
sizes are multiples of 256, every figure is taken after a warm-up (at least a
second on a GPU, for the clocks to ramp), with CUDA events on GPU and
perf_counter on CPU.  dtypes: fp32, tf32, bf16, fp16 and fp8 on GPU (tf32/bf16
from compute capability 8.0, fp8 from 8.9: Ada and Hopper), fp32 and bf16 on
CPU.  fp8 is ``torch._scaled_mm`` on e4m3 inputs with unit scales, bf16 output
and fast accumulation: the path fp8 training and inference use.

The throughput figure is the best over the profile's sizes (``matmul_sizes``):
the fastest square shape differs by GPU and dtype (a large product can draw
enough power to pull the clocks down), and a figure below what the GPU can do
makes every ratio behind it wrong.  The check's details keep each size's
figure.

Correctness: ``C = A @ B`` in the dtype under test is compared with the same
product in float64 (on the CPU, from the same rounded inputs).  Inputs are
N(0, 1), so an element of C has standard deviation sqrt(K); the error is
``max|C - C64| / sqrt(K)`` and must stay under :data:`TOLERANCE` for the dtype.
A silent data corruption shifts an element by far more.
"""

from __future__ import annotations

import contextlib
import math
from typing import Iterator, Optional

import torch

from verify import faults, reference
from verify.status import ERROR, FAIL, PASS, SKIP, make_check
from verify.timing import measure

GPU_DTYPES = ("fp32", "tf32", "bf16", "fp16", "fp8")
CPU_DTYPES = ("fp32", "bf16")
FP8 = getattr(torch, "float8_e4m3fn", None)
TORCH_DTYPE = {"fp32": torch.float32, "tf32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16,
               "fp8": FP8}
# max |C - C64| / sqrt(K): output rounding is 2^-24 (fp32), 2^-11 (fp16), 2^-8 (bf16, and fp8's bf16 output) of
# |C| (up to ~5 sigma), tf32 also rounds its inputs to 10 mantissa bits (fp8's rounded inputs are the reference's
# inputs too); each tolerance leaves room for that.
TOLERANCE = {"fp32": 1e-3, "tf32": 2e-2, "bf16": 1e-1, "fp16": 2e-2, "fp8": 1e-1}
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


def fp8_in_torch() -> bool:
    """Whether this torch has the fp8 matmul (``float8_e4m3fn`` and ``_scaled_mm``)."""
    return FP8 is not None and hasattr(torch, "_scaled_mm")


def why_unsupported(dt: str, capability: tuple, torch_fp8: bool) -> Optional[str]:
    """Why ``dt`` has no hardware path on a GPU of compute ``capability`` (None where it has one); pure."""
    major, minor = capability
    if dt in ("tf32", "bf16") and major < 8:
        return f"no {dt} tensor cores on compute capability {major}.{minor}"
    if dt == "fp8":
        if (major, minor) < (8, 9):
            return (f"no fp8 tensor cores on compute capability {major}.{minor} (Ada, 8.9, and Hopper, 9.0, "
                    "have them)")
        if not torch_fp8:
            return f"torch {torch.__version__} has no fp8 matmul (float8_e4m3fn and _scaled_mm)"
    return None


def unsupported(device: torch.device, dt: str) -> Optional[str]:
    """Why ``dt`` has no hardware path on ``device`` (None where it has one)."""
    if device.type == "cuda":
        return why_unsupported(dt, torch.cuda.get_device_capability(device), fp8_in_torch())
    return None


def operands(device: torch.device, dt: str, n: int, seed: int) -> tuple:
    """Two seeded N(0, 1) n×n matrices in ``dt`` on ``device``, laid out as :func:`product` wants them.  Drawn on
    the device itself: two 16384² matrices drawn on the host take seconds, during which the GPU would idle."""
    g = torch.Generator(device=device).manual_seed(seed)
    a = torch.randn(n, n, generator=g, device=device).to(TORCH_DTYPE[dt])
    b = torch.randn(n, n, generator=g, device=device).to(TORCH_DTYPE[dt])
    if dt == "fp8":  # _scaled_mm takes its second operand column-major
        b = b.t().contiguous().t()
    return a, b


def product(a: torch.Tensor, b: torch.Tensor, dt: str, out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``a @ b`` in ``dt`` (fp8: e4m3 in, unit scales, bf16 out, fast accumulation); ``out`` where given."""
    if dt == "fp8":
        one = torch.ones((), dtype=torch.float32, device=a.device)
        c = torch._scaled_mm(a, b, scale_a=one, scale_b=one, out_dtype=torch.bfloat16, use_fast_accum=True)
        return c[0] if isinstance(c, tuple) else c  # torch 2.1 to 2.3 also returned the output's amax
    return torch.matmul(a, b, out=out) if out is not None else torch.matmul(a, b)


def bench_matmul(device: torch.device, dt: str, n: int, min_time: float) -> tuple:
    """``(TFLOP/s, iterations)`` of n×n×n products in ``dt`` on ``device``."""
    a, b = operands(device, dt, n, SEED)
    out = None if dt == "fp8" else torch.empty_like(a)
    repeat = 3 if faults.planted("compute-slow") else 1  # planted fault: a device at a third of its speed

    def step():
        for _ in range(repeat):
            product(a, b, dt, out)

    with tf32(dt == "tf32"):
        seconds, iters = measure(step, device, min_time)
    return matmul_tflops(n, seconds), iters


def best_matmul(device: torch.device, dt: str, sizes: tuple, min_time: float) -> tuple:
    """``(TFLOP/s, size, iterations, {size: TFLOP/s})``: the fastest of ``sizes``."""
    by_size = {}
    for n in sizes:
        by_size[n] = bench_matmul(device, dt, n, min_time)
    n = max(by_size, key=lambda k: by_size[k][0])
    return by_size[n][0], n, by_size[n][1], {k: v[0] for k, v in by_size.items()}


def matmul_error(device: torch.device, dt: str, n: int, corrupt: bool = False) -> float:
    """``max|C - C64| / sqrt(n)`` for one n×n×n product in ``dt`` on ``device``."""
    a, b = operands(device, dt, n, SEED + 2)
    with tf32(dt == "tf32"):
        c = product(a, b, dt).to("cpu", torch.float64)
    if corrupt:  # planted fault: one element off by one standard deviation
        c[n // 2, n // 3] += math.sqrt(n)
    ref = a.to("cpu", torch.float64) @ b.to("cpu", torch.float64)
    return (c - ref).abs().max().item() / math.sqrt(n)


def throughput_check(device, label, dt, sizes, min_time, ref) -> tuple:
    tflops, n, iters, by_size = best_matmul(device, dt, tuple(sizes), min_time)
    figure = reference.expected(ref, "matmul", dt)
    fields = reference.assess(tflops, figure, "TFLOP/s")
    swept = (" (best of " + ", ".join(f"{k}: {v:.4g}" for k, v in sorted(by_size.items())) + ")"
             if len(by_size) > 1 else "")
    fields["message"] = f"{dt} {n}x{n}x{n} x{iters}: " + fields["message"] + swept
    check = make_check(f"compute/matmul/{dt}:{label}", observed=round(tflops, 4), device=label,
                       details={"size": n, "tflops_by_size": {str(k): round(v, 4) for k, v in by_size.items()}},
                       **fields)
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
                device, label, dt, prof.sizes(), prof.min_time, ref)),
                          (f"compute/matmul_correct/{dt}:{label}", lambda dt=dt: ({}, correctness_check(
                              device, label, dt, prof.matmul_check_n)))):
            try:
                m, c = job()
                metrics.update(m)
                checks.append(c)
            except Exception as exc:  # noqa: BLE001 - e.g. out of memory: this check errs, the run goes on
                checks.append(make_check(name, ERROR, f"{type(exc).__name__}: {exc}", device=label))
    return metrics, checks
