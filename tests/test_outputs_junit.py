"""JUnit XML, read back with xml.etree: one suite per host, the right counts, failures with their message."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections import Counter

import pytest

from fleet.fanout import FleetResult, HostResult
from fleet.inventory.model import Host
from fleet.outcome import HostState, TaskFailed
from fleet.outputs.junit import junit_xml, write_junit
from provision.run import build_report as provision_report
from tests.outputs_data import FAIL_CHECK, REFUSED, WARN_CHECK, WEIRD, audit_report, verify_summary


def suites(text: str) -> dict:
    root = ET.fromstring(text.encode())
    assert root.tag == "testsuites"
    out = {}
    for s in root.findall("testsuite"):
        cases = s.findall("testcase")
        assert int(s.get("tests")) == len(cases)
        out[s.get("name")] = s
    for k in ("tests", "failures", "errors", "skipped"):
        assert int(root.get(k)) == sum(int(s.get(k)) for s in out.values())
    return out


def counts(suite) -> tuple:
    return tuple(int(suite.get(k)) for k in ("tests", "failures", "errors", "skipped"))


def case(suite, name):
    found = [c for c in suite.findall("testcase") if c.get("name") == name]
    assert len(found) == 1, name
    return found[0]


# --------------------------------------------------------------------------- audit


def test_audit_one_suite_per_host_one_case_per_check():
    report = audit_report()
    got = suites(junit_xml(report, "audit"))
    assert list(got) == ["good", "bad", "gone"]
    for host in ("good", "bad"):
        tally = Counter(c["status"] for c in report["hosts"][host]["checks"])
        assert counts(got[host]) == (sum(tally.values()), tally["fail"], tally["error"], tally["skip"])
    assert counts(got["good"]) == (32, 0, 0, 3)
    assert counts(got["bad"]) == (44, 4, 0, 15)
    assert counts(got["gone"]) == (1, 0, 1, 0)


def test_audit_case_outcomes_carry_the_message():
    report = audit_report()
    bad = suites(junit_xml(report, "audit"))["bad"]
    msg = {c["name"]: c["message"] for c in report["hosts"]["bad"]["checks"]}
    failure = case(bad, "ecc:gpu1").find("failure")
    assert failure.get("message") == msg["ecc:gpu1"] and failure.text == msg["ecc:gpu1"]
    assert case(bad, "clocks:gpu1").find("system-out").text == f"warn: {msg['clocks:gpu1']}"
    assert case(bad, "clocks:gpu1").find("failure") is None
    assert case(bad, "nvlink").find("skipped").get("message") == msg["nvlink"]
    assert list(case(bad, "ecc:gpu0")) == []  # a pass: an empty testcase
    assert case(bad, "ecc:gpu0").get("classname") == "audit.bad"
    assert {p.get("name"): p.get("value") for p in bad.find("properties")}["status"] == "fail"


def test_audit_unreached_host_errors_with_the_message():
    gone = suites(junit_xml(audit_report(), "audit"))["gone"]
    (only,) = gone.findall("testcase")
    assert only.get("name") == "audit.unreachable"
    err = only.find("error")
    assert err.get("message") == REFUSED and err.text == REFUSED and err.get("type") == "unreachable"


# --------------------------------------------------------------------------- verify


def test_verify_checks_and_stragglers():
    got = suites(junit_xml(verify_summary(), "verify"))
    assert list(got) == ["n0", "n1", "n2", WEIRD, "gone"]
    assert counts(got["n0"]) == (1, 0, 0, 0)  # nothing failing or warning: one passed case
    assert counts(got["n1"]) == (2, 2, 0, 0)  # its two straggler records
    assert counts(got["n2"]) == (1, 0, 0, 0)  # a warning passes
    assert counts(got[WEIRD]) == (1, 1, 0, 0)
    assert counts(got["gone"]) == (1, 0, 1, 0)
    node = case(got["n1"], "straggler:matmul/bf16/tflops:gpu2").find("failure")
    assert node.get("message").startswith("straggler (node): matmul/bf16/tflops:gpu2 350.0 is 0.5 x the median 700.0")
    assert case(got["n1"], "straggler:matmul/bf16/tflops").find("failure") is not None
    warn = case(got["n2"], WARN_CHECK["name"])
    assert warn.find("system-out").text == f"warn: {WARN_CHECK['message']}"
    failure = case(got[WEIRD], FAIL_CHECK["name"]).find("failure")
    assert failure.get("message") == FAIL_CHECK["message"]
    assert case(got["gone"], "verify.unreachable").find("error").get("message") == REFUSED


# --------------------------------------------------------------------------- provision


def _provision() -> dict:
    steps = [{"name": "repository", "status": "changed", "message": "added the repository", "commands": ["x"]},
             {"name": "package", "status": "ok", "message": "nvidia-container-toolkit 1.17.8-1", "commands": []},
             {"name": "containerd", "status": "skipped", "message": "containerd not present", "commands": []}]
    failed = steps[:1] + [{"name": "package", "status": "failed", "message": "apt-get install failed",
                           "commands": ["apt-get install"], "output": "E: Unable to locate package"}]
    validation = [{"name": "nvidia-ctk", "status": "pass", "message": "NVIDIA Container Toolkit CLI version 1.17.8"}]
    err = TaskFailed("step package failed", {"status": "failed", "steps": failed, "validation": []})
    result = FleetResult({
        "p1": HostResult(Host("p1"), HostState.OK, {"status": "changed", "steps": steps, "validation": validation}),
        "p2": HostResult(Host("p2"), HostState.FAILED, err.partial, str(err)),
        "p3": HostResult(Host("p3"), HostState.UNREACHABLE, None, REFUSED),
    })
    return provision_report(result, "inventory.yaml", "all", check=False)


def test_provision_steps_and_validation():
    report = _provision()
    assert [h["status"] for h in report["hosts"].values()] == ["pass", "fail", "unreachable"]
    got = suites(junit_xml(report, "provision"))
    assert counts(got["p1"]) == (4, 0, 0, 1)
    assert counts(got["p2"]) == (2, 1, 0, 0)  # the failed step says why: no second case for the host's state
    assert counts(got["p3"]) == (1, 0, 1, 0)
    failure = case(got["p2"], "step:package").find("failure")
    assert failure.get("message") == "apt-get install failed" and failure.text == "E: Unable to locate package"
    assert case(got["p1"], "step:containerd").find("skipped").get("message") == "containerd not present"
    assert case(got["p1"], "validation:nvidia-ctk").find("failure") is None


def test_failed_host_without_a_failing_case_fails_once():
    report = {"hosts": {"h": {"status": "fail", "state": "failed", "message": "verify exited 1 without a report"}}}
    (only,) = suites(junit_xml(report, "verify"))["h"].findall("testcase")
    assert only.get("name") == "verify.failed"
    assert only.find("failure").get("message") == "verify exited 1 without a report"


def test_text_round_trips_and_control_characters_do_not_break_xml(tmp_path):
    nasty = 'a"b\\c\nd<e>&f\x00\x1b'
    report = {"hosts": {nasty: {"status": "fail", "state": "ok",
                                "checks": [{"name": nasty, "status": "fail", "message": nasty}]}}}
    path = write_junit(tmp_path / "junit.xml", report, "audit")
    (suite,) = suites(path.read_text()).values()
    want = 'a"b\\c\nd<e>&f\ufffd\ufffd'
    assert suite.get("name") == want
    assert case(suite, want).find("failure").text == want
    assert [p.name for p in tmp_path.iterdir()] == ["junit.xml"]


def test_unknown_kind():
    with pytest.raises(ValueError):
        junit_xml({"hosts": {}}, "report")


def test_write_outputs_writes_what_was_asked_and_says_so(tmp_path):
    from fleet.outputs import write_outputs

    report = {"hosts": {"h": {"status": "fail", "state": "failed", "message": "verify exited 1 without a report"}}}
    assert write_outputs("verify", report) == []
    path = tmp_path / "j.xml"
    assert write_outputs("verify", report, junit=str(path)) == [f"JUnit XML written to {path}"]
    assert suites((tmp_path / "j.xml").read_text())["h"].find("testcase").get("name") == "verify.failed"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["j.xml"]
