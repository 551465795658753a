"""The typed status taxonomy shared by every check and every host verdict."""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable


class Status(str, enum.Enum):
    """Outcome of one check.  Ordered by severity (see :func:`worst`)."""

    PASS = "pass"
    SKIP = "skip"
    WARN = "warn"
    FAIL = "fail"
    ERROR = "error"

    def __str__(self) -> str:  # pragma: no cover - cosmetic
        return self.value


_SEVERITY = {Status.PASS: 0, Status.SKIP: 0, Status.WARN: 1, Status.FAIL: 2, Status.ERROR: 3}


def worst(statuses: Iterable[Status]) -> Status:
    """The most severe status; PASS for an empty list (skips do not count against a host)."""
    result = Status.PASS
    for s in statuses:
        if _SEVERITY[s] > _SEVERITY[result]:
            result = s
    return result


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
        d = asdict(self)
        d["status"] = self.status.value
        if not d["details"]:
            del d["details"]
        return d
