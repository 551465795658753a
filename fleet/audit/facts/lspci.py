"""Fact ``lspci`` (``lspci -nn``): NVIDIA display-class devices (vendor 10de, class 03xx: VGA 0300,
3D 0302, other 0380)."""

from __future__ import annotations

import re

from fleet.audit.facts.fact import Fact, missing_or_failed
from fleet.framing import Section

NVIDIA_VENDOR = "10de"

# 3b:00.0 3D controller [0302]: NVIDIA Corporation GA100 [A100 SXM4 80GB] [10de:20b2] (rev a1)
_LINE = re.compile(
    r"^(?P<slot>\S+)\s+(?P<class_name>.+?)\s+\[(?P<class>[0-9a-fA-F]{4})\]:\s+(?P<desc>.*?)"
    r"\s*\[(?P<vendor>[0-9a-fA-F]{4}):(?P<device>[0-9a-fA-F]{4})\](?:\s+\(.*\))*\s*$"
)


def parse_lspci(output: str) -> list[dict]:
    """NVIDIA GPUs listed by ``lspci -nn``: [{slot, class, class_name, device_id, description}]."""
    gpus = []
    for line in output.splitlines():
        m = _LINE.match(line.strip())
        if not m:
            continue
        if m["vendor"].lower() != NVIDIA_VENDOR or not m["class"].startswith("03"):
            continue
        gpus.append({
            "slot": m["slot"],
            "class": m["class"],
            "class_name": m["class_name"],
            "device_id": f"{m['vendor']}:{m['device']}".lower(),
            "description": m["desc"],
        })
    return gpus


def _lspci(s: Section) -> dict:
    if s.rc != 0:
        return {"lspci_error": missing_or_failed("lspci", s, " (install pciutils)")}
    gpus = parse_lspci(s.stdout)
    return {"lspci_gpus": gpus, "lspci_gpu_count": len(gpus)}


LSPCI = Fact("lspci", "lspci -nn", _lspci, timeout=20)
