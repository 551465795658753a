"""The fabric area: NVLink, InfiniBand/RoCE, Fabric Manager.  Parsers on the real outputs of
tests/data/fabric (README there), the gather commands run for real (sh, dash) over recorded sysfs trees,
and the checks' rules, including the synthetic cases each test names as such."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from fleet.audit import AUDIT_SCRIPT, analyse
from fleet.audit.checks_fabric import (check_fabric_manager, check_infiniband, check_nvlink, fleet_majority,
                                       observed_figures)
from fleet.audit.expectations import Expectations
from fleet.audit.facts.fabric import (FABRIC_MANAGER, NVSWITCH, _nvswitch, parse_fabric, parse_systemctl_show,
                                      raw_fabric)
from fleet.audit.facts.host import HostFacts
from fleet.audit.facts.infiniband import INFINIBAND, parse_ports, parse_rate
from fleet.audit.facts.nvidia_smi import parse_xml, safe_fromstring
from fleet.audit.facts.nvlink import _status, parse_nvlink_errors, parse_nvlink_status
from fleet.framing import Section
from fleet.status import Status
from tests import golden_cases
from tests.fabric_helpers import DATA, SYSFS, run_facts

NVLINK = DATA / "nvlink"
SMI = DATA / "nvidia-smi"
SHELLS = [s for s in ("sh", "dash") if shutil.which(s)]


def read(path: Path) -> str:
    return path.read_text()


# ---------------------------------------------------------------- nvidia-smi nvlink parsers (real outputs)

def test_nvlink_status_a100_sxm4_8gpu():
    gpus = parse_nvlink_status(read(NVLINK / "a100-sxm4-80gb-8gpu-status.txt"))
    assert [g["gpu"] for g in gpus] == list(range(8))
    assert {g["name"] for g in gpus} == {"NVIDIA A100-SXM4-80GB"}
    assert gpus[0]["uuid"] == "GPU-5269b708-678a-b1a8-60f0-c90406537486"
    assert all(g["active"] == 12 and g["total"] == 12 for g in gpus)
    assert {x["speed_gbs"] for g in gpus for x in g["links"]} == {25.0}


def test_nvlink_status_h100_pcie_bridged_pair():
    gpus = parse_nvlink_status(read(NVLINK / "h100-pcie-2gpu-bridged-status.txt"))
    assert [(g["active"], g["total"]) for g in gpus] == [(12, 18), (12, 18)]
    inactive = [x["link"] for x in gpus[1]["links"] if not x["active"]]
    assert inactive == [4, 5, 10, 11, 16, 17]
    assert gpus[0]["links"][4] == {"link": 4, "active": False, "speed_gbs": None, "state": "inactive"}
    assert gpus[0]["links"][0]["speed_gbs"] == 26.562


def test_nvlink_status_without_nvlink():
    assert parse_nvlink_status(read(NVLINK / "a10-status.txt")) == []
    gpus = parse_nvlink_status(read(NVLINK / "a100-pcie-2gpu-unbridged-status.txt"))
    assert [(g["gpu"], g["active"], g["total"], g["all_inactive"]) for g in gpus] == [(0, 0, 0, True), (1, 0, 0, True)]


def test_nvlink_status_v100_excerpt_with_inactive_links():
    """Azure/azhpc-diagnostics#73: the author's elision (....) and UUID (...) are ignored."""
    (gpu,) = parse_nvlink_status(read(NVLINK / "v100-sxm2-two-inactive-excerpt.txt"))
    assert (gpu["gpu"], gpu["name"], gpu["active"], gpu["total"]) == (3, "Tesla V100-SXM2-32GB", 4, 6)


def test_nvlink_errors_h100_excerpt():
    (gpu,) = parse_nvlink_errors(read(NVLINK / "h100-errors-excerpt.txt"))
    assert [x["link"] for x in gpu["links"]] == [0, 1, 17]
    assert gpu["links"][0] == {"link": 0, "replay": 0, "recovery": 0, "crc": 0}
    assert gpu["totals"] == {"replay": 0, "recovery": 0, "crc": 0}


def test_nvlink_errors_newer_layout():
    """SYNTHETIC: the per-link block layout (``Link 0:`` then indented counters) some drivers print."""
    text = ("GPU 0: NVIDIA B200 (UUID: GPU-x)\n\t Link 0:\n\t\t CRC Flit Error: 3\n\t\t Replay Error: 2\n"
            "\t Link 1:\n\t\t CRC Flit Error: N/A\n")
    (gpu,) = parse_nvlink_errors(text)
    assert gpu["links"] == [{"link": 0, "crc_flit": 3, "replay": 2}, {"link": 1, "crc_flit": None}]
    assert gpu["totals"] == {"crc_flit": 3, "replay": 2}


# ---------------------------------------------------------------- <fabric> (real XML and text)

def test_fabric_element_of_real_hgx_captures():
    log = parse_xml(read(SMI / "qx-h100.xml"))
    assert len(log.gpus) == 8
    fabrics = [parse_fabric(g.fabric) for g in log.gpus]
    assert {(f["state"], f["status"]) for f in fabrics} == {("Completed", "Success")}
    assert fabrics[0]["health_summary"] is None and fabrics[0]["clique_id"] == "0"
    b200 = parse_xml(read(SMI / "qx-b200.xml"))
    assert {parse_fabric(g.fabric)["health_summary"] for g in b200.gpus} == {"Healthy"}
    a100 = parse_xml(read(SMI / "qx-a100.xml"))
    assert parse_fabric(a100.gpus[0].fabric)["state"] is None


def test_fabric_parser_takes_the_element_the_raw_dict_or_the_text():
    root = safe_fromstring(read(SMI / "qx-h100.xml"))
    gpu = root.find("gpu")
    assert parse_fabric(gpu) == parse_fabric(gpu.find("fabric")) == parse_fabric(raw_fabric(gpu))
    assert parse_xml(read(SMI / "qx-h100.xml")).gpus[0].fabric == raw_fabric(gpu)
    stuck = parse_fabric(read(SMI / "fabric-text-in-progress-gpu-operator-2511.txt"))
    assert stuck["state"] == "In Progress" and stuck["status"] is None and stuck["partition_assigned"] is None
    bad = parse_fabric(read(SMI / "fabric-text-insufficient-resources-azhpc-images-506.txt"))
    assert (bad["state"], bad["status"], bad["clique_id"]) == ("Completed", "Insufficient Resources", "0")
    sick = parse_fabric(read(SMI / "fabric-text-unhealthy-dra-driver-626.txt"))
    assert (sick["health_summary"], sick["health_bandwidth"]) == ("Unhealthy", "Full")
    assert parse_fabric(None) == {} and parse_fabric("no fabric here") == {}


# ---------------------------------------------------------------- InfiniBand: the gather over real trees

@pytest.mark.parametrize("shell", SHELLS)
def test_infiniband_gather_over_the_gpud_h100_tree(shell):
    section = run_facts([INFINIBAND], SYSFS / "gpud-h100", shell=shell)["infiniband"]
    assert section.rc == 0 and section.stderr == ""
    ports = parse_ports(section.stdout)
    assert [p["device"] for p in ports] == ["mlx5_0", "mlx5_1", "mlx5_4", "mlx5_5", "mlx5_6", "mlx5_7", "mlx5_8",
                                            "mlx5_9", "mlx5_bond_0"]
    assert all(p["active"] for p in ports)
    assert {(p["link_layer"], p["rate_gbps"], p["hca_type"]) for p in ports} == {
        ("InfiniBand", 400.0, "MT4129"), ("Ethernet", 200.0, "MT41692")}
    assert ports[1]["counters"]["link_downed"] == 255 and ports[0]["counters"]["port_rcv_errors"] == 14
    assert ports[0]["state"] == "ACTIVE" and ports[0]["phys_state_code"] == 5


def test_infiniband_gather_over_node_exporter_tree():
    ports = parse_ports(run_facts([INFINIBAND], SYSFS / "node-exporter")["infiniband"].stdout)
    assert [(p["device"], p["port"], p["rate"]) for p in ports] == [
        ("i40iw0", 1, "10 Gb/sec (4X)"), ("mlx4_0", 1, "40 Gb/sec (4X QDR)"), ("mlx4_0", 2, "40 Gb/sec (4X QDR)")]
    assert ports[0]["counters"]["symbol_error"] is None  # "N/A (no PMA)"
    assert ports[1]["counters"]["port_xmit_discards"] == 5


def test_infiniband_without_devices(tmp_path):
    section = run_facts([INFINIBAND], tmp_path)["infiniband"]
    assert section.rc == 0 and parse_ports(section.stdout) == []
    (tmp_path / "class" / "infiniband").mkdir(parents=True)
    assert "is empty" in run_facts([INFINIBAND], tmp_path)["infiniband"].stdout


@pytest.mark.parametrize("case", ["hgx-h100-fabric-healthy", "ib-no-gpu-node-exporter"])
def test_golden_infiniband_sections_are_the_gather_over_the_recorded_trees(case):
    tree = {"hgx-h100-fabric-healthy": "gpud-h100", "ib-no-gpu-node-exporter": "node-exporter"}[case]
    recorded = (golden_cases.CASES / case / "infiniband.out").read_text()
    assert run_facts([INFINIBAND], SYSFS / tree)["infiniband"].stdout == recorded


def test_rates():
    assert parse_rate("400 Gb/sec (4X NDR)") == 400.0 and parse_rate("2.5 Gb/sec (1X SDR)") == 2.5
    assert parse_rate("10 Gb/sec (4X)") == 10.0 and parse_rate(None) is None and parse_rate("garbage") is None


# ---------------------------------------------------------------- NVSwitch and the service

def _pci(root: Path, slot: str, vendor: str, cls: str, device: str) -> None:
    d = root / "bus" / "pci" / "devices" / slot
    d.mkdir(parents=True)
    (d / "vendor").write_text(vendor + "\n")
    (d / "class").write_text(cls + "\n")
    (d / "device").write_text(device + "\n")


@pytest.mark.parametrize("shell", SHELLS)
def test_nvswitch_gather(tmp_path, shell):
    """SYNTHETIC sysfs PCI tree with the ids of the real lspci listing (tests/data/fabric/lspci-a100-...)."""
    _pci(tmp_path, "0001:00:00.0", "0x10de", "0x030200", "0x20b2")  # an A100 (3D controller)
    _pci(tmp_path, "0005:00:00.0", "0x10de", "0x068000", "0x1af1")  # an NVSwitch
    _pci(tmp_path, "0101:00:00.0", "0x15b3", "0x020700", "0x101c")  # a ConnectX-6 VF
    sections = run_facts([NVSWITCH], tmp_path, shell=shell)
    assert sections["nvswitch"].stdout == "0005:00:00.0 0x068000 0x1af1\n"
    assert _nvswitch(sections["nvswitch"]) == {"nvswitches": [{"slot": "0005:00:00.0", "class": "0x068000",
                                                               "device": "0x1af1"}]}
    missing = run_facts([NVSWITCH], tmp_path / "nothing")["nvswitch"]
    assert missing.rc == 1 and "absent" in missing.stderr


def test_systemctl_show_and_the_unit_fact(tmp_path):
    assert parse_systemctl_show("LoadState=loaded\nActiveState=failed\nSubState=failed\nResult=exit-code\n"
                                "UnitFileState=enabled\n") == {
        "load_state": "loaded", "active_state": "failed", "sub_state": "failed", "result": "exit-code",
        "unit_file_state": "enabled"}
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stub = bin_dir / "systemctl"
    stub.write_text('#!/bin/sh\n[ "$1 $2" = "show --property=LoadState,ActiveState,SubState,Result,UnitFileState" ]'
                    ' && [ "$3" = nvidia-fabricmanager.service ] || exit 9\n'
                    "printf 'LoadState=not-found\\nActiveState=inactive\\nSubState=dead\\nResult=success\\n"
                    "UnitFileState=\\n'\n")
    stub.chmod(0o755)
    for tool in ("timeout",):
        if shutil.which(tool):
            (bin_dir / tool).symlink_to(shutil.which(tool))
    section = run_facts([FABRIC_MANAGER], tmp_path, path=str(bin_dir))["fabric-manager"]
    assert section.rc == 0
    assert parse_systemctl_show(section.stdout)["load_state"] == "not-found"
    assert run_facts([FABRIC_MANAGER], tmp_path, path=str(tmp_path / "empty")) == {}  # no systemctl: not run


# ---------------------------------------------------------------- checks

def test_fleet_majority():
    assert fleet_majority([18, 18, 17, 18]) == (18, 3)
    assert fleet_majority([12, 10]) == (12, 1)  # a tie goes to the larger figure
    assert fleet_majority([400.0, None, 200.0, 400.0]) == (400.0, 2)
    assert fleet_majority([]) == (None, 0)


def _nvlink_facts(name: str) -> HostFacts:
    return HostFacts(nvlink=parse_nvlink_status(read(NVLINK / name)))


def test_nvlink_check_expectation_and_majority():
    bridged = _nvlink_facts("h100-pcie-2gpu-bridged-status.txt")
    assert check_nvlink(bridged, Expectations()).status is Status.PASS
    assert check_nvlink(bridged, Expectations(nvlink_count=12)).status is Status.PASS
    short = check_nvlink(bridged, Expectations(nvlink_count=18))
    assert short.status is Status.FAIL and "12 of 18" in short.message and "4, 5, 10, 11, 16, 17" in short.message
    more = check_nvlink(bridged, Expectations(nvlink_count=8))
    assert more.status is Status.PASS and "more active links" in more.message
    v100 = _nvlink_facts("v100-sxm2-two-inactive-excerpt.txt")
    assert check_nvlink(v100, Expectations(nvlink_count=6)).status is Status.FAIL
    assert check_nvlink(v100, Expectations()).status is Status.PASS  # one GPU: its own count is the majority


def test_nvlink_check_skips_pcie_and_unknown():
    assert check_nvlink(_nvlink_facts("a10-status.txt"), Expectations()).status is Status.SKIP
    unbridged = _nvlink_facts("a100-pcie-2gpu-unbridged-status.txt")
    assert check_nvlink(unbridged, Expectations()).status is Status.SKIP
    assert check_nvlink(unbridged, Expectations(nvlink_count=12)).status is Status.FAIL
    assert check_nvlink(HostFacts(), Expectations()).status is Status.SKIP
    failed = HostFacts(nvlink_error="nvidia-smi nvlink -s failed (exit 2): unsupported")
    assert check_nvlink(failed, Expectations()).status is Status.SKIP
    assert check_nvlink(failed, Expectations(nvlink_count=18)).status is Status.ERROR


def test_nvlink_counters_are_reported_not_judged():
    facts = _nvlink_facts("a100-sxm4-80gb-8gpu-status.txt")
    facts.nvlink_counters = [{"gpu": 2, "links": [], "totals": {"replay": 7, "recovery": 0, "crc": 1}}]
    check = check_nvlink(facts, Expectations())
    assert check.status is Status.PASS and "GPU 2: crc 1, replay 7" in check.message
    assert check.details["error_counters"] == {2: {"replay": 7, "crc": 1}}


def _ib(tree: str = "gpud-h100") -> HostFacts:
    return HostFacts(ib_ports=parse_ports(run_facts([INFINIBAND], SYSFS / tree)["infiniband"].stdout))


def test_infiniband_expectations_count_one_link_layer():
    facts = _ib()
    assert check_infiniband(facts, Expectations(ib_ports=8, ib_rate=400)).status is Status.PASS
    assert check_infiniband(facts, Expectations(ib_ports=9)).status is Status.FAIL  # the bond is Ethernet
    slow = check_infiniband(facts, Expectations(ib_rate=800))
    assert slow.status is Status.FAIL and "mlx5_0/1 400 Gb/sec (4X NDR) < 800 Gb/s" in slow.message
    roce = check_infiniband(facts, Expectations(ib_ports=1, ib_rate=200, ib_link_layer="Ethernet"))
    assert roce.status is Status.PASS
    assert observed_figures(facts)["ib_active_ports"] == {"InfiniBand": 8, "Ethernet": 1}
    assert observed_figures(facts.to_dict()) == observed_figures(facts)  # the report's facts work too
    figures = observed_figures(_nvlink_facts("a100-sxm4-80gb-8gpu-status-gpu5-two-down.derived.txt"))
    assert figures["nvlink_active"] == {"NVIDIA A100-SXM4-80GB": [12, 12, 12, 12, 12, 10, 12, 12]}
    assert fleet_majority(min(v) for v in ([12] * 8, [12, 10], [12] * 8)) == (12, 2)


def test_infiniband_port_states():
    """SYNTHETIC states on the real gpud tree's ports."""
    facts = _ib()
    ports = facts.ib_ports

    def with_port(i, **kw):
        changed = [dict(p) for p in ports]
        changed[i].update(kw, active=False)
        return replace(facts, ib_ports=changed)

    polling = with_port(3, state="DOWN", state_code=1, phys_state="Polling", phys_state_code=2)
    assert check_infiniband(polling, Expectations()).status is Status.FAIL
    assert check_infiniband(polling, Expectations(ib_ports=8)).status is Status.FAIL  # only 7 active
    assert check_infiniband(polling, Expectations(ib_ports=7)).status is Status.PASS  # the spare port is unused
    init = with_port(3, state="INIT", state_code=2, phys_state="LinkUp", phys_state_code=5)
    no_sm = check_infiniband(init, Expectations(ib_ports=7))
    assert no_sm.status is Status.FAIL and "subnet manager" in no_sm.message
    disabled = with_port(3, state="DOWN", state_code=1, phys_state="Disabled", phys_state_code=3)
    off = check_infiniband(disabled, Expectations())
    assert off.status is Status.FAIL  # a compute rail (one of the 8 identical NDR ports) is gone
    assert off.message.startswith("compute rail(s) down: mlx5_5/1 DOWN/Disabled (InfiniBand: turned off by "
                                  "management (ibportstate / the switch / the SM)): 7 of 8 rails left")
    # the Ethernet bond is not one of the 8 identical ports: down, it is reported, not judged
    bond_down = with_port(8, state="DOWN", state_code=1, phys_state="Disabled", phys_state_code=3)
    spare = check_infiniband(bond_down, Expectations())
    assert spare.status is Status.PASS and spare.details["other_ports"] == {
        "mlx5_bond_0/1": "DOWN/Disabled (Ethernet: no carrier: the Ethernet link is down (cable, transceiver, switch "
                         "port, or the interface is down); RoCE reports every link-down this way, it does not mean "
                         "administratively disabled)"}
    assert "not compute rails, reported only: mlx5_bond_0/1 DOWN/Disabled (Ethernet: no carrier" in spare.message
    degraded = [dict(p) for p in ports]
    degraded[2].update(rate="200 Gb/sec (2X NDR)", rate_gbps=200.0)
    slow = check_infiniband(replace(facts, ib_ports=degraded), Expectations())
    assert slow.status is Status.FAIL and "mlx5_4/1 200 Gb/sec (2X NDR) < 400 Gb/s" in slow.message


def test_infiniband_absent_or_unknown():
    assert check_infiniband(HostFacts(ib_ports=[]), Expectations()).status is Status.SKIP
    assert check_infiniband(HostFacts(ib_ports=[]), Expectations(ib_ports=8)).status is Status.FAIL
    assert check_infiniband(HostFacts(), Expectations()).status is Status.SKIP
    assert check_infiniband(HostFacts(ib_error="x"), Expectations(ib_rate=400)).status is Status.ERROR


def _hgx(xml: str = "qx-h100.xml", **kw) -> HostFacts:
    log = parse_xml(read(SMI / xml))
    return HostFacts(gpus=log.gpus, **kw)


SERVICE = {"load_state": "loaded", "active_state": "active", "sub_state": "running", "result": "success"}


def test_fabric_manager_check():
    assert check_fabric_manager(_hgx(fabric_manager=SERVICE)).status is Status.PASS
    down = check_fabric_manager(_hgx(fabric_manager={**SERVICE, "active_state": "failed", "result": "exit-code"}))
    assert down.status is Status.FAIL and "nvidia-fabricmanager is failed" in down.message
    # the GPU Operator runs it in its driver container: no unit on the host, the GPUs' state decides
    operator = check_fabric_manager(_hgx(fabric_manager={"load_state": "not-found", "active_state": "inactive"}))
    assert operator.status is Status.PASS and "driver container" in operator.message
    assert check_fabric_manager(_hgx("qx-a100.xml")).status is Status.SKIP
    a100_hgx = _hgx("qx-a100.xml", nvswitches=[{"slot": "0005:00:00.0", "class": "0x068000", "device": "0x1af1"}])
    assert check_fabric_manager(a100_hgx).status is Status.WARN  # nothing confirms the fabric
    assert check_fabric_manager(replace(a100_hgx, fabric_manager=SERVICE)).status is Status.PASS


def test_fabric_manager_check_on_the_real_text_states():
    facts = _hgx(fabric_manager=SERVICE)
    for name, status, words in (("fabric-text-in-progress-gpu-operator-2511.txt", Status.FAIL, "In Progress"),
                                ("fabric-text-insufficient-resources-azhpc-images-506.txt", Status.FAIL,
                                 "Insufficient Resources"),
                                ("fabric-text-unhealthy-dra-driver-626.txt", Status.WARN, "Unhealthy")):
        gpus = [replace(g) for g in facts.gpus]
        text = read(SMI / name)
        gpus[3].fabric = {k: v for k, v in _as_raw(text).items()}
        check = check_fabric_manager(replace(facts, gpus=gpus))
        assert check.status is status and words in check.message and "GPU 3" in check.message, check.message


def _as_raw(text: str) -> dict:
    """The text block's values under the XML tag names, as GpuFacts.fabric holds them."""
    tags = {"state": "state", "status": "status", "clique_id": "cliqueId", "cluster_uuid": "clusterUuid",
            "health_summary": "summary", "health_bandwidth": "bandwidth"}
    return {tags[k]: v or "N/A" for k, v in parse_fabric(text).items() if k in tags}


def test_expectation_variables():
    e = Expectations.from_vars({"gpufleet_nvlink_count": "18", "gpufleet_ib_ports": 8, "gpufleet_ib_rate": "400 Gb/s",
                                "gpufleet_ib_link_layer": "roce"})
    assert (e.nvlink_count, e.ib_ports, e.ib_rate, e.ib_link_layer) == (18, 8, 400.0, "Ethernet")
    assert Expectations.from_vars({}).ib_link_layer == "InfiniBand"
    for bad in ({"gpufleet_nvlink_count": -1}, {"gpufleet_ib_ports": "eight"}, {"gpufleet_ib_rate": 0},
                {"gpufleet_ib_rate": "fast"}, {"gpufleet_ib_link_layer": "omnipath"}, {"gpufleet_nvlink_count": True}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            Expectations.from_vars(bad)


@pytest.mark.parametrize("shell", SHELLS)
def test_whole_gather_script_in_one_round_trip(tmp_path, shell):
    """AUDIT_SCRIPT itself (sh and dash): the real 8x H100 report, a fake nvidia-smi replaying the real A100 SXM4
    `nvlink -s` and the H100 `nvlink -e` excerpt, the gpud InfiniBand tree as /sys, a stub systemctl."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("cat", "sed", "grep", "mktemp", "rm", "timeout"):
        if shutil.which(tool):
            (bin_dir / tool).symlink_to(shutil.which(tool))
    scripts = {
        "nvidia-smi": f"""case "$*" in
  "nvlink -s") cat '{NVLINK / "a100-sxm4-80gb-8gpu-status.txt"}' ;;
  "nvlink -e") cat '{NVLINK / "h100-errors-excerpt.txt"}' ;;
  -q*) cat '{SMI / "qx-h100.xml"}' ;;
  *) exit 2 ;;
esac""",
        "systemctl": "printf 'LoadState=loaded\\nActiveState=active\\nSubState=running\\nResult=success\\n'",
    }
    for name, body in scripts.items():
        (bin_dir / name).write_text("#!/bin/sh\n" + body + "\n")
        (bin_dir / name).chmod(0o755)
    proc = subprocess.run([shutil.which(shell), "-c", AUDIT_SCRIPT], capture_output=True, text=True, timeout=60,
                          env={"PATH": str(bin_dir), "HOME": str(tmp_path), "GPUFLEET_SYSFS": str(SYSFS / "gpud-h100")})
    assert proc.returncode == 0, proc.stderr
    audit = analyse(proc.stdout, Expectations(nvlink_count=12, ib_ports=8, ib_rate=400))
    by = {c.name: c for c in audit.checks}
    assert (by["nvlink"].status, by["infiniband"].status, by["fabric-manager"].status) == (
        Status.PASS, Status.PASS, Status.PASS), [by[n].message for n in ("nvlink", "infiniband", "fabric-manager")]
    assert len(audit.facts.nvlink) == 8 and audit.facts.nvlink_counters[0]["totals"]["crc"] == 0
    assert audit.facts.fabric_manager["active_state"] == "active"
    assert audit.facts.nvswitch_error  # the recorded tree has no bus/pci: unknown, not a failure


def test_nvlink_status_exit_code():
    """SYNTHETIC exit statuses around the real unbridged A100 output."""
    text = read(NVLINK / "a100-pcie-2gpu-unbridged-status.txt")
    kept = _status(Section(text, "", 1))
    assert len(kept["nvlink"]) == 2 and kept["notes"] == ["nvidia-smi nvlink -s exited 1: no message"]
    timed_out = _status(Section("", "timed out", 124))
    assert timed_out == {"nvlink_error": "nvidia-smi nvlink -s failed (exit 124): timed out"}
    assert _status(Section("", "nvidia-smi: not found", 127))["nvlink_error"] == "nvidia-smi nvlink -s not installed"
