"""Everything the steps need to know about a host, gathered in one round trip.

:func:`fact_script` renders a POSIX sh script (dash-safe, read-only: it writes
only inside a private temporary directory it removes) whose framed output
:func:`parse_facts` turns into :class:`ProvisionFacts`.  The framing is the audit's
(:func:`fleet.framing.sh_prelude`, shared): every payload line is prefixed with ``|`` so no file content can forge a
marker, and the payload round-trips byte for byte (a repository file's content
is compared exactly).

:func:`detect_family` maps ``/etc/os-release`` to a package-manager family.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field

from fleet import framing
from fleet.audit.facts.osrelease import parse_os_release
from fleet.framing import FramingError, Section, sh_prelude
from fleet.shell import quote

# NVIDIA's packages: the toolkit, the nvidia-ctk CLI, and the libnvidia-container pair.
PACKAGES = ("nvidia-container-toolkit", "nvidia-container-toolkit-base", "libnvidia-container-tools",
            "libnvidia-container1")
TOOLKIT = PACKAGES[0]

APT_LIST = "/etc/apt/sources.list.d/nvidia-container-toolkit.list"
APT_KEYRING = "/usr/share/keyrings/nvidia-container-toolkit-keyring.gpg"
YUM_REPO = "/etc/yum.repos.d/nvidia-container-toolkit.repo"
ZYPP_REPO = "/etc/zypp/repos.d/nvidia-container-toolkit.repo"
DOCKER_CONFIG = "/etc/docker/daemon.json"
CONTAINERD_CONFIGS = ("/etc/containerd/config.toml", "/etc/containerd/conf.d/*.toml")
CA_BUNDLES = ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt", "/etc/ssl/ca-bundle.pem")

TOOLS = ("apt-get", "dpkg-query", "dnf", "yum", "zypper", "rpm", "curl", "gpg", "base64", "docker", "dockerd",
         "containerd", "systemctl", "nvidia-ctk")

PREFIX = "gpufleet-provision"
HEADER = "@@gpufleet-provision 1@@"

_PRELUDE = sh_prelude("_p", PREFIX, strict=True) + r"""
_p_file() { if [ -e "$1" ]; then cat -- "$1"; else return 3; fi; }
# Lines defining an nvidia runtime in containerd's configuration (config.toml or a conf.d drop-in).
_p_containerd() {
    for _p_f in @CONTAINERD@; do
        [ -f "$_p_f" ] && grep -H -E '^[[:space:]]*\[.*runtimes\.("nvidia"|nvidia)\][[:space:]]*$' "$_p_f"
    done
    return 0
}
""".replace("@CONTAINERD@", " ".join(CONTAINERD_CONFIGS))

_GATHER = r"""
_p_b64() { if [ -e "$1" ]; then base64 -w0 <"$1"; else return 3; fi; }
_p_os_release() {
    if [ -r /etc/os-release ]; then cat /etc/os-release
    elif [ -r /usr/lib/os-release ]; then cat /usr/lib/os-release
    else echo "no /etc/os-release" >&2; return 1; fi
}
_p_tools() { for _p_c in @TOOLS@; do _p_have "$_p_c" && echo "$_p_c"; done; return 0; }
_p_ca() { for _p_f in @CA@; do [ -s "$_p_f" ] && echo "$_p_f"; done; return 0; }
# The key served at the key URL as apt will use it (dearmored), base64; nothing is installed.
_p_key() {
    curl -fsSL --retry 2 --connect-timeout 20 --max-time 120 -o "$_p_tmp/key" -- "$1" || return $?
    if grep -q -- '-----BEGIN PGP PUBLIC KEY BLOCK-----' "$_p_tmp/key"; then
        mkdir -m 700 "$_p_tmp/gnupg" &&
        GNUPGHOME="$_p_tmp/gnupg" gpg --batch --quiet --dearmor <"$_p_tmp/key" >"$_p_tmp/key.gpg" || return $?
    else
        cp "$_p_tmp/key" "$_p_tmp/key.gpg" || return $?
    fi
    base64 -w0 <"$_p_tmp/key.gpg"
}
echo '@HEADER@'
_p_run id id -u
_p_run os-release _p_os_release
_p_run arch uname -m
_p_run tools _p_tools
_p_have dpkg-query && _p_run dpkg dpkg-query -W -f='${Package}\t${db:Status-Abbrev}\t${Version}\n' @PACKAGES@
_p_have rpm && _p_run rpm rpm -q --qf '%{NAME}\t%{VERSION}-%{RELEASE}\n' @PACKAGES@
_p_run apt-list _p_file @APT_LIST@
_p_run keyring _p_b64 @APT_KEYRING@
_p_run yum-repo _p_file @YUM_REPO@
_p_run zypp-repo _p_file @ZYPP_REPO@
_p_run ca _p_ca
if [ -n "@KEY_URL@" ] && _p_have apt-get && _p_have curl && _p_have gpg && _p_have base64; then
    _p_run key-fetch _p_key @KEY_URL@
fi
_p_run docker-dir test -d /etc/docker
_p_run docker-config _p_file @DOCKER_CONFIG@
_p_run containerd-nvidia _p_containerd
if _p_have systemctl; then
    _p_run docker-active systemctl is-active docker
    _p_run containerd-active systemctl is-active containerd
fi
echo '@@gpufleet-provision-done@@'
exit 0
"""


def fact_script(key_url: str | None) -> str:
    """The gather script; ``key_url``: the signing key to fetch and compare (apt hosts), None to skip."""
    body = (_GATHER
            .replace("@HEADER@", HEADER)
            .replace("@TOOLS@", " ".join(TOOLS))
            .replace("@CA@", " ".join(CA_BUNDLES))
            .replace("@PACKAGES@", " ".join(PACKAGES))
            .replace("@APT_LIST@", quote(APT_LIST))
            .replace("@APT_KEYRING@", quote(APT_KEYRING))
            .replace("@YUM_REPO@", quote(YUM_REPO))
            .replace("@ZYPP_REPO@", quote(ZYPP_REPO))
            .replace("@DOCKER_CONFIG@", quote(DOCKER_CONFIG)))
    body = body.replace('"@KEY_URL@"', quote(key_url or "")).replace("@KEY_URL@", quote(key_url or ""))
    return "#!/bin/sh\n# gpufleet provision: read-only facts, one round trip\n" + _PRELUDE + body


def framed_script(body: str, tag: str = "gpufleet-provision 1") -> str:
    """Any sequence of ``_p_run NAME CMD`` lines wrapped in the same prelude and framing."""
    return ("#!/bin/sh\n" + _PRELUDE + f"echo '@@{tag}@@'\n" + body.rstrip("\n")
            + f"\necho '@@{PREFIX}-done@@'\nexit 0\n")


# ---------------------------------------------------------------- framing


class FactsParseError(FramingError):
    """The gather script's output is truncated or garbled."""


def split_sections(output: str, header: str = HEADER) -> dict[str, Section]:
    return framing.split_sections(output, header, PREFIX, FactsParseError, "provision")


# ---------------------------------------------------------------- facts


@dataclass
class ProvisionFacts:
    uid: int | None = None
    os: dict = field(default_factory=dict)
    arch: str | None = None
    tools: set = field(default_factory=set)
    family: str | None = None  # apt | dnf | yum | zypper
    family_error: str | None = None
    packages: dict = field(default_factory=dict)  # name -> installed version (absent: not installed)
    apt_list: str | None = None  # file contents; None: absent
    keyring: bytes | None = None
    yum_repo: str | None = None
    zypp_repo: str | None = None
    ca_bundle: bool = False
    key: bytes | None = None  # the key served at the key URL, dearmored; None: not fetched
    key_error: str | None = None
    docker_present: bool = False
    docker_config: str | None = None
    docker_active: bool | None = None  # None: unknown (no systemctl)
    containerd_present: bool = False
    containerd_nvidia: list = field(default_factory=list)  # "file:line" where the nvidia runtime is defined
    containerd_active: bool | None = None

    @property
    def os_label(self) -> str:
        name = self.os.get("id") or "unknown"
        ver = self.os.get("version_id")
        return f"{name} {ver}" if ver else name

    @property
    def repo_file(self) -> str | None:
        return {"apt": self.apt_list, "dnf": self.yum_repo, "yum": self.yum_repo, "zypper": self.zypp_repo}.get(
            self.family or "")

    def summary(self) -> dict:
        """What a report shows: no file contents, no key material."""
        return {
            "os": self.os_label,
            "pretty_name": self.os.get("pretty_name"),
            "arch": self.arch,
            "family": self.family,
            "uid": self.uid,
            "packages": dict(self.packages),
            "docker": {"present": self.docker_present, "active": self.docker_active},
            "containerd": {"present": self.containerd_present, "active": self.containerd_active},
        }


def _b64(text: str) -> bytes | None:
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        return None


def _first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()[:300]
    return ""


_APT_IDS = {"debian", "ubuntu", "linuxmint", "pop", "raspbian", "kali", "elementary", "zorin", "neon"}
_RHEL_IDS = {"rhel", "centos", "rocky", "almalinux", "fedora", "ol", "amzn", "circle", "virtuozzo", "navix"}
_SUSE_IDS = {"sles", "sled", "sles_sap", "opensuse", "opensuse-leap", "opensuse-tumbleweed", "opensuse-microos",
             "sle-micro", "suse"}


def detect_family(os_release: dict, tools: set) -> tuple[str | None, str | None]:
    """(family, None) or (None, why not).  ID decides; ID_LIKE is the fallback for derivatives."""
    osid = (os_release.get("id") or "").lower()
    like = set((os_release.get("id_like") or "").lower().split())
    label = os_release.get("pretty_name") or osid or "unknown"
    if not os_release:
        return None, "cannot tell the distribution: /etc/os-release is missing or unreadable"
    if osid in _APT_IDS or (osid not in _RHEL_IDS | _SUSE_IDS and like & {"debian", "ubuntu"}):
        if not {"apt-get", "dpkg-query"} <= tools:
            return None, f"{label} is Debian-like but apt-get/dpkg-query are missing"
        return "apt", None
    if osid in _RHEL_IDS or like & {"rhel", "fedora", "centos"}:
        if "dnf" in tools:
            return "dnf", None
        if "yum" in tools:
            return "yum", None
        return None, f"{label} is RHEL-like but neither dnf nor yum is installed"
    if osid in _SUSE_IDS or osid.startswith("opensuse") or like & {"suse", "opensuse"}:
        if "zypper" not in tools:
            return None, f"{label} is SUSE-like but zypper is missing"
        return "zypper", None
    return None, (f"unsupported distribution {label!r} (ID={osid or '?'}"
                  f"{', ID_LIKE=' + ' '.join(sorted(like)) if like else ''}): supported are Debian/Ubuntu (apt), "
                  f"RHEL/Rocky/Alma/CentOS/Fedora/Amazon Linux (dnf or yum) and SLES/openSUSE (zypper)")


def _dpkg_versions(text: str) -> dict:
    out = {}
    for line in text.splitlines():
        parts = line.split("\t")
        if len(parts) == 3 and parts[1].strip().startswith("ii") and parts[2].strip():
            out[parts[0].strip()] = parts[2].strip()
    return out


def _rpm_versions(text: str) -> dict:
    out = {}
    for line in text.splitlines():
        parts = line.split("\t")
        if len(parts) == 2 and parts[0].strip() in PACKAGES and parts[1].strip():
            out[parts[0].strip()] = parts[1].strip()
    return out


def _active(x: Section | None) -> bool | None:
    """``systemctl is-active``: True/False, None when systemd cannot say (not booted with systemd, no systemctl)."""
    if x is None:
        return None
    word = x.stdout.strip()
    if word == "active":
        return True
    return False if word in ("inactive", "failed", "activating", "deactivating", "unknown", "reloading") else None


def parse_facts(output: str) -> ProvisionFacts:
    """The gather script's output -> ProvisionFacts.  Raises FactsParseError on broken framing only."""
    s = split_sections(output)
    f = ProvisionFacts()
    if (x := s.get("id")) and x.rc == 0 and x.stdout.strip().isdigit():
        f.uid = int(x.stdout.strip())
    if (x := s.get("os-release")) and x.rc == 0:
        f.os = parse_os_release(x.stdout)
    if (x := s.get("arch")) and x.rc == 0:
        f.arch = x.stdout.strip() or None
    if x := s.get("tools"):
        f.tools = set(x.stdout.split())
    f.family, f.family_error = detect_family(f.os, f.tools)
    if f.family == "apt" and (x := s.get("dpkg")):
        f.packages = _dpkg_versions(x.stdout)
    elif f.family in ("dnf", "yum", "zypper") and (x := s.get("rpm")):
        f.packages = _rpm_versions(x.stdout)
    for attr, name in (("apt_list", "apt-list"), ("yum_repo", "yum-repo"), ("zypp_repo", "zypp-repo"),
                       ("docker_config", "docker-config")):
        if (x := s.get(name)) and x.rc == 0:
            setattr(f, attr, x.stdout)
    if (x := s.get("keyring")) and x.rc == 0:
        f.keyring = _b64(x.stdout)
    if x := s.get("ca"):
        f.ca_bundle = bool(x.stdout.strip())
    if (x := s.get("key-fetch")) is not None:
        if x.rc == 0:
            f.key = _b64(x.stdout)
            if not f.key:
                f.key_error = "the key URL served no usable key (empty or not base64 after dearmoring)"
        else:
            f.key_error = _first_line(x.stderr) or f"curl exited {x.rc}"
    f.docker_present = bool({"docker", "dockerd"} & f.tools) or bool((x := s.get("docker-dir")) and x.rc == 0)
    f.containerd_present = "containerd" in f.tools
    if x := s.get("containerd-nvidia"):
        f.containerd_nvidia = [line for line in x.stdout.splitlines() if line.strip()]
    f.docker_active = _active(s.get("docker-active"))
    f.containerd_active = _active(s.get("containerd-active"))
    return f
