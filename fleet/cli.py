"""``gpufleet``: the console entry point, the same tasks as ``invoke`` (tasks.py) with its own parser's exit code.

``invoke TASK`` works too, but Invoke's parser exits 1 on a mistyped option,
task or missing argument, the code gpufleet keeps for "a host failed".  Here
every usage error exits :attr:`fleet.outcome.ExitCode.USAGE` (2) with one
line, a Ctrl-C that reaches the top exits 130, and SIGTERM stops a run the way
Ctrl-C does.
"""

from __future__ import annotations

import signal
import sys
from typing import Optional

from invoke import Collection, Program
from invoke.exceptions import Exit, ParseError

from fleet import __version__
from fleet.outcome import ExitCode


class GpufleetProgram(Program):
    """Invoke's Program with the tasks of tasks.py, whose parse errors are usage errors (exit 2)."""

    def parse_core(self, argv: Optional[list]) -> None:
        with _usage_errors():
            super().parse_core(argv)

    def parse_collection(self) -> None:
        with _usage_errors():
            super().parse_collection()

    def parse_tasks(self) -> None:
        with _usage_errors():
            super().parse_tasks()

    def run(self, argv=None, exit: bool = True) -> None:  # noqa: A002 - Invoke's own signature
        try:
            super().run(argv, exit)
        except SystemExit as e:
            if e.code == 1 and getattr(self, "_interrupted", False):
                raise SystemExit(int(ExitCode.INTERRUPTED)) from None
            raise

    def execute(self) -> None:
        try:
            super().execute()
        except KeyboardInterrupt:
            self._interrupted = True
            raise


class _usage_errors:
    """Turn Invoke's ParseError into a one-line usage error (exit 2)."""

    def __enter__(self):
        return self

    def __exit__(self, kind, value, tb):
        if kind is not None and issubclass(kind, ParseError):
            raise Exit(f"gpufleet: {value} (see gpufleet --help)", code=int(ExitCode.USAGE)) from None
        return False


def program() -> GpufleetProgram:
    import tasks  # the project's tasks.py, installed beside the packages

    return GpufleetProgram(namespace=Collection.from_module(tasks), name="gpufleet", binary="gpufleet",
                           version=__version__)


def _terminated(signum, frame) -> None:
    """SIGTERM (a service manager, a scheduler, ``kill``) stops a run as Ctrl-C does: nothing left behind."""
    raise KeyboardInterrupt


def main(argv: Optional[list] = None) -> None:
    signal.signal(signal.SIGTERM, _terminated)
    program().run(argv if argv is not None else sys.argv)


if __name__ == "__main__":
    main()
