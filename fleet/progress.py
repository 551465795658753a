"""What a long fan-out shows while it works: each host's stage, live.

On a terminal, a tqdm bar counts finished hosts; its postfix says how they
ended (``2 ok, 1 unreachable``) and names what the others are doing
(``gpu-a1 running 2m10s``; with many hosts, how many are in each stage).
Without a terminal (cron, CI, ``| tee``), one line per host and stage change,
with the time since the start, and a heartbeat line at least every
:data:`HEARTBEAT_S` seconds naming what is still running, so a log shows where
a run is and that it is alive.
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
HEARTBEAT_S = 30.0  # without a terminal, the longest silence while hosts are still working
# How a host's work ended, in the words of the counts (fleet.outcome.HostState values; the rest count as "error").
OUTCOME_WORDS = {"ok": "ok", "failed": "failed", "unreachable": "unreachable", "auth_failed": "unreachable",
                 "host_key_rejected": "unreachable", "timed_out": "timed out", "interrupted": "interrupted"}
OUTCOME_ORDER = ("ok", "failed", "unreachable", "timed out", "interrupted", "error")


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
        self._outcomes: dict[str, int] = {}  # outcome word -> hosts that ended so
        self._last_line = self.start
        self._bar = (tqdm(total=self.total, desc=desc, unit="host", file=self.stream, dynamic_ncols=True,
                          bar_format="{desc}: {n_fmt}/{total_fmt} hosts finished [{elapsed}] {postfix}")
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
            word = OUTCOME_WORDS.get(state, "error")
            self._outcomes[word] = self._outcomes.get(word, 0) + 1
            tail = f" ({message.splitlines()[0][:120]})" if message and state != "ok" else ""
            self._line(f"{host}: {state}{tail}")
            if self._bar is not None:
                self._bar.update(1)
            self._refresh()

    def tick(self) -> None:
        """Refresh the terminal line (elapsed times move even when no stage changes); without a terminal, a
        heartbeat line when nothing was said for :data:`HEARTBEAT_S` seconds and hosts are still working."""
        with self._lock:
            self._refresh()
            if self.mode == "lines" and self._active and self.clock() - self._last_line >= HEARTBEAT_S:
                self._line(f"still running: {self._working()}; {self.outcomes()}")

    def outcomes(self) -> str:
        """How the finished hosts ended, e.g. ``2 ok, 1 unreachable`` (``none finished`` before the first)."""
        parts = [f"{self._outcomes[w]} {w}" for w in OUTCOME_ORDER if self._outcomes.get(w)]
        return ", ".join(parts) if parts else "none finished"

    def close(self) -> None:
        with self._lock:
            if self._bar is not None:
                self._bar.close()
                self._bar = None

    def postfix(self) -> str:
        """The terminal line's text: how the finished hosts ended, then what the others are doing."""
        parts = ([self.outcomes()] if self._finished else []) + ([self._working()] if self._active else [])
        return "; ".join(parts)

    def _working(self) -> str:
        """Each active host's stage and time in it, or counts per stage when many."""
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
            self._last_line = self.clock()
            print(f"[{self.desc} {_elapsed(self.clock() - self.start):>6}] {text}", file=self.stream, flush=True)

    def _refresh(self) -> None:
        if self._bar is not None:
            self._bar.set_postfix_str(self.postfix(), refresh=True)
