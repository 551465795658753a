"""Collectives: all_reduce bus bandwidth over a size sweep, its correctness, barrier and broadcast.

Bandwidths follow nccl-tests (``doc/PERFORMANCE.md``): algbw = bytes / time
and, for all_reduce, busbw = algbw x 2(n-1)/n, the figure comparable with the
link speed whatever the rank count.  A world of one has busbw 0 by that
definition, so the bandwidth check is skipped there (correctness still runs).

Correctness: rank r contributes ``(r + 1) * w`` with ``w[i] = i % 7 + 1``
(exact in fp32), so the reduced tensor must equal ``n(n+1)/2 * w`` exactly.
"""

from __future__ import annotations

import os
import statistics
import time

import torch
import torch.distributed as dist

from verify import dist as vdist
from verify import faults
from verify.status import FAIL, PASS, SKIP, make_check
from verify.timing import iterations_for, synchronize, time_iters, warmup_seconds


def bus_factor(world_size: int) -> float:
    """nccl-tests' all_reduce bus factor 2(n-1)/n."""
    if world_size < 1:
        raise ValueError("world_size must be at least 1")
    return 2.0 * (world_size - 1) / world_size


def algbw_gbps(nbytes: int, seconds: float) -> float:
    return nbytes / seconds / 1e9


def busbw_gbps(nbytes: int, seconds: float, world_size: int) -> float:
    return algbw_gbps(nbytes, seconds) * bus_factor(world_size)


def size_label(nbytes: int) -> str:
    """``4KiB``, ``64MiB``, ``1GiB``; plain bytes otherwise."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if nbytes >= scale and nbytes % scale == 0:
            return f"{nbytes // scale}{unit}"
    return f"{nbytes}B"


def weights(numel: int) -> torch.Tensor:
    return (torch.arange(numel, dtype=torch.int64) % 7 + 1).to(torch.float32)


def contribution(rank: int, numel: int) -> torch.Tensor:
    return weights(numel) * (rank + 1)


def expected_sum(world_size: int, numel: int) -> torch.Tensor:
    return weights(numel) * (world_size * (world_size + 1) / 2)


def _planted_rank_failure(world) -> None:
    if world.world_size < 2:
        return
    if faults.planted("rank-exit") and world.rank == world.last_rank:
        os._exit(3)
    if faults.planted("rank-hang") and world.is_last_local:
        time.sleep(3600)


def correctness(world, numel: int) -> tuple:
    """``(ok, wrong elements)`` of one all_reduce on this rank."""
    t = contribution(world.rank, numel).to(world.device)
    dist.all_reduce(t)
    if faults.planted("allreduce-wrong") and world.is_last_local:
        t[numel // 2] += 1.0  # planted fault: a wrong reduction on one rank of the node it is planted on
    wrong = int((t.cpu() != expected_sum(world.world_size, numel)).sum().item())
    return wrong == 0, wrong


def time_allreduce(world, nbytes: int, min_time: float, blocks: int = 3) -> float:
    """Seconds one all_reduce of ``nbytes`` takes: after a warm-up (as long as :mod:`verify.timing`'s), the median of
    ``blocks`` timed blocks, each block the slowest rank's figure.  Rank 0 sets the counts, so every rank calls
    all_reduce equally often."""
    buf = torch.randn(nbytes // 4, device=world.device)
    op = lambda: dist.all_reduce(buf)  # noqa: E731
    for _ in range(2):
        op()
    synchronize(world.device)
    one = time_iters(op, world.device, 1)
    warm, iters = vdist.broadcast(world, (iterations_for(one, warmup_seconds(world.device, min_time), 1000),
                                          iterations_for(one, min_time / blocks, 200)))
    for _ in range(warm):
        op()
    synchronize(world.device)
    per_block = []
    for _ in range(blocks):
        vdist.barrier(world)
        per_block.append(max(vdist.gather(world, time_iters(op, world.device, iters) / iters)))
    return statistics.median(per_block)


def barrier_check(world) -> dict:
    t0 = time.perf_counter()
    if world.backend == "nccl":
        dist.barrier(device_ids=[world.device.index])
    else:
        dist.barrier()
    ms = (time.perf_counter() - t0) * 1e3
    return make_check("collectives/barrier", PASS, f"barrier across {world.world_size} rank(s) in {ms:.1f} ms",
                      observed=round(ms, 3))


def broadcast_check(world) -> dict:
    """Broadcast a seeded random tensor from rank 0 and from the last rank; every rank compares."""
    bad = []
    for src in sorted({0, world.last_rank}):
        want = torch.randn(4096, generator=torch.Generator().manual_seed(1000 + src))
        t = want.to(world.device) if world.rank == src else torch.zeros(4096, device=world.device)
        dist.broadcast(t, src=src)
        ok_all = vdist.gather(world, bool(torch.equal(t.cpu(), want)))
        bad += [f"rank {r} from {src}" for r, ok in enumerate(ok_all) if not ok]
    if bad:
        return make_check("collectives/broadcast", FAIL, "broadcast delivered wrong data: " + ", ".join(bad))
    srcs = " and ".join(str(s) for s in sorted({0, world.last_rank}))
    return make_check("collectives/broadcast", PASS, f"broadcast from rank {srcs} identical on all "
                      f"{world.world_size} rank(s)")


CORRECTNESS_MAX_BYTES = 64 << 20  # larger sweep sizes are checked at this size (host memory)


def correctness_check(world, sizes) -> dict:
    wrong = {}
    sizes = sorted({min(s, CORRECTNESS_MAX_BYTES) for s in sizes})
    for nbytes in sizes:
        ok, n_wrong = correctness(world, max(1, nbytes // 4))
        for r, (r_ok, r_wrong) in enumerate(vdist.gather(world, (ok, n_wrong))):
            if not r_ok:
                wrong[f"rank {r} at {size_label(nbytes)}"] = r_wrong
    if wrong:
        return make_check("collectives/allreduce_correct", FAIL, "all_reduce result differs from the sum of the "
                          "ranks' contributions: " + ", ".join(f"{k} ({v} wrong)" for k, v in wrong.items()),
                          details={"wrong_elements": wrong})
    return make_check("collectives/allreduce_correct", PASS, f"all_reduce equals the sum of {world.world_size} "
                      f"rank(s)' contributions at {', '.join(size_label(s) for s in sizes)}")


def bandwidth(world, sizes, min_time) -> tuple:
    if world.world_size < 2:
        return {}, make_check("collectives/allreduce_busbw", SKIP, "world of one rank: all_reduce moves nothing "
                              "between ranks (busbw = algbw x 2(n-1)/n = 0); for a figure run two or more ranks "
                              "(gpufleet verify --nproc 2 on a host with one GPU or none, or torchrun "
                              "--nproc_per_node=2)")
    metrics, per_size = {}, {}
    n = world.world_size
    for nbytes in sizes:
        seconds = time_allreduce(world, nbytes, min_time)
        bus = busbw_gbps(nbytes, seconds, n)
        per_size[size_label(nbytes)] = {"seconds": seconds, "algbw_gbps": algbw_gbps(nbytes, seconds),
                                        "busbw_gbps": bus}
        metrics[f"allreduce/{size_label(nbytes)}/busbw_gbps"] = bus
    top = per_size[size_label(sizes[-1])]
    metrics["allreduce/busbw_gbps"] = top["busbw_gbps"]
    metrics["allreduce/algbw_gbps"] = top["algbw_gbps"]
    return metrics, make_check("collectives/allreduce_busbw", PASS,
                               f"all_reduce busbw {top['busbw_gbps']:.3g} GB/s at {size_label(sizes[-1])} "
                               f"over {n} ranks ({world.backend})", observed=round(top["busbw_gbps"], 4),
                               details={"sizes": per_size})


def run(world, prof) -> tuple:
    """Metrics and (rank 0's) checks of the collectives stage; every rank must call it."""
    _planted_rank_failure(world)
    checks = [barrier_check(world), broadcast_check(world), correctness_check(world, prof.allreduce_sizes)]
    metrics, bw = bandwidth(world, prof.allreduce_sizes, prof.min_time)
    checks.append(bw)
    return metrics, checks
