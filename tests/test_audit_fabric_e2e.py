"""The fabric checks end to end: real sshd test hosts whose fake nvidia-smi replays recorded ``nvidia-smi nvlink``
outputs, whose /sys is a recorded /sys/class/infiniband tree (``GPUFLEET_SYSFS``), and a stub systemctl."""

from __future__ import annotations

import pytest

from fleet.audit.run import audit_hosts, build_report
from fleet.inventory import parse_inventory
from tests.fabric_helpers import DATA, SYSFS
from tests.sshd import NVSMI
from tests.test_audit_rails import IBSTAT, ibstat_to_sysfs

NVLINK = DATA / "nvlink"


def fake_systemctl(active_state: str, result: str = "success") -> str:
    """``systemctl show --property=... nvidia-fabricmanager.service`` of an installed unit; anything else fails."""
    return ('#!/bin/sh\n[ "$1" = show ] && [ "$3" = nvidia-fabricmanager.service ] || exit 1\n'
            f"printf 'LoadState=loaded\\nActiveState={active_state}\\nSubState=x\\nResult={result}\\n"
            "UnitFileState=enabled\\n'\n")


@pytest.fixture(scope="module")
def report(farm, tmp_path_factory):
    # an A100 SXM4 node: GPU 5 with two links down (SYNTHETIC-DERIVED from a real capture, see
    # tests/data/fabric/README.md), the real gpud H100 InfiniBand tree and what the inventory expects of it
    farm.add_host("a100-links", fixture="a100-sxm4-v12.xml", gpus=1, sysfs=SYSFS / "gpud-h100",
                  nvlink={"-s": NVLINK / "a100-sxm4-80gb-8gpu-status-gpu5-two-down.derived.txt",
                          "-e": NVLINK / "h100-errors-excerpt.txt"},
                  extra_vars={"gpufleet_ib_ports": 8, "gpufleet_ib_rate": 400})
    # a real 8x H100 HGX report (all GPUs registered) with its Fabric Manager service failed
    farm.add_host("h100-fm-down", fixture=str(DATA / "nvidia-smi" / "qx-h100.xml"), gpus=8,
                  stubs={"systemctl": fake_systemctl("failed", "exit-code")})
    farm.add_host("h100-fm-up", fixture=str(DATA / "nvidia-smi" / "qx-h100.xml"), gpus=8,
                  stubs={"systemctl": fake_systemctl("active")})
    # a PCIe workstation: no NVLink, no RDMA device, no NVSwitch, no systemctl
    farm.add_host("workstation", fixture="rtx-3090-v12.xml", gpus=1)
    # an RDMA-only host whose expected port is missing
    farm.add_host("ib-expected", fixture="rtx-3090-v12.xml", gpus=1, extra_vars={"gpufleet_ib_ports": 2})
    # a RoCE node (sysfs derived from gpud's real ibstat, tests/data/fabric/ibstat): two of its eight MT4129 rails
    # DOWN/Disabled; once judged on its own largest set of identical ports, once with the inventory naming the four
    # MT4125 ports (all active) as its rails, in YAML list form
    roce = ibstat_to_sysfs((IBSTAT / "gpud-h100-roce-two-rails-down.txt").read_text(), tmp_path_factory.mktemp("roce"))
    farm.add_host("roce-rails", fixture="rtx-3090-v12.xml", gpus=1, sysfs=roce)
    farm.add_host("roce-named", fixture="rtx-3090-v12.xml", gpus=1, sysfs=roce,
                  extra_vars={"gpufleet_ib_ports": ["mlx5_1", "mlx5_2", "mlx5_7", "mlx5_8"]})
    inv = parse_inventory(farm.inventory(["a100-links", "h100-fm-down", "h100-fm-up", "workstation", "ib-expected",
                                          "roce-rails", "roce-named"]), "fabric.yaml")
    return build_report(audit_hosts(inv.select("all"), farm.options(command_timeout=30), progress=False),
                        "fabric.yaml", "all")


def checks(report, host):
    return {c["name"]: c for c in report["hosts"][host]["checks"]}


def test_fixture_paths():
    assert (NVSMI / "a100-sxm4-v12.xml").exists()


def test_nvlink_down_and_infiniband_as_expected(report):
    c = checks(report, "a100-links")
    assert c["nvlink"]["status"] == "fail" and "GPU 5: 10 of 12 links active" in c["nvlink"]["message"]
    assert c["infiniband"]["status"] == "pass", c["infiniband"]
    facts = report["hosts"]["a100-links"]["facts"]
    assert [g["active"] for g in facts["nvlink"]] == [12, 12, 12, 12, 12, 10, 12, 12]
    assert facts["nvlink_counters"][0]["totals"] == {"replay": 0, "recovery": 0, "crc": 0}
    assert len(facts["ib_ports"]) == 9 and facts["ib_ports"][1]["counters"]["link_downed"] == 255
    assert report["hosts"]["a100-links"]["status"] == "fail"


def test_fabric_manager_down_is_seen(report):
    down = checks(report, "h100-fm-down")["fabric-manager"]
    assert down["status"] == "fail" and "nvidia-fabricmanager is failed" in down["message"]
    assert report["hosts"]["h100-fm-down"]["status"] == "fail"
    up = checks(report, "h100-fm-up")["fabric-manager"]
    assert up["status"] == "pass" and "8 GPU(s) registered" in up["message"]


def test_workstation_skips_the_fabric(report):
    c = checks(report, "workstation")
    assert {n: c[n]["status"] for n in ("nvlink", "infiniband", "fabric-manager")} == {
        "nvlink": "skip", "infiniband": "skip", "fabric-manager": "skip"}
    assert report["hosts"]["workstation"]["facts"]["ib_ports"] == []  # the host's own empty /sys, never ours
    assert c["infiniband"]["message"] == "no InfiniBand/RoCE device on this host"


def test_expected_ports_missing_fail(report):
    c = checks(report, "ib-expected")["infiniband"]
    assert c["status"] == "fail" and "expects 2" in c["message"]


def test_roce_rails_down_fail_and_named_rails_decide(report):
    c = checks(report, "roce-rails")["infiniband"]
    assert c["status"] == "fail" and c["message"].startswith(
        "compute rail(s) down: mlx5_5/1, mlx5_11/1 DOWN/Disabled (Ethernet: no carrier")
    assert c["observed"]["compute_rails"] == {"active": 6, "total": 8}
    named = checks(report, "roce-named")["infiniband"]
    assert named["status"] == "pass" and named["expected"] == {"ports": ["mlx5_1", "mlx5_2", "mlx5_7", "mlx5_8"]}
    assert named["details"]["compute_rails"] == ["mlx5_1/1", "mlx5_2/1", "mlx5_7/1", "mlx5_8/1"]
    assert "reported only: mlx5_5/1, mlx5_11/1 DOWN/Disabled" in named["message"]
