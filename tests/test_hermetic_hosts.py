"""The test hosts are hermetic: their PATH holds basic tools and the stubs a test asks for, nothing else."""

from __future__ import annotations

import os

import pytest

from fleet.audit.run import audit_hosts, build_report
from fleet.inventory import parse_inventory
from fleet.transport import connect
from tests.sshd import (BASE_TOOLS, fake_dmesg, fake_docker, fake_journalctl, fake_nvidia_ctk, leaking_sbin_tools)

KERNEL = os.path.join(os.path.dirname(__file__), "data", "kernel")
EXPECT = {"gpufleet_gpu_count": 1, "gpufleet_gpu_model": "3090", "gpufleet_driver_min": "525.60",
          "gpufleet_cuda_min": "12.0"}


def _kernel_log(name: str) -> str:
    with open(os.path.join(KERNEL, name)) as f:
        return f.read().rstrip("\n")


@pytest.fixture(scope="module")
def report(farm):
    farm.add_host("bare", extra_vars=EXPECT)
    farm.add_host("stubbed", extra_vars=EXPECT, stubs={
        "dmesg": fake_dmesg("[    1.000000] Linux version 6.1.0"), "nvidia-ctk": fake_nvidia_ctk("1.17.8"),
        "docker": fake_docker()})
    farm.add_host("xids", extra_vars=EXPECT, stubs={"dmesg": fake_dmesg(_kernel_log("dmesg-xids.txt"))})
    farm.add_host("journal-only", extra_vars=EXPECT, stubs={
        "dmesg": fake_dmesg(rc=1), "journalctl": fake_journalctl(_kernel_log("dmesg-app-xids.txt"))})
    inv = parse_inventory(farm.inventory(["bare", "stubbed", "xids", "journal-only"]), "hermetic.yaml")
    return build_report(audit_hosts(inv.select("all"), farm.options(command_timeout=20), progress=False),
                        "hermetic.yaml", "all")


def _status(report, host):
    return {c["name"]: c["status"] for c in report["hosts"][host]["checks"]}


def test_path_is_the_hosts_own_bin_only(farm, report):
    host = farm.hosts["bare"]
    assert sorted(os.listdir(host.bin)) == sorted(BASE_TOOLS + ("lspci", "nvidia-smi"))
    inv = parse_inventory(farm.inventory(["bare"]), "bare.yaml")
    t = connect(inv.hosts["bare"], farm.options())
    try:
        r = t.run("echo \"$PATH\"; for c in dmesg journalctl nvidia-ctk docker ps; do "
                  "command -v $c >/dev/null 2>&1 && echo \"found $c\"; done; echo end")
        assert (r.exit_code, r.stdout, r.stderr) == (0, f"{host.bin}\nend\n", "")
        r = t.run("command -v python3")
        assert r.stdout == f"{host.bin}/python3\n"
    finally:
        t.close()
    assert leaking_sbin_tools() == []  # the audit script's own sbin additions bring none of them in


# What the default capture (rtx-3090-v12.xml, GeForce, driver 525) gives the GPU health checks: its power limit is
# 200 W of a 350 W default (a real lowered cap: warns); the fields a GeForce on 525 lacks are skipped.
RTX3090_HEALTH = {"power-limit:gpu0": "warn", "recovery:gpu0": "skip", "throttle-time:gpu0": "skip",
                  "sram:gpu0": "skip", "pending-reset:gpu0": "skip", "ecc-mode:gpu0": "skip"}


def test_a_bare_host_has_no_toolkit_and_no_kernel_log(report):
    h = report["hosts"]["bare"]
    assert h["status"] == "warn"
    assert h["facts"]["xids"] == "unknown" and h["facts"]["toolkit_version"] is None
    assert {n: s for n, s in _status(report, "bare").items() if s != "pass"} == {
        "ecc:gpu0": "skip", "xid": "skip", "sxid": "skip", "kernel:fallen-off-bus": "skip",
        "kernel:rm-init-failed": "skip", "kernel:probe-failed": "skip", "container-toolkit": "warn",
        "nvlink": "skip", "infiniband": "skip", "fabric-manager": "skip",  # no NVLink, no RDMA device, no NVSwitch
        **RTX3090_HEALTH}


def test_stubs_are_what_the_audit_sees(report):
    assert report["hosts"]["stubbed"]["status"] == "warn"  # only the capture's lowered power cap
    f = report["hosts"]["stubbed"]["facts"]
    assert f["toolkit_version"] == "1.17.8" and f["xids"] == []
    assert f["docker_runtimes"] == ["nvidia", "runc"]
    assert {n: s for n, s in _status(report, "stubbed").items() if s != "pass"} == {
        "ecc:gpu0": "skip", "nvlink": "skip", "infiniband": "skip", "fabric-manager": "skip", **RTX3090_HEALTH}
    assert report["hosts"]["xids"]["status"] == "fail" and _status(report, "xids")["xid"] == "fail"
    assert [x["xid"] for x in report["hosts"]["xids"]["facts"]["xids"]] == [13, 79, 31]  # as in the capture
    # dmesg restricted: the journal is read instead
    assert _status(report, "journal-only")["xid"] == "warn"
    assert [x["xid"] for x in report["hosts"]["journal-only"]["facts"]["xids"]] == [13, 43]
