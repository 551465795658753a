"""The audit's pure side: fact units (command + parser), the gather script generated from them, the checks.

- :mod:`fleet.audit.facts`         one module per thing looked at, each declaring its :class:`Fact` units;
                                   ``FACTS``, their order; ``HostFacts`` (``facts.host``) built from them
- :mod:`fleet.audit.script`        :func:`gather_script` / :data:`AUDIT_SCRIPT`, generated from ``FACTS``
- :mod:`fleet.audit.analysis`      :func:`analyse`: framed output -> facts -> checks -> :class:`HostAudit`
- :mod:`fleet.audit.checks`        pure checks (``CHECK_NAMES``), against :mod:`fleet.audit.expectations`

Running the script on hosts is :mod:`fleet.audit.run`'s job.
"""

from __future__ import annotations

from fleet.audit.analysis import AuditParseError, HostAudit, analyse, frame_sections, split_sections
from fleet.audit.expectations import Expectations
from fleet.audit.script import AUDIT_SCRIPT, gather_script

__all__ = ["AUDIT_SCRIPT", "AuditParseError", "Expectations", "HostAudit", "analyse", "frame_sections",
           "gather_script", "split_sections"]
