"""The commands, each end to end: settings in, a :class:`Outcome` out (the text to print, the document,
the exit code).

* :mod:`.audit` -- history read, fan-out, analysis, fleet and history checks, the status once, outputs,
  the record, alerts;
* :mod:`.verify` -- baselines, the executor (SSH, Slurm, pairwise), the verdict, the run directory,
  outputs, the record, alerts;
* :mod:`.provision` -- plans, apply, the toolkit audit, the report, the record;
* :mod:`.slurm_sync` -- the plan from a run's verdict, applied when asked;
* :mod:`.common` -- what every command does at its edges (select hosts, locks, notes, the record).

``tasks.py`` (both ``invoke`` and ``gpufleet``) turns flags into settings, calls one command, prints and
exits with its code.  Nothing here parses a flag.
"""

from __future__ import annotations

from dataclasses import dataclass, field

@dataclass
class Outcome:
    """What a command hands back to its task: the text for the terminal, the document for ``--json``, the
    exit code (:class:`fleet.outcome.ExitCode`)."""

    text: str
    document: dict = field(default_factory=dict)
    exit_code: int = 0
    line: str = ""  # the one-line summary (--quiet prints only this); "" when the text is already one line


__all__ = ["Outcome"]
