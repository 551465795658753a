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


def become(command: str, with_password: bool = False) -> str:
    """Wrap a command for sudo.

    Without a password: ``sudo -n`` (fails at once, never prompts).  With one, the
    password is fed on stdin (never on the command line) and read by ``sudo -S``
    only when sudo asks for it: a NOPASSWD or cached sudo runs the command with
    stdin from /dev/null, so the password can never reach the command.
    """
    inner = "sh -c " + quote(command)
    if not with_password:
        return f"sudo -n -- {inner}"
    return (f"if sudo -n true 2>/dev/null; then sudo -n -- {inner} </dev/null; "
            f"else sudo -S -p '' -- {inner}; fi")


def script(text: str) -> str:
    """A whole POSIX sh script as one command line (``sh -c '<script>'``).

    Passed as an argument rather than on stdin, so a script that exits early
    never leaves the controller writing into a closed channel.
    """
    return "sh -c " + quote(text)
