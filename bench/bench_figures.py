"""Benchmark: each of verify's throughput figures beside the best direct measurement taken in the same run.

    python bench/bench_figures.py [--device auto|cpu|cuda] [--profile quick|full] [--rounds 3]

For every figure verify reports on this device (matmul TFLOP/s per dtype, fp8 included where the GPU has it;
device copy; host-to-device and device-to-host copy on a GPU; all_reduce bus bandwidth) it takes verify's own
figure (the code behind the report's metric, at the profile's sizes) and a direct measurement (CUDA events or
perf_counter after a warm-up of at least two seconds, over a wider sweep of sizes, keeping the best block),
alternating rounds so that drift hits both alike, and prints both with their ratio (verify / best direct).  A
ratio below 0.97 says verify's figure leaves throughput on the table (a shape too small, too short a warm-up for
the clocks to ramp): every ratio behind it would be wrong.

all_reduce runs in a process group of its own: every visible GPU (NCCL; at least two) or, on a CPU, two gloo
ranks; verify's figure is ``collectives.time_allreduce`` at the profile's largest size, the direct one a bare
``dist.all_reduce`` loop over the same sizes.  Not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
import torch.multiprocessing as mp  # noqa: E402

from verify import collectives, compute, memory, profiles  # noqa: E402
from verify import dist as vdist  # noqa: E402
from verify.timing import synchronize, time_iters  # noqa: E402

WARMUP_S = 2.0


def timed(fn, device: torch.device, min_time: float) -> float:
    """Best seconds per call of ``fn`` over blocks of calls, after a warm-up of :data:`WARMUP_S`."""
    end = time.perf_counter() + WARMUP_S
    while time.perf_counter() < end:
        fn()
    synchronize(device)
    best, spent, iters = float("inf"), 0.0, 1
    while spent < 3 * min_time:
        seconds = time_iters(fn, device, iters)  # CUDA events on a GPU, perf_counter on a CPU
        spent += seconds
        best = min(best, seconds / iters)
        iters = max(1, min(iters * 2, int(min_time / max(seconds / iters, 1e-9))))
    return best


def direct_matmul(device: torch.device, dt: str, sizes: list, min_time: float) -> tuple:
    """(best TFLOP/s, its size) of the plain product (torch.matmul; fp8: torch._scaled_mm) over ``sizes``."""
    best = (0.0, None)
    for n in sizes:
        a = torch.randn(n, n, device=device).to(compute.TORCH_DTYPE[dt])
        b = torch.randn(n, n, device=device).to(compute.TORCH_DTYPE[dt])
        if dt == "fp8":
            b, one = b.t().contiguous().t(), torch.ones((), device=device)
            fn = lambda a=a, b=b, one=one: torch._scaled_mm(a, b, scale_a=one, scale_b=one,  # noqa: E731
                                                            out_dtype=torch.bfloat16, use_fast_accum=True)
        else:
            c = torch.empty_like(a)
            fn = lambda a=a, b=b, c=c: torch.matmul(a, b, out=c)  # noqa: E731
        with compute.tf32(dt == "tf32"):
            seconds = timed(fn, device, min_time)
        best = max(best, (compute.matmul_tflops(n, seconds), n), key=lambda x: x[0])
        del a, b, fn
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
    sizes = (sorted({profiles.fit_matmul(n, free) for n in (2048, 4096, 8192, 16384, 2 * prof.matmul_n)})
             if use_cuda else [prof.matmul_n])
    for dt in compute.dtypes_for(device):
        why = compute.unsupported(device, dt)
        if why:
            print(f"{'matmul/' + dt + '/tflops':<22} {'-':>12} {'-':>12} {'-':>12} {'-':>7}  ({why})")
            continue
        ours, direct, at = 0.0, 0.0, None
        for _ in range(args.rounds):
            ours = max(ours, compute.best_matmul(device, dt, prof.sizes(), prof.min_time)[0])
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
    ranks = torch.cuda.device_count() if use_cuda else 2
    if ranks < 2:
        print(f"{'allreduce/busbw_gbps':<22} {'-':>12} {'-':>12} {'-':>12} {'-':>7}  (one GPU: nothing to reduce "
              "between ranks)")
        return
    port = _free_port()
    mp.spawn(_allreduce_rank, args=(ranks, port, use_cuda, args.profile, args.rounds), nprocs=ranks, join=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def direct_allreduce(world, sizes: tuple, min_time: float) -> tuple:
    """(best busbw GB/s, its size): a bare all_reduce loop per size, after a warm-up of :data:`WARMUP_S`; every
    rank runs the same counts (rank 0's), each block's time is the slowest rank's."""
    best = (0.0, None)
    for nbytes in sizes:
        buf = torch.randn(nbytes // 4, device=world.device)
        op = lambda buf=buf: dist.all_reduce(buf)  # noqa: E731
        op()
        synchronize(world.device)
        one = max(time_iters(op, world.device, 1), 1e-6)
        # rank 0's counts for every rank: a rank that called all_reduce once more than another would hang both
        warm, iters = vdist.broadcast(world, (max(2, int(WARMUP_S / one)), max(1, int(min_time / one))))
        for _ in range(warm):
            op()
        synchronize(world.device)
        for _ in range(3):
            vdist.barrier(world)
            seconds = max(vdist.gather(world, time_iters(op, world.device, iters) / iters))
            bus = collectives.busbw_gbps(nbytes, seconds, world.world_size)
            if bus > best[0]:
                best = (bus, nbytes)
        del buf, op
    return best


def _allreduce_rank(rank: int, ranks: int, port: int, use_cuda: bool, profile: str, rounds: int) -> None:
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank),
                       "WORLD_SIZE": str(ranks), "LOCAL_RANK": str(rank), "LOCAL_WORLD_SIZE": str(ranks)})
    device = torch.device("cuda", rank) if use_cuda else torch.device("cpu")
    if not use_cuda:
        torch.set_num_threads(1)
    world = vdist.init(device, 120)
    try:
        free = torch.cuda.mem_get_info(device)[0] if use_cuda else None
        prof = profiles.make(profile, device.type, free)
        sizes = prof.allreduce_sizes
        ours, direct, at = 0.0, 0.0, None
        for _ in range(rounds):
            seconds = collectives.time_allreduce(world, sizes[-1], prof.min_time)
            ours = max(ours, collectives.busbw_gbps(sizes[-1], seconds, ranks))
            d, n = direct_allreduce(world, sizes, prof.min_time)
            if d > direct:
                direct, at = d, n
        if rank == 0:
            print(f"{'allreduce/busbw_gbps':<22} {ours:>12.4g} {direct:>12.4g} {collectives.size_label(at):>12} "
                  f"{ours / direct:>7.3f}  ({ranks} ranks, {world.backend}; verify at "
                  f"{collectives.size_label(sizes[-1])})", flush=True)
    finally:
        vdist.shutdown()


def _cpu_copier(nbytes: int):
    src = torch.empty(nbytes, dtype=torch.uint8).random_(0, 256)
    dst = torch.empty_like(src)
    return lambda: dst.copy_(src)


if __name__ == "__main__":
    main()
