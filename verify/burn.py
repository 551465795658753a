"""The burn: sustained tensor-core matmuls per device, with correctness checks and throughput samples.

For each dtype (bf16 and fp16 on a GPU, with fp8 where the GPU has it and torch can; fp32 on a CPU) the device
multiplies the same two seeded matrices for its share of the time budget:

- **correctness**: the product is computed once at the start; every ``check_every`` intervals the running
  product is compared with it.  Any mismatch beyond ``tolerance`` (relative to the product's scale) fails the
  device at once: silent data corruption (with the interval it happened in).  A matmul of the same inputs on the
  same device gives the same result run after run; a GPU that returns something else is not to be trusted.
- **throughput**: one TFLOP/s sample per interval (``interval_s``, timed with CUDA events on a GPU).
  :func:`stability` judges the series: a run whose median sits below its reference fails; one that sags (the
  last quarter's median below ``sag`` x the first quarter's: clocks falling as the GPU heats) or varies beyond
  ``spread`` warns.

Pure parts (:func:`stability`, :func:`downsample`) are tested on recorded or synthetic series; the loop on the CPU
with short budgets.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from statistics import median
from typing import Callable, Optional

import torch

from verify import compute, reference
from verify.contract import BURN_SAG, BURN_SPREAD
from verify.status import ERROR, FAIL, PASS, SKIP, WARN, make_check

SAG, SPREAD = BURN_SAG, BURN_SPREAD  # the rule, from the torch-free contract (summary.html reads it too)
TOLERANCE = {"bf16": 2e-2, "fp16": 4e-3, "fp8": 1e-1, "tf32": 4e-3, "fp32": 1e-5}
MAX_POINTS = 120  # samples kept in the report per device and dtype


@dataclass
class BurnResult:
    dtype: str
    samples: list = field(default_factory=list)  # TFLOP/s per interval
    seconds: float = 0.0
    checks_done: int = 0
    corrupt_at: Optional[int] = None  # the interval the first mismatch was seen in
    max_error: float = 0.0


def dtypes_for(device: torch.device) -> tuple:
    """The burn's dtypes: bf16 and fp16 on a GPU, fp8 where it has them (and torch can); fp32 on a CPU."""
    if device.type != "cuda":
        return ("fp32",)
    return ("bf16", "fp16") + (("fp8",) if compute.unsupported(device, "fp8") is None else ())


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def burn(device: torch.device, dt: str, n: int, seconds: float, interval_s: float = 1.0, check_every: int = 5,
         corrupt_at: Optional[int] = None, clock: Callable[[], float] = time.perf_counter) -> BurnResult:
    """Multiply for ``seconds``; one throughput sample per interval, a correctness check every ``check_every``
    intervals (and after the last).  ``corrupt_at``: the test suite's planted corruption, one element of the
    product shifted in that interval.  Stops at the first mismatch."""
    res = BurnResult(dt)
    a, b = compute.operands(device, dt, n, seed=1234)
    ref = compute.product(a, b, dt).float()
    scale_ref = ref.abs().max().item() or 1.0
    flops = 2.0 * n ** 3
    start = clock()
    interval = 0
    while clock() - start < seconds or interval == 0:
        interval += 1
        t0, iters = clock(), 0
        if device.type == "cuda":
            begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            begin.record()
        while True:
            c = compute.product(a, b, dt)
            iters += 1
            if iters % 4 == 0:
                _sync(device)
                if clock() - t0 >= interval_s:
                    break
        if device.type == "cuda":
            end.record()
            end.synchronize()
            elapsed = begin.elapsed_time(end) / 1000.0
        else:
            elapsed = clock() - t0
        res.samples.append(flops * iters / elapsed / 1e12)
        last = clock() - start >= seconds
        if interval % check_every == 0 or last or corrupt_at == interval:
            out = c.float()
            if corrupt_at == interval:
                out[n // 2, n // 3] += scale_ref  # planted: one element off by the product's scale
            err = (out - ref).abs().max().item() / scale_ref
            res.checks_done += 1
            res.max_error = max(res.max_error, err if math.isfinite(err) else float("inf"))
            if not err <= TOLERANCE[dt]:  # NaN too
                res.corrupt_at = interval
                break
        if last:
            break
    res.seconds = clock() - start
    return res


def stability(samples: list, ref_achievable: Optional[float] = None, sag: float = SAG,
              spread: float = SPREAD) -> tuple:
    """(status, message, figures) for a throughput series (pure).  ``ref_achievable``: the reference figure in
    the same unit (None: no reference)."""
    if not samples:
        return SKIP, "no throughput sample", {}
    s = sorted(samples)
    med = median(samples)
    q = max(1, len(samples) // 4)
    first, last = median(samples[:q]), median(samples[-q:])
    p5, p95 = s[int(0.05 * (len(s) - 1))], s[int(round(0.95 * (len(s) - 1)))]
    figures = {"median": med, "min": s[0], "max": s[-1], "first_quarter": first, "last_quarter": last,
               "spread": (p95 - p5) / med if med else None, "samples": len(samples)}
    problems = []
    if ref_achievable:
        grade, ratio = reference.grade(med, ref_achievable)
        figures["reference_ratio"] = ratio
        if grade == FAIL:
            return FAIL, (f"median {med:.4g} TFLOP/s = {ratio:.0%} of the reference {ref_achievable:.4g}, below "
                          f"{reference.FAIL_BELOW:.0%}, over {len(samples)} intervals"), figures
        if grade == WARN:
            problems.append(f"median {med:.4g} TFLOP/s = {ratio:.0%} of the reference {ref_achievable:.4g}")
    if len(samples) >= 4 and first > 0 and last < sag * first:
        problems.append(f"sagged from {first:.4g} to {last:.4g} TFLOP/s ({last / first:.0%} of the start)")
    if len(samples) >= 4 and med and (p95 - p5) / med > spread:
        problems.append(f"varied by {(p95 - p5) / med:.0%} (p5 {p5:.4g}, p95 {p95:.4g})")
    if problems:
        return WARN, "; ".join(problems), figures
    return PASS, f"median {med:.4g} TFLOP/s, steady over {len(samples)} intervals", figures


def keep_digits(value: float) -> float:
    """``value`` to 4 decimals, or to 4 significant digits where that keeps more (a slow CPU's 2e-6 TFLOP/s
    is not 0.0) (pure)."""
    if not value or not math.isfinite(value):
        return value
    return round(value, max(4, 3 - math.floor(math.log10(abs(value)))))


def downsample(series: list, points: int = MAX_POINTS) -> list:
    """At most ``points`` values: means of equal runs of the series (pure)."""
    if len(series) <= points:
        return [keep_digits(v) for v in series]
    step = len(series) / points
    runs = [series[int(i * step):int((i + 1) * step)] for i in range(points)]
    return [keep_digits(sum(run) / max(1, len(run))) for run in runs]


def run(device: torch.device, label: str, seconds: float, n: int, ref, interval_s: float = 1.0,
        check_every: int = 5, corrupt_at: Optional[int] = None) -> tuple:
    """Metrics and checks of the burn for one device; ``seconds`` is split over its dtypes."""
    metrics, checks = {}, []
    kinds = dtypes_for(device)
    share = seconds / len(kinds)
    for dt in kinds:
        name = f"burn/{dt}:{label}"
        try:
            r = burn(device, dt, n, share, interval_s, check_every, corrupt_at if dt == kinds[0] else None)
        except Exception as exc:  # noqa: BLE001 - out of memory, an unsupported op: this dtype errs, the run goes on
            checks.append(make_check(name, ERROR, f"{type(exc).__name__}: {exc}", device=label))
            continue
        if r.corrupt_at is not None:
            checks.append(make_check(f"burn/correct/{dt}:{label}", FAIL,
                                     f"{dt} {n}x{n}x{n}: the product changed at interval {r.corrupt_at} "
                                     f"({r.seconds:.0f} s in): max error {r.max_error:.3g} of its scale, over "
                                     f"{TOLERANCE[dt]:g}: silent data corruption", device=label,
                                     observed=r.max_error, expected=TOLERANCE[dt]))
        else:
            checks.append(make_check(f"burn/correct/{dt}:{label}", PASS,
                                     f"{dt}: the product matched its first result at {r.checks_done} checks over "
                                     f"{r.seconds:.0f} s (max error {r.max_error:.2g})", device=label))
        figure = reference.expected(ref, "matmul", dt) if ref else None
        achievable = figure.get("achievable") if isinstance(figure, dict) else None
        status, message, figs = stability(r.samples, achievable)
        checks.append(make_check(name, status, f"{dt} {n}x{n}x{n} for {r.seconds:.0f} s: {message}", device=label,
                                 details={"series_tflops": downsample(r.samples), "interval_s": interval_s,
                                          **{k: (keep_digits(v) if isinstance(v, float) else v)
                                             for k, v in figs.items()}}))
        if figs:
            metrics[f"burn/{dt}/tflops:{label}"] = figs["median"]
            metrics[f"burn/{dt}/sag_ratio:{label}"] = (figs["last_quarter"] / figs["first_quarter"]
                                                        if figs["first_quarter"] else 0.0)
        metrics[f"burn/{dt}/seconds:{label}"] = r.seconds
    return metrics, checks
