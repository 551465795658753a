"""Retention (fleet/runs/retention.py): plans on exact names and mtimes; prune on a real directory."""

from __future__ import annotations

import calendar
import os
import time
from datetime import datetime, timezone

import pytest

from fleet.runs.retention import PruneError, list_run_dirs, plan_prune, prune, run_id_key

DAY = 86400.0


def epoch(stamp: str) -> float:
    return float(calendar.timegm(time.strptime(stamp, "%Y%m%dT%H%M%SZ")))


NOW = epoch("20261123T120000Z")

# (name, mtime): each run's directory was last written a few minutes after its run id's time
RUNS = [
    ("20261101T120000Z", epoch("20261101T120500Z")),    # 22 days old
    ("20261110T120000Z", epoch("20261110T120500Z")),    # 13 days
    ("20261110T120000Z-1", epoch("20261110T120600Z")),  # same second, made after the one above
    ("20261120T120000Z", epoch("20261120T120500Z")),    # 3 days
    ("20261123T115500Z", epoch("20261123T115900Z")),    # the current run
]
CURRENT = "20261123T115500Z"


def test_nothing_given_removes_nothing():
    assert plan_prune(RUNS, None, None, NOW, CURRENT) == []


@pytest.mark.parametrize("keep_runs, expected", [
    (10, []),
    (5, []),
    (4, ["20261101T120000Z"]),
    (3, ["20261101T120000Z", "20261110T120000Z"]),
    (2, ["20261101T120000Z", "20261110T120000Z", "20261110T120000Z-1"]),
    (1, ["20261101T120000Z", "20261110T120000Z", "20261110T120000Z-1", "20261120T120000Z"]),
    (0, ["20261101T120000Z", "20261110T120000Z", "20261110T120000Z-1", "20261120T120000Z"]),
])
def test_keep_runs_keeps_the_newest_by_run_id(keep_runs, expected):
    assert plan_prune(RUNS, keep_runs, None, NOW, CURRENT) == expected


@pytest.mark.parametrize("keep_days, expected", [
    (30, []),
    (20, ["20261101T120000Z"]),
    (10, ["20261101T120000Z", "20261110T120000Z", "20261110T120000Z-1"]),
    (1, ["20261101T120000Z", "20261110T120000Z", "20261110T120000Z-1", "20261120T120000Z"]),
    (0, ["20261101T120000Z", "20261110T120000Z", "20261110T120000Z-1", "20261120T120000Z"]),  # never the current
])
def test_keep_days_removes_the_older_ones(keep_days, expected):
    assert plan_prune(RUNS, None, keep_days, NOW, CURRENT) == expected


def test_both_rules_remove_the_union():
    # keep_runs 4 removes the 1 Nov run; keep_days 10 removes the three older than 10 days
    assert plan_prune(RUNS, 4, 10, NOW, CURRENT) == ["20261101T120000Z", "20261110T120000Z", "20261110T120000Z-1"]
    # keep_runs 2 removes the three oldest, and keep_days 20 adds nothing
    assert plan_prune(RUNS, 2, 20, NOW, CURRENT) == ["20261101T120000Z", "20261110T120000Z", "20261110T120000Z-1"]


def test_age_is_from_the_later_of_name_and_mtime():
    runs = [("20261101T000000Z", NOW - 1 * DAY),      # old name, recently written: 1 day old
            ("20261122T000000Z", epoch("20200101T000000Z")),  # recent name, mtime in the past: 1.5 days
            ("20261110T000000Z", NOW - 13 * DAY)]     # both old
    assert plan_prune(runs, None, 2, NOW, None) == ["20261110T000000Z"]
    assert plan_prune(runs, None, 1, NOW, None) == ["20261110T000000Z", "20261122T000000Z"]
    # strictly older: exactly keep_days old stays
    assert plan_prune([("20261113T120000Z", epoch("20261113T120000Z"))], None, 10, NOW, None) == []
    assert plan_prune([("20261113T115959Z", epoch("20261113T115959Z"))], None, 10, NOW, None) == [
        "20261113T115959Z"]


def test_the_current_run_is_never_removed_even_when_old_or_not_newest():
    runs = [("20261101T120000Z", 0.0), ("20261120T120000Z", 0.0), ("20261121T120000Z", 0.0)]
    assert plan_prune(runs, 1, None, NOW, "20261101T120000Z") == ["20261120T120000Z"]
    assert plan_prune(runs, 0, 0, NOW, "reports/20261101T120000Z/") == ["20261120T120000Z", "20261121T120000Z"]


def test_only_run_ids_are_considered():
    runs = [("20261101T120000Z", 0.0), ("notes", 0.0), ("20261101T120000", 0.0), ("20261101T120000Z-", 0.0),
            ("20261101T120000Z-0", 0.0), ("20261101T120000Z-01", 0.0), ("20261301T120000Z", 0.0),
            ("x20261101T120000Z", 0.0), ("20261101T120000Z.bak", 0.0), (".gpufleet.lock", 0.0),
            ("20261101T120000Z-12", 0.0)]
    assert plan_prune(runs, 0, None, NOW, None) == ["20261101T120000Z", "20261101T120000Z-12"]
    assert run_id_key("20261101T120000Z-12") == (epoch("20261101T120000Z"), 12)
    assert run_id_key("20261332T120000Z") is None


def test_suffixes_order_numerically():
    runs = [("20261101T120000Z-10", 0.0), ("20261101T120000Z-9", 0.0), ("20261101T120000Z", 0.0)]
    assert plan_prune(runs, 1, None, NOW, None) == ["20261101T120000Z", "20261101T120000Z-9"]


def test_now_as_an_aware_datetime():
    at = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)
    assert plan_prune(RUNS, None, 20, at, CURRENT) == ["20261101T120000Z"]
    with pytest.raises(ValueError):
        plan_prune(RUNS, None, 20, datetime(2026, 11, 23), CURRENT)


@pytest.mark.parametrize("keep_runs, keep_days", [(-1, None), (None, -0.5), (1.5, None), (True, None),
                                                  (None, float("nan"))])
def test_bad_limits_are_refused(keep_runs, keep_days):
    with pytest.raises(ValueError):
        plan_prune(RUNS, keep_runs, keep_days, NOW, CURRENT)


def make_tree(tmp_path):
    """tmp_path/reports with RUNS and unrelated entries; returns (reports, a directory outside it)."""
    base = tmp_path / "reports"
    for name, mtime in RUNS:
        d = base / name
        (d / "hosts").mkdir(parents=True)
        (d / "run.json").write_text("{}")
        (d / "hosts" / "a.json").write_text("{}")
        os.utime(d, (mtime, mtime))
    (base / ".gpufleet.lock").write_text("")
    (base / "notes.txt").write_text("keep me")
    (base / "history").mkdir()
    (base / "20261101T000000Z.tar").write_text("not a directory")
    old_unrelated = base / "20250101T000000Z-x"
    old_unrelated.mkdir()
    outside = tmp_path / "outside"
    (outside / "data").mkdir(parents=True)
    os.symlink(outside, base / "20250101T000000Z")  # a link named as a run: never followed or removed
    os.utime(base / "history", (0, 0))
    return base, outside


def test_prune_removes_old_runs_only(tmp_path):
    base, outside = make_tree(tmp_path)
    assert sorted(n for n, _ in list_run_dirs(base)) == sorted(n for n, _ in RUNS)
    removed = prune(base, keep_runs=2, keep_days=10, now=NOW, current=str(base / CURRENT))
    assert removed == ["20261101T120000Z", "20261110T120000Z", "20261110T120000Z-1"]
    assert sorted(p.name for p in base.iterdir()) == sorted([
        ".gpufleet.lock", "notes.txt", "history", "20261101T000000Z.tar", "20250101T000000Z-x", "20250101T000000Z",
        "20261120T120000Z", CURRENT])
    assert (base / "20250101T000000Z").is_symlink() and (outside / "data").is_dir()
    assert (base / CURRENT / "hosts" / "a.json").read_text() == "{}"
    # everything else goes with keep_runs 0; the current run and the unrelated entries stay
    assert prune(base, keep_runs=0, now=NOW, current=CURRENT) == ["20261120T120000Z"]
    assert sorted(p.name for p in base.iterdir()) == sorted([
        ".gpufleet.lock", "notes.txt", "history", "20261101T000000Z.tar", "20250101T000000Z-x", "20250101T000000Z",
        CURRENT])


def test_prune_without_limits_or_directory_does_nothing(tmp_path):
    base, _ = make_tree(tmp_path)
    before = sorted(p.name for p in base.iterdir())
    assert prune(base, now=NOW, current=CURRENT) == []
    assert sorted(p.name for p in base.iterdir()) == before
    assert prune(tmp_path / "missing", keep_runs=1) == []


def test_prune_goes_on_past_a_directory_it_cannot_remove(tmp_path, monkeypatch):
    import shutil

    base, _ = make_tree(tmp_path)
    real_rmtree = shutil.rmtree

    def rmtree(path, *a, **kw):
        if os.path.basename(path) == "20261101T120000Z":
            raise PermissionError(13, "Permission denied", str(path))
        real_rmtree(path, *a, **kw)

    monkeypatch.setattr(shutil, "rmtree", rmtree)
    with pytest.raises(PruneError) as e:
        prune(base, keep_days=10, now=NOW, current=CURRENT)
    assert e.value.removed == ["20261110T120000Z", "20261110T120000Z-1"]
    assert e.value.failed == [("20261101T120000Z", "Permission denied")]
    assert str(e.value) == f"{base}: could not remove 20261101T120000Z: Permission denied"
    assert (base / "20261101T120000Z").is_dir()
