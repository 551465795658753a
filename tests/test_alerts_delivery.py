"""--notify: an alert is due until a command took it (exit 0); runs without --notify and failed deliveries consume
nothing.  Real verify verdicts (fleet.runs.verdict.judge), a real history database and real shell commands."""

from __future__ import annotations

import datetime as _dt
import json
import sqlite3

from fleet.audit.run import add_history_checks
from fleet.history import connect, read_audit_past, record_audit, record_verify
from fleet.history import db as history_db
from fleet.history.alerts import HostAlertState, audit_subjects, notify, read_state, read_states, verify_subjects
from fleet.runs.verdict import judge
from tests.report_builder import arrived, node_report
from tests.test_history_changes import XID79, faulty

H100 = ["NVIDIA H100 80GB HBM3"] * 2
DAY = _dt.timedelta(days=1)
T0 = _dt.datetime(2026, 12, 1, 2, 0, tzinfo=_dt.timezone.utc)
STRAGGLER = {"kind": "straggler", "status": "fail", "metric": "matmul/bf16/tflops", "scope": "fleet",
             "message": "straggler (fleet): matmul/bf16/tflops 400.0 is 0.5714 x the median 700.0 (z -20.23)"}


def night(path, n: int, bf16: dict, command: str | None) -> tuple[dict, str | None]:
    """One nightly verify as ``run_verify_job`` does it: alert states read before the run, the run judged and
    recorded, then --notify (when ``command``).  Returns (summary, the --notify line or None)."""
    now = T0 + n * DAY
    run_id = now.strftime("%Y%m%dT%H%M%SZ")
    runs = [arrived(node_report(h, H100, {"matmul/bf16/tflops:gpu0": v, "matmul/bf16/tflops:gpu1": v + 10}))
            for h, v in bf16.items()]
    meta = {"run_id": run_id, "started": now.isoformat(), "finished": now.isoformat(), "interrupted": False}
    states, problem = read_states(path, "verify", list(bf16)) if command else ({}, None)
    assert problem is None
    summary = judge(runs, meta, reference={})
    db = connect(path)
    try:
        record_verify(db, summary, meta, runs)
    finally:
        db.close()
    if command is None:
        return summary, None
    statuses, new_xids, details = verify_subjects(summary)
    return summary, notify(path, command, "verify", run_id, statuses, states, new_xids, details, 7.0,
                           f"reports/{run_id}", summary["exit_code"], now=now)


def test_a_failed_delivery_and_a_run_without_notify_do_not_swallow_the_alert(tmp_path):
    path = tmp_path / "history.sqlite"
    out, attempt = tmp_path / "alerts.jsonl", tmp_path / "attempt.json"
    working = f"python3 -c 'import json,sys; print(json.dumps(json.load(sys.stdin)))' >> '{out}'"  # a line each
    broken = f"cat > '{attempt}'; echo smtp refused >&2; exit 1"
    healthy = {"v1": 700.0, "v2": 710.0, "v3": 700.0}
    slow = {"v1": 700.0, "v2": 710.0, "v3": 400.0}

    assert night(path, 0, healthy, working)[1] == "--notify: nothing changed; no alert"
    summary, line = night(path, 1, slow, broken)
    assert summary["hosts"]["v3"]["status"] == "fail" and summary["hosts"]["v3"]["reasons"] == [STRAGGLER]
    assert line == "--notify command exited 1: smtp refused (the alerts will be raised again by the next run)"
    assert json.loads(attempt.read_text())["alerts"][0]["host"] == "v3"  # it was offered, and refused
    assert not out.exists()
    assert night(path, 2, slow, None)[1] is None  # a run without --notify: still failing, nothing delivered
    _, line = night(path, 3, slow, working)
    assert line == "--notify: 1 alert sent: v3 (changed)"
    (doc,) = [json.loads(x) for x in out.read_text().splitlines()]
    assert doc == {"schema": "gpufleet.notify/1", "kind": "verify", "run_id": "20261204T020000Z",
                   "generated": "2026-12-04T02:00:00+00:00", "exit_code": 1, "source": "reports/20261204T020000Z",
                   "alerts": [{"host": "v3", "status": "fail", "previous": None, "reason": "changed",
                               "failing_since": "2026-12-02T02:00:00+00:00", "state": "ok", "message": "",
                               "failing_checks": [], "stragglers": ["matmul/bf16/tflops"], "regressions": [],
                               "reasons": [STRAGGLER]}]}
    # delivered: the same status is not alerted again, until the reminder is due (7 days after the alert)
    assert night(path, 4, slow, working)[1] == "--notify: nothing changed; no alert"
    assert night(path, 9, slow, working)[1] == "--notify: nothing changed; no alert"
    assert night(path, 10, slow, working)[1] == "--notify: 1 alert sent: v3 (reminder)"
    # fixed in a run without --notify: the next run with it still says so (the last delivered status was fail)
    night(path, 12, healthy, None)
    assert night(path, 13, healthy, working)[1] == "--notify: 1 alert sent: v3 (changed)"
    docs = [json.loads(x) for x in out.read_text().splitlines()]
    assert [(a["host"], a["reason"], a["previous"], a["status"], a["failing_since"]) for d in docs
            for a in d["alerts"]] == [("v3", "changed", None, "fail", "2026-12-02T02:00:00+00:00"),
                                      ("v3", "reminder", "fail", "fail", "2026-12-02T02:00:00+00:00"),
                                      ("v3", "changed", "fail", "pass", None)]
    assert night(path, 14, healthy, working)[1] == "--notify: nothing changed; no alert"
    db = connect(path)
    assert [tuple(r) for r in db.execute("SELECT kind, subject, status, run_id, sent FROM delivered")] == [
        ("verify", "v3", "pass", "20261214T020000Z", "2026-12-14T02:00:00+00:00")]
    db.close()


def test_version_two_database_keeps_its_alerts_as_the_last_delivered(tmp_path):
    path = tmp_path / "v2.sqlite"
    raw = sqlite3.connect(path)
    for step in history_db.MIGRATIONS[:2]:
        for statement in history_db.statements(step):
            raw.execute(statement)
    raw.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    raw.execute("INSERT INTO schema_version VALUES (2)")
    raw.executemany("INSERT INTO alerts (host, kind, run_id, sent, status, reason) VALUES (?, ?, ?, ?, ?, ?)", [
        ("n1", "audit", "audit-a", "2026-11-01T02:00:00+00:00", "fail", "changed"),
        ("n1", "audit", "audit-b", "2026-11-03T02:00:00+00:00", "pass", "changed"),
        ("n1", "verify", "20261102T020000Z", "2026-11-02T02:00:00+00:00", "fail", "changed")])
    for run_id, started, line in (("audit-a", "2026-11-01T02:00:00+00:00", XID79),  # seen before the alert
                                  ("audit-c", "2026-11-04T02:00:00+00:00", "[ 9.0] NVRM: Xid (PCI:0000:2a:00): 79")):
        raw.execute("INSERT INTO runs (run_id, kind, started) VALUES (?, 'audit', ?)", (run_id, started))
        pk = raw.execute("INSERT INTO host_runs (run_id, host, status, state) VALUES (?, 'n1', 'fail', 'ok')",
                         (run_id,)).lastrowid
        raw.execute("INSERT INTO events (host_run, kind, key) VALUES (?, 'xid', ?)", (pk, line))
    raw.commit()
    raw.close()
    db = connect(path)
    assert history_db.schema_version(db) == history_db.SCHEMA_VERSION == 4
    assert sorted(tuple(r) for r in db.execute("SELECT kind, subject, status, run_id, sent FROM delivered")) == [
        ("audit", "n1", "pass", "audit-b", "2026-11-03T02:00:00+00:00"),
        ("verify", "n1", "fail", "20261102T020000Z", "2026-11-02T02:00:00+00:00")]
    # its alerts had reported what the history had seen by then: the Xid of the 1st, not the one of the 4th
    assert read_state(db, "audit", ["n1"])["n1"] == HostAlertState("pass", "2026-11-01T02:00:00+00:00",
                                                                   "2026-11-03T02:00:00+00:00", (XID79,))
    assert db.execute("SELECT COUNT(*) FROM alerts").fetchone()[0] == 3  # the log of alerts is kept as it was
    db.close()


def audit_night(path, generated: str, extra_line: str | None, command: str | None) -> str | None:
    """One nightly audit of n1 (the faulty H100 case) as the audit task does it, optionally with one more Xid 79
    line in its kernel log; returns the --notify line."""
    report = faulty(generated)
    if extra_line:
        xids = report["hosts"]["n1"]["facts"]["xids"]
        xids.append(dict(next(x for x in xids if x["xid"] == 79), line=extra_line))
    past, problem = read_audit_past(path, report)
    assert problem is None
    add_history_checks(report, *past)
    states, problem = read_states(path, "audit", report["hosts"]) if command else ({}, None)
    assert problem is None
    db = connect(path)
    try:
        run_id = record_audit(db, report)
    finally:
        db.close()
    if command is None:
        return None
    statuses, xids, details = audit_subjects(report)
    now = _dt.datetime.fromisoformat(generated)
    return notify(path, command, "audit", run_id, statuses, states, xids, details, 7.0, None, report["exit_code"],
                  now=now)


def test_a_new_xid_seen_first_by_a_run_without_notify_is_still_alerted(tmp_path):
    path, out = tmp_path / "history.sqlite", tmp_path / "alerts.jsonl"
    working = f"python3 -c 'import json,sys; print(json.dumps(json.load(sys.stdin)))' >> '{out}'"
    second_79 = "[ 9000.000002] NVRM: Xid (PCI:0000:2a:00): 79, pid=0, name=, GPU has fallen off the bus."
    assert audit_night(path, "2026-11-20T02:00:00+00:00", None, working) == "--notify: 1 alert sent: n1 (changed)"
    assert audit_night(path, "2026-11-21T02:00:00+00:00", second_79, None) is None  # the new line, no --notify
    assert audit_night(path, "2026-11-22T02:00:00+00:00", second_79, "exit 1") == (
        "--notify command exited 1 (the alerts will be raised again by the next run)")
    assert audit_night(path, "2026-11-23T02:00:00+00:00", second_79, working) == "--notify: 1 alert sent: n1 (new-xid)"
    assert audit_night(path, "2026-11-24T02:00:00+00:00", second_79, working) == "--notify: nothing changed; no alert"
    first, second = [json.loads(x)["alerts"] for x in out.read_text().splitlines()]
    assert [a["reason"] for a in first + second] == ["changed", "new-xid"]
    assert second[0]["new_xids"] == [second_79] and second[0]["previous"] == "fail"
    assert second_79 in second[0]["known_xids"]  # the history knew it since the 21st; no alert had said so
    assert first[0]["new_xids"] == [XID79]  # the only critical one of the case's three Xids
