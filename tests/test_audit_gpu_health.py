"""GPU health facts and checks (fleet/audit/facts/nvidia_smi.py, fleet/audit/checks_gpu.py) on recorded output."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleet.audit import checks_gpu
from fleet.audit.facts.host import HostFacts
from fleet.audit.facts.nvidia_smi import (GpuFacts, _nvidia_smi, classify_failure, normalize_bus_id,
                                          parse_driver_gpus, parse_lost_gpus, parse_xml)
from fleet.framing import Section
from fleet.status import Status

DATA = Path(__file__).resolve().parent / "data" / "nvidia-smi"
LOST = "Unable to determine the device handle for GPU 0000:02:00.0: GPU is lost. Reboot the system to recover this GPU"
UNKNOWN = "Unable to determine the device handle for GPU0000:0B:00.0: Unknown Error"


@pytest.mark.parametrize("raw, want", [("00000000:3B:00.0", "0000:3b:00.0"), ("3b:00.0", "0000:3b:00.0"),
                                       ("0000:c1:00.0", "0000:c1:00.0"), ("0001:00:04.1", "0001:00:04.1"),
                                       ("000:BA:80.0", "0000:ba:80.0"), ("garbage", None), (None, None)])
def test_normalize_bus_id(raw, want):
    assert normalize_bus_id(raw) == want


def test_lost_texts_are_a_lost_gpu_not_a_tool_failure():
    for text, bus, reason in ((LOST, "0000:02:00.0", "GPU is lost. Reboot the system to recover this GPU"),
                              (UNKNOWN, "0000:0b:00.0", "Unknown Error")):
        f = classify_failure(15, text + "\n", "")
        assert f.kind == "gpu-lost" and bus in f.message and "reseat" in f.message
        assert parse_lost_gpus(text) == [{"pci_bus_id": bus, "reason": reason, "line": text}]
    # on stderr, and with another exit status: the text decides
    assert classify_failure(255, "", UNKNOWN).kind == "gpu-lost"
    # exit 15 (NVML_ERROR_GPU_IS_LOST) without the text: still a lost GPU, not a tool failure
    f = classify_failure(15, "", "")
    assert f.kind == "gpu-lost" and "XID 79" in f.message
    assert classify_failure(3, "some other failure\n", "").kind == "failed"


def test_leading_blank_lines_and_bom_are_tolerated():
    xml = (DATA / "netdata-tesla-p100-v11.xml").read_text()
    for prefix in ("\n", "\n\n  \t\n", "\ufeff"):
        log = parse_xml(prefix + xml)
        assert log.schema == "v11" and log.gpus[0].name == "Tesla P100-PCIE-16GB"


def test_warnings_printed_while_succeeding_are_kept():
    xml = (DATA / "netdata-rtx-4090-v12.xml").read_text()
    got = _nvidia_smi(Section(xml, "WARNING: infoROM is corrupted at gpu 0000:84:00.0\n", 0))
    assert got["nvidia_smi_warnings"] == ["WARNING: infoROM is corrupted at gpu 0000:84:00.0"]
    assert "nvidia_smi_error" not in got
    # printed on stdout before the XML (where expat would refuse it)
    got = _nvidia_smi(Section("WARNING: infoROM is corrupted at gpu 0000:84:00.0\n" + xml, "", 0))
    assert got["nvidia_smi_warnings"] == ["WARNING: infoROM is corrupted at gpu 0000:84:00.0"]
    assert got["gpus"][0].name == "NVIDIA GeForce RTX 4090"


def test_lost_gpu_beside_a_report():
    xml = (DATA / "telegraf-dual-2080-v13.xml").read_text()
    got = _nvidia_smi(Section(xml, LOST.replace("02:00.0", "03:00.0") + "\n", 15))
    assert len(got["gpus"]) == 2 and got["gpus_lost"][0]["pci_bus_id"] == "0000:03:00.0"
    assert got["nvidia_smi_warnings"] == []


def test_driver_gpus_listing():
    assert parse_driver_gpus("0000:c1:00.0\n0000:81:00.0\n") == ["0000:81:00.0", "0000:c1:00.0"]
    assert parse_driver_gpus("") == []


def test_fields_of_each_schema():
    h100 = parse_xml((DATA / "h100-sxm-80gb-v13-captured.xml").read_text()).gpus[0]
    assert h100.recovery_action == "None" and h100.reset_status == {"reset_required": None,
                                                                     "drain_and_reset_recommended": None}
    assert h100.power_limit == {"enforced": 700.0, "default": 700.0, "requested": 700.0}
    assert h100.clock_event_time_us == {"sw_power_cap": 0, "sync_boost": 0, "sw_thermal": 0, "hw_thermal": 0,
                                        "hw_power_brake": 0}
    assert h100.temperature["tlimit"] == 44 and h100.temperature["slowdown_tlimit"] == -2
    assert h100.sram_threshold_exceeded is False and h100.pcie_replays == {"replays": 0, "rollovers": 0}
    a10g = parse_xml((DATA / "telegraf-a10g-v11.xml").read_text()).gpus[0]
    assert a10g.power_limit == {"enforced": 300.0, "default": 300.0, "requested": 300.0}
    assert a10g.clock_event_time_us == {} and a10g.temperature["slowdown"] == 95
    rtx4090 = parse_xml((DATA / "netdata-rtx-4090-v12.xml").read_text()).gpus[0]
    assert rtx4090.reset_status == {"reset_required": False, "drain_and_reset_recommended": None}
    a100 = parse_xml((DATA / "netdata-a100-sxm4-mig-v11.xml").read_text()).gpus[0]
    assert a100.temperature["memory"] == 44 and a100.temperature["memory_max"] == 95
    assert a100.mig_mode == a100.mig_mode_pending == "Enabled"


def _gpu(**kw) -> GpuFacts:
    return GpuFacts(index=0, name=kw.pop("name", "NVIDIA H100 80GB HBM3"), uuid="GPU-x", pci_bus_id="00000000:18:00.0",
                    memory_total_mib=81559, **kw)


def test_temperature_thresholds():
    t = checks_gpu.temperature
    assert t(_gpu(temperature={"gpu": 92, "slowdown": 89, "shutdown": 92})).status is Status.FAIL
    assert t(_gpu(temperature={"gpu": 90, "slowdown": 89, "shutdown": 92})).status is Status.WARN
    assert t(_gpu(temperature={"gpu": 60, "slowdown": 89, "memory": 95, "memory_max": 95})).status is Status.FAIL
    assert t(_gpu(temperature={"gpu": 60, "tlimit": -9, "slowdown_tlimit": -2, "shutdown_tlimit": -8})).status \
        is Status.FAIL
    assert t(_gpu(temperature={"gpu": 60})).status is Status.SKIP


def test_recovery_actions_named():
    c = checks_gpu.recovery(_gpu(recovery_action="Drain_and_Reset"))
    assert c.status is Status.FAIL and "Drain_and_Reset" in c.message and "drain the node" in c.message
    c = checks_gpu.recovery(_gpu(reset_status={"reset_required": False, "drain_and_reset_recommended": True}))
    assert c.status is Status.FAIL and "drain and reset" in c.message
    assert checks_gpu.recovery(_gpu(recovery_action="None")).status is Status.PASS
    assert checks_gpu.recovery(_gpu()).status is Status.SKIP


def test_ecc_mode_only_warns_on_datacentre_gpus():
    assert checks_gpu.ecc_mode(_gpu(ecc_mode="Disabled", product_brand="NVIDIA")).status is Status.WARN
    assert checks_gpu.ecc_mode(_gpu(ecc_mode="Disabled", product_brand="Tesla")).status is Status.WARN
    assert checks_gpu.ecc_mode(_gpu(name="NVIDIA RTX A5000", ecc_mode="Disabled", product_brand="NVIDIA RTX")).status \
        is Status.PASS
    assert checks_gpu.ecc_mode(_gpu(ecc_mode="Disabled")).status is Status.WARN  # no brand: the H100 name decides


def test_gpu_missing_without_any_list_is_skipped():
    assert checks_gpu.gpu_missing(HostFacts(gpus=[_gpu()])).status is Status.SKIP
    facts = HostFacts(gpus=[_gpu()], driver_gpu_bus_ids=["0000:18:00.0"])
    assert checks_gpu.gpu_missing(facts).status is Status.PASS
