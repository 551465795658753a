"""Profiles: the sizes each stage uses, by profile (quick/full) and device type.

``quick`` finishes in well under a minute on a 2-core CPU machine (2 gloo
ranks) and in a few minutes on an 8-GPU node; ``full`` runs larger sizes and
longer sweeps.  On GPU the sizes shrink to fit the device's free memory.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30


@dataclass(frozen=True)
class Profile:
    name: str
    matmul_n: int            # throughput size (multiple of 256)
    matmul_check_n: int      # correctness-vs-float64 size (multiple of 256)
    min_time: float          # seconds each throughput figure is timed for
    copy_bytes: int          # device (or host) copy buffer
    pcie_bytes: int          # host<->device buffer (pinned)
    allreduce_sizes: tuple   # bytes per rank
    ddp_image: int           # ResNet-50 input side
    ddp_batch: int           # per rank
    ddp_steps: int           # timed ResNet-50 steps (after one warm-up step)
    convnet_batch: int
    convnet_epochs: int      # over a fixed synthetic set; the loss must fall
    infer_image: int
    infer_batches: tuple
    jpeg_count: int
    jpeg_side: int
    jpeg_workers: int
    # the sustained stages (nightly, acceptance): seconds of burn and of memory test per device, the burn's size
    burn_s: float = 0.0
    memtest_s: float = 0.0
    burn_n: int = 0
    # the sizes the throughput figure is the best of (empty: matmul_n alone); on a GPU the fastest shape
    # differs by model and dtype
    matmul_sizes: tuple = ()

    def sizes(self) -> tuple:
        """The matmul sizes the throughput figure is taken over."""
        return self.matmul_sizes or (self.matmul_n,)


_CPU = {
    "quick": Profile("quick", 512, 256, 0.15, 32 * MiB, 0, (4 * KiB, 256 * KiB, 4 * MiB),
                     32, 2, 2, 8, 4, 64, (1, 4), 48, 128, 2),
    "full": Profile("full", 2048, 512, 0.5, 256 * MiB, 0, (4 * KiB, 64 * KiB, 1 * MiB, 16 * MiB, 64 * MiB),
                    64, 4, 8, 16, 6, 224, (1, 8, 32), 256, 256, 4),
}
_GPU = {
    "quick": Profile("quick", 8192, 1024, 0.3, 1 * GiB, 256 * MiB, (1 * MiB, 16 * MiB, 64 * MiB, 256 * MiB),
                     224, 32, 10, 64, 8, 224, (1, 32, 128), 256, 256, 4, matmul_sizes=(4096, 8192)),
    "full": Profile("full", 16384, 2048, 1.0, 4 * GiB, 1 * GiB,
                    tuple(1 << p for p in range(20, 31, 2)),  # 1 MiB to 1 GiB
                    224, 64, 30, 128, 10, 224, (1, 8, 32, 128, 256), 1024, 256, 8,
                    matmul_sizes=(4096, 8192, 16384)),
}
# Sustained profiles: a base profile's stages, then the burn (70 % of --duration) and the memory test (the
# other 30 %) on every device; --duration defaults to DURATION.  The short stages' own minutes come on top.
SUSTAINED = {"nightly": "quick", "acceptance": "full"}
DURATION = {"nightly": 300.0, "acceptance": 1800.0}
BURN_SHARE = 0.7
PROFILES = tuple(_CPU) + tuple(SUSTAINED)


def fit_matmul(n: int, free_bytes: int, share: float = 0.4) -> int:
    """Largest multiple of 256, at most ``n``, whose three fp32 n×n matrices fit in ``share`` of free memory."""
    while n > 256 and 3 * n * n * 4 > share * free_bytes:
        n //= 2
    return max(256, n - n % 256)


def fit_bytes(nbytes: int, free_bytes: int, copies: int = 2, share: float = 0.4) -> int:
    """``nbytes`` halved until ``copies`` buffers fit in ``share`` of free memory."""
    while nbytes > MiB and copies * nbytes > share * free_bytes:
        nbytes //= 2
    return nbytes


def make(name: str, device_type: str, free_bytes: Optional[int] = None, duration: Optional[float] = None) -> Profile:
    """The profile ``name`` for ``device_type`` (``cpu``/``cuda``), fitted to ``free_bytes``; ``duration``: the
    sustained stages' budget in seconds (nightly and acceptance; default :data:`DURATION`)."""
    table = _GPU if device_type == "cuda" else _CPU
    if name not in table and name not in SUSTAINED:
        raise ValueError(f"unknown profile {name!r}; choose from {', '.join(PROFILES)}")
    prof = table[SUSTAINED.get(name, name)]
    if name in SUSTAINED:
        budget = DURATION[name] if duration is None else float(duration)
        prof = replace(prof, name=name, burn_s=BURN_SHARE * budget, memtest_s=(1 - BURN_SHARE) * budget,
                       burn_n=prof.matmul_n)
    if free_bytes is None:
        return prof
    return replace(prof, matmul_n=fit_matmul(prof.matmul_n, free_bytes),
                   matmul_sizes=tuple(sorted({fit_matmul(n, free_bytes) for n in prof.matmul_sizes})),
                   burn_n=fit_matmul(prof.burn_n, free_bytes, share=0.2) if prof.burn_n else 0,
                   copy_bytes=fit_bytes(prof.copy_bytes, free_bytes),
                   allreduce_sizes=tuple(s for s in prof.allreduce_sizes if 3 * s <= 0.4 * free_bytes) or (MiB,))
