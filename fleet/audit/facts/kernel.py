"""Kernel side.  Facts ``driver-module`` (the NVIDIA module's driver version) and the NVIDIA lines of the kernel
log (:data:`KERNEL_LINES`: Xid, NVSwitch SXid, fallen off the bus, RmInitAdapter / probe failures), filtered on the
node: ``dmesg``, else (dmesg is often restricted: kernel.dmesg_restrict) ``journalctl``."""

from __future__ import annotations

import re

from fleet.audit.facts.fact import Fact, failed
from fleet.framing import Section

# NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.104.05  Sat Aug 19 01:15:15 UTC 2023
_PROC_VERSION = re.compile(r"Kernel Module(?:\s+for\s+\S+)?\s+(\d+(?:\.\d+)+)")
_BARE_VERSION = re.compile(r"^\s*(\d+(?:\.\d+)+)\s*$")

# [ 1234.5678] NVRM: Xid (PCI:0000:3b:00): 79, pid=..., GPU has fallen off the bus.
# NVRM: Xid (PCI:0000:01:00 GPU-I:05): 94, pid=7194, Contained: CE User Channel (0x9). RST: No, D-RST: No
_XID = re.compile(r"NVRM: Xid \((?:PCI:)?(?P<pci>[^)]*)\):\s*(?P<xid>\d+)\s*,?\s*(?P<message>.*)$")
_CAUSED_BY = re.compile(r"caused by previous Xid\s+(\d+)", re.IGNORECASE)
_RESET = re.compile(r"\bRST:\s*(Yes|No)\s*,\s*D-RST:\s*(Yes|No)", re.IGNORECASE)
# NVRM: Xid (PCI:0000:01:00): 154, GPU recovery action changed from 0x0 (None) to 0x2 (Node Reboot Required)
_RECOVERY = re.compile(r"recovery action changed from\s+0x[0-9a-f]+\s*\([^)]*\)\s*to\s+(0x[0-9a-f]+)\s*\(([^)]*)\)",
                       re.IGNORECASE)
# nvidia-nvswitch3: SXid (PCI:0000:04:00.0): 22013, Non-fatal, Link 44 Minion Link DLREQ interrupt
_SXID = re.compile(r"(?P<switch>nvidia-nvswitch\d*)?:?\s*SXid \((?:PCI:)?(?P<pci>[^)]*)\):\s*(?P<sxid>\d+)\s*,?\s*"
                   r"(?P<message>.*)$")
_SXID_SEVERITY = re.compile(r"^(Non-fatal|Fatal)\b", re.IGNORECASE)
_BDF = r"(?:[0-9a-fA-F]{4}:)?[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]"
# "NVRM: GPU 0000:07:00.0: GPU has fallen off the bus."; old drivers: "NVRM: GPU at 0000:01:00.0 has fallen off ..."
_FALLEN_PCI = re.compile(rf"NVRM: GPU (?:at )?(?:PCI:)?(?P<pci>{_BDF})")
# Open/newer drivers print one message over three lines, the GPU on the first:
#   NVRM: The NVIDIA GPU 0000:b3:00.0 / NVRM: (PCI ID: 10de:26b5) installed in this system has /
#   NVRM: fallen off the bus and is not responding to commands.
_THE_GPU = re.compile(rf"NVRM: The NVIDIA GPU (?P<pci>{_BDF})")
_RM_INIT = re.compile(rf"NVRM: (?:GPU (?P<pci>{_BDF}): )?RmInitAdapter failed!?\s*(?P<code>\([^)]*\))?")
_PROBE = re.compile(r"NVRM: The NVIDIA probe routine failed for (?P<count>\d+) device")
# The kernel-log lines the node keeps (fixed strings, any of them): everything the parsers below read.
KERNEL_LINES = ("NVRM: Xid", "SXid (", "fallen off the bus", "RmInitAdapter failed", "probe routine failed",
                "NVRM: The NVIDIA GPU ")


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


def normalize_pci(pci: str | None) -> str | None:
    """``PCI:0000:2A:00`` / ``0000:2a:00.0`` / ``2a:00.0`` -> ``0000:2a:00`` (domain:bus:device, lower case);
    None for anything else (``PCI:...``)."""
    if not pci:
        return None
    p = pci.strip().split()[0].lower().removeprefix("pci:")
    p = re.sub(r"\.[0-7]$", "", p)
    p = p if p.count(":") == 2 else f"0000:{p}"
    # an address elided in a published log ("PCI:...") is no address
    return p if re.fullmatch(r"[0-9a-f]{4,8}:[0-9a-f]{2}:[0-9a-f]{2}", p) else None


def parse_xids(output: str) -> list[dict]:
    """Every ``NVRM: Xid`` line -> {xid, pci, message, line, caused_by, reset, recovery_action}.

    ``caused_by``: N of "caused by previous Xid N" (the driver names the Xid it follows); ``reset``:
    {"rst": bool, "d_rst": bool} from "RST: Yes|No, D-RST: Yes|No" (contained / uncontained errors);
    ``recovery_action``: {"code", "label"} from Xid 154's "recovery action changed ... to 0xN (label)".
    """
    xids = []
    for line in output.splitlines():
        m = _XID.search(line)
        if not m:
            continue
        message = m["message"].strip()
        caused = _CAUSED_BY.search(message)
        reset = _RESET.search(message)
        recovery = _RECOVERY.search(message)
        xids.append({"xid": int(m["xid"]), "pci": m["pci"].strip(), "message": message, "line": line.strip(),
                     "caused_by": int(caused.group(1)) if caused else None,
                     "reset": {"rst": reset.group(1).lower() == "yes", "d_rst": reset.group(2).lower() == "yes"}
                     if reset else None,
                     "recovery_action": {"code": int(recovery.group(1), 16), "label": recovery.group(2).strip()}
                     if recovery else None})
    return xids


def parse_sxids(output: str) -> list[dict]:
    """Every NVSwitch ``SXid`` line -> {sxid, switch, pci, severity ("fatal"/"non-fatal"/None), message, line}."""
    sxids = []
    for line in output.splitlines():
        m = _SXID.search(line)
        if not m:
            continue
        message = m["message"].strip()
        sev = _SXID_SEVERITY.match(message)
        sxids.append({"sxid": int(m["sxid"]), "switch": m["switch"], "pci": m["pci"].strip(),
                      "severity": sev.group(1).lower() if sev else None, "message": message, "line": line.strip()})
    return sxids


def parse_kernel_events(output: str) -> list[dict]:
    """The NVIDIA kernel lines that are not Xids: {kind, pci, detail, line}, kind one of ``fallen-off-bus``
    (with or without an Xid 79), ``rm-init-failed`` (RmInitAdapter failed: the driver could not bring a GPU up),
    ``probe-failed`` (the module's probe failed for N devices)."""
    events, last_gpu = [], None
    for line in output.splitlines():
        if _XID.search(line) or _SXID.search(line):
            continue
        if (m := _THE_GPU.search(line)):
            last_gpu = m["pci"]
        if "fallen off the bus" in line:
            m = _FALLEN_PCI.search(line) or _THE_GPU.search(line)
            pci = m["pci"] if m else last_gpu
            events.append({"kind": "fallen-off-bus", "pci": normalize_pci(pci), "detail": None, "line": line.strip()})
        elif (m := _RM_INIT.search(line)):
            events.append({"kind": "rm-init-failed", "pci": normalize_pci(m["pci"]),
                           "detail": m["code"].strip("()") if m["code"] else None, "line": line.strip()})
        elif (m := _PROBE.search(line)):
            events.append({"kind": "probe-failed", "pci": None, "detail": int(m["count"]), "line": line.strip()})
    return events


def _kernel_log(text: str, source: str) -> dict:
    return {"xids": parse_xids(text), "xid_source": source, "sxids": parse_sxids(text),
            "kernel_events": parse_kernel_events(text)}


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
    return _kernel_log(s.stdout, "dmesg") if s.rc == 0 else {}


def _journalctl(s: Section) -> dict:
    if not journal_readable(s.rc, s.stderr):
        return {}
    return _kernel_log(s.stdout, "journalctl")


DRIVER_MODULE = Fact("driver-module", """\
if [ -r /proc/driver/nvidia/version ]; then cat /proc/driver/nvidia/version
elif [ -r /sys/module/nvidia/version ]; then cat /sys/module/nvidia/version
else echo "nvidia kernel module not loaded (no /proc/driver/nvidia/version or /sys/module/nvidia/version)" >&2; return 1
fi""", _driver_module)

DMESG = Fact("dmesg", "dmesg", _dmesg, timeout=20, grep=KERNEL_LINES)

# No -q: its "insufficient permissions" hints are how an unreadable journal is told from a clean one.
# -b: this boot only, as dmesg: an Xid that a reboot already cleared must not fail the node again.
JOURNALCTL = Fact("journalctl", "journalctl -k -b --no-pager", _journalctl, timeout=20,
                  grep=KERNEL_LINES, when=failed("dmesg"))
