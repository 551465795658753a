"""Benchmark: each of verify's throughput figures beside the best direct measurement taken in the same run.

    python bench/bench_figures.py [--device auto|cpu|cuda] [--profile quick|full] [--rounds 3]

For every figure verify reports on this device (matmul TFLOP/s per dtype; device copy; host-to-device and
device-to-host copy on a GPU) it takes verify's own figure (the code behind the report's metric, at the
profile's size) and a direct measurement (CUDA events or perf_counter after a warm-up of at least two seconds,
over a sweep of sizes, keeping the best), alternating rounds so that drift hits both alike, and prints both with
their ratio (verify / best direct).  A ratio below 0.97 says verify's figure leaves throughput on the table
(a shape too small, too short a warm-up for the clocks to ramp): every ratio behind it would be wrong.
Not a test: it asserts nothing.  The all_reduce figure needs a process group: compare it with nccl-tests.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from verify import compute, memory, profiles  # noqa: E402
from verify.timing import synchronize  # noqa: E402

WARMUP_S = 2.0


def timed(fn, device: torch.device, min_time: float) -> float:
    """Best seconds per call of ``fn`` over blocks of calls, after a warm-up of :data:`WARMUP_S`."""
    end = time.perf_counter() + WARMUP_S
    while time.perf_counter() < end:
        fn()
    synchronize(device)
    best, spent, iters = float("inf"), 0.0, 1
    while spent < 3 * min_time:
        if device.type == "cuda":
            start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(iters):
                fn()
            stop.record()
            stop.synchronize()
            seconds = start.elapsed_time(stop) / 1e3
        else:
            t0 = time.perf_counter()
            for _ in range(iters):
                fn()
            seconds = time.perf_counter() - t0
        spent += seconds
        best = min(best, seconds / iters)
        iters = max(1, min(iters * 2, int(min_time / max(seconds / iters, 1e-9))))
    return best


def direct_matmul(device: torch.device, dt: str, sizes: list, min_time: float) -> tuple:
    """(best TFLOP/s, its size) of torch.matmul over ``sizes``."""
    best = (0.0, None)
    for n in sizes:
        a = torch.randn(n, n, device=device).to(compute.TORCH_DTYPE[dt])
        b = torch.randn(n, n, device=device).to(compute.TORCH_DTYPE[dt])
        c = torch.empty_like(a)
        with compute.tf32(dt == "tf32"):
            seconds = timed(lambda a=a, b=b, c=c: torch.matmul(a, b, out=c), device, min_time)
        best = max(best, (compute.matmul_tflops(n, seconds), n), key=lambda x: x[0])
        del a, b, c
    return best


def direct_copy(device: torch.device, kind: str, nbytes: int, min_time: float) -> float:
    cpu = torch.device("cpu")
    if kind == "d2d":
        src = torch.empty(nbytes, dtype=torch.uint8, device=device).random_(0, 256)
        dst = torch.empty_like(src)
        return 2 * nbytes / timed(lambda: dst.copy_(src), device, min_time) / 1e9
    host = torch.empty(nbytes, dtype=torch.uint8, device=cpu, pin_memory=True).random_(0, 256)
    dev = torch.empty(nbytes, dtype=torch.uint8, device=device)
    if kind == "h2d":
        return nbytes / timed(lambda: dev.copy_(host, non_blocking=True), device, min_time) / 1e9
    return nbytes / timed(lambda: host.copy_(dev, non_blocking=True), device, min_time) / 1e9


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--profile", choices=("quick", "full"), default="full")
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    use_cuda = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
    device = torch.device("cuda", 0) if use_cuda else torch.device("cpu")
    free = torch.cuda.mem_get_info(device)[0] if use_cuda else None
    prof = profiles.make(args.profile, device.type, free)
    name = torch.cuda.get_device_name(device) if use_cuda else (platform.processor() or platform.machine())
    print(f"torch {torch.__version__} on {name}; profile {args.profile}; best of {args.rounds} rounds")
    print(f"{'figure':<22} {'verify':>12} {'best direct':>12} {'direct at':>12} {'ratio':>7}")
    sizes = sorted({prof.matmul_n, prof.matmul_n // 2, prof.matmul_n * 2} if use_cuda else {prof.matmul_n})
    for dt in compute.dtypes_for(device):
        if compute.unsupported(device, dt):
            continue
        ours, direct, at = 0.0, 0.0, None
        for _ in range(args.rounds):
            ours = max(ours, compute.bench_matmul(device, dt, prof.matmul_n, prof.min_time)[0])
            d, n = direct_matmul(device, dt, sizes, prof.min_time)
            if d > direct:
                direct, at = d, n
        print(f"{'matmul/' + dt + '/tflops':<22} {ours:>12.4g} {direct:>12.4g} {at:>12} {ours / direct:>7.3f}")
    copies = (("d2d", memory.d2d, prof.copy_bytes), ("h2d", memory.h2d, prof.pcie_bytes),
              ("d2h", memory.d2h, prof.pcie_bytes)) if use_cuda else (("d2d", None, prof.copy_bytes),)
    for kind, fn, nbytes in copies:
        ours, direct = 0.0, 0.0
        for _ in range(args.rounds):
            ours = max(ours, fn(device, nbytes, prof.min_time) if fn else memory.cpu_copy(nbytes, prof.min_time))
            direct = max(direct, direct_copy(device, kind, nbytes, prof.min_time) if use_cuda else
                         2 * nbytes / timed(_cpu_copier(nbytes), device, prof.min_time) / 1e9)
        size = f"{nbytes >> 20}Mi"
        print(f"{'memory/' + kind + '/gbps':<22} {ours:>12.4g} {direct:>12.4g} {size:>12} {ours / direct:>7.3f}")


def _cpu_copier(nbytes: int):
    src = torch.empty(nbytes, dtype=torch.uint8).random_(0, 256)
    dst = torch.empty_like(src)
    return lambda: dst.copy_(src)


if __name__ == "__main__":
    main()
