"""The kernel-log facts end to end: real sshd test hosts whose dmesg / journalctl replay published kernel logs
(tests/data/kernel/published/, see its README), audited over SSH; one host per new finding."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleet.audit.run import audit_hosts, build_report
from fleet.inventory import parse_inventory
from tests.sshd import fake_dmesg, fake_journalctl

PUB = Path(__file__).resolve().parent / "data" / "kernel" / "published"

HOSTS = {
    "fallen-no-xid": {"dmesg": "nvsentinel-155-fallen-off-bus-no-xid.txt"},
    "xid45-journal": {"journalctl": "ogkm-1150-xid45-caused-by-nvlink.txt"},
    "xid109": {"dmesg": "chia-gigahorse-74-xid109.txt"},
    "sxid": {"dmesg": "nvtrust-124-sxid-nonfatal.txt"},
    "rminit": {"dmesg": "ogkm-789-rminitadapter.txt"},
}


def _stubs(spec: dict) -> dict:
    if "dmesg" in spec:
        return {"dmesg": fake_dmesg((PUB / spec["dmesg"]).read_text().rstrip("\n"))}
    journal = (PUB / spec["journalctl"]).read_text().rstrip("\n")
    return {"dmesg": fake_dmesg(rc=1), "journalctl": fake_journalctl(journal)}


@pytest.fixture(scope="module")
def report(farm):
    for name, spec in HOSTS.items():
        farm.add_host(name, stubs=_stubs(spec))
    inv = parse_inventory(farm.inventory(list(HOSTS)), "kernel.yaml")
    return build_report(audit_hosts(inv.select("all"), farm.options(command_timeout=20), progress=False),
                        "kernel.yaml", "all")


def _checks(report, host):
    return {c["name"]: c for c in report["hosts"][host]["checks"]}


def test_fallen_off_the_bus_without_an_xid_fails(report):
    c = _checks(report, "fallen-no-xid")
    assert c["xid"]["status"] == "pass"  # no Xid line: before, this host passed
    assert c["kernel:fallen-off-bus"]["status"] == "fail" and c["kernel:fallen-off-bus"]["observed"] == ["0000:b3:00"]
    assert c["kernel:probe-failed"]["status"] == "fail"
    assert report["hosts"]["fallen-no-xid"]["status"] == "fail"
    events = report["hosts"]["fallen-no-xid"]["facts"]["kernel_events"]
    assert [e["kind"] for e in events] == ["fallen-off-bus", "probe-failed"]


def test_xid45_after_nvlink_from_the_journal_fails(report):
    h = report["hosts"]["xid45-journal"]
    assert h["facts"]["xid_source"] == "journalctl" and h["status"] == "fail"
    assert _checks(report, "xid45-journal")["xid"]["status"] == "fail"
    assert {x["caused_by"] for x in h["facts"]["xids"]} == {145, 149}


def test_xid109_fails(report):
    c = _checks(report, "xid109")["xid"]
    assert c["status"] == "fail" and c["observed"] == [109] and "RESET_GPU" in c["message"]


def test_sxid_nonfatal_warns(report):
    c = _checks(report, "sxid")
    assert c["sxid"]["status"] == "warn" and c["sxid"]["observed"] == [22013] and c["xid"]["status"] == "pass"
    assert len(report["hosts"]["sxid"]["facts"]["sxids"]) == 8


def test_rm_init_adapter_fails(report):
    c = _checks(report, "rminit")["kernel:rm-init-failed"]
    assert c["status"] == "fail" and c["observed"] == ["0000:98:00"]
