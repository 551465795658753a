"""The one outcome model every command shares: how a host's work ended, its status, the recap, exit codes.

Two words, two questions (Ansible's model: one stats object, named run codes):

- **state** (:class:`HostState`): how the work on a host *ended*. ``ok`` means it
  ran to the end; every other state says why it did not (the host was not
  reached, the command timed out, the work failed, the run was interrupted...).
- **status**: the host's *verdict*, one of :data:`STATUSES`. A host whose
  state is ``ok`` takes the verdict of its work (its checks, its report, its
  steps); any other state maps to a status through :func:`status_for`, the one
  place that rule lives.

:class:`Recap` counts statuses over a run and gives its exit code; the exit
codes themselves are :class:`ExitCode`.  A host-level error is a
:class:`HostError` whose ``partial`` field keeps whatever the interrupted work
had produced, so nothing already learnt about a host is lost.
"""

from __future__ import annotations

import enum
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping


class HostState(str, enum.Enum):
    """How the work on one host ended."""

    OK = "ok"  # ran to the end: the status is the work's own verdict
    FAILED = "failed"  # reached and ran, but the work itself failed (a step, a non-zero exit, no report)
    UNREACHABLE = "unreachable"  # refused, DNS, connect/banner timeout, connection lost
    AUTH_FAILED = "auth_failed"  # reached, but our credentials were refused
    HOST_KEY_REJECTED = "host_key_rejected"  # unknown or changed host key: never connected
    TIMED_OUT = "timed_out"  # connected, but the work outlived its timeout (and was stopped)
    BAD_REPORT = "bad_report"  # ran, but what it returned is not a valid report
    INTERRUPTED = "interrupted"  # the operator stopped the run (Ctrl-C) before this host finished
    ERROR = "error"  # a bug or an unexpected condition on the controller side
    # Under a scheduler (verify --via slurm): the host was deliberately not checked this time.
    BUSY = "busy"  # its node runs someone else's job: a benchmark would disturb it (and be disturbed)
    NOT_SCHEDULED = "not_scheduled"  # its job was still pending at the deadline (cancelled)
    UNAVAILABLE = "unavailable"  # its node is drained or down by someone else: left alone

    def __str__(self) -> str:
        return self.value


# Host statuses: the verdict vocabulary of every command, from best to worst.  ``skipped``: not checked this
# time, on purpose (a busy or someone else's drained node under Slurm); it neither passes nor fails a run.
PASS, WARN, SKIPPED, FAIL, ERROR, UNREACHABLE = "pass", "warn", "skipped", "fail", "error", "unreachable"
STATUSES = (PASS, WARN, SKIPPED, FAIL, ERROR, UNREACHABLE)
VERDICTS = (PASS, WARN, FAIL, ERROR)  # what a host's own work can conclude
PASSING = frozenset({PASS, WARN})  # a warning is worth reading, not a failed run

_STATUS_OF_STATE = {
    HostState.FAILED: FAIL,
    HostState.UNREACHABLE: UNREACHABLE,
    HostState.AUTH_FAILED: UNREACHABLE,
    HostState.HOST_KEY_REJECTED: UNREACHABLE,
    HostState.TIMED_OUT: ERROR,
    HostState.BAD_REPORT: ERROR,
    HostState.INTERRUPTED: ERROR,
    HostState.ERROR: ERROR,
    HostState.BUSY: SKIPPED,
    HostState.NOT_SCHEDULED: SKIPPED,
    HostState.UNAVAILABLE: SKIPPED,
}


def status_for(state: HostState | str, verdict: str | None = None) -> str:
    """The host status for a state: the work's ``verdict`` when the state is ``ok``, else the state's status.

    An ``ok`` host without a known verdict is ``error``: it ran, but nothing says how it went.
    """
    state = HostState(state)
    if state is HostState.OK:
        return verdict if verdict in VERDICTS else ERROR
    return _STATUS_OF_STATE[state]


class ExitCode(enum.IntEnum):
    """What every gpufleet command exits with."""

    OK = 0  # every selected host passed (warnings allowed)
    HOSTS_FAILED = 1  # a host failed, erred, was not reached, straggled or regressed; or nothing was checked
    USAGE = 2  # a usage or inventory error: no host was contacted
    INTERRUPTED = 130  # the operator stopped the run (Ctrl-C): what finished is kept, the rest is "interrupted"


class HostError(Exception):
    """A host-level failure: ``state`` is how the host's work ended; ``partial`` what it had produced so far."""

    state = HostState.ERROR

    def __init__(self, message: str = "", partial: Any = None):
        super().__init__(message)
        self.partial = partial


class TaskFailed(HostError):
    """Raised by a host's work to record ``failed`` while keeping the partial result it produced."""

    state = HostState.FAILED


class Unreachable(HostError):
    state = HostState.UNREACHABLE


class AuthFailed(HostError):
    state = HostState.AUTH_FAILED


class HostKeyRejected(HostError):
    state = HostState.HOST_KEY_REJECTED


class TimedOut(HostError):
    state = HostState.TIMED_OUT


class Interrupted(HostError):
    state = HostState.INTERRUPTED


class Unusable(HostError):
    """An inventory entry gpufleet cannot honour (an ssh option it cannot reproduce, a connection
    type it does not speak...): the host is never contacted, and the message says why."""

    state = HostState.ERROR


@dataclass
class Recap:
    """The run's stats: how many hosts ended in each status, and what that means for the exit code.

    ``statuses`` maps host name to status.  ``changed`` names hosts whose state
    was changed (provisioning); ``extra_failures`` counts findings beyond the
    hosts' own status that fail the run (stragglers, regressions).
    """

    statuses: Mapping[str, str]
    changed: Iterable[str] = ()
    extra_failures: int = 0
    counts: dict = field(init=False)

    def __post_init__(self) -> None:
        unknown = sorted({s for s in self.statuses.values() if s not in STATUSES})
        if unknown:
            raise ValueError(f"unknown host status {unknown[0]!r}; expected one of {STATUSES}")
        self.changed = sorted(set(self.changed))
        tally = Counter(self.statuses.values())
        self.counts = {s: tally.get(s, 0) for s in STATUSES}

    @property
    def hosts(self) -> int:
        return len(self.statuses)

    @property
    def succeeded(self) -> list:
        return [h for h, s in self.statuses.items() if s in PASSING]

    @property
    def failed(self) -> list:
        return [h for h, s in self.statuses.items() if s not in PASSING and s != SKIPPED]

    @property
    def skipped(self) -> list:
        return [h for h, s in self.statuses.items() if s == SKIPPED]

    @property
    def exit_code(self) -> ExitCode:
        """0 when at least one host was checked, every checked host passed and nothing else failed the run (skipped
        hosts neither pass nor fail it); else 1."""
        if not self.succeeded or self.failed or self.extra_failures:
            return ExitCode.HOSTS_FAILED
        return ExitCode.OK

    def to_dict(self) -> dict:
        doc = {"hosts": self.hosts, **self.counts}
        if self.changed:
            doc["changed"] = len(self.changed)
        return doc

    def line(self) -> str:
        """``3 hosts: 2 pass, 1 unreachable`` (only the statuses that occur)."""
        parts = [f"{n} {s}" for s, n in self.counts.items() if n]
        if self.changed:
            parts.append(f"{len(self.changed)} changed")
        return f"{plural(self.hosts, 'host')}: {', '.join(parts) or 'none selected'}"


def plural(n: int, word: str) -> str:
    """``1 host``, ``2 hosts``."""
    return f"{n} {word}{'' if n == 1 else 's'}"


@dataclass
class CommandResult:
    """One command's run on a host: what ran, its exit status, its output (decoded, invalid bytes replaced)."""

    command: str
    exit_code: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def tail(self, lines: int = 20) -> str:
        text = (self.stdout + ("\n" if self.stdout and self.stderr else "") + self.stderr).rstrip()
        return "\n".join(text.splitlines()[-lines:])
