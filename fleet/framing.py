"""Framed script output: many commands' stdout, stderr and exit status in one round trip.

Both sides of the framing live here: :func:`sh_prelude` writes the POSIX sh
functions a node-side script (the audit's gather script, provisioning's fact and
validation scripts) frames its commands with, :func:`split_sections` reads their
output back, and :func:`frame` writes the same output from Python (recorded test
cases).  For each command the script prints::

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
from typing import Mapping, NamedTuple


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


def frame(sections: Mapping[str, Section], header: str, prefix: str) -> str:
    """``{name: Section}`` -> the framed output a script would print (the inverse of :func:`split_sections`)."""
    out = [header]
    for name, s in sections.items():
        out.append(f"@@{prefix}-begin {name}@@")
        out += ["|" + line for line in s.stdout.split("\n")]
        out.append(f"@@{prefix}-stderr {name}@@")
        out += ["|" + line for line in s.stderr.split("\n")]
        out.append(f"@@{prefix}-end {name} rc={s.rc}@@")
    out.append(f"@@{prefix}-done@@")
    return "\n".join(out) + "\n"


_SH_PRELUDE = r"""LC_ALL=C; export LC_ALL
PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"; export PATH
umask 077
@F@_tmp=$(mktemp -d 2>/dev/null) || @F@_tmp=""
if [ -z "$@F@_tmp" ]; then
    @F@_tmp="${TMPDIR:-/tmp}/gpufleet.$$"
    mkdir "$@F@_tmp" 2>/dev/null || @F@_tmp=""
fi
@STRICT@
[ -n "$@F@_tmp" ] && trap 'rm -rf "$@F@_tmp"' EXIT
trap 'exit @SIGNAL_RC@' INT TERM HUP

@F@_have() { command -v "$1" >/dev/null 2>&1; }

@F@_fast=""
@F@_have sed && @F@_have cat && @F@_fast=1

# @F@_prefix: stdin (ending in a newline) -> every line prefixed with "|".
@F@_prefix() {
    if [ -n "$@F@_fast" ]; then sed 's/^/|/'
    else while IFS= read -r @F@_l; do printf '|%s\n' "$@F@_l"; done
    fi
}

# @F@_frame FILE: FILE's content plus one extra newline, every line prefixed with "|".
@F@_frame() {
    if [ -n "$@F@_fast" ]; then { cat "$1"; echo; } | sed 's/^/|/'; return; fi
    @F@_nl=1  # without sed/cat: pure sh, noting whether the last line lacked its newline
    while :; do
        if IFS= read -r @F@_l; then printf '|%s\n' "$@F@_l"
        elif [ -n "$@F@_l" ]; then printf '|%s\n' "$@F@_l"; @F@_nl=0; break
        else break
        fi
    done <"$1"
    [ "$@F@_nl" = 1 ] && printf '|\n'
}

# @F@_run NAME COMMAND...: run COMMAND (stdin /dev/null), print its framed stdout, stderr and exit status.
@F@_run() {
    @F@_name=$1; shift
    printf '@@@M@-begin %s@@\n' "$@F@_name"
    if [ -n "$@F@_tmp" ]; then
        "$@" >"$@F@_tmp/out" 2>"$@F@_tmp/err" </dev/null
        @F@_rc=$?
        @F@_frame "$@F@_tmp/out"
        printf '@@@M@-stderr %s@@\n' "$@F@_name"
        @F@_frame "$@F@_tmp/err"
    else
        @F@_out=$("$@" 2>/dev/null </dev/null)
        @F@_rc=$?
        { printf '%s\n' "$@F@_out"; echo; } | @F@_prefix
        printf '@@@M@-stderr %s@@\n' "$@F@_name"
        printf '|gpufleet: no temporary directory, stderr not captured\n|\n'
    fi
    printf '@@@M@-end %s rc=%s@@\n' "$@F@_name" "$@F@_rc"
}
"""

_STRICT = ('exec </dev/null\n'
           '[ -n "$@F@_tmp" ] || { echo "gpufleet: cannot create a temporary directory (mktemp -d)" >&2; exit 3; }')


def sh_prelude(fn: str, prefix: str, *, strict: bool = False) -> str:
    """The POSIX sh (dash-safe) functions a framed script starts with.

    ``fn``: the shell names' prefix (``_gf``: ``_gf_run``, ``_gf_have``, ``$_gf_tmp``, ``$_gf_rc``...);
    ``prefix``: the marker prefix, as :func:`split_sections` takes it (``gpufleet`` ->
    ``@@gpufleet-begin NAME@@``).  ``NAME COMMAND...`` lines run through ``<fn>_run``; the commands
    may use the private temporary directory ``$<fn>_tmp``, removed on exit.

    Lenient (the default: the audit, which must always exit 0): without a temporary directory the
    script still runs, capturing stdout only, and a signal ends it with status 0; it may be read from
    stdin (``sh -s``).  ``strict``: stdin is closed for the whole script, no temporary directory
    exits 3 before anything runs, and a signal ends the script with status 1.
    """
    if not re.fullmatch(r"_[a-z]+", fn) or not re.fullmatch(r"[a-z0-9-]+", prefix):
        raise ValueError(f"bad shell prefix {fn!r} or marker prefix {prefix!r}")
    return (_SH_PRELUDE
            .replace("@STRICT@\n", _STRICT + "\n" if strict else "")
            .replace("@SIGNAL_RC@", "1" if strict else "0")
            .replace("@F@", fn)
            .replace("@M@", prefix))
