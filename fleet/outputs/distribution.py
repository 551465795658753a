"""Which hosts a key figure's fleet distribution on summary.html holds, and its medians (pure).

A distribution is drawn per GPU model, of the hosts whose run did not fail: a host whose own run failed or
erred (a failing check, a state other than ok, a status the page does not know) is left out of the points and of
the median, and shown apart.  A host failed only for its figures (a straggler, a regression) is what the plot is
for: it stays, highlighted.  A model
with fewer than :data:`MIN_HOSTS` such hosts gets no distribution: a point or two is no spread to compare with.
The median is of the drawn hosts' figures: the summary's fleet median counts the same hosts
(:func:`fleet.runs.verdict.judge`).
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import median
from typing import Mapping, Optional

from fleet.outcome import STATUSES
from fleet.runs.metrics import number

MIN_HOSTS = 3  # hosts of one model, not failed, for a distribution
EXCLUDED_STATUSES = ("fail", "error")  # a failed or errored run's figure is no measure of the fleet


@dataclass(frozen=True)
class Group:
    """One GPU model's hosts with a figure of one key, in run order."""

    model: str
    hosts: tuple  # ((host, value), ...): in the distribution and its median
    excluded: tuple  # ((host, status, value), ...): failed or errored, never in the median
    achievable: Optional[float]  # the reference figure for the model, when the summary has one

    @property
    def drawn(self) -> bool:
        return len(self.hosts) >= MIN_HOSTS

    @property
    def median(self) -> Optional[float]:
        """The median of the distribution's hosts; None where there is no distribution."""
        return median(v for _, v in self.hosts) if self.drawn else None


FIGURE_REASONS = ("straggler", "regression")  # a host failed for these alone is measured, not broken


def counts(entry: Mapping) -> bool:
    """Whether a host's entry belongs in a distribution: its status is known and not failed or errored, or it
    failed for its figures alone (stragglers, regressions)."""
    from fleet.runs.verdict import reasons_of

    status = entry.get("status")
    if status not in STATUSES:
        return False
    if status not in EXCLUDED_STATUSES:
        return True
    bad = [r for r in reasons_of(entry) if r.get("status") in EXCLUDED_STATUSES]
    return bool(bad) and all(r.get("kind") in FIGURE_REASONS for r in bad)


def groups(summary: Mapping, key: str) -> list:
    """The :class:`Group` of each GPU model with a host that has a figure of ``key``, by model name."""
    members: dict = {}  # model -> ([(host, value)], [(host, status, value)])
    for host, entry in (summary.get("hosts") or {}).items():
        value = number(((entry.get("metrics") or {}).get(key) or {}).get("value"))
        if value is None:
            continue
        drawn, excluded = members.setdefault(entry.get("gpu_model") or "-", ([], []))
        status = entry.get("status")
        if counts(entry):
            drawn.append((host, value))
        else:
            excluded.append((host, str(status), value))
    out = []
    for model in sorted(members):
        ref = (((summary.get("fleet") or {}).get(model) or {}).get("reference") or {}).get(key)
        achievable = number(ref.get("achievable")) if isinstance(ref, Mapping) else None
        drawn, excluded = members[model]
        out.append(Group(model, tuple(drawn), tuple(excluded), achievable))
    return out
