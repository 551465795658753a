"""``audit``: every selected host's facts and checks, each host's status decided once, then the outputs, the
history record and the alerts.

1. hosts selected, the history's lock taken (one audit at a time per history; exit 2 when it cannot be);
2. one SSH round trip per host (:mod:`fleet.audit.run`), the fleet checks, then each host's past from the
   history (counters that rose, Xids new since boot, GPUs that moved) added as checks;
3. the report (``gpufleet.audit/1``) with each host's final status; the outputs (--prom, --junit), the
   history record and the alerts read it and decide nothing.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from fleet.commands import Outcome, common
from fleet.config import Config
from fleet.outcome import ExitCode
from fleet.transport import SshOptions


@dataclass(frozen=True)
class AuditSettings:
    pattern: str
    inventory: tuple
    user: Optional[str]
    options: SshOptions
    db: Optional[Path]  # the history (None: --no-history)
    notify: Optional[str]
    remind_days: float
    prom: Optional[Path] = None
    junit: Optional[Path] = None
    wait_lock: float = 0.0
    json: Optional[Path] = None  # --json: named in the alert as where the report is


def run(config: Config, s: AuditSettings) -> Outcome:
    from fleet.audit import run as audit_run
    from fleet.history import read_audit_past
    from fleet.history.alerts import audit_subjects, notify, read_states

    path, selected = common.select(config, s.pattern, s.inventory, s.user)
    common.ready_to_connect(selected)
    with common.history_lock(s.db, "audit", s.wait_lock):
        result = audit_run.audit_hosts(selected, s.options)
        report = audit_run.collect_report(result, path, s.pattern)  # each host's checks, no verdict yet
        states: dict = {}
        if s.db is not None:
            past, problem = read_audit_past(s.db, report)
            if past is not None:
                audit_run.add_history_checks(report, *past)
            states, problem2 = read_states(s.db, "audit", report["hosts"]) if s.notify else ({}, None)
            for p in (problem, problem2):
                if p:
                    common.note(p)
        audit_run.decide(report)  # every host's status and reasons, once, over all its checks
        common.outputs("audit", report, s.prom, s.junit)
        run_id = common.record_history(s.db, "audit", report)
        if s.notify:
            statuses, new_xids, details = audit_subjects(report)
            common.note(notify(s.db, s.notify, "audit", run_id, statuses, states, new_xids, details, s.remind_days,
                               str(s.json) if s.json else None, report["exit_code"]))
    code = ExitCode.INTERRUPTED if result.interrupted else report["exit_code"]
    from fleet.findings import terminal_width
    from fleet.outcome import Recap

    line = Recap({name: h["status"] for name, h in report["hosts"].items()}).line()
    text = audit_run.render_table(report, terminal_width(sys.stdout))
    return common.with_config_errors(Outcome(text, report, int(code), line))
