"""Unit tests of verify's pure logic: status rules, reference table, guard parser, bandwidth math, schema."""

from __future__ import annotations

import json
import os
import subprocess
import warnings

import pytest

import tests.verify_helpers  # noqa: F401  (puts the repo on sys.path)
from verify import SCHEMA, cli, collectives, faults, guard, profiles, reference, report, status
from verify import dist as vdist
from verify import env as venv


# -- status ---------------------------------------------------------------------------------------
def test_worst_orders_by_severity_and_skip_counts_as_pass():
    assert status.worst([]) == "pass"
    assert status.worst(["pass", "skip"]) == "pass"
    assert status.worst(["skip", "warn", "pass"]) == "warn"
    assert status.worst(["warn", "fail", "skip"]) == "fail"
    assert status.worst(["fail", "error", "warn"]) == "error"
    with pytest.raises(ValueError):
        status.worst(["pass", "bogus"])


def test_make_check_drops_none_and_rejects_unknown_status():
    c = status.make_check("a/b", "pass", "ok", observed=1.5, reference=None)
    assert c == {"name": "a/b", "status": "pass", "message": "ok", "observed": 1.5}
    with pytest.raises(ValueError):
        status.make_check("a", "ok", "x")


# -- faults ---------------------------------------------------------------------------------------
def test_fault_parsing():
    assert faults.parse(None) == frozenset()
    assert faults.parse(" ddp-perturb , matmul-corrupt ") == {"ddp-perturb", "matmul-corrupt"}
    with pytest.raises(ValueError, match="unknown fault"):
        faults.parse("ddp-perturb,bogus")
    assert faults.active({faults.ENV_VAR: "rank-exit"}) == {"rank-exit"}


# -- reference table ------------------------------------------------------------------------------
@pytest.mark.parametrize("name,key", [
    ("NVIDIA H100 80GB HBM3", "h100-sxm"), ("NVIDIA H100 PCIe", "h100-pcie"), ("NVIDIA H100 NVL", "h100-nvl"),
    ("NVIDIA H200", "h200-sxm"), ("NVIDIA H200 NVL", "h200-nvl"),
    ("NVIDIA A100-SXM4-80GB", "a100-sxm-80gb"), ("NVIDIA A100-SXM4-40GB", "a100-sxm-40gb"),
    ("NVIDIA A100-PCIE-40GB", "a100-pcie-40gb"), ("NVIDIA A100 80GB PCIe", "a100-pcie-80gb"),
    ("NVIDIA L40S", "l40s"), ("NVIDIA L40", "l40"), ("NVIDIA A10G", "a10g"), ("NVIDIA A10", "a10"),
    ("NVIDIA L4", "l4"), ("Tesla T4", "t4"), ("Tesla V100-SXM2-16GB", "v100-sxm2"),
    ("NVIDIA GeForce RTX 4090", "rtx-4090"), ("NVIDIA GeForce RTX 3090", "rtx-3090"),
    ("NVIDIA GeForce RTX 3090 Ti", None), ("NVIDIA GeForce RTX 3080", None), ("Quadro P2000", None),
    ("NVIDIA RTX 4000 SFF Ada Generation", None), ("", None),
])
def test_reference_matches_torch_and_nvidia_smi_names(name, key):
    assert reference.match_key(name) == key


def test_reference_table_covers_required_models_with_sources():
    required = {"h100-sxm", "h100-pcie", "h200-sxm", "a100-sxm-80gb", "a100-pcie-40gb", "l40s", "a10g", "t4",
                "rtx-4090", "rtx-3090"}
    assert required <= set(reference.TABLE)
    for key, entry in reference.TABLE.items():
        assert entry["source"] and entry["source_url"].startswith("https://"), key
        assert entry["memory_gbps"] > 0 and entry["pcie_gbps"] > 0, key
        mm = entry["matmul_tflops"]
        assert mm["fp32"] > 0 and mm["fp16"] >= mm["fp32"], key
        if mm["bf16"] is not None:  # tensor cores: bf16 is dense fp16-rate, tf32 half of it or less
            assert mm["tf32"] <= mm["bf16"], key


def test_lookup_fills_achievable_figures():
    ref = reference.lookup("NVIDIA H100 80GB HBM3")
    assert ref["model"] == "H100 SXM5 80GB"
    bf16 = ref["matmul_tflops"]["bf16"]
    assert bf16["peak"] == 989.4
    assert bf16["achievable"] == pytest.approx(989.4 * reference.ACHIEVABLE["matmul"], rel=1e-6)
    assert ref["memory_gbps"]["achievable"] == pytest.approx(3350 * reference.ACHIEVABLE["memory"], rel=1e-6)
    assert reference.expected(ref, "pcie")["peak"] == 64.0
    assert reference.lookup("Tesla T4")["matmul_tflops"]["bf16"] is None
    assert reference.lookup("Some Future GPU") is None
    ref["matmul_tflops"]["bf16"]["peak"] = 1  # a fresh copy each time
    assert reference.lookup("NVIDIA H100 80GB HBM3")["matmul_tflops"]["bf16"]["peak"] == 989.4


def test_grade_thresholds():
    assert reference.grade(80, 100) == ("pass", 0.8)
    assert reference.grade(79.9, 100)[0] == "warn"
    assert reference.grade(50, 100)[0] == "warn"
    assert reference.grade(49.9, 100)[0] == "fail"
    assert reference.grade(float("nan"), 100)[0] == "fail"
    assert reference.grade(float("inf"), 100)[0] == "fail"
    with pytest.raises(ValueError):
        reference.grade(1, 0)


def test_assess_with_and_without_reference():
    fig = {"peak": 100.0, "achievable": 70.0}
    a = reference.assess(35.0, fig, "TFLOP/s")
    assert a["status"] == "warn" and a["ratio"] == 0.5 and a["reference"] == fig
    assert reference.assess(10.0, fig, "TFLOP/s")["status"] == "fail"
    assert reference.assess(10.0, None, "GB/s") == {"status": "pass", "message": "10 GB/s (no reference figure "
                                                                                   "for this model)"}


# -- guard ----------------------------------------------------------------------------------------
SMI_APPS = """\
12345, /usr/bin/python3, 20480 MiB, GPU-8f2c1a3e-1111-2222-3333-444455556666
777, trainer, epoch 3, 1024 MiB, GPU-0000aaaa-1111-2222-3333-444455556666
888, [Not Found], [N/A], GPU-8F2C1A3E-1111-2222-3333-444455556666
"""


def test_parse_compute_apps_literal():
    apps = guard.parse_compute_apps(SMI_APPS)
    assert [a["pid"] for a in apps] == [12345, 777, 888]
    assert apps[0] == {"pid": 12345, "process_name": "/usr/bin/python3", "used_memory_mib": 20480,
                       "gpu_uuid": "GPU-8f2c1a3e-1111-2222-3333-444455556666"}
    assert apps[1]["process_name"] == "trainer, epoch 3"  # a comma inside the name
    assert apps[2]["used_memory_mib"] is None
    assert guard.parse_compute_apps("No running processes found\n") == []
    assert guard.parse_compute_apps("") == []


def test_busy_devices_matches_uuids_and_excludes_own_pids():
    apps = guard.parse_compute_apps(SMI_APPS)
    uuids = {0: "8f2c1a3e-1111-2222-3333-444455556666", 1: "GPU-0000AAAA-1111-2222-3333-444455556666",
             2: "ffffffff-1111-2222-3333-444455556666"}
    busy = guard.busy_devices(apps, uuids)
    assert sorted(busy) == [0, 1] and [a["pid"] for a in busy[0]] == [12345, 888]
    busy = guard.busy_devices(apps, uuids, exclude_pids=[12345, 888])
    assert sorted(busy) == [1]
    assert guard.busy_devices(None, uuids) == {}
    assert "trainer, epoch 3 (pid 777, 1024 MiB)" in guard.describe(busy[1])


def test_query_compute_apps_without_or_with_failing_nvidia_smi(monkeypatch):
    monkeypatch.setattr(guard.shutil, "which", lambda name: None)
    assert guard.query_compute_apps() is None
    monkeypatch.setattr(guard.shutil, "which", lambda name: "/usr/bin/nvidia-smi")

    def fake_run(cmd, **kw):
        assert cmd == guard.QUERY
        return subprocess.CompletedProcess(cmd, 0, stdout=SMI_APPS, stderr="")
    assert len(guard.query_compute_apps(run=fake_run)) == 3

    def failing(cmd, **kw):
        return subprocess.CompletedProcess(cmd, 9, stdout="", stderr="Failed to initialize NVML")
    assert guard.query_compute_apps(run=failing) is None


# -- environment ----------------------------------------------------------------------------------
def test_parse_os_release():
    text = 'NAME="Ubuntu"\nPRETTY_NAME="Ubuntu 22.04.4 LTS"\n# comment\nID=ubuntu\n'
    assert venv.parse_os_release(text) == {"NAME": "Ubuntu", "PRETTY_NAME": "Ubuntu 22.04.4 LTS", "ID": "ubuntu"}


def test_cuda_warnings_become_failed_checks():
    too_old = ("CUDA initialization: The NVIDIA driver on your system is too old (found version 11040). "
               "Please update your GPU driver")
    [c] = venv.cuda_warnings_checks([too_old, "some unrelated deprecation"])
    assert c["status"] == "fail" and "too old" in c["message"] and c["details"]["warnings"] == [too_old]
    [c] = venv.cuda_warnings_checks(["TypedStorage is deprecated"])
    assert c["status"] == "pass"


class _FakeCuda:
    def __init__(self, warn=None, raise_=None):
        self.warn, self.raise_ = warn, raise_

    def is_available(self):
        if self.warn:
            warnings.warn(self.warn, UserWarning, stacklevel=2)
        if self.raise_:
            raise self.raise_
        return False


class _FakeTorch:
    def __init__(self, cuda):
        self.cuda = cuda


def test_probe_cuda_captures_init_warnings_instead_of_printing(recwarn):
    msg = "CUDA initialization: Found no NVIDIA driver on your system."
    probe = venv.probe_cuda(_FakeTorch(_FakeCuda(warn=msg)))
    assert probe["available"] is False and probe["warnings"] == [msg]
    assert len(recwarn) == 0  # captured, not leaked to stderr
    assert venv.cuda_warnings_checks(probe["warnings"])[0]["status"] == "fail"
    probe = venv.probe_cuda(_FakeTorch(_FakeCuda(raise_=RuntimeError("driver broken"))))
    assert probe["error"] == "RuntimeError: driver broken"


def test_cuda_check_rules():
    base = {"cuda_available": False, "cuda_error": None, "nvidia_smi": None}
    assert venv.cuda_check(base, "auto")["status"] == "skip"
    assert venv.cuda_check(base, "cuda")["status"] == "fail"
    assert venv.cuda_check(dict(base, nvidia_smi="/usr/bin/nvidia-smi"), "auto")["status"] == "fail"
    assert venv.cuda_check(base, "cpu")["status"] == "skip"


def test_torch_location_check_warns_outside_active_env():
    env = {"torch_version": "2.x", "torch_path": "/usr/lib/python3/site-packages/torch",
           "virtualenv": "/opt/venv", "conda_prefix": None}
    assert venv.torch_location_check(env)["status"] == "warn"
    assert venv.torch_location_check(dict(env, torch_path="/opt/venv/lib/site-packages/torch"))["status"] == "pass"
    # a venv made with --system-site-packages (gpufleet's push) sees the base torch on purpose
    seen = venv.torch_location_check(dict(env, system_site_packages=True))
    assert seen["status"] == "pass" and "--system-site-packages" in seen["message"]
    # gpufleet's push: the node Python's site directories, named by the environment's .pth
    node = venv.torch_location_check(dict(env, node_site_dirs=["/srv/x", "/usr/lib/python3/site-packages"]))
    assert node == {"name": "env/torch", "status": "pass", "message": "torch 2.x from /usr/lib/python3/site-packages"
                    "/torch (the node Python's, seen by gpufleet's environment /opt/venv)"}
    assert venv.torch_location_check(dict(env, node_site_dirs=["/usr/lib/python3/site"]))["status"] == "warn"
    assert venv.python_env({"GPUFLEET_NODE_SITE": "/a:/b"})["node_site_dirs"] == ["/a", "/b"]


def test_system_site_packages_read_from_pyvenv_cfg(tmp_path):
    (tmp_path / "pyvenv.cfg").write_text("home = /usr/bin\ninclude-system-site-packages = true\n")
    assert venv.system_site_packages(str(tmp_path)) is True
    (tmp_path / "pyvenv.cfg").write_text("home = /usr/bin\ninclude-system-site-packages = false\n")
    assert venv.system_site_packages(str(tmp_path)) is False
    assert venv.system_site_packages(str(tmp_path / "missing")) is False


# -- collectives math -----------------------------------------------------------------------------
def test_busbw_is_nccl_tests_definition():
    assert collectives.bus_factor(1) == 0.0
    assert collectives.bus_factor(2) == 1.0
    assert collectives.bus_factor(8) == 1.75
    # 1 GB in 10 ms on 8 ranks: algbw 100 GB/s, busbw 175 GB/s
    assert collectives.algbw_gbps(10 ** 9, 0.01) == pytest.approx(100.0)
    assert collectives.busbw_gbps(10 ** 9, 0.01, 8) == pytest.approx(175.0)
    with pytest.raises(ValueError):
        collectives.bus_factor(0)


def test_allreduce_expected_sum_is_sum_of_contributions():
    for n in (1, 2, 3, 8):
        total = sum(collectives.contribution(r, 50) for r in range(n))
        assert bool((total == collectives.expected_sum(n, 50)).all())


def test_size_label():
    assert [collectives.size_label(s) for s in (4096, 1 << 20, 256 << 20, 1 << 30, 1000)] == \
        ["4KiB", "1MiB", "256MiB", "1GiB", "1000B"]


# -- profiles, dist, cli --------------------------------------------------------------------------
def test_profiles_sizes_are_multiples_of_256_and_fit_memory():
    for dev in ("cpu", "cuda"):
        for name in profiles.PROFILES:
            p = profiles.make(name, dev)
            assert p.matmul_n % 256 == 0 and p.matmul_check_n % 256 == 0
    assert profiles.fit_matmul(16384, 80 << 30) == 16384
    small = profiles.fit_matmul(16384, 1 << 30)
    assert small % 256 == 0 and 3 * small * small * 4 <= 0.4 * (1 << 30)
    with pytest.raises(ValueError):
        profiles.make("bogus", "cpu")


def test_gpu_matmul_figure_is_taken_over_a_sweep_fitted_to_memory():
    assert profiles.make("full", "cuda", 80 << 30).sizes() == (4096, 8192, 16384)
    assert profiles.make("quick", "cuda", 80 << 30).sizes() == (4096, 8192)
    assert profiles.make("full", "cuda", 1 << 30).sizes() == (4096,)  # 3 fp32 16384^2 matrices need 3 GiB
    assert profiles.make("acceptance", "cuda", 80 << 30).sizes() == (4096, 8192, 16384)
    assert profiles.make("quick", "cpu").sizes() == (512,) and profiles.make("full", "cpu").sizes() == (2048,)
    sizes = profiles.make("full", "cuda").allreduce_sizes  # each size once, ascending: 1 MiB to 1 GiB
    assert sizes == tuple(sorted(set(sizes))) and sizes[0] == 1 << 20 and sizes[-1] == 1 << 30


def test_rank_info_from_torchrun_variables():
    assert vdist.rank_info({}) == {"rank": 0, "local_rank": 0, "world_size": 1, "local_world_size": 1}
    env = {"RANK": "5", "LOCAL_RANK": "1", "WORLD_SIZE": "8", "LOCAL_WORLD_SIZE": "4"}
    assert vdist.rank_info(env) == {"rank": 5, "local_rank": 1, "world_size": 8, "local_world_size": 4}
    assert vdist.node_count(["a", "a", "b"]) == 2


def test_cli_usage_errors_exit_2():
    assert cli.parse_checks("all") == cli.STAGES
    assert cli.parse_checks("ddp,collectives") == ("collectives", "ddp")
    parser = cli.build_parser()
    for bad in (["--checks", "bogus"], ["--profile", "huge"], ["--timeout", "-1"], ["--device", "tpu"]):
        with pytest.raises(SystemExit) as exc:
            parser.parse_args(bad)
        assert exc.value.code == 2
    args = parser.parse_args([])
    assert (args.profile, args.out, args.device, args.force) == ("quick", "verify-report.json", "auto", False)


def test_unknown_fault_is_a_usage_error(monkeypatch):
    monkeypatch.setenv(faults.ENV_VAR, "bogus")
    assert cli.main(["--checks", "compute"]) == 2


# -- report ---------------------------------------------------------------------------------------
def _good_report() -> dict:
    return {
        "schema": SCHEMA, "version": "0.1.0", "host": "n1", "started": "2024-01-01T00:00:00+00:00",
        "finished": "2024-01-01T00:01:00+00:00", "status": "pass", "profile": "quick", "device": "cuda",
        "env": {}, "metrics": {"matmul/bf16/tflops:gpu0": 700.0, "allreduce/busbw_gbps": 300.0,
                               "inference/resnet50/bs32/images_per_s:gpu9": 3000.0},
        "checks": [{"name": "env/python", "status": "pass", "message": "ok"}],
        "world": {"world_size": 1, "node_count": 1,
                  "ranks": [{"rank": 0, "local_rank": 0, "host": "n1", "device": "gpu0"}]},
    }


def test_validate_accepts_good_report():
    assert report.validate(_good_report()) == []


@pytest.mark.parametrize("mutate,fragment", [
    (lambda r: r.pop("metrics"), "metrics"),
    (lambda r: r.update(schema="other/1"), "schema"),
    (lambda r: r.update(status="skip"), "status"),
    (lambda r: r["metrics"].update({"Bad Key": 1.0}), "bad key"),
    (lambda r: r["metrics"].update({"matmul/bf16/tflops:gpu0@n2": 1.0}), "bad key"),
    (lambda r: r["metrics"].update({"matmul/fp32/tflops:gpu0": float("nan")}), "finite"),
    (lambda r: r["metrics"].update({"matmul/fp32/tflops:gpu0": "fast"}), "finite"),
    (lambda r: r["checks"].append({"name": "x", "status": "great", "message": ""}), "status"),
    (lambda r: r["checks"].append({"name": "env/python", "status": "pass", "message": ""}), "duplicate"),
    (lambda r: r["world"].update(world_size=2), "world.ranks"),
    (lambda r: r["world"].update(node_count=0), "node_count"),
])
def test_validate_rejects_each_departure(mutate, fragment):
    r = _good_report()
    mutate(r)
    errors = report.validate(r)
    assert errors and any(fragment in e for e in errors), errors


def test_device_label_and_clean_metrics():
    assert report.device_label("cuda", 3) == "gpu3"
    assert report.device_label("cpu", 1) == "cpu1"
    assert report.clean_metrics({"b/x": 2, "a/y": float("inf"), "c/z": True, "a/x": 1.5}) == {"a/x": 1.5, "b/x": 2.0}


def test_write_atomic_writes_strict_json_and_leaves_nothing_on_failure(tmp_path):
    path = tmp_path / "sub" / "r.json"
    report.write_atomic(str(path), {"x": float("nan"), "y": (1, 2)})
    assert json.loads(path.read_text()) == {"x": "nan", "y": [1, 2]}
    report.write_atomic(str(path), {"x": 1})
    with pytest.raises(TypeError):
        report.write_atomic(str(path), {"x": object()})
    assert json.loads(path.read_text()) == {"x": 1}  # the old report is intact
    assert os.listdir(path.parent) == ["r.json"]  # no temp file left behind


# -- runner merge ---------------------------------------------------------------------------------
def test_merge_keeps_world_checks_once_and_other_ranks_problems():
    from verify.runner import merge

    def c(name, st="pass"):
        return {"name": name, "status": st, "message": ""}
    r0 = ({"a/x:gpu0": 1.0, "allreduce/busbw_gbps": 5.0},
          [("rank", c("env/cuda")), ("world", c("collectives/barrier")), ("device", c("compute/m:gpu0"))])
    r1 = ({"a/x:gpu1": 2.0},
          [("rank", c("env/cuda")), ("rank", c("env/cuda_init", "fail")), ("world", c("collectives/barrier")),
           ("device", c("compute/m:gpu1"))])
    metrics, checks = merge([r0, r1])
    assert metrics == {"a/x:gpu0": 1.0, "allreduce/busbw_gbps": 5.0, "a/x:gpu1": 2.0}
    assert [x["name"] for x in checks] == ["env/cuda", "collectives/barrier", "compute/m:gpu0",
                                           "env/cuda_init:rank1", "compute/m:gpu1"]
    _, checks = merge([({}, [("device", c("a")), ("device", c("a"))])])
    assert [x["name"] for x in checks] == ["a", "a#2"]


def test_timing_iterations_for():
    from verify.timing import iterations_for

    assert iterations_for(0.01, 0.2, 1000) == 20
    assert iterations_for(1.0, 0.2, 1000) == 1
    assert iterations_for(1e-9, 0.2, 50) == 50
    assert iterations_for(0.0, 0.2, 50) == 50


def test_verify_imports_only_stdlib_torch_torchvision_pillow_tqdm():
    """verify runs on the nodes: nothing from fleet/, fabric, invoke, paramiko or yaml."""
    import ast
    import sys
    from pathlib import Path

    allowed = set(sys.stdlib_module_names) | {"torch", "torchvision", "PIL", "tqdm", "verify"}
    pkg = Path(tests.verify_helpers.REPO) / "verify"
    seen = set()
    for path in sorted(pkg.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                seen |= {(path.name, a.name.split(".")[0]) for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                seen.add((path.name, node.module.split(".")[0]))
    assert {m for _, m in seen} >= {"torch", "torchvision", "PIL", "tqdm"}
    # the one optional import: NVML for telemetry under load, imported where it is used, its absence a skip
    optional = {("telemetry.py", "pynvml")}
    assert [(f, m) for f, m in sorted(seen) if m not in allowed and (f, m) not in optional] == []
    assert "import pynvml" not in (pkg / "telemetry.py").read_text().split("def nvml")[0]  # never at import time
