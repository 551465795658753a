"""InfiniBand / RoCE ports.  Fact ``infiniband``: every port under ``/sys/class/infiniband/*/ports/*/``
(state, physical state, rate, link layer, the device's HCA type and firmware, and the port's error
counters), read with sh builtins: no ibstat, no root.

The sysfs root is ``${GPUFLEET_SYSFS:-/sys}`` (tests point it at a recorded tree).  Values are the kernel's
text (``4: ACTIVE``, ``5: LinkUp``, ``400 Gb/sec (4X NDR)``, ``InfiniBand`` / ``Ethernet``), as documented in
the kernel's sysfs-class-infiniband ABI; state numbers are the InfiniBand Architecture's PortInfo values
(1 DOWN, 2 INIT, 3 ARMED, 4 ACTIVE, 5 ACTIVE_DEFER; physical: 1 Sleep, 2 Polling, 3 Disabled,
4 PortConfigurationTraining, 5 LinkUp, 6 LinkErrorRecovery, 7 Phy Test).  Counters are reported as they
stand (since boot or the last reset); this fact does not judge them.

What a state means depends on the link layer (:func:`describe_state`).  On InfiniBand the subnet management
protocol sets them: physical ``Disabled`` is a port turned off by management (``ibportstate ... disable``, the
switch or the SM).  On Ethernet (RoCE) there is no such protocol: the RDMA drivers derive both from the network
interface, ACTIVE/LinkUp when it is running with carrier and DOWN/Disabled otherwise (Linux
drivers/infiniband/hw/mlx5/main.c ``mlx5_query_port_roce``; bnxt_re, irdma, qedr, ocrdma, mana the same; rxe
says Polling for an interface that is up without carrier), so a RoCE port that reads ``Disabled`` has no
carrier (cable, transceiver, switch port, or the interface down), whoever caused it.  Such a port's rate is a
placeholder (mlx5: ``40 Gb/sec (4X QDR)``), as is a down InfiniBand port's.

Output, one block per port (at most :data:`MAX_PORTS`)::

    port mlx5_0 1
    state: 4: ACTIVE
    phys_state: 5: LinkUp
    rate: 400 Gb/sec (4X NDR)
    link_layer: InfiniBand
    hca_type: MT4129
    fw_ver: 28.41.1000
    counter symbol_error: 0
"""

from __future__ import annotations

import re

from fleet.audit.facts.fact import Fact, first_line
from fleet.framing import Section

MAX_PORTS = 64
# The error counters of the PortCounters attribute the kernel exposes under ports/N/counters/.
ERROR_COUNTERS = ("symbol_error", "link_error_recovery", "link_downed", "port_rcv_errors",
                  "port_rcv_remote_physical_errors", "port_rcv_switch_relay_errors", "port_xmit_discards",
                  "port_xmit_constraint_errors", "port_rcv_constraint_errors", "local_link_integrity_errors",
                  "excessive_buffer_overrun_errors", "VL15_dropped")
NO_DEVICES = "no InfiniBand/RoCE device"

_COMMAND = """\
_gf_ib=${GPUFLEET_SYSFS:-/sys}/class/infiniband
if [ ! -d "$_gf_ib" ]; then echo "%(none)s: $_gf_ib absent"; return 0; fi
_gf_n=0
for _gf_p in "$_gf_ib"/*/ports/*; do
    [ -d "$_gf_p" ] || continue
    _gf_n=$((_gf_n + 1)); [ "$_gf_n" -le %(max)d ] || { echo "more than %(max)d ports: the rest skipped" >&2; break; }
    _gf_d=${_gf_p%%/ports/*}
    echo "port ${_gf_d##*/} ${_gf_p##*/}"
    for _gf_f in state phys_state rate link_layer ../../hca_type ../../fw_ver; do
        [ -r "$_gf_p/$_gf_f" ] || continue
        _gf_v=; read -r _gf_v 2>/dev/null < "$_gf_p/$_gf_f" || [ -n "$_gf_v" ] || continue
        echo "${_gf_f##*/}: $_gf_v"
    done
    for _gf_f in %(counters)s; do
        [ -r "$_gf_p/counters/$_gf_f" ] || continue
        _gf_v=; read -r _gf_v 2>/dev/null < "$_gf_p/counters/$_gf_f" || [ -n "$_gf_v" ] || continue
        echo "counter $_gf_f: $_gf_v"
    done
done
[ "$_gf_n" -gt 0 ] || echo "%(none)s: $_gf_ib is empty"
""" % {"none": NO_DEVICES, "max": MAX_PORTS, "counters": " ".join(ERROR_COUNTERS)}

_NUMBERED = re.compile(r"^\s*(\d+)\s*:\s*(.*?)\s*$")
_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*Gb/sec\b", re.IGNORECASE)
ACTIVE = 4
LINK_UP = 5


# the physical state's meaning, per link layer (see the module docstring)
_PHYS_IB = {1: "asleep", 2: "no link: the port finds no peer (cable, transceiver or the switch port)",
            3: "turned off by management (ibportstate / the switch / the SM)", 4: "training the link",
            5: "link up", 6: "recovering from link errors", 7: "in a physical test mode"}
_PHYS_ETH = {2: "no carrier: the Ethernet link is down (cable, transceiver, switch port) though the interface "
                "is up",
             3: "no carrier: the Ethernet link is down (cable, transceiver, switch port, or the interface is down); "
                "RoCE reports every link-down this way, it does not mean administratively disabled",
             5: "link up"}
_LOGICAL_IB = {1: "link down", 2: "physical link up, not configured by a subnet manager",
               3: "configured by the subnet manager, not yet active", 4: "active", 5: "active (deferred)"}


def describe_state(port: dict) -> str:
    """The port's states in the kernel's words and what they mean for its link layer::

        "DOWN/Disabled (Ethernet: no carrier: the Ethernet link is down ...)"
    """
    words = f"{port.get('state') or '?'}/{port.get('phys_state') or '?'}"
    if port.get("active"):
        return words
    layer, phys, state = port.get("link_layer") or "unknown link layer", port.get("phys_state_code"), \
        port.get("state_code")
    if layer == "Ethernet":
        meaning = _PHYS_ETH.get(phys) or "not active"
    elif phys == LINK_UP:
        meaning = _LOGICAL_IB.get(state) or "not active"
    else:
        meaning = _PHYS_IB.get(phys) or _LOGICAL_IB.get(state) or "not active"
    return f"{words} ({layer}: {meaning})"


def _numbered(value: str | None) -> tuple[int | None, str | None]:
    """``"4: ACTIVE"`` -> ``(4, "ACTIVE")``."""
    if value is None:
        return None, None
    m = _NUMBERED.match(value)
    return (int(m.group(1)), m.group(2) or None) if m else (None, value.strip() or None)


def parse_rate(value: str | None) -> float | None:
    """``"400 Gb/sec (4X NDR)"`` -> ``400.0``; ``"2.5 Gb/sec (1X SDR)"`` -> ``2.5``."""
    m = _RATE.match(value or "")
    return float(m.group(1)) if m else None


def _counter(value: str) -> int | None:
    """``"123"`` -> 123; ``"N/A (no PMA)"`` and anything else -> None."""
    value = value.strip()
    return int(value) if value.isdigit() else None


def parse_ports(output: str) -> list[dict]:
    """The fact's output -> one dict per port::

        {"device": "mlx5_0", "port": 1, "state": "ACTIVE", "state_code": 4, "phys_state": "LinkUp",
         "phys_state_code": 5, "rate": "400 Gb/sec (4X NDR)", "rate_gbps": 400.0, "link_layer": "InfiniBand",
         "hca_type": "MT4129", "fw_ver": "28.41.1000", "active": True, "counters": {"symbol_error": 0, ...}}

    ``active``: state ACTIVE and physical state LinkUp.  ``[]`` when the host has no device.
    """
    ports: list[dict] = []
    for line in output.splitlines():
        if line.startswith("port "):
            parts = line.split()
            if len(parts) != 3:
                continue
            ports.append({"device": parts[1], "port": int(parts[2]) if parts[2].isdigit() else parts[2],
                          "counters": {}})
            continue
        if not ports or ":" not in line:
            continue
        port = ports[-1]
        key, _, value = line.partition(":")
        value = value.strip()
        if key.startswith("counter "):
            port["counters"][key[len("counter "):].strip()] = _counter(value)
        elif key in ("state", "phys_state"):
            port[f"{key}_code"], port[key] = _numbered(value)
        elif key in ("rate", "link_layer", "hca_type", "fw_ver"):
            port[key] = value or None
    for port in ports:
        port["rate_gbps"] = parse_rate(port.get("rate"))
        port["active"] = port.get("state_code") == ACTIVE and port.get("phys_state_code") == LINK_UP
        for key in ("state", "state_code", "phys_state", "phys_state_code", "rate", "link_layer", "hca_type",
                    "fw_ver"):
            port.setdefault(key, None)
    return ports


def _infiniband(s: Section) -> dict:
    if s.rc != 0:
        return {"ib_error": f"reading /sys/class/infiniband failed (exit {s.rc}): {first_line(s.stderr)}"}
    notes = [f"infiniband: {first_line(s.stderr)}"] if s.stderr.strip() else []
    return {"ib_ports": parse_ports(s.stdout), "notes": notes}


INFINIBAND = Fact("infiniband", _COMMAND, _infiniband)
