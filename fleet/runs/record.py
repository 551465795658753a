"""One record per host, from launch to ``run.json``: :class:`HostRun`.

The runner fills it as the host's work goes (push summary, torchrun's exit
status and output, the report's bytes), the fan-out's outcome completes it,
the verdict reads it and the run directory writes it.  A node report is parsed
and validated exactly once, when it arrives (:meth:`HostRun.accept_report`),
with the node package's own torch-free validator (:func:`verify.report.validate`):
a report that fails it makes the host ``bad_report`` with the reasons.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from fleet.outcome import FAIL, PASS, HostState, status_for
from verify import SCHEMA as REPORT_SCHEMA
from verify.report import validate

MEMBER_CHECK = "multinode/member"


def parse_report(data: bytes, name: str = "report") -> tuple[Optional[dict], Optional[str]]:
    """``(report, None)`` for a valid ``gpufleet.verify/1`` report, or ``(None, why)`` naming ``name``."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        return None, f"{name}: not UTF-8 (byte {e.start})"
    try:
        report = json.loads(text)
    except json.JSONDecodeError as e:
        return None, f"{name}: invalid JSON at line {e.lineno} column {e.colno}: {e.msg}"
    if not isinstance(report, dict):
        return None, f"{name}: a JSON {type(report).__name__}, not an object"
    if report.get("schema") != REPORT_SCHEMA:
        return None, f"{name}: schema {report.get('schema')!r}, expected {REPORT_SCHEMA!r}"
    problems = validate(report)
    if problems:
        more = f" (+{len(problems) - 3} more)" if len(problems) > 3 else ""
        return None, f"{name}: not a valid {REPORT_SCHEMA} report: {'; '.join(problems[:3])}{more}"
    return report, None


@dataclass
class Member:
    """A node of a multi-node run: its place in the rendezvous (kept in run.json).

    Every node writes its own verify report (of its own ranks), and that
    report is its verdict.  :meth:`check` judges a member by torchrun's exit
    status only for run directories written before nodes had reports of their
    own (one report, on the node that held rank 0).
    """

    node_rank: int
    node_count: int
    endpoint: str

    def check(self, exit_code: Optional[int]) -> dict:
        ok = exit_code == 0
        return {"name": MEMBER_CHECK, "status": PASS if ok else FAIL,
                "message": f"node {self.node_rank} of {self.node_count} (rendezvous {self.endpoint}): torchrun "
                           f"exited {exit_code}; the figures are in the report of the node that held rank 0"}

    def to_dict(self) -> dict:
        return {"node_rank": self.node_rank, "node_count": self.node_count, "endpoint": self.endpoint}


@dataclass
class HostRun:
    """Everything known about one host's verify run.

    ``state``: how the work ended (:class:`fleet.outcome.HostState`).  ``report``:
    the node's validated report, ``raw`` its bytes exactly as fetched (written
    back unchanged).  ``output``: torchrun's output (it goes to the host's log
    file, named by ``log`` relative to the run directory).  ``member``: set on
    every node of a multi-node run (its place in the rendezvous).
    """

    host: str
    state: HostState = HostState.OK
    message: str = ""
    report: Optional[dict] = None
    raw: Optional[bytes] = field(default=None, repr=False)
    log: Optional[str] = None
    output: str = field(default="", repr=False)
    push: dict = field(default_factory=dict)
    exit_code: Optional[int] = None
    duration_s: float = 0.0
    member: Optional[Member] = None

    def __post_init__(self) -> None:
        self.state = HostState(self.state)

    def accept_report(self, data: bytes, name: str = "report.json") -> bool:
        """Keep the fetched bytes and the parsed report; a report failing validation makes the host ``bad_report``."""
        self.raw = data
        self.report, why = parse_report(data, name)
        if self.report is None:
            self.state, self.message = HostState.BAD_REPORT, why
        return self.report is not None

    @property
    def checks(self) -> list:
        """The report's checks (a member of an old multi-node run without a report: its one member check)."""
        if self.report is not None:
            return self.report["checks"]
        if self.member is not None and self.state is HostState.OK:
            return [self.member.check(self.exit_code)]
        return []

    @property
    def verdict(self) -> Optional[str]:
        """What the work itself concluded: the report's status, a member's exit status, else None."""
        if self.report is not None:
            return self.report["status"]
        if self.member is not None:
            return self.member.check(self.exit_code)["status"]
        return None

    @property
    def status(self) -> str:
        """The host status (:func:`fleet.outcome.status_for`): the verdict when the run ended ``ok``."""
        return status_for(self.state, self.verdict)

    def finish(self, state: HostState, message: str, duration_s: float) -> "HostRun":
        """Complete the record with the fan-out's outcome (a host error overrides what the work concluded)."""
        if state is not HostState.OK:
            self.state, self.message = state, message
        self.duration_s = self.duration_s or duration_s
        return self


@dataclass
class FinishedRun:
    """A finished verify run, handed forward in memory: its directory, every host's record, run.json's fields and
    the verdict.  The outputs, the history and summary.html read this, never the files the run just wrote."""

    run_dir: Path
    runs: list
    meta: dict
    summary: dict
