"""lspci, kernel (driver version, XIDs), toolkit and os-release parsers on recorded output."""

from pathlib import Path

import pytest

from fleet.inventory.variables import version_tuple
from fleet.audit.facts.kernel import journal_readable, parse_driver_version, parse_xids
from fleet.audit.facts.lspci import parse_lspci
from fleet.audit.facts.osrelease import parse_os_release, parse_uname
from fleet.audit.facts.toolkit import parse_ctk_version, parse_docker_runtimes

DATA = Path(__file__).parent / "data"


@pytest.mark.parametrize("name,count", [("h100-2gpu.txt", 2), ("a100-4gpu.txt", 4), ("workstation.txt", 1),
                                        ("no-nvidia.txt", 0)])
def test_lspci_counts_nvidia_display_controllers_only(name, count):
    text = (DATA / "lspci" / name).read_text()
    gpus = parse_lspci(text)
    assert len(gpus) == count
    for g in gpus:
        assert g["device_id"].startswith("10de:") and g["class"] in ("0300", "0302")
    # every NVIDIA 03xx line is counted, nothing else
    assert count == sum(1 for line in text.splitlines() if "[10de:" in line and " [03" in line)


def test_lspci_details():
    gpus = parse_lspci((DATA / "lspci" / "workstation.txt").read_text())
    assert gpus[0]["slot"] == "0000:01:00.0" and gpus[0]["device_id"] == "10de:2489"
    assert "RTX 3060 Ti" in gpus[0]["description"]
    h100 = parse_lspci((DATA / "lspci" / "h100-2gpu.txt").read_text())
    assert [g["slot"] for g in h100] == ["18:00.0", "2a:00.0"]  # NVSwitch bridge [0680] excluded


@pytest.mark.parametrize("name,version", [("proc-driver-nvidia-version.txt", "535.104.05"),
                                          ("proc-driver-nvidia-version-open.txt", "570.86.15"),
                                          ("sys-module-nvidia-version.txt", "535.104.05")])
def test_driver_version(name, version):
    assert parse_driver_version((DATA / "kernel" / name).read_text()) == version


def test_driver_version_absent():
    assert parse_driver_version("") is None
    assert parse_driver_version("GCC version: gcc 11.4.0 (Ubuntu)\n") is None


def test_xids():
    xids = parse_xids((DATA / "kernel" / "dmesg-xids.txt").read_text())
    assert [x["xid"] for x in xids] == [13, 79, 31]
    assert xids[1]["pci"] == "0000:2a:00" and "fallen off the bus" in xids[1]["message"]
    assert parse_xids("[ 1.0] usb 1-1: new device\n") == []


def test_journal_readability():
    assert journal_readable(0, "")
    assert not journal_readable(0, "No journal files were opened due to insufficient permissions.")
    assert not journal_readable(0, "Hint: You are currently not seeing messages from other users and the system.")
    assert not journal_readable(1, "")


def test_toolkit_and_docker():
    assert parse_ctk_version("NVIDIA Container Toolkit CLI version 1.14.3\ncommit: 53b24618a5\n") == "1.14.3"
    assert parse_ctk_version("nonsense") is None
    runtimes = ('{"io.containerd.runc.v2":{"path":"runc"},"nvidia":{"path":"nvidia-container-runtime"},'
                '"runc":{"path":"runc"}}')
    assert parse_docker_runtimes(runtimes + "\n") == ["io.containerd.runc.v2", "nvidia", "runc"]
    assert parse_docker_runtimes("") == []
    with pytest.raises(ValueError):
        parse_docker_runtimes("Cannot connect to the Docker daemon")
    with pytest.raises(ValueError):
        parse_docker_runtimes("[1, 2]")


def test_os_release_and_uname():
    info = parse_os_release('NAME="Ubuntu"\nVERSION_ID="22.04"\nID=ubuntu\nPRETTY_NAME="Ubuntu 22.04.4 LTS"\n# c\n\n')
    assert info == {"name": "Ubuntu", "version_id": "22.04", "id": "ubuntu", "pretty_name": "Ubuntu 22.04.4 LTS"}
    assert parse_uname("5.15.0-91-generic\n") == "5.15.0-91-generic"
    assert parse_uname("") is None


def test_version_tuple():
    assert version_tuple("535.104.05") == (535, 104, 5)
    assert version_tuple("12.10") > version_tuple("12.9")
    with pytest.raises(ValueError):
        version_tuple("535.x")
