"""`gpufleet verify --profile nightly --duration 30` on real sshd test hosts: the sustained stages run for their
budget on the CPU, the report says what ran and for how long, and a planted silent corruption fails its host."""

from __future__ import annotations

import json
import sys

import pytest

from tests.sshd import invoke_env, run_invoke
from verify import burn
from verify.status import overall

pytestmark = pytest.mark.slow


def _vars(farm, name, **extra):
    return {"ansible_python_interpreter": sys.executable,
            "gpufleet_remote_dir": str(farm.root / name / "cache"), **extra}


def test_nightly_runs_burn_and_memory_test_for_its_budget(farm, tmp_path):
    farm.add_host("burn-ok", fixture=None, gpus=0, extra_vars=_vars(farm, "burn-ok"))
    farm.add_host("burn-sdc", fixture=None, gpus=0,
                  extra_vars=_vars(farm, "burn-sdc", gpufleet_verify_env={"GPUFLEET_VERIFY_FAULT": "burn-corrupt"}))
    inv = tmp_path / "hosts.yaml"
    inv.write_text(farm.inventory(["burn-ok", "burn-sdc"]))
    out = tmp_path / "reports"
    r = run_invoke(["verify", "--hosts", "gpu-nodes", "--inventory", str(inv), "--out", str(out), "--profile",
                    "nightly", "--duration", "30", "--nproc", "1", "--checks", "compute,burn,memtest",
                    "--no-history"], invoke_env(farm, tmp_path / "home"), timeout=900)
    assert r.returncode == 1, r.stdout + r.stderr  # burn-sdc fails
    (run_dir,) = [p for p in out.iterdir() if p.is_dir()]
    ok = json.loads((run_dir / "hosts" / "burn-ok.json").read_text())
    checks = {c["name"]: c for c in ok["checks"]}
    assert ok["profile"] == "nightly" and ok["options"]["duration_s"] == 30
    assert checks["burn/correct/fp32:cpu0"]["status"] == "pass"
    series = checks["burn/fp32:cpu0"]["details"]["series_tflops"]
    assert checks["burn/fp32:cpu0"]["status"] == burn.stability(series)[0]  # the rule, over what it recorded
    assert checks["telemetry:cpu0"]["status"] == "skip" and "CPU run" in checks["telemetry:cpu0"]["message"]
    assert [c["status"] for n, c in checks.items() if n.startswith("memtest")] and all(
        c["status"] == "pass" for n, c in checks.items() if n.startswith("memtest"))
    # 70 % and 30 % of 30 s: the burn runs its budget out (to the end of its last interval, 0.25 s on a CPU); the memory
    # test starts a pass only if it fits, so it ends inside its budget, having used most of it
    assert 21.0 <= ok["stages"]["burn"] <= 24.0 and 0.8 * 9.0 <= ok["stages"]["memtest"] <= 9.5
    assert ok["metrics"]["burn/fp32/seconds:cpu0"] >= 21.0
    sdc = json.loads((run_dir / "hosts" / "burn-sdc.json").read_text())
    bad = {c["name"]: c for c in sdc["checks"]}["burn/correct/fp32:cpu0"]
    assert bad["status"] == "fail" and "the product changed at interval 2" in bad["message"]
    assert sdc["stages"]["burn"] < 21.0  # it stopped at the corruption
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["hosts"]["burn-sdc"]["status"] == "fail"
    assert summary["hosts"]["burn-ok"]["status"] == overall(ok["checks"])  # its own checks' verdict
    page = (run_dir / "summary.html").read_text()  # the burn's series, per host, under sustained load
    sustained = page[page.index('<section id="sustained">'):]
    sustained = sustained[:sustained.index("</section>")]
    assert "burn-ok" in sustained and "burn-sdc" in sustained and "fp32" in sustained
