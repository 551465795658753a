"""Fleet consistency (fleet/audit/consistency.py): versions against the fleet's majority, per GPU model.

The host entries here are synthetic (the shape of the audit report's entries, with version strings of the
forms nvidia-smi and uname print): this is logic over facts, not parsing.
"""

from __future__ import annotations

from fleet.audit.consistency import fleet_checks, majority
from fleet.audit.run import add_fleet_checks

H100 = "NVIDIA H100 80GB HBM3"
A100 = "NVIDIA A100-SXM4-80GB"


def host(model, driver="580.159.04", cuda="13.0", vbios="96.00.BD.00.01", kernel="6.8.0-60-generic", fw=None,
         state="ok", status="pass"):
    facts = {"driver_version": driver, "cuda_version": cuda, "kernel": kernel,
             "gpus": [{"name": model, "vbios_version": vbios}] * 2}
    if fw:
        facts["ib_ports"] = [{"device": "mlx5_0", "port": 1, "link_layer": "InfiniBand", "rate_gbps": 400.0,
                              "active": True, "fw_ver": fw}]
    return {"state": state, "status": status, "facts": facts, "checks": []}


def by_name(checks):
    return {c.name: (c.status.value, c.message) for c in checks}


def test_the_odd_one_out_warns_naming_the_majority():
    hosts = {f"n{i}": host(H100, fw="28.39.1002") for i in range(3)}
    hosts["odd"] = host(H100, driver="550.90.07", vbios="96.00.99.00.01", fw="28.36.1010")
    out = fleet_checks(hosts)
    assert by_name(out["odd"])["consistency:driver"] == (
        "warn", "driver 550.90.07 differs from the fleet's 580.159.04 (3 of 4 NVIDIA H100 80GB HBM3 hosts)")
    assert by_name(out["odd"])["consistency:vbios"][0] == "warn"
    assert by_name(out["odd"])["consistency:ib-firmware"] == (
        "warn", "InfiniBand firmware 28.36.1010 differs from the fleet's 28.39.1002 (3 of 4 NVIDIA H100 80GB HBM3 "
        "hosts)")
    assert by_name(out["odd"])["consistency:kernel"] == ("pass", "kernel 6.8.0-60-generic, as 4 of 4 NVIDIA H100 "
                                                                  "80GB HBM3 hosts")
    assert by_name(out["n0"])["consistency:driver"][0] == "pass"


def test_models_are_compared_only_with_their_own_kind_and_a_tie_has_no_majority():
    hosts = {"h1": host(H100), "h2": host(H100, driver="550.90.07"), "a1": host(A100, driver="535.104.05")}
    out = fleet_checks(hosts)
    assert "a1" not in out  # alone with its model: nothing to compare with
    assert by_name(out["h1"])["consistency:driver"] == (
        "pass", "driver 580.159.04; the 2 NVIDIA H100 80GB HBM3 hosts have no majority value (the commonest is on 1)")
    assert majority(["a", "a", "b"]) == ("a", 2) and majority(["a", "b"]) == (None, 1) and majority([]) == (None, 0)


def test_a_pinned_driver_is_left_to_its_own_check_and_unreached_hosts_are_ignored():
    hosts = {f"n{i}": host(H100) for i in range(3)}
    hosts["pinned"] = host(H100, driver="550.90.07")
    hosts["down"] = {"state": "unreachable", "status": "unreachable", "facts": {}, "checks": []}
    out = fleet_checks(hosts, {"pinned": {"gpufleet_driver_version": "550.90.07"}})
    assert "consistency:driver" not in by_name(out["pinned"]) and "down" not in out


def test_a_warning_weighs_in_the_hosts_status_but_never_hides_a_failure():
    hosts = {f"n{i}": host(H100) for i in range(3)}
    hosts["odd"] = host(H100, kernel="5.15.0-119-generic")
    hosts["bad"] = host(H100, kernel="5.15.0-119-generic", status="fail")
    hosts["n3"] = host(H100)
    add_fleet_checks(hosts, {})
    assert hosts["odd"]["status"] == "warn" and hosts["bad"]["status"] == "fail" and hosts["n0"]["status"] == "pass"
    assert [c["name"] for c in hosts["odd"]["checks"] if c["status"] == "warn"] == ["consistency:kernel"]


def fabric_host(model, links, ib_ports, state="ok"):
    """``links``: active NVLinks per GPU; ``ib_ports``: [(rate Gb/s, active)] on InfiniBand."""
    h = host(model)
    h["facts"]["nvlink"] = [{"index": i, "name": model, "active": n} for i, n in enumerate(links)]
    h["facts"]["ib_ports"] = [{"device": f"mlx5_{i}", "port": 1, "link_layer": "InfiniBand", "rate_gbps": r,
                               "active": a, "fw_ver": "28.41.1000"} for i, (r, a) in enumerate(ib_ports)]
    return h


def test_a_host_below_the_fleets_nvlink_or_infiniband_fails():
    eight = [(400.0, True)] * 8
    hosts = {f"n{i}": fabric_host(H100, [18] * 8, eight) for i in range(3)}
    hosts["link-down"] = fabric_host(H100, [18] * 7 + [16], eight)
    hosts["port-down"] = fabric_host(H100, [18] * 8, [(400.0, True)] * 7 + [(400.0, False)])
    hosts["slow-port"] = fabric_host(H100, [18] * 8, [(400.0, True)] * 7 + [(200.0, True)])
    out = {h: by_name(c) for h, c in fleet_checks(hosts).items()}
    assert out["link-down"]["consistency:nvlink"] == (
        "fail", "16 active NVLinks on the host's weakest GPU; the fleet's NVIDIA H100 80GB HBM3 hosts have 18 (5 of 6)"
                ": a link is down; reseat, or check the NVLink bridge/baseboard")
    assert out["port-down"]["consistency:infiniband"] == (
        "fail", "7 active InfiniBand port(s) where the fleet's NVIDIA H100 80GB HBM3 hosts have 8 (5 of 6)")
    assert out["slow-port"]["consistency:infiniband"] == (
        "fail", "a port at 200 Gb/s where the fleet's NVIDIA H100 80GB HBM3 hosts run 400 (5 of 6)")
    assert out["n0"]["consistency:nvlink"][0] == "pass" and out["n0"]["consistency:infiniband"][0] == "pass"
    assert out["n0"]["consistency:ib-firmware"][0] == "pass"


def test_an_inventory_expectation_replaces_the_fleets_majority():
    hosts = {f"n{i}": fabric_host(H100, [18] * 8, [(400.0, True)] * 8) for i in range(3)}
    hosts["bridged"] = fabric_host(H100, [12] * 8, [(400.0, True)] * 8)
    out = fleet_checks(hosts, {"bridged": {"gpufleet_nvlink_count": 12}})
    assert "consistency:nvlink" not in by_name(out["bridged"])


def test_end_to_end_the_host_with_another_kernel_warns(farm):
    """Four real sshd hosts replaying the same capture; one's `uname -r` says another kernel."""
    from fleet.audit.run import audit_hosts, build_report
    from fleet.inventory import parse_inventory

    names = ["same-0", "same-1", "same-2", "other-kernel"]
    for name in names[:3]:
        farm.add_host(name, fixture="rtx-3090-v12.xml")
    farm.add_host("other-kernel", fixture="rtx-3090-v12.xml",
                  stubs={"uname": "#!/bin/sh\necho 5.15.0-119-generic\n"})
    inv = parse_inventory(farm.inventory(names), "same.yaml")
    report = build_report(audit_hosts(inv.select("all"), farm.options(command_timeout=30), progress=False),
                          "same.yaml", "all")
    checks = {n: {c["name"]: c for c in h["checks"]} for n, h in report["hosts"].items()}
    kernel = checks["other-kernel"]["consistency:kernel"]
    assert kernel["status"] == "warn" and kernel["observed"] == "5.15.0-119-generic"
    assert kernel["details"]["majority_hosts"] == 3 and kernel["details"]["hosts"] == 4
    assert {n: checks[n]["consistency:kernel"]["status"] for n in names[:3]} == {n: "pass" for n in names[:3]}
    assert checks["same-0"]["consistency:driver"]["status"] == "pass"
