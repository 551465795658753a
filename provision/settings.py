"""What to install and from where: defaults, inventory variables, task options.

Precedence (as Ansible's extra vars): a task option beats the host's inventory
variable, which beats the default.  Every value is validated here, because each
one ends up in a file on the host (the repository definition) or on a command
line (always shell-quoted, but a newline in a URL would still forge a second
``deb`` line in a sources file).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Mapping
from urllib.parse import urlsplit, urlunsplit

# NVIDIA's production repository (https://nvidia.github.io/libnvidia-container): the
# deb repository is <base>/deb/$(ARCH), the rpm one <base>/rpm/$basearch.
DEFAULT_REPO_URL = "https://nvidia.github.io/libnvidia-container/stable"
DEFAULT_KEY_URL = "https://nvidia.github.io/libnvidia-container/gpgkey"
# NVIDIA's sample workload runs nvidia-smi in a plain ubuntu image: the toolkit injects it.
DEFAULT_SMOKE_IMAGE = "ubuntu"
RUNTIMES = ("docker", "containerd")

# Inventory variables (host or group vars).
VAR_REPO_URL = "gpufleet_toolkit_repo_url"
VAR_KEY_URL = "gpufleet_toolkit_key_url"
VAR_VERSION = "gpufleet_toolkit_version"
VAR_RUNTIMES = "gpufleet_toolkit_runtimes"
VAR_SMOKE_TEST = "gpufleet_toolkit_smoke_test"
VAR_SMOKE_IMAGE = "gpufleet_toolkit_smoke_image"
VARIABLES = (VAR_REPO_URL, VAR_KEY_URL, VAR_VERSION, VAR_RUNTIMES, VAR_SMOKE_TEST, VAR_SMOKE_IMAGE)

_URL_SCHEMES = ("http", "https", "file")
_VERSION = re.compile(r"^[0-9][0-9A-Za-z.+~:_-]*$")
# A Docker image reference: [registry[:port]/]name[:tag][@digest]; no spaces, no shell syntax.
_IMAGE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/:@+-]*$")


class SettingsError(ValueError):
    """A value that cannot be used; the message names the option or variable."""


@dataclass(frozen=True)
class Settings:
    repo_url: str = DEFAULT_REPO_URL
    key_url: str = DEFAULT_KEY_URL
    version: str | None = None  # None: whatever the repository offers, and never upgrade what is installed
    runtimes: tuple[str, ...] = ("docker",)
    smoke_test: bool = False
    smoke_image: str = DEFAULT_SMOKE_IMAGE
    sources: dict = field(default_factory=dict, compare=False)  # setting -> "default" | "inventory" | "option"

    def to_dict(self) -> dict:
        d = asdict(self)
        d["repo_url"] = redact_url(self.repo_url)
        d["key_url"] = redact_url(self.key_url)
        d["runtimes"] = list(self.runtimes)
        return d


_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^/:@\s]+):[^@/\s]+@")


def mask_credentials(text: str) -> str:
    """Every ``scheme://user:password@`` in free text -> ``scheme://user:***@``."""
    return _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:***@", text)


def redact_url(url: str) -> str:
    """``https://user:secret@mirror/x`` -> ``https://user:***@mirror/x`` for anything shown or written."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


def check_url(value: Any, what: str, base: bool = False) -> str:
    """A URL safe to write into a repository definition; ``base``: a directory URL (trailing "/" dropped)."""
    url = str(value).strip()
    if not url or any(c.isspace() for c in url) or any(ord(c) < 32 or ord(c) == 127 for c in url):
        raise SettingsError(f"{what}: {value!r} is not a URL (empty, or contains spaces or control characters)")
    if any(c in url for c in "[]\"'`\\"):
        raise SettingsError(f"{what}: {redact_url(url)!r} contains characters a repository definition cannot carry")
    parts = urlsplit(url)
    if parts.scheme not in _URL_SCHEMES:
        raise SettingsError(f"{what}: {redact_url(url)!r} must be an http://, https:// or file:// URL")
    if parts.scheme != "file" and not parts.netloc:
        raise SettingsError(f"{what}: {redact_url(url)!r} has no host")
    return url.rstrip("/") if base else url


def check_version(value: Any, what: str) -> str | None:
    if value is None or str(value).strip() == "":
        return None
    v = str(value).strip()
    if v.startswith("v") and len(v) > 1 and v[1].isdigit():
        v = v[1:]
    if not _VERSION.match(v):
        raise SettingsError(f"{what}: {value!r} is not a package version (e.g. 1.17.8 or 1.17.8-1)")
    return v


def check_image(value: Any, what: str) -> str:
    v = str(value).strip()
    if not _IMAGE.match(v):
        raise SettingsError(f"{what}: {value!r} is not a container image reference")
    return v


def check_runtimes(value: Any, what: str) -> tuple[str, ...]:
    items = value if isinstance(value, (list, tuple)) else str(value).split(",")
    out: list[str] = []
    for item in items:
        name = str(item).strip().lower()
        if not name:
            continue
        if name not in RUNTIMES:
            raise SettingsError(f"{what}: unknown runtime {item!r} (known: {', '.join(RUNTIMES)})")
        if name not in out:
            out.append(name)
    if not out:
        raise SettingsError(f"{what}: no runtime named (known: {', '.join(RUNTIMES)})")
    return tuple(out)


def _truthy(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in {"1", "yes", "true", "on", "y"}


@dataclass(frozen=True)
class Overrides:
    """Task options; None means "not given" (the inventory or the default decides)."""

    repo_url: str | None = None
    key_url: str | None = None
    version: str | None = None
    containerd: bool = False
    smoke_test: bool = False
    smoke_image: str | None = None

    def validated(self) -> "Overrides":
        """Check the options up front (a bad option is a usage error, not a per-host failure)."""
        return replace(
            self,
            repo_url=None if self.repo_url is None else check_url(self.repo_url, "--repo-url", base=True),
            key_url=None if self.key_url is None else check_url(self.key_url, "--key-url"),
            version=check_version(self.version, "--version"),
            smoke_image=None if self.smoke_image is None else check_image(self.smoke_image, "--smoke-image"),
        )


def resolve(host_vars: Mapping[str, Any], overrides: Overrides | None = None) -> Settings:
    """Settings for one host.  Raises SettingsError naming the inventory variable at fault."""
    o = overrides or Overrides()
    sources: dict[str, str] = {}

    def pick(name: str, option: Any, var: str, default: Any, check) -> Any:
        if option is not None:
            sources[name] = "option"
            return option
        if host_vars.get(var) is not None:
            sources[name] = "inventory"
            return check(host_vars[var], var)
        sources[name] = "default"
        return default

    repo_url = pick("repo_url", o.repo_url, VAR_REPO_URL, DEFAULT_REPO_URL, lambda v, w: check_url(v, w, base=True))
    key_url = pick("key_url", o.key_url, VAR_KEY_URL, DEFAULT_KEY_URL, check_url)
    version = pick("version", o.version, VAR_VERSION, None, check_version)
    runtimes = pick("runtimes", None, VAR_RUNTIMES, ("docker",), check_runtimes)
    if o.containerd and "containerd" not in runtimes:
        runtimes = tuple(runtimes) + ("containerd",)
        sources["runtimes"] = "option"
    smoke_test = True if o.smoke_test else _truthy(host_vars.get(VAR_SMOKE_TEST, False))
    smoke_image = pick("smoke_image", o.smoke_image, VAR_SMOKE_IMAGE, DEFAULT_SMOKE_IMAGE, check_image)
    return Settings(repo_url=repo_url, key_url=key_url, version=version, runtimes=tuple(runtimes),
                    smoke_test=smoke_test, smoke_image=smoke_image, sources=sources)
