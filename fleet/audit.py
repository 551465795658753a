"""One-round-trip audit: the POSIX sh gather script, its framing, and the pure analysis of its output.

The script (:data:`AUDIT_SCRIPT`) runs every command optionally and prints framed sections::

    @@gpufleet-audit 1@@
    @@gpufleet-begin <name>@@
    |<stdout line>          every payload line is prefixed with "|", so no payload can forge a marker
    @@gpufleet-stderr <name>@@
    |<stderr line>
    @@gpufleet-end <name> rc=<N>@@
    ...
    @@gpufleet-done@@

The framing is :mod:`fleet.framing`'s (shared with provisioning's fact script); anything malformed
raises :class:`AuditParseError`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fleet import framing
from fleet.checks import evaluate
from fleet.expectations import Expectations
from fleet.facts import kernel, lspci, nvidia_smi, osrelease, toolkit
from fleet.facts.host import HostFacts
from fleet.framing import FramingError, Section
from fleet.status import Check, Status, worst

AUDIT_SCRIPT = r"""#!/bin/sh
# gpufleet audit: gather a GPU node's facts in one round trip.  POSIX sh (dash-safe); needs no root;
# every command is optional and its exit status is recorded; the script itself always exits 0.
LC_ALL=C; export LC_ALL
PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"; export PATH
umask 077
_gf_tmp=$(mktemp -d 2>/dev/null) || _gf_tmp=""
if [ -z "$_gf_tmp" ]; then
    _gf_tmp="${TMPDIR:-/tmp}/gpufleet.$$"
    mkdir "$_gf_tmp" 2>/dev/null || _gf_tmp=""
fi
[ -n "$_gf_tmp" ] && trap 'rm -rf "$_gf_tmp"' EXIT
trap 'exit 0' INT TERM HUP

_gf_have() { command -v "$1" >/dev/null 2>&1; }
_gf_timeout=""
_gf_have timeout && _gf_timeout="timeout"

_gf_fast=""
_gf_have sed && _gf_have cat && _gf_fast=1

# _gf_prefix: stdin (ending in a newline) -> every line prefixed with "|".
_gf_prefix() {
    if [ -n "$_gf_fast" ]; then sed 's/^/|/'
    else while IFS= read -r _gf_l; do printf '|%s\n' "$_gf_l"; done
    fi
}

# _gf_frame FILE: FILE's content plus one extra newline, every line prefixed with "|".
_gf_frame() {
    if [ -n "$_gf_fast" ]; then { cat "$1"; echo; } | sed 's/^/|/'; return; fi
    _gf_nl=1  # without sed/cat: pure sh, noting whether the last line lacked its newline
    while :; do
        if IFS= read -r _gf_l; then printf '|%s\n' "$_gf_l"
        elif [ -n "$_gf_l" ]; then printf '|%s\n' "$_gf_l"; _gf_nl=0; break
        else break
        fi
    done <"$1"
    [ "$_gf_nl" = 1 ] && printf '|\n'
}

# _gf_run NAME COMMAND...: run COMMAND, print its framed stdout, stderr and exit status.
_gf_run() {
    _gf_name=$1; shift
    printf '@@gpufleet-begin %s@@\n' "$_gf_name"
    if [ -n "$_gf_tmp" ]; then
        "$@" >"$_gf_tmp/out" 2>"$_gf_tmp/err" </dev/null
        _gf_rc=$?
        _gf_frame "$_gf_tmp/out"
        printf '@@gpufleet-stderr %s@@\n' "$_gf_name"
        _gf_frame "$_gf_tmp/err"
    else
        _gf_out=$("$@" 2>/dev/null </dev/null)
        _gf_rc=$?
        { printf '%s\n' "$_gf_out"; echo; } | _gf_prefix
        printf '@@gpufleet-stderr %s@@\n' "$_gf_name"
        printf '|gpufleet: no temporary directory, stderr not captured\n|\n'
    fi
    printf '@@gpufleet-end %s rc=%s@@\n' "$_gf_name" "$_gf_rc"
}

# _gf_opt SECONDS COMMAND...: COMMAND under timeout if available; 127 with a message if missing.
_gf_opt() {
    _gf_secs=$1; shift
    if ! _gf_have "$1"; then
        echo "$1: not found" >&2
        return 127
    fi
    if [ -n "$_gf_timeout" ]; then
        timeout "$_gf_secs" "$@"
    else
        "$@"
    fi
}

_gf_os_release() {
    if [ -r /etc/os-release ]; then cat /etc/os-release
    elif [ -r /usr/lib/os-release ]; then cat /usr/lib/os-release
    else echo "no os-release file" >&2; return 1
    fi
}

_gf_driver_module() {
    if [ -r /proc/driver/nvidia/version ]; then cat /proc/driver/nvidia/version
    elif [ -r /sys/module/nvidia/version ]; then cat /sys/module/nvidia/version
    else echo "nvidia kernel module not loaded (no /proc/driver/nvidia/version or /sys/module/nvidia/version)" >&2; return 1
    fi
}

_gf_docker_runtimes() {
    _gf_opt 10 docker info --format '{{json .Runtimes}}'
}

# Kernel-log XID lines; filtered here so a large log does not cross the wire.  Returns the reader's status.
_gf_xid() {
    if [ -z "$_gf_tmp" ]; then "$@" | grep 'NVRM: Xid'; return 0; fi
    _gf_opt 20 "$@" >"$_gf_tmp/log"
    _gf_lrc=$?
    grep 'NVRM: Xid' "$_gf_tmp/log"
    rm -f "$_gf_tmp/log"
    return $_gf_lrc
}

echo '@@gpufleet-audit 1@@'
_gf_run os-release _gf_os_release
_gf_run uname uname -r
_gf_run lspci _gf_opt 20 lspci -nn
_gf_run nvidia-smi _gf_opt 60 nvidia-smi -q -x
_gf_smi_rc=$_gf_rc
_gf_run driver-module _gf_driver_module
_gf_run nvidia-ctk _gf_opt 10 nvidia-ctk --version
if _gf_have docker; then _gf_run docker-runtimes _gf_docker_runtimes; fi
_gf_run dmesg _gf_xid dmesg
# dmesg is often restricted (kernel.dmesg_restrict): fall back to the journal.  No -q: its
# "insufficient permissions" hints are how an unreadable journal is told from a clean one.
if [ "$_gf_rc" != 0 ]; then
    _gf_run journalctl _gf_xid journalctl -k --no-pager --since '-7 days'
fi
# Only worth asking when the full query worked (a hung or broken nvidia-smi would just hang or fail again).
if [ "$_gf_smi_rc" = 0 ]; then
    _gf_run compute-apps _gf_opt 30 nvidia-smi --query-compute-apps=pid,process_name,used_memory,gpu_uuid --format=csv,noheader
fi
echo '@@gpufleet-done@@'
exit 0
"""

SECTIONS = ("os-release", "uname", "lspci", "nvidia-smi", "driver-module", "nvidia-ctk",
            "docker-runtimes", "dmesg", "journalctl", "compute-apps")


class AuditParseError(FramingError):
    """The audit script's output is truncated or its framing garbled."""


_HEADER = "@@gpufleet-audit 1@@"


def split_sections(output: str) -> dict[str, Section]:
    """Framed script output -> {name: Section(stdout, stderr, rc)}.  Raises AuditParseError."""
    return framing.split_sections(output, _HEADER, "gpufleet", AuditParseError, "audit")


# ---------------------------------------------------------------- analysis

@dataclass
class HostAudit:
    status: Status
    facts: HostFacts
    checks: list[Check] = field(default_factory=list)

    def to_dict(self) -> dict:
        facts = self.facts.to_dict()
        return {"status": self.status.value, "facts": facts, "checks": [c.to_dict() for c in self.checks]}


def _first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()[:200]
    return ""


def gather_facts(sections: dict[str, Section]) -> HostFacts:
    """Sections -> HostFacts.  Pure; never raises on odd command output (it lands in the facts as errors)."""
    f = HostFacts()
    if (s := sections.get("os-release")) and s.rc == 0:
        f.os = osrelease.parse_os_release(s.stdout)
    if (s := sections.get("uname")) and s.rc == 0:
        f.kernel = osrelease.parse_uname(s.stdout)

    if (s := sections.get("lspci")) is not None:
        if s.rc == 0:
            f.lspci_gpus = lspci.parse_lspci(s.stdout)
            f.lspci_gpu_count = len(f.lspci_gpus)
        else:
            f.lspci_error = "lspci not installed (install pciutils)" if s.rc == 127 else \
                f"lspci failed (exit {s.rc}): {_first_line(s.stderr)}"

    if (s := sections.get("driver-module")) and s.rc == 0:
        f.kernel_driver_version = kernel.parse_driver_version(s.stdout)

    s = sections.get("nvidia-smi") or Section("", "nvidia-smi section missing from the audit output", 127)
    failure = nvidia_smi.classify_failure(s.rc, s.stdout, s.stderr)
    if failure is None:
        try:
            log = nvidia_smi.parse_xml(s.stdout)
        except nvidia_smi.NvidiaSmiParseError as exc:
            kind = "unsafe-xml" if "ENTITY" in str(exc) else "garbage"
            failure = nvidia_smi.NvidiaSmiFailure(kind, f"nvidia-smi output could not be parsed: {exc}", s.rc,
                                                  nvidia_smi._excerpt(s.stdout))
        else:
            f.nvidia_smi_schema = log.schema
            f.driver_version = log.driver_version
            f.cuda_version = log.cuda_version
            f.attached_gpus = log.attached_gpus
            f.gpus = log.gpus
            if log.attached_gpus is not None and log.attached_gpus != len(log.gpus):
                f.notes.append(f"nvidia-smi says attached_gpus={log.attached_gpus} but reports {len(log.gpus)} <gpu> "
                               f"element(s); the elements are counted")
            if s.rc != 0:
                f.notes.append(f"nvidia-smi exited {s.rc} but printed a parsable report")
    f.nvidia_smi_error = failure
    if f.driver_version is None:
        f.driver_version = f.kernel_driver_version
    elif f.kernel_driver_version and f.kernel_driver_version != f.driver_version:
        f.notes.append(f"kernel module reports driver {f.kernel_driver_version}, nvidia-smi {f.driver_version}")

    if (s := sections.get("nvidia-ctk")) is not None:
        if s.rc == 0:
            f.toolkit_version = toolkit.parse_ctk_version(s.stdout)
        else:
            f.toolkit_error = "nvidia-ctk not installed" if s.rc == 127 else \
                f"nvidia-ctk failed (exit {s.rc}): {_first_line(s.stderr)}"

    s = sections.get("docker-runtimes")
    if s is None:
        f.docker_error = "docker not installed"
    elif s.rc == 0:
        try:
            f.docker_runtimes = toolkit.parse_docker_runtimes(s.stdout)
        except ValueError as exc:
            f.docker_error = f"unreadable docker info output: {exc}"
    else:
        f.docker_error = f"docker info failed (exit {s.rc}): {_first_line(s.stderr)}"

    if (s := sections.get("dmesg")) and s.rc == 0:
        f.xids, f.xid_source = kernel.parse_xids(s.stdout), "dmesg"
    elif (s := sections.get("journalctl")) and kernel.journal_readable(s.rc, s.stderr):
        f.xids, f.xid_source = kernel.parse_xids(s.stdout), "journalctl"

    if (s := sections.get("compute-apps")) and s.rc == 0:
        f.compute_processes = nvidia_smi.parse_compute_apps(s.stdout)
    return f


def analyse(output: str, expect: Expectations) -> HostAudit:
    """Raw script output -> HostAudit(status, facts, checks).  Never raises on bad output."""
    try:
        sections = split_sections(output)
    except AuditParseError as exc:
        check = Check("audit-output", Status.ERROR, f"the audit script's output could not be read: {exc}",
                      observed=output[:200], expected="gpufleet-framed sections")
        return HostAudit(Status.ERROR, HostFacts(), [check])
    try:
        facts = gather_facts(sections)
    except Exception as exc:  # a parser bug must cost one host, not the whole audit
        check = Check("audit-facts", Status.ERROR, f"internal error while reading the audit output: {exc!r}")
        return HostAudit(Status.ERROR, HostFacts(), [check])
    try:
        checks = evaluate(facts, expect)
    except Exception as exc:  # a bug in a check must not lose the host's facts
        checks = [Check("checks", Status.ERROR, f"internal error while evaluating checks: {exc!r}")]
    return HostAudit(worst(c.status for c in checks), facts, checks)
