"""nvidia-smi XML parsing on every real fixture plus hand-built cases, and failure classification."""

import re
from pathlib import Path

import pytest

from fleet.audit.facts.nvidia_smi import (NvidiaSmiParseError, classify_failure, parse_compute_apps, parse_xml)
from tests.shared_fixtures import FIXTURES, captures

DATA = Path(__file__).parent / "data" / "nvidia-smi"
REAL = captures()


def test_fixtures_present():
    assert len(REAL) >= 8, f"expected the shared nvidia-smi fixtures in {FIXTURES}"


@pytest.mark.parametrize("path", REAL, ids=lambda p: p.name)
def test_every_real_fixture_parses(path):
    text = path.read_text()
    log = parse_xml(text)
    # the count of <gpu> elements is authoritative
    assert len(log.gpus) == len(re.findall(r"<gpu id=", text)) >= 1
    assert log.schema == re.search(r"nvsmi_device_(v\d+)\.dtd", text).group(1)
    m = re.search(r"<driver_version>([^<]*)</driver_version>", text)
    assert log.driver_version == (m.group(1) if m else None)
    for i, gpu in enumerate(log.gpus):
        assert gpu.index == i
        assert gpu.name and gpu.name in text
        assert gpu.uuid.startswith("GPU-")
        assert re.fullmatch(r"[0-9A-Fa-f]{8}:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}\.\d", gpu.pci_bus_id)
        assert gpu.memory_total_mib > 0
        for value in (gpu.pcie.values()):
            assert value is None or isinstance(value, int)
        for value in (*gpu.ecc.values(), gpu.utilization_gpu):
            assert value is None or value >= 0


def test_real_fixture_details():
    a100 = parse_xml((FIXTURES / "a100-sxm4-v12.xml").read_text())
    assert a100.attached_gpus == 4 and len(a100.gpus) == 1
    assert a100.gpus[0].mig_mode == "Enabled" and a100.gpus[0].mig_devices == 4
    assert a100.gpus[0].ecc["volatile_uncorrectable"] == 0
    assert a100.gpus[0].remapped_rows == {}  # <remapped_rows>N/A</remapped_rows>
    assert a100.gpus[0].persistence_mode == "Disabled"

    t4 = parse_xml((FIXTURES / "tesla-t4.xml").read_text()).gpus[0]
    assert t4.clock_event_reasons["hw_slowdown"] is False  # from clocks_throttle_reasons (old name)
    assert t4.pcie == {"link_gen_current": 3, "link_gen_max": 3, "link_width_current": 8, "link_width_max": 16}
    assert t4.retired_pages == {"single_bit": 0, "double_bit": 0, "pending": False}
    assert [p["pid"] for p in t4.processes] == [675, 5762]

    ada = parse_xml((FIXTURES / "rtx-4000-sff-ada-v13.xml").read_text()).gpus[0]
    assert ada.clock_event_reasons["gpu_idle"] is True  # clocks_event_reasons (new name)
    assert ada.remapped_rows["pending"] is False and ada.remapped_rows["failure"] is False
    assert ada.ecc["volatile_uncorrectable"] is None  # all N/A, v13 names
    assert ada.pstate_number == 8

    gtx = parse_xml((FIXTURES / "gtx-1070-ti.xml").read_text())
    assert gtx.driver_version is None and gtx.cuda_version is None and gtx.attached_gpus is None
    assert gtx.gpus[0].pcie["link_gen_max"] is None


def test_built_multi_gpu_faults():
    log = parse_xml((DATA / "h100-2gpu-faulty-v12.xml").read_text())
    assert [g.index for g in log.gpus] == [0, 1]
    ok, bad = log.gpus
    assert ok.ecc["volatile_correctable"] == 3 and ok.ecc["volatile_uncorrectable"] == 0
    assert bad.ecc["volatile_uncorrectable"] == 2
    assert bad.remapped_rows == {"correctable": 0, "uncorrectable": 1, "pending": True, "failure": False}
    assert bad.pcie["link_width_current"] == 8 and bad.pcie["link_gen_current"] == 3
    assert bad.clock_event_reasons["hw_slowdown"] is True and ok.clock_event_reasons["sw_power_cap"] is True
    assert bad.utilization_gpu == 85 and bad.persistence_mode == "Disabled"
    assert ok.processes == [{"pid": 4242, "type": "C", "process_name": "python train.py", "used_memory_mib": 39990}]


def test_built_legacy_schema():
    gpu = parse_xml((DATA / "legacy-ecc-v10.xml").read_text()).gpus[0]
    assert gpu.ecc == {"volatile_correctable": 0, "volatile_uncorrectable": 0,
                       "aggregate_correctable": 120, "aggregate_uncorrectable": 5}
    assert gpu.retired_pages == {"single_bit": 65, "double_bit": 5, "pending": False}  # pending_blacklist
    assert gpu.clock_event_reasons["hw_power_brake_slowdown"] is True


def test_built_mig_all_na():
    log = parse_xml((DATA / "mig-na-v13.xml").read_text())
    gpu = log.gpus[0]
    assert gpu.mig_mode == "Enabled" and gpu.mig_devices == 2
    assert set(gpu.ecc.values()) == {None} and set(gpu.pcie.values()) == {None}
    assert gpu.persistence_mode is None and gpu.utilization_gpu is None and gpu.performance_state is None
    assert gpu.clock_event_reasons == {} and gpu.remapped_rows == {} and gpu.processes == []
    assert gpu.memory_total_mib == 143771


@pytest.mark.parametrize("name", ["entity-bomb.xml", "external-entity.xml"])
def test_entity_declarations_refused(name):
    with pytest.raises(NvidiaSmiParseError, match="ENTITY"):
        parse_xml((DATA / name).read_text())


@pytest.mark.parametrize("text", ["", "<nvidia_smi_log><gpu>", "<other/>", "not xml at all"])
def test_malformed_xml_refused(text):
    with pytest.raises(NvidiaSmiParseError):
        parse_xml(text)


@pytest.mark.parametrize("rc,stdout,stderr,kind", [
    (127, "", "sh: 1: nvidia-smi: not found", "not-installed"),
    (9, "Failed to initialize NVML: Driver/library version mismatch\n", "", "driver-library-mismatch"),
    (18, "", "Failed to initialize NVML: Driver/library version mismatch\nNVML library version: 535.161\n",
     "driver-library-mismatch"),
    (9, "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. Make sure that the latest "
        "NVIDIA driver is installed and running.\n", "", "driver-not-loaded"),
    (6, "No devices were found\n", "", "no-devices"),
    (124, "", "", "timeout"),
    (0, "Segmentation fault? random text", "", "garbage"),
    (3, "", "something odd", "failed"),
])
def test_failure_classification(rc, stdout, stderr, kind):
    failure = classify_failure(rc, stdout, stderr)
    assert failure is not None and failure.kind == kind and failure.rc == rc
    assert failure.message
    if kind == "driver-library-mismatch":
        assert "reboot" in failure.message and "reload" in failure.message
    if kind == "garbage":
        assert "random text" in failure.message


def test_xml_output_is_not_a_failure():
    assert classify_failure(0, (FIXTURES / "tesla-t4.xml").read_text(), "") is None


def test_compute_apps_csv():
    out = ("4242, python train.py, 39990 MiB, GPU-aaaaaaaa-0000-0000-0000-000000000000\n"
           "77, /opt/app --flag=a, b, 12 MiB, GPU-bbbbbbbb-1111-1111-1111-111111111111\n"
           "garbage line\n")
    apps = parse_compute_apps(out)
    assert [a["pid"] for a in apps] == [4242, 77]
    assert apps[1]["process_name"] == "/opt/app --flag=a, b" and apps[1]["used_memory_mib"] == 12
    assert apps[0]["gpu_uuid"].startswith("GPU-aaaa")
    assert parse_compute_apps("") == []
