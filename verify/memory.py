"""Memory: device copy bandwidth, host<->device bandwidth (pinned), or a CPU copy bandwidth.

- ``d2d``: ``dst.copy_(src)`` on the GPU; bytes read plus bytes written
  (2 x buffer) per copy, so the figure compares with the memory bandwidth.
- ``h2d`` / ``d2h``: one direction over the host link, from/to a pinned host
  buffer allocated outside the timed loop (non_blocking copies, CUDA events).
- ``copy`` (CPU): ``dst.copy_(src)`` in host memory, bytes read plus written.

Figures in GB/s (1e9 bytes per second).
"""

from __future__ import annotations

import torch

from verify import reference
from verify.status import ERROR, make_check
from verify.timing import measure


def gbps(nbytes: float, seconds: float) -> float:
    return nbytes / seconds / 1e9


def _random_bytes(nbytes: int, device: torch.device, pin: bool = False) -> torch.Tensor:
    t = torch.empty(nbytes, dtype=torch.uint8, device=device, pin_memory=pin)
    return t.random_(0, 256)


def d2d(device: torch.device, nbytes: int, min_time: float) -> float:
    src, dst = _random_bytes(nbytes, device), torch.empty(nbytes, dtype=torch.uint8, device=device)
    seconds, _ = measure(lambda: dst.copy_(src), device, min_time)
    return gbps(2 * nbytes, seconds)


def h2d(device: torch.device, nbytes: int, min_time: float) -> float:
    host = _random_bytes(nbytes, torch.device("cpu"), pin=True)
    dev = torch.empty(nbytes, dtype=torch.uint8, device=device)
    seconds, _ = measure(lambda: dev.copy_(host, non_blocking=True), device, min_time)
    return gbps(nbytes, seconds)


def d2h(device: torch.device, nbytes: int, min_time: float) -> float:
    dev, host = _random_bytes(nbytes, device), torch.empty(nbytes, dtype=torch.uint8, pin_memory=True)
    seconds, _ = measure(lambda: host.copy_(dev, non_blocking=True), device, min_time)
    return gbps(nbytes, seconds)


def cpu_copy(nbytes: int, min_time: float) -> float:
    cpu = torch.device("cpu")
    src, dst = _random_bytes(nbytes, cpu), torch.empty(nbytes, dtype=torch.uint8)
    seconds, _ = measure(lambda: dst.copy_(src), cpu, min_time)
    return gbps(2 * nbytes, seconds)


def _one(kind: str, label: str, fn, figure) -> tuple:
    name = f"memory/{kind}:{label}"
    try:
        value = fn()
    except Exception as exc:  # noqa: BLE001 - e.g. pinned memory refused: this check errs, the run goes on
        return {}, make_check(name, ERROR, f"{type(exc).__name__}: {exc}", device=label)
    fields = reference.assess(value, figure, "GB/s")
    return {f"memory/{kind}/gbps:{label}": value}, make_check(name, observed=round(value, 3), device=label, **fields)


def run(device: torch.device, label: str, prof, ref) -> tuple:
    """Metrics and checks of the memory stage for one device."""
    if device.type != "cuda":
        jobs = [("copy", lambda: cpu_copy(prof.copy_bytes, prof.min_time), None)]
    else:
        jobs = [("d2d", lambda: d2d(device, prof.copy_bytes, prof.min_time), reference.expected(ref, "memory")),
                ("h2d", lambda: h2d(device, prof.pcie_bytes, prof.min_time), reference.expected(ref, "pcie")),
                ("d2h", lambda: d2h(device, prof.pcie_bytes, prof.min_time), reference.expected(ref, "pcie"))]
    metrics, checks = {}, []
    for kind, fn, figure in jobs:
        m, c = _one(kind, label, fn, figure)
        metrics.update(m)
        checks.append(c)
    return metrics, checks
