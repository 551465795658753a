"""GPU health facts end to end: real sshd hosts whose nvidia-smi replays real captures or prints nvidia-smi's real
failure texts (tests/sshd.py's modes), and whose ``ls /proc/driver/nvidia/gpus`` lists the driver's GPUs."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleet.audit.run import audit_hosts, build_report
from fleet.inventory import parse_inventory
from tests.sshd import fake_driver_gpus

DATA = Path(__file__).resolve().parent / "data" / "nvidia-smi"


@pytest.fixture(scope="module")
def report(farm):
    farm.add_host("lost", fixture=None, nvidia_smi_mode="lost", gpus=4,
                  stubs={"ls": fake_driver_gpus([f"0000:0{i}:00.0" for i in range(1, 5)])})
    farm.add_host("inforom", fixture="rtx-3060-v12.xml", nvidia_smi_mode="inforom")
    farm.add_host("blank-line", fixture="rtx-3060-v12.xml", nvidia_smi_mode="blank-line")
    farm.add_host("driver-sees-more", fixture="rtx-3060-v12.xml", gpus=1,
                  stubs={"ls": fake_driver_gpus(["0000:2d:00.0", "0000:41:00.0"])})
    farm.add_host("h100-faults", fixture=str(DATA / "synthetic-h100-faults-v13.xml"), gpus=1,
                  stubs={"ls": fake_driver_gpus(["0000:00:06.0"])})
    farm.add_host("a5000-pair", fixture=str(DATA / "telegraf-dual-a5000-v13.xml"), gpus=2,
                  stubs={"ls": fake_driver_gpus(["0000:81:00.0", "0000:c1:00.0"])})
    farm.add_host("no-gpu", fixture=None, gpus=0)
    farm.add_host("no-gpu-by-design", fixture=None, gpus=0, extra_vars={"gpufleet_gpu_count": 0})
    farm.add_host("no-gpu-but-expected", fixture=None, gpus=0, extra_vars={"gpufleet_gpu_count": 8})
    inv = parse_inventory(farm.inventory(["lost", "inforom", "blank-line", "driver-sees-more", "h100-faults",
                                          "a5000-pair", "no-gpu", "no-gpu-by-design", "no-gpu-but-expected"]),
                          "audit.yaml")
    result = audit_hosts(inv.select("all"), farm.options(command_timeout=20), progress=False)
    return build_report(result, "audit.yaml", "all")


def checks(report, host):
    return {c["name"]: c for c in report["hosts"][host]["checks"]}


def test_lost_gpu_is_a_failed_gpu_with_its_remedy(report):
    c = checks(report, "lost")
    smi = c["nvidia-smi"]
    assert smi["status"] == "fail" and smi["observed"] == "gpu-lost", smi
    assert "0000:02:00.0" in smi["message"] and "reset" in smi["message"] and "reseat" in smi["message"]
    missing = c["gpu-missing"]
    assert missing["status"] == "fail" and missing["details"]["missing"] == ["0000:02:00.0"], missing
    facts = report["hosts"]["lost"]["facts"]
    assert facts["gpus_lost"][0]["pci_bus_id"] == "0000:02:00.0"
    assert facts["driver_gpu_bus_ids"] == [f"0000:0{i}:00.0" for i in range(1, 5)]
    assert report["hosts"]["lost"]["status"] == "fail"


def test_warning_on_stderr_while_succeeding(report):
    c = checks(report, "inforom")
    assert c["nvidia-smi"]["status"] == "pass"
    w = c["nvidia-smi-warnings"]
    assert w["status"] == "warn" and "infoROM is corrupted" in w["message"] and "RMA" in w["message"], w


def test_blank_line_before_the_xml_is_tolerated(report):
    c = checks(report, "blank-line")
    assert c["nvidia-smi"]["status"] == "pass", c["nvidia-smi"]
    assert report["hosts"]["blank-line"]["facts"]["gpus"][0]["name"] == "NVIDIA GeForce RTX 3060"


def test_gpu_the_driver_holds_but_nvidia_smi_does_not_report(report):
    m = checks(report, "driver-sees-more")["gpu-missing"]
    assert m["status"] == "fail" and m["details"]["missing"] == ["0000:41:00.0"], m
    assert "0000:41:00.0" in m["message"]
    assert checks(report, "inforom")["gpu-missing"]["status"] == "pass"


def test_remedy_fields_and_health_counters_over_ssh(report):
    c = checks(report, "h100-faults")
    assert {n: c[f"{n}:gpu0"]["status"] for n in ("recovery", "temperature", "power-limit", "throttle-time",
                                                    "pcie-replay", "sram", "pending-reset", "ecc-mode")} == {
        "recovery": "fail", "temperature": "warn", "power-limit": "warn", "throttle-time": "warn",
        "pcie-replay": "pass", "sram": "fail", "pending-reset": "warn", "ecc-mode": "pass"}
    assert "Reset" in c["recovery:gpu0"]["message"]
    gpu = report["hosts"]["h100-faults"]["facts"]["gpus"][0]
    assert gpu["recovery_action"] == "Reset" and gpu["power_limit"]["enforced"] == 500.0
    assert gpu["clock_event_time_us"]["hw_thermal"] == 4200000 and gpu["pcie_replays"]["replays"] == 17


def test_real_multi_gpu_capture_all_seen(report):
    c = checks(report, "a5000-pair")
    assert c["gpu-missing"]["status"] == "pass"
    assert c["ecc-mode:gpu0"]["status"] == "pass" and c["ecc-mode:gpu1"]["status"] == "pass"
    assert c["throttle-time:gpu1"]["status"] == "pass"


def test_host_without_gpu(report):
    assert checks(report, "no-gpu")["nvidia-smi"]["status"] == "warn"
    assert "no NVIDIA GPU found" in checks(report, "no-gpu")["nvidia-smi"]["message"]
    assert report["hosts"]["no-gpu"]["status"] == "warn"
    assert checks(report, "no-gpu-by-design")["nvidia-smi"]["status"] == "skip"
    assert report["hosts"]["no-gpu-by-design"]["status"] == "pass"
    assert checks(report, "no-gpu-but-expected")["nvidia-smi"]["status"] == "fail"
    assert report["hosts"]["no-gpu-but-expected"]["status"] == "fail"
