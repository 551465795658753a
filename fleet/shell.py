"""Quoting is part of the API: every value that reaches a remote shell goes through here."""

from __future__ import annotations

import shlex
from typing import Any


def quote(value: Any) -> str:
    return shlex.quote(str(value))


def cmd(template: str, *args: Any) -> str:
    """``cmd("ls -- %s", path)``: each ``%s`` receives one shell-quoted argument."""
    return template % tuple(quote(a) for a in args)


def join(argv: list[Any]) -> str:
    return " ".join(quote(a) for a in argv)


def become(command: str) -> str:
    """Wrap a command for sudo; the password (if any) is fed on stdin, never on the command line."""
    return "sudo -S -p '' -- sh -c %s" % quote(command)


def script(text: str) -> str:
    """A whole POSIX sh script as one command line (``sh -c '<script>'``).

    Passed as an argument rather than on stdin, so a script that exits early
    never leaves the controller writing into a closed channel.
    """
    return "sh -c " + quote(text)
