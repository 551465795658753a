"""``gpufleet``: the console entry point, the same tasks as ``invoke`` (tasks.py) with its own parser's exit code.

The same program as ``invoke`` run in the project: the same tasks and the same
configuration (the project's ``invoke.yaml`` beside ``tasks.py``, Invoke's system
and user files, the environment; see :mod:`fleet.config`).  ``invoke TASK``
works too, but Invoke's parser exits 1 on a mistyped option, task or missing
argument, the code gpufleet keeps for "a host failed".  Here every usage error
exits :attr:`fleet.outcome.ExitCode.USAGE` (2) with one line, a Ctrl-C that
reaches the top exits 130, and SIGTERM stops a run the way Ctrl-C does.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Optional

from invoke import Collection, Program
from invoke.exceptions import Exit, ParseError

from fleet import __version__
from fleet.outcome import ExitCode


class GpufleetProgram(Program):
    """Invoke's Program with the tasks of tasks.py and the project's invoke.yaml, whose parse errors are usage
    errors (exit 2)."""

    def __init__(self, project: Path, **kwargs) -> None:
        super().__init__(**kwargs)
        self.project = project

    def create_config(self) -> None:
        """Invoke's system and user configuration, then the project's (what ``invoke`` loads beside tasks.py)."""
        super().create_config()
        self.config.set_project_location(str(self.project))
        self.config.load_project()

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
    """The program; a broken invoke.yaml stops it here (tasks.py checks it on import: exit 2, one line)."""
    import tasks  # the project's tasks.py, installed beside the packages

    return GpufleetProgram(Path(tasks.__file__).resolve().parent, namespace=Collection.from_module(tasks),
                           name="gpufleet", binary="gpufleet", version=__version__)


def _terminated(signum, frame) -> None:
    """SIGTERM (a service manager, a scheduler, ``kill``) stops a run as Ctrl-C does: nothing left behind."""
    raise KeyboardInterrupt


def main(argv: Optional[list] = None) -> None:
    signal.signal(signal.SIGTERM, _terminated)
    try:
        prog = program()
    except Exit as e:  # the configuration cannot be used: one line, exit 2
        print(e.message, file=sys.stderr)
        raise SystemExit(e.code) from None
    prog.run(argv if argv is not None else sys.argv)


if __name__ == "__main__":
    main()
