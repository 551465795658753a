"""Each host's final status and its reasons, decided once (fleet.runs.verdict.judge, fleet.audit.run.decide), and
read as they are by the history, JUnit and the severity table everybody shares."""

from __future__ import annotations

import copy
import xml.etree.ElementTree as ET

from fleet import status as fleet_status
from fleet.audit.run import add_history_checks, collect_report, decide
from fleet.fanout import FleetResult, HostResult
from fleet.history import read_audit_past
from fleet.inventory.model import Host
from fleet.outcome import HostState
from fleet.outputs.junit import junit_xml
from fleet.outputs.prom import CHECK_CODES
from fleet.runs.record import HostRun
from fleet.runs.verdict import judge, reasons_of
from tests.report_builder import arrived, node_report
from tests.test_history import audit_of
from tests.test_history_changes import audit_again
from verify import status as verify_status

H100 = ["NVIDIA H100 80GB HBM3"] * 2
META = {"run_id": "20261201T020000Z", "started": "2026-12-01T02:00:00+00:00"}
FAIL = {"name": "compute/matmul/bf16:gpu1", "status": "fail", "message": "max error 0.5 > 0.01"}
WARN = {"name": "memory/h2d:gpu0", "status": "warn", "message": "65% of achievable"}
PASS = {"name": "env/torch", "status": "pass", "message": "torch 2.4.0"}


def figures(v: float) -> dict:
    return {"matmul/bf16/tflops:gpu0": v, "matmul/bf16/tflops:gpu1": v}


def test_verify_reasons_in_order_and_the_status_they_give():
    runs = [arrived(node_report("good", H100, figures(700.0))),
            arrived(node_report("broken", H100, figures(700.0), checks=[PASS, WARN, FAIL])),
            arrived(node_report("says-fail", H100, figures(700.0), status="fail", checks=[PASS])),
            arrived(node_report("warned", H100, figures(705.0), checks=[PASS, WARN])),
            HostRun("gone", HostState.UNREACHABLE, "ssh: connect to host gone port 22: No route to host")]
    s = judge(runs, META, reference={})
    hosts = s["hosts"]
    assert {h: e["status"] for h, e in hosts.items()} == {"good": "pass", "broken": "fail", "says-fail": "fail",
                                                         "warned": "warn", "gone": "unreachable"}
    assert hosts["good"]["reasons"] == []
    assert hosts["broken"]["reasons"] == [  # the failing check first, then the warning
        {"kind": "check", "status": "fail", "name": FAIL["name"], "message": FAIL["message"]},
        {"kind": "check", "status": "warn", "name": WARN["name"], "message": WARN["message"]}]
    assert hosts["says-fail"]["reasons"] == [{"kind": "report", "status": "fail",
                                              "message": "the node's report says fail"}]
    assert hosts["gone"]["reasons"] == [{"kind": "state", "status": "unreachable", "state": "unreachable",
                                         "message": "ssh: connect to host gone port 22: No route to host"}]
    assert (s["counts"]["pass"], s["counts"]["fail"], s["counts"]["warn"], s["counts"]["unreachable"]) == (1, 2, 1, 1)
    assert s["exit_code"] == 1


def test_a_regression_is_a_failing_junit_case_of_its_own():
    runs = [arrived(node_report("n0", H100, figures(600.0)))]
    baseline = {"threshold": 0.9, "hosts": {"n0": {"matmul/bf16/tflops:gpu0": {"value": 700.0, "runs": 4}}}}
    s = judge(runs, dict(META, baseline=baseline), reference={})
    (reason,) = s["hosts"]["n0"]["reasons"]
    assert reason == {"kind": "regression", "status": "fail", "metric": "matmul/bf16/tflops:gpu0",
                      "message": "regression: matmul/bf16/tflops:gpu0 600.0 is 0.8571 x its baseline 700.0 "
                                 "(median of its last 4 passing runs)"}
    assert s["hosts"]["n0"]["status"] == "fail" and s["exit_code"] == 1
    suite = ET.fromstring(junit_xml(s, "verify")).find("testsuite")
    (case,) = suite.findall("testcase")
    assert case.get("name") == "regression:matmul/bf16/tflops:gpu0"
    assert case.find("failure").get("message") == reason["message"]
    assert {p.get("name"): p.get("value") for p in suite.iter("property")}["status"] == "fail"


def test_reasons_of_an_entry_written_without_them():
    entry = {"status": "fail", "state": "ok", "failing_checks": [{"name": "pairwise", "status": "fail",
                                                                  "message": "culprit: bad with every partner"}]}
    assert reasons_of(entry) == [{"kind": "check", "status": "fail", "name": "pairwise",
                                  "message": "culprit: bad with every partner"}]
    assert reasons_of({"status": "error", "state": "timed_out", "message": "no answer in 600 s"}) == [
        {"kind": "state", "status": "error", "state": "timed_out", "message": "no answer in 600 s"}]


def test_audit_status_decided_once_after_the_history_checks(tmp_path):
    path = tmp_path / "history.sqlite"
    audit_again(path, audit_of({"n1": "healthy-h100"}, "2026-11-20T02:00:00+00:00"))
    # the same host the next night, an ECC counter risen by 7: collected, history checks added, then decided
    second = audit_of({"n1": "healthy-h100"}, "2026-11-21T02:00:00+00:00")
    result = FleetResult()
    for name, h in second["hosts"].items():
        value = {k: copy.deepcopy(h[k]) for k in ("facts", "checks")} | {"status": "pass"}
        result.results[name] = HostResult(Host(name), HostState.OK, value, "", 0.5)
    result.results["n9"] = HostResult(Host("n9"), HostState.TIMED_OUT, None, "no answer within 30 s", 30.0)
    report = collect_report(result, "inv.yaml", "all")
    assert "exit_code" not in report and "reasons" not in report["hosts"]["n1"]  # no verdict yet
    gpu = report["hosts"]["n1"]["facts"]["gpus"][0]
    gpu["ecc"]["aggregate_correctable"] = (gpu["ecc"]["aggregate_correctable"] or 0) + 7
    past, problem = read_audit_past(path, report)
    assert problem is None
    add_history_checks(report, *past)
    assert "exit_code" not in report  # still no verdict: decide() makes it, once
    decide(report)
    n1 = report["hosts"]["n1"]
    (counters,) = [c for c in n1["checks"] if c["name"] == "counters"]
    assert n1["status"] == "warn" and n1["reasons"] == [
        {"kind": "check", "status": "warn", "name": "counters", "message": counters["message"]}]
    assert report["hosts"]["n9"]["status"] == "error" and report["hosts"]["n9"]["reasons"] == [
        {"kind": "state", "status": "error", "state": "timed_out", "message": "no answer within 30 s"}]
    assert (report["counts"]["warn"], report["counts"]["error"], report["exit_code"]) == (1, 1, 1)
    assert list(report)[-3:] == ["counts", "exit_code", "hosts"]


def test_one_severity_table():
    order = verify_status.ORDER
    assert order == ("pass", "skip", "warn", "fail", "error")
    assert CHECK_CODES == {"pass": 0, "skip": 1, "warn": 2, "fail": 3, "error": 4}
    for a in order:
        for b in order:
            assert fleet_status.worst([a, b]).value == verify_status.worst([a, b])
    assert fleet_status.worst([fleet_status.Status.SKIP]) is fleet_status.Status.PASS
    assert not hasattr(fleet_status, "_SEVERITY")
