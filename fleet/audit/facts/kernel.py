"""Kernel side.  Facts ``driver-module`` (the NVIDIA module's driver version) and the XID lines of the kernel
log: ``dmesg``, else (dmesg is often restricted: kernel.dmesg_restrict) ``journalctl``."""

from __future__ import annotations

import re

from fleet.audit.facts.fact import Fact, failed
from fleet.framing import Section

# NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.104.05  Sat Aug 19 01:15:15 UTC 2023
_PROC_VERSION = re.compile(r"Kernel Module(?:\s+for\s+\S+)?\s+(\d+(?:\.\d+)+)")
_BARE_VERSION = re.compile(r"^\s*(\d+(?:\.\d+)+)\s*$")

# [ 1234.5678] NVRM: Xid (PCI:0000:3b:00): 79, pid=..., GPU has fallen off the bus.
_XID = re.compile(r"NVRM: Xid \((?:PCI:)?(?P<pci>[^)]*)\):\s*(?P<xid>\d+)\s*,?\s*(?P<message>.*)$")

# XIDs that mean the hardware or driver is in trouble (NVIDIA's XID catalogue): the node needs attention.
CRITICAL_XIDS = {
    48: "double-bit ECC error",
    54: "auxiliary power is not connected",
    56: "display engine error",
    57: "error programming video memory interface",
    61: "internal micro-controller breakpoint/warning",
    62: "internal micro-controller halt",
    63: "ECC page retirement or row remapping recording event",
    64: "ECC page retirement or row remapper recording failure",
    74: "NVLink error",
    79: "GPU has fallen off the bus",
    92: "high single-bit ECC error rate",
    94: "contained ECC error",
    95: "uncontained ECC error",
    119: "GSP RPC timeout",
    120: "GSP error",
    140: "unrecovered ECC error",
}
# XIDs usually caused by the application (bad kernel, bad memory access), not the node.
APPLICATION_XIDS = {
    13: "graphics engine exception (application fault)",
    31: "GPU memory page fault (application fault)",
    43: "GPU stopped processing (application fault)",
    45: "preemptive cleanup, due to previous errors",
}


def parse_driver_version(output: str) -> str | None:
    """Version from /proc/driver/nvidia/version (``NVRM version: ... Kernel Module  535.104.05 ...``)
    or /sys/module/nvidia/version (just ``535.104.05``)."""
    m = _PROC_VERSION.search(output)
    if m:
        return m.group(1)
    for line in output.splitlines():
        m = _BARE_VERSION.match(line)
        if m:
            return m.group(1)
    return None


def parse_xids(output: str) -> list[dict]:
    """Every ``NVRM: Xid`` line -> {xid, pci, message, line}."""
    xids = []
    for line in output.splitlines():
        m = _XID.search(line)
        if m:
            xids.append({"xid": int(m["xid"]), "pci": m["pci"].strip(),
                         "message": m["message"].strip(), "line": line.strip()})
    return xids


# journalctl run by a user who cannot read the system journal prints these and exits 0 with no kernel lines.
_JOURNAL_DENIED = ("insufficient permissions", "not seeing messages from other users",
                   "no journal files were opened", "permission denied")


def journal_readable(rc: int, stderr: str) -> bool:
    return rc == 0 and not any(s in stderr.lower() for s in _JOURNAL_DENIED)


def _driver_module(s: Section) -> dict:
    if s.rc != 0:
        return {}
    version = parse_driver_version(s.stdout)
    # driver_version: nvidia-smi's when it reported one (an earlier fact), else the module's
    return {"kernel_driver_version": version, "driver_version": version}


def _dmesg(s: Section) -> dict:
    return {"xids": parse_xids(s.stdout), "xid_source": "dmesg"} if s.rc == 0 else {}


def _journalctl(s: Section) -> dict:
    if not journal_readable(s.rc, s.stderr):
        return {}
    return {"xids": parse_xids(s.stdout), "xid_source": "journalctl"}


XID_LINE = "NVRM: Xid"

DRIVER_MODULE = Fact("driver-module", """\
if [ -r /proc/driver/nvidia/version ]; then cat /proc/driver/nvidia/version
elif [ -r /sys/module/nvidia/version ]; then cat /sys/module/nvidia/version
else echo "nvidia kernel module not loaded (no /proc/driver/nvidia/version or /sys/module/nvidia/version)" >&2; return 1
fi""", _driver_module)

DMESG = Fact("dmesg", "dmesg", _dmesg, timeout=20, grep=XID_LINE)

# No -q: its "insufficient permissions" hints are how an unreadable journal is told from a clean one.
JOURNALCTL = Fact("journalctl", "journalctl -k --no-pager --since '-7 days'", _journalctl, timeout=20,
                  grep=XID_LINE, when=failed("dmesg"))
