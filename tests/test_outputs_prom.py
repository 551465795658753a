"""The Prometheus textfile, read back with Prometheus's own exposition parser (prometheus_client)."""

from __future__ import annotations

import json
import re

import pytest

from fleet.outputs import prom
from tests.golden_cases import CASES
from tests.outputs_data import REFUSED, WEIRD, audit_report, verify_reports, verify_summary

parser = pytest.importorskip("prometheus_client.parser")

T_FINISHED = 1735689900.0  # 2025-01-01T00:05:00Z
STATUSES = ("pass", "warn", "skipped", "fail", "error", "unreachable")  # fleet.outcome.STATUSES, spelled out


def parse(text: str) -> tuple[dict, dict]:
    """``({family: type}, {(name, ((label, value), ...)): value})``; a repeated sample fails the test."""
    types, samples = {}, {}
    for fam in parser.text_string_to_metric_families(text):
        assert fam.name not in types, f"family {fam.name} twice"
        types[fam.name] = fam.type
        for s in fam.samples:
            key = (s.name, tuple(sorted(s.labels.items())))
            assert key not in samples, key
            samples[key] = s.value
    return types, samples


def family(samples: dict, name: str) -> dict:
    """{labels tuple: value} of one family."""
    return {labels: v for (n, labels), v in samples.items() if n == name}


def lab(**kw) -> tuple:
    return tuple(sorted(kw.items()))


def check_format(text: str) -> None:
    """Every family has HELP then TYPE before its samples; names follow the naming rules."""
    seen = set()
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("# HELP "):
            name = line.split()[2]
            assert re.fullmatch(r"gpufleet_[a-z0-9_]+", name), name
            assert "__" not in name and not name.endswith("_"), name
            assert lines[i + 1].startswith(f"# TYPE {name} gauge")
            assert name not in seen
            seen.add(name)
        elif not line.startswith("#"):
            assert line.split("{")[0].split(" ")[0] in seen, line
    assert text.endswith("\n")


# --------------------------------------------------------------------------- audit


@pytest.fixture(scope="module")
def audit():
    report = audit_report()
    text = prom.audit_textfile(report)
    return report, text, *parse(text)


def test_audit_host_status_is_one_hot(audit):
    _, text, types, samples = audit
    check_format(text)
    assert types["gpufleet_host_status"] == "gauge"
    expected = {"good": "pass", "bad": "fail", "gone": "unreachable"}
    assert family(samples, "gpufleet_host_status") == {
        lab(command="audit", host=h, status=s): float(s == want) for h, want in expected.items() for s in STATUSES}
    assert family(samples, "gpufleet_host_state_info") == {
        lab(command="audit", host="good", state="ok"): 1.0, lab(command="audit", host="bad", state="ok"): 1.0,
        lab(command="audit", host="gone", state="unreachable"): 1.0}
    assert family(samples, "gpufleet_hosts") == {
        lab(command="audit", status=s): float({"pass": 1, "fail": 1, "unreachable": 1}.get(s, 0)) for s in STATUSES}


def test_audit_run_facts(audit):
    _, _, _, samples = audit
    assert family(samples, "gpufleet_last_run_timestamp_seconds") == {lab(command="audit"): T_FINISHED}
    assert family(samples, "gpufleet_exit_code") == {lab(command="audit"): 1.0}
    assert family(samples, "gpufleet_interrupted") == {lab(command="audit"): 0.0}
    assert family(samples, "gpufleet_host_duration_seconds") == {
        lab(command="audit", host="good"): 1.5, lab(command="audit", host="bad"): 1.5,
        lab(command="audit", host="gone"): 10.0}


def test_audit_info_and_gpu_counts(audit):
    report, _, _, samples = audit
    good, bad = (report["hosts"][h]["facts"] for h in ("good", "bad"))
    assert family(samples, "gpufleet_audit_host_info") == {
        lab(host="bad", driver_version="535.104.05", cuda_version="12.2", kernel="5.15.0-91-generic"): 1.0,
        lab(host="good", driver_version=good["driver_version"], cuda_version=good["cuda_version"],
            kernel=good["kernel"]): 1.0}
    assert family(samples, "gpufleet_audit_gpus") == {lab(host="good"): float(len(good["gpus"])),
                                                      lab(host="bad"): 2.0}
    assert family(samples, "gpufleet_audit_pci_gpus")[lab(host="bad")] == 2.0
    info = family(samples, "gpufleet_audit_gpu_info")
    assert info[lab(host="bad", gpu="gpu1", name="NVIDIA H100 80GB HBM3",
                    uuid="GPU-bbbbbbbb-1111-1111-1111-111111111111", pci_bus_id="00000000:2A:00.0",
                    vbios_version="")] == 1.0
    assert not any(dict(k)["host"] == "gone" for k in info)


def test_audit_gpu_metrics_in_base_units(audit):
    _, _, _, samples = audit
    bad = lambda name, gpu: samples[(name, lab(host="bad", gpu=gpu))]  # noqa: E731
    assert bad("gpufleet_audit_gpu_memory_total_bytes", "gpu0") == 81559 * 1024 * 1024
    assert bad("gpufleet_audit_gpu_utilization_ratio", "gpu0") == pytest.approx(0.97)
    assert bad("gpufleet_audit_gpu_utilization_ratio", "gpu1") == pytest.approx(0.85)
    assert bad("gpufleet_audit_gpu_ecc_volatile_correctable_errors", "gpu0") == 3
    assert bad("gpufleet_audit_gpu_ecc_volatile_uncorrectable_errors", "gpu1") == 2
    assert bad("gpufleet_audit_gpu_ecc_aggregate_correctable_errors", "gpu0") == 12
    assert bad("gpufleet_audit_gpu_remapped_rows_uncorrectable", "gpu1") == 1
    assert bad("gpufleet_audit_gpu_remapped_rows_pending", "gpu1") == 1
    assert bad("gpufleet_audit_gpu_remapped_rows_pending", "gpu0") == 0
    assert bad("gpufleet_audit_gpu_pcie_link_generation", "gpu1") == 3
    assert bad("gpufleet_audit_gpu_pcie_link_width_lanes", "gpu1") == 8
    assert bad("gpufleet_audit_gpu_pcie_link_width_lanes_max", "gpu1") == 16
    # unknown is left out, never written as 0: this capture has no temperature
    assert ("gpufleet_audit_gpu_temperature_celsius", lab(host="bad", gpu="gpu0")) not in samples


def test_audit_every_check_has_its_status_code(audit):
    report, _, _, samples = audit
    codes = family(samples, "gpufleet_audit_check_status")
    expected = {}
    for host, h in report["hosts"].items():
        for c in h["checks"]:
            check, _, gpu = c["name"].partition(":gpu")
            expected[lab(host=host, check=check, gpu=f"gpu{gpu}" if gpu else "")] = float(prom.CHECK_CODES[c["status"]])
    assert codes == expected
    assert codes[lab(host="bad", check="ecc", gpu="gpu1")] == 3.0  # fail
    assert codes[lab(host="bad", check="clocks", gpu="gpu1")] == 2.0  # warn
    assert codes[lab(host="bad", check="nvlink", gpu="")] == 1.0  # skip
    assert codes[lab(host="bad", check="kernel:fallen-off-bus", gpu="")] == 3.0
    golden = json.loads((CASES / "faulty-h100-2gpu" / "checks.json").read_text())["checks"]
    assert len({k for k in codes if dict(k)["host"] == "bad"}) >= len(golden)


def test_audit_every_golden_case_parses():
    from tests.outputs_data import audited
    from fleet.audit.run import build_report
    from fleet.fanout import FleetResult

    cases = sorted(p.name for p in CASES.iterdir() if p.is_dir())
    report = build_report(FleetResult({c: audited(c, c) for c in cases}), "inventory.yaml", "all")
    text = prom.audit_textfile(report)
    check_format(text)
    _, samples = parse(text)
    assert {dict(k)["host"] for k in family(samples, "gpufleet_host_status")} == set(cases)


# --------------------------------------------------------------------------- verify


@pytest.fixture(scope="module")
def verify():
    reports = verify_reports()
    summary = verify_summary(reports)
    text = prom.verify_textfile(summary, reports)
    return summary, text, *parse(text)


def test_verify_host_status(verify):
    _, text, _, samples = verify
    check_format(text)
    # n1 passes its own checks but straggles (its gpu2 at half the node's median): the verdict fails it
    expected = {"n0": "pass", "n1": "fail", "n2": "warn", WEIRD: "fail", "gone": "unreachable"}
    assert family(samples, "gpufleet_host_status") == {
        lab(command="verify", host=h, status=s): float(s == want) for h, want in expected.items() for s in STATUSES}
    assert family(samples, "gpufleet_last_run_timestamp_seconds") == {lab(command="verify"): T_FINISHED}
    assert family(samples, "gpufleet_exit_code") == {lab(command="verify"): 1.0}
    assert family(samples, "gpufleet_host_state_info")[lab(command="verify", host="gone", state="unreachable")] == 1


def test_verify_metric_per_gpu_with_host_and_gpu_labels(verify):
    _, _, types, samples = verify
    matmul = family(samples, "gpufleet_verify_matmul_bf16_flops_per_second")
    hosts = ("n0", "n1", "n2", WEIRD)
    assert matmul == {lab(host=h, gpu=f"gpu{i}"): (350e12 if (h, i) == ("n1", 2) else 700e12)
                      for h in hosts for i in range(4)}
    assert family(samples, "gpufleet_verify_memory_d2d_bytes_per_second") == {
        lab(host=h, gpu=f"gpu{i}"): 2000e9 for h in hosts for i in range(4)}
    # an un-suffixed value: the host's own, gpu empty
    assert family(samples, "gpufleet_verify_allreduce_busbw_bytes_per_second") == {
        lab(host=h, gpu=""): 400e9 for h in hosts}
    assert types["gpufleet_verify_matmul_bf16_flops_per_second"] == "gauge"


def test_verify_without_reports_writes_host_figures(verify):
    summary = verify[0]
    _, samples = parse(prom.verify_textfile(summary))
    assert family(samples, "gpufleet_verify_matmul_bf16_flops_per_second") == {
        lab(host="n0", gpu=""): 700e12, lab(host="n1", gpu=""): 350e12, lab(host="n2", gpu=""): 700e12,
        lab(host=WEIRD, gpu=""): 700e12}


def test_verify_stragglers_ratios_and_checks(verify):
    _, _, _, samples = verify
    assert family(samples, "gpufleet_verify_stragglers") == {(): 2.0}
    assert family(samples, "gpufleet_verify_straggler") == {
        lab(host=h): float(h == "n1") for h in ("n0", "n1", "n2", WEIRD, "gone")}
    assert family(samples, "gpufleet_verify_straggler_ratio") == {
        lab(host="n1", metric="matmul/bf16/tflops", gpu="", scope="fleet"): 0.5,
        lab(host="n1", metric="matmul/bf16/tflops", gpu="gpu2", scope="node"): 0.5}
    ratios = family(samples, "gpufleet_verify_fleet_ratio")
    assert ratios[lab(host="n1", metric="matmul/bf16/tflops")] == 0.5
    assert ratios[lab(host="n0", metric="allreduce/busbw_gbps")] == 1.0
    assert family(samples, "gpufleet_verify_check_status") == {
        lab(host="n2", check="compute/matmul/bf16", gpu="gpu1"): 2.0,
        lab(host=WEIRD, check="collectives/allreduce_busbw", gpu=""): 3.0}
    assert verify[0]["regressions"] == [] and verify[0]["baseline"] is None
    assert "gpufleet_verify_regressions" not in {n for n, _ in samples}  # no history: no regression judged


def test_verify_regressions_when_present(verify):
    summary = dict(verify[0])
    summary["baseline"] = {"threshold": 0.9, "window": 5, "min_runs": 3, "profile": "quick"}
    summary["regressions"] = [{"host": "n1", "gpu": "gpu2", "metric": "matmul/bf16/tflops", "value": 350.0,
                               "baseline": 700.0, "ratio": 0.5, "runs": 5}]
    _, samples = parse(prom.verify_textfile(summary))
    labels = lab(host="n1", gpu="gpu2", metric="matmul/bf16/tflops")
    assert family(samples, "gpufleet_verify_regressions") == {(): 1.0}
    assert family(samples, "gpufleet_verify_regression_ratio") == {labels: 0.5}
    assert family(samples, "gpufleet_verify_regression_value") == {labels: 350e12}
    assert family(samples, "gpufleet_verify_regression_baseline") == {labels: 700e12}
    summary["regressions"] = []
    _, samples = parse(prom.verify_textfile(summary))
    assert family(samples, "gpufleet_verify_regressions") == {(): 0.0}


def test_label_values_round_trip(verify):
    _, text, _, samples = verify
    assert 'host="odd\\"host\\\\name\\nline2"' in text
    assert (("gpufleet_verify_gpus", lab(host=WEIRD))) in samples
    nasty = 'a"b\\c\nd\\n"'
    summary = {"hosts": {nasty: {"status": "fail", "state": "failed", "message": nasty}}, "counts": {}}
    _, samples = parse(prom.verify_textfile(summary))
    assert family(samples, "gpufleet_host_state_info") == {lab(command="verify", host=nasty, state="failed"): 1.0}


@pytest.mark.parametrize("base, name, factor", [
    ("matmul/bf16/tflops", "gpufleet_verify_matmul_bf16_flops_per_second", 1e12),
    ("memory/h2d/gbps", "gpufleet_verify_memory_h2d_bytes_per_second", 1e9),
    ("allreduce/busbw_gbps", "gpufleet_verify_allreduce_busbw_bytes_per_second", 1e9),
    ("allreduce/64MiB/busbw_gbps", "gpufleet_verify_allreduce_64mib_busbw_bytes_per_second", 1e9),
    ("ddp/resnet50/images_per_s", "gpufleet_verify_ddp_resnet50_images_per_second", 1),
    ("collectives/barrier/latency_us", "gpufleet_verify_collectives_barrier_latency_seconds", 1e-6),
    ("step_ms", "gpufleet_verify_step_seconds", 1e-3),
    ("pipeline/jpeg/ratio", "gpufleet_verify_pipeline_jpeg_ratio", 1),
    ("gpus", "gpufleet_verify_gpus_metric", 1),  # never onto a family of the module's own
    ("straggler/ratio", "gpufleet_verify_straggler_ratio_metric", 1),
])
def test_verify_metric_names(base, name, factor):
    assert prom.verify_metric(base) == (name, factor)


def test_writers_are_atomic_and_whole(tmp_path, verify):
    summary = verify[0]
    path = prom.write_verify_textfile(tmp_path / "gpufleet_verify.prom", summary)
    assert path.read_text() == prom.verify_textfile(summary)
    assert [p.name for p in tmp_path.iterdir()] == ["gpufleet_verify.prom"]  # no temporary left behind
    report = audit_report()
    path = prom.write_audit_textfile(tmp_path / "gpufleet_audit.prom", report)
    parse(path.read_text())
    assert REFUSED not in path.read_text()  # a message is not a label: the textfile stays small and stable


def test_audit_and_verify_files_can_share_a_textfile_directory(audit, verify):
    """node_exporter merges families across files: a shared family must have one HELP and one label set."""
    def helps(text):
        return {line.split()[2]: line for line in text.splitlines() if line.startswith("# HELP ")}

    a, v = helps(audit[1]), helps(verify[1])
    shared = set(a) & set(v)
    assert shared == {"gpufleet_host_status", "gpufleet_host_state_info", "gpufleet_hosts",
                      "gpufleet_last_run_timestamp_seconds", "gpufleet_exit_code", "gpufleet_interrupted"}
    assert all(a[n] == v[n] for n in shared)
    for name in shared:
        keys = {tuple(k for k, _ in labels) for labels in family(audit[3], name)}
        keys |= {tuple(k for k, _ in labels) for labels in family(verify[3], name)}
        assert len(keys) == 1, (name, keys)
