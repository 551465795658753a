"""The one-round-trip gather script, generated from the fact units (:data:`fleet.audit.facts.FACTS`).

POSIX sh (dash-safe); needs no root; every command is optional and its exit status recorded; the
kernel log is filtered on the node; the script always exits 0.  It prints::

    @@gpufleet-audit 1@@
    @@gpufleet-begin <name>@@
    |<stdout line>          every payload line is prefixed with "|", so no payload can forge a marker
    @@gpufleet-stderr <name>@@
    |<stderr line>
    @@gpufleet-end <name> rc=<N>@@
    ...
    @@gpufleet-done@@

The framing functions are :func:`fleet.framing.sh_prelude`'s (shared with provisioning's scripts).
"""

from __future__ import annotations

import re
from typing import Iterable

from fleet.audit.facts import FACTS, Fact
from fleet.framing import sh_prelude
from fleet.shell import quote

PREFIX = "gpufleet"
HEADER = "@@gpufleet-audit 1@@"

_HELPERS = r"""
_gf_timeout=""
_gf_have timeout && _gf_timeout="timeout"

# _gf_opt SECONDS COMMAND...: COMMAND under timeout if available; 127 with a message if missing.
_gf_opt() {
    _gf_secs=$1; shift
    if ! _gf_have "$1"; then
        echo "$1: not found" >&2
        return 127
    fi
    if [ -n "$_gf_timeout" ]; then
        timeout "$_gf_secs" "$@"
    else
        "$@"
    fi
}

# _gf_grep TEXTS COMMAND...: the lines of COMMAND's output holding one of TEXTS (newline-separated fixed
# strings, grep -F's pattern list); COMMAND's own exit status.
_gf_grep() {
    _gf_pat=$1; shift
    if [ -z "$_gf_tmp" ]; then "$@" | grep -F -e "$_gf_pat"; return 0; fi
    "$@" >"$_gf_tmp/log"
    _gf_lrc=$?
    grep -F -e "$_gf_pat" "$_gf_tmp/log"
    rm -f "$_gf_tmp/log"
    return $_gf_lrc
}
"""


def _run_line(fact: Fact) -> tuple[str, str]:
    """(function definition or "", the line running the fact and recording its exit status)."""
    definition = ""
    command = fact.command.strip()
    if "\n" in command:
        definition = f"_gf_fact_{fact.ident}() {{\n" + "".join(f"    {line}\n" for line in command.splitlines()) + "}\n"
        command = f"_gf_fact_{fact.ident}"
    elif fact.timeout is not None:
        command = f"_gf_opt {fact.timeout} {command}"
    if fact.grep is not None:
        patterns = (fact.grep,) if isinstance(fact.grep, str) else fact.grep
        command = f"_gf_grep {quote(chr(10).join(patterns))} {command}"
    line = f"_gf_run {fact.name} {command}; _gf_rc_{fact.ident}=$_gf_rc"
    if fact.when:
        line = f"if {fact.when}; then {line}; fi"
    return definition, line


def gather_script(facts: Iterable[Fact] = FACTS) -> str:
    """The gather script: the shared prelude, then one ``_gf_run NAME ...`` line per fact, in order."""
    definitions, lines, seen = [], [], set()
    for fact in facts:
        if fact.ident in seen:
            raise ValueError(f"fact {fact.name} listed twice")
        for ref in re.findall(r"_gf_rc_(\w+)", fact.when or ""):
            if ref not in seen:
                raise ValueError(f"fact {fact.name}: its condition looks at {ref!r}, which is not an earlier fact")
        seen.add(fact.ident)
        definition, line = _run_line(fact)
        if definition:
            definitions.append(definition)
        lines.append(line)
    return ("#!/bin/sh\n"
            "# gpufleet audit: gather a GPU node's facts in one round trip.  POSIX sh (dash-safe); needs no root;\n"
            "# every command is optional and its exit status is recorded; the script itself always exits 0.\n"
            + sh_prelude("_gf", PREFIX) + _HELPERS + "\n" + "".join(definitions)
            + f"\necho '{HEADER}'\n" + "\n".join(lines) + "\necho '@@gpufleet-done@@'\nexit 0\n")


AUDIT_SCRIPT = gather_script()
