"""`invoke audit` end to end: real sshd hosts whose nvidia-smi and lspci replay real captures."""

from __future__ import annotations

import json

import pytest

from fleet.audit.run import audit_hosts, build_report
from fleet.inventory import parse_inventory
from tests.sshd import invoke_env, run_invoke


@pytest.fixture(scope="module")
def fleet_hosts(farm):
    farm.add_host("rtx3090", fixture="rtx-3090-v12.xml", gpus=1,
                  extra_vars={"gpufleet_gpu_count": 1, "gpufleet_gpu_model": "3090", "gpufleet_driver_min": "525.60"})
    farm.add_host("t4-missing", fixture="tesla-t4.xml", gpus=1, extra_vars={"gpufleet_gpu_count": 2})
    farm.add_host("fell-off-bus", fixture="rtx-3060-v12.xml", gpus=2)
    farm.add_host("old-driver", fixture="rtx-3060-v12.xml", gpus=1,
                  extra_vars={"gpufleet_driver_version": "535.104.05"})
    farm.add_host("mismatch", fixture=None, nvidia_smi_mode="mismatch", gpus=1)
    farm.add_host("garbage", fixture=None, nvidia_smi_mode="garbage", gpus=1)
    farm.add_host("hang", fixture=None, nvidia_smi_mode="hang", gpus=1)
    farm.add_down_host("down")
    return parse_inventory(farm.inventory(), "audit.yaml")


@pytest.fixture(scope="module")
def report(farm, fleet_hosts):
    result = audit_hosts(fleet_hosts.select("all"), farm.options(command_timeout=8), progress=False)
    return build_report(result, "audit.yaml", "all")


def checks(report, host):
    return {c["name"]: c for c in report["hosts"][host]["checks"]}


def test_healthy_host_passes_with_facts(report):
    h = report["hosts"]["rtx3090"]
    # hermetic test host: no nvidia-ctk (warns), no dmesg or journal (XIDs unknown); the capture itself has its
    # power limit lowered to 200 W of the default 350 W (warns); fields a GeForce on driver 525 lacks are skipped
    assert h["status"] == "warn", h["checks"]
    assert {c["name"]: c["status"] for c in h["checks"] if c["status"] != "pass"} == {
        "cuda-version": "skip", "ecc:gpu0": "skip", "xid": "skip", "sxid": "skip", "kernel:fallen-off-bus": "skip",
        "kernel:rm-init-failed": "skip", "kernel:probe-failed": "skip", "container-toolkit": "warn",
        "nvlink": "skip", "infiniband": "skip", "fabric-manager": "skip",  # a PCIe GPU: no fabric
        "power-limit:gpu0": "warn", "recovery:gpu0": "skip", "throttle-time:gpu0": "skip", "sram:gpu0": "skip",
        "pending-reset:gpu0": "skip", "ecc-mode:gpu0": "skip"}
    f = h["facts"]
    assert f["driver_version"] == "525.147.05" and f["cuda_version"] == "12.0"
    assert f["lspci_gpu_count"] == 1
    gpu = f["gpus"][0]
    assert gpu["name"] == "NVIDIA GeForce RTX 3090" and gpu["index"] == 0
    assert gpu["uuid"].startswith("GPU-") and gpu["memory_total_mib"] == 24576
    c = checks(report, "rtx3090")
    assert c["gpu-model"]["status"] == "pass" and c["driver-version"]["status"] == "pass"


def test_expectations_and_bus_mismatches_fail(report):
    assert report["hosts"]["t4-missing"]["status"] == "fail"
    assert checks(report, "t4-missing")["gpu-count:expected"]["status"] == "fail"
    assert report["hosts"]["fell-off-bus"]["status"] == "fail"
    c = checks(report, "fell-off-bus")["gpu-count:lspci"]
    assert c["status"] == "fail" and c["observed"] != c["expected"]
    d = checks(report, "old-driver")["driver-version"]
    assert d["status"] == "fail" and "535.104.05" in d["message"]


def test_broken_nvidia_smi_is_named(report):
    m = checks(report, "mismatch")["nvidia-smi"]
    assert report["hosts"]["mismatch"]["status"] == "fail"
    assert "mismatch" in m["message"].lower()
    assert report["hosts"]["garbage"]["status"] == "error"
    assert checks(report, "garbage")["nvidia-smi"]["status"] == "error"


def test_unreachable_and_hung_hosts_are_recorded_and_others_kept(report):
    assert report["hosts"]["down"]["status"] == "unreachable"
    assert report["hosts"]["down"]["state"] == "unreachable"
    assert report["hosts"]["hang"]["state"] == "timed_out"
    assert "8s" in report["hosts"]["hang"]["message"]
    assert len(report["hosts"]) == 8
    assert report["exit_code"] == 1 and report["counts"]["unreachable"] >= 1


def test_invoke_audit_table_json_and_exit_codes(farm, fleet_hosts, tmp_path):
    inv = tmp_path / "hosts.yaml"
    inv.write_text(farm.inventory(["rtx3090", "t4-missing", "down"]))
    env = invoke_env(farm, tmp_path / "home")
    out = tmp_path / "audit.json"
    r = run_invoke(["audit", "--hosts", "all", "--inventory", str(inv), "--json", str(out),
                    "--connect-timeout", "3"], env)
    assert r.returncode == 1, r.stderr
    lines = {line.split()[0]: line for line in r.stdout.splitlines() if line.strip()}
    assert lines["rtx3090"].split()[1] == "warn"
    assert " fail " in lines["t4-missing"] and "gpu-count:expected" in lines["t4-missing"]
    assert "unreachable" in lines["down"]
    data = json.loads(out.read_text())
    assert data["schema"] == "gpufleet.audit/1" and set(data["hosts"]) == {"rtx3090", "t4-missing", "down"}

    r = run_invoke(["audit", "--hosts", "rtx3090", "--inventory", str(inv)], env)
    assert r.returncode == 0, r.stdout + r.stderr

    r = run_invoke(["audit", "--hosts", "nosuch", "--inventory", str(inv)], env)
    assert r.returncode == 2 and "nosuch" in r.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("all:\n  hosts:\n    a:\n      ansible_port: twenty-two\n")
    r = run_invoke(["audit", "--inventory", str(bad)], env)
    assert r.returncode == 2 and f"{bad}:4:" in r.stderr and "ansible_port" in r.stderr


def test_unknown_host_key_refused_by_default_via_invoke(farm, tmp_path):
    farm.add_host("stranger", fixture="rtx-3090-v12.xml", known=False)
    inv = tmp_path / "hosts.yaml"
    inv.write_text(farm.inventory(["stranger"]))
    env = invoke_env(farm, tmp_path / "home")
    r = run_invoke(["audit", "--inventory", str(inv)], env)
    assert r.returncode == 1 and "unknown host key" in r.stdout
    r = run_invoke(["audit", "--inventory", str(inv), "--accept-new-host-keys"], env)
    assert r.returncode == 0, r.stdout
    assert farm.hosts["stranger"].address in (tmp_path / "home" / ".ssh" / "known_hosts").read_text()


def test_ssh_config_is_honoured_and_inventory_comes_from_the_environment(farm, tmp_path):
    """An inventory naming only an ~/.ssh/config alias reaches the host, as Fabric (and ssh) would."""
    host = farm.add_host("aliased", fixture="rtx-3060-v12.xml")
    env = invoke_env(farm, tmp_path / "home")
    (tmp_path / "home" / ".ssh" / "config").write_text(
        f"Host gpu-alias\n  HostName {host.address}\n  Port {host.port}\n  User root\n"
        f"  IdentityFile {farm.client_key}\n"
    )
    inv = tmp_path / "from-env.yaml"
    inv.write_text("all:\n  hosts:\n    gpu-alias:\n")
    env["GPUFLEET_INVENTORY"] = str(inv)
    out = tmp_path / "a.json"
    r = run_invoke(["audit", "--json", str(out)], env)
    assert r.returncode == 0, r.stdout + r.stderr
    data = json.loads(out.read_text())
    assert data["inventory"] == str(inv)
    assert data["hosts"]["gpu-alias"]["facts"]["gpus"][0]["name"] == "NVIDIA GeForce RTX 3060"
