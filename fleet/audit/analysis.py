"""The pure analysis of the gather script's output: framed sections -> facts -> checks -> one host's verdict."""

from __future__ import annotations

from dataclasses import dataclass, field

from fleet import framing
from fleet.audit.checks import evaluate
from fleet.audit.expectations import Expectations
from fleet.audit.facts import FACTS
from fleet.audit.facts.host import HostFacts, host_facts
from fleet.audit.script import HEADER, PREFIX
from fleet.framing import FramingError, Section
from fleet.status import Check, Status, worst

# Checks analyse() adds when it cannot get as far as evaluate() (all status error).
ANALYSIS_CHECK_NAMES = ("audit-output", "audit-facts", "checks")


class AuditParseError(FramingError):
    """The audit script's output is truncated or its framing garbled."""


def split_sections(output: str) -> dict[str, Section]:
    """Framed script output -> {name: Section(stdout, stderr, rc)}.  Raises AuditParseError."""
    return framing.split_sections(output, HEADER, PREFIX, AuditParseError, "audit")


def frame_sections(sections: dict[str, Section]) -> str:
    """What the gather script prints for these sections (recorded cases, tests)."""
    return framing.frame(sections, HEADER, PREFIX)


@dataclass
class HostAudit:
    status: Status
    facts: HostFacts
    checks: list[Check] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"status": self.status.value, "facts": self.facts.to_dict(),
                "checks": [c.to_dict() for c in self.checks]}


def analyse(output: str, expect: Expectations) -> HostAudit:
    """Raw script output -> HostAudit(status, facts, checks).  Never raises on bad output."""
    try:
        sections = split_sections(output)
    except AuditParseError as exc:
        check = Check("audit-output", Status.ERROR, f"the audit script's output could not be read: {exc}",
                      observed=output[:200], expected="gpufleet-framed sections")
        return HostAudit(Status.ERROR, HostFacts(), [check])
    try:
        facts = host_facts(sections, FACTS)
    except Exception as exc:  # a parser bug must cost one host, not the whole audit  # noqa: BLE001
        check = Check("audit-facts", Status.ERROR, f"internal error while reading the audit output: {exc!r}")
        return HostAudit(Status.ERROR, HostFacts(), [check])
    try:
        checks = evaluate(facts, expect)
    except Exception as exc:  # a bug in a check must not lose the host's facts  # noqa: BLE001
        checks = [Check("checks", Status.ERROR, f"internal error while evaluating checks: {exc!r}")]
    return HostAudit(worst(c.status for c in checks), facts, checks)
