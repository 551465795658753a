"""NVSwitch systems (HGX/DGX): the Fabric Manager.  Facts ``nvswitch`` (NVSwitch devices on the PCI bus, from
sysfs) and ``fabric-manager`` (the ``nvidia-fabricmanager`` systemd service), and :func:`parse_fabric`, the
parser of each GPU's ``<fabric>`` element of ``nvidia-smi -q -x`` (kept raw in ``GpuFacts.fabric`` by the
nvidia-smi fact; also reads the same block of ``nvidia-smi -q``'s text).

A GPU's fabric ``state`` is NVML's GPU fabric registration probe state (``nvmlGpuFabricInfo_t``):
``Not Supported`` (N/A: the GPU is in no NVLink fabric), ``Not Started``, ``In Progress``, ``Completed``;
``status`` (NVML's return code as text, ``Success``) is meaningful only once the state is ``Completed``.
The Fabric Manager user guide: CUDA can only initialise after the GPUs complete their registration with
the NVLink fabric; a GPU that fails to register loses its NVLink peer-to-peer capability.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from fleet.audit.facts.fact import Fact, first_line, have, missing_or_failed
from fleet.audit.facts.values import clean
from fleet.framing import Section

# <fabric> children (schema v12/v13) and <health> children -> the keys parse_fabric returns.
_XML_KEYS = {"state": "state", "status": "status", "cliqueId": "clique_id", "clusterUuid": "cluster_uuid",
             "summary": "health_summary", "bandwidth": "health_bandwidth",
             "route_recovery_in_progress": "route_recovery_in_progress", "route_unhealthy": "route_unhealthy",
             "access_timeout_recovery": "access_timeout_recovery",
             "incorrect_configuration": "incorrect_configuration", "partition_assigned": "partition_assigned"}
# The same fields as `nvidia-smi -q` prints them ("    Fabric" block, "State : Completed").
_TEXT_KEYS = {"state": "state", "status": "status", "cliqueid": "clique_id", "clusteruuid": "cluster_uuid",
              "summary": "health_summary", "bandwidth": "health_bandwidth",
              "route recovery in progress": "route_recovery_in_progress", "route unhealthy": "route_unhealthy",
              "access timeout recovery": "access_timeout_recovery",
              "incorrect configuration": "incorrect_configuration", "partition assigned": "partition_assigned"}
FABRIC_KEYS = tuple(dict.fromkeys(_XML_KEYS.values()))
UNIT = "nvidia-fabricmanager.service"


def raw_fabric(gpu: ET.Element) -> dict:
    """The leaf values under a ``<gpu>``'s ``<fabric>``, as text: ``{"state": "Completed", "summary": ...}``."""
    return {e.tag: (e.text or "").strip() for e in gpu.iterfind("fabric//*") if not len(e)}


def _from_text(text: str) -> dict:
    values, inside, indent = {}, False, 0
    for line in text.splitlines():
        if not line.strip():
            continue
        depth = len(line) - len(line.lstrip())
        if line.strip().lower() == "fabric":
            inside, indent = True, depth
            continue
        if inside and depth <= indent:
            break
        if inside and ":" in line:
            key, _, value = line.partition(":")
            values[key.strip()] = value.strip()
    return {_TEXT_KEYS[k.lower()]: v for k, v in values.items() if k.lower() in _TEXT_KEYS}


def parse_fabric(source: ET.Element | dict | str | None) -> dict:
    """One GPU's fabric information -> ``{state, status, clique_id, cluster_uuid, health_summary, ...}``.

    ``source``: the ``<gpu>`` (or ``<fabric>``) XML element, the raw ``{tag: text}`` dict of
    :func:`raw_fabric`, or ``nvidia-smi -q`` text holding a ``Fabric`` block.  N/A-like values are None;
    ``{}`` when there is no fabric information at all (drivers before the fabric element).
    """
    if source is None:
        return {}
    if isinstance(source, str):
        raw = _from_text(source)
    else:
        if isinstance(source, ET.Element):
            element = source if source.tag == "fabric" else source.find("fabric")
            if element is None:
                return {}
            source = {e.tag: (e.text or "").strip() for e in element.iter() if e is not element and not len(e)}
        raw = {_XML_KEYS[k]: v for k, v in source.items() if k in _XML_KEYS}
    if not raw:
        return {}
    return {key: clean(raw.get(key)) for key in FABRIC_KEYS if key in raw}


def in_fabric(fabric: dict) -> bool:
    """The GPU reports a fabric registration state (it belongs to an NVLink fabric): not N/A/Not Supported."""
    return fabric.get("state") is not None


def fabric_ok(fabric: dict) -> bool:
    return (fabric.get("state") or "").lower() == "completed" and (fabric.get("status") or "").lower() == "success"


# ---------------------------------------------------------------- NVSwitch on the PCI bus

# NVIDIA (0x10de) functions of class 0x0680 ("Bridge: other"): how NVSwitches enumerate (lspci -nn:
# "Bridge [0680]: NVIDIA Corporation Device [10de:1af1]" on HGX A100, 22a3 on HGX H100).
_NVSWITCH_COMMAND = """\
_gf_pci=${GPUFLEET_SYSFS:-/sys}/bus/pci/devices
if [ ! -d "$_gf_pci" ]; then echo "$_gf_pci absent" >&2; return 1; fi
for _gf_d in "$_gf_pci"/*; do
    [ -r "$_gf_d/vendor" ] && [ -r "$_gf_d/class" ] || continue
    _gf_v=; read -r _gf_v 2>/dev/null < "$_gf_d/vendor" || [ -n "$_gf_v" ] || continue
    [ "$_gf_v" = 0x10de ] || continue
    _gf_c=; read -r _gf_c 2>/dev/null < "$_gf_d/class" || [ -n "$_gf_c" ] || continue
    case $_gf_c in 0x0680*) ;; *) continue ;; esac
    _gf_i=; read -r _gf_i 2>/dev/null < "$_gf_d/device"
    echo "${_gf_d##*/} $_gf_c $_gf_i"
done"""

_NVSWITCH_LINE = re.compile(r"^\s*(\S+)\s+(0x0680\w*)\s*(0x[0-9a-fA-F]+)?\s*$")


def parse_nvswitches(output: str) -> list[dict]:
    """``0000:05:00.0 0x068000 0x1af1`` lines -> ``[{"slot", "class", "device"}]``."""
    found = []
    for line in output.splitlines():
        m = _NVSWITCH_LINE.match(line)
        if m:
            found.append({"slot": m.group(1), "class": m.group(2), "device": m.group(3)})
    return found


def _nvswitch(s: Section) -> dict:
    if s.rc != 0:
        return {"nvswitch_error": f"PCI devices unreadable (exit {s.rc}): {first_line(s.stderr)}"}
    return {"nvswitches": parse_nvswitches(s.stdout)}


# ---------------------------------------------------------------- the nvidia-fabricmanager service

_PROPERTIES = ("LoadState", "ActiveState", "SubState", "Result", "UnitFileState")


def parse_systemctl_show(output: str) -> dict:
    """``systemctl show -p LoadState,ActiveState,... UNIT`` (``Key=Value`` lines) -> ``{"load_state": ...}``."""
    values = {}
    for line in output.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() in _PROPERTIES:
            values[re.sub(r"(?<!^)(?=[A-Z])", "_", key.strip()).lower()] = value.strip() or None
    return values


def _fabric_manager(s: Section) -> dict:
    if s.rc != 0:
        return {"fabric_manager_error": missing_or_failed("systemctl", s)}
    service = parse_systemctl_show(s.stdout)
    if not service:
        return {"fabric_manager_error": f"unreadable systemctl output: {first_line(s.stdout) or '(empty)'}"}
    return {"fabric_manager": service}


NVSWITCH = Fact("nvswitch", _NVSWITCH_COMMAND, _nvswitch)
# `systemctl show` needs no root and tells a unit that is not installed (LoadState=not-found) from one
# that is stopped or failed; on a host without systemd it does not run.
FABRIC_MANAGER = Fact("fabric-manager", f"systemctl show --property={','.join(_PROPERTIES)} {UNIT}",
                      _fabric_manager, timeout=10, when=have("systemctl"),
                      absent=Section("", "systemctl: not found", 127))
