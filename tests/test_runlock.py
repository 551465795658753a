"""RunLock (fleet/runlock.py): real processes contend for the lock; a killed holder leaves no lock behind."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fleet.outcome import ExitCode
from fleet.runlock import LOCK_NAME, LockHeld, RunLock, lock_path_for

ROOT = str(Path(__file__).resolve().parents[1])
HOLDER_COMMAND = "gpufleet verify --hosts gpu-nodes --out reports"

# Takes the lock, says so on stdout, then holds it until stdin closes (or for argv[2] seconds).
HOLDER = """
import sys, time
from fleet.runlock import RunLock
lock = RunLock(sys.argv[1], command=%r).acquire()
print(lock.holder["since"], flush=True)
if len(sys.argv) > 2:
    time.sleep(float(sys.argv[2]))
else:
    sys.stdin.read()
lock.release()
""" % HOLDER_COMMAND


def start_holder(path, hold_s=None):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    args = [sys.executable, "-c", HOLDER, str(path)] + ([str(hold_s)] if hold_s is not None else [])
    proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    since = proc.stdout.readline().strip()
    assert since, f"the holder did not take the lock (exit {proc.poll()})"
    return proc, since


@pytest.fixture
def procs():
    started = []
    yield started
    for p in started:
        if p.poll() is None:
            p.kill()
        p.wait()


def test_second_run_fails_fast_naming_the_holder(tmp_path, procs):
    path = tmp_path / LOCK_NAME
    proc, since = start_holder(path)
    procs.append(proc)
    with pytest.raises(LockHeld) as e:
        RunLock(path).acquire()  # no wait asked: it raises at once, without polling
    host = socket.gethostname()
    assert e.value.holder == {"pid": proc.pid, "host": host, "command": HOLDER_COMMAND, "since": since}
    assert str(e.value) == (f"another gpufleet run holds the lock {path}: pid {proc.pid} on {host} since {since}, "
                            f"running: {HOLDER_COMMAND}")
    assert e.value.exit_code == ExitCode.USAGE == 2
    assert since.endswith("Z") and "T" in since
    # the file says who holds it, as JSON
    assert json.loads(path.read_text())["pid"] == proc.pid


def test_the_context_manager_fails_the_same_way(tmp_path, procs):
    path = tmp_path / LOCK_NAME
    proc, _ = start_holder(path)
    procs.append(proc)
    with pytest.raises(LockHeld, match=f"pid {proc.pid} "):
        with RunLock(path):
            pytest.fail("entered a held lock")


def test_wait_gives_up_after_the_bounded_wait(tmp_path, procs):
    path = tmp_path / LOCK_NAME
    proc, since = start_holder(path)
    procs.append(proc)
    t0 = time.monotonic()
    with pytest.raises(LockHeld) as e:
        RunLock(path).acquire(wait_s=0.6, poll_s=0.1)
    assert time.monotonic() - t0 >= 0.6  # it waited as long as asked
    assert str(e.value).endswith(f"since {since}, running: {HOLDER_COMMAND} (still held after waiting 0.6 s)")
    assert e.value.waited_s == 0.6


def test_wait_acquires_after_the_holder_exits(tmp_path, procs):
    path = tmp_path / LOCK_NAME
    proc, _ = start_holder(path, hold_s=1.5)
    procs.append(proc)
    with pytest.raises(LockHeld):
        RunLock(path).acquire()
    t0 = time.monotonic()
    with RunLock(path, wait_s=20, command="second") as lock:
        waited = time.monotonic() - t0
        assert proc.wait(timeout=5) == 0  # the holder released its lock and ended
        assert lock.held and waited > 0.2  # it waited for the holder, and took the lock once it was gone
        assert json.loads(path.read_text()) == lock.holder
        assert lock.holder["pid"] == os.getpid() and lock.holder["command"] == "second"
    assert not lock.held
    assert path.read_text() == ""  # emptied on release; the file stays


def test_a_sigkilled_holder_leaves_no_lock(tmp_path, procs):
    path = tmp_path / LOCK_NAME
    proc, since = start_holder(path)
    procs.append(proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    # the stale description is still in the file, but it is not a lock
    assert RunLock(path).read_holder()["pid"] == proc.pid
    lock = RunLock(path, command="after the crash").acquire()
    try:
        assert lock.read_holder() == lock.holder and lock.holder["pid"] == os.getpid()
    finally:
        lock.release()


def test_two_locks_in_one_process_exclude_each_other(tmp_path):
    path = tmp_path / "sub" / LOCK_NAME  # the directory is created
    with RunLock(path, command="first"):
        with pytest.raises(LockHeld, match="running: first$"):
            RunLock(path).acquire()
    with RunLock(path):  # free again
        pass


def test_an_empty_lock_file_held_by_someone_is_named_as_unknown(tmp_path):
    import fcntl

    path = tmp_path / LOCK_NAME
    path.write_text("")
    with open(path) as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        with pytest.raises(LockHeld) as e:
            RunLock(path).acquire()
    assert e.value.holder == {}
    assert "a process that has not described itself" in str(e.value)


def test_acquire_twice_and_negative_wait_are_errors(tmp_path):
    lock = RunLock(tmp_path / LOCK_NAME)
    with pytest.raises(ValueError):
        lock.acquire(wait_s=-1)
    with lock:
        with pytest.raises(RuntimeError, match="already held"):
            lock.acquire()
    lock.release()  # idempotent


def test_lock_path_for(tmp_path):
    assert lock_path_for(tmp_path) == tmp_path / LOCK_NAME
    assert lock_path_for(tmp_path / "reports") == tmp_path / "reports" / LOCK_NAME  # not created yet
    assert lock_path_for(tmp_path / "history.sqlite") == tmp_path / "history.sqlite.lock"
    db = tmp_path / "history"
    db.write_text("")
    assert lock_path_for(db) == tmp_path / "history.lock"


def test_a_program_the_holder_started_does_not_keep_the_lock(tmp_path, procs):
    # ssh and the like outlive a killed run: they must not inherit the lock's descriptor
    path = tmp_path / LOCK_NAME
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    code = ("import subprocess, sys\n"
            "from fleet.runlock import RunLock\n"
            "lock = RunLock(sys.argv[1]).acquire()\n"
            "child = subprocess.Popen(['sleep', '60'], close_fds=False)\n"
            "print(child.pid, flush=True)\n"
            "sys.stdin.read()\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, env=env)
    procs.append(proc)
    child = int(proc.stdout.readline())
    try:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        os.kill(child, 0)  # still running
        with RunLock(path) as lock:
            assert lock.held
    finally:
        os.kill(child, signal.SIGKILL)
