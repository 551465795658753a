"""The steps, each a pure ``plan(facts, settings) -> Plan`` (pyinfra's rule: no commands, no change).

A step never looks at the host itself: :mod:`provision.facts` gathered everything
in one round trip, and the plan is the difference between that state and the
wanted one.  :mod:`provision.apply` runs the plan (or, with ``--check``, prints it).

Steps, in order (a family that does not need one does not list it):

``prerequisites``  apt only: curl, gnupg (and ca-certificates for https) as NVIDIA's guide asks.
``repository``     the repository definition and its signing key; metadata refreshed; on a refresh
                   failure the previous definition is put back (as Ansible's apt_repository does).
``package``        nvidia-container-toolkit, or the four pinned packages at the pinned version.
``runtime-docker`` ``nvidia-ctk runtime configure --runtime=docker``, then a restart of docker if it runs.
``runtime-containerd``  the same for containerd (only when asked).
"""

from __future__ import annotations

import base64
import hashlib
import json
import posixpath
import re
from dataclasses import dataclass, field
from typing import Callable
from urllib.parse import urlsplit

from fleet.shell import cmd, join, quote
from provision.facts import (APT_KEYRING, APT_LIST, DOCKER_CONFIG, PACKAGES, TOOLKIT, YUM_REPO, ZYPP_REPO,
                             ProvisionFacts)
from provision.settings import Settings, mask_credentials, redact_url

REPO_ID = "nvidia-container-toolkit"  # the section / alias NVIDIA's own .repo file uses

# apt-get update reports unreachable or unsigned repositories as warnings and may still exit 0.
APT_UPDATE_ERRORS = (r"(?m)^(E: .*|W: (Failed to fetch|GPG error|The repository|Some index files failed).*"
                     r"|Err:\d+ .*|\s+\d{3}\s+[A-Z][A-Za-z ]+\[IP: .*)$")


@dataclass(frozen=True)
class Command:
    """One shell command.  ``show``: how ``--check`` and reports print it (data blobs elided)."""

    shell: str
    show: str = ""
    fail_pattern: str | None = None  # output matching this is a failure even with exit status 0
    what: str = ""  # how a failure message names it

    @property
    def display(self) -> str:
        """Never shows a mirror URL's password (the command itself of course carries it)."""
        return mask_credentials(self.show or self.shell)

    @property
    def label(self) -> str:
        if self.what:
            return self.what
        first = self.display.splitlines()[0] if self.display else ""
        return f"`{first if len(first) <= 120 else first[:119] + '…'}`"


@dataclass
class Plan:
    action: str  # "none": already right; "change": run commands; "skip": not applicable; "fail": cannot proceed
    message: str
    commands: list[Command] = field(default_factory=list)
    undo: list[Command] = field(default_factory=list)  # restores the previous state if a command fails


@dataclass(frozen=True)
class Step:
    name: str
    title: str
    families: tuple[str, ...]
    plan: Callable[[ProvisionFacts, Settings], Plan]


# ---------------------------------------------------------------- command builders


def write_file(path: str, content: str, mode: str = "0644") -> Command:
    """Atomic replace: a reader never sees half a sources file."""
    tmp = path + ".gpufleet-new"
    shell = (f"umask 022 && mkdir -p {quote(posixpath.dirname(path))} && "
             + cmd("printf '%%s' %s > %s && chmod %s %s && mv -f %s %s", content, tmp, mode, tmp, tmp, path))
    body = content if content.endswith("\n") else content + "\n"
    show = f"cat > {quote(path)} <<'EOF'\n{body}EOF"
    return Command(shell, show, what=f"writing {path}")


def write_bytes(path: str, data: bytes, what: str, mode: str = "0644") -> Command:
    tmp = path + ".gpufleet-new"
    b64 = base64.b64encode(data).decode()
    shell = (f"umask 022 && mkdir -p {quote(posixpath.dirname(path))} && "
             + cmd("printf '%%s' %s | base64 -d > %s && chmod %s %s && mv -f %s %s", b64, tmp, mode, tmp, tmp, path))
    digest = hashlib.sha256(data).hexdigest()[:16]
    show = f"write {quote(path)}  ({what}: {len(data)} bytes, sha256 {digest}…)"
    return Command(shell, show, what=f"writing {path}")


def remove_file(path: str) -> Command:
    return Command(cmd("rm -f -- %s", path), what=f"removing {path}")


def fetch_key(url: str, keyring: str) -> Command:
    """NVIDIA's ``curl -fsSL URL | gpg --dearmor -o KEYRING``, without gpg creating ~/.gnupg, atomically."""
    shell = (
        't=$(mktemp -d) && trap \'rm -rf "$t"\' EXIT && '
        + cmd("curl -fsSL --retry 2 --connect-timeout 20 --max-time 120 -o \"$t/key\" -- %s", url) + " && "
        + "if grep -q -- '-----BEGIN PGP PUBLIC KEY BLOCK-----' \"$t/key\"; then "
        + "mkdir -m 700 \"$t/g\" && GNUPGHOME=\"$t/g\" gpg --batch --yes --dearmor -o \"$t/key.gpg\" \"$t/key\"; "
        + "else cp \"$t/key\" \"$t/key.gpg\"; fi && "
        + cmd("install -m 0644 \"$t/key.gpg\" %s", keyring)
    )
    show = f"curl -fsSL {quote(redact_url(url))} | gpg --dearmor > {quote(keyring)}"
    return Command(shell, show, what=f"fetching the signing key from {redact_url(url)}")


def apt_get(*args: str) -> str:
    return "DEBIAN_FRONTEND=noninteractive apt-get " + join(list(args))


def apt_update_toolkit() -> Command:
    """Refresh only the toolkit's source: fast, and unrelated broken sources cannot fail the step."""
    shell = apt_get("update", "-o", f"Dir::Etc::SourceList={APT_LIST}", "-o", "Dir::Etc::SourceParts=-",
                    "-o", "APT::Get::List-Cleanup=0")
    return Command(shell, fail_pattern=APT_UPDATE_ERRORS, what="apt-get update of the toolkit repository")


APT_INSTALL = ("install", "-y", "--no-install-recommends", "-o", "Dpkg::Options::=--force-confdef",
               "-o", "Dpkg::Options::=--force-confold")


# ---------------------------------------------------------------- versions


def apt_version(pin: str) -> str:
    """NVIDIA's debs are ``<version>-1``; ``1.17.8`` means ``1.17.8-1``, a full ``1.17.8-1`` is kept."""
    return pin if "-" in pin else pin + "-1"


def _strip_epoch(v: str) -> str:
    return v.split(":", 1)[1] if ":" in v.split("-", 1)[0] else v


def version_matches(installed: str | None, pin: str) -> bool:
    """``1.17.8-1`` matches pins ``1.17.8-1`` and ``1.17.8`` (any release); never ``1.17.80``."""
    if not installed:
        return False
    v = _strip_epoch(installed)
    return v == pin or ("-" not in pin and v.rsplit("-", 1)[0] == pin)


def upstream(version: str) -> str:
    """``1:1.17.8-1`` -> ``1.17.8`` (what ``nvidia-ctk --version`` prints)."""
    v = _strip_epoch(version)
    return v.rsplit("-", 1)[0] if "-" in v else v


def vercmp(a: str, b: str) -> int:
    """rpm's segment comparison (numeric segments numerically, ``~`` sorts first); -1, 0 or 1."""
    def segments(s: str):
        return re.findall(r"~|\d+|[A-Za-z]+", s)

    sa, sb = segments(_strip_epoch(a)), segments(_strip_epoch(b))
    for x, y in zip(sa, sb):
        if x == y:
            continue
        if x == "~" or y == "~":
            return -1 if x == "~" else 1
        if x.isdigit() and y.isdigit():
            return -1 if int(x) < int(y) else 1
        if x.isdigit() != y.isdigit():
            return 1 if x.isdigit() else -1
        return -1 if x < y else 1
    if len(sa) == len(sb):
        return 0
    longer, sign = (sa, 1) if len(sa) > len(sb) else (sb, -1)
    nxt = longer[min(len(sa), len(sb))]
    return -sign if nxt == "~" else sign


# ---------------------------------------------------------------- repository definitions


def apt_source(settings: Settings) -> str:
    """NVIDIA's ``nvidia-container-toolkit.list`` with ``signed-by``, pointing at the (mirror) base URL."""
    return ("# NVIDIA Container Toolkit -- managed by gpufleet provision\n"
            f"deb [signed-by={APT_KEYRING}] {settings.repo_url}/deb/$(ARCH) /\n")


def rpm_repo(settings: Settings, zypper: bool = False) -> str:
    """NVIDIA's ``nvidia-container-toolkit.repo`` (stable section), pointing at the (mirror) base URL."""
    lines = [
        f"[{REPO_ID}]",
        f"name={REPO_ID}",
        f"baseurl={settings.repo_url}/rpm/$basearch",
        "repo_gpgcheck=1",
        "gpgcheck=0",
        "enabled=1",
        f"gpgkey={settings.key_url}",
    ]
    if zypper:
        lines += ["autorefresh=1", "type=rpm-md"]
    else:
        lines += ["sslverify=1"]
    return "# NVIDIA Container Toolkit -- managed by gpufleet provision\n" + "\n".join(lines) + "\n"


def _https(*urls: str) -> bool:
    return any(urlsplit(u).scheme == "https" for u in urls)


# ---------------------------------------------------------------- plans


def plan_prerequisites(facts: ProvisionFacts, settings: Settings) -> Plan:
    need = []
    if "curl" not in facts.tools:
        need.append("curl")
    if "gpg" not in facts.tools:
        need.append("gnupg")
    if _https(settings.repo_url, settings.key_url) and not facts.ca_bundle:
        need.append("ca-certificates")
    if not need:
        return Plan("none", "curl and gpg present")
    return Plan("change", f"install {', '.join(need)} (NVIDIA's prerequisites)", [
        Command(apt_get("update"), fail_pattern=r"(?m)^E: .*$"),
        Command(apt_get(*APT_INSTALL, *need)),
    ])


def plan_repository(facts: ProvisionFacts, settings: Settings) -> Plan:
    if facts.family == "apt":
        return _plan_apt_repository(facts, settings)
    path = ZYPP_REPO if facts.family == "zypper" else YUM_REPO
    want = rpm_repo(settings, zypper=facts.family == "zypper")
    have = facts.repo_file
    if have == want:
        return Plan("none", f"{path} points at {redact_url(settings.repo_url)}")
    refresh = {
        "dnf": Command(join(["dnf", "-y", "makecache", f"--repo={REPO_ID}"])),
        "yum": Command(join(["yum", "-y", "makecache", "--disablerepo=*", f"--enablerepo={REPO_ID}"])),
        "zypper": Command(join(["zypper", "--non-interactive", "--gpg-auto-import-keys", "refresh", REPO_ID])),
    }[facts.family or "dnf"]
    undo = [remove_file(path)] if have is None else [write_file(path, have)]
    verb = "define" if have is None else "update"
    return Plan("change", f"{verb} {path} -> {redact_url(settings.repo_url)}/rpm/$basearch; refresh its metadata",
                [write_file(path, want), refresh], undo)


def _plan_apt_repository(facts: ProvisionFacts, settings: Settings) -> Plan:
    key_url = redact_url(settings.key_url)
    if facts.key_error:
        return Plan("fail", f"cannot fetch the signing key from {key_url}: {facts.key_error}")
    commands: list[Command] = []
    undo: list[Command] = []
    did = []
    if facts.key is None:  # not fetched (curl or gpg were missing): fetch it on the host now
        commands.append(fetch_key(settings.key_url, APT_KEYRING))
        did.append("install the signing key")
    elif facts.keyring != facts.key:
        commands.append(write_bytes(APT_KEYRING, facts.key, f"the key served at {key_url}, dearmored"))
        did.append("install the signing key" if facts.keyring is None
                   else "replace the signing key (changed at the key URL)")
    if commands:
        undo.append(remove_file(APT_KEYRING) if facts.keyring is None
                    else write_bytes(APT_KEYRING, facts.keyring, "the previous keyring"))
    want = apt_source(settings)
    if facts.apt_list != want:
        commands.append(write_file(APT_LIST, want))
        undo.append(remove_file(APT_LIST) if facts.apt_list is None else write_file(APT_LIST, facts.apt_list))
        did.append(f"{'write' if facts.apt_list is None else 'update'} {APT_LIST}")
    if not commands:
        return Plan("none", f"{APT_LIST} and its signing key are current ({redact_url(settings.repo_url)})")
    commands.append(apt_update_toolkit())
    return Plan("change", "; ".join(did) + f" -> {redact_url(settings.repo_url)}/deb/$(ARCH); refresh its metadata",
                commands, undo)


def plan_package(facts: ProvisionFacts, settings: Settings) -> Plan:
    installed = facts.packages.get(TOOLKIT)
    pin = settings.version
    if pin is None:
        if installed:
            return Plan("none", f"{TOOLKIT} {installed} installed")
        names = [TOOLKIT]
        message = f"install {TOOLKIT}"
    else:
        wrong = {p: facts.packages.get(p) for p in PACKAGES if not version_matches(facts.packages.get(p), pin)}
        if not wrong:
            return Plan("none", f"{TOOLKIT} {installed} installed (pinned {pin})")
        names = list(PACKAGES)
        have = ", ".join(f"{p} {v or 'absent'}" for p, v in wrong.items())
        message = f"{'install' if not installed else 'change'} to {pin} ({have})"
    family = facts.family
    if family == "apt":
        specs = names if pin is None else [f"{n}={apt_version(pin)}" for n in names]
        extra = ["--allow-downgrades"] if pin is not None and installed else []
        commands = [] if plan_repository(facts, settings).commands else [apt_update_toolkit()]
        commands.append(Command(apt_get(*APT_INSTALL, *extra, *specs)))
    elif family in ("dnf", "yum"):
        specs = names if pin is None else [f"{n}-{pin}" for n in names]
        verb = "downgrade" if pin is not None and installed and vercmp(installed, pin) > 0 and \
            not version_matches(installed, pin) else "install"
        commands = [Command(join([family, "-y", verb, *specs]))]
    else:  # zypper
        specs = names if pin is None else [f"{n}-{pin}" for n in names]
        opts = ["--oldpackage"] if pin is not None else []
        commands = [Command(join(["zypper", "--non-interactive", "--gpg-auto-import-keys", "install", "-y",
                                  *opts, *specs]))]
    return Plan("change", message, commands)


def docker_has_nvidia(config: str | None) -> tuple[bool, str | None]:
    """(defined?, error) for /etc/docker/daemon.json's text; a missing or empty file defines nothing."""
    if config is None or not config.strip():
        return False, None
    try:
        data = json.loads(config)
    except ValueError as e:
        return False, f"{DOCKER_CONFIG} is not valid JSON ({e}); fix it first (nvidia-ctk cannot merge into it)"
    if not isinstance(data, dict):
        return False, f"{DOCKER_CONFIG} is not a JSON object; fix it first"
    runtimes = data.get("runtimes")
    return isinstance(runtimes, dict) and "nvidia" in runtimes, None


def _restart(service: str, active: bool | None) -> tuple[list[Command], str]:
    if active:
        return [Command(join(["systemctl", "restart", service]))], f"restart {service} (it is running)"
    if active is None:
        return [], f"{service}'s state is unknown (no systemd): restart it yourself to load the change"
    return [], f"{service} is not running: it loads the change when it starts"


def plan_runtime_docker(facts: ProvisionFacts, settings: Settings) -> Plan:
    if not facts.docker_present:
        return Plan("skip", "docker is not installed (install it, then run provision again to configure it)")
    present, error = docker_has_nvidia(facts.docker_config)
    if error:
        return Plan("fail", error)
    if present:
        return Plan("none", f"{DOCKER_CONFIG} defines the nvidia runtime")
    restart, note = _restart("docker", facts.docker_active)
    return Plan("change", f"add the nvidia runtime to {DOCKER_CONFIG}; {note}",
                [Command(join(["nvidia-ctk", "runtime", "configure", "--runtime=docker"]))] + restart)


def plan_runtime_containerd(facts: ProvisionFacts, settings: Settings) -> Plan:
    if not facts.containerd_present:
        return Plan("skip", "containerd is not installed")
    if facts.containerd_nvidia:
        where = facts.containerd_nvidia[0].split(":", 1)[0]
        return Plan("none", f"{where} defines the nvidia runtime")
    restart, note = _restart("containerd", facts.containerd_active)
    return Plan("change", f"add the nvidia runtime to containerd's configuration; {note}",
                [Command(join(["nvidia-ctk", "runtime", "configure", "--runtime=containerd"]))] + restart)


ALL = ("apt", "dnf", "yum", "zypper")

STEPS = (
    Step("prerequisites", "curl and gnupg", ("apt",), plan_prerequisites),
    Step("repository", "repository definition and signing key", ALL, plan_repository),
    Step("package", "nvidia-container-toolkit package", ALL, plan_package),
    Step("runtime-docker", "docker's nvidia runtime", ALL, plan_runtime_docker),
    Step("runtime-containerd", "containerd's nvidia runtime", ALL, plan_runtime_containerd),
)


def steps_for(facts: ProvisionFacts, settings: Settings) -> list[Step]:
    out = []
    for step in STEPS:
        if facts.family not in step.families:
            continue
        if step.name.startswith("runtime-") and step.name.split("-", 1)[1] not in settings.runtimes:
            continue
        out.append(step)
    return out
