"""NVIDIA's decode of the NVLink5 Xids 144-150 (GB200 / GB300 / B200), as data, and the decode of one line.

Source (:data:`SOURCE`): the sheet "XID 144-150 Decode" of NVIDIA's Xid catalogue
(docs.nvidia.com/deploy/xid-errors/analyzing-xid-catalog.html, the table after the catalogue: Xid, unit,
IntrInfo patterns for drivers before R575 (V1) and from R575 (V2), error status, "Resolution Bucket (Data
Center Recovery Action)", "Decode for action 2" / "Action 2", "Resolution Bucket (Investigatory Action)",
severity), as transcribed by leptonai/gpud in ``components/accelerator/nvidia/xid/catalog_generated.go``
(generated 2025-10-29 from NVIDIA's page; at commit 4a8de33a3f02e207f39e9023d67125592d599731, file last
changed in b9842de2b11177a482560391805f1691c9ef9607).  That block is kept verbatim in
tests/data/kernel/catalog/gpud-nvlink5-decode-rules.go.txt and a test keeps :data:`RULES` equal to it.
gpud's transcription names the "Action 2" bucket but not its IntrInfo pattern; :data:`ACTION2_PATTERNS` holds
NVIDIA's (the page's "Decode for action 2" columns: the unit's pattern with IntrInfo bit 10 (V1) / bit 7 (V2)
set).

A line, as the driver prints it (R570 and later)::

    NVRM: Xid (PCI:0018:01:00): 145, RLW_RXPIPE Nonfatal XC0 i0 Link 13 (0x0409a0c2 0x00000008 0x00000001 ...)

names the unit, the driver's severity (``Fatal`` / ``Nonfatal``), the link, then IntrInfo and the error status
(the first two words).  :func:`decode` finds the rows of that unit whose IntrInfo pattern matches and whose
error status is the line's (a status with several bits set: one row per bit, the worst action wins) and returns
NVIDIA's action for it; where the table has no row for it, ``action`` is None and the line's own severity
decides (:mod:`fleet.audit.checks_kernel`).  Pure.
"""

from __future__ import annotations

import re
from typing import NamedTuple

SOURCE = ("NVIDIA Xid catalogue, sheet \"XID 144-150 Decode\" (docs.nvidia.com/deploy/xid-errors/"
          "analyzing-xid-catalog.html), as transcribed in leptonai/gpud components/accelerator/nvidia/xid/"
          "catalog_generated.go @ 4a8de33a (generated 2025-10-29)")
XIDS = range(144, 151)


class Rule(NamedTuple):
    xid: int
    unit: str                # as NVIDIA writes it; "A/B": the driver prints A or B (or A/B)
    intrinfo_v1: str         # 32 characters, bit 31 first; "-" any bit (drivers before R575)
    intrinfo_v2: str         # the same from R575
    error_status: int
    action: str              # Resolution Bucket (Data Center Recovery Action)
    investigatory: str
    severity: str            # NVIDIA's words: Non-fatal, Fatal, Link Fatal, Non-fatal* (see the Action 2 columns)
    action2: str = ""        # the action when the IntrInfo matches ACTION2_PATTERNS[unit]


# (xid, unit) -> (V1, V2) IntrInfo patterns under which the row's "Action 2" applies (NVIDIA's page).
ACTION2_PATTERNS = {
    (145, "RLW_RXPIPE"): ("------000000---------10011000010", "------000000------------10000110"),
}

RULES: tuple[Rule, ...] = (
    Rule(144, "SAW_MVB", "------000000----------0000100001", "------000000-------------0000001",
         0x00000001, "IGNORE", "CONTACT_SUPPORT", "Non-fatal"),
    Rule(144, "SAW_MVB", "------000000----------0000100001", "------000000-------------0000001",
         0x00000002, "RESET_GPU", "CONTACT_SUPPORT", "Fatal"),
    Rule(144, "SAW_MVB", "------000000----------0000100001", "------000000-------------0000001",
         0x00000004, "IGNORE", "IGNORE", "Non-fatal"),
    Rule(144, "SAW_MVB", "------000000----------0000100001", "------000000-------------0000001",
         0x00000008, "IGNORE", "CONTACT_SUPPORT", "Non-fatal"),
    Rule(144, "SAW_MVB", "------000000----------0000100001", "------000000-------------0000001",
         0x00000010, "RESET_GPU", "CONTACT_SUPPORT", "Fatal"),
    Rule(144, "SAW_MVB", "------000000----------0000100001", "------000000-------------0000001",
         0x00000020, "IGNORE", "IGNORE", "Non-fatal"),
    Rule(145, "RLW_CTRL", "------000000----------0001100010", "------000000-------------0000011",
         0x80000000, "IGNORE", "CONTACT_SUPPORT", "Non-fatal"),
    Rule(145, "RLW_REMAP", "------000000----------0010000010", "------000000-------------0000100",
         0x00000001, "XID_154_EVAL", "CONTACT_SUPPORT", "Non-fatal"),
    Rule(145, "RLW_REMAP", "------000000----------0010000010", "------000000-------------0000100",
         0x00000002, "XID_154_EVAL", "CONTACT_SUPPORT", "Non-fatal"),
    Rule(145, "RLW_REMAP", "------000000----------0010000010", "------000000-------------0000100",
         0x00000004, "XID_154_EVAL", "CHECK_NVLINK_FAILURE_FLOW", "Non-fatal"),
    Rule(145, "RLW_REMAP", "------000000----------0010000010", "------000000-------------0000100",
         0x00000008, "XID_154_EVAL", "CHECK_NVLINK_FAILURE_FLOW", "Non-fatal"),
    Rule(145, "RLW_REMAP", "------000000----------0010000010", "------000000-------------0000100",
         0x00000010, "XID_154_EVAL", "CHECK_NVLINK_FAILURE_FLOW", "Non-fatal"),
    Rule(145, "RLW_REMAP", "------000000----------0010000010", "------000000-------------0000100",
         0x00000020, "XID_154_EVAL", "CHECK_NVLINK_FAILURE_FLOW", "Non-fatal"),
    Rule(145, "RLW_REMAP", "------000000----------0010000010", "------000000-------------0000100",
         0x00000040, "RESET_GPU", "CONTACT_SUPPORT", "Fatal"),
    Rule(145, "RLW_REMAP", "------000000----------0010000010", "------000000-------------0000100",
         0x00000080, "RESET_GPU", "CONTACT_SUPPORT", "Fatal"),
    Rule(145, "RLW_REMAP", "------000000----------0010000010", "------000000-------------0000100",
         0x00000100, "IGNORE", "IGNORE", "Non-fatal"),
    Rule(145, "RLW_REMAP", "------000000----------0010000010", "------000000-------------0000100",
         0x00000200, "IGNORE", "IGNORE", "Non-fatal"),
    Rule(145, "RLW_REMAP", "------000000----------0010000010", "------000000-------------0000100",
         0x80000000, "IGNORE", "CONTACT_SUPPORT", "Non-fatal"),
    Rule(145, "RLW_RSPCOL", "------000000----------0010100010", "------000000-------------0000101",
         0x00000001, "IGNORE", "IGNORE", "Non-fatal"),
    Rule(145, "RLW_RSPCOL", "------000000----------0010100010", "------000000-------------0000101",
         0x00000002, "RESET_GPU", "CONTACT_SUPPORT", "Fatal"),
    Rule(145, "RLW_RSPCOL", "------000000----------0010100010", "------000000-------------0000101",
         0x80000000, "IGNORE", "CONTACT_SUPPORT", "Non-fatal"),
    Rule(145, "RLW_RXPIPE", "------000000---------00011000010", "------000000------------00000110",
         0x00000001, "IGNORE", "CONTACT_SUPPORT", "Non-fatal*", "RESET_GPU"),
    Rule(145, "RLW_RXPIPE", "------000000---------00011000010", "------000000------------00000110",
         0x00000002, "IGNORE", "CONTACT_SUPPORT", "Non-fatal*", "RESET_GPU"),
    Rule(145, "RLW_RXPIPE", "------000000---------00011000010", "------000000------------00000110",
         0x00000004, "IGNORE", "CONTACT_SUPPORT", "Non-fatal*", "RESET_GPU"),
    Rule(145, "RLW_RXPIPE", "------000000----------0011000010", "------000000-------------0000110",
         0x00000008, "IGNORE", "CONTACT_SUPPORT", "Non-fatal"),
    Rule(145, "RLW_RXPIPE", "------000000----------0011000010", "------000000-------------0000110",
         0x80000000, "IGNORE", "CONTACT_SUPPORT", "Non-fatal"),
    Rule(145, "RLW_SRC_TRACK", "------000000----------0011100010", "------000000-------------0000111",
         0x00000001, "RESET_GPU", "CONTACT_SUPPORT", "Fatal"),
    Rule(145, "RLW_SRC_TRACK", "------000000----------0011100010", "------000000-------------0000111",
         0x00000002, "IGNORE", "IGNORE", "Non-fatal"),
    Rule(145, "RLW_SRC_TRACK", "------000000----------0011100010", "------000000-------------0000111",
         0x00000004, "XID_154_EVAL", "IGNORE", "Non-fatal"),
    Rule(145, "RLW_SRC_TRACK", "------000000----------0011100010", "------000000-------------0000111",
         0x00000008, "XID_154_EVAL", "IGNORE", "Non-fatal"),
    Rule(145, "RLW_SRC_TRACK", "------000000----------0011100010", "------000000-------------0000111",
         0x00000010, "RESET_GPU", "CONTACT_SUPPORT", "Fatal"),
    Rule(145, "RLW_SRC_TRACK", "------000000----------0011100010", "------000000-------------0000111",
         0x00000020, "RESET_GPU", "CONTACT_SUPPORT", "Fatal"),
    Rule(145, "RLW_SRC_TRACK", "------000000----------0011100010", "------000000-------------0000111",
         0x80000000, "IGNORE", "CONTACT_SUPPORT", "Non-fatal"),
    Rule(145, "RLW_TAGSTATE", "------000000----------0100000010", "------000000-------------0001000",
         0x00000001, "IGNORE", "IGNORE", "Non-fatal"),
    Rule(145, "RLW_TAGSTATE", "------000000----------0100000010", "------000000-------------0001000",
         0x00000002, "RESET_GPU", "CONTACT_SUPPORT", "Fatal"),
    Rule(145, "RLW_TAGSTATE", "------000000----------0100000010", "------000000-------------0001000",
         0x00010000, "IGNORE", "IGNORE", "Non-fatal"),
    Rule(145, "RLW_TAGSTATE", "------000000----------0100000010", "------000000-------------0001000",
         0x00020000, "RESET_GPU", "CONTACT_SUPPORT", "Fatal"),
    Rule(145, "RLW_TAGSTATE", "------000000----------0100000010", "------000000-------------0001000",
         0x00100000, "RESET_GPU", "CONTACT_SUPPORT", "Fatal"),
    Rule(145, "RLW_TAGSTATE", "------000000----------0100000010", "------000000-------------0001000",
         0x80000000, "IGNORE", "CONTACT_SUPPORT", "Non-fatal"),
    Rule(146, "TLW_CTRL", "------000000----------0100100011", "------000000-------------0001001",
         0x00000001, "IGNORE", "IGNORE", "Non-fatal"),
    Rule(146, "TLW_CTRL", "------000000----------0100100011", "------000000-------------0001001",
         0x00000002, "IGNORE", "CONTACT_SUPPORT", "Non-fatal"),
    Rule(146, "TLW_CTRL", "------000000----------0100100011", "------000000-------------0001001",
         0x00000004, "RESET_GPU", "CONTACT_SUPPORT", "Fatal"),
    Rule(146, "TLW_CTRL", "------000000----------0100100011", "------000000-------------0001001",
         0x80000000, "IGNORE", "CONTACT_SUPPORT", "Non-fatal"),
    Rule(146, "TLW_RX/TLW_RX_PIPE0", "------000000----------0101000011", "------000000-------------0001010",
         0x00000001, "IGNORE", "IGNORE", "Non-fatal"),
    Rule(146, "TLW_RX/TLW_RX_PIPE0", "------000000----------0101000011", "------000000-------------0001010",
         0x00000002, "IGNORE", "CONTACT_SUPPORT", "Non-fatal"),
    Rule(146, "TLW_RX/TLW_RX_PIPE0", "------000000----------0101000011", "------000000-------------0001010",
         0x00000004, "RESET_GPU", "CONTACT_SUPPORT", "Fatal"),
    Rule(146, "TLW_RX/TLW_RX_PIPE0", "------000000----------0101000011", "------000000-------------0001010",
         0x80000000, "IGNORE", "CONTACT_SUPPORT", "Non-fatal"),
    Rule(146, "TLW_RX/TLW_RX_PIPE1", "------000000----------0101000011", "------000000-------------0001011",
         0x00000001, "IGNORE", "IGNORE", "Non-fatal"),
    Rule(146, "TLW_RX/TLW_RX_PIPE1", "------000000----------0101000011", "------000000-------------0001011",
         0x00000002, "IGNORE", "CONTACT_SUPPORT", "Non-fatal"),
    Rule(146, "TLW_RX/TLW_RX_PIPE1", "------000000----------0101000011", "------000000-------------0001011",
         0x00000004, "RESET_GPU", "CONTACT_SUPPORT", "Fatal"),
    Rule(146, "TLW_RX/TLW_RX_PIPE1", "------000000----------0101000011", "------000000-------------0001011",
         0x80000000, "IGNORE", "CONTACT_SUPPORT", "Non-fatal"),
    Rule(146, "TLW_TX/TLW_TX_PIPE0", "------000000----------0101100011", "------000000-------------0001100",
         0x00000001, "IGNORE", "IGNORE", "Non-fatal"),
    Rule(146, "TLW_TX/TLW_TX_PIPE0", "------000000----------0101100011", "------000000-------------0001100",
         0x00000002, "IGNORE", "CONTACT_SUPPORT", "Non-fatal"),
    Rule(146, "TLW_TX/TLW_TX_PIPE0", "------000000----------0101100011", "------000000-------------0001100",
         0x00000004, "RESET_GPU", "CONTACT_SUPPORT", "Fatal"),
    Rule(146, "TLW_TX/TLW_TX_PIPE0", "------000000----------0101100011", "------000000-------------0001100",
         0x80000000, "IGNORE", "CONTACT_SUPPORT", "Non-fatal"),
    Rule(146, "TLW_TX/TLW_TX_PIPE1", "------000000----------0101100011", "------000000-------------0001101",
         0x00000001, "IGNORE", "IGNORE", "Non-fatal"),
    Rule(146, "TLW_TX/TLW_TX_PIPE1", "------000000----------0101100011", "------000000-------------0001101",
         0x00000002, "IGNORE", "CONTACT_SUPPORT", "Non-fatal"),
    Rule(146, "TLW_TX/TLW_TX_PIPE1", "------000000----------0101100011", "------000000-------------0001101",
         0x00000004, "RESET_GPU", "CONTACT_SUPPORT", "Fatal"),
    Rule(146, "TLW_TX/TLW_TX_PIPE1", "------000000----------0101100011", "------000000-------------0001101",
         0x80000000, "IGNORE", "CONTACT_SUPPORT", "Non-fatal"),
    Rule(147, "TREX", "------000000----------0110000100", "------000000-------------0001110",
         0x00000001, "IGNORE", "CONTACT_SUPPORT", "Non-fatal"),
    Rule(147, "TREX", "------000000----------0110000100", "------000000-------------0001110",
         0x80000000, "IGNORE", "CONTACT_SUPPORT", "Non-fatal"),
    Rule(148, "NVLPW_CTRL/NVLPW", "------000000----------0000000101", "------000000-------------0001111",
         0x80000000, "IGNORE", "CONTACT_SUPPORT", "Non-fatal"),
    Rule(149, "NETIR/NETIR_INT", "------000000----------0000000110", "------000000-------------0011000",
         0x00000000, "RESET_GPU", "SYMPATHETIC_REPORT_SOLO", "Link Fatal"),
    Rule(149, "NETIR_BER_EVENT", "------000000----------1000100110", "------000000-------------0010011",
         0x00000000, "IGNORE", "INVESTIGATE_LINK_SI_AND_CABLES", "Non-fatal"),
    Rule(149, "NETIR_BER_EVENT", "------000000----------1000100110", "------000000-------------0010011",
         0x00000001, "IGNORE", "INVESTIGATE_LINK_SI_AND_CABLES", "Non-fatal"),
    Rule(149, "NETIR_BER_EVENT", "------000000----------1000100110", "------000000-------------0010011",
         0x00000002, "IGNORE", "INVESTIGATE_LINK_SI_AND_CABLES", "Non-fatal"),
    Rule(149, "NETIR_BER_EVENT", "------000000----------1000100110", "------000000-------------0010011",
         0x00000003, "IGNORE", "INVESTIGATE_LINK_SI_AND_CABLES", "Non-fatal"),
    Rule(149, "NETIR_LINK_EVT/NETIR_LINK_DOWN", "------000000----------0111000110", "------000000-------------0010001",
         0x00000000, "RESET_GPU", "SYMPATHETIC_REPORT_SOLO", "Link Fatal"),
    Rule(149, "NETIR_LINK_EVT/NETIR_LINK_DOWN", "------000001----------0111000110", "------000001-------------0010001",
         0x00000000, "RESET_GPU", "REPORT_ISSUE (if seen >1 per day)", "Link Fatal"),
    Rule(149, "NETIR_LINK_EVT/NETIR_LINK_DOWN", "------000010----------0111000110", "------000010-------------0010001",
         0x00000000, "RESET_GPU", "INVESTIGATE_LINK_SI", "Link Fatal"),
    Rule(149, "NETIR_LINK_EVT/NETIR_LINK_DOWN", "------000100----------0111000110", "------000100-------------0010001",
         0x00000000, "RESET_GPU", "INVESTIGATE_LINK_SI", "Link Fatal"),
    Rule(149, "NETIR_LINK_EVT/NETIR_LINK_DOWN", "------001010----------0111000110", "------001010-------------0010001",
         0x00000000, "RESET_GPU", "INVESTIGATE_LINK_SI", "Link Fatal"),
    Rule(149, "NETIR_LINK_EVT/NETIR_LINK_DOWN", "------001111----------0111000110", "------001111-------------0010001",
         0x00000000, "RESET_GPU", "INVESTIGATE_SW_USER", "Link Fatal"),
    Rule(149, "NETIR_LINK_EVT/NETIR_LINK_DOWN", "------010000----------0111000110", "------010000-------------0010001",
         0x00000000, "RESET_GPU", "INVESTIGATE_SW_USER_LINK_SI", "Link Fatal"),
    Rule(149, "NETIR_LINK_EVT/NETIR_LINK_DOWN", "------010001----------0111000110", "------010001-------------0010001",
         0x00000000, "RESET_GPU", "INVESTIGATE_SW_USER", "Link Fatal"),
    Rule(149, "NETIR_LINK_EVT/NETIR_LINK_DOWN", "------010010----------0111000110", "------010010-------------0010001",
         0x00000000, "RESET_GPU", "INVESTIGATE_SW_USER_LINK_SI", "Link Fatal"),
    Rule(149, "NETIR_LINK_EVT/NETIR_LINK_DOWN", "------010101----------0111000110", "------010101-------------0010001",
         0x00000000, "RESET_GPU", "INVESTIGATE_PEER_DEVICE", "Link Fatal"),
    Rule(149, "NETIR_LINK_EVT/NETIR_LINK_DOWN", "------010110----------0111000110", "------010110-------------0010001",
         0x00000000, "RESET_GPU", "INVESTIGATE_SW_USER", "Link Fatal"),
    Rule(149, "NETIR_LINK_EVT/NETIR_LINK_DOWN", "------100000----------0111000110", "------100000-------------0010001",
         0x00000000, "RESET_GPU", "INVESTIGATE_PEER_DEVICE", "Link Fatal"),
    Rule(149, "NETIR_LINK_EVT/NETIR_LINK_DOWN", "------100001----------0111000110", "------100001-------------0010001",
         0x00000000, "RESET_GPU", "INVESTIGATE_PEER_DEVICE", "Link Fatal"),
    Rule(149, "NETIR_LINK_EVT/NETIR_LINK_DOWN", "------100010----------0111000110", "------100010-------------0010001",
         0x00000000, "RESET_GPU", "INVESTIGATE_PEER_DEVICE", "Link Fatal"),
    Rule(149, "NETIR_LINK_EVT/NETIR_LINK_DOWN", "------100011----------0111000110", "------100011-------------0010001",
         0x00000000, "RESET_GPU", "INVESTIGATE_PEER_DEVICE", "Link Fatal"),
    Rule(149, "NETIR_LINK_EVT/NETIR_LINK_DOWN", "------100100----------0111000110", "------100100-------------0010001",
         0x00000000, "RESET_GPU", "INVESTIGATE_PEER_DEVICE", "Link Fatal"),
    Rule(149, "NETIR_LINK_EVT/NETIR_LINK_DOWN", "------100101----------0111000110", "------100101-------------0010001",
         0x00000000, "RESET_GPU", "INVESTIGATE_PEER_DEVICE", "Link Fatal"),
    Rule(149, "NETIR_LINK_EVT/NETIR_LINK_DOWN", "------100110----------0111000110", "------100110-------------0010001",
         0x00000000, "IGNORE", "INVESTIGATE_SW/USER", "Link Fatal"),
    Rule(149, "NETIR_LINK_EVT/NETIR_LINK_DOWN", "------101000----------0111000110", "------101000-------------0010001",
         0x00000000, "IGNORE", "INVESTIGATE_HOST", "Fatal"),
    Rule(149, "NETIR_LINK_EVT/NETIR_LINK_DOWN", "------101010----------0111000110", "------101010-------------0010001",
         0x00000000, "RESET_GPU", "INVESTIGATE_LINK_SI_AND_CABLES", "Link Fatal?"),
    Rule(149, "NETIR_LINK_EVT/NETIR_LINK_DOWN", "------101011----------0111000110", "------101011-------------0010001",
         0x00000000, "RESET_GPU", "INVESTIGATE_LINK_SI_AND_CABLES", "Link Fatal?"),
    Rule(149, "NETIR_MFDE_EVENT", "------000000----------1001000110", "------000000-------------0010100",
         0x00000001, "RESET_GPU", "CONTACT_SUPPORT", "Fatal**"),
    Rule(149, "NETIR_MFDE_EVENT", "------000000----------1001000110", "------000000-------------0010100",
         0x00000003, "IGNORE", "IGNORE", "Non-fatal"),
    Rule(149, "NETIR_MFDE_EVENT", "------000000----------1001000110", "------000000-------------0010100",
         0x00000004, "RESET_GPU", "CONTACT_SUPPORT", "Fatal**"),
    Rule(149, "NETIR_MFDE_EVENT", "------000000----------1001000110", "------000000-------------0010100",
         0x00000005, "RESET_GPU", "CONTACT_SUPPORT", "Fatal**"),
    Rule(149, "NETIR_MFDE_EVENT", "------000000----------1001000110", "------000000-------------0010100",
         0x00000007, "RESET_GPU", "CONTACT_SUPPORT", "Fatal**"),
    Rule(150, "MSE_WATCHDOG", "------000000----------0000000000", "------000000-------------0000000",
         0x00000000, "RESET_GPU", "CONTACT_SUPPORT", "Fatal"),
)

# the driver's unit, severity, cross-containment, injected flag, link, then the words in parentheses
_LINE = re.compile(r"^\s*(?P<unit>[A-Za-z0-9_/]+)\s+(?P<severity>Fatal|Non-?fatal)\s+XC(?P<xc>\d+)\s+"
                   r"i(?P<injected>\d+)\s+Link\s+(?P<link>-?\d+)\s*\((?P<words>[^)]*)\)", re.IGNORECASE)
# actions from the least to the most severe, to combine the rows of a status with several bits set
_ORDER = ("IGNORE", "XID_154_EVAL", "RESET_GPU")


def parse_line(message: str) -> dict | None:
    """An Xid 144-150 message (what follows ``NN,``) -> {unit, severity ("Fatal"/"Nonfatal"), link,
    intrinfo, error_status, words}; None when it is not in the driver's NVLink5 format.  IntrInfo and error status
    are None when the words are missing (a published line with them elided: ``(...)``)."""
    m = _LINE.match(message or "")
    if not m:
        return None
    words = [int(w, 16) for w in m["words"].split() if re.fullmatch(r"0x[0-9a-fA-F]+", w)]
    severity = "Fatal" if m["severity"].lower() == "fatal" else "Nonfatal"
    return {"unit": m["unit"], "severity": severity, "link": int(m["link"]),
            "intrinfo": words[0] if len(words) >= 2 else None, "error_status": words[1] if len(words) >= 2 else None,
            "words": words}


def pattern_matches(pattern: str, value: int) -> bool:
    """``"------000000----0011000010"`` (bit 31 first, right-aligned; "-" any) against a 32-bit value."""
    bits = format(value & 0xFFFFFFFF, "032b")[-len(pattern):]
    return all(p == "-" or p == b for p, b in zip(pattern, bits))


def _unit_matches(rule_unit: str, unit: str) -> bool:
    return unit == rule_unit or unit in rule_unit.split("/")


def _with_action(rule: Rule, intrinfo: int) -> tuple[Rule, str] | None:
    """(rule, its action for this IntrInfo), None when neither the row's nor its Action 2 pattern matches."""
    if pattern_matches(rule.intrinfo_v1, intrinfo) or pattern_matches(rule.intrinfo_v2, intrinfo):
        return rule, rule.action
    alt = ACTION2_PATTERNS.get((rule.xid, rule.unit))
    if rule.action2 and alt and any(pattern_matches(p, intrinfo) for p in alt):
        return rule, rule.action2
    return None


def decode(xid: int, message: str) -> dict | None:
    """One Xid 144-150 line's message -> the parsed line plus NVIDIA's decode::

        {"unit", "severity", "link", "intrinfo", "error_status", "words",
         "action": NVIDIA's action or None (table silent), "investigatory", "table_severity", "rows": N,
         "action2": True when the action is the row's "Action 2" (its IntrInfo pattern matched)}

    None when ``xid`` is not 144-150 or the message is not in the driver's NVLink5 format."""
    if xid not in XIDS:
        return None
    line = parse_line(message)
    if line is None:
        return None
    if line["intrinfo"] is None:
        return {**line, "action": None, "investigatory": None, "table_severity": None, "rows": 0, "action2": False}
    unit_rows = [r for r in RULES if r.xid == xid and _unit_matches(r.unit, line["unit"])]
    matched = [m for m in (_with_action(r, line["intrinfo"]) for r in unit_rows) if m]
    status = line["error_status"]
    found = [m for m in matched if m[0].error_status == status]
    if not found and status:
        bits = [1 << i for i in range(32) if status >> i & 1]
        per_bit = [[m for m in matched if m[0].error_status == bit] for bit in bits]
        found = [m for ms in per_bit for m in ms] if all(per_bit) else []
    if not found:
        return {**line, "action": None, "investigatory": None, "table_severity": None, "rows": 0, "action2": False}
    rule, action = max(found, key=lambda m: _ORDER.index(m[1]) if m[1] in _ORDER else len(_ORDER))
    return {**line, "action": action, "investigatory": rule.investigatory, "table_severity": rule.severity,
            "rows": len(found), "action2": action != rule.action}
