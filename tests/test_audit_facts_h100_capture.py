"""A real capture from an H100 (schema v13, driver 580): parsed and judged healthy."""

from __future__ import annotations

from pathlib import Path

from fleet.audit.checks import evaluate
from fleet.audit.expectations import Expectations
from fleet.audit.facts.host import HostFacts
from fleet.audit.facts.nvidia_smi import parse_xml

CAPTURE = Path(__file__).parent / "data" / "nvidia-smi" / "h100-sxm-80gb-v13-captured.xml"


def test_h100_capture_parses():
    log = parse_xml(CAPTURE.read_text())
    assert (log.driver_version, log.cuda_version, log.schema) == ("580.159.04", "13.0", "v13")
    (gpu,) = log.gpus
    assert gpu.name == "NVIDIA H100 80GB HBM3" and gpu.uuid.startswith("GPU-")
    assert gpu.memory_total_mib > 80000
    assert gpu.pcie == {"link_gen_current": 5, "link_gen_max": 5, "link_width_current": 16, "link_width_max": 16}
    assert gpu.ecc["volatile_uncorrectable"] == 0 and gpu.persistence_mode == "Enabled"


def test_h100_capture_is_healthy_against_a_matching_policy_and_fails_a_wrong_one():
    log = parse_xml(CAPTURE.read_text())
    facts = HostFacts(driver_version=log.driver_version, cuda_version=log.cuda_version, gpus=log.gpus,
                      lspci_gpu_count=1, attached_gpus=log.attached_gpus)
    good = Expectations.from_vars({"gpufleet_gpu_count": 1, "gpufleet_gpu_model": "H100",
                                   "gpufleet_driver_min": "550.54", "gpufleet_cuda_min": "12.4"})
    status = {c.name: c.status.value for c in evaluate(facts, good)}
    for name in ("gpu-count:lspci", "gpu-count:expected", "gpu-model", "driver-version", "cuda-version",
                 "ecc:gpu0", "pcie:gpu0", "clocks:gpu0", "persistence:gpu0"):
        assert status[name] == "pass", (name, status)
    bad = Expectations.from_vars({"gpufleet_gpu_count": 8, "gpufleet_gpu_model": "A100",
                                  "gpufleet_driver_version": "575"})
    status = {c.name: c.status.value for c in evaluate(facts, bad)}
    assert status["gpu-count:expected"] == status["gpu-model"] == status["driver-version"] == "fail"
