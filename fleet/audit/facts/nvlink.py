"""NVLink, per GPU.  Facts ``nvlink-status`` (``nvidia-smi nvlink -s``: each link's speed, or ``<inactive>``)
and ``nvlink-errors`` (``nvidia-smi nvlink -e``: each link's replay, recovery and CRC error counters).

Both run only when ``nvidia-smi -q -x`` worked.  What ``nvidia-smi nvlink -s`` prints (real outputs in
tests/data/fabric/README.md)::

    GPU 0: NVIDIA A100-SXM4-80GB (UUID: GPU-5269b708-...)
             Link 0: 25 GB/s
             Link 4: <inactive>

A GPU without NVLink prints no ``Link`` line (an A10: empty output), or, when it has NVLink but every
link is down or unbridged, ``NVML: Unable to retrieve NVLink information as all links are inActive``.
Counters are reported as they stand (since the driver loaded or the last ``nvidia-smi nvlink -r``).
"""

from __future__ import annotations

import re

from fleet.audit.facts.fact import Fact, first_line, missing_or_failed, succeeded
from fleet.framing import Section

_GPU = re.compile(r"^\s*GPU\s+(?P<index>\d+)\s*:\s*(?P<name>.*?)\s*(?:\(UUID:\s*(?P<uuid>[^)]*)\))?\s*$")
# "Link 0: 26.562 GB/s", "Link 3: <inactive>", "Link 0: 0 GB/s"
_LINK = re.compile(r"^\s*Link\s+(?P<link>\d+)\s*:\s*(?P<value>.*?)\s*$")
_SPEED = re.compile(r"^(?P<num>\d+(?:\.\d+)?)\s*GB/s$", re.IGNORECASE)
# "Link 0: Replay Errors: 0" (one counter per line), or, on newer drivers, "Link 0:" followed by
# indented "<Counter Name>: <value>" lines.
_COUNTER = re.compile(r"^\s*(?:Link\s+(?P<link>\d+)\s*:\s*)?(?P<name>[A-Za-z][A-Za-z0-9 ./_-]*?)\s*:\s*"
                      r"(?P<value>\d+|N/A)\s*$")
ALL_INACTIVE = "all links are inactive"


def _key(name: str) -> str:
    """``"Replay Errors"`` -> ``"replay"``; ``"CRC Flit Error"`` -> ``"crc_flit"``."""
    words = re.sub(r"\berrors?\b", "", name.lower())
    return "_".join(re.findall(r"[a-z0-9]+", words)) or "errors"


def parse_nvlink_status(output: str) -> list[dict]:
    """``nvidia-smi nvlink -s`` -> one entry per GPU, in order::

        {"gpu": 0, "name": "NVIDIA A100-SXM4-80GB", "uuid": "GPU-...", "links": [{"link": 0, "active": True,
         "speed_gbs": 25.0}, ...], "active": 12, "total": 12, "all_inactive": False}

    ``active``: links with a speed above 0 GB/s; ``total``: links listed; ``all_inactive``: NVML said every
    link is inactive (no Link lines).  Lines that are neither a GPU header nor a link are ignored.
    """
    gpus: list[dict] = []
    for line in output.splitlines():
        m = _GPU.match(line)
        if m:
            gpus.append({"gpu": int(m["index"]), "name": m["name"] or None, "uuid": m["uuid"], "links": [],
                         "active": 0, "total": 0, "all_inactive": False})
            continue
        if not gpus:
            continue
        gpu = gpus[-1]
        if ALL_INACTIVE in line.lower():
            gpu["all_inactive"] = True
            continue
        m = _LINK.match(line)
        if not m:
            continue
        value = m["value"]
        speed = _SPEED.match(value)
        speed_gbs = float(speed["num"]) if speed else None
        active = speed_gbs is not None and speed_gbs > 0
        gpu["links"].append({"link": int(m["link"]), "active": active, "speed_gbs": speed_gbs,
                             **({} if speed else {"state": value.strip("<>") or None})})
        gpu["total"] += 1
        gpu["active"] += active
    return gpus


def parse_nvlink_errors(output: str) -> list[dict]:
    """``nvidia-smi nvlink -e`` -> one entry per GPU::

        {"gpu": 0, "uuid": "GPU-...", "links": [{"link": 0, "replay": 0, "recovery": 0, "crc": 0}, ...],
         "totals": {"replay": 0, "recovery": 0, "crc": 0}}

    Counter names are lowercased without "errors" (``CRC Flit Error`` -> ``crc_flit``); ``N/A`` is None and
    left out of the totals.
    """
    gpus: list[dict] = []
    link = None
    for line in output.splitlines():
        m = _GPU.match(line)
        if m:
            gpus.append({"gpu": int(m["index"]), "uuid": m["uuid"], "links": [], "totals": {}})
            link = None
            continue
        if not gpus:
            continue
        gpu = gpus[-1]
        header = re.match(r"^\s*Link\s+(\d+)\s*:\s*$", line)
        if header:
            link = int(header.group(1))
            continue
        m = _COUNTER.match(line)
        if not m:
            continue
        number = int(m["link"]) if m["link"] is not None else link
        if number is None:
            continue
        entry = next((x for x in gpu["links"] if x["link"] == number), None)
        if entry is None:
            entry = {"link": number}
            gpu["links"].append(entry)
        key = _key(m["name"])
        value = None if m["value"] == "N/A" else int(m["value"])
        entry[key] = value
        if value is not None:
            gpu["totals"][key] = gpu["totals"].get(key, 0) + value
    return gpus


def _status(s: Section) -> dict:
    gpus = parse_nvlink_status(s.stdout) if s.rc not in (124, 127, 137) else []
    if s.rc != 0 and not gpus:
        return {"nvlink_error": missing_or_failed("nvidia-smi nvlink -s", s)}
    # a non-zero exit with per-GPU output (NVML's "all links are inActive" on some GPUs) still says what it saw
    notes = [f"nvidia-smi nvlink -s exited {s.rc}: {first_line(s.stderr) or 'no message'}"] if s.rc else []
    return {"nvlink": gpus, "notes": notes}


def _errors(s: Section) -> dict:
    gpus = parse_nvlink_errors(s.stdout) if s.rc not in (124, 127, 137) else []
    if s.rc != 0 and not gpus:
        return {"nvlink_counters_error": missing_or_failed("nvidia-smi nvlink -e", s)}
    return {"nvlink_counters": gpus}


NVLINK_STATUS = Fact("nvlink-status", "nvidia-smi nvlink -s", _status, timeout=30, when=succeeded("nvidia-smi"))
NVLINK_ERRORS = Fact("nvlink-errors", "nvidia-smi nvlink -e", _errors, timeout=30, when=succeeded("nvlink-status"))
