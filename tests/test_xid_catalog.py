"""fleet.audit.xid_catalog is NVIDIA's catalogue as published (tests/data/kernel/catalog/), and its policy."""

from __future__ import annotations

import csv
import re
from pathlib import Path

from fleet.audit import checks_kernel
from fleet.audit import xid_catalog as cat
from fleet.audit import xid_nvlink5 as nvl5
from fleet.audit.facts import kernel
from fleet.status import Status

CSV = Path(__file__).resolve().parent / "data" / "kernel" / "catalog" / "nvsentinel-xiderrorsmapping.csv"


def rows():
    with CSV.open() as f:
        return [(int(x), name, action, fatal) for x, name, action, fatal in csv.reader(f)]


def test_table_equals_the_published_csv():
    assert {x: (name.strip(), action) for x, name, action, _ in rows()} == cat.XIDS


def test_every_action_has_a_verdict_agreeing_with_nvidias_fatal_column():
    for xid, _, action, fatal in rows():
        status, advice = cat.verdict(cat.xid_action(xid))
        assert advice and "not in gpufleet's policy" not in advice, xid
        # NVIDIA's FATAL rows fail; NONFATAL ones warn (restart the app, ignore, Xid 45/154 follow another Xid)
        assert status is (Status.FAIL if fatal == "FATAL" else Status.WARN), (xid, action, fatal)


def test_the_issue_xids():
    def v(x):
        return cat.verdict(cat.xid_action(x))[0]
    assert v(109) is Status.FAIL and cat.xid_action(109) == "RESET_GPU"
    assert all(v(x) is Status.FAIL and cat.xid_action(x) == "WORKFLOW_NVLINK5_ERR" for x in range(144, 151))
    assert v(63) is Status.WARN and v(92) is Status.WARN and cat.xid_action(63) == "IGNORE"
    assert v(94) is Status.WARN and v(95) is Status.FAIL
    assert cat.xid_action(154) == "XID_154_EVAL"
    assert cat.verdict(None)[0] is Status.WARN and "not in NVIDIA's Xid catalogue" in cat.verdict(None)[1]


def test_sxid_table():
    assert len(cat.SXIDS) == 398 and set(cat.SXIDS.values()) <= set(cat.ACTION_VERDICT)
    assert cat.SXIDS[22013] == "IGNORE" and cat.SXIDS[12028] == "RESET_FABRIC" and cat.SXIDS[20034] == "RESET_GPU"


# ---------------------------------------------------------------- Xid 144-150 (NVLink5) decode

DATA = Path(__file__).resolve().parent / "data" / "kernel"
GPUD_RULES = DATA / "catalog" / "gpud-nvlink5-decode-rules.go.txt"
_GO_FIELD = re.compile(r'(\w+): ("(?:[^"\\]|\\.)*"|0x[0-9a-fA-F]+|\d+)')


def gpud_rules() -> list[dict]:
    """The verbatim ``nvlinkRules`` block of leptonai/gpud's catalog_generated.go -> one dict per row."""
    rows = []
    for line in GPUD_RULES.read_text().splitlines():
        if line.strip().startswith("{Xid:"):
            rows.append({k: v[1:-1] if v.startswith('"') else int(v, 0) for k, v in _GO_FIELD.findall(line)})
    return rows


def test_nvlink5_rules_equal_the_published_table():
    rows = gpud_rules()
    assert len(rows) == 94
    assert [nvl5.Rule(r["Xid"], r["Unit"], r["IntrinfoPatternV1"], r["IntrinfoPatternV2"], r["ErrorStatus"],
                      r["Resolution"], r["Investigatory"], r["Severity"], r.get("Action2", "")) for r in rows] \
        == list(nvl5.RULES)
    assert {r.xid for r in nvl5.RULES} == set(range(144, 151))
    # every action of the table has a verdict in gpufleet's policy
    assert {a for r in nvl5.RULES for a in (r.action, r.action2) if a} == {"IGNORE", "RESET_GPU", "XID_154_EVAL"}
    assert set(nvl5.ACTION2_PATTERNS) == {(r.xid, r.unit) for r in nvl5.RULES if r.action2}


def test_pattern_matches_bit_31_first_right_aligned():
    assert nvl5.pattern_matches("------000000----------0011000010", 0x0409A0C2)
    assert not nvl5.pattern_matches("------000000----------0011000010", 0x0419A0C2)   # bit 20 set
    assert nvl5.pattern_matches("------100101----------0111000110", 0x025001C6)
    assert not nvl5.pattern_matches("------100110----------0111000110", 0x025001C6)


def published(name: str) -> list[dict]:
    return kernel.parse_xids((DATA / "published" / name).read_text())


def test_decode_published_rxpipe_status_8_is_ignore():
    [x] = published("gpud-1174-xid145-rlw-rxpipe-nonfatal.txt")
    d = nvl5.decode(x["xid"], x["message"])
    assert (d["unit"], d["severity"], d["link"], d["intrinfo"], d["error_status"]) == \
        ("RLW_RXPIPE", "Nonfatal", 13, 0x0409A0C2, 0x8)
    assert (d["action"], d["table_severity"], d["investigatory"], d["action2"]) == \
        ("IGNORE", "Non-fatal", "CONTACT_SUPPORT", False)
    c = checks_kernel.classify_xid(x)
    assert c["status"] is Status.PASS and c["action"] == "IGNORE"


def test_decode_published_saw_and_netir_lines():
    lines = published("gpud-1160-xid144-149-nvlink5.txt") + published("gpud-1174-xid149-netir-fatal.txt")
    got = [(x["xid"], nvl5.decode(x["xid"], x["message"])["unit"], nvl5.decode(x["xid"], x["message"])["action"],
            checks_kernel.classify_xid(x)["status"]) for x in lines]
    assert got == [(144, "SAW_MVB", "IGNORE", Status.PASS),
                   (149, "NETIR_LINK_EVT", "IGNORE", Status.WARN),        # IGNORE, but the driver says Fatal
                   (149, "NETIR_LINK_EVT", "RESET_GPU", Status.FAIL),
                   (149, "NETIR", "RESET_GPU", Status.FAIL)]


def test_decode_synthetic_units():
    """SYNTHETIC lines (tests/data/kernel/nvlink5-units.synthetic.txt), one per situation of the table."""
    xids = kernel.parse_xids((DATA / "nvlink5-units.synthetic.txt").read_text())
    got = [(nvl5.decode(x["xid"], x["message"])["unit"], checks_kernel.classify_xid(x)["action"],
            checks_kernel.classify_xid(x)["status"]) for x in xids]
    assert got == [("RLW_SRC_TRACK", "RESET_GPU", Status.FAIL),
                   ("RLW_REMAP", "XID_154_EVAL", Status.WARN),
                   ("TLW_CTRL", "IGNORE", Status.PASS),
                   ("RLW_RXPIPE", "RESET_GPU", Status.FAIL),      # IntrInfo bit 10: NVIDIA's "Action 2"
                   ("MSE_WATCHDOG", "RESET_GPU", Status.FAIL),
                   ("TREX", None, Status.WARN)]                   # status 0x40: no row; the line says Nonfatal


def test_decode_status_bits_combined_and_silent_fatal():
    # SYNTHETIC: SAW_MVB 0xc = 0x4 (IGNORE) + 0x8 (IGNORE); 0xa = 0x2 (RESET_GPU) + 0x8: the worst wins
    base = "SAW_MVB {} XC0 i0 Link 00 (0x00000001 {} 0x00000000 0x00000000)"
    assert nvl5.decode(144, base.format("Nonfatal", "0x0000000c"))["action"] == "IGNORE"
    assert nvl5.decode(144, base.format("Fatal", "0x0000000a"))["action"] == "RESET_GPU"
    # a bit with no row: the table is silent; a Fatal line then fails with the catalogue's headline action
    silent = {"xid": 144, "message": base.format("Fatal", "0x00000040")}
    assert nvl5.decode(144, silent["message"])["action"] is None
    c = checks_kernel.classify_xid(silent)
    assert (c["status"], c["action"]) == (Status.FAIL, "WORKFLOW_NVLINK5_ERR")
    # a 144-150 line not in the NVLink5 form, and other Xids, are not decoded
    assert nvl5.decode(145, "pid=1, something else") is None and nvl5.decode(74, base.format("Fatal", "0x1")) is None
    c = checks_kernel.classify_xid({"xid": 145, "message": "pid=1, something else"})
    assert (c["status"], c["action"]) == (Status.FAIL, "WORKFLOW_NVLINK5_ERR")


def test_xid_check_passes_on_ignored_nvlink5_lines_and_lists_them():
    from fleet.audit.facts.host import HostFacts
    facts = HostFacts(xids=published("gpud-1174-xid145-rlw-rxpipe-nonfatal.txt"), xid_source="dmesg")
    check = checks_kernel.xid_check(facts)
    assert check.status is Status.PASS
    assert check.message.startswith("Xid 145 NVLINK_RLW_ERROR on 0018:01:00: no action (NVIDIA leaves the GPU in "
                                    "service) (RLW_RXPIPE Nonfatal link 13")


def test_decode_published_line_with_the_words_elided():
    xids = published("nccl-2241-xid145-137-elided.txt")
    assert [(x["xid"], kernel.normalize_pci(x["pci"])) for x in xids] == [(145, None), (137, None)]
    d = nvl5.decode(145, xids[0]["message"])
    assert (d["unit"], d["severity"], d["link"], d["intrinfo"], d["action"]) == ("RLW_RXPIPE", "Nonfatal", 11, None,
                                                                                 None)
    c = checks_kernel.classify_xid(xids[0])
    assert (c["status"], c["action"]) == (Status.WARN, None)
    assert c["reason"] == ("RLW_RXPIPE Nonfatal link 11, no IntrInfo / error status on the line: not in NVIDIA's "
                           "Xid 145 decode; the driver says Nonfatal")
