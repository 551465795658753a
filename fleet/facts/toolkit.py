"""nvidia-container-toolkit (``nvidia-ctk --version``) and Docker's runtimes."""

from __future__ import annotations

import json
import re


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
