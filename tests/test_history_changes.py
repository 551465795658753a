"""The audit compared with a host's past (fleet.history.changes) and verify's own-baseline regressions
(fleet.history.baseline, fleet.runs.verdict.find_regressions): golden-case audit reports recorded in a real
history database, then audited again."""

from __future__ import annotations

import copy
import sqlite3

import pytest

from fleet.audit.run import add_history_checks
from fleet.history import SCHEMA_VERSION, connect, read_audit_past, record_audit, record_verify
from fleet.history.baseline import baselines, read_baselines, read_trends, trends, with_run
from fleet.history.changes import HostPast, counter_deltas
from fleet.runs.render import render_markdown, render_table
from fleet.runs.verdict import find_regressions, judge
from tests.report_builder import arrived, node_report
from tests.test_history import H100, audit_of

BOOT_A = "0b0a7b52-6a43-4e3e-9d0c-6a1b2c3d4e5f"
BOOT_B = "1c1b8c63-7b54-4f4f-8e1d-7b2c3d4e5f60"
GPU1 = "GPU-bbbbbbbb-1111-1111-1111-111111111111"
XID79 = "[ 7123.000001] NVRM: Xid (PCI:0000:2a:00): 79, pid=0, name=, GPU has fallen off the bus."


def faulty(generated: str, boot: str | None = BOOT_A, host: str = "n1") -> dict:
    report = audit_of({host: "faulty-h100-2gpu"}, generated)
    report["hosts"][host]["facts"]["boot_id"] = boot
    return report


def audit_again(path, report: dict) -> dict:
    """What `invoke audit` does with the history: read the past, add the history checks, record."""
    past, problem = read_audit_past(path, report)
    assert problem is None
    add_history_checks(report, *past)
    db = connect(path)
    try:
        record_audit(db, report)
    finally:
        db.close()
    return report


def checks(report: dict, host: str = "n1") -> dict:
    return {c["name"]: c for c in report["hosts"][host]["checks"]}


@pytest.fixture
def path(tmp_path):
    return tmp_path / "history.sqlite"


def test_first_audit_every_xid_new_counters_skipped(path):
    r = audit_again(path, faulty("2026-11-20T02:00:00+00:00"))
    h = r["hosts"]["n1"]
    assert [(x["xid"], x["new"], x["first_seen"]) for x in h["history"]["xids"]] == [
        (13, True, None), (79, True, None), (31, True, None)]
    c = checks(r)
    assert c["xid"]["status"] == "fail" and c["xid"]["message"].endswith("[3 new since the last audit]")
    assert c["counters"]["status"] == "skip" and h["history"]["previous_run"] is None
    assert c["gpu-identity"]["status"] == "pass"


def test_same_xid_same_boot_is_known_and_still_fails(path):
    audit_again(path, faulty("2026-11-20T02:00:00+00:00"))
    r = audit_again(path, faulty("2026-11-21T02:00:00+00:00"))
    h = r["hosts"]["n1"]
    assert {x["line"]: (x["new"], x["first_seen"]) for x in h["history"]["xids"]}[XID79] == (
        False, "2026-11-20T02:00:00+00:00")
    c = checks(r)
    assert c["xid"]["status"] == "fail" and h["status"] == "fail"
    assert c["xid"]["message"].endswith("[3 known (first seen 2026-11-20T02:00:00+00:00)]")
    assert c["xid"]["details"]["new"] == [] and len(c["xid"]["details"]["known"]) == 3
    assert h["history"]["previous_run"]["started"] == "2026-11-20T02:00:00+00:00"


def test_after_a_reboot_the_same_line_is_new_again(path):
    audit_again(path, faulty("2026-11-20T02:00:00+00:00", boot=BOOT_A))
    r = audit_again(path, faulty("2026-11-21T02:00:00+00:00", boot=BOOT_B))
    assert all(x["new"] for x in r["hosts"]["n1"]["history"]["xids"])


def test_a_new_line_beside_known_ones(path):
    audit_again(path, faulty("2026-11-20T02:00:00+00:00"))
    second = faulty("2026-11-21T02:00:00+00:00")
    extra = dict(second["hosts"]["n1"]["facts"]["xids"][1], line="[ 9000.000002] NVRM: Xid (PCI:0000:2a:00): 79, "
                                                                  "pid=0, name=, GPU has fallen off the bus.")
    second["hosts"]["n1"]["facts"]["xids"].append(extra)
    r = audit_again(path, second)
    assert [x["new"] for x in r["hosts"]["n1"]["history"]["xids"]] == [False, False, False, True]
    assert checks(r)["xid"]["message"].endswith("[1 new since the last audit, 3 known (first seen "
                                                "2026-11-20T02:00:00+00:00)]")


def test_a_rising_error_counter_warns_with_its_delta(path):
    audit_again(path, audit_of({"n1": "healthy-h100"}, "2026-11-20T02:00:00+00:00"))
    second = audit_of({"n1": "healthy-h100"}, "2026-11-21T02:00:00+00:00")
    gpu = second["hosts"]["n1"]["facts"]["gpus"][0]
    gpu["ecc"]["aggregate_correctable"] = (gpu["ecc"]["aggregate_correctable"] or 0) + 7
    assert second["hosts"]["n1"]["status"] == "pass"
    r = audit_again(path, second)
    h = r["hosts"]["n1"]
    (delta,) = h["history"]["counter_deltas"]
    assert delta["metric"] == "ecc/aggregate_correctable:gpu0" and delta["delta"] == 7
    c = checks(r)["counters"]
    assert c["status"] == "warn" and "ecc/aggregate_correctable:gpu0 +7" in c["message"]
    assert h["status"] == "warn" and r["counts"]["warn"] == 1 and r["exit_code"] == 0
    third = audit_again(path, copy.deepcopy(second) | {"generated": "2026-11-22T02:00:00+00:00"})
    assert checks(third)["counters"]["status"] == "pass"  # it rose once; not again


def test_since_boot_counters_count_from_zero_after_a_reboot():
    facts = {"boot_id": BOOT_B, "gpus": [{"index": 0, "clock_event_time_us": {"hw_thermal": 500, "sw_power_cap": 9e9},
                                          "ecc": {"aggregate_correctable": 10}}]}
    past = HostPast(previous={"boot_id": BOOT_A, "counters": {"throttle_us/hw_thermal:gpu0": 100,
                                                              "throttle_us/sw_power_cap:gpu0": 1,
                                                              "ecc/aggregate_correctable:gpu0": 10}})
    # hw_thermal: 500 since the new boot, though above the old boot's 100; sw power cap is not watched;
    # the lifetime ECC counter did not move
    assert counter_deltas(facts, past) == [{"metric": "throttle_us/hw_thermal:gpu0", "previous": 100, "value": 500,
                                            "delta": 500, "restarted": True}]
    same_boot = dict(facts, boot_id=BOOT_A)
    assert counter_deltas(same_boot, past)[0]["delta"] == 400


def test_gpu_moved_to_another_host_then_flagged_once(path):
    audit_again(path, faulty("2026-11-20T02:00:00+00:00", host="n1"))
    healthy = audit_of({"n2": "faulty-h100-2gpu"}, "2026-11-25T02:00:00+00:00")
    r = audit_again(path, healthy)
    flags = r["hosts"]["n2"]["history"]["gpu_flags"]
    moved = {f["uuid"] for f in flags if f["flag"] == "moved"}
    assert moved == {GPU1, "GPU-aaaaaaaa-0000-0000-0000-000000000000"}
    # GPU 1 failed its ECC check on n1: back in service on n2, it is a lemon
    assert [(f["uuid"], f["failed_on"]) for f in flags if f["flag"] == "lemon"] == [(GPU1, "n1")]
    assert checks(r, "n2")["gpu-identity"]["status"] == "warn"
    again = audit_again(path, audit_of({"n2": "faulty-h100-2gpu"}, "2026-11-26T02:00:00+00:00"))
    assert again["hosts"]["n2"]["history"]["gpu_flags"] == []
    assert checks(again, "n2")["gpu-identity"]["status"] == "pass"


def test_a_slot_whose_gpu_changed(path):
    audit_again(path, audit_of({"n1": "healthy-h100"}, "2026-11-20T02:00:00+00:00"))
    second = audit_of({"n1": "healthy-h100"}, "2026-11-21T02:00:00+00:00")
    gpu = second["hosts"]["n1"]["facts"]["gpus"][0]
    old = gpu["uuid"]
    gpu["uuid"] = "GPU-12345678-aaaa-bbbb-cccc-0123456789ab"
    r = audit_again(path, second)
    (flag,) = r["hosts"]["n1"]["history"]["gpu_flags"]
    assert flag["flag"] == "slot-changed" and flag["previous_uuid"] == old and flag["slot"] == gpu["pci_bus_id"]


def test_version_one_database_migrates_and_keeps_its_runs(tmp_path):
    from fleet.history import db as history_db

    path = tmp_path / "v1.sqlite"
    raw = sqlite3.connect(path)
    for statement in history_db.statements(history_db.MIGRATIONS[0]):
        raw.execute(statement)
    raw.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    raw.execute("INSERT INTO schema_version VALUES (1)")
    raw.execute("INSERT INTO runs (run_id, kind, started) VALUES ('audit-old', 'audit', '2026-11-01T00:00:00+00:00')")
    raw.execute("INSERT INTO host_runs (run_id, host, status, state) VALUES ('audit-old', 'n1', 'pass', 'ok')")
    raw.commit()
    raw.close()
    r = audit_again(path, faulty("2026-11-20T02:00:00+00:00"))
    assert r["hosts"]["n1"]["history"]["previous_run"]["run_id"] == "audit-old"
    db = connect(path)
    assert db.execute("SELECT version FROM schema_version").fetchone()[0] == SCHEMA_VERSION == 4
    assert db.execute("SELECT COUNT(*) FROM events").fetchone()[0] == 3
    db.close()


# ----------------------------------------------------------------------------------------- regressions

def verify_history(path, values: list[dict[str, float]], profile: str = "quick"):
    """Record one verify run per dict of host -> bf16 TFLOP/s (GPU 0; GPU 1 is 10 higher)."""
    db = connect(path)
    try:
        for i, bf16 in enumerate(values):
            runs = [arrived(node_report(h, H100, {"matmul/bf16/tflops:gpu0": v, "matmul/bf16/tflops:gpu1": v + 10,
                                                  "allreduce/busbw_gbps": 360.0}))
                    for h, v in bf16.items()]
            meta = {"run_id": f"2026112{i}T020000Z", "started": f"2026-11-2{i}T02:00:00+00:00",
                    "finished": f"2026-11-2{i}T02:05:00+00:00", "interrupted": False, "profile": profile}
            record_verify(db, judge(runs, meta, reference={}), meta, runs)
    finally:
        db.close()


def test_baseline_is_the_median_of_the_last_passing_runs(path):
    verify_history(path, [{"a": 700, "b": 690}, {"a": 710, "b": 700}, {"a": 650, "b": 705}, {"a": 720, "b": 710}])
    doc, problem = read_baselines(path, ["a", "b", "c"], "quick", window=3)
    past, with_history, _ = read_trends(path, ["a", "b", "c"], "quick", cap=64)
    assert problem is None and with_history == 2
    assert doc["hosts"]["a"]["matmul/bf16/tflops:gpu0"] == {"value": 710.0, "runs": 3}  # 710, 650, 720
    assert doc["hosts"]["b"]["matmul/bf16/tflops:gpu1"] == {"value": 715.0, "runs": 3}
    assert "c" not in doc["hosts"]
    assert [v for _, v in past["a"]["matmul/bf16/tflops"]] == [700, 710, 650, 720]
    other, _ = read_baselines(path, ["a"], "full", window=5)
    assert other["hosts"] == {}  # another profile's runs are no baseline
    assert baselines({"a": [{"matmul/bf16/tflops:gpu0": 1.0}] * 2}) == {}  # fewer than three runs


def test_fleet_wide_slowdown_is_a_regression_on_every_host_not_a_straggler(path):
    verify_history(path, [{"a": 700, "b": 702, "c": 698}] * 3)
    doc, _ = read_baselines(path, ["a", "b", "c"], "quick")
    past, _, _ = read_trends(path, ["a", "b", "c"], "quick", cap=64)
    runs = [arrived(node_report(h, H100, {"matmul/bf16/tflops:gpu0": 600.0, "matmul/bf16/tflops:gpu1": 610.0,
                                          "allreduce/busbw_gbps": 360.0})) for h in ("a", "b", "c")]
    meta = {"run_id": "20261130T020000Z", "started": "2026-11-30T02:00:00+00:00", "baseline": doc}
    summary = judge(runs, meta, reference={})
    assert summary["stragglers"] == []
    assert sorted((r["host"], r["gpu"], r["ratio"]) for r in summary["regressions"]) == [
        ("a", "gpu0", round(600 / 700, 4)), ("a", "gpu1", round(610 / 710, 4)),
        ("b", "gpu0", round(600 / 702, 4)), ("b", "gpu1", round(610 / 712, 4)),
        ("c", "gpu0", round(600 / 698, 4)), ("c", "gpu1", round(610 / 708, 4))]
    assert all(r["metric"] == "matmul/bf16/tflops" and r["runs"] == 3 for r in summary["regressions"])
    assert summary["exit_code"] == 1 and summary["counts"]["regressions"] == 6
    assert summary["counts"]["regression_hosts"] == 3
    # its own checks pass; the verdict fails it for the regressions, with them as its reasons
    assert summary["hosts"]["a"]["status"] == "fail" and summary["hosts"]["a"]["regression"] is True
    assert [(r["kind"], r["status"], r["metric"]) for r in summary["hosts"]["a"]["reasons"]] == [
        ("regression", "fail", "matmul/bf16/tflops:gpu0"), ("regression", "fail", "matmul/bf16/tflops:gpu1")]
    assert summary["hosts"]["a"]["regression_metrics"] == ["matmul/bf16/tflops:gpu0", "matmul/bf16/tflops:gpu1"]
    table = render_table(summary)
    assert "fail/regressed" in table and "regressions (ratio = value / the host's own baseline" in table
    assert "## Regressions" in render_markdown(summary)
    assert [v for _, v in with_run(past, summary)["a"]["matmul/bf16/tflops"]] == [700, 700, 700, 600]
    assert set(with_run({"a": past["a"]}, summary)) == {"a"}  # b and c: no past given, no trend to extend


def test_within_the_threshold_is_no_regression_and_lower_is_better_is_inverted():
    base = {"threshold": 0.9, "hosts": {"a": {"matmul/bf16/tflops:gpu0": {"value": 700.0, "runs": 5},
                                              "ddp/step/ms": {"value": 100.0, "runs": 5}}}}
    assert find_regressions("a", {"matmul/bf16/tflops:gpu0": 631.0}, base) == []
    (r,) = find_regressions("a", {"matmul/bf16/tflops:gpu0": 629.0, "ddp/step/ms": 110.0}, base)
    assert r["metric"] == "matmul/bf16/tflops"
    (slow,) = find_regressions("a", {"ddp/step/ms": 112.0}, base)
    assert slow["metric"] == "ddp/step/ms" and slow["gpu"] is None and slow["ratio"] == 1.12
    assert find_regressions("a", {"matmul/bf16/tflops:gpu0": 1.0}, None) == []


def test_a_flagged_run_is_recorded_fail_and_never_becomes_a_baseline(path):
    verify_history(path, [{"a": 700, "b": 700, "c": 700}] * 3)
    doc, _ = read_baselines(path, ["a", "b", "c"], "quick")
    runs = [arrived(node_report(h, H100, {"matmul/bf16/tflops:gpu0": 300.0, "matmul/bf16/tflops:gpu1": 300.0}))
            for h in ("a", "b", "c")]
    meta = {"run_id": "20261130T020000Z", "started": "2026-11-30T02:00:00+00:00", "finished": None,
            "interrupted": False, "profile": "quick", "baseline": doc}
    db = connect(path)
    record_verify(db, judge(runs, meta, reference={}), meta, runs)
    statuses = [r[0] for r in db.execute("SELECT status FROM host_runs WHERE run_id = '20261130T020000Z'")]
    db.close()
    assert statuses == ["fail", "fail", "fail"]
    again, _ = read_baselines(path, ["a"], "quick")
    assert again["hosts"]["a"]["matmul/bf16/tflops:gpu0"]["value"] == 700.0
    db = connect(path)
    assert trends(db, ["a"], "quick")["a"]["matmul/bf16/tflops"][-1][1] == 300.0
    db.close()
