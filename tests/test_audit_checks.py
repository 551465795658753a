"""Checks and expectations: recorded output -> facts -> checks."""

from pathlib import Path

import pytest

from fleet.audit.checks import RETIRED_PAGES_LIMIT, evaluate
from fleet.audit.expectations import Expectations
from fleet.audit.facts import FACTS
from fleet.audit.facts.host import host_facts
from fleet.framing import Section
from fleet.status import Status
from tests.shared_fixtures import FIXTURES, captures

DATA = Path(__file__).parent / "data"


def facts_for(xml=None, lspci=None, smi=None, dmesg=None, ctk="NVIDIA Container Toolkit CLI version 1.14.3\n",
              journal=None):
    sections = {"uname": Section("6.1.0\n", "", 0)}
    if xml is not None:
        sections["nvidia-smi"] = Section(xml.read_text(), "", 0)
    if smi is not None:
        sections["nvidia-smi"] = Section(smi[1], smi[2], smi[0])
    if lspci is not None:
        sections["lspci"] = Section((DATA / "lspci" / lspci).read_text(), "", 0)
    if dmesg is not None:
        sections["dmesg"] = Section((DATA / "kernel" / dmesg).read_text(), "", 0)
    if journal is not None:
        sections["dmesg"] = Section("", "dmesg: read kernel buffer failed: Operation not permitted\n", 1)
        sections["journalctl"] = Section(*journal)
    sections["nvidia-ctk"] = Section(ctk, "", 0) if ctk else Section("", "nvidia-ctk: not found\n", 127)
    return host_facts(sections, FACTS)


def by_name(checks):
    result = {c.name: c for c in checks}
    assert len(result) == len(checks), "check names must be unique"
    return result


def test_faulty_two_gpu_host():
    facts = facts_for(DATA / "nvidia-smi" / "h100-2gpu-faulty-v12.xml", lspci="h100-2gpu.txt")
    checks = by_name(evaluate(facts, Expectations(gpu_count=2, gpu_model="H100", driver_min="535.104",
                                                  cuda_min="12.2")))
    for name in ("nvidia-smi", "gpu-count:lspci", "gpu-count:expected", "gpu-model", "driver-version", "cuda-version",
                 "ecc:gpu0", "pcie:gpu0", "clocks:gpu0", "persistence:gpu0"):
        assert checks[name].status is Status.PASS, checks[name]
    ecc = checks["ecc:gpu1"]
    assert ecc.status is Status.FAIL and "uncorrectable" in ecc.message and "remapping pending" in ecc.message
    assert ecc.details["gpu"] == 1 and ecc.details["uuid"].startswith("GPU-bbbb")
    assert checks["pcie:gpu1"].status is Status.FAIL and "x8" in checks["pcie:gpu1"].message
    assert checks["clocks:gpu1"].status is Status.WARN and "HW slowdown" in checks["clocks:gpu1"].message
    assert checks["persistence:gpu1"].status is Status.WARN
    assert checks["xid"].status is Status.SKIP and checks["xid"].observed == "unknown"  # no kernel log section


def test_gen_drop_under_load_fails_but_idle_gen_drop_passes():
    busy = facts_for(DATA / "nvidia-smi" / "h100-2gpu-faulty-v12.xml")
    busy.gpus[1].pcie["link_width_current"] = 16  # isolate the generation
    check = by_name(evaluate(busy, Expectations()))["pcie:gpu1"]
    assert check.status is Status.FAIL and "gen 3" in check.message and check.details["idle"] is False
    for fixture in ("rtx-3090-v12.xml", "rtx-3060-v12.xml", "rtx-4000-sff-ada-v13.xml"):
        facts = facts_for(FIXTURES / fixture)
        gpu = facts.gpus[0]
        assert gpu.pcie["link_gen_current"] < gpu.pcie["link_gen_max"]
        check = by_name(evaluate(facts, Expectations()))["pcie:gpu0"]
        assert check.status is Status.PASS and check.details["idle"] is True and "idle" in check.message


def test_width_below_max_fails_on_real_t4():
    check = by_name(evaluate(facts_for(FIXTURES / "tesla-t4.xml"), Expectations()))["pcie:gpu0"]
    assert check.status is Status.FAIL and check.observed["width"] == 8 and check.expected["width"] == 16


def test_legacy_retired_pages_and_power_brake():
    checks = by_name(evaluate(facts_for(DATA / "nvidia-smi" / "legacy-ecc-v10.xml"), Expectations()))
    assert checks["ecc:gpu0"].status is Status.FAIL and str(RETIRED_PAGES_LIMIT) in checks["ecc:gpu0"].message
    assert checks["clocks:gpu0"].status is Status.WARN and "power brake" in checks["clocks:gpu0"].message
    assert checks["pcie:gpu0"].status is Status.PASS  # P8, gen 1 of 3


def test_retired_pages_below_limit_and_pending():
    facts = facts_for(DATA / "nvidia-smi" / "legacy-ecc-v10.xml")
    facts.gpus[0].retired_pages.update(single_bit=RETIRED_PAGES_LIMIT - 6, double_bit=5)
    assert by_name(evaluate(facts, Expectations()))["ecc:gpu0"].status is Status.WARN  # aggregate DBE only
    facts.gpus[0].retired_pages["pending"] = True
    check = by_name(evaluate(facts, Expectations()))["ecc:gpu0"]
    assert check.status is Status.FAIL and "pending" in check.message


def test_row_remap_failure_fails():
    facts = facts_for(FIXTURES / "rtx-4000-sff-ada-v13.xml")
    assert by_name(evaluate(facts, Expectations()))["ecc:gpu0"].status is Status.PASS
    facts.gpus[0].remapped_rows["failure"] = True
    check = by_name(evaluate(facts, Expectations()))["ecc:gpu0"]
    assert check.status is Status.FAIL and "RMA" in check.message


def test_na_is_never_a_failure():
    checks = evaluate(facts_for(DATA / "nvidia-smi" / "mig-na-v13.xml"), Expectations(gpu_count=1))
    per_gpu = [c for c in checks if c.name.endswith(":gpu0")]
    assert len(per_gpu) == 12  # 4 checks.GPU_CHECKS + 8 checks_gpu.GPU_HEALTH_CHECKS
    # the MIG mode itself is reported (Enabled, nothing pending): the only per-GPU check with something to look at
    assert {c.name for c in per_gpu if c.status is not Status.SKIP} == {"pending-reset:gpu0"}
    assert all(c.status in (Status.PASS, Status.SKIP) for c in checks)


@pytest.mark.parametrize("path", captures(), ids=lambda p: p.name)
def test_every_fixture_evaluates(path):
    facts = facts_for(path)
    checks = by_name(evaluate(facts, Expectations(gpu_count=len(facts.gpus))))
    assert checks["nvidia-smi"].status is Status.PASS
    assert checks["gpu-count:expected"].status is Status.PASS
    assert {f"ecc:gpu{g.index}" for g in facts.gpus} <= set(checks)
    for c in checks.values():
        assert c.message and c.to_dict()["status"] == c.status.value


def test_lspci_sees_more_gpus_than_nvidia_smi():
    facts = facts_for(FIXTURES / "a100-sxm4-v12.xml", lspci="a100-4gpu.txt")
    assert any("attached_gpus=4" in n for n in facts.notes)
    checks = by_name(evaluate(facts, Expectations(gpu_count=4)))
    assert checks["gpu-count:lspci"].status is Status.FAIL and "fallen off the bus" in checks["gpu-count:lspci"].message
    assert (checks["gpu-count:lspci"].observed, checks["gpu-count:lspci"].expected) == (1, 4)
    assert checks["gpu-count:expected"].status is Status.FAIL


@pytest.mark.parametrize("smi,kind,status", [
    ((9, "Failed to initialize NVML: Driver/library version mismatch\n", ""), "driver-library-mismatch", Status.FAIL),
    ((9, "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.\n", ""), "driver-not-loaded",
     Status.FAIL),
    ((127, "", "nvidia-smi: not found\n"), "not-installed", Status.FAIL),
    ((6, "No devices were found\n", ""), "no-devices", Status.FAIL),
    ((0, "\x00\x01 binary junk", ""), "garbage", Status.ERROR),
    ((0, (DATA / "nvidia-smi" / "entity-bomb.xml").read_text(), ""), "unsafe-xml", Status.ERROR),
])
def test_nvidia_smi_failures_named(smi, kind, status):
    facts = facts_for(smi=smi, lspci="h100-2gpu.txt")
    checks = by_name(evaluate(facts, Expectations(gpu_count=2, driver_min="535")))
    assert facts.nvidia_smi_error.kind == kind and facts.gpus == []
    assert checks["nvidia-smi"].status is status and checks["nvidia-smi"].observed == kind
    assert checks["gpu-count:lspci"].status is Status.SKIP
    assert checks["gpu-count:expected"].status is Status.PASS  # falls back to lspci's count
    assert checks["driver-version"].status is Status.FAIL  # unknown version


def test_gpu_less_host_warns_unless_expected_to_have_none():
    facts = facts_for(smi=(127, "", "nvidia-smi: not found\n"), lspci="no-nvidia.txt", ctk=None)
    checks = by_name(evaluate(facts, Expectations()))
    assert checks["nvidia-smi"].status is Status.WARN and "no NVIDIA GPU found" in checks["nvidia-smi"].message
    assert checks["container-toolkit"].status is Status.SKIP
    checks = by_name(evaluate(facts, Expectations(gpu_count=0)))
    assert checks["nvidia-smi"].status is Status.SKIP and checks["container-toolkit"].status is Status.SKIP
    checks = by_name(evaluate(facts, Expectations(gpu_count=4)))
    assert checks["nvidia-smi"].status is Status.FAIL and checks["gpu-count:expected"].status is Status.FAIL


def test_model_driver_cuda_policy():
    facts = facts_for(FIXTURES / "tesla-t4.xml")  # Tesla T4, 515.105.01, CUDA 11.7
    ok = by_name(evaluate(facts, Expectations(gpu_model="tesla t4", driver_version="515.105", cuda_min="11.7")))
    assert [ok[n].status for n in ("gpu-model", "driver-version", "cuda-version")] == [Status.PASS] * 3
    bad = by_name(evaluate(facts, Expectations(gpu_model="*A100*", driver_version="515.105.02", cuda_min="12.2")))
    assert [bad[n].status for n in ("gpu-model", "driver-version", "cuda-version")] == [Status.FAIL] * 3
    assert "pinned" in bad["driver-version"].message and bad["cuda-version"].observed == "11.7"
    old = by_name(evaluate(facts, Expectations(driver_min="535.104")))["driver-version"]
    assert old.status is Status.FAIL and "older" in old.message
    unset = by_name(evaluate(facts, Expectations()))
    assert [unset[n].status for n in ("gpu-model", "driver-version", "cuda-version", "gpu-count:expected")] == \
        [Status.SKIP] * 4


def test_xids():
    crit = by_name(evaluate(facts_for(FIXTURES / "tesla-t4.xml", dmesg="dmesg-xids.txt"), Expectations()))["xid"]
    assert crit.status is Status.FAIL and crit.observed == [13, 31, 79] and "79" in crit.message
    app = by_name(evaluate(facts_for(FIXTURES / "tesla-t4.xml", dmesg="dmesg-app-xids.txt"), Expectations()))["xid"]
    assert app.status is Status.WARN and app.observed == [13, 43]
    clean = facts_for(FIXTURES / "tesla-t4.xml", journal=("", "", 0))
    assert clean.xid_source == "journalctl" and by_name(evaluate(clean, Expectations()))["xid"].status is Status.PASS
    denied = facts_for(FIXTURES / "tesla-t4.xml",
                       journal=("", "No journal files were opened due to insufficient permissions.\n", 0))
    assert denied.xids is None and denied.to_dict()["xids"] == "unknown"
    assert by_name(evaluate(denied, Expectations()))["xid"].status is Status.SKIP


def test_container_toolkit():
    missing = by_name(evaluate(facts_for(FIXTURES / "tesla-t4.xml", ctk=None), Expectations()))["container-toolkit"]
    assert missing.status is Status.WARN and "nvidia-container-toolkit" in missing.message
    present = by_name(evaluate(facts_for(FIXTURES / "tesla-t4.xml"), Expectations()))["container-toolkit"]
    assert present.status is Status.PASS and present.observed == "1.14.3"


# ---------------------------------------------------------------- Expectations

def test_expectations_from_vars():
    e = Expectations.from_vars({"gpufleet_gpu_count": 8, "gpufleet_gpu_model": "H100*",
                                "gpufleet_driver_min": "535.104", "gpufleet_driver_version": 535,
                                "gpufleet_cuda_min": "12.2", "ansible_host": "x"})
    assert (e.gpu_count, e.gpu_model, e.driver_min, e.driver_version, e.cuda_min) == (
        8, "H100*", "535.104", "535", "12.2")
    assert Expectations.from_vars({}) == Expectations()
    assert Expectations.from_vars({"gpufleet_gpu_count": "4"}).gpu_count == 4


@pytest.mark.parametrize("vars,variable", [
    ({"gpufleet_gpu_count": "eight"}, "gpufleet_gpu_count"),
    ({"gpufleet_gpu_count": True}, "gpufleet_gpu_count"),
    ({"gpufleet_gpu_count": -1}, "gpufleet_gpu_count"),
    ({"gpufleet_gpu_model": ""}, "gpufleet_gpu_model"),
    ({"gpufleet_gpu_model": 100}, "gpufleet_gpu_model"),
    ({"gpufleet_driver_min": "535.x"}, "gpufleet_driver_min"),
    ({"gpufleet_driver_version": ["535"]}, "gpufleet_driver_version"),
    ({"gpufleet_cuda_min": 12.1}, "gpufleet_cuda_min"),
])
def test_expectations_errors_name_the_variable(vars, variable):
    with pytest.raises(ValueError, match=f"^{variable}: "):
        Expectations.from_vars(vars)


def test_model_matching():
    e = Expectations(gpu_model="a100")
    assert e.model_matches("NVIDIA A100-SXM4-80GB") and not e.model_matches("NVIDIA H100 80GB HBM3")
    g = Expectations(gpu_model="NVIDIA A100-*-80GB")
    assert g.model_matches("nvidia a100-sxm4-80gb") and not g.model_matches("NVIDIA A100-SXM4-40GB")
    assert not e.model_matches(None)
