"""What a long fan-out shows while it works: each host's stage, live.

On a terminal, a tqdm bar counts finished hosts and its postfix names what the
others are doing (``gpu-a1 running 2m10s``; with many hosts, how many are in
each stage).  Without a terminal (cron, CI, ``| tee``), one line per host and
stage change, with the time since the start, so a log shows where a run is.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Callable, Iterable, Optional, TextIO

from tqdm import tqdm

from fleet.outcome import plural

Stage = Callable[[str, str], None]  # (host, stage): what a task calls to say what it is doing

MAX_NAMED = 4  # hosts named one by one in the terminal line; beyond, counts per stage


def _elapsed(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class Progress:
    """Thread-safe per-host stages.  ``mode``: ``tty`` (a live bar), ``lines`` (a line per change) or ``off``."""

    def __init__(self, desc: str, hosts: Iterable[str], mode: str = "off", stream: Optional[TextIO] = None,
                 clock: Callable[[], float] = time.monotonic):
        if mode not in ("tty", "lines", "off"):
            raise ValueError(f"progress mode {mode!r}")
        self.desc = desc
        self.mode = mode
        self.stream = stream or sys.stderr
        self.clock = clock
        self.start = clock()
        self.total = len(list(hosts))
        self._lock = threading.Lock()
        self._active: dict[str, tuple[str, float]] = {}  # host -> (stage, since)
        self._finished = 0
        self._bar = (tqdm(total=self.total, desc=desc, unit="host", file=self.stream, dynamic_ncols=True,
                          bar_format="{desc}: {n_fmt}/{total_fmt} hosts done [{elapsed}] {postfix}")
                     if mode == "tty" else None)

    @classmethod
    def auto(cls, desc: str, hosts: Iterable[str], enabled: Optional[bool] = None) -> "Progress":
        """``enabled``: None picks a bar on a terminal and lines otherwise; False shows nothing; True a bar."""
        if enabled is False:
            return cls(desc, hosts, "off")
        tty = sys.stderr.isatty()
        return cls(desc, hosts, "tty" if (enabled or tty) and tty else "lines")

    def stage(self, host: str, stage: str) -> None:
        with self._lock:
            self._active[host] = (stage, self.clock())
            self._line(f"{host}: {stage}")
            self._refresh()

    def done(self, host: str, state: str, message: str = "") -> None:
        with self._lock:
            self._active.pop(host, None)
            self._finished += 1
            tail = f" ({message.splitlines()[0][:120]})" if message and state != "ok" else ""
            self._line(f"{host}: {state}{tail}")
            if self._bar is not None:
                self._bar.update(1)
            self._refresh()

    def tick(self) -> None:
        """Refresh the terminal line (elapsed times move even when no stage changes)."""
        with self._lock:
            self._refresh()

    def close(self) -> None:
        with self._lock:
            if self._bar is not None:
                self._bar.close()
                self._bar = None

    def postfix(self) -> str:
        """The terminal line's text: each active host's stage and time in it, or counts per stage."""
        now = self.clock()
        if len(self._active) <= MAX_NAMED:
            return ", ".join(f"{h} {s} {_elapsed(now - since)}" for h, (s, since) in sorted(self._active.items()))
        counts: dict[str, int] = {}
        for s, _ in self._active.values():
            counts[s] = counts.get(s, 0) + 1
        longest = min(since for _, since in self._active.values())
        return ", ".join(f"{plural(n, 'host')} {s}" for s, n in sorted(counts.items())) + \
            f" (longest {_elapsed(now - longest)})"

    def _line(self, text: str) -> None:
        if self.mode == "lines":
            print(f"[{self.desc} {_elapsed(self.clock() - self.start):>6}] {text}", file=self.stream, flush=True)

    def _refresh(self) -> None:
        if self._bar is not None:
            self._bar.set_postfix_str(self.postfix(), refresh=True)
