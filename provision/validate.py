"""After installing: is the toolkit really usable?  One round trip, pure analysis.

Checks (``fleet.status.Check``): ``nvidia-ctk`` answers ``--version`` (and matches a pin),
each configured runtime lists the ``nvidia`` runtime (docker: ``docker info``, or
``daemon.json`` when the daemon is not running; containerd: its configuration), and,
when asked and Docker is present, a container smoke test
(``docker run --rm --gpus all <image> nvidia-smi``).
"""

from __future__ import annotations

from fleet.audit.facts.toolkit import parse_ctk_version, parse_docker_runtimes
from fleet.shell import join
from fleet.status import Check, Status
from provision.facts import DOCKER_CONFIG, ProvisionFacts, Section, framed_script, split_sections
from provision.settings import Settings
from provision.steps import docker_has_nvidia, upstream

HEADER = "gpufleet-provision-validate 1"


def validate_script(facts: ProvisionFacts, settings: Settings) -> str:
    lines = ["_p_run ctk nvidia-ctk --version"]
    if "docker" in settings.runtimes and facts.docker_present:
        lines.append(f"_p_run docker-config _p_file {DOCKER_CONFIG}")
        lines.append("if _p_have docker; then _p_run docker-info docker info --format '{{json .Runtimes}}'; fi")
    if "containerd" in settings.runtimes and facts.containerd_present:
        lines.append("_p_run containerd-nvidia _p_containerd")
    if settings.smoke_test and facts.docker_present:
        lines.append("_p_run smoke " + join(["docker", "run", "--rm", "--gpus", "all", settings.smoke_image,
                                             "nvidia-smi"]))
    return framed_script("\n".join(lines) + "\n", HEADER)


def _first(text: str, n: int = 1) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return " / ".join(lines[:n])[:300]


def _last(text: str, n: int = 3) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return " / ".join(lines[-n:])[:400]


def analyse(output: str, facts: ProvisionFacts, settings: Settings) -> list[Check]:
    s = split_sections(output, f"@@{HEADER}@@")
    checks = [_ctk(s.get("ctk"), settings)]
    if "docker" in settings.runtimes:
        checks.append(_docker(s, facts))
    if "containerd" in settings.runtimes:
        checks.append(_containerd(s.get("containerd-nvidia"), facts))
    checks.append(_smoke(s.get("smoke"), facts, settings))
    return checks


def _ctk(x: Section | None, settings: Settings) -> Check:
    if x is None or x.rc == 127 or (x.rc != 0 and "not found" in x.stderr):
        return Check("nvidia-ctk", Status.FAIL, "nvidia-ctk not found after installing the toolkit",
                     expected="nvidia-ctk on PATH")
    if x.rc != 0:
        return Check("nvidia-ctk", Status.FAIL, f"nvidia-ctk --version exited {x.rc}: {_last(x.stderr or x.stdout)}")
    version = parse_ctk_version(x.stdout)
    if version is None:
        return Check("nvidia-ctk", Status.FAIL, f"nvidia-ctk --version printed no version: {_first(x.stdout)!r}")
    if settings.version and version != upstream(settings.version):
        return Check("nvidia-ctk", Status.FAIL, f"nvidia-ctk is {version}, pinned {settings.version}",
                     observed=version, expected=upstream(settings.version))
    return Check("nvidia-ctk", Status.PASS, _first(x.stdout), observed=version)


def _docker(s: dict, facts: ProvisionFacts) -> Check:
    name = "docker-runtime"
    if not facts.docker_present:
        return Check(name, Status.SKIP, "docker is not installed")
    cfg = s.get("docker-config")
    configured, error = docker_has_nvidia(cfg.stdout if cfg is not None and cfg.rc == 0 else None)
    info = s.get("docker-info")
    if info is not None and info.rc == 0:
        try:
            runtimes = parse_docker_runtimes(info.stdout)
        except ValueError as e:
            return Check(name, Status.FAIL, f"unreadable docker info output: {e}")
        if "nvidia" in runtimes:
            return Check(name, Status.PASS, f"docker lists the nvidia runtime ({', '.join(runtimes)})",
                         observed=runtimes, expected="nvidia")
        hint = "; restart docker to load it" if configured else ""
        return Check(name, Status.FAIL, f"docker does not list the nvidia runtime ({', '.join(runtimes) or 'none'})"
                     + hint, observed=runtimes, expected="nvidia")
    if error:
        return Check(name, Status.FAIL, error)
    why = _last(info.stderr, 1) if info is not None else "no docker CLI"
    if configured:
        return Check(name, Status.WARN, f"{DOCKER_CONFIG} defines the nvidia runtime, but docker did not answer "
                     f"({why}): not confirmed by a running daemon", expected="nvidia")
    return Check(name, Status.FAIL, f"{DOCKER_CONFIG} has no nvidia runtime and docker did not answer ({why})")


def _containerd(x: Section | None, facts: ProvisionFacts) -> Check:
    name = "containerd-runtime"
    if not facts.containerd_present:
        return Check(name, Status.SKIP, "containerd is not installed")
    lines = [line for line in (x.stdout if x else "").splitlines() if line.strip()]
    if lines:
        return Check(name, Status.PASS, f"{lines[0].split(':', 1)[0]} defines the nvidia runtime")
    return Check(name, Status.FAIL, "containerd's configuration defines no nvidia runtime")


def _smoke(x: Section | None, facts: ProvisionFacts, settings: Settings) -> Check:
    name = "smoke-test"
    if not settings.smoke_test:
        return Check(name, Status.SKIP, "not asked (--smoke-test)")
    if not facts.docker_present:
        return Check(name, Status.SKIP, "docker is not installed")
    if x is None:
        return Check(name, Status.SKIP, "not run")
    command = f"docker run --rm --gpus all {settings.smoke_image} nvidia-smi"
    if x.rc == 0:
        gpu_lines = [line for line in x.stdout.splitlines() if "NVIDIA" in line or "MiB" in line]
        return Check(name, Status.PASS, f"{command}: {_first(chr(10).join(gpu_lines) or x.stdout, 2)}",
                     observed="exit 0")
    return Check(name, Status.FAIL, f"{command} exited {x.rc}: {_last(x.stderr or x.stdout)}",
                 observed=f"exit {x.rc}", expected="exit 0")
