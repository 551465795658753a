"""verify/dcgm.py: DCGM diagnostics as verify checks.

Golden tests over every capture in tests/data/dcgm/ (see its README for sources). The expected checks
were written from DCGM's semantics (dcgmi/Diag.cpp, the plugin documentation) and the mapping in
docs/dcgm.md before the parser was run on the files: exact names, order and statuses, and the key part
of each message that matters.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from verify import dcgm, report
from verify.status import ERROR, FAIL, PASS, SKIP

DATA = Path(__file__).parent / "data" / "dcgm"

# The nine level-1 tests of DCGM 3.0-3.1 (dcgmi's levelOneTests, less the CUDA runtime check it omits).
VC_DEPLOYMENT = ["denylist", "nvml_library", "cuda_main_library", "permissions_and_os_blocks", "persistence_mode",
                 "environment_variables", "page_retirement_row_remap", "graphics_processes", "inforom"]


def _all_pass(slugs):
    return [(f"dcgm/{s}", PASS) for s in slugs]


def _with_gpu(slug_, status, gpus=(0,), test_status=None):
    return [(f"dcgm/{slug_}", test_status or status)] + [(f"dcgm/{slug_}:gpu{g}", status) for g in gpus]


GB10_SOFTWARE_FAIL = _with_gpu("software", FAIL)

# capture -> (checks with allow_skips=False, checks with allow_skips=True)
GOLDEN = {
    "virtualclient-r1.json": (_all_pass(VC_DEPLOYMENT), _all_pass(VC_DEPLOYMENT)),
    "virtualclient-r2.json": (
        _all_pass(VC_DEPLOYMENT) + _with_gpu("pcie", PASS) + _with_gpu("gpu_memory", PASS),
        _all_pass(VC_DEPLOYMENT) + _with_gpu("pcie", PASS) + _with_gpu("gpu_memory", PASS),
    ),
    "virtualclient-r3-eud-skip.json": (
        _all_pass(VC_DEPLOYMENT) + _with_gpu("pcie", PASS) + _with_gpu("gpu_memory", PASS)
        + _with_gpu("diagnostic", PASS) + _with_gpu("eud_test", FAIL) + _with_gpu("targeted_stress", PASS)
        + _with_gpu("targeted_power", PASS) + _with_gpu("memory_bandwidth", PASS),
        _all_pass(VC_DEPLOYMENT) + _with_gpu("pcie", PASS) + _with_gpu("gpu_memory", PASS)
        + _with_gpu("diagnostic", PASS) + _with_gpu("eud_test", SKIP) + _with_gpu("targeted_stress", PASS)
        + _with_gpu("targeted_power", PASS) + _with_gpu("memory_bandwidth", PASS),
    ),
    "virtualclient-incorrect.json": ([("dcgm", ERROR)], [("dcgm", ERROR)]),
    "glimmer-gb10-r1-4.2.3.json": (GB10_SOFTWARE_FAIL, GB10_SOFTWARE_FAIL),
    "glimmer-gb10-r2-partial-skip-4.2.3.json": (
        GB10_SOFTWARE_FAIL + _with_gpu("memory", FAIL) + _with_gpu("pcie", FAIL),
        GB10_SOFTWARE_FAIL + _with_gpu("memory", SKIP) + _with_gpu("pcie", SKIP),
    ),
    "glimmer-gb10-r2-gated-4.5.2.json": (
        GB10_SOFTWARE_FAIL + _with_gpu("memory", FAIL) + _with_gpu("pcie", FAIL),
        GB10_SOFTWARE_FAIL + _with_gpu("memory", SKIP) + _with_gpu("pcie", SKIP),
    ),
    "glimmer-gb10-r2-allowed-4.5.2.json": (
        GB10_SOFTWARE_FAIL + _with_gpu("memory", PASS) + _with_gpu("pcie", PASS),
        GB10_SOFTWARE_FAIL + _with_gpu("memory", PASS) + _with_gpu("pcie", PASS),
    ),
    "synthetic-3.3-fail.json": (
        _all_pass(VC_DEPLOYMENT[:4]) + [("dcgm/persistence_mode", FAIL), ("dcgm/persistence_mode:gpu1", FAIL)]
        + _all_pass(VC_DEPLOYMENT[5:])
        + [("dcgm/pcie", FAIL), ("dcgm/pcie:gpu0", PASS), ("dcgm/pcie:gpu1", FAIL)]
        + [("dcgm/gpu_memory", FAIL), ("dcgm/gpu_memory:gpu0", PASS), ("dcgm/gpu_memory:gpu1", FAIL)],
        _all_pass(VC_DEPLOYMENT[:4]) + [("dcgm/persistence_mode", FAIL), ("dcgm/persistence_mode:gpu1", FAIL)]
        + _all_pass(VC_DEPLOYMENT[5:])
        + [("dcgm/pcie", FAIL), ("dcgm/pcie:gpu0", PASS), ("dcgm/pcie:gpu1", FAIL)]
        + [("dcgm/gpu_memory", SKIP), ("dcgm/gpu_memory:gpu0", PASS), ("dcgm/gpu_memory:gpu1", SKIP)],
    ),
    "synthetic-4.x-memory-alloc-pass.json": (
        _with_gpu("software", PASS) + _with_gpu("memory", FAIL),
        _with_gpu("software", PASS) + _with_gpu("memory", FAIL),
    ),
    "synthetic-4.x-runtime-error.json": ([("dcgm", ERROR)], [("dcgm", ERROR)]),
}

# capture -> {check name: text its message must contain} (allow_skips=False)
MESSAGES = {
    "virtualclient-r3-eud-skip.json": {
        "dcgm/eud_test:gpu0": "skipped by DCGM",
        "dcgm/eud_test": "counted as a failure",
        "dcgm/pcie:gpu0": "GPU to Host bandwidth",
        "dcgm/gpu_memory:gpu0": "Allocated 15206918958 bytes",
    },
    "virtualclient-incorrect.json": {"dcgm": "'DCGM GPU Diagnostic' is a list"},
    "glimmer-gb10-r1-4.2.3.json": {
        "dcgm/software": "Persistence mode for GPU 0 is disabled",
        "dcgm/software:gpu0": "Persistence mode for GPU 0 is disabled",
    },
    "glimmer-gb10-r2-partial-skip-4.2.3.json": {
        "dcgm/memory": "skipped by DCGM (DCGM gave no reason)",
        "dcgm/pcie:gpu0": "skipped by DCGM",
        "dcgm/software": "nvidia-smi -i <gpuId> -pm 1",
    },
    "glimmer-gb10-r2-gated-4.5.2.json": {
        "dcgm/software": "Persistence mode for GPU 0 is disabled",
        "dcgm/memory:gpu0": "skipped by DCGM",
    },
    "glimmer-gb10-r2-allowed-4.5.2.json": {
        "dcgm/memory:gpu0": "Allocated 112427837082 bytes (87.5%)",
        "dcgm/pcie:gpu0": "GPU to Host bandwidth",
        "dcgm/software:gpu0": "Persistence mode for GPU 0 is disabled",
    },
    "synthetic-3.3-fail.json": {
        "dcgm/persistence_mode:gpu1": "Persistence mode for GPU 1 is disabled",
        "dcgm/persistence_mode": "Persistence mode for GPU 1 is disabled",
        "dcgm/pcie:gpu1": "PCIe replays per minute for GPU 1",
        "dcgm/pcie": "gpu1",
        "dcgm/gpu_memory:gpu1": "skipped by DCGM",
    },
    "synthetic-4.x-memory-alloc-pass.json": {
        "dcgm/memory": "DCGM_FR_MEMORY_ALLOC",
        "dcgm/memory:gpu0": "Couldn't allocate at least 75.0% of GPU memory on GPU 0",
    },
    "synthetic-4.x-runtime-error.json": {"dcgm": "Host engine connection invalid/disconnected"},
}


def text(name: str) -> str:
    return (DATA / name).read_text()


def test_every_capture_has_a_golden_case_and_a_readme_entry():
    files = sorted(p.name for p in DATA.glob("*.json"))
    assert files == sorted(GOLDEN)
    readme = (DATA / "README.md").read_text()
    for name in files:
        assert f"`{name}`" in readme, name
    real = [n for n in files if not n.startswith("synthetic-")]
    assert len(real) >= 3
    for name in files:  # every file is a JSON document as published or written
        json.loads(text(name))


@pytest.mark.parametrize("name", sorted(GOLDEN))
@pytest.mark.parametrize("allow_skips", [False, True])
def test_golden(name, allow_skips):
    checks = dcgm.parse_diag(text(name), allow_skips=allow_skips)
    assert [(c["name"], c["status"]) for c in checks] == GOLDEN[name][int(allow_skips)]
    assert report._validate_checks(checks) == []
    for c in checks:
        json.dumps(c)  # JSON-ready
        assert c["message"]


@pytest.mark.parametrize("name", sorted(MESSAGES))
def test_golden_messages(name):
    checks = {c["name"]: c for c in dcgm.parse_diag(text(name))}
    for check, part in MESSAGES[name].items():
        assert part in checks[check]["message"], (check, checks[check]["message"])


def test_details_carry_dcgm_raw_status_error_ids_and_entity():
    checks = {c["name"]: c for c in dcgm.parse_diag(text("glimmer-gb10-r2-gated-4.5.2.json"))}
    gpu = checks["dcgm/software:gpu0"]
    assert gpu["observed"] == "Fail"
    assert gpu["details"]["error_ids"] == [29] and gpu["details"]["entity"] == "GPU 0"
    assert gpu["details"]["category"] == "Deployment" and gpu["details"]["test"] == "software"
    assert checks["dcgm/memory"]["observed"] == "Skip"
    pcie = {c["name"]: c for c in dcgm.parse_diag(text("synthetic-3.3-fail.json"))}["dcgm/pcie:gpu1"]
    assert pcie["details"]["error_ids"] == [3]


def test_skip_rule_is_the_only_difference_allow_skips_makes():
    """allow_skips turns exactly the checks DCGM skipped (or did not run) from fail into skip."""
    for name in GOLDEN:
        strict = dcgm.parse_diag(text(name))
        lenient = dcgm.parse_diag(text(name), allow_skips=True)
        for s, ok in zip(strict, lenient):
            assert s["name"] == ok["name"]
            if s["status"] != ok["status"]:
                assert (s["status"], ok["status"]) == (FAIL, SKIP)
                assert s["observed"] in ("Skip", "Not Run"), s


@pytest.mark.parametrize("word,strict,lenient", [
    ("Pass", PASS, PASS), ("PASS", PASS, PASS), ("Fail", FAIL, FAIL), ("Warn", "warn", "warn"),
    ("Skip", FAIL, SKIP), ("SKIP", FAIL, SKIP), ("Not Run", FAIL, SKIP), ("Inconclusive", ERROR, ERROR),
    (None, ERROR, ERROR),
])
def test_status_words(word, strict, lenient):
    def doc(status):
        result = {"entity_group": "GPU", "entity_id": 3}
        if status is not None:
            result["status"] = status
        return json.dumps({"DCGM Diagnostic": {"test_categories": [
            {"category": "Hardware", "tests": [{"name": "memory", "results": [result]}]}]}})
    for allow, want in ((False, strict), (True, lenient)):
        checks = dcgm.parse_diag(doc(word), allow_skips=allow)
        assert [(c["name"], c["status"]) for c in checks] == [("dcgm/memory", want), ("dcgm/memory:gpu3", want)]


def test_dcgm_331_deployment_lists_one_result_per_error():
    """DCGM 3.3.1's HelperJsonAddBasicTests: the first result has the status, later ones only an error."""
    doc = json.dumps({"DCGM GPU Diagnostic": {"test_categories": [{"category": "Deployment", "tests": [
        {"name": "Persistence Mode", "results": [
            {"status": "Fail", "warnings": "Persistence mode for GPU 0 is disabled.", "error_id": 29,
             "error_category": 8, "error_severity": 5},
            {"warnings": "Persistence mode for GPU 1 is disabled.", "error_id": 29, "error_category": 8,
             "error_severity": 5}]}]}]}, "version": "3.3.1"})
    checks = dcgm.parse_diag(doc)
    assert [(c["name"], c["status"]) for c in checks] == [("dcgm/persistence_mode", FAIL)]
    assert "GPU 0 is disabled" in checks[0]["message"] and "GPU 1 is disabled" in checks[0]["message"]
    assert checks[0]["details"]["error_ids"] == [29]


def test_a_test_with_neither_results_nor_summary_was_not_run():
    doc = json.dumps({"DCGM Diagnostic": {"test_categories": [
        {"category": "Stress", "tests": [{"name": "targeted_stress"}]}]}})
    assert [(c["name"], c["status"]) for c in dcgm.parse_diag(doc)] == [("dcgm/targeted_stress", FAIL)]
    assert [(c["name"], c["status"]) for c in dcgm.parse_diag(doc, True)] == [("dcgm/targeted_stress", SKIP)]


def test_leading_text_and_trailing_lines_are_ignored():
    capture = text("glimmer-gb10-r2-gated-4.5.2.json")
    noisy = "WARNING: some library chatter {not json}\n" + capture + "\nexiting\n"
    assert dcgm.parse_diag(noisy) == dcgm.parse_diag(capture)


@pytest.mark.parametrize("garbage,part", [
    ("", "no JSON object"),
    ("Error: unable to establish a connection to the specified host: localhost", "no JSON object"),
    ('{"foo": 1}', "without a 'DCGM Diagnostic' or 'DCGM GPU Diagnostic' object"),
    ('{"DCGM Diagnostic": {"version": "4.2.3"}}', "holds no test results"),
    ("[1, 2, 3]", "no JSON object"),
])
def test_unusable_output_is_one_error_check(garbage, part):
    checks = dcgm.parse_diag(garbage)
    assert [(c["name"], c["status"]) for c in checks] == [("dcgm", ERROR)]
    assert part in checks[0]["message"]


def test_slug_and_exit_meaning():
    assert dcgm.slug("Page Retirement/Row Remap") == "page_retirement_row_remap"
    assert dcgm.slug("GPU Memory") == "gpu_memory" and dcgm.slug("memory") == "memory"
    assert dcgm.exit_meaning(226) == "DCGM_ST_NVVS_ERROR, -30"
    assert dcgm.exit_meaning(205) == "DCGM_ST_NVVS_ISOLATE_ERROR, -51"
    assert dcgm.exit_meaning(0) == ""


# --- run(): a real subprocess, a fake dcgmi ---------------------------------------------------------------

def fake_dcgmi(tmp_path: Path, body: str, name: str = "dcgmi") -> Path:
    """An executable shell script that records its arguments, then runs ``body``."""
    script = tmp_path / name
    script.write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" > "{tmp_path}/args"\n{body}\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return script


def printing(capture: str, code: int) -> str:
    return f"cat '{DATA / capture}'\nexit {code}"


def check_map(checks):
    return {c["name"]: c for c in checks}


def assert_valid(metrics, checks):
    assert report._validate_checks(checks) == []
    for key, value in metrics.items():
        assert report.METRIC_KEY.match(key) and isinstance(value, (int, float)), key


def test_run_without_dcgmi_is_one_failure(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty directory: no dcgmi anywhere
    metrics, checks = dcgm.run(1, False, 30)
    assert metrics == {}
    assert [(c["name"], c["status"]) for c in checks] == [("dcgm", FAIL)]  # asked for, and it cannot run
    assert checks[0]["message"] == (
        "dcgmi not found (not on PATH or not executable); install NVIDIA's datacenter-gpu-manager and start its "
        "host engine (nv-hostengine) to run DCGM diagnostics: the DCGM diagnostic asked for (level 1) cannot run")


def test_run_finds_dcgmi_on_path(tmp_path, monkeypatch):
    fake_dcgmi(tmp_path, printing("virtualclient-r1.json", 0))
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ.get('PATH', '')}")
    metrics, checks = dcgm.run(1, False, 30)
    assert (tmp_path / "args").read_text().split() == ["diag", "-r", "1", "-j"]
    assert check_map(checks)["dcgm"]["status"] == PASS
    assert metrics == {"dcgm/level": 1, "dcgm/exit_code": 0, "dcgm/seconds": metrics["dcgm/seconds"], "dcgm/tests": 9}


def test_run_gated_capture_with_dcgm_exit_code(tmp_path):
    script = fake_dcgmi(tmp_path, printing("glimmer-gb10-r2-gated-4.5.2.json", 226))
    metrics, checks = dcgm.run(2, False, 30, dcgmi=str(script))
    assert (tmp_path / "args").read_text().split() == ["diag", "-r", "2", "-j"]
    assert_valid(metrics, checks)
    expected = GOLDEN["glimmer-gb10-r2-gated-4.5.2.json"][0] + [("dcgm", FAIL)]
    assert [(c["name"], c["status"]) for c in checks] == expected
    summary = check_map(checks)["dcgm"]
    assert "DCGM 4.5.2" in summary["message"] and "exit 226 (DCGM_ST_NVVS_ERROR, -30)" in summary["message"]
    assert "0 of 3 tests passed" in summary["message"]
    assert summary["details"]["version"] == "4.5.2" and summary["details"]["driver"] == "580.82.09"
    assert metrics["dcgm/exit_code"] == 226 and metrics["dcgm/level"] == 2 and metrics["dcgm/tests"] == 3

    _, lenient = dcgm.run(2, True, 30, dcgmi=str(script))
    assert check_map(lenient)["dcgm"]["status"] == FAIL  # software still fails; memory and pcie are skips
    assert check_map(lenient)["dcgm/memory"]["status"] == SKIP


def test_run_all_pass(tmp_path):
    script = fake_dcgmi(tmp_path, printing("virtualclient-r2.json", 0))
    metrics, checks = dcgm.run(2, False, 30, dcgmi=str(script))
    assert_valid(metrics, checks)
    assert {c["status"] for c in checks} == {PASS}
    assert "11 of 11 tests passed" in check_map(checks)["dcgm"]["message"]


def test_run_nonzero_exit_over_an_all_pass_document_is_an_error(tmp_path):
    script = fake_dcgmi(tmp_path, printing("virtualclient-r2.json", 226))
    _, checks = dcgm.run(2, False, 30, dcgmi=str(script))
    summary = check_map(checks)["dcgm"]
    assert summary["status"] == ERROR and "non-zero" in summary["message"]
    assert all(c["status"] == PASS for c in checks if c["name"] != "dcgm")


def test_run_level_two_that_ran_only_deployment_checks_is_a_skip(tmp_path):
    script = fake_dcgmi(tmp_path, printing("virtualclient-r1.json", 0))
    _, strict = dcgm.run(2, False, 30, dcgmi=str(script))
    assert check_map(strict)["dcgm"]["status"] == FAIL
    assert "ran no test beyond the deployment checks" in check_map(strict)["dcgm"]["message"]
    _, lenient = dcgm.run(2, True, 30, dcgmi=str(script))
    assert check_map(lenient)["dcgm"]["status"] == SKIP
    _, level1 = dcgm.run(1, False, 30, dcgmi=str(script))
    assert check_map(level1)["dcgm"]["status"] == PASS


def test_run_runtime_error_document_is_a_diagnostic_that_could_not_run(tmp_path):
    script = fake_dcgmi(tmp_path, printing("synthetic-4.x-runtime-error.json", 235))
    _, checks = dcgm.run(1, False, 30, dcgmi=str(script))
    assert [(c["name"], c["status"]) for c in checks] == [("dcgm", FAIL)]  # the host engine is down: asked, not run
    assert checks[0]["message"].startswith("DCGM could not run the diagnostic asked for: dcgmi diag -r 1 -j: ")
    assert "Host engine connection invalid" in checks[0]["message"]
    assert "exit 235 (DCGM_ST_CONNECTION_NOT_VALID, -21)" in checks[0]["message"]


def test_cannot_run_reads_the_runtime_error_or_the_exit_status():
    assert dcgm.cannot_run({"DCGM Diagnostic": {"runtime_error": "Host engine connection invalid"}}, 0)
    assert dcgm.cannot_run(None, 256 - 21) and dcgm.cannot_run(None, 256 - 17)  # no host engine; no permission
    assert not dcgm.cannot_run(None, 226)  # DCGM_ST_NVVS_ERROR: a test failed, the diagnostic ran
    assert not dcgm.cannot_run({"DCGM Diagnostic": {"test_categories": []}}, 0)
    assert not dcgm.cannot_run(None, None) and not dcgm.cannot_run(None, 139)


@pytest.mark.parametrize("body,code,status", [
    ("echo 'Error: unable to establish a connection to the specified host: localhost' >&2", 235, FAIL),
    ("echo 'Segmentation fault (core dumped) {{{'", 139, ERROR),
    ("head -c 300 /dev/zero | tr '\\0' 'x'", 0, ERROR),
])
def test_run_garbage_is_an_error_with_the_tail(tmp_path, body, code, status):
    # exit 235 (DCGM_ST_CONNECTION_NOT_VALID): no host engine, the diagnostic could not run: a failure
    script = fake_dcgmi(tmp_path, f"{body}\nexit {code}")
    metrics, checks = dcgm.run(1, False, 30, dcgmi=str(script))
    assert_valid(metrics, checks)
    assert [(c["name"], c["status"]) for c in checks] == [("dcgm", status)]
    message = checks[0]["message"]
    assert f"exit {code}" in message and "no JSON object" in message
    assert ("unable to establish a connection" in message or "Segmentation fault" in message or "xxxx" in message)
    assert metrics["dcgm/exit_code"] == code


def test_run_hang_is_stopped_at_the_timeout(tmp_path):
    script = fake_dcgmi(tmp_path, "echo started\nsleep 60\necho never")
    metrics, checks = dcgm.run(3, False, 1, dcgmi=str(script), grace=5)
    assert [(c["name"], c["status"]) for c in checks] == [("dcgm", ERROR)]
    assert "did not finish within 1 s" in checks[0]["message"] and "started" in checks[0]["message"]
    assert "never" not in checks[0]["message"]  # stopped in its sleep, not waited for
    assert metrics["dcgm/level"] == 3 and "dcgm/exit_code" not in metrics


def test_run_hang_that_ignores_sigterm_is_killed_after_the_grace(tmp_path):
    script = fake_dcgmi(tmp_path, "trap '' TERM\nwhile :; do sleep 1; done")  # ends only by SIGKILL
    _, checks = dcgm.run(4, False, 0.5, dcgmi=str(script), grace=0.5)
    assert [(c["name"], c["status"]) for c in checks] == [("dcgm", ERROR)]
    assert "SIGKILL after 0.5 s" in checks[0]["message"]


def test_run_rejects_a_bad_level():
    with pytest.raises(ValueError):
        dcgm.run(5, False, 10)
