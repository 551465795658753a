"""--notify: the alert rules (fleet.history.alerts.plan) over exact states, and a real command receiving them."""

from __future__ import annotations

import datetime as _dt
import json

from fleet.history import connect
from fleet.history.alerts import HostAlertState, deliver, notify, plan, read_state, record_sent

NOW = _dt.datetime(2026, 11, 23, 2, 0, tzinfo=_dt.timezone.utc)


def reasons(alerts) -> dict:
    return {a.host: a.reason for a in alerts}


def test_only_changes_new_critical_xids_and_reminders_alert():
    states = {
        "steady-pass": HostAlertState("pass"),
        "broke": HostAlertState("pass"),
        "fixed": HostAlertState("fail", "2026-11-20T02:00:00+00:00", "2026-11-20T02:00:00+00:00"),
        "still-broken": HostAlertState("fail", "2026-11-20T02:00:00+00:00", "2026-11-20T02:00:00+00:00"),
        "broken-long": HostAlertState("fail", "2026-11-10T02:00:00+00:00", "2026-11-10T02:00:00+00:00"),
        "new-xid": HostAlertState("fail", "2026-11-22T02:00:00+00:00", "2026-11-22T02:00:00+00:00"),
        "warned": HostAlertState("pass"),
    }
    statuses = {"steady-pass": "pass", "broke": "fail", "fixed": "pass", "still-broken": "fail",
                "broken-long": "fail", "new-xid": "fail", "warned": "warn", "first-seen-ok": "pass",
                "first-seen-down": "unreachable"}
    alerts = plan(statuses, states, {"new-xid": ["[ 9.0] NVRM: Xid (PCI:0000:2a:00): 79, ..."]}, 7, NOW)
    assert reasons(alerts) == {"broke": "changed", "fixed": "changed", "broken-long": "reminder",
                               "new-xid": "new-xid", "warned": "changed", "first-seen-down": "changed"}
    by = {a.host: a for a in alerts}
    assert by["broke"].failing_since == NOW.isoformat(timespec="seconds") and by["fixed"].failing_since is None
    assert by["broken-long"].failing_since == "2026-11-10T02:00:00+00:00"
    assert by["first-seen-down"].previous is None


def test_reminder_counts_from_the_last_alert_and_can_be_off():
    st = {"n": HostAlertState("fail", failing_since="2026-11-01T02:00:00+00:00",
                              last_alert="2026-11-20T02:00:00+00:00")}
    assert plan({"n": "fail"}, st, {}, 7, NOW) == []  # alerted 3 days ago
    assert reasons(plan({"n": "fail"}, st, {}, 2.5, NOW)) == {"n": "reminder"}
    assert plan({"n": "fail"}, st, {}, None, NOW) == []


def test_history_state_and_alerts_round_trip(tmp_path):
    from tests.test_history import audit_of
    from fleet.history import record_audit

    path = tmp_path / "h.sqlite"
    db = connect(path)
    record_audit(db, audit_of({"n1": "healthy-h100"}, "2026-11-20T02:00:00+00:00"))
    record_audit(db, audit_of({"n1": "faulty-h100-2gpu"}, "2026-11-21T02:00:00+00:00"))
    record_audit(db, audit_of({"n1": "faulty-h100-2gpu"}, "2026-11-22T02:00:00+00:00"))
    # failing since the 21st, but never delivered (those runs had no --notify): the change is still due
    (alert,) = plan({"n1": "fail"}, read_state(db, "audit", ["n1"]), {}, 1, NOW)
    assert alert.reason == "changed" and alert.previous is None and alert.failing_since == "2026-11-21T02:00:00+00:00"
    record_sent(db, "audit", "audit-x", [alert], NOW.isoformat(timespec="seconds"))
    st = read_state(db, "audit", ["n1", "nobody"])
    assert st["n1"] == HostAlertState("fail", "2026-11-21T02:00:00+00:00", NOW.isoformat(timespec="seconds"))
    assert st["nobody"] == HostAlertState()
    assert read_state(db, "verify", ["n1"])["n1"] == HostAlertState()  # per kind of run
    db.close()


def test_the_command_gets_the_json_once_and_a_failure_is_retried(tmp_path):
    path = tmp_path / "h.sqlite"
    connect(path).close()
    out = tmp_path / "alerts.jsonl"
    command = f"python3 -c 'import json,sys; print(json.dumps(json.load(sys.stdin)))' >> '{out}'"
    line = notify(path, command, "verify", "20261123T020000Z", {"a": "fail", "b": "pass"},
                  {"a": HostAlertState("pass"), "b": HostAlertState("pass")}, {},
                  {"a": {"regressions": ["matmul/bf16/tflops:gpu0"]}}, 7, "/runs/x", 1, now=NOW)
    assert line == "--notify: 1 alert sent: a (changed)"
    (doc,) = [json.loads(x) for x in out.read_text().splitlines()]
    assert doc == {"schema": "gpufleet.notify/1", "kind": "verify", "run_id": "20261123T020000Z",
                   "generated": "2026-11-23T02:00:00+00:00", "exit_code": 1, "source": "/runs/x",
                   "alerts": [{"host": "a", "status": "fail", "previous": "pass", "reason": "changed",
                               "failing_since": "2026-11-23T02:00:00+00:00",
                               "regressions": ["matmul/bf16/tflops:gpu0"]}]}
    db = connect(path)
    assert [tuple(r) for r in db.execute("SELECT host, kind, reason FROM alerts")] == [("a", "verify", "changed")]
    db.close()
    failed = notify(path, "echo mail server down >&2; exit 3", "verify", "r2", {"a": "pass"},
                    {"a": HostAlertState("fail")}, {}, {}, 7, None, 0, now=NOW)
    assert failed == ("--notify command exited 3: mail server down (the alerts will be raised again by the next "
                      "run)")
    db = connect(path)
    assert db.execute("SELECT COUNT(*) FROM alerts").fetchone()[0] == 1
    db.close()
    assert notify(path, "exit 9", "verify", "r3", {"a": "pass"}, {"a": HostAlertState("pass")}, {}, {}, 7, None, 0,
                  now=NOW) == "--notify: nothing changed; no alert"


def test_a_hung_command_is_cut_off():
    assert deliver("sleep 30", {"x": 1}, timeout=0.5) == "--notify command did not finish within 0.5 s"
    # a pipeline whose children keep its output open is cut off too
    assert deliver("sleep 30 | cat; true", {"x": 1}, timeout=0.5) == "--notify command did not finish within 0.5 s"
