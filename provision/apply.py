"""Run the steps on one host over a Transport, recording each as Ansible does: ok / changed / skipped / failed.

One round trip gathers the facts; each step's plan is computed from them (pure);
only planned commands run, one by one, stopping the host at the first failure
(undoing the step's partial change where the step says how).  With ``check``
nothing but the read-only fact script runs, and each step reports what it would do.

Every command runs as ``sh -c '<command>'`` with stdin closed (``exec </dev/null``);
under sudo the transport feeds the password only to a sudo that asks for it
(:func:`fleet.shell.become`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from fleet.outcome import HostError, TaskFailed
from fleet.shell import quote
from fleet.status import Status
from fleet.transport import CommandResult, Transport
from provision import validate
from provision.facts import FactsParseError, ProvisionFacts, fact_script, parse_facts
from provision.settings import Settings
from provision.steps import Command, Step, steps_for

OK, CHANGED, SKIPPED, FAILED = "ok", "changed", "skipped", "failed"

_SUDO_TROUBLE = (
    (re.compile(r"incorrect password|Sorry, try again", re.I),
     "sudo rejected the password: set GPUFLEET_BECOME_PASSWORD or answer the prompt with the right one"),
    (re.compile(r"a password is required|a terminal is required|no tty present", re.I),
     "sudo needs a password: set GPUFLEET_BECOME_PASSWORD or run from a terminal to be prompted"),
    (re.compile(r"not in the sudoers file|is not allowed to (execute|run sudo)", re.I),
     "the remote user may not use sudo (not in sudoers)"),
    (re.compile(r"sudo: (command )?not found|sudo: not found", re.I),
     "ansible_become is set but sudo is not installed on the host"),
)


@dataclass
class StepResult:
    name: str
    status: str
    message: str
    commands: list[str] = field(default_factory=list)
    output: str | None = None  # the failing command's last lines

    def to_dict(self) -> dict:
        d = {"name": self.name, "status": self.status, "message": self.message, "commands": self.commands}
        if self.output:
            d["output"] = self.output
        return d


def sh(script: str) -> str:
    """A command line that runs ``script`` under POSIX sh, whatever the login shell, stdin closed."""
    return "sh -c " + quote("exec </dev/null\n" + script)


def sudo_trouble(r: CommandResult, password_given: bool = True) -> str | None:
    text = r.stderr + "\n" + r.stdout
    for pattern, message in _SUDO_TROUBLE:
        if pattern.search(text):
            if message.startswith("sudo rejected") and not password_given:
                return _SUDO_TROUBLE[1][1]
            return message
    return None


def _tail(r: CommandResult, lines: int = 6) -> str:
    return r.tail(lines)


def _explain(command: Command, r: CommandResult) -> str:
    """The few lines that say why a command failed."""
    text = r.stdout + "\n" + r.stderr
    if command.fail_pattern:
        hits = [m.group(0).strip() for m in re.finditer(command.fail_pattern, text)]
        if hits:
            return " | ".join(dict.fromkeys(hits))[:600]
    errors = [line.strip() for line in text.splitlines() if re.match(r"^\s*(E:|error|Error|ERROR|fatal)", line)]
    if errors:
        return " | ".join(errors[-3:])[:600]
    return " | ".join(line.strip() for line in _tail(r, 3).splitlines() if line.strip())[:600] or "no output"


def _failed(command: Command, r: CommandResult) -> bool:
    if not r.ok:
        return True
    return bool(command.fail_pattern and re.search(command.fail_pattern, r.stdout + "\n" + r.stderr))


class Provisioner:
    """The per-host work.  ``run()`` returns the host's report or raises TaskFailed/HostError with it attached."""

    def __init__(self, t: Transport, settings: Settings, check: bool = False):
        self.t = t
        self.settings = settings
        self.check = check
        self.sudo = bool(t.host.become)
        self.report: dict = {
            "status": None,
            "check": check,
            "become": self.sudo,
            "settings": settings.to_dict(),
            "steps": [],
            "validation": [],
        }

    # ----------------------------------------------------------- plumbing

    def _run(self, script: str) -> CommandResult:
        try:
            return self.t.run(sh(script), sudo=self.sudo)
        except HostError as e:
            e.partial = self.report  # fleet.fanout keeps it (connection lost or timed out mid-run)
            raise

    def _sudo_trouble(self, r: CommandResult) -> str | None:
        if not self.sudo:
            return None
        options = getattr(self.t, "options", None)
        given = self.t.host.become_password or getattr(options, "sudo_password", None)
        return sudo_trouble(r, password_given=bool(given))

    def _fail(self, message: str) -> TaskFailed:
        self.report["status"] = FAILED
        self.report["message"] = message
        return TaskFailed(message, self.report)

    # ----------------------------------------------------------- phases

    def gather(self) -> ProvisionFacts:
        r = self._run(fact_script(self.settings.key_url))
        try:
            facts = parse_facts(r.stdout)
        except FactsParseError as e:
            why = self._sudo_trouble(r)
            if why:
                raise self._fail(why) from None
            raise self._fail(f"could not read the host's state (exit {r.exit_code}): "
                             f"{_tail(r, 3) or e}") from None
        self.report.update(os=facts.os_label, family=facts.family, facts=facts.summary())
        if facts.family is None:
            raise self._fail(facts.family_error or "unsupported distribution")
        if facts.uid != 0:
            raise self._fail(f"connected as uid {facts.uid}, not root, and ansible_become is not set: connect as "
                             f"root or set ansible_become: true (sudo)")
        return facts

    def apply(self, facts: ProvisionFacts) -> bool:
        """Run (or, in check mode, list) every step.  False when a step failed.

        A real run stops at a failed step (the rest would build on it); a dry run goes on and shows the
        whole plan, with the step that would fail marked and why."""
        failed_step = None
        for step in steps_for(facts, self.settings):
            if failed_step and not self.check:
                self._record(StepResult(step.name, SKIPPED, f"not run: the {failed_step} step failed"))
                continue
            result = self._step(step, facts)
            self._record(result)
            if result.status == FAILED:
                failed_step = step.name
        return failed_step is None

    def _record(self, result: StepResult) -> None:
        self.report["steps"].append(result.to_dict())

    def _step(self, step: Step, facts: ProvisionFacts) -> StepResult:
        plan = step.plan(facts, self.settings)
        shown = [c.display for c in plan.commands]
        if plan.action == "fail":
            return StepResult(step.name, FAILED, ("would fail: " if self.check else "") + plan.message)
        if plan.action == "skip":
            return StepResult(step.name, SKIPPED, plan.message)
        if not plan.commands:
            return StepResult(step.name, OK, plan.message)
        if self.check:
            return StepResult(step.name, CHANGED, "would " + plan.message, shown)
        for i, command in enumerate(plan.commands):
            r = self._run(command.shell)
            if _failed(command, r):
                why = self._sudo_trouble(r) or _explain(command, r)
                message = f"{command.label} failed (exit {r.exit_code}): {why}"
                if plan.undo:
                    undone = all(self._run(u.shell).ok for u in plan.undo)
                    message += ("; the previous state was restored" if undone
                                else "; restoring the previous state FAILED too: check the host")
                return StepResult(step.name, FAILED, message, shown[: i + 1], _tail(r, 8))
        return StepResult(step.name, CHANGED, plan.message, shown)

    def verify(self, facts: ProvisionFacts) -> bool:
        r = self._run(validate.validate_script(facts, self.settings))
        try:
            checks = validate.analyse(r.stdout, facts, self.settings)
        except FactsParseError:
            why = self._sudo_trouble(r) or _tail(r, 3)
            self.report["validation"] = [{"name": "validate", "status": "error",
                                          "message": f"validation script failed (exit {r.exit_code}): {why}"}]
            return False
        self.report["validation"] = [c.to_dict() for c in checks]
        return not any(c.status in (Status.FAIL, Status.ERROR) for c in checks)

    def run(self) -> dict:
        facts = self.gather()
        applied = self.apply(facts)
        valid = True
        if applied and not self.check:
            valid = self.verify(facts)
        steps = self.report["steps"]
        if not applied:
            bad = next(s for s in steps if s["status"] == FAILED)
            raise self._fail(f"{bad['name']}: {bad['message']}")
        if not valid:
            bad = [v for v in self.report["validation"] if v["status"] in ("fail", "error")]
            raise self._fail("validation: " + "; ".join(f"{v['name']}: {v['message']}" for v in bad))
        self.report["status"] = CHANGED if any(s["status"] == CHANGED for s in steps) else OK
        return self.report


def provision_host(t: Transport, settings: Settings, check: bool = False) -> dict:
    return Provisioner(t, settings, check).run()
