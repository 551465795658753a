"""Run one piece of work on many hosts in parallel, bounded, and record every host's outcome.

Every host ends in exactly one :class:`HostState`.  One host's failure never
aborts the others or loses their results.
"""

from __future__ import annotations

import enum
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from tqdm import tqdm

from fleet.inventory import Host
from fleet.transport import CommandResult, HostError, SshOptions, Transport, connect


class HostState(str, enum.Enum):
    OK = "ok"
    FAILED = "failed"  # reached and ran, but the work failed (non-zero exit, bad output)
    UNREACHABLE = "unreachable"  # refused, DNS, connect/banner timeout, connection lost
    AUTH_FAILED = "auth_failed"
    HOST_KEY_REJECTED = "host_key_rejected"
    TIMED_OUT = "timed_out"  # connected, but the command outlived its timeout
    ERROR = "error"  # a bug or an unexpected condition on the controller side

    def __str__(self) -> str:  # pragma: no cover - cosmetic
        return self.value


class TaskFailed(Exception):
    """Raised by a task to record FAILED while keeping the partial value it produced."""

    def __init__(self, message: str, value: Any = None):
        super().__init__(message)
        self.value = value


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


def _run_one(host: Host, task: Task, options: SshOptions) -> HostResult:
    start = time.monotonic()
    transport = None
    try:
        transport = connect(host, options)  # inside the try: a bad ssh config is this host's error, not a crash
        value = task(transport)
        state, message = HostState.OK, ""
    except TaskFailed as e:
        value, state, message = e.value, HostState.FAILED, str(e)
    except HostError as e:  # may carry the partial result it interrupted
        value, state, message = getattr(e, "partial", None), HostState(e.state), str(e)
    except Exception as e:  # noqa: BLE001 - one host's bug must not lose the others
        value, state, message = None, HostState.ERROR, f"{type(e).__name__}: {e}"
    finally:
        try:
            if transport is not None:
                transport.close()
        except Exception:  # noqa: BLE001
            pass
    return HostResult(host, state, value, message, time.monotonic() - start)


def run_fleet(
    hosts: Iterable[Host],
    task: Task,
    options: SshOptions,
    desc: str = "hosts",
    progress: bool | None = None,
) -> FleetResult:
    """Run ``task(transport)`` on every host, at most ``options.forks`` at a time.

    Results come back in inventory order.  ``progress=None`` shows a tqdm bar only
    when stderr is a terminal.
    """
    hosts = list(hosts)
    if progress is None:
        progress = sys.stderr.isatty()
    done: dict[str, HostResult] = {}
    if hosts:
        with ThreadPoolExecutor(max_workers=max(1, min(options.forks, len(hosts)))) as pool:
            futures = {pool.submit(_run_one, h, task, options): h for h in hosts}
            with tqdm(total=len(hosts), desc=desc, unit="host", disable=not progress, file=sys.stderr) as bar:
                for fut in as_completed(futures):
                    r = fut.result()
                    done[r.host.name] = r
                    bar.update(1)
                    if not r.ok:
                        bar.set_postfix_str(f"{r.host.name}: {r.state.value}", refresh=False)
    return FleetResult({h.name: done[h.name] for h in hosts})


def run_command(hosts: Iterable[Host], command: str, options: SshOptions, **kw) -> FleetResult:
    """The simplest task: one shell command; a non-zero exit is FAILED (with its output kept)."""

    def task(t: Transport) -> CommandResult:
        r = t.run(command)
        if not r.ok:
            raise TaskFailed(f"exit status {r.exit_code}: {r.tail(5)}", r)
        return r

    return run_fleet(hosts, task, options, **kw)
