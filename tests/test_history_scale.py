"""The history read at scale: the batched baseline and trend reads give exactly the answers of the per-host
queries they replaced, whichever way they walk the runs, and a database an older gpufleet wrote (schema 3) is
migrated to the current one with its data and answers unchanged.  The speed itself is measured in
bench/bench_scale.py, never here."""

from __future__ import annotations

import datetime as _dt
import json
import sqlite3

import pytest

from fleet.history import baseline, connect, document, metric_series, record_verify
from fleet.history import db as history_db
from fleet.history.baseline import (
    all_passing_runs, baselines, latest_host_runs, read_baselines, read_trends, trends, verify_runs,
)
from fleet.history.query import metric_bases
from tests.report_builder import arrived, node_report

H100 = ["NVIDIA H100 80GB HBM3"] * 2
BF16 = "matmul/bf16/tflops"

# (run id, day of November 2026, profile, interrupted, {host: (bf16 of gpu0, status)}); gpu1 is bf16 + 10.
# Host e is in the first three runs only; host d in none; b fails run 6; run 5 is interrupted; run 4 is another
# profile.
NIGHTS = [
    ("20261101T020000Z", 1, "quick", False, {"a": (700.0, "pass"), "b": (690.0, "pass"), "e": (650.0, "pass")}),
    ("20261102T020000Z", 2, "quick", False, {"a": (710.0, "pass"), "b": (700.0, "warn"), "e": (660.0, "pass")}),
    ("20261103T020000Z", 3, "quick", False, {"a": (650.0, "pass"), "b": (705.0, "pass"), "e": (670.5, "pass")}),
    ("20261104T020000Z", 4, "full", False, {"a": (100.0, "pass"), "b": (100.0, "pass")}),
    ("20261105T020000Z", 5, "quick", True, {"a": (720.0, "pass"), "b": (720.0, "pass")}),
    ("20261106T020000Z", 6, "quick", False, {"a": (720.0, "pass"), "b": (300.0, "fail")}),
    ("20261107T020000Z", 7, "quick", False, {"a": (730.0, "pass"), "b": (715.0, "pass")}),
]


def started(day: int) -> str:
    return f"2026-11-{day:02d}T02:00:00+00:00"


def record_nights(db: sqlite3.Connection) -> None:
    """Each night as verify records it: the verdict's status and host figure, the report's per-GPU metrics."""
    for run_id, day, profile, interrupted, hosts in NIGHTS:
        runs = [arrived(node_report(h, H100, {f"{BF16}:gpu0": v, f"{BF16}:gpu1": v + 10,
                                              "allreduce/busbw_gbps": 360.0}))
                for h, (v, _) in hosts.items()]
        summary = {"run_id": run_id, "exit_code": 0, "interrupted": interrupted,
                   "hosts": {h: {"status": st, "state": "ok", "message": "",
                                 "metrics": {BF16: {"value": v}, "allreduce/busbw_gbps": {"value": 360.0}}}
                             for h, (v, st) in hosts.items()}}
        meta = {"run_id": run_id, "started": started(day), "finished": started(day), "interrupted": interrupted,
                "profile": profile}
        record_verify(db, summary, meta, runs)


@pytest.fixture
def path(tmp_path):
    p = tmp_path / "history.sqlite"
    db = connect(p)
    record_nights(db)
    db.close()
    return p


# What a baseline of window 3 is, worked out by hand from NIGHTS.
BASELINES_3 = {
    "a": {f"{BF16}:gpu0": {"value": 720.0, "runs": 3},  # 730, 720, 650 (run 5 interrupted, run 4 full)
          f"{BF16}:gpu1": {"value": 730.0, "runs": 3},
          BF16: {"value": 720.0, "runs": 3},
          "allreduce/busbw_gbps": {"value": 360.0, "runs": 3}},
    "b": {f"{BF16}:gpu0": {"value": 705.0, "runs": 3},  # 715, 705, 700 (run 6 failed)
          f"{BF16}:gpu1": {"value": 715.0, "runs": 3},
          BF16: {"value": 705.0, "runs": 3},
          "allreduce/busbw_gbps": {"value": 360.0, "runs": 3}},
    "e": {f"{BF16}:gpu0": {"value": 660.0, "runs": 3},  # its only three runs, the oldest
          f"{BF16}:gpu1": {"value": 670.0, "runs": 3},
          BF16: {"value": 660.0, "runs": 3},
          "allreduce/busbw_gbps": {"value": 360.0, "runs": 3}},
}

TREND_A = [[started(d), v] for d, v in ((1, 700.0), (2, 710.0), (3, 650.0), (5, 720.0), (6, 720.0), (7, 730.0))]


def per_host_passing_runs(db: sqlite3.Connection, host: str, profile: str | None, window: int) -> list[dict]:
    """The per-host queries gpufleet ran before schema 4 (profile read from the run's JSON), as the reference."""
    rows = db.execute(
        "SELECT h.id FROM host_runs h JOIN runs r USING (run_id) WHERE h.host = ? AND r.kind = 'verify' "
        "AND h.status IN ('pass', 'warn') AND r.interrupted = 0 "
        "AND (? IS NULL OR json_extract(r.info, '$.profile') = ?) ORDER BY r.started DESC, r.run_id DESC LIMIT ?",
        (host, profile, profile, int(window))).fetchall()
    return [{k: v for k, v in db.execute("SELECT key, value FROM metrics WHERE host_run = ?", (row[0],))}
            for row in rows]


def per_host_trends(db: sqlite3.Connection, hosts: list[str], profile: str | None, limit: int = 30) -> dict:
    out = {}
    for host in hosts:
        rows = db.execute(
            "SELECT h.id, r.started FROM host_runs h JOIN runs r USING (run_id) WHERE h.host = ? "
            "AND r.kind = 'verify' AND (? IS NULL OR json_extract(r.info, '$.profile') = ?) "
            "ORDER BY r.started DESC, r.run_id DESC LIMIT ?", (host, profile, profile, int(limit))).fetchall()
        series: dict[str, list] = {}
        for pk, when in reversed(rows):
            for key, value in db.execute("SELECT key, value FROM metrics WHERE host_run = ? AND instr(key, ':') = 0 "
                                         "ORDER BY key", (pk,)):
                if baseline.is_judged(key):
                    series.setdefault(key, []).append([when, value])
        if series:
            out[host] = series
    return out


@pytest.mark.parametrize("per_host_below", [1, 3, 1000])  # walk every run / walk, then per host / per host only
def test_baselines_and_trends_are_exact_whichever_way_the_runs_are_walked(path, monkeypatch, per_host_below):
    monkeypatch.setattr(baseline, "PER_HOST_BELOW", per_host_below)
    hosts = ["a", "b", "c", "d", "e"]
    doc, problem = read_baselines(path, hosts, "quick", window=3)
    assert problem is None
    past, with_history, problem = read_trends(path, hosts, "quick", cap=64)
    assert problem is None and with_history == 3  # c and d: no verify run of the profile recorded
    assert doc == {"threshold": 0.9, "window": 3, "min_runs": 3, "profile": "quick", "hosts": BASELINES_3}
    assert list(doc["hosts"]) == ["a", "b", "e"]
    assert past["a"] == {"allreduce/busbw_gbps": [[w, 360.0] for w, _ in TREND_A], BF16: TREND_A}
    assert [v for _, v in past["b"][BF16]] == [690.0, 700.0, 705.0, 720.0, 300.0, 715.0]
    assert [v for _, v in past["e"][BF16]] == [650.0, 660.0, 670.5]
    assert set(past) == {"a", "b", "e"}
    db = connect(path)
    try:
        assert trends(db, ["a"], "quick", limit=2) == {"a": {"allreduce/busbw_gbps": [[started(6), 360.0],
                                                                                       [started(7), 360.0]],
                                                             BF16: TREND_A[-2:]}}
        assert trends(db, ["a", "b"], "full") == {h: {"allreduce/busbw_gbps": [[started(4), 360.0]],
                                                      BF16: [[started(4), 100.0]]} for h in ("a", "b")}
        # only the keys asked for (what the baseline judges), from the same runs
        assert all_passing_runs(db, ["a", "e"], "quick", 3, keys=[f"{BF16}:gpu1"]) == {
            "a": [{f"{BF16}:gpu1": 740.0}, {f"{BF16}:gpu1": 730.0}, {f"{BF16}:gpu1": 660.0}],
            "e": [{f"{BF16}:gpu1": 680.5}, {f"{BF16}:gpu1": 670.0}, {f"{BF16}:gpu1": 660.0}]}
        # an even count: the mean of the two middle values, as statistics.median
        assert baselines(all_passing_runs(db, ["a"], "quick", 4))["a"][f"{BF16}:gpu0"] == {"value": 715.0,
                                                                                           "runs": 4}
        # the same answers as the per-host queries they replaced, for every profile and window
        for profile in ("quick", "full", None):
            for window in (1, 3, 5, 10):
                assert all_passing_runs(db, hosts, profile, window) == {
                    h: per_host_passing_runs(db, h, profile, window) for h in hosts}
            assert trends(db, hosts, profile) == per_host_trends(db, hosts, profile)
            assert trends(db, hosts, profile, limit=2) == per_host_trends(db, hosts, profile, limit=2)
    finally:
        db.close()


def test_the_page_reads_the_trends_of_the_first_hosts_it_draws_and_counts_the_others(path, tmp_path):
    past, with_history, problem = read_trends(path, ["e", "d", "b", "a"], "quick", cap=2)
    assert problem is None and with_history == 3  # d has no run
    assert list(past) == ["e", "b"]  # the first two with a history, in the order asked
    assert [v for _, v in past["e"][BF16]] == [650.0, 660.0, 670.5]
    assert [v for _, v in past["b"][BF16]] == [690.0, 700.0, 705.0, 720.0, 300.0, 715.0]
    assert read_trends(path, ["e", "a", "b"], "full", cap=1) == ({"a": {
        "allreduce/busbw_gbps": [[started(4), 360.0]], BF16: [[started(4), 100.0]]}}, 2, None)
    assert read_trends(path, ["a"], "quick", cap=0) == ({}, 1, None)
    assert read_trends(tmp_path / "none.sqlite", ["a"], "quick", cap=2) == ({}, 0, None)
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"not a database" * 100)
    got, count, problem = read_trends(garbage, ["a"], "quick", cap=2)
    assert (got, count) == ({}, 0)
    assert problem.startswith(f"history not read from {garbage} (no trends on summary.html): ")


def test_the_walk_reads_each_host_newest_first_and_stops_at_its_limit(path):
    db = connect(path)
    try:
        runs = verify_runs(db, "quick", completed_only=True)
        assert [r for r, _ in runs] == [n[0] for n in NIGHTS if n[2] == "quick" and not n[3]][::-1]
        for below in (1, 2, 100):
            got = latest_host_runs(db, ["a", "b", "d", "e"], runs, 2, ("pass", "warn"), per_host_below=below)
            assert {h: [when for _, when in rows] for h, rows in got.items()} == {
                "a": [started(7), started(6)], "b": [started(7), started(3)], "d": [],
                "e": [started(3), started(2)]}
    finally:
        db.close()


def test_a_rerecorded_run_replaces_itself_and_keeps_the_answers(path):
    db = connect(path)
    try:
        before = all_passing_runs(db, ["a", "b", "e"], "quick", 5), trends(db, ["a", "b", "e"], "quick")
        record_nights_first = NIGHTS[0]
        run_id, day, profile, interrupted, hosts = record_nights_first
        runs = [arrived(node_report(h, H100, {f"{BF16}:gpu0": v, f"{BF16}:gpu1": v + 10,
                                              "allreduce/busbw_gbps": 360.0})) for h, (v, _) in hosts.items()]
        summary = {"run_id": run_id, "exit_code": 0, "hosts": {
            h: {"status": st, "state": "ok", "metrics": {BF16: {"value": v}, "allreduce/busbw_gbps": {"value": 360.0}}}
            for h, (v, st) in hosts.items()}}
        record_verify(db, summary, {"run_id": run_id, "started": started(day), "profile": profile}, runs)
        assert (all_passing_runs(db, ["a", "b", "e"], "quick", 5), trends(db, ["a", "b", "e"], "quick")) == before
        assert db.execute("SELECT COUNT(*) FROM host_runs").fetchone()[0] == sum(len(n[4]) for n in NIGHTS)
    finally:
        db.close()


# ------------------------------------------------------------------ a database an older gpufleet wrote


def schema_3_database(path) -> None:
    """The history as gpufleet wrote it at schema version 3: its own migration steps (never edited once
    released), then each night's rows with the statements its record_verify ran (the profile only in ``info``,
    the metrics a rowid table with an index by key)."""
    raw = sqlite3.connect(path)
    for step in history_db.MIGRATIONS[:3]:
        for statement in history_db.statements(step):
            raw.execute(statement)
    raw.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    raw.execute("INSERT INTO schema_version VALUES (3)")
    for run_id, day, profile, interrupted, hosts in NIGHTS:
        raw.execute("INSERT OR REPLACE INTO runs (run_id, kind, started, finished, exit_code, interrupted, info) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (run_id, "verify", started(day), started(day), 0, int(interrupted),
                     json.dumps({"pattern": "all", "profile": profile, "schema": None}, sort_keys=True)))
        for h, (v, st) in hosts.items():
            pk = raw.execute("INSERT INTO host_runs (run_id, host, status, state, message, boot_id) "
                             "VALUES (?, ?, ?, ?, ?, ?)", (run_id, h, st, "ok", "", None)).lastrowid
            raw.execute("INSERT INTO checks (host_run, name, status, message) VALUES (?, ?, ?, ?)",
                        (pk, "env/torch", "pass", "torch 2.4.0"))
            raw.executemany("INSERT OR REPLACE INTO metrics (host_run, key, value) VALUES (?, ?, ?)",
                            [(pk, BF16, v), (pk, f"{BF16}:gpu0", v), (pk, f"{BF16}:gpu1", v + 10),
                             (pk, "allreduce/busbw_gbps", 360.0)])
    raw.execute("INSERT INTO runs (run_id, kind, started, info) VALUES "
                "('audit-20261108T020000Z-0badc0de', 'audit', '2026-11-08T02:00:00+00:00', '{\"pattern\": \"all\"}')")
    pk = raw.execute("INSERT INTO host_runs (run_id, host, status, state) VALUES "
                     "('audit-20261108T020000Z-0badc0de', 'a', 'pass', 'ok')").lastrowid
    raw.execute("INSERT INTO metrics (host_run, key, value) VALUES (?, 'ecc/aggregate_uncorrectable:gpu0', 0)", (pk,))
    raw.commit()
    raw.close()


def test_a_schema_3_database_migrates_with_its_data_and_answers_unchanged(tmp_path):
    old = tmp_path / "old.sqlite"
    schema_3_database(old)
    raw = sqlite3.connect(old)
    metrics_before = sorted(raw.execute("SELECT host_run, key, value FROM metrics").fetchall())
    host_runs_before = raw.execute("SELECT * FROM host_runs ORDER BY id").fetchall()
    assert [r[1] for r in raw.execute("PRAGMA table_info(runs)")][-1] == "info"
    raw.close()

    db = connect(old)  # migrates
    try:
        assert history_db.schema_version(db) == history_db.SCHEMA_VERSION == 4
        assert [tuple(r) for r in db.execute("SELECT run_id, kind, profile FROM runs ORDER BY started")] == [
            (n[0], "verify", n[2]) for n in NIGHTS] + [("audit-20261108T020000Z-0badc0de", "audit", None)]
        assert sorted(tuple(r) for r in db.execute("SELECT host_run, key, value FROM metrics")) == metrics_before
        assert [tuple(r)[:-1] for r in db.execute("SELECT * FROM host_runs ORDER BY id")] == host_runs_before
        assert {r[0] for r in db.execute("SELECT figures FROM host_runs")} == {None}  # read in metrics
        assert metric_bases(db) == ["allreduce/busbw_gbps", "ecc/aggregate_uncorrectable", BF16]
        assert [r[0] for r in db.execute("SELECT key FROM metric_keys ORDER BY key")] == [
            "allreduce/busbw_gbps", "ecc/aggregate_uncorrectable:gpu0", BF16, f"{BF16}:gpu0", f"{BF16}:gpu1"]
        assert metric_series(db, "a", f"{BF16}:gpu1") == [(w, v + 10) for w, v in TREND_A[:3]] + [
            (started(4), 110.0)] + [(w, v + 10) for w, v in TREND_A[3:]]
        assert document(db, ["a"], "ecc/aggregate_uncorrectable")["hosts"]["a"]["runs"][-1] == {
            "run_id": "audit-20261108T020000Z-0badc0de", "kind": "audit", "started": "2026-11-08T02:00:00+00:00",
            "status": "pass", "metrics": {"ecc/aggregate_uncorrectable:gpu0": 0.0}}
    finally:
        db.close()

    doc, problem = read_baselines(old, ["a", "b", "c", "d", "e"], "quick", window=3)
    past = read_trends(old, ["a", "b", "c", "d", "e"], "quick", cap=64)
    assert problem is None and doc["hosts"] == BASELINES_3 and past[0]["a"][BF16] == TREND_A

    # and the same answers as a database this gpufleet wrote from the start
    new = tmp_path / "new.sqlite"
    db = connect(new)
    record_nights(db)
    db.close()
    assert read_baselines(new, ["a", "b", "c", "d", "e"], "quick", window=3) == (doc, None)
    assert read_trends(new, ["a", "b", "c", "d", "e"], "quick", cap=64) == past

    db = connect(old)  # and it records on
    try:
        record_nights(db)
        assert db.execute("SELECT COUNT(*) FROM host_runs").fetchone()[0] == sum(len(n[4]) for n in NIGHTS) + 1
    finally:
        db.close()
    assert read_baselines(old, ["a", "b", "c", "d", "e"], "quick", window=3) == (doc, None)
    assert read_trends(old, ["a", "b", "c", "d", "e"], "quick", cap=64) == past


def test_history_document_is_the_same_read_by_host_or_by_run(path, monkeypatch):
    from fleet.history import query

    db = connect(path)
    try:
        by_host = [document(db, patterns, metric, days, now=NOW) for patterns, metric, days in READS]
        monkeypatch.setattr(query, "PER_HOST_UP_TO", 0)  # every read by run
        assert [document(db, patterns, metric, days, now=NOW) for patterns, metric, days in READS] == by_host
    finally:
        db.close()
    a = by_host[0]["hosts"]["a"]["runs"]
    assert [(r["run_id"], r["status"], r["metrics"][BF16]) for r in a] == [
        (n[0], n[4]["a"][1], n[4]["a"][0]) for n in NIGHTS]
    assert a[0]["metrics"] == {BF16: 700.0, f"{BF16}:gpu0": 700.0, f"{BF16}:gpu1": 710.0,
                               "allreduce/busbw_gbps": 360.0}
    assert [r["run_id"] for r in by_host[2]["hosts"]["e"]["runs"]] == []  # no run of e in the last 3 days
    assert [(r["run_id"], r["metrics"]) for r in by_host[2]["hosts"]["b"]["runs"]] == [
        (n[0], {BF16: n[4]["b"][0], f"{BF16}:gpu0": n[4]["b"][0], f"{BF16}:gpu1": n[4]["b"][0] + 10})
        for n in NIGHTS[4:]]
    assert [r["metrics"] for r in by_host[3]["hosts"]["b"]["runs"]] == [{"allreduce/busbw_gbps": 360.0}] * 3


NOW = _dt.datetime(2026, 11, 7, 12, 0, tzinfo=_dt.timezone.utc)
READS = [(None, None, None), (["a", "e"], None, None), (["b", "e"], BF16, 3.0), (["b"], "allreduce/busbw_gbps", 3.0)]
