"""``provision``: nvidia-container-toolkit and the runtimes' configuration on every selected host.

Hosts selected and the history's lock taken (one provision at a time per history); the sudo password asked
once where a host needs one; the plans applied (``--check``: only planned) by :mod:`provision.run`; the
toolkit audited; the report (``gpufleet.provision/2``) written, --junit, and the run recorded.  A dry run
(``--check``) is not recorded: it changed nothing.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from fleet.commands import Outcome, common
from fleet.config import Config
from fleet.outcome import ExitCode
from fleet.transport import SshOptions


@dataclass(frozen=True)
class ProvisionSettings:
    pattern: str
    inventory: tuple
    user: Optional[str]
    options: SshOptions
    overrides: object  # a provision.settings.Overrides, validated
    check: bool
    db: Optional[Path]
    junit: Optional[Path] = None
    wait_lock: float = 0.0


def run(config: Config, s: ProvisionSettings) -> Outcome:
    from provision import run as provision_run
    from provision.secrets import become_password

    path, selected = common.select(config, s.pattern, s.inventory, s.user)
    common.ready_to_connect(selected)
    options = dataclasses.replace(s.options, sudo_password=become_password(selected))
    with common.history_lock(s.db, "provision", s.wait_lock):
        result = provision_run.provision_hosts(selected, s.overrides, options, check=s.check)
        audit = provision_run.audit_toolkit(result, options)
        report = provision_run.build_report(result, path, s.pattern, s.check, audit, options.sudo_password)
        common.outputs("provision", report, None, s.junit)
        if s.check:  # a dry run changed nothing: the history holds what the hosts are, not what was planned
            common.note("dry run (--check): not recorded in the history")
        else:
            common.record_history(s.db, "provision", report)
    code = ExitCode.INTERRUPTED if result.interrupted else report["exit_code"]
    text = provision_run.render(report)
    return common.with_config_errors(Outcome(text, report, int(code), text.rstrip().splitlines()[-1]))
