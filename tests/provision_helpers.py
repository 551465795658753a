"""Recorded fact-script output for the distribution families this machine cannot run, and a fake transport.

:func:`recorded` writes what :func:`provision.facts.fact_script` prints on a host, section by
section, in its framing, so the pure planning tests go through the real parser.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field

from fleet import framing
from fleet.framing import Section
from fleet.inventory import Host
from fleet.transport import CommandResult, SshOptions
from provision import facts as F

OS_RELEASE = {
    "debian12": 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\nVERSION_ID="12"\n'
                'VERSION_CODENAME=bookworm\nID=debian\n',
    "ubuntu2204": 'PRETTY_NAME="Ubuntu 22.04.4 LTS"\nNAME="Ubuntu"\nVERSION_ID="22.04"\nID=ubuntu\nID_LIKE=debian\n',
    "pop2204": 'NAME="Pop!_OS"\nVERSION_ID="22.04"\nID=pop\nID_LIKE="ubuntu debian"\nPRETTY_NAME="Pop!_OS 22.04 LTS"\n',
    "rocky9": 'NAME="Rocky Linux"\nVERSION="9.4 (Blue Onyx)"\nID="rocky"\nID_LIKE="rhel centos fedora"\n'
              'VERSION_ID="9.4"\nPRETTY_NAME="Rocky Linux 9.4 (Blue Onyx)"\n',
    "alma8": 'NAME="AlmaLinux"\nVERSION_ID="8.10"\nID="almalinux"\nID_LIKE="rhel centos fedora"\n'
             'PRETTY_NAME="AlmaLinux 8.10 (Cerulean Leopard)"\n',
    "centos7": 'NAME="CentOS Linux"\nVERSION="7 (Core)"\nID="centos"\nID_LIKE="rhel fedora"\nVERSION_ID="7"\n'
               'PRETTY_NAME="CentOS Linux 7 (Core)"\n',
    "fedora40": 'NAME="Fedora Linux"\nVERSION_ID=40\nID=fedora\nPRETTY_NAME="Fedora Linux 40 (Server Edition)"\n',
    "amzn2023": 'NAME="Amazon Linux"\nVERSION="2023"\nID="amzn"\nID_LIKE="fedora"\nVERSION_ID="2023"\n'
                'PRETTY_NAME="Amazon Linux 2023.4.20240611"\n',
    "rhel9": 'NAME="Red Hat Enterprise Linux"\nVERSION_ID="9.4"\nID="rhel"\nID_LIKE="fedora"\n'
             'PRETTY_NAME="Red Hat Enterprise Linux 9.4 (Plow)"\n',
    "sles15": 'NAME="SLES"\nVERSION="15-SP5"\nVERSION_ID="15.5"\nPRETTY_NAME="SUSE Linux Enterprise Server 15 SP5"\n'
              'ID="sles"\nID_LIKE="suse"\n',
    "leap15": 'NAME="openSUSE Leap"\nVERSION="15.6"\nID="opensuse-leap"\nID_LIKE="suse opensuse"\n'
              'VERSION_ID="15.6"\nPRETTY_NAME="openSUSE Leap 15.6"\n',
    "arch": 'NAME="Arch Linux"\nPRETTY_NAME="Arch Linux"\nID=arch\nBUILD_ID=rolling\n',
    "alpine": 'NAME="Alpine Linux"\nID=alpine\nVERSION_ID=3.20.0\nPRETTY_NAME="Alpine Linux v3.20"\n',
}

RPM_TOOLS = ["rpm", "curl", "gpg", "base64", "systemctl"]


def frame(sections: dict[str, tuple[str, str, int]], header: str = F.HEADER) -> str:
    """{name: (stdout, stderr, rc)} -> the script's framed output, after a login shell's noise."""
    return "Last login: noise a login shell prints\n" + framing.frame(
        {name: Section(*value) for name, value in sections.items()}, header, F.PREFIX)


def _file(content: str | None) -> tuple[str, str, int]:
    return (content, "", 0) if content is not None else ("", "", 3)


def recorded(os: str, tools: list[str], packages: dict[str, str] | None = None, *, uid: int = 0,
             apt_list: str | None = None, keyring: bytes | None = None, key: bytes | None = None,
             key_error: str | None = None, yum_repo: str | None = None, zypp_repo: str | None = None,
             docker_config: str | None = None, docker_dir: bool = False, docker_active: str | None = None,
             containerd_nvidia: str = "", containerd_active: str | None = None, ca: bool = True,
             arch: str = "x86_64") -> str:
    """What the fact script prints on such a host."""
    packages = packages or {}
    s: dict[str, tuple[str, str, int]] = {
        "id": (str(uid), "", 0),
        "os-release": (OS_RELEASE[os], "", 0),
        "arch": (arch, "", 0),
        "tools": ("\n".join(tools), "", 0),
    }
    names = ("nvidia-container-toolkit", "nvidia-container-toolkit-base", "libnvidia-container-tools",
             "libnvidia-container1")
    if "dpkg-query" in tools:
        lines = [f"{n}\tii \t{packages[n]}" for n in names if n in packages]
        missing = [f"dpkg-query: no packages found matching {n}" for n in names if n not in packages]
        s["dpkg"] = ("\n".join(lines), "\n".join(missing), 1 if missing else 0)
    if "rpm" in tools:
        lines = [f"{n}\t{packages[n]}" if n in packages else f"package {n} is not installed" for n in names]
        s["rpm"] = ("\n".join(lines), "", sum(n not in packages for n in names))
    s["apt-list"] = _file(apt_list)
    s["keyring"] = _file(None if keyring is None else base64.b64encode(keyring).decode())
    s["yum-repo"] = _file(yum_repo)
    s["zypp-repo"] = _file(zypp_repo)
    s["ca"] = ("/etc/ssl/certs/ca-certificates.crt" if ca else "", "", 0)
    if key is not None:
        s["key-fetch"] = (base64.b64encode(key).decode(), "", 0)
    elif key_error is not None:
        s["key-fetch"] = ("", key_error, 22)
    s["docker-dir"] = ("", "", 0 if docker_dir or docker_config is not None else 1)
    s["docker-config"] = _file(docker_config)
    s["containerd-nvidia"] = (containerd_nvidia, "", 0)
    if "systemctl" in tools:
        s["docker-active"] = (docker_active or "inactive", "", 0 if docker_active == "active" else 3)
        s["containerd-active"] = (containerd_active or "inactive", "", 0 if containerd_active == "active" else 3)
    return frame(s)


@dataclass
class FakeTransport:
    """Answers the fact script with a recorded output and every other command with ``answers``."""

    facts_output: str
    answers: dict = field(default_factory=dict)  # substring of a command -> CommandResult kwargs
    become: bool = False
    user: str = "root"
    ran: list = field(default_factory=list)
    options: SshOptions = field(default_factory=SshOptions)

    def __post_init__(self):
        self.host = Host("fake", {"ansible_user": self.user, "ansible_become": self.become})

    def run(self, command, timeout=None, stdin=None, sudo=False):
        self.ran.append(command)
        if "@@gpufleet-provision 1@@" in command:
            return CommandResult(command, 0, self.facts_output, "")
        for needle, answer in self.answers.items():
            if needle in command:
                return CommandResult(command, answer.get("rc", 0), answer.get("stdout", ""), answer.get("stderr", ""))
        return CommandResult(command, 0, "", "")

    def close(self):
        pass
