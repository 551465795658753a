"""Run one piece of work on many hosts in parallel, bounded, and record every host's outcome.

Every host ends in exactly one :class:`fleet.outcome.HostState`.  One host's failure never
aborts the others or loses their results.
"""

from __future__ import annotations

import dataclasses
import queue
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from fleet.inventory import Host
from fleet.outcome import HostError, HostState, Interrupted, TaskFailed
from fleet.progress import Progress
from fleet.transport import CommandResult, SshOptions, Transport, connect

__all__ = ["FleetResult", "HostError", "HostResult", "HostState", "TaskFailed", "run_command", "run_fleet"]


@dataclass
class HostResult:
    host: Host
    state: HostState
    value: Any = None
    message: str = ""
    duration_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.state is HostState.OK


@dataclass
class FleetResult:
    results: dict[str, HostResult] = field(default_factory=dict)
    interrupted: bool = False  # the operator stopped the run (Ctrl-C)

    @property
    def succeeded(self) -> dict[str, HostResult]:
        return {n: r for n, r in self.results.items() if r.ok}

    @property
    def failed(self) -> dict[str, HostResult]:
        return {n: r for n, r in self.results.items() if not r.ok}

    def __getitem__(self, name: str) -> HostResult:
        return self.results[name]

    def __iter__(self):
        return iter(self.results.values())


Task = Callable[[Transport], Any]
Stop = Callable[[Transport], None]  # stops a host's remote work (on Ctrl-C); must be quick and bounded
Finish = Callable[[Host, Any], Any]  # a host's remote result -> its value (pure: no connection, no I/O)

STOP_GRACE_S = 10.0  # after Ctrl-C: how long the hosts' work may take to wind down before it is abandoned


class _Live:
    """The transports of the hosts being worked on, so an interrupt can stop and close them."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.transports: dict[str, Transport] = {}
        self.begun: set[str] = set()  # hosts whose work has started (a result will come, or the grace ends)
        self.interrupted = threading.Event()

    def add(self, t: Transport) -> None:
        with self.lock:
            self.transports[t.host.name] = t

    def remove(self, t: Transport) -> None:
        with self.lock:
            self.transports.pop(t.host.name, None)

    def snapshot(self) -> list:
        with self.lock:
            return list(self.transports.values())


def _run_one(host: Host, task: Task, options: SshOptions, live: _Live, progress: Progress) -> HostResult:
    start = time.monotonic()
    transport = None
    progress.stage(host.name, "connecting")
    try:
        if live.interrupted.is_set():
            raise Interrupted("the run was interrupted before this host started")
        transport = connect(host, options)  # inside the try: a bad ssh config is this host's error, not a crash
        live.add(transport)
        value = task(transport)
        state, message = HostState.OK, ""
        if live.interrupted.is_set():  # it returned because the interrupt stopped its work: not a result
            state, message = HostState.INTERRUPTED, "stopped"
    except HostError as e:  # carries the partial result it interrupted
        value, state, message = e.partial, HostState(e.state), str(e)
    except Exception as e:  # noqa: BLE001 - one host's bug must not lose the others
        value, state, message = None, HostState.ERROR, f"{type(e).__name__}: {e}"
    finally:
        if transport is not None:
            live.remove(transport)
            try:
                transport.close()
            except Exception:  # noqa: BLE001 - closing a broken connection is not news
                pass
    if live.interrupted.is_set() and state is not HostState.OK:
        state, message = HostState.INTERRUPTED, f"interrupted (Ctrl-C) before it finished: {message}"
    progress.done(host.name, state.value, message)
    return HostResult(host, state, value, message, time.monotonic() - start)


def _stop_all(live: _Live, stop: Stop | None) -> None:
    """Stop every live host's remote work (in parallel, bounded), then close its connection."""

    def one(t: Transport) -> None:
        try:
            if stop is not None:
                stop(t)
        except Exception:  # noqa: BLE001 - best effort: the connection is closed next anyway
            pass
        try:
            t.close()
        except Exception:  # noqa: BLE001
            pass

    threads = [threading.Thread(target=one, args=(t,), daemon=True) for t in live.snapshot()]
    for th in threads:
        th.start()
    deadline = time.monotonic() + STOP_GRACE_S
    for th in threads:
        th.join(max(0.0, deadline - time.monotonic()))


def run_fleet(
    hosts: Iterable[Host],
    task: Task,
    options: SshOptions,
    desc: str = "hosts",
    progress: Progress | bool | None = None,
    stop: Stop | None = None,
    finish: Finish | None = None,
) -> FleetResult:
    """Run ``task(transport)`` on every host, at most ``options.forks`` at a time.

    ``finish(host, value)``, when given, turns an ``ok`` host's value into its result on the thread that
    collects results (the audit's analysis of its gather output): a worker starts its next host as soon as
    the remote work of the last one ended.  An error in ``finish`` is that host's (``error``), as one in the
    task is.

    Results come back in inventory order.  ``progress``: a :class:`Progress` the
    tasks also report their stages to, or None/True/False for
    :meth:`Progress.auto`.  On Ctrl-C (KeyboardInterrupt), ``stop(transport)``
    is called for every host still working, their connections are closed, the
    hosts that finish within :data:`STOP_GRACE_S` keep their result, the others
    are ``interrupted``, and the result says ``interrupted``.
    """
    hosts = list(hosts)
    if not isinstance(progress, Progress):
        progress = Progress.auto(desc, [h.name for h in hosts], progress)
    live = _Live()
    todo: queue.SimpleQueue = queue.SimpleQueue()
    results: queue.SimpleQueue = queue.SimpleQueue()
    for h in hosts:
        todo.put(h)

    def worker() -> None:
        while not live.interrupted.is_set():
            try:
                host = todo.get_nowait()
            except queue.Empty:
                return
            with live.lock:
                if live.interrupted.is_set():
                    return
                live.begun.add(host.name)
            results.put(_run_one(host, task, options, live, progress))

    # Daemon threads, at most ``forks``: after Ctrl-C a host stuck past the grace period is abandoned
    # (recorded ``interrupted``) and can never hold the process open.
    for _ in range(max(1, min(options.forks, len(hosts)))):
        threading.Thread(target=worker, name=f"gpufleet-{desc}", daemon=True).start()
    done: dict[str, HostResult] = {}
    try:
        while len(done) < len(hosts):
            try:
                r = results.get(timeout=1.0)
                done[r.host.name] = _finished(r, finish)
            except queue.Empty:
                pass
            progress.tick()
    except KeyboardInterrupt:
        with live.lock:
            live.interrupted.set()
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if _main_thread() else None
        try:
            _stop_all(live, stop)
            deadline = time.monotonic() + STOP_GRACE_S
            while time.monotonic() < deadline and live.begun - set(done):
                try:
                    r = results.get(timeout=0.2)
                    done[r.host.name] = _finished(r, finish)
                except queue.Empty:
                    pass
        finally:
            if previous is not None:
                signal.signal(signal.SIGINT, previous)
    finally:
        progress.close()
    for h in hosts:
        if h.name not in done:
            done[h.name] = HostResult(h, HostState.INTERRUPTED, None, "interrupted (Ctrl-C) before it finished")
    return FleetResult({h.name: done[h.name] for h in hosts}, interrupted=live.interrupted.is_set())


def _finished(r: HostResult, finish: Finish | None) -> HostResult:
    """``r`` with ``finish`` applied to its value (an ``ok`` host only); its error is that host's."""
    if finish is None or not r.ok:
        return r
    try:
        return dataclasses.replace(r, value=finish(r.host, r.value))
    except HostError as e:
        return HostResult(r.host, HostState(e.state), e.partial, str(e), r.duration_s)
    except Exception as e:  # noqa: BLE001 - one host's bug must not lose the others
        return HostResult(r.host, HostState.ERROR, None, f"{type(e).__name__}: {e}", r.duration_s)


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def run_command(hosts: Iterable[Host], command: str, options: SshOptions, **kw) -> FleetResult:
    """The simplest task: one shell command; a non-zero exit is FAILED (with its output kept)."""

    def task(t: Transport) -> CommandResult:
        r = t.run(command)
        if not r.ok:
            raise TaskFailed(f"exit status {r.exit_code}: {r.tail(5)}", r)
        return r

    return run_fleet(hosts, task, options, **kw)
