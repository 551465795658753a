"""One audit fact as a unit, pyinfra's way: the command the node runs and the pure parser of its output.

A :class:`Fact` is declared in the module of the thing it looks at (``FACT = Fact(...)``), and
:data:`fleet.audit.facts.FACTS` lists them in the order the gather script runs them.  The gather
script (:mod:`fleet.audit.script`) is generated from that list; the analysis
(:func:`fleet.audit.facts.host.host_facts`) feeds each section of the script's output to its
fact's ``parse``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

from fleet.framing import Section

Parse = Callable[[Section], dict]


@dataclass(frozen=True)
class Fact:
    """``name``: the section's name in the framed output (``[a-z0-9-]+``).

    ``command``: POSIX sh the node runs, no root needed; its stdout, stderr and exit status are
    recorded.  One line: a simple command (``lspci -nn``), run under ``timeout`` seconds when
    ``timeout`` is set (a missing program then exits 127 with ``<program>: not found`` on stderr).
    Several lines: the body of a shell function (no ``timeout``).

    ``parse``: pure; the recorded :class:`~fleet.framing.Section` -> ``{HostFacts field: value}``.
    Never raises on odd output: a failure is itself a fact (an ``*_error`` field).  ``None``
    values set nothing, and a field an earlier fact in :data:`~fleet.audit.facts.FACTS` has set
    is kept (a list field, ``notes``, is extended): the order is the precedence.

    ``when``: a sh condition; the fact runs only when it holds (see :func:`succeeded`,
    :func:`failed`, :func:`have`).  ``absent``: the section the parser is given when the output
    has none (the fact did not run); ``None``: the fact then contributes nothing.

    ``grep``: a fixed string, or a tuple of them; only the output lines holding one leave the node (a
    kernel log is large), while the exit status stays the command's own.
    """

    name: str
    command: str
    parse: Parse
    timeout: int | None = None
    when: str | None = None
    absent: Section | None = None
    grep: str | tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", self.name):
            raise ValueError(f"fact name {self.name!r}: lowercase words joined by '-'")
        if self.timeout is not None and "\n" in self.command.strip():
            raise ValueError(f"fact {self.name}: a timeout needs a one-line command")
        patterns = (self.grep,) if isinstance(self.grep, str) else self.grep or ()
        if any(not p or "\n" in p for p in patterns):
            raise ValueError(f"fact {self.name}: grep strings must be non-empty single lines")

    @property
    def ident(self) -> str:
        """The name as a shell identifier part: ``nvidia-smi`` -> ``nvidia_smi``."""
        return self.name.replace("-", "_")


def succeeded(name: str) -> str:
    """sh condition: the fact ``name`` (earlier in the list) ran and exited 0."""
    return f'[ "${{_gf_rc_{name.replace("-", "_")}:-none}}" = 0 ]'


def failed(name: str) -> str:
    """sh condition: the fact ``name`` (earlier in the list) ran and exited non-zero."""
    return f'[ "${{_gf_rc_{name.replace("-", "_")}:-0}}" != 0 ]'


def have(program: str) -> str:
    """sh condition: ``program`` is on PATH."""
    if not re.fullmatch(r"[A-Za-z0-9._+-]+", program):
        raise ValueError(f"not a program name: {program!r}")
    return f"_gf_have {program}"


def first_line(text: str) -> str:
    """The first non-blank line, stripped, at most 200 characters (for error messages)."""
    for line in text.splitlines():
        if line.strip():
            return line.strip()[:200]
    return ""


def missing_or_failed(what: str, s: Section, hint: str = "") -> str:
    """``"<what> not installed<hint>"`` for exit 127, else ``"<what> failed (exit N): <stderr>"``."""
    if s.rc == 127:
        return f"{what} not installed{hint}"
    return f"{what} failed (exit {s.rc}): {first_line(s.stderr)}"
