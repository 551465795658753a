"""Where gpufleet's settings come from, read the same way by ``gpufleet`` and by ``invoke``.

Sources, strongest first:

1. the command line's flags (handled by :mod:`fleet.options`);
2. the environment's gpufleet variables (``$GPUFLEET_INVENTORY``, ``$GPUFLEET_HISTORY``);
3. the ``gpufleet:`` section of Invoke's configuration: the project's ``invoke.yaml`` (beside ``tasks.py``),
   and Invoke's own system and user files (``/etc/invoke.yaml``, ``~/.invoke.yaml``);
4. Ansible's configuration, found as Ansible finds it (``$ANSIBLE_CONFIG``, ``./ansible.cfg``,
   ``~/.ansible.cfg``, ``/etc/ansible/ansible.cfg``; the first that exists), its ``[defaults]``
   ``inventory``, ``remote_user``, ``private_key_file``, ``forks`` and ``timeout``, each overridden by
   Ansible's own environment variable (``$ANSIBLE_INVENTORY``, ``$ANSIBLE_REMOTE_USER``, ...);
5. gpufleet's defaults (:data:`DEFAULTS`, the project's ``inventory/hosts.yaml`` and ``reports/``).

``remote_user`` and ``private_key_file`` are what Ansible makes of them: defaults for hosts whose
inventory sets no user or key (an inventory's ``ansible_user`` wins over them, as in Ansible).

A malformed ``invoke.yaml`` or ``ansible.cfg`` is a :class:`ConfigError` naming the file and line; the
commands turn it into a usage error (exit 2).  Nothing here prints or exits.
"""

from __future__ import annotations

import configparser
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

PROJECT = Path(__file__).resolve().parents[1]  # where tasks.py, invoke.yaml, inventory/ and reports/ live
PROJECT_FILES = ("invoke.yaml", "invoke.yml")
DEFAULT_INVENTORY = "inventory/hosts.yaml"
DEFAULT_REPORTS = "reports"
INVENTORY_ENV = "GPUFLEET_INVENTORY"
HISTORY_ENV = "GPUFLEET_HISTORY"

# Every default in one place; invoke.yaml's `gpufleet:` section overrides them (e.g. `gpufleet: {forks: 64}`),
# a flag overrides both.  Per-task timeouts: `gpufleet: {timeout: {verify: 3600}}`.
DEFAULTS: Mapping[str, Any] = {
    "forks": 32,
    "connect_timeout": 10,
    "timeout": {"audit": 120, "push": 600, "verify": 1800, "provision": 900},
}
# The keys the `gpufleet:` section may hold: a key not here is a typo, refused with the file's name.
SECTION_KEYS = ("inventory", "reports", "history", "forks", "connect_timeout", "timeout")

# Ansible's configuration: the [defaults] keys gpufleet honours, each with Ansible's environment variable.
ANSIBLE_KEYS = {
    "inventory": "ANSIBLE_INVENTORY",
    "remote_user": "ANSIBLE_REMOTE_USER",
    "private_key_file": "ANSIBLE_PRIVATE_KEY_FILE",
    "forks": "ANSIBLE_FORKS",
    "timeout": "ANSIBLE_TIMEOUT",
}
ANSIBLE_PATH_KEYS = ("inventory", "private_key_file")


class ConfigError(Exception):
    """A configuration file gpufleet cannot use; the message names the file (and line, where known)."""


# -- invoke.yaml ----------------------------------------------------------------------------------------
def check_project_file(project: Path = PROJECT) -> Optional[Path]:
    """The project's ``invoke.yaml`` (None when there is none), checked: YAML that parses, a mapping, and a
    ``gpufleet:`` section of known keys.  :class:`ConfigError` names the file and line otherwise.

    Invoke itself loads the file too (for both entry points); this check runs first so that a broken file is one
    line and exit 2 rather than a traceback."""
    import yaml

    for name in PROJECT_FILES:
        path = project / name
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            continue
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"{path}: cannot read: {getattr(e, 'strerror', None) or e}") from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
            what = getattr(e, "problem", None) or str(e).splitlines()[0]
            raise ConfigError(f"{where}: not valid YAML: {what}") from None
        check_section(data, path, text)
        return path
    return None


def check_section(data: Any, path: Path, text: str = "") -> None:
    """The document of ``path`` is a mapping whose ``gpufleet`` section (if any) holds known keys only."""
    if data is None:
        return
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of settings, got a YAML {type(data).__name__}")
    section = data.get("gpufleet")
    if section is None:
        return
    if not isinstance(section, dict):
        raise ConfigError(f"{path}:{_line_of(text, 'gpufleet')}: gpufleet: expected a mapping of settings, "
                          f"got {section!r}")
    for key in section:
        if key not in SECTION_KEYS:
            raise ConfigError(f"{path}:{_line_of(text, str(key))}: gpufleet.{key}: unknown setting; "
                              f"known: {', '.join(SECTION_KEYS)}")
    timeouts = section.get("timeout")
    if timeouts is not None and not isinstance(timeouts, dict):
        raise ConfigError(f"{path}:{_line_of(text, 'timeout')}: gpufleet.timeout: expected a mapping of task to "
                          f"seconds (e.g. {{verify: 3600}}), got {timeouts!r}")


def _line_of(text: str, key: str) -> str:
    """The 1-based line where ``key:`` first appears in ``text`` ("?" when it cannot be found)."""
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip().startswith(f"{key}:"):
            return str(n)
    return "?"


# -- Ansible's configuration ----------------------------------------------------------------------------
@dataclass(frozen=True)
class AnsibleConfig:
    """What gpufleet takes from Ansible's configuration; ``origin`` says where each value came from."""

    path: Optional[Path] = None  # the ansible.cfg read (None: none found)
    inventory: tuple = ()  # sources, resolved as Ansible resolves them
    remote_user: Optional[str] = None
    private_key_file: Optional[str] = None
    forks: Optional[str] = None
    timeout: Optional[str] = None
    origin: Mapping[str, str] = field(default_factory=dict)


def find_ansible_cfg(env: Mapping[str, str], cwd: Path, home: Path) -> Optional[Path]:
    """The ansible.cfg Ansible would read: ``$ANSIBLE_CONFIG`` (a file, or a directory holding ansible.cfg),
    ``./ansible.cfg``, ``~/.ansible.cfg``, ``/etc/ansible/ansible.cfg``: the first that exists."""
    candidates = []
    if env.get("ANSIBLE_CONFIG"):
        given = Path(os.path.expanduser(env["ANSIBLE_CONFIG"]))
        given = given if given.is_absolute() else cwd / given
        candidates.append(given / "ansible.cfg" if given.is_dir() else given)
        if not candidates[0].exists():
            raise ConfigError(f"$ANSIBLE_CONFIG {env['ANSIBLE_CONFIG']}: no such file")
    candidates += [cwd / "ansible.cfg", home / ".ansible.cfg", Path("/etc/ansible/ansible.cfg")]
    for path in candidates:
        if path.is_file():
            if path == cwd / "ansible.cfg" and _world_writable(cwd):
                continue  # Ansible ignores ansible.cfg in a world-writable current directory
            return path
    return None


def _world_writable(directory: Path) -> bool:
    try:
        return bool(directory.stat().st_mode & 0o002)
    except OSError:
        return False


def read_ansible_cfg(path: Optional[Path], env: Mapping[str, str], cwd: Path) -> AnsibleConfig:
    """The [defaults] gpufleet honours from ``path`` (None: none found), each overridden by its environment
    variable.  A path in the file is relative to the file's directory; in the environment, to ``cwd``."""
    values: dict = {}
    origin: dict = {}
    if path is not None:
        parser = configparser.ConfigParser(interpolation=None, inline_comment_prefixes=(";",),
                                           comment_prefixes=("#", ";"))
        try:
            with open(path, encoding="utf-8") as f:
                parser.read_file(f)
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"{path}: cannot read: {getattr(e, 'strerror', None) or e}") from None
        except configparser.Error as e:
            line = getattr(e, "lineno", None)
            first = str(e).splitlines()[0]
            raise ConfigError(f"{path}{f':{line}' if line else ''}: not a valid ansible.cfg: {first}") from None
        if parser.has_section("defaults"):
            for key in ANSIBLE_KEYS:
                raw = parser.get("defaults", key, fallback=None)
                if key == "inventory" and raw is None:
                    raw = parser.get("defaults", "hostfile", fallback=None)  # the old name Ansible still reads
                if raw not in (None, ""):
                    values[key] = _resolve(key, raw.strip(), path.parent)
                    origin[key] = str(path)
    for key, var in ANSIBLE_KEYS.items():
        if env.get(var):
            values[key] = _resolve(key, env[var].strip(), cwd)
            origin[key] = f"${var}"
    inventory = values.pop("inventory", ())
    return AnsibleConfig(path=path, inventory=inventory, origin=origin, **values)


def _resolve(key: str, raw: str, base: Path):
    if key == "inventory":
        return tuple(_path(p.strip(), base) for p in raw.split(",") if p.strip())
    if key == "private_key_file":
        return _path(raw, base)
    return raw


def _path(value: str, base: Path) -> str:
    p = Path(os.path.expanduser(value))
    return str(p if p.is_absolute() else base / p)


# -- the whole configuration ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Config:
    """Every setting's source but the flags: Invoke's ``gpufleet`` section, Ansible's configuration, the
    environment, the project.  Built once per command by :func:`from_context`."""

    section: Mapping[str, Any] = field(default_factory=dict)  # invoke.yaml's gpufleet: section
    ansible: AnsibleConfig = field(default_factory=AnsibleConfig)
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: Path = field(default_factory=Path.cwd)
    project: Path = PROJECT

    def setting(self, name: str, task: Optional[str] = None):
        """``name``'s value: invoke.yaml's ``gpufleet.<name>``, else Ansible's (forks; ``timeout`` as the connect
        timeout), else :data:`DEFAULTS`."""
        ansible = {"forks": self.ansible.forks, "connect_timeout": self.ansible.timeout}
        for source in (self.section, ansible, DEFAULTS):
            found = source.get(name)
            if isinstance(found, Mapping):
                found = found.get(task) if task else None
            if found not in (None, ""):
                return found
        raise KeyError(f"no default for {name}")

    def _configured(self, key: str) -> Optional[str]:
        value = self.section.get(key)
        return str(value) if value not in (None, "") else None

    def project_path(self, value: str) -> Path:
        """A path from the project's configuration: absolute as given, else relative to the project."""
        path = Path(os.path.expanduser(value))
        return path if path.is_absolute() else self.project / path

    def user_path(self, value: str) -> Path:
        """A path the user typed (a flag, an environment variable): relative to the current directory."""
        path = Path(os.path.expanduser(value))
        return path if path.is_absolute() else self.cwd / path

    def inventory_sources(self, flags: tuple = ()) -> tuple[list[Path], str]:
        """``(sources, where they came from)``: ``-i``/``--inventory`` (repeatable, each may be a comma list)
        beats ``$GPUFLEET_INVENTORY`` beats ``gpufleet.inventory`` in invoke.yaml beats Ansible's inventory
        (``$ANSIBLE_INVENTORY``, ansible.cfg) beats the project's default.  Sources are layered in order, as
        several ``ansible -i``."""
        from fleet.inventory import split_sources

        given = [p for flag in flags if flag for p in split_sources(str(flag))]
        if given:
            return [self.user_path(p) for p in given], "--inventory"
        if self.env.get(INVENTORY_ENV):
            return [self.user_path(p) for p in split_sources(self.env[INVENTORY_ENV])], f"${INVENTORY_ENV}"
        configured = self._configured("inventory")
        if configured:
            return [self.project_path(p) for p in split_sources(configured)], "gpufleet.inventory in invoke.yaml"
        if self.ansible.inventory:
            return [Path(p) for p in self.ansible.inventory], f"inventory in {self.ansible.origin['inventory']}"
        return [self.project / DEFAULT_INVENTORY], "the default"

    def reports_dir(self, flag: Optional[str]) -> Path:
        """Where run directories go: ``--out``, else ``gpufleet.reports`` in invoke.yaml, else the project's
        reports/."""
        if flag:
            return self.user_path(flag)
        configured = self._configured("reports")
        return self.project_path(configured) if configured else self.project / DEFAULT_REPORTS

    def history_path(self, flag: Optional[str]) -> Path:
        """The history database: ``--history``, else ``$GPUFLEET_HISTORY``, else ``gpufleet.history`` in
        invoke.yaml (relative to the project), else the project's ``reports/history.sqlite``."""
        if flag or self.env.get(HISTORY_ENV):
            return self.user_path(flag or self.env[HISTORY_ENV])
        configured = self._configured("history")
        return self.project_path(configured) if configured else self.project / DEFAULT_REPORTS / "history.sqlite"

    def host_defaults(self, user: Optional[str] = None) -> dict:
        """Connection variables for hosts whose inventory sets none: ``-u`` (else ansible.cfg's remote_user)
        and ansible.cfg's private_key_file.  As in Ansible, an inventory's own ``ansible_user`` wins."""
        out = {}
        if user or self.ansible.remote_user:
            out["ansible_user"] = user or self.ansible.remote_user
        if self.ansible.private_key_file:
            out["ansible_private_key_file"] = self.ansible.private_key_file
        return out


def from_context(c) -> Config:
    """The configuration of an Invoke context (both entry points load the project's invoke.yaml into it)."""
    config = getattr(c, "config", None)
    section = (config.get("gpufleet") if config is not None else None) or {}
    env = dict(os.environ)
    cwd = Path.cwd()
    ansible = read_ansible_cfg(find_ansible_cfg(env, cwd, Path.home()), env, cwd)
    return Config(section=_plain(section), ansible=ansible, env=env, cwd=cwd)


def _plain(value):
    """Invoke's DataProxy sections as plain dicts (read-only use)."""
    if hasattr(value, "items"):
        return {k: _plain(v) for k, v in value.items()}
    return value


__all__ = ["AnsibleConfig", "Config", "ConfigError", "DEFAULTS", "PROJECT", "check_project_file",
           "find_ansible_cfg", "from_context", "read_ansible_cfg"]
