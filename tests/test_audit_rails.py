"""Compute rails and the RDMA port states, on real `ibstat` reports (tests/data/fabric/ibstat, README there)
turned into the sysfs trees the `infiniband` fact reads, the fact run for real over them, then the checks:
the host's own `infiniband` check and the fleet's `consistency:infiniband`."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from fleet.audit.checks_fabric import check_infiniband, compute_rails
from fleet.audit.consistency import fleet_checks
from fleet.audit.expectations import Expectations
from fleet.audit.facts.host import HostFacts
from fleet.audit.facts.infiniband import INFINIBAND, describe_state, parse_ports
from fleet.status import Status
from tests import golden_cases
from tests.fabric_helpers import DATA, run_facts

IBSTAT = DATA / "ibstat"
# ibstat's words -> the kernel's sysfs text (IBA PortInfo numbers, as drivers/infiniband/core/sysfs.c prints them)
_STATE = {"Down": "1: DOWN", "Initializing": "2: INIT", "Armed": "3: ARMED", "Active": "4: ACTIVE"}
_PHYS = {"Sleep": "1: Sleep", "Polling": "2: Polling", "Disabled": "3: Disabled",
         "PortConfigurationTraining": "4: PortConfigurationTraining", "LinkUp": "5: LinkUp",
         "LinkErrorRecovery": "6: LinkErrorRecovery"}


def ibstat_to_sysfs(text: str, root: Path) -> Path:
    """An ``ibstat`` report -> ``root/class/infiniband/<CA>/{hca_type,fw_ver,ports/N/{state,phys_state,rate,
    link_layer}}``.  ibstat gives the rate as a bare number: ``rate`` is written ``N Gb/sec`` without the
    kernel's ``(width speed)`` suffix."""
    ca = port = None
    for line in text.splitlines():
        if m := re.match(r"^CA '([^']+)'", line):
            ca, port = root / "class" / "infiniband" / m[1], None
            (ca / "ports").mkdir(parents=True)
            continue
        key, _, value = line.strip().partition(": ")
        if ca is None:
            continue
        if m := re.match(r"^Port (\d+):$", line.strip()):
            port = ca / "ports" / m[1]
            port.mkdir()
        elif key == "CA type":
            (ca / "hca_type").write_text(value + "\n")
        elif key == "Firmware version":
            (ca / "fw_ver").write_text(value + "\n")
        elif port is not None and key in ("State", "Physical state", "Rate", "Link layer"):
            name, text_value = {"State": ("state", _STATE.get(value)),
                                "Physical state": ("phys_state", _PHYS.get(value)),
                                "Rate": ("rate", f"{value} Gb/sec"), "Link layer": ("link_layer", value)}[key]
            assert text_value, f"{key}: {value!r} has no sysfs form here"
            (port / name).write_text(text_value + "\n")
    return root


def gathered(name: str, tmp_path: Path) -> str:
    return run_facts([INFINIBAND], ibstat_to_sysfs((IBSTAT / name).read_text(), tmp_path))["infiniband"].stdout


CASES = {"roce-two-rails-down-gpud": "gpud-h100-roce-two-rails-down.txt",
         "roce-rails-named-gpud": "gpud-h100-roce-two-rails-down.txt",
         "ib-rails-frontend-down-gpud": "gpud-h100-ib-rails-frontend-down.txt"}


@pytest.mark.parametrize("case", sorted(CASES))
def test_golden_infiniband_sections_are_the_gather_over_the_ibstat_trees(case, tmp_path):
    assert gathered(CASES[case], tmp_path) == (golden_cases.CASES / case / "infiniband.out").read_text()


def ports_of(name: str, tmp_path: Path) -> list[dict]:
    return parse_ports(gathered(name, tmp_path))


def test_roce_node_two_of_eight_rails_down_fails_naming_them(tmp_path):
    ports = ports_of("gpud-h100-roce-two-rails-down.txt", tmp_path)
    rails, source = compute_rails(ports, Expectations())
    assert [p["device"] for p in rails] == ["mlx5_0", "mlx5_10", "mlx5_11", "mlx5_3", "mlx5_4", "mlx5_5", "mlx5_6",
                                            "mlx5_9"]
    assert source == "the host's largest set of identical ports: 8 Ethernet MT4129"
    check = check_infiniband(HostFacts(ib_ports=ports), Expectations())
    assert check.status is Status.FAIL
    assert check.message == (
        "compute rail(s) down: mlx5_5/1, mlx5_11/1 DOWN/Disabled (Ethernet: no carrier: the Ethernet link is down "
        "(cable, transceiver, switch port, or the interface is down); RoCE reports every link-down this way, it does "
        "not mean administratively disabled): 6 of 8 rails left, the node should not take multi-node work; check the "
        "cable, the transceiver and the switch port; list the rails in gpufleet_ib_ports if a port is meant to be "
        "unused")
    assert "slower" not in check.message  # the down rails' 40 Gb/s is a placeholder, not judged
    assert check.observed["compute_rails"] == {"active": 6, "total": 8}
    assert sorted(check.details["other_ports"]) == ["mlx5_1/1", "mlx5_2/1", "mlx5_7/1", "mlx5_8/1"]


def test_ib_rails_all_active_front_end_down_passes_and_reports(tmp_path):
    ports = ports_of("gpud-h100-ib-rails-frontend-down.txt", tmp_path)
    check = check_infiniband(HostFacts(ib_ports=ports), Expectations())
    assert check.status is Status.PASS
    assert check.message.startswith("8 compute rail(s) ACTIVE/LinkUp (400 Gb/sec; rails: the host's largest set of "
                                    "identical ports: 8 InfiniBand MT4129); not compute rails, reported only: "
                                    "mlx5_2/1, mlx5_7/1, mlx5_8/1 DOWN/Disabled (Ethernet: no carrier")
    assert {k: v.split(" (")[0] for k, v in check.details["other_ports"].items()} == {
        "mlx5_1/1": "ACTIVE/LinkUp", "mlx5_2/1": "DOWN/Disabled", "mlx5_7/1": "DOWN/Disabled",
        "mlx5_8/1": "DOWN/Disabled"}


def test_rails_by_name_and_by_count(tmp_path):
    ports = ports_of("gpud-h100-roce-two-rails-down.txt", tmp_path)
    facts = HostFacts(ib_ports=ports)
    # the four MT4125 front-end ports as the rails: all active, the down MT4129 ports are then "other"
    front = Expectations.from_vars({"gpufleet_ib_ports": ["mlx5_1", "mlx5_2/1", "mlx5_7", "mlx5_8"]})
    check = check_infiniband(facts, front)
    assert check.status is Status.PASS and check.message.startswith("4 compute rail(s) ACTIVE/LinkUp (100 Gb/sec")
    assert "reported only: mlx5_5/1, mlx5_11/1 DOWN/Disabled" in check.message and check.expected == {
        "ports": ["mlx5_1", "mlx5_2/1", "mlx5_7", "mlx5_8"]}
    missing = check_infiniband(facts, Expectations.from_vars({"gpufleet_ib_ports": ["mlx5_0", "mlx5_12/1"]}))
    assert missing.status is Status.FAIL and missing.message.startswith(
        "mlx5_12/1 named in gpufleet_ib_ports but not on this host (ports: mlx5_0/1, mlx5_1/1, mlx5_10/1")
    # a count of the link layer: 6 active rails meet 6; 7 do not
    six = Expectations.from_vars({"gpufleet_ib_ports": 6, "gpufleet_ib_link_layer": "roce"})
    ok = check_infiniband(facts, six)
    assert ok.status is Status.PASS
    assert "port(s) down beyond the 6 expected: mlx5_5/1, mlx5_11/1 DOWN/Disabled" in ok.message
    seven = check_infiniband(facts, Expectations.from_vars({"gpufleet_ib_ports": 7, "gpufleet_ib_link_layer": "roce"}))
    assert seven.status is Status.FAIL and "6 active Ethernet compute rail(s), the inventory expects 7" in seven.message


def test_expectation_port_names():
    e = Expectations.from_vars({"gpufleet_ib_ports": ["mlx5_0", " mlx5_1/1 "]})
    assert (e.ib_ports, e.ib_port_names) == (None, ("mlx5_0", "mlx5_1/1"))
    for bad in ([], ["mlx5_0", "mlx5_0"], ["mlx5_0", 3], [""]):
        with pytest.raises(ValueError, match="gpufleet_ib_ports: expected a count or a list of distinct port names"):
            Expectations.from_vars({"gpufleet_ib_ports": bad})


def test_state_words_per_link_layer():
    def port(layer, state, code, phys, phys_code):
        return {"link_layer": layer, "state": state, "state_code": code, "phys_state": phys,
                "phys_state_code": phys_code, "active": False}
    assert describe_state(port("InfiniBand", "DOWN", 1, "Polling", 2)) == (
        "DOWN/Polling (InfiniBand: no link: the port finds no peer (cable, transceiver or the switch port))")
    assert describe_state(port("InfiniBand", "INIT", 2, "LinkUp", 5)) == (
        "INIT/LinkUp (InfiniBand: physical link up, not configured by a subnet manager)")
    assert describe_state(port("InfiniBand", "DOWN", 1, "Disabled", 3)).endswith(
        "(InfiniBand: turned off by management (ibportstate / the switch / the SM))")
    assert describe_state(port("Ethernet", "DOWN", 1, "Disabled", 3)).startswith(
        "DOWN/Disabled (Ethernet: no carrier: the Ethernet link is down")
    assert describe_state({**port("Ethernet", "ACTIVE", 4, "LinkUp", 5), "active": True}) == "ACTIVE/LinkUp"


def _host(ports: list) -> dict:
    return {"state": "ok", "facts": {"gpus": [{"name": "NVIDIA H100 80GB HBM3"}], "ib_ports": ports}}


def test_fleet_majority_counts_the_rails_not_the_front_end(tmp_path):
    """Three hosts of one GPU model: two with every port up (the front-end file with its three down MT4125
    ports brought up: SYNTHETIC), one the real report with the front-end ports down: no consistency failure.
    A host with a rail down fails against the fleet's majority."""
    real = ports_of("gpud-h100-ib-rails-frontend-down.txt", tmp_path)
    all_up = [dict(p, active=True, state="ACTIVE", state_code=4, phys_state="LinkUp", phys_state_code=5) for p in real]
    rail_down = [dict(p) for p in all_up]
    rail_down[0].update(active=False, state="DOWN", state_code=1, phys_state="Polling", phys_state_code=2)
    assert rail_down[0]["device"] == "mlx5_0" and rail_down[0]["link_layer"] == "InfiniBand"
    out = fleet_checks({"a": _host(all_up), "b": _host(all_up), "c": _host(real), "d": _host(rail_down)})
    ib = {h: next(c for c in checks if c.name == "consistency:infiniband") for h, checks in out.items()}
    assert {h: c.status for h, c in ib.items()} == {"a": Status.PASS, "b": Status.PASS, "c": Status.PASS,
                                                   "d": Status.FAIL}
    assert ib["d"].message == ("7 active InfiniBand port(s) where the fleet's NVIDIA H100 80GB HBM3 hosts have 8 "
                               "(3 of 4)")
