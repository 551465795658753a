"""What a long run shows while it works (fleet/progress.py): stages per host, lines without a terminal."""

from __future__ import annotations

import io

from fleet.progress import Progress


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_without_a_terminal_every_stage_change_is_one_line_with_the_time():
    clock, out = Clock(), io.StringIO()
    p = Progress("verify", ["a", "b"], "lines", stream=out, clock=clock)
    p.stage("a", "pushing")
    clock.now += 75
    p.stage("a", "running")
    p.stage("b", "connecting")
    clock.now += 3700
    p.done("a", "ok")
    p.done("b", "unreachable", "connection to b:22 timed out after 10s\nmore")
    assert out.getvalue().splitlines() == [
        "[verify     0s] a: pushing",
        "[verify  1m15s] a: running",
        "[verify  1m15s] b: connecting",
        "[verify  1h02m] a: ok",
        "[verify  1h02m] b: unreachable (connection to b:22 timed out after 10s)",
    ]


def test_the_terminal_line_names_each_host_and_its_time_in_the_stage_then_counts_when_many():
    clock = Clock()
    p = Progress("verify", [f"n{i}" for i in range(6)], "off", clock=clock)
    p.stage("n0", "running")
    clock.now += 130
    p.stage("n1", "pushing")
    assert p.postfix() == "n0 running 2m10s, n1 pushing 0s"
    for i in range(2, 6):
        p.stage(f"n{i}", "running")
    clock.now += 5
    assert p.postfix() == "1 host pushing, 5 hosts running (longest 2m15s)"
    p.done("n0", "ok")
    assert p.postfix() == "1 ok; 1 host pushing, 4 hosts running (longest 5s)"
    p.done("n1", "auth_failed")
    p.done("n2", "failed")
    p.done("n3", "host_key_rejected")
    assert p.postfix() == "1 ok, 1 failed, 2 unreachable; n4 running 5s, n5 running 5s"


def test_without_a_terminal_a_heartbeat_names_what_still_runs():
    clock, out = Clock(), io.StringIO()
    p = Progress("audit", ["a", "b", "c"], "lines", stream=out, clock=clock)
    p.stage("a", "connecting")
    p.stage("b", "running")
    clock.now += 29
    p.tick()  # said something 29 s ago: no heartbeat yet
    p.done("c", "unreachable", "no route to host")
    clock.now += 30
    p.tick()
    p.tick()  # the heartbeat itself was a line: not twice in a row
    clock.now += 31
    p.tick()
    p.done("a", "ok")
    p.done("b", "ok")
    clock.now += 100
    p.tick()  # nothing running: no heartbeat
    assert out.getvalue().splitlines() == [
        "[audit     0s] a: connecting",
        "[audit     0s] b: running",
        "[audit    29s] c: unreachable (no route to host)",
        "[audit    59s] still running: a connecting 59s, b running 59s; 1 unreachable",
        "[audit  1m30s] still running: a connecting 1m30s, b running 1m30s; 1 unreachable",
        "[audit  1m30s] a: ok",
        "[audit  1m30s] b: ok",
    ]


def test_auto_never_draws_a_bar_without_a_terminal(monkeypatch):
    monkeypatch.setattr("sys.stderr", io.StringIO())
    assert Progress.auto("x", ["a"]).mode == "lines"
    assert Progress.auto("x", ["a"], True).mode == "lines"
    assert Progress.auto("x", ["a"], False).mode == "off"
