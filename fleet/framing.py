"""Framed script output: many commands' stdout, stderr and exit status in one round trip.

The node-side scripts (the audit's gather script, provisioning's fact script)
print, for each command::

    @@<prefix>-begin <name>@@
    |<stdout line>          every payload line is prefixed with "|", so no payload can forge a marker
    @@<prefix>-stderr <name>@@
    |<stderr line>
    @@<prefix>-end <name> rc=<N>@@

between a header line and ``@@<prefix>-done@@``.  Each payload carries one extra
trailing newline, which :func:`split_sections` absorbs, so the captured text
round-trips exactly.  Text before the header (a noisy login shell) is ignored;
anything malformed after it raises the caller's error class.
"""

from __future__ import annotations

import re
from typing import NamedTuple


class FramingError(ValueError):
    """Framed output is truncated or garbled."""


class Section(NamedTuple):
    stdout: str
    stderr: str
    rc: int


def split_sections(output: str, header: str, prefix: str, error: type[ValueError] = FramingError,
                   what: str = "framed") -> dict[str, Section]:
    """Framed output -> ``{name: Section(stdout, stderr, rc)}``; raises ``error`` naming the line."""
    begin = re.compile(rf"^@@{re.escape(prefix)}-begin (?P<name>[a-z0-9-]+)@@$")
    err = re.compile(rf"^@@{re.escape(prefix)}-stderr (?P<name>[a-z0-9-]+)@@$")
    end = re.compile(rf"^@@{re.escape(prefix)}-end (?P<name>[a-z0-9-]+) rc=(?P<rc>-?\d+)@@$")
    done = f"@@{prefix}-done@@"
    lines = output.replace("\r\n", "\n").split("\n")
    try:
        pos = lines.index(header) + 1
    except ValueError:
        raise error(f"no {header} header in the output: not gpufleet {what} output (starts {output[:80]!r})") from None
    sections: dict[str, Section] = {}

    def payload(name: str, stop: re.Pattern) -> tuple[str, re.Match]:
        nonlocal pos
        body = []
        while pos < len(lines):
            line = lines[pos]
            pos += 1
            if line.startswith("|"):
                body.append(line[1:])
                continue
            m = stop.match(line)
            if m and m["name"] == name:
                if not body:
                    raise error(f"section {name!r}: payload lost its framing newline (line {pos})")
                return "\n".join(body), m
            raise error(f"section {name!r}: unexpected line {pos}: {line[:80]!r}")
        raise error(f"output truncated inside section {name!r}")

    while True:
        if pos >= len(lines):
            raise error(f"output truncated: no {done} marker after sections {sorted(sections)}")
        line = lines[pos]
        pos += 1
        if line == done:
            return sections
        m = begin.match(line)
        if not m:
            raise error(f"expected a section start at line {pos}, got {line[:80]!r}")
        name = m["name"]
        if name in sections:
            raise error(f"section {name!r} appears twice")
        stdout, _ = payload(name, err)
        stderr, stop = payload(name, end)
        sections[name] = Section(stdout, stderr, int(stop["rc"]))
