"""The nightly job end to end, as cron runs it: `gpufleet audit` / `gpufleet verify` on real sshd hosts, each run
recorded in one history database, judged against the runs before it, with its outputs and alerts."""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from fleet.runlock import RunLock
from tests.sshd import fake_dmesg, invoke_env, run_invoke

PUB = Path(__file__).resolve().parent / "data" / "kernel" / "published"
XID109_LOG = "chia-gigahorse-74-xid109.txt"  # a real kernel log with Xid 109 (NVIDIA: reset the GPU)


def _vars(farm, name, **extra):
    return {"ansible_python_interpreter": sys.executable,
            "gpufleet_remote_dir": str(farm.root / name / "cache"), **extra}


def _prom_samples(path: Path) -> dict:
    from prometheus_client.parser import text_string_to_metric_families

    out = {}
    for family in text_string_to_metric_families(path.read_text()):
        for s in family.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


@pytest.mark.slow
def test_fleet_wide_slowdown_is_a_regression_on_every_host_not_a_straggler(farm, tmp_path):
    names = ["fw-1", "fw-2", "fw-3"]
    for name in names:
        farm.add_host(name, fixture=None, gpus=0, extra_vars=_vars(farm, name))
    # one thread per rank: the controller and the test's sshd keep the other core, so a CPU figure varies less
    healthy = tmp_path / "healthy.yaml"
    healthy.write_text(farm.inventory(names, group_vars={"gpufleet_verify_env": {"OMP_NUM_THREADS": "1"}}))
    # the same fleet after a bad update: every host's matmuls at a third of their speed, all alike
    slowed = tmp_path / "slowed.yaml"
    slowed.write_text(farm.inventory(names, group_vars={"gpufleet_verify_env": {
        "OMP_NUM_THREADS": "1", "GPUFLEET_VERIFY_FAULT": "compute-slow"}}))
    env = invoke_env(farm, tmp_path / "home")
    db, out = tmp_path / "history.sqlite", tmp_path / "reports"
    # one host at a time: clean figures.  --regression 0.5: a CPU matmul on this shared 2-core machine wanders by
    # 15 % from night to night (measured: 0.725 to 0.885 TFLOP/s), a GPU's by far less; the planted slowdown is 3x.
    common = ["verify", "--hosts", "gpu-nodes", "--out", str(out), "--history", str(db), "--nproc", "1",
              "--checks", "compute", "--forks", "1", "--timeout", "300", "--regression", "0.5"]
    # each host needs three passing nights for a baseline; a night in which noise made a host a straggler (exit 1,
    # that host recorded fail) is no baseline for it, so nights go on until every host has three (at most seven)
    summaries = []
    for _night in range(7):
        r = run_invoke([*common, "--inventory", str(healthy)], env, timeout=600)
        assert r.returncode in (0, 1), r.stdout + r.stderr
        summaries.append(json.loads((sorted(p for p in out.iterdir() if p.is_dir())[-1] / "summary.json").read_text()))
        passed = {h: sum(s["hosts"][h]["status"] == "pass" and not s["hosts"][h]["straggler"] for s in summaries)
                  for h in names}
        if min(passed.values()) >= 3:
            break
    assert min(passed.values()) >= 3, [s["stragglers"] for s in summaries]
    prom = tmp_path / "verify.prom"
    # The slowed night: every host regressed against its own baseline, every time.  No host is a straggler: the
    # fleet median moved with every host.  A host that a busy moment of this shared CPU slowed further than the
    # others (CI measured one at 0.58x the slowed median) is a straggler by the fleet's rule, as it would be on a
    # real fleet; such a night is run again (at most three), as a noisy healthy night is above.  A regressed or
    # straggling host's night is no baseline, so every slowed night is judged against the same healthy nights.
    straggled = []
    for _night in range(3):
        r = run_invoke([*common, "--inventory", str(slowed), "--prom", str(prom)], env, timeout=600)
        assert r.returncode == 1, r.stdout + r.stderr
        (run_dir,) = sorted(p for p in out.iterdir() if p.is_dir())[-1:]
        summary = json.loads((run_dir / "summary.json").read_text())
        regressed = {r["host"] for r in summary["regressions"] if r["metric"].startswith("matmul/")}
        assert regressed == set(names)
        if not summary["stragglers"]:
            break
        straggled.append(summary["stragglers"])
    assert summary["stragglers"] == [], straggled  # the fleet median moved with every host
    assert all(r["ratio"] < 0.5 and r["runs"] == min(passed[r["host"]], 5) for r in summary["regressions"])
    assert all(summary["hosts"][h]["status"] == "fail" and summary["hosts"][h]["regression"] for h in names)
    assert summary["exit_code"] == 1 and summary["counts"]["regression_hosts"] == 3
    assert "fail/regressed" in r.stdout and "regressions (ratio = value / the host's own baseline" in r.stdout
    run = json.loads((run_dir / "run.json").read_text())
    assert run["baseline"]["threshold"] == 0.5 and set(run["baseline"]["hosts"]) == set(names)
    samples = _prom_samples(prom)
    assert samples["gpufleet_verify_regressions"] == {(): float(len(summary["regressions"]))}
    assert {dict(k)["host"] for k in samples["gpufleet_verify_regression_ratio"]} == set(names)
    html = (run_dir / "summary.html").read_text()
    assert "fw-1" in html and "regress" in html.lower()
    # `gpufleet report` judges the run again against the baseline the run recorded: the same verdict
    again = tmp_path / "again.json"
    r = run_invoke(["report", str(run_dir), "--json", str(again)], env)
    assert r.returncode == 1 and json.loads(again.read_text()) == summary


def test_same_critical_xid_new_then_known_and_notify_fires_once(farm, tmp_path):
    farm.add_host("xid-node", stubs={"dmesg": fake_dmesg((PUB / XID109_LOG).read_text().rstrip("\n"))})
    farm.add_host("calm-node", stubs={"dmesg": fake_dmesg("")})
    inv = tmp_path / "hosts.yaml"
    inv.write_text(farm.inventory(["xid-node", "calm-node"]))
    env = invoke_env(farm, tmp_path / "home")
    db, alerts = tmp_path / "history.sqlite", tmp_path / "alerts.jsonl"
    notify = f"python3 -c 'import json,sys; print(json.dumps(json.load(sys.stdin)))' >> {alerts}"
    reports = []
    for night in range(2):
        report, junit = tmp_path / f"audit{night}.json", tmp_path / f"audit{night}.xml"
        r = run_invoke(["audit", "--hosts", "gpu-nodes", "--inventory", str(inv), "--history", str(db),
                        "--json", str(report), "--junit", str(junit), "--notify", notify], env)
        assert r.returncode == 1, r.stdout + r.stderr
        reports.append(json.loads(report.read_text()))
        suites = ET.parse(junit).getroot()
        assert {s.get("name") for s in suites.iter("testsuite")} == {"xid-node", "calm-node"}
        xid_suite = next(s for s in suites.iter("testsuite") if s.get("name") == "xid-node")
        assert int(xid_suite.get("failures")) == sum(
            1 for c in reports[-1]["hosts"]["xid-node"]["checks"] if c["status"] == "fail")
    first, second = (rep["hosts"]["xid-node"] for rep in reports)
    assert first["history"]["xids"] and all(x["new"] for x in first["history"]["xids"])
    assert second["history"]["xids"] and not any(x["new"] for x in second["history"]["xids"])
    assert {x["first_seen"] for x in second["history"]["xids"]} == {reports[0]["generated"]}
    xid_checks = [next(c for c in h["checks"] if c["name"] == "xid") for h in (first, second)]
    assert [c["status"] for c in xid_checks] == ["fail", "fail"]  # known, and still failing until a reboot
    assert "new since the last audit" in xid_checks[0]["message"] and "known (first seen" in xid_checks[1]["message"]
    assert second["history"]["previous_run"]["status"] == "fail"
    assert {c["name"]: c["status"] for c in reports[1]["hosts"]["calm-node"]["checks"]}["counters"] == "pass"
    (doc,) = [json.loads(line) for line in alerts.read_text().splitlines()]  # once: the second night changed nothing
    assert doc["kind"] == "audit" and [a["host"] for a in doc["alerts"]] == ["xid-node"]
    (alert,) = doc["alerts"]
    assert alert["reason"] == "changed" and alert["previous"] is None and alert["status"] == "fail"
    assert alert["new_xids"] and all("Xid" in line for line in alert["new_xids"])


def test_a_second_audit_while_one_runs_exits_2_naming_the_holder(farm, tmp_path):
    farm.add_host("lock-node")
    inv = tmp_path / "hosts.yaml"
    inv.write_text(farm.inventory(["lock-node"]))
    env = invoke_env(farm, tmp_path / "home")
    db = tmp_path / "history.sqlite"
    with RunLock(tmp_path / "history.sqlite.audit.lock"):
        r = run_invoke(["audit", "--hosts", "lock-node", "--inventory", str(inv), "--history", str(db)], env)
        assert r.returncode == 2 and "lock" in r.stderr and str(tmp_path) in r.stderr
        # a verify or a provision of the same history is another kind of run: not held back by it
    r = run_invoke(["audit", "--hosts", "lock-node", "--inventory", str(inv), "--history", str(db)], env)
    assert r.returncode == 0, r.stdout + r.stderr
    r = run_invoke(["audit", "--hosts", "lock-node", "--inventory", str(inv), "--no-history", "--notify", "cat"], env)
    assert r.returncode == 2 and "--notify needs the history" in r.stderr
