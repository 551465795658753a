"""The sudo (become) password: read once, never echoed, never logged, never written anywhere.

It travels only in ``SshOptions.sudo_password`` (``repr=False``), and the transport
feeds it to ``sudo -S`` on stdin, never on a command line.  A host with a become
password of its own in the inventory (``ansible_become_password`` /
``ansible_become_pass`` / ``ansible_sudo_pass``) uses that one instead, and is never
the reason for a prompt.  As a last line of defence, :class:`Scrubber` replaces
every secret (the sudo password, the hosts' SSH and become passwords) in every
string of a report before the report is printed or written.
"""

from __future__ import annotations

import getpass
import os
import sys
from typing import Any, Callable, Iterable, Mapping

from fleet.inventory import Host
from provision.settings import mask_credentials

ENV = "GPUFLEET_BECOME_PASSWORD"
PROMPT = "BECOME (sudo) password, Enter if none is needed: "


def needs_become(hosts: Iterable[Host]) -> bool:
    """Some host will run commands through sudo (ansible_become and not connecting as root)
    without a become password of its own in the inventory."""
    hosts = [h for h in hosts if not h.become_password]
    return any(h.become and h.user != "root" for h in hosts if not h.is_local) or \
        any(h.become for h in hosts if h.is_local and os.geteuid() != 0)


def become_password(hosts: Iterable[Host], environ: Mapping[str, str] | None = None,
                    prompt: Callable[[str], str] = getpass.getpass, interactive: bool | None = None) -> str | None:
    """``$GPUFLEET_BECOME_PASSWORD`` if set, else one no-echo prompt when on a terminal, else None.

    Asked only when a selected host uses sudo.  None means "no password" (NOPASSWD sudo);
    a host whose sudo wants one then fails with a message saying how to give it.
    """
    if not needs_become(list(hosts)):
        return None
    environ = os.environ if environ is None else environ
    if ENV in environ:
        return environ[ENV] or None
    if interactive is None:
        interactive = sys.stdin.isatty()
    if not interactive:
        return None
    return prompt(PROMPT) or None


def secrets_of(hosts: Iterable[Host]) -> list[str]:
    """Every password the inventory gives these hosts (SSH and become), for :class:`Scrubber`."""
    return [s for h in hosts for s in h.secrets]


class Scrubber:
    """Replaces the secrets, and any password in a URL, in every string of a nested structure.

    ``secret``: one secret, or several (None entries are skipped); secrets shorter than 3
    characters are not masked (they would mangle every word that contains them)."""

    MASK = "********"

    def __init__(self, secret: str | Iterable[str | None] | None):
        secrets = [secret] if isinstance(secret, str) or secret is None else list(secret)
        # longest first: a secret containing another is masked whole
        self.secrets = sorted({s for s in secrets if s and len(s) >= 3}, key=len, reverse=True)

    @property
    def secret(self) -> str | None:
        """The first (longest) secret; kept for callers of the one-secret form."""
        return self.secrets[0] if self.secrets else None

    def text(self, value: str) -> str:
        value = mask_credentials(value)
        for secret in self.secrets:
            value = value.replace(secret, self.MASK)
        return value

    def __call__(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self(k): self(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(self(v) for v in value)
        return value
