"""``gpufleet hosts``: the selected hosts as a table and as the ``gpufleet.hosts/1`` document (secrets masked).

Masked (shown as ``********``) -- values a reviewer would call secret, and nothing else:

* the connection passwords (``ansible_password``, ``ansible_ssh_pass``, ``ansible_ssh_password``, the become
  passwords), whatever their type except a boolean;
* vault-encrypted values, and any string holding a private key (``-----BEGIN ... PRIVATE KEY-----``);
* string values of variables named like a secret: the name's last word (split at ``_``, ``-``, ``.``) is
  ``password``, ``passwd``, ``pass``, ``passphrase``, ``secret``, ``token``, ``credentials``, ``apikey`` or
  ``key`` (``key`` only when no word of the name is ``public``/``pub``), plural or not: ``db_password``,
  ``api_token``, ``client_secret``, ``secret_key``.

Never masked: booleans and numbers (``kube_webhook_token_auth: false``), names whose secret word is not the
last (``token_ttl``, ``secret_name``, ``kolla_enable_keystone``), file names and paths (``..._file``,
``..._path``, values starting ``/``, ``~/`` or ``./``), public keys (``ssh-ed25519 AAAA...``), and Jinja
templates (``"{{ vault_db_password }}"`` only names the secret).  Masking is recursive into mappings; a list's
items are judged under the list's name.
"""

from __future__ import annotations

import re
from typing import Any

from fleet.inventory.connection import SECRET_VARS, Vaulted, connect_problem, host_key_warning, is_template
from fleet.inventory.model import Host
from fleet.outcome import plural

SCHEMA = "gpufleet.hosts/1"
MASK = "********"
SECRET_WORDS = frozenset({"password", "passwd", "pass", "passphrase", "secret", "token", "credentials", "apikey",
                          "key"})
_PUBLIC_WORDS = frozenset({"public", "pub"})
_WORDS = re.compile(r"[_.\-]+")
_PATH_PREFIXES = ("/", "~/", "./", "../")
_PUBLIC_KEY = re.compile(r"^(ssh-(rsa|dss|ed25519|ed448)|ecdsa-sha2-[a-z0-9]+|sk-[a-z0-9@.\-]+) [A-Za-z0-9+/=]+")
_PRIVATE_KEY = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")


def is_secret_name(name: Any) -> bool:
    """Whether a variable named ``name`` holds a secret when its value is a string (see the module's rule)."""
    n = str(name).lower()
    if n in SECRET_VARS:
        return True
    words = [w for w in _WORDS.split(n) if w]
    if not words:
        return False
    last = words[-1]
    last = last[:-1] if last.endswith("s") and last[:-1] in SECRET_WORDS else last
    if last not in SECRET_WORDS:
        return False
    return last != "key" or not _PUBLIC_WORDS & set(words)


def is_secret(name: Any, value: Any) -> bool:
    """Whether ``value``, held by a variable named ``name``, is shown as :data:`MASK`."""
    if isinstance(value, Vaulted):
        return True
    if value is None or value == "" or isinstance(value, bool) or is_template(value):
        return False
    if str(name).lower() in SECRET_VARS:
        return isinstance(value, (str, int, float))
    if not isinstance(value, str):
        return False
    if _PRIVATE_KEY.search(value):
        return True
    if not is_secret_name(name) or value.startswith(_PATH_PREFIXES) or _PUBLIC_KEY.match(value):
        return False
    return True


def mask(value: Any, name: Any = "") -> Any:
    if is_secret(name, value):
        return MASK
    if isinstance(value, dict):
        return {str(k): mask(v, k) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [mask(v, name) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def hosts_document(sources: list[str], pattern: str, hosts: list[Host]) -> dict:
    """``problem``: why gpufleet would refuse to connect to the host (:func:`~.connection.connect_problem`, the
    transport's own rule); ``warnings``: what the run ignores, once (:func:`~.connection.host_key_warning`)."""
    cache: dict = {}  # each distinct ssh arguments text parsed once
    warning = host_key_warning(hosts, cache)
    doc = {
        "schema": SCHEMA,
        "inventory": list(sources),
        "pattern": pattern,
        "hosts": {},
    }
    for h in hosts:
        why = connect_problem(h.name, h.vars, cache)
        doc["hosts"][h.name] = {
            "address": h.address,
            "port": h.port,
            "user": h.user,
            "groups": sorted(g for g in h.groups if g != "all"),
            "vars": {str(k): mask(v, k) for k, v in sorted(h.vars.items(), key=lambda kv: str(kv[0]))},
            **({"problem": why} if why else {}),
        }
    if warning:
        doc["warnings"] = [warning]
    return doc


def render_hosts(hosts: list[Host]) -> str:
    """One line per host: name, address, port, user, groups; then what gpufleet cannot use, and why (the
    transport's own rule), and the run's one host key warning."""
    rows = [("HOST", "ADDRESS", "PORT", "USER", "GROUPS")]
    for h in hosts:
        rows.append((h.name, h.address, "-" if h.port is None else str(h.port), h.user or "-",
                     ",".join(sorted(g for g in h.groups if g != "all")) or "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r[:4], widths)) + "  " + r[4] for r in rows]
    cache: dict = {}  # each distinct ssh arguments text parsed once
    problems = [f"{h.name}: cannot be used: {why}" for h in hosts if (why := connect_problem(h.name, h.vars, cache))]
    summary = plural(len(hosts), "host") + (f", {len(problems)} that gpufleet cannot use" if problems else "")
    warning = host_key_warning(hosts, cache)
    return "\n".join([*(line.rstrip() for line in lines), *problems, *([f"warning: {warning}"] if warning else []),
                      summary])
