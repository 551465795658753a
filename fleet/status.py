"""The typed status taxonomy shared by every check and every host verdict, and a host's reasons.

The order of the statuses lives in one table, :mod:`verify.status` (torch-free, it runs on the nodes too);
:func:`worst` here is that table's rule over :class:`Status` values.

A host's **reasons** say why its status is what it is, as plain data: ``{"kind", "status", "message", ...}``
(``kind``: ``state`` for work that did not end ``ok``, ``check`` for a check that did not pass, and for a
verify run ``report``, ``straggler``, ``regression``, ``culprit``).  :func:`final_status` decides the status
from them once; everything downstream reads ``status`` and ``reasons`` and never decides again.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from fleet.outcome import HostState, status_for
from fleet.plain import plain
from verify import status as _table


class Status(str, enum.Enum):
    """Outcome of one check.  Ordered by severity (see :func:`worst`)."""

    PASS = _table.PASS
    SKIP = _table.SKIP
    WARN = _table.WARN
    FAIL = _table.FAIL
    ERROR = _table.ERROR

    def __str__(self) -> str:  # pragma: no cover - cosmetic
        return self.value


def worst(statuses: Iterable[Status]) -> Status:
    """The most severe status; PASS for an empty list (skips do not count against a host)."""
    return Status(_table.worst(Status(s).value for s in statuses))


@dataclass
class Check:
    """One check: what was looked at, what was seen, what was wanted, and what to do about it."""

    name: str
    status: Status
    message: str
    observed: Any = None
    expected: Any = None
    details: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = {"name": self.name, "status": self.status.value, "message": self.message,
             "observed": plain(self.observed), "expected": plain(self.expected)}
        if self.details:
            d["details"] = plain(self.details)
        return d


# ------------------------------------------------------------------------------ reasons

REASON_KINDS = ("state", "check", "report", "straggler", "regression", "culprit")


def reason(kind: str, status: str, message: str, **extra: Any) -> dict:
    """One reason record; extra fields whose value is None are left out."""
    if kind not in REASON_KINDS:
        raise ValueError(f"unknown reason kind {kind!r}; expected one of {REASON_KINDS}")
    return {"kind": kind, "status": status, "message": message, **{k: v for k, v in extra.items() if v is not None}}


def check_reasons(checks: Iterable[Mapping]) -> list[dict]:
    """A reason per check that did not pass (warn, fail, error; a status gpufleet does not know counts as
    error), the failing ones first, each keeping its ``name``."""
    bad = [c for c in checks if _table.severity(c.get("status")) >= _table.severity(_table.FAIL)]
    warned = [c for c in checks if c.get("status") == _table.WARN]
    return [reason("check", c["status"] if c.get("status") in _table.CHECK_STATUSES else _table.ERROR,
                   str(c.get("message") or ""), name=str(c.get("name"))) for c in bad + warned]


def state_reason(state: HostState | str, message: str) -> dict:
    """The reason of a host whose work did not end ``ok``: its state's status, the runner's message."""
    state = HostState(state)
    return reason("state", status_for(state), message or state.value, state=state.value)


def final_status(state: HostState | str, reasons: Iterable[Mapping]) -> str:
    """A host's status, decided once: for work that ended ``ok``, the worst of its reasons' statuses (``pass``
    with none); otherwise the status its state maps to (:func:`fleet.outcome.status_for`)."""
    state = HostState(state)
    if state is not HostState.OK:
        return status_for(state)
    return _table.worst(r["status"] for r in reasons)
