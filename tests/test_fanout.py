"""The SSH fan-out against real sshd hosts: every host ends in exactly one state."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from fleet.fanout import HostState, TaskFailed, run_command, run_fleet
from fleet.inventory import parse_inventory
from fleet.shell import cmd
from tests.sshd import keygen


@pytest.fixture(scope="module")
def hosts(farm):
    farm.add_host("ok1")
    farm.add_host("ok2")
    farm.add_host("unknown-key", known=False)
    farm.add_host("no-auth", authorized=False)
    farm.add_down_host("down")
    farm.add_hung_host("hung")
    return parse_inventory(farm.inventory(), "test.yaml")


def test_every_host_ends_in_exactly_one_state(farm, hosts):
    result = run_command(hosts.select("all"), "echo hello from $GPUFLEET_TEST_HOST", farm.options(connect_timeout=2))
    states = {name: r.state for name, r in result.results.items()}
    assert states == {
        "ok1": HostState.OK,
        "ok2": HostState.OK,
        "unknown-key": HostState.HOST_KEY_REJECTED,
        "no-auth": HostState.AUTH_FAILED,
        "down": HostState.UNREACHABLE,
        "hung": HostState.UNREACHABLE,
    }
    assert result["ok1"].value.stdout.strip() == "hello from ok1"
    assert result["ok2"].value.stdout.strip() == "hello from ok2"
    assert set(result.succeeded) == {"ok1", "ok2"} and len(result.failed) == 4
    assert "--accept-new-host-keys" in result["unknown-key"].message
    # the hung host is cut off at its connect timeout (said in its message), it does not hold the others hostage
    assert "within 2s" in result["hung"].message


def test_unknown_key_is_recorded_only_with_opt_in(farm, hosts):
    before = farm.known_hosts.read_text()
    h = hosts.select("unknown-key")
    assert run_command(h, "true", farm.options())["unknown-key"].state is HostState.HOST_KEY_REJECTED
    assert farm.known_hosts.read_text() == before  # refusing writes nothing
    r = run_command(h, "true", farm.options(accept_new_host_keys=True))
    assert r["unknown-key"].state is HostState.OK
    host = farm.hosts["unknown-key"]
    added = farm.known_hosts.read_text()[len(before):]
    assert added.startswith(f"[{host.address}]:{host.port} ssh-ed25519 ")
    # now known: strict checking accepts it
    assert run_command(h, "true", farm.options())["unknown-key"].state is HostState.OK


def test_changed_host_key_is_refused_even_with_opt_in(farm, hosts, tmp_path):
    host = farm.hosts["ok1"]
    keygen(tmp_path / "impostor")
    kt, kb = (tmp_path / "impostor.pub").read_text().split()[:2]
    kh = tmp_path / "known_hosts"
    kh.write_text(f"[{host.address}]:{host.port} {kt} {kb}\n")
    for accept in (False, True):
        r = run_command(hosts.select("ok1"), "true", farm.options(known_hosts=str(kh), accept_new_host_keys=accept))
        assert r["ok1"].state is HostState.HOST_KEY_REJECTED
        assert "HOST KEY CHANGED" in r["ok1"].message and "ssh-keygen -R" in r["ok1"].message
    assert kh.read_text().count("\n") == 1


def test_command_timeout_and_nonzero_exit(farm, hosts):
    sel = hosts.select("ok1,ok2")
    r = run_fleet(sel, lambda t: t.run("sleep 30" if t.host.name == "ok1" else "echo fine", timeout=2), farm.options())
    assert r["ok1"].state is HostState.TIMED_OUT and "2s" in r["ok1"].message
    assert r["ok2"].state is HostState.OK and r["ok2"].value.stdout == "fine\n"
    r = run_command(sel, "echo partial; echo broken >&2; exit 3", farm.options())
    assert r["ok1"].state is HostState.FAILED
    assert r["ok1"].value.exit_code == 3 and r["ok1"].value.stdout == "partial\n"
    assert "exit status 3" in r["ok1"].message and "broken" in r["ok1"].message


def test_arguments_are_quoted_end_to_end(farm, hosts, tmp_path):
    nasty = "it's $(touch /tmp/gpufleet-pwned) `id` ; echo x"
    r = run_command(hosts.select("ok1"), cmd("printf '%%s' %s", nasty), farm.options())
    assert r["ok1"].value.stdout == nasty
    assert not Path("/tmp/gpufleet-pwned").exists()


def test_a_bug_in_one_host_task_is_an_error_not_a_crash(farm, hosts):
    def task(t):
        if t.host.name == "ok1":
            raise KeyError("boom")
        return t.run("echo ok").stdout

    r = run_fleet(hosts.select("ok1,ok2"), task, farm.options())
    assert r["ok1"].state is HostState.ERROR and "KeyError" in r["ok1"].message
    assert r["ok2"].value == "ok\n"


def test_forks_bound_the_parallelism():
    inv = parse_inventory(
        "all:\n  hosts:\n" + "".join(f"    h{i}: {{ansible_connection: local}}\n" for i in range(6)), "local.yaml"
    )
    lock, running, peak = threading.Lock(), [0], [0]

    def task(t):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        t.run("sleep 0.3")
        with lock:
            running[0] -= 1
        return t.host.name

    from fleet.transport import SshOptions

    r = run_fleet(inv.select("all"), task, SshOptions(forks=2))
    assert [x.value for x in r] == [f"h{i}" for i in range(6)]  # inventory order
    assert peak[0] == 2


def test_finish_runs_on_the_collecting_thread_after_the_worker_is_free_and_its_error_is_that_hosts():
    """``finish`` (the audit's analysis) turns each ok host's value into its result on the thread that collects
    results, not on the worker, which has already gone on to its next host; a host whose work failed is never
    finished; a bug in ``finish`` is that host's ``error``, the others keep their results."""
    from fleet.transport import SshOptions

    inv = parse_inventory(
        "all:\n  hosts:\n" + "".join(f"    h{i}: {{ansible_connection: local}}\n" for i in range(4)), "local.yaml"
    )
    workers, finishers = set(), set()

    def task(t):
        workers.add(threading.current_thread().name)
        r = t.run("echo $((6 * 7))" if t.host.name != "h2" else "exit 3")
        if r.exit_code:
            raise TaskFailed(f"exited {r.exit_code}")
        return r.stdout

    def finish(host, out):
        finishers.add(threading.current_thread().name)
        if host.name == "h3":
            raise ValueError("garbled")
        return {"host": host.name, "answer": int(out)}

    r = run_fleet(inv.select("all"), task, SshOptions(forks=2), finish=finish)
    assert [x.state for x in r] == [HostState.OK, HostState.OK, HostState.FAILED, HostState.ERROR]
    assert r["h0"].value == {"host": "h0", "answer": 42} and r["h1"].value == {"host": "h1", "answer": 42}
    assert r["h2"].message == "exited 3" and r["h2"].value is None
    assert r["h3"].message == "ValueError: garbled" and r["h3"].value is None and r["h3"].duration_s > 0
    assert finishers == {threading.current_thread().name} and finishers.isdisjoint(workers)


def test_local_transport_runs_in_home_and_times_out():
    from fleet.transport import SshOptions

    inv = parse_inventory("all:\n  hosts:\n    me: {ansible_connection: local}\n", "l.yaml")
    r = run_fleet(inv.select("me"), lambda t: t.run("pwd; cat", stdin="piped"), SshOptions())
    assert r["me"].value.stdout == f"{Path.home()}\npiped"
    r = run_fleet(inv.select("me"), lambda t: t.run("sleep 20", timeout=0.5), SshOptions())
    assert r["me"].state is HostState.TIMED_OUT


def test_a_host_that_cannot_even_be_set_up_is_an_error_and_the_others_are_kept(farm, hosts, tmp_path):
    """A broken ~/.ssh/config fails each SSH host on its own; the local host still runs."""
    import yaml

    doc = {"all": {"hosts": {"ok1": dict(farm.hosts["ok1"].vars), "me": {"ansible_connection": "local"}}}}
    inv = parse_inventory(yaml.safe_dump(doc), "mixed.yaml")
    r = run_command(inv.select("all"), "echo fine", farm.options(ssh_config=str(tmp_path / "missing-ssh-config")))
    assert r["ok1"].state is HostState.ERROR and "missing-ssh-config" in r["ok1"].message
    assert r["me"].state is HostState.OK and r["me"].value.stdout == "fine\n"


def test_ctrl_c_stops_live_hosts_abandons_a_stuck_one_and_starts_no_new_one(monkeypatch):
    """SIGINT into run_fleet: stop() reaches every host at work, the finished keep their result, a host that
    ignores its stop is abandoned after the grace period, hosts not yet started are never started."""
    import os
    import signal

    import fleet.fanout as fanout
    from fleet.transport import SshOptions

    monkeypatch.setattr(fanout, "STOP_GRACE_S", 1.0)
    # as at a terminal, even when this suite runs with SIGINT ignored (a background job of a non-interactive shell)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    inv = parse_inventory("all:\n  hosts:\n" + "".join(f"    h{i}: {{ansible_connection: local}}\n" for i in range(5)),
                          "local.yaml")
    released = {f"h{i}": threading.Event() for i in range(5)}
    started, stopped = [], []

    def task(t):
        started.append(t.host.name)
        if t.host.name == "h0":
            return "quick"
        if t.host.name == "h1":
            threading.Event().wait(30)  # ignores its stop
        released[t.host.name].wait(30)
        return "stopped work"

    def stop(t):
        stopped.append(t.host.name)
        released[t.host.name].set()

    threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGINT)).start()
    try:
        r = run_fleet(inv.select("all"), task, SshOptions(forks=3), progress=False, stop=stop)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert r.interrupted is True
    assert r["h0"].state is HostState.OK and r["h0"].value == "quick"
    assert sorted(stopped) == ["h1", "h2", "h3"]   # the three at work when Ctrl-C came (forks=3, h0 done)
    assert r["h2"].state is HostState.INTERRUPTED and r["h2"].value == "stopped work"  # its partial result kept
    assert r["h1"].state is HostState.INTERRUPTED and r["h1"].message == "interrupted (Ctrl-C) before it finished"
    assert r["h4"].state is HostState.INTERRUPTED and "h4" not in started
