"""Kernel-log parsers and checks (fleet/audit/facts/kernel.py, fleet/audit/checks_kernel.py) on published lines
(tests/data/kernel/published/, see its README); lines marked SYNTHETIC are built in NVIDIA's format."""

from __future__ import annotations

from pathlib import Path

from fleet.audit.checks_kernel import KERNEL_CHECK_NAMES, classify_xid, kernel_checks
from fleet.audit.facts.host import HostFacts
from fleet.audit.facts.kernel import normalize_pci, parse_kernel_events, parse_sxids, parse_xids
from fleet.status import Status

PUB = Path(__file__).resolve().parent / "data" / "kernel" / "published"


def facts(text: str) -> HostFacts:
    return HostFacts(xids=parse_xids(text), xid_source="dmesg", sxids=parse_sxids(text),
                     kernel_events=parse_kernel_events(text))


def checks(text: str) -> dict:
    return {c.name: c for c in kernel_checks(facts(text))}


def test_names_and_unknown_log():
    got = kernel_checks(HostFacts())
    assert tuple(c.name for c in got) == KERNEL_CHECK_NAMES and all(c.status is Status.SKIP for c in got)
    assert {c.name: c.status for c in kernel_checks(facts(""))} == dict.fromkeys(KERNEL_CHECK_NAMES, Status.PASS)


def test_xid45_follows_the_nvlink_xid_it_names():
    xids = parse_xids((PUB / "ogkm-1150-xid45-caused-by-nvlink.txt").read_text())
    assert [x["caused_by"] for x in xids] == [149, 145, 145, 145, 149, 145, 145]
    c = classify_xid(xids[0])
    assert c["status"] is Status.FAIL and c["action"] == "WORKFLOW_NVLINK5_ERR" and "149" in c["reason"]
    assert classify_xid({"xid": 45, "message": "Ch 00000010"})["status"] is Status.WARN  # solo: restart the app
    x = checks((PUB / "ogkm-1150-xid45-caused-by-nvlink.txt").read_text())["xid"]
    assert x.status is Status.FAIL and x.observed == [45]


def test_xid109_and_13():
    c = checks((PUB / "gpud-46-xid13-xid109-ctime.txt").read_text())["xid"]
    assert c.status is Status.FAIL and c.observed == [13, 109]
    assert [(f["xid"], f["status"], f["count"]) for f in c.details["findings"]] == [(109, "fail", 1), (13, "warn", 3)]


def test_contained_94_warns_uncontained_95_with_reset_fails():
    xids = parse_xids((PUB / "nvidia-doc-xid94-95-examples.txt").read_text())
    assert xids[0]["pci"] == "0000:01:00 GPU-I:05" and normalize_pci(xids[0]["pci"]) == "0000:01:00"
    assert [classify_xid(x)["status"] for x in xids] == [Status.WARN, Status.WARN, Status.FAIL]
    assert "RST: Yes" in classify_xid(xids[2])["reason"]


def test_recovery_action_xid154():  # SYNTHETIC lines in the driver's format (see tests/data/kernel/published/README.md)
    line = ("[ 30709.1] NVRM: Xid (PCI:0000:01:00): 154, GPU recovery action changed from 0x0 (None) "
            "to 0x2 (Node Reboot Required)")
    x = parse_xids(line)[0]
    assert x["recovery_action"] == {"code": 2, "label": "Node Reboot Required"}
    assert classify_xid(x)["status"] is Status.FAIL
    none = parse_xids("NVRM: Xid (PCI:0000:01:00): 154, GPU recovery action changed from 0x1 (GPU Reset Required) "
                      "to 0x0 (None)")[0]
    assert classify_xid(none)["status"] is Status.WARN
    odd = parse_xids("NVRM: Xid (PCI:0000:0d:00): 154, GPU recovery action changed from 0x0 (None) to 0x1 (PF FLR)")[0]
    assert classify_xid(odd)["status"] is Status.FAIL


def test_unknown_xid_warns_and_says_so():  # SYNTHETIC: an Xid number past the catalogue
    c = checks("NVRM: Xid (PCI:0000:01:00): 999, something new")["xid"]
    assert c.status is Status.WARN and "not in NVIDIA's catalogue" in c.message


def test_fallen_off_the_bus_without_xid():
    text = (PUB / "nvsentinel-155-fallen-off-bus-no-xid.txt").read_text()
    ev = parse_kernel_events(text)
    assert [(e["kind"], e["pci"]) for e in ev] == [("fallen-off-bus", "0000:b3:00"), ("probe-failed", None)]
    c = checks(text)
    assert c["xid"].status is Status.PASS
    assert c["kernel:fallen-off-bus"].status is Status.FAIL and "no Xid 79 logged" in c["kernel:fallen-off-bus"].message
    assert c["kernel:probe-failed"].status is Status.FAIL and "1 device" in c["kernel:probe-failed"].message
    old = checks((PUB / "bumblebee-554-fallen-off-bus-old.txt").read_text())["kernel:fallen-off-bus"]
    assert old.status is Status.FAIL and old.observed == ["0000:01:00"] and old.details["count"] == 2
    with79 = checks((PUB / "pop-3363-xid79-journal.txt").read_text())
    assert with79["xid"].status is Status.FAIL and "Xid 79 logged too" in with79["kernel:fallen-off-bus"].message


def test_rm_init_adapter():
    c = checks((PUB / "ogkm-789-rminitadapter.txt").read_text())["kernel:rm-init-failed"]
    assert c.status is Status.FAIL and c.observed == ["0000:98:00"] and "0x62:0x65:1792" in c.message


def test_sxids():
    s = parse_sxids((PUB / "nvtrust-124-sxid-nonfatal.txt").read_text())
    assert {x["sxid"] for x in s} == {22013} and s[0]["switch"] == "nvidia-nvswitch3"
    assert [x["severity"] for x in s[:3]] == [None, "non-fatal", None]
    c = checks((PUB / "nvtrust-124-sxid-nonfatal.txt").read_text())["sxid"]
    assert c.status is Status.WARN and c.observed == [22013]
    f = checks((PUB / "gpud-338-sxid-12028.txt").read_text())["sxid"]
    assert f.status is Status.FAIL and f.details["findings"][0]["action"] == "RESET_FABRIC"
    # SYNTHETIC: the driver's "Fatal" decides over a catalogue IGNORE
    assert checks("nvidia-nvswitch0: SXid (PCI:0000:05:00.0): 22013, Fatal, Link 1")["sxid"].status is Status.FAIL


def test_xid45_follows_the_decoded_nvlink5_line_it_names():
    """SYNTHETIC lines in the driver's format: an Xid 45 "caused by previous Xid 145" follows the 145 logged
    before it on the same GPU (decoded with NVIDIA's table), and the catalogue's headline action elsewhere."""
    log = ("NVRM: Xid (PCI:0018:01:00): 145, RLW_RXPIPE Nonfatal XC0 i0 Link 13 (0x0409a0c2 0x00000008 0x00000001 "
           "0x00000000 0x00100000 0x00000004)\n"
           "NVRM: Xid (PCI:0018:01:00): 45, pid=1818990, name=python3, Ch 00000001 caused by previous Xid 145\n"
           "NVRM: Xid (PCI:0019:01:00): 45, pid=1818991, name=python3, Ch 00000002 caused by previous Xid 145\n")
    check = next(c for c in kernel_checks(HostFacts(xids=parse_xids(log), xid_source="dmesg")) if c.name == "xid")
    got = [(f["xid"], f["pci"], f["status"], f["action"]) for f in check.details["findings"]]
    assert got == [(45, ["0019:01:00"], "fail", "WORKFLOW_NVLINK5_ERR"),
                   (45, ["0018:01:00"], "pass", "IGNORE"),
                   (145, ["0018:01:00"], "pass", "IGNORE")]
    assert check.status is Status.FAIL
    follows = next(f for f in check.details["findings"] if f["xid"] == 45 and f["status"] == "pass")
    assert follows["reason"].startswith("caused by previous Xid 145 (NVLINK_RLW_ERROR): follows its action "
                                        "(RLW_RXPIPE Nonfatal link 13")
