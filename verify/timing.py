"""Timing: CUDA events on GPU, perf_counter on CPU, always after a warm-up.

:func:`measure` warms up for a quarter of the time budget, and on a GPU for at
least :data:`GPU_WARMUP_S` (clocks ramp from idle, CPU vector units power up,
libraries pick their kernels), then times three blocks of calls and keeps the
median block, so one burst of noise from another process does not become the
figure.
"""

from __future__ import annotations

import math
import statistics
import time
from typing import Callable

import torch

GPU_WARMUP_S = 1.0  # seconds of warm-up before a GPU figure, whatever the time budget


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_iters(fn: Callable[[], object], device: torch.device, iters: int) -> float:
    """Seconds ``iters`` calls of ``fn`` take on ``device``."""
    if device.type == "cuda":
        with torch.cuda.device(device):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(iters):
                fn()
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / 1e3
    t0 = time.perf_counter()
    for _ in range(iters):
        fn()
    return time.perf_counter() - t0


def iterations_for(seconds_per_iter: float, min_time: float, max_iters: int) -> int:
    """How many iterations fill ``min_time`` (at least 1, at most ``max_iters``)."""
    if seconds_per_iter <= 0:
        return max_iters
    return max(1, min(max_iters, math.ceil(min_time / seconds_per_iter)))


def warm_up(fn: Callable[[], object], device: torch.device, calls: int, seconds: float, max_calls: int) -> int:
    """Call ``fn`` at least ``calls`` times and until ``seconds`` have passed (at most ``max_calls``)."""
    t0, n = time.perf_counter(), 0
    while n < calls or (time.perf_counter() - t0 < seconds and n < max_calls):
        fn()
        n += 1
        if n >= calls:
            synchronize(device)
    return n


def warmup_seconds(device: torch.device, min_time: float) -> float:
    """Seconds of warm-up before a figure timed for ``min_time`` on ``device``."""
    return max(min_time / 4, GPU_WARMUP_S) if device.type == "cuda" else min_time / 4


def measure(fn: Callable[[], object], device: torch.device, min_time: float,
            warmup: int = 2, max_iters: int = 1000, blocks: int = 3) -> tuple:
    """``(seconds per call, calls timed)``: warm up, then the median of ``blocks`` timed blocks
    that together last about ``min_time``."""
    warm_up(fn, device, warmup, warmup_seconds(device, min_time), 50 * max_iters)  # the time bounds it
    synchronize(device)
    iters = iterations_for(time_iters(fn, device, 1), min_time / blocks, max_iters)
    per_call = [time_iters(fn, device, iters) / iters for _ in range(blocks)]
    return statistics.median(per_call), iters * blocks
