"""Benchmark: verify's CPU matmul figure beside a direct torch measurement taken in the same run.

    python bench/bench_verify.py [--sizes 512 1024] [--dtypes fp32 bf16] [--rounds 3] [--min-time 0.3]

For each size and dtype it takes, in alternating rounds, verify's own figure
(``verify.compute.bench_matmul``, the code behind ``matmul/<dtype>/tflops:cpu0``)
and an independent one from ``torch.utils.benchmark.Timer.blocked_autorange``
on the same product, keeps the best of each, and prints both in TFLOP/s with
their ratio (verify / direct).  A ratio near 1 says verify's timing adds no
overhead and misses nothing.  Not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch.utils.benchmark as tbench  # noqa: E402

from verify import compute  # noqa: E402


def direct_tflops(n: int, dt: str, min_time: float) -> float:
    """TFLOP/s of torch.matmul on n x n random normal inputs, timed by torch.utils.benchmark."""
    g = torch.Generator().manual_seed(7)
    a = torch.randn(n, n, generator=g).to(compute.TORCH_DTYPE[dt])
    b = torch.randn(n, n, generator=g).to(compute.TORCH_DTYPE[dt])
    c = torch.empty_like(a)
    timer = tbench.Timer(stmt="torch.matmul(a, b, out=c)", globals={"torch": torch, "a": a, "b": b, "c": c},
                         num_threads=torch.get_num_threads())
    seconds = timer.blocked_autorange(min_run_time=min_time).median
    return 2.0 * n ** 3 / seconds / 1e12


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[512, 1024])
    p.add_argument("--dtypes", nargs="+", default=list(compute.CPU_DTYPES), choices=compute.CPU_DTYPES)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--min-time", type=float, default=0.3)
    args = p.parse_args()
    cpu = torch.device("cpu")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{platform.processor() or platform.machine()}, best of {args.rounds} rounds, >= {args.min_time}s each")
    print(f"{'size':>6} {'dtype':>5} {'verify TFLOP/s':>15} {'direct TFLOP/s':>15} {'ratio':>7}")
    for n in args.sizes:
        for dt in args.dtypes:
            ours, direct = 0.0, 0.0
            for _ in range(args.rounds):  # alternate, so drift hits both alike
                ours = max(ours, compute.bench_matmul(cpu, dt, n, args.min_time)[0])
                direct = max(direct, direct_tflops(n, dt, args.min_time))
            print(f"{n:>6} {dt:>5} {ours:>15.4f} {direct:>15.4f} {ours / direct:>7.3f}")


if __name__ == "__main__":
    main()
