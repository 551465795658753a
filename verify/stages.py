"""The stage registry: every verify stage, declared once, in the order a run takes them.

A stage declares its name (:data:`verify.contract.STAGES` lists the names, in this order), its scope, the
profile fields it reads (it is handed those and no others: :class:`verify.profiles.Reads`), where it runs,
what it needs, and the call that runs it.  The runner (verify/runner.py) iterates :data:`REGISTRY` and has no
branch of its own for any stage: adding a stage is a module and one entry here.

Scopes (verify/contract.py): ``world`` every rank takes part (a process group: collectives, DDP; a GPU busy on
any rank skips it on every rank, and one that raises in a multi-rank run aborts the run); ``device`` once per
device of the rank, its checks named after the device; ``rank`` once on each rank it is placed on.

Placement (``on``): ``every`` rank; ``main``: rank 0 only (the JPEG pipeline); ``node``: local rank 0 only,
once per node, the node's other ranks waiting for it (DCGM, which tests every GPU of the node itself).

Needs (:class:`Need`): what a stage cannot run without: a GPU (:data:`CUDA`), seconds in the profile
(:func:`seconds`: burn and memory test run under nightly and acceptance), a tool on PATH (:func:`tool`:
dcgmi).  An ``opt_in`` stage runs only when asked for (DCGM: ``--dcgm-level N``).

Asked for means required (:func:`decide`): a stage asked for by name (``--checks`` naming it, not ``all``;
``--dcgm-level N`` asks for dcgm) that cannot run FAILS, its check ``stage/<name>`` saying why; a stage run
only because the profile includes it is skipped, ``stage/<name>`` saying why.  So the report says what did not
run and why, and a node never passes on a diagnostic it was asked for and did not run.

The needs of a ``world`` stage, and of a stage taken one rank at a time (``turns``), must be the same on every
rank (a GPU, the profile), never a tool one node may lack: the ranks must agree on running it.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional

from verify import burn, collectives, compute, dcgm, ddp, faults, inference, memory, memtest, pipeline
from verify.contract import DEVICE, NOT_ASKED, RANK, SCOPES, STAGES, SUSTAINED, WORLD
from verify.status import FAIL, SKIP

EVERY, MAIN, NODE = "every", "main", "node"
PLACES = (EVERY, MAIN, NODE)


@dataclass(frozen=True)
class Facts:
    """What a run knows before its stages: the device type, the profile, the stages asked for by name."""

    device_type: str
    profile: Any  # verify.profiles.Profile
    asked: frozenset = frozenset()
    which: Callable[[str], Optional[str]] = shutil.which


@dataclass(frozen=True)
class Need:
    """Something a stage cannot run without; ``unmet(facts)`` says why it is missing (None: it is there)."""

    name: str
    unmet: Callable[[Facts], Optional[str]]


def _no_cuda(facts: Facts) -> Optional[str]:
    return None if facts.device_type == "cuda" else "it needs a GPU (CUDA) and this run is on the CPU"


CUDA = Need("cuda", _no_cuda)


def seconds(field: str) -> Need:
    """The profile gives the stage time: ``field`` (seconds) above 0."""
    def unmet(facts: Facts) -> Optional[str]:
        if getattr(facts.profile, field) > 0:
            return None
        return (f"profile {facts.profile.name} gives it no time ({field} 0); --profile {' or '.join(SUSTAINED)} "
                f"runs it")
    return Need(f"profile:{field}", unmet)


def tool(exe: str, why_missing: Callable[[str], str]) -> Need:
    """An executable ``exe`` on PATH; ``why_missing(exe)`` the reason when it is not."""
    return Need(f"tool:{exe}", lambda facts: None if facts.which(exe) else why_missing(exe))


@dataclass(frozen=True)
class Context:
    """What a stage's call gets besides its profile fields (and, per device, its device and label)."""

    world: Any  # verify.dist.World
    refs: Mapping[str, Any]  # device label -> reference figures (verify.reference.lookup; None: none known)
    dcgm_level: Optional[int] = None
    dcgm_allow_skips: bool = False


@dataclass(frozen=True)
class Stage:
    name: str
    scope: str  # WORLD, DEVICE or RANK
    reads: tuple  # the profile fields the call reads
    call: Callable  # world/rank: call(ctx, prof) -> (metrics, checks); device: call(ctx, prof, device, label)
    needs: tuple = ()  # Need, checked in order
    on: str = EVERY  # EVERY, MAIN (rank 0) or NODE (local rank 0)
    opt_in: bool = False  # runs only when asked for
    ask: str = ""  # opt_in: how to ask for it
    turns: bool = False  # device stage taken one rank at a time (ranks do not share a link while measured)
    telemetry: bool = False  # device stage with NVML sampled per GPU while it runs


# -- the calls ----------------------------------------------------------------------------------------------
def _collectives(ctx: Context, prof):
    return collectives.run(ctx.world, prof)


def _ddp(ctx: Context, prof):
    return ddp.run(ctx.world, prof)


def _compute(ctx: Context, prof, device, label):
    return compute.run(device, label, prof, ctx.refs[label])


def _memory(ctx: Context, prof, device, label):
    return memory.run(device, label, prof, ctx.refs[label])


def _inference(ctx: Context, prof, device, label):
    return inference.run(device, label, prof)


def _pipeline(ctx: Context, prof):
    return pipeline.run(prof)


def _burn(ctx: Context, prof, device, label):
    return burn.run(device, label, prof.burn_s, prof.burn_n, ctx.refs[label],
                    interval_s=1.0 if device.type == "cuda" else 0.25,
                    corrupt_at=2 if faults.planted("burn-corrupt") else None)


def _memtest(ctx: Context, prof, device, label):
    flip = (0, 12345, 3) if faults.planted("memtest-bitflip") else None
    return memtest.run(device, label, prof.memtest_s, max_bytes=None if device.type == "cuda" else 64 << 20,
                       flip=flip)


def _dcgm(ctx: Context, prof):
    level = ctx.dcgm_level
    return dcgm.run(level, ctx.dcgm_allow_skips, timeout=dcgm.SUGGESTED_TIMEOUT_S[level])


REGISTRY = (
    Stage("collectives", WORLD, ("allreduce_sizes", "min_time"), _collectives),
    Stage("ddp", WORLD, ("convnet_batch", "convnet_epochs", "ddp_image", "ddp_batch", "ddp_steps"), _ddp),
    Stage("compute", DEVICE, ("matmul_n", "matmul_sizes", "matmul_check_n", "min_time"), _compute),
    Stage("memory", DEVICE, ("copy_bytes", "pcie_bytes", "min_time"), _memory, turns=True),
    Stage("inference", DEVICE, ("infer_image", "infer_batches", "min_time"), _inference),
    Stage("pipeline", RANK, ("jpeg_count", "jpeg_side", "jpeg_workers"), _pipeline, on=MAIN),
    Stage("burn", DEVICE, ("burn_s", "burn_n"), _burn, needs=(seconds("burn_s"),), telemetry=True),
    Stage("memtest", DEVICE, ("memtest_s",), _memtest, needs=(seconds("memtest_s"),)),
    Stage("dcgm", RANK, (), _dcgm, needs=(tool("dcgmi", dcgm.missing),), on=NODE, opt_in=True,
          ask="--dcgm-level N (1-4) runs `dcgmi diag -r N`"),
)
BY_NAME = {s.name: s for s in REGISTRY}


def selected(names) -> tuple:
    """The stages of ``names`` (``--checks``), in registry order."""
    unknown = [n for n in names if n not in BY_NAME]
    if unknown:
        raise ValueError(f"unknown stage(s) {', '.join(unknown)}; choose from {', '.join(STAGES)}")
    return tuple(s for s in REGISTRY if s.name in names)


def placed(stage: Stage, rank: int, local_rank: int) -> bool:
    """Whether the rank ``rank`` (``local_rank`` on its node) runs ``stage``."""
    return stage.on == EVERY or (stage.on == MAIN and rank == 0) or (stage.on == NODE and local_rank == 0)


def decide(stage: Stage, facts: Facts) -> Optional[tuple]:
    """None where ``stage`` runs; else ``(status, message)`` of its ``stage/<name>`` check (pure): asked for by
    name and unable to run, ``fail``; left out, or unable to run where only the profile included it, ``skip``."""
    asked = stage.name in facts.asked
    if stage.opt_in and not asked:
        return SKIP, f"{stage.name} not run: {NOT_ASKED} ({stage.ask})"
    for need in stage.needs:
        why = need.unmet(facts)
        if why:
            if asked:
                return FAIL, f"{stage.name} was asked for and cannot run: {why}"
            return SKIP, f"{stage.name} not run: {why}"
    return None


def problems() -> list:
    """Every way the registry departs from its rules (an empty list: none); the tests hold it to none."""
    out = []
    if tuple(s.name for s in REGISTRY) != STAGES:
        out.append(f"registry order {[s.name for s in REGISTRY]} is not verify.contract.STAGES {list(STAGES)}")
    for s in REGISTRY:
        if s.scope not in SCOPES:
            out.append(f"{s.name}: scope {s.scope!r} not one of {SCOPES}")
        if s.on not in PLACES:
            out.append(f"{s.name}: on {s.on!r} not one of {PLACES}")
        if (s.turns or s.telemetry) and s.scope != DEVICE:
            out.append(f"{s.name}: turns and telemetry are for device stages")
        if s.opt_in and not s.ask:
            out.append(f"{s.name}: an opt-in stage says how to ask for it")
        if (s.scope == WORLD or s.turns) and any(n.name.startswith("tool:") for n in s.needs):
            out.append(f"{s.name}: a stage every rank takes in step may not need a tool one node may lack")
        if s.scope == WORLD and s.on != EVERY:
            out.append(f"{s.name}: a world stage runs on every rank")
    return out
