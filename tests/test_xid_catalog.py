"""fleet.audit.xid_catalog is NVIDIA's catalogue as published (tests/data/kernel/catalog/), and its policy."""

from __future__ import annotations

import csv
from pathlib import Path

from fleet.audit import xid_catalog as cat
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
