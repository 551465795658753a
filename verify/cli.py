"""Command line: ``python -m verify`` and ``torchrun --nproc_per_node=N -m verify``."""

from __future__ import annotations

import argparse
import sys

from verify import faults
from verify.contract import DCGM_LEVELS, PROFILES, SCHEMA, STAGES, VERSION, stage_check

__all__ = ["STAGES", "PROFILES", "parse_checks", "parse_args", "build_parser", "main"]

EPILOG = f"""\
stages (--checks): {', '.join(STAGES)}; the environment checks always run.
A stage named in --checks (not 'all') is required: one that cannot run fails the
report with the reason ({stage_check('<stage>')}); a stage run because the profile
includes it is skipped with the reason instead.  --dcgm-level N asks for dcgm
(`--checks dcgm` alone runs level 1); without either, dcgm is not run.

examples:
  python -m verify --profile quick --out /tmp/report.json
  torchrun --standalone --nproc_per_node=8 -m verify --profile full
  torchrun --nnodes=2 --nproc_per_node=8 --rdzv-backend=c10d --rdzv-endpoint=HOST:29500 -m verify

Run alone, verify tests every visible device from one process and makes a
1-rank process group itself (collectives and DDP then run with a world of
one; the all_reduce bandwidth is skipped).  Under torchrun each rank tests its
own GPU (or, on a CPU machine, is one gloo rank); rank 0 gathers every rank's
figures and writes the report ({SCHEMA}; see docs/verify-report.md).

exit status: 0 once the report is written (its status is the verdict: pass, warn, fail or error), 1 no
report (or a multi-rank run that aborted: its report says so), 2 usage error.

{faults.ENV_VAR} (a comma-separated list) plants a fault for the test suite
ONLY: {', '.join(sorted(faults.KNOWN))}.  Never set it on a node.
"""


def parse_checks(text: str) -> tuple:
    """``all`` or a comma-separated subset of :data:`STAGES`."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    if names == ["all"]:
        return STAGES
    unknown = [n for n in names if n not in STAGES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown stage(s) {', '.join(unknown) or '(none)'}; "
                                         f"choose from all, {', '.join(STAGES)}")
    return tuple(s for s in STAGES if s in names)


class ChecksAction(argparse.Action):
    """``--checks``: the stages to run (``checks``) and the ones it names, which are asked for (``named``;
    none for ``all``)."""

    def __call__(self, parser, namespace, values, option_string=None):
        try:
            chosen = parse_checks(values)
        except argparse.ArgumentTypeError as exc:
            parser.error(f"argument --checks: {exc}")
        namespace.checks = chosen
        names = [n.strip() for n in values.split(",") if n.strip()]
        namespace.named = frozenset() if names == ["all"] else frozenset(chosen)


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("must be positive")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m verify",
        description="gpufleet node verification: checks this node's PyTorch/CUDA stack and what its GPUs "
                    "(or CPU) and the links between them deliver, and writes one JSON report.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--profile", choices=PROFILES, default="quick",
                   help="quick: under a minute on a 2-core CPU, a few minutes on an 8-GPU node; "
                        "full: larger sizes and longer sweeps; nightly: quick plus a few minutes of burn and "
                        "memory test per device; acceptance: full plus 30 minutes of them (default: %(default)s)")
    p.add_argument("--duration", type=positive_float, default=None, metavar="SECONDS",
                   help="nightly/acceptance: seconds of sustained stages per device (burn 70 %%, memory test 30 %%; "
                        "default nightly 300, acceptance 1800)")
    p.add_argument("--dcgm-level", type=int, choices=DCGM_LEVELS, default=None, metavar="N",
                   help="also run `dcgmi diag -r N -j` (stage dcgm; asked for, so dcgmi absent or DCGM unable to "
                        "run it fails the report)")
    p.add_argument("--dcgm-allow-skips", action="store_true",
                   help="a DCGM test DCGM skipped is not a failure (it is by default)")
    p.add_argument("--out", default="verify-report.json", metavar="PATH",
                   help="report file, written by each node's local rank 0 atomically, of that node's ranks "
                        "(default: %(default)s in the current directory)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="auto: CUDA when torch sees a GPU, else CPU (default: %(default)s)")
    p.add_argument("--force", action="store_true",
                   help="benchmark GPUs that already run other compute processes (skipped otherwise)")
    p.add_argument("--checks", action=ChecksAction, default=STAGES, metavar="LIST",
                   help="comma-separated stages to run, or 'all' (default: all); a stage named here that cannot "
                        "run fails")
    p.add_argument("--timeout", type=positive_float, default=300.0, metavar="SECONDS",
                   help="process-group timeout: a dead or stuck rank ends the run with an error after this "
                        "long (default: %(default)s)")
    p.add_argument("--no-progress", action="store_true", help="no tqdm progress bar (it only shows on a tty)")
    p.add_argument("--quiet", action="store_true", help="no summary on stdout")
    p.add_argument("--version", action="version", version=f"%(prog)s {VERSION} ({SCHEMA})")
    p.set_defaults(named=frozenset())
    return p


def parse_args(argv=None) -> argparse.Namespace:
    """The options, with ``requested``: the stages asked for (named in --checks; dcgm by --dcgm-level), which
    must run or fail.  --dcgm-level adds dcgm to the stages run; ``--checks dcgm`` alone runs level 1."""
    args = build_parser().parse_args(argv)  # exits 2 on a usage error
    requested = set(args.named)
    if args.dcgm_level is not None:
        requested.add("dcgm")
        args.checks = tuple(s for s in STAGES if s in args.checks or s == "dcgm")
    elif "dcgm" in requested:
        args.dcgm_level = DCGM_LEVELS[0]
    args.requested = frozenset(requested)
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        planted = faults.active()
    except ValueError as exc:
        print(f"python -m verify: error: {exc}", file=sys.stderr)
        return 2
    from verify.runner import Runner  # imports torch

    return Runner(args, planted).run()
