"""The history database: real-shaped audit, verify and provision reports recorded and read back exactly."""

from __future__ import annotations

import datetime as _dt
import json
import multiprocessing
import sqlite3

import pytest

from fleet.audit import analyse
from fleet.audit.run import build_report as audit_report
from fleet.fanout import FleetResult, HostResult
from fleet.history import (
    SCHEMA_VERSION, connect, document, gpu_identities, history_main, metric_series, record_audit,
    record_provision, record_run, record_verify, render, runs_by_host, schema_version, sparkline,
)
from fleet.history import db as history_db
from fleet.history.db import audit_counters
from fleet.history.query import checks
from fleet.inventory.model import Host
from fleet.outcome import HostState
from fleet.runs.record import HostRun
from fleet.runs.run_dir import load_run, write_run
from fleet.runs.verdict import judge
from tests import golden_cases
from tests.report_builder import arrived, node_report

CASES = golden_cases.CASES
NOW = _dt.datetime(2026, 11, 23, 12, 0, tzinfo=_dt.timezone.utc)
H100 = ["NVIDIA H100 80GB HBM3"] * 2


def audit_of(cases: dict[str, str], generated: str = "2026-11-23T10:00:00+00:00",
             down: tuple[str, ...] = ()) -> dict:
    """The audit report build_report makes for hosts whose script printed the golden cases' outputs."""
    result = FleetResult()
    for host, case in cases.items():
        value = analyse(golden_cases.output(CASES / case), golden_cases.expectations(CASES / case)).to_dict()
        result.results[host] = HostResult(Host(host), HostState.OK, json.loads(json.dumps(value)), "", 0.5)
    for host in down:
        result.results[host] = HostResult(Host(host), HostState.UNREACHABLE, None, "ssh: connect refused", 0.1)
    report = audit_report(result, "inv.yaml", "all")
    report["generated"] = generated
    return report


def verify_run(run_id: str, started: str, bf16: dict[str, float]):
    runs = [arrived(node_report(h, H100, {"matmul/bf16/tflops:gpu0": v, "matmul/bf16/tflops:gpu1": v + 10,
                                          "allreduce/busbw_gbps": 360.0}))
            for h, v in bf16.items()]
    runs.append(HostRun("down", HostState.UNREACHABLE, "ssh: no route to host"))
    meta = {"run_id": run_id, "started": started, "finished": started, "interrupted": False}
    return judge(runs, meta, reference={}), meta, runs


def provision_report(generated: str) -> dict:
    return {"schema": "gpufleet.provision/2", "generated": generated, "inventory": "inv.yaml", "pattern": "all",
            "check": False, "interrupted": False, "exit_code": 1,
            "counts": {"hosts": 2, "pass": 1, "warn": 0, "fail": 1, "error": 0, "unreachable": 0, "changed": 1},
            "hosts": {
                "n1": {"status": "pass", "changed": True, "state": "ok", "message": "", "duration_s": 12.3,
                       "steps": [{"name": "repository", "status": "changed", "message": "added", "commands": []}],
                       "validation": [{"name": "nvidia-ctk", "status": "pass", "message": "version 1.17.8"}],
                       "audit": {"status": "pass", "message": "ok", "checks": [
                           {"name": "container-toolkit", "status": "pass", "message": "nvidia-ctk 1.17.8"}]}},
                "n2": {"status": "fail", "changed": False, "state": "failed", "message": "apt-get failed",
                       "duration_s": 3.0, "steps": [{"name": "install", "status": "failed", "message": "rc 100"}],
                       "validation": [], "audit": None}}}


@pytest.fixture
def db(tmp_path):
    conn = connect(tmp_path / "h" / "history.sqlite")
    yield conn
    conn.close()


def test_new_database_is_wal_at_the_current_version(db):
    assert schema_version(db) == SCHEMA_VERSION
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA busy_timeout").fetchone()[0] >= 1000


def test_audit_recorded_and_read_back_exactly(db):
    report = audit_of({"a1": "faulty-h100-2gpu", "a2": "ib-port-down-h100"}, down=("a3",))
    run_id = record_audit(db, report)
    runs = runs_by_host(db)
    assert sorted(runs) == ["a1", "a2", "a3"]
    for host in ("a1", "a2", "a3"):
        h = report["hosts"][host]
        [run] = runs[host]
        assert run == {"run_id": run_id, "kind": "audit", "started": "2026-11-23T10:00:00+00:00",
                       "status": h["status"], "metrics": audit_counters(h["facts"])}
        assert checks(db, host, run_id) == [{"name": c["name"], "status": c["status"], "message": c["message"]}
                                            for c in h["checks"]]
    a1 = runs["a1"][0]["metrics"]
    assert a1["ecc/aggregate_uncorrectable:gpu1"] == 2 and a1["ecc/aggregate_correctable:gpu0"] == 12
    assert a1["remapped_rows/uncorrectable:gpu1"] == 1
    assert any(k.startswith("ib/") for k in runs["a2"][0]["metrics"])
    assert runs["a3"][0]["status"] == "unreachable" and runs["a3"][0]["metrics"] == {}
    uuids = {g["uuid"]: g for g in gpu_identities(db)}
    assert uuids["GPU-aaaaaaaa-0000-0000-0000-000000000000"]["hosts"] == ["a1"]


def test_audit_counters_cover_replays_throttle_and_retired_pages():
    facts = {"gpus": [{"index": 3, "ecc": {"aggregate_uncorrectable": 1, "aggregate_correctable": None},
                       "retired_pages": {"single_bit": 2, "double_bit": 1, "pending": True},
                       "remapped_rows": {"correctable": 0, "uncorrectable": 4, "pending": False},
                       "pcie_replays": {"replays": 150, "rollovers": 0},
                       "clock_event_time_us": {"hw_thermal_slowdown": 1200, "sw_power_cap": 5}}],
             "ib_ports": [{"device": "mlx5_0", "port": 1, "counters": {"symbol_error": 7, "link_downed": None}}]}
    assert audit_counters(facts) == {
        "ecc/aggregate_uncorrectable:gpu3": 1.0, "retired_pages/single_bit:gpu3": 2.0,
        "retired_pages/double_bit:gpu3": 1.0, "remapped_rows/correctable:gpu3": 0.0,
        "remapped_rows/uncorrectable:gpu3": 4.0, "pcie/replays:gpu3": 150.0, "pcie/rollovers:gpu3": 0.0,
        "throttle_us/hw_thermal_slowdown:gpu3": 1200.0, "throttle_us/sw_power_cap:gpu3": 5.0,
        "ib/symbol_error:mlx5_0/1": 7.0}


def test_verify_recorded_with_every_metric_and_the_host_figures(db):
    summary, meta, runs = verify_run("20261123T100000Z", "2026-11-23T10:00:00+00:00",
                                     {"v1": 700.0, "v2": 710.0, "v3": 400.0})
    assert record_verify(db, summary, meta, runs) == "20261123T100000Z"
    got = runs_by_host(db)
    # v3 passed its own checks but is the run's straggler: the verdict failed it, and its record reads that
    assert summary["hosts"]["v3"]["status"] == "fail" and summary["hosts"]["v3"]["straggler"] is True
    assert got["v3"] == [{"run_id": "20261123T100000Z", "kind": "verify", "started": "2026-11-23T10:00:00+00:00",
                          "status": "fail",
                          "metrics": {"matmul/bf16/tflops:gpu0": 400.0, "matmul/bf16/tflops:gpu1": 410.0,
                                      "allreduce/busbw_gbps": 360.0, "matmul/bf16/tflops": 400.0}}]
    assert got["down"][0]["status"] == "unreachable" and got["down"][0]["metrics"] == {}
    assert checks(db, "v1", "20261123T100000Z") == [{"name": "env/torch", "status": "pass", "message": "torch 2.4.0"}]
    # judged again (gpufleet report): the run's record is replaced, not doubled
    record_verify(db, summary, meta, runs)
    assert len(runs_by_host(db)["v1"]) == 1


def test_verify_run_directory_loaded_back_is_recorded(db, tmp_path):
    summary, meta, runs = verify_run("20261122T180602Z", "2026-11-22T18:06:02Z", {"v1": 700.0, "v2": 690.0})
    write_run(tmp_path / "run", runs, meta)
    loaded, loaded_meta = load_run(tmp_path / "run")
    loaded_meta.pop("started")  # an older run.json without it: the time is the run id's
    record_verify(db, judge(loaded, loaded_meta, reference={}), loaded_meta, loaded)
    got = runs_by_host(db)
    assert got["v1"][0]["started"] == "2026-11-22T18:06:02+00:00"
    assert got["v1"][0]["metrics"]["matmul/bf16/tflops:gpu1"] == 710.0
    assert [r["status"] for r in got["down"]] == ["unreachable"]


def test_provision_recorded(db):
    run_id = record_provision(db, provision_report("2026-11-23T09:00:00+00:00"))
    got = runs_by_host(db)
    assert got["n1"] == [{"run_id": run_id, "kind": "provision", "started": "2026-11-23T09:00:00+00:00",
                          "status": "pass", "metrics": {"changed": 1.0, "duration_s": 12.3}}]
    assert [c["name"] for c in checks(db, "n1", run_id)] == ["step:repository", "validation:nvidia-ctk",
                                                             "container-toolkit"]
    assert got["n2"][0]["status"] == "fail" and checks(db, "n2", run_id)[0]["status"] == "failed"


def test_window_metric_filter_and_series(db):
    for day, value in ((1, 700.0), (5, 650.0), (20, 600.0)):
        started = (NOW - _dt.timedelta(days=day)).isoformat()
        record_verify(db, *verify_run(f"r{day}", started, {"v1": value}))
    assert [r["run_id"] for r in runs_by_host(db, ["v1"], days=7, now=NOW)["v1"]] == ["r5", "r1"]
    assert metric_series(db, "v1", "matmul/bf16/tflops:gpu0") == [
        ("2026-11-03T12:00:00+00:00", 600.0), ("2026-11-18T12:00:00+00:00", 650.0),
        ("2026-11-22T12:00:00+00:00", 700.0)]
    only = runs_by_host(db, ["v*"], metric="matmul/bf16/tflops", days=7, now=NOW)
    assert only["v1"][-1]["metrics"] == {"matmul/bf16/tflops:gpu0": 700.0, "matmul/bf16/tflops:gpu1": 710.0,
                                         "matmul/bf16/tflops": 700.0}
    assert runs_by_host(db, ["nope*"]) == {}


def test_same_uuid_on_two_hosts_is_listed_with_both(db):
    record_audit(db, audit_of({"a1": "faulty-h100-2gpu"}, generated="2026-11-20T10:00:00+00:00"))
    record_audit(db, audit_of({"b7": "faulty-h100-2gpu"}, generated="2026-11-22T10:00:00+00:00"))
    [g] = [g for g in gpu_identities(db) if g["uuid"] == "GPU-aaaaaaaa-0000-0000-0000-000000000000"]
    assert g == {"uuid": "GPU-aaaaaaaa-0000-0000-0000-000000000000", "serial": None,
                 "first_seen": "2026-11-20T10:00:00+00:00", "last_seen": "2026-11-22T10:00:00+00:00",
                 "hosts": ["a1", "b7"]}
    doc = document(db, ["b7"])
    assert [x["hosts"] for x in doc["hosts"]["b7"]["gpus"]] == [["a1", "b7"], ["a1", "b7"]]
    assert "also seen on: a1" in render(doc)


def test_each_gpu_recorded_with_its_uuid_and_serial(db):
    report = audit_of({"hgx": "hgx-h100-fabric-healthy"}, generated="2026-11-21T10:00:00+00:00")
    record_audit(db, report)
    facts = report["hosts"]["hgx"]["facts"]["gpus"]
    assert len(facts) == 8 and facts[0]["serial"] == "1650000000001"
    assert gpu_identities(db) == [{"uuid": g["uuid"], "serial": g["serial"], "first_seen": "2026-11-21T10:00:00+00:00",
                                   "last_seen": "2026-11-21T10:00:00+00:00", "hosts": ["hgx"]}
                                  for g in sorted(facts, key=lambda g: g["uuid"])]


def test_a_serial_once_known_is_kept(db):
    report = audit_of({"a1": "faulty-h100-2gpu"})
    report["hosts"]["a1"]["facts"]["gpus"][0]["serial"] = "1650000000001"
    record_audit(db, report)
    record_audit(db, audit_of({"a1": "faulty-h100-2gpu"}, generated="2026-11-24T10:00:00+00:00"))  # serial N/A
    assert gpu_identities(db)[0]["serial"] == "1650000000001"
    assert gpu_identities(db)[0]["last_seen"] == "2026-11-24T10:00:00+00:00"


def test_document_matches_the_schema_exactly(db, tmp_path):
    record_audit(db, audit_of({"a1": "faulty-h100-2gpu"}))
    record_verify(db, *verify_run("r1", "2026-11-23T11:00:00+00:00", {"a1": 700.0}))
    record_provision(db, provision_report("2026-11-23T09:00:00+00:00"))
    db.close()
    path = tmp_path / "h" / "history.sqlite"
    text, doc = history_main(path, None, None, None, tmp_path / "out.json")
    assert json.loads((tmp_path / "out.json").read_text()) == doc
    assert set(doc) == {"schema", "hosts"} and doc["schema"] == "gpufleet.history/1"
    assert sorted(doc["hosts"]) == ["a1", "down", "n1", "n2"]
    for entry in doc["hosts"].values():
        assert set(entry) == {"runs", "gpus"}
        for run in entry["runs"]:
            assert set(run) == {"run_id", "kind", "started", "status", "metrics"}
            assert run["kind"] in ("audit", "verify", "provision")
            assert run["status"] in ("pass", "warn", "fail", "error", "unreachable")
            assert all(isinstance(k, str) and isinstance(v, float) for k, v in run["metrics"].items())
        for g in entry["gpus"]:
            assert set(g) == {"uuid", "serial", "first_seen", "last_seen", "hosts"}
    assert [r["kind"] for r in doc["hosts"]["a1"]["runs"]] == ["audit", "verify"]
    assert len(doc["hosts"]["a1"]["gpus"]) == 2
    assert "a1: 2 runs, 2 GPUs known" in text and "matmul/bf16/tflops" in text
    _, n2 = history_main(path, ["n2"], None, None, None)
    assert n2 == {"schema": "gpufleet.history/1", "hosts": {"n2": {"runs": [
        {"run_id": doc["hosts"]["n2"]["runs"][0]["run_id"], "kind": "provision",
         "started": "2026-11-23T09:00:00+00:00", "status": "fail", "metrics": {"changed": 0.0, "duration_s": 3.0}}],
        "gpus": []}}}


def test_version_zero_database_migrates_forward(tmp_path):
    path = tmp_path / "old.sqlite"
    raw = sqlite3.connect(path)
    raw.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    raw.execute("INSERT INTO schema_version VALUES (0)")
    raw.commit()
    raw.close()
    db = connect(path)
    assert schema_version(db) == SCHEMA_VERSION
    assert db.execute("SELECT COUNT(*) FROM schema_version").fetchone()[0] == 1
    record_provision(db, provision_report("2026-11-23T09:00:00+00:00"))
    db.close()
    again = connect(path)  # already current: nothing to do
    assert schema_version(again) == SCHEMA_VERSION and len(runs_by_host(again)["n1"]) == 1
    again.close()


def test_a_later_migration_step_applies_forward_and_keeps_the_data(tmp_path, monkeypatch):
    path = tmp_path / "h.sqlite"
    db = connect(path)
    run_id = record_provision(db, provision_report("2026-11-23T09:00:00+00:00"))
    db.close()
    monkeypatch.setattr(history_db, "MIGRATIONS", history_db.MIGRATIONS + [
        "ALTER TABLE runs ADD COLUMN operator TEXT; -- who ran it; a ';' in a comment is no end\n"
        "UPDATE runs SET operator = 'cron';"])
    db = connect(path)
    assert schema_version(db) == SCHEMA_VERSION + 1
    assert [tuple(r) for r in db.execute("SELECT run_id, operator FROM runs")] == [(run_id, "cron")]
    assert runs_by_host(db)["n1"][0]["run_id"] == run_id
    db.close()


def test_newer_database_is_refused(tmp_path):
    path = tmp_path / "new.sqlite"
    raw = sqlite3.connect(path)
    raw.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    raw.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION + 1,))
    raw.commit()
    raw.close()
    with pytest.raises(RuntimeError, match="newer"):
        connect(path)


def _writer(path: str, tag: str, start) -> None:
    start.wait(60)  # both create the database, migrate it and write at the same moment
    db = connect(path)
    for i in range(50):
        if i % 2:
            record_provision(db, provision_report("2026-11-23T09:00:00+00:00"))
        else:
            record_verify(db, *verify_run(f"{tag}-{i}", "2026-11-23T10:00:00+00:00", {f"{tag}-host": 700.0 + i}))
    db.close()


def test_two_processes_writing_at_once_lose_nothing(tmp_path):
    path = str(tmp_path / "busy.sqlite")
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Barrier(2)
    procs = [ctx.Process(target=_writer, args=(path, tag, start)) for tag in ("p", "q")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    db = connect(path)
    assert db.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 100
    runs = runs_by_host(db)
    assert len(runs["n1"]) == 50 and len(runs["p-host"]) == 25 and len(runs["q-host"]) == 25
    assert len(runs["down"]) == 50
    db.close()


def test_history_main_reads_without_creating(tmp_path):
    text, doc = history_main(tmp_path / "none.sqlite", None, None, 7, tmp_path / "out.json")
    assert doc == {"schema": "gpufleet.history/1", "hosts": {}} and "does not exist" in text
    assert not (tmp_path / "none.sqlite").exists()


def test_text_with_a_metric_shows_its_runs_and_trend(db, tmp_path):
    for day, value in ((3, 700.0), (2, 600.0), (1, 720.0)):
        record_verify(db, *verify_run(f"r{day}", (NOW - _dt.timedelta(days=day)).isoformat(), {"v1": value}))
    record_audit(db, audit_of({"v1": "faulty-h100-2gpu"}, generated=NOW.isoformat()))
    text = render(document(db, ["v1"], "matmul/bf16/tflops"), "matmul/bf16/tflops")
    lines = text.splitlines()
    assert lines[0] == "v1: 4 runs, 2 GPUs known"
    assert [ln.split()[2] for ln in lines[3:6]] == ["verify"] * 3 and len(lines) == 7  # the audit has no such figure
    assert lines[-1] == "trend matmul/bf16/tflops: ▇▁█  700 -> 720 (min 600, max 720, 3 runs)"


def test_record_run_never_raises(tmp_path):
    path = tmp_path / "h.sqlite"
    run_id, problem = record_run(path, "audit", audit_of({"a1": "healthy-h100"}))
    assert problem is None and run_id.startswith("audit-20261123T100000Z-")
    summary, meta, runs = verify_run("r1", "2026-11-23T11:00:00+00:00", {"a1": 700.0})
    assert record_run(path, "verify", summary, meta, runs) == ("r1", None)
    (tmp_path / "dir.sqlite").mkdir()
    run_id, problem = record_run(tmp_path / "dir.sqlite", "provision", provision_report(NOW.isoformat()))
    assert run_id is None and problem.startswith(f"history not recorded in {tmp_path / 'dir.sqlite'}: ")


def test_sparkline():
    assert sparkline([1, 2, 3, 4, 5, 6, 7, 8]) == "▁▂▃▄▅▆▇█"
    assert sparkline([5, None, 5]) == "▄ ▄"
    assert sparkline([]) == ""


def test_record_says_where_or_why_and_nothing_without_a_history(tmp_path):
    from fleet.history import record

    assert record(None, "audit", audit_of({"a1": "healthy-h100"})) == (None, None)
    path = tmp_path / "h.sqlite"
    summary, meta, runs = verify_run("r1", "2026-11-23T11:00:00+00:00", {"a1": 700.0})
    assert record(path, "verify", summary, meta, runs) == ("r1", f"recorded in the history: {path} (run r1)")
    (tmp_path / "dir.sqlite").mkdir()
    run_id, said = record(tmp_path / "dir.sqlite", "provision", provision_report(NOW.isoformat()))
    assert run_id is None and said.startswith(f"history not recorded in {tmp_path / 'dir.sqlite'}: ")
