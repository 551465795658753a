"""Profiles as data: the sizes each stage uses, by profile and device type, every field by name.

``quick`` finishes in well under a minute on a 2-core CPU machine (2 gloo
ranks) and in a few minutes on an 8-GPU node; ``full`` runs larger sizes and
longer sweeps; ``nightly`` and ``acceptance`` are quick and full with seconds of
burn and memory test per device (verify/contract.py holds the names, the
default durations and the burn's share).  On GPU the sizes shrink to fit the
device's free memory.  A stage is handed only the fields it declares
(:class:`Reads`, verify/stages.py).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, fields, replace
from typing import Optional

from verify.contract import BASE_PROFILES, BURN_SHARE, DURATION, PROFILES, SUSTAINED

__all__ = ["Profile", "Reads", "FIELDS", "PROFILES", "SUSTAINED", "DURATION", "BURN_SHARE", "make",
           "fit_matmul", "fit_bytes", "matmul_sizes", "BASES", "BASE_PROFILES"]

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30


# every field by name: Profile(matmul_n=512, ...); positional arguments are refused where Python has kw_only (3.10)
_BY_NAME = {"kw_only": True} if sys.version_info >= (3, 10) else {}


@dataclass(frozen=True, **_BY_NAME)
class Profile:
    """One profile's sizes for one device type; built by name (``Profile(matmul_n=512, ...)``), never by
    position.  A stage reads only the fields its registry entry declares (verify/stages.py)."""

    name: str
    # compute
    matmul_n: int            # throughput size (multiple of 256)
    matmul_check_n: int      # correctness-vs-float64 size (multiple of 256)
    min_time: float          # seconds each throughput figure is timed for
    # memory
    copy_bytes: int          # device (or host) copy buffer
    pcie_bytes: int          # host<->device buffer (pinned)
    # collectives
    allreduce_sizes: tuple   # bytes per rank
    # ddp
    ddp_image: int           # ResNet-50 input side
    ddp_batch: int           # per rank
    ddp_steps: int           # timed ResNet-50 steps (after one warm-up step)
    convnet_batch: int
    convnet_epochs: int      # over a fixed synthetic set; the loss must fall
    # inference
    infer_image: int
    infer_batches: tuple
    # pipeline
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
        return matmul_sizes(self)


def matmul_sizes(prof) -> tuple:
    """The matmul sizes the throughput figure is taken over: ``matmul_sizes``, or ``matmul_n`` alone."""
    return prof.matmul_sizes or (prof.matmul_n,)


FIELDS = tuple(f.name for f in fields(Profile))


class Reads:
    """The fields of a profile one stage declared it reads, and no others: reading another is an
    AttributeError that names the stage and what it declared (the registry stays true to the code)."""

    __slots__ = ("_stage", "_values", "_seen")

    def __init__(self, prof: Profile, names, stage: str):
        unknown = [n for n in names if n not in FIELDS]
        if unknown:
            raise ValueError(f"stage {stage}: unknown profile field(s) {', '.join(unknown)}")
        object.__setattr__(self, "_stage", stage)
        object.__setattr__(self, "_values", {n: getattr(prof, n) for n in names})
        object.__setattr__(self, "_seen", set())

    def __getattr__(self, name):
        values = object.__getattribute__(self, "_values")
        if name in values:
            object.__getattribute__(self, "_seen").add(name)
            return values[name]
        stage = object.__getattribute__(self, "_stage")
        raise AttributeError(f"stage {stage} read profile field {name!r}, which it does not declare "
                             f"(it reads {', '.join(values) or 'none'}: verify/stages.py)")

    def __setattr__(self, name, value):
        raise AttributeError("a profile is read-only")

    def sizes(self) -> tuple:
        return matmul_sizes(self)

    def unread(self) -> tuple:
        """The declared fields not read so far (a test holds a stage's declaration to what it reads)."""
        seen = object.__getattribute__(self, "_seen")
        return tuple(n for n in object.__getattribute__(self, "_values") if n not in seen)


_CPU = {
    "quick": Profile(
        name="quick", matmul_n=512, matmul_check_n=256, min_time=0.15,
        copy_bytes=32 * MiB, pcie_bytes=0,
        allreduce_sizes=(4 * KiB, 256 * KiB, 4 * MiB),
        ddp_image=32, ddp_batch=2, ddp_steps=2, convnet_batch=8, convnet_epochs=4,
        infer_image=64, infer_batches=(1, 4),
        jpeg_count=48, jpeg_side=128, jpeg_workers=2),
    "full": Profile(
        name="full", matmul_n=2048, matmul_check_n=512, min_time=0.5,
        copy_bytes=256 * MiB, pcie_bytes=0,
        allreduce_sizes=(4 * KiB, 64 * KiB, 1 * MiB, 16 * MiB, 64 * MiB),
        ddp_image=64, ddp_batch=4, ddp_steps=8, convnet_batch=16, convnet_epochs=6,
        infer_image=224, infer_batches=(1, 8, 32),
        jpeg_count=256, jpeg_side=256, jpeg_workers=4),
}
_GPU = {
    "quick": Profile(
        name="quick", matmul_n=8192, matmul_check_n=1024, min_time=0.3, matmul_sizes=(4096, 8192),
        copy_bytes=1 * GiB, pcie_bytes=256 * MiB,
        allreduce_sizes=(1 * MiB, 16 * MiB, 64 * MiB, 256 * MiB),
        ddp_image=224, ddp_batch=32, ddp_steps=10, convnet_batch=64, convnet_epochs=8,
        infer_image=224, infer_batches=(1, 32, 128),
        jpeg_count=256, jpeg_side=256, jpeg_workers=4),
    "full": Profile(
        name="full", matmul_n=16384, matmul_check_n=2048, min_time=1.0, matmul_sizes=(4096, 8192, 16384),
        copy_bytes=4 * GiB, pcie_bytes=1 * GiB,
        allreduce_sizes=tuple(1 << p for p in range(20, 31, 2)),  # 1 MiB to 1 GiB
        ddp_image=224, ddp_batch=64, ddp_steps=30, convnet_batch=128, convnet_epochs=10,
        infer_image=224, infer_batches=(1, 8, 32, 128, 256),
        jpeg_count=1024, jpeg_side=256, jpeg_workers=8),
}
BASES = {"cpu": _CPU, "cuda": _GPU}  # device type -> base profile name -> Profile


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
    table = BASES["cuda" if device_type == "cuda" else "cpu"]
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
