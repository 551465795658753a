"""Facts ``nvidia-ctk`` (the container toolkit's ``nvidia-ctk --version``) and ``docker-runtimes``
(Docker's runtimes)."""

from __future__ import annotations

import json
import re

from fleet.audit.facts.fact import Fact, have, missing_or_failed
from fleet.framing import Section


def parse_ctk_version(output: str) -> str | None:
    """``NVIDIA Container Toolkit CLI version 1.14.3`` -> ``"1.14.3"``."""
    m = re.search(r"version\s+v?(\d+(?:\.\d+)+\S*)", output)
    return m.group(1) if m else None


def parse_docker_runtimes(output: str) -> list[str]:
    """``docker info --format '{{json .Runtimes}}'`` -> sorted runtime names.  Raises ValueError on non-JSON."""
    text = output.strip()
    if not text:
        return []
    data = json.loads(text)
    if data is None:
        return []
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object of runtimes, got {type(data).__name__}")
    return sorted(data)


def _ctk(s: Section) -> dict:
    if s.rc != 0:
        return {"toolkit_error": missing_or_failed("nvidia-ctk", s)}
    return {"toolkit_version": parse_ctk_version(s.stdout)}


def _docker(s: Section) -> dict:
    if s.rc == 127:
        return {"docker_error": "docker not installed"}
    if s.rc != 0:
        return {"docker_error": missing_or_failed("docker info", s)}
    try:
        return {"docker_runtimes": parse_docker_runtimes(s.stdout)}
    except ValueError as exc:
        return {"docker_error": f"unreadable docker info output: {exc}"}


NVIDIA_CTK = Fact("nvidia-ctk", "nvidia-ctk --version", _ctk, timeout=10)

DOCKER_RUNTIMES = Fact("docker-runtimes", "docker info --format '{{json .Runtimes}}'", _docker, timeout=10,
                       when=have("docker"), absent=Section("", "docker: not found", 127))
