"""Planted faults, FOR TESTS ONLY.

Setting ``GPUFLEET_VERIFY_FAULT`` (a comma-separated list) makes exactly one
code path misbehave, so the test suite can prove the matching check fails:

``ddp-perturb``        the last rank nudges one parameter after the DDP steps
                       (``ddp/params_in_sync`` must fail)
``allreduce-wrong``    the last rank on the node's all_reduce result is off by one
                       in one element (``collectives/allreduce_correct`` must
                       fail); planted on one node of a multi-node run, it stays
                       with that node whatever its node rank
``checkpoint-corrupt`` rank 0 alters one tensor of the state_dict it saves
                       (``ddp/checkpoint:*`` must fail)
``matmul-corrupt``     one element of the matmul result is shifted by one
                       standard deviation (``compute/matmul_correct:*`` must fail)
``compute-slow``       every timed matmul does three products but counts one: the
                       node's matmul figures drop to about a third (a straggler
                       for the fleet verdict to name)
``rank-exit``          the last rank (of 2 or more) exits abruptly at the
                       collectives stage (the run must end with an error, not hang)
``rank-hang``          the last rank on the node (of 2 or more in the run) sleeps
                       at the collectives stage (the process-group timeout must
                       end the run); like ``allreduce-wrong``, it follows the node
``burn-corrupt``       the burn's product is shifted in its second interval
                       (``burn/correct/*`` must fail: silent data corruption)
``memtest-bitflip``    one bit flips in device memory between a pattern's write
                       and its read-back (``memtest`` must fail)

Never set it on a production node: a planted fault makes the report fail.
"""

from __future__ import annotations

import os
from typing import Mapping, Optional

ENV_VAR = "GPUFLEET_VERIFY_FAULT"
KNOWN = frozenset(
    {"ddp-perturb", "allreduce-wrong", "checkpoint-corrupt", "matmul-corrupt", "compute-slow", "rank-exit",
     "rank-hang", "burn-corrupt", "memtest-bitflip"}
)


def parse(value: Optional[str]) -> frozenset:
    """The fault names in ``value``; ValueError for an unknown one."""
    names = frozenset(n.strip() for n in (value or "").split(",") if n.strip())
    unknown = sorted(names - KNOWN)
    if unknown:
        raise ValueError(f"{ENV_VAR}: unknown fault(s) {', '.join(unknown)}; known: {', '.join(sorted(KNOWN))}")
    return names


def active(environ: Optional[Mapping[str, str]] = None) -> frozenset:
    """The faults planted through the environment."""
    env = os.environ if environ is None else environ
    return parse(env.get(ENV_VAR))


def planted(name: str) -> bool:
    """Whether fault ``name`` is planted in this process's environment."""
    if name not in KNOWN:
        raise ValueError(f"unknown fault {name!r}")
    return name in active()
