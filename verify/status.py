"""Check statuses, check records and the aggregation rule.

A check record is a plain JSON-ready dict: ``name``, ``status``, ``message``
and optional extra fields (``observed``, ``expected``, ``reference``,
``ratio``, ``details``, ``device``...).
"""

from __future__ import annotations

from typing import Any, Iterable

PASS, WARN, FAIL, SKIP, ERROR = "pass", "warn", "fail", "skip", "error"
CHECK_STATUSES = (PASS, WARN, FAIL, SKIP, ERROR)
REPORT_STATUSES = (PASS, WARN, FAIL, ERROR)

# The one severity table of gpufleet (the controller's fleet.status and its outputs use it too): skip weighs as
# pass, a check that did not run is not held against the node.
_SEVERITY = {PASS: 0, SKIP: 0, WARN: 1, FAIL: 2, ERROR: 3}
# Every check status from best to worst, by the table (skip listed after pass, which it weighs as).
ORDER = tuple(sorted(CHECK_STATUSES, key=lambda s: (_SEVERITY[s], s != PASS)))


def severity(status: Any) -> int:
    """0 for pass and skip, 1 warn, 2 fail, 3 error; anything else (a report from elsewhere) counts as error."""
    return _SEVERITY.get(status, _SEVERITY[ERROR]) if isinstance(status, str) else _SEVERITY[ERROR]


def rank(status: str) -> int:
    """A check status's place in :data:`ORDER` (pass 0, skip 1, warn 2, fail 3, error 4); ValueError when unknown."""
    if status not in _SEVERITY:
        raise ValueError(f"unknown status {status!r}")
    return ORDER.index(status)


def worst(statuses: Iterable[str]) -> str:
    """The most severe of ``statuses`` (``pass`` for none; ``skip`` counts as ``pass``)."""
    result = PASS
    for status in statuses:
        if status not in _SEVERITY:
            raise ValueError(f"unknown status {status!r}")
        if _SEVERITY[status] > _SEVERITY[result]:
            result = status
    return result


def overall(checks: Iterable[dict]) -> str:
    """The report status: the worst status among ``checks``."""
    return worst(c["status"] for c in checks)


def make_check(name: str, status: str, message: str, **extra: Any) -> dict:
    """A check record; extra fields whose value is None are left out."""
    if status not in CHECK_STATUSES:
        raise ValueError(f"unknown status {status!r}")
    record = {"name": name, "status": status, "message": message}
    record.update({k: v for k, v in extra.items() if v is not None})
    return record
