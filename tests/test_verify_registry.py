"""verify's stage registry, its profiles as data and its torch-free contract.

The profile numbers below were printed from verify/profiles.py before profiles became keyword-built data
(commit 3fea79f); they pin every size of every profile so a refactor cannot move one.
"""

from __future__ import annotations

import dataclasses
import os
import stat
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

import tests.verify_helpers
import verify
from tests.verify_helpers import run_verify
from verify import cli, contract, dcgm, profiles, report, stages, status

DCGM_DATA = Path(__file__).parent / "data" / "dcgm"

BASE = {
    ('quick', 'cpu'): {
        'name': 'quick',
        'matmul_n': 512,
        'matmul_check_n': 256,
        'min_time': 0.15,
        'copy_bytes': 33554432,
        'pcie_bytes': 0,
        'allreduce_sizes': (4096, 262144, 4194304),
        'ddp_image': 32,
        'ddp_batch': 2,
        'ddp_steps': 2,
        'convnet_batch': 8,
        'convnet_epochs': 4,
        'infer_image': 64,
        'infer_batches': (1, 4),
        'jpeg_count': 48,
        'jpeg_side': 128,
        'jpeg_workers': 2,
        'burn_s': 0.0,
        'memtest_s': 0.0,
        'burn_n': 0,
        'matmul_sizes': (),
    },
    ('full', 'cpu'): {
        'name': 'full',
        'matmul_n': 2048,
        'matmul_check_n': 512,
        'min_time': 0.5,
        'copy_bytes': 268435456,
        'pcie_bytes': 0,
        'allreduce_sizes': (4096, 65536, 1048576, 16777216, 67108864),
        'ddp_image': 64,
        'ddp_batch': 4,
        'ddp_steps': 8,
        'convnet_batch': 16,
        'convnet_epochs': 6,
        'infer_image': 224,
        'infer_batches': (1, 8, 32),
        'jpeg_count': 256,
        'jpeg_side': 256,
        'jpeg_workers': 4,
        'burn_s': 0.0,
        'memtest_s': 0.0,
        'burn_n': 0,
        'matmul_sizes': (),
    },
    ('quick', 'cuda'): {
        'name': 'quick',
        'matmul_n': 8192,
        'matmul_check_n': 1024,
        'min_time': 0.3,
        'copy_bytes': 1073741824,
        'pcie_bytes': 268435456,
        'allreduce_sizes': (1048576, 16777216, 67108864, 268435456),
        'ddp_image': 224,
        'ddp_batch': 32,
        'ddp_steps': 10,
        'convnet_batch': 64,
        'convnet_epochs': 8,
        'infer_image': 224,
        'infer_batches': (1, 32, 128),
        'jpeg_count': 256,
        'jpeg_side': 256,
        'jpeg_workers': 4,
        'burn_s': 0.0,
        'memtest_s': 0.0,
        'burn_n': 0,
        'matmul_sizes': (4096, 8192),
    },
    ('full', 'cuda'): {
        'name': 'full',
        'matmul_n': 16384,
        'matmul_check_n': 2048,
        'min_time': 1.0,
        'copy_bytes': 4294967296,
        'pcie_bytes': 1073741824,
        'allreduce_sizes': (1048576, 4194304, 16777216, 67108864, 268435456, 1073741824),
        'ddp_image': 224,
        'ddp_batch': 64,
        'ddp_steps': 30,
        'convnet_batch': 128,
        'convnet_epochs': 10,
        'infer_image': 224,
        'infer_batches': (1, 8, 32, 128, 256),
        'jpeg_count': 1024,
        'jpeg_side': 256,
        'jpeg_workers': 8,
        'burn_s': 0.0,
        'memtest_s': 0.0,
        'burn_n': 0,
        'matmul_sizes': (4096, 8192, 16384),
    },
}
# make(name, device_type, free_bytes, duration): the fields that differ from the base profile
DERIVED = {
    ('quick', 'cpu', None, None): {},
    ('quick', 'cpu', 85899345920, None): {},
    ('quick', 'cpu', 12884901888, None): {},
    ('quick', 'cpu', 1073741824, None): {},
    ('full', 'cpu', None, None): {},
    ('full', 'cpu', 85899345920, None): {},
    ('full', 'cpu', 12884901888, None): {},
    ('full', 'cpu', 1073741824, None): {'copy_bytes': 134217728},
    ('nightly', 'cpu', None, None): {'name': 'nightly', 'burn_s': 210.0, 'memtest_s': 90.00000000000001, 'burn_n': 512},
    ('nightly', 'cpu', None, 60): {'name': 'nightly', 'burn_s': 42.0, 'memtest_s': 18.000000000000004, 'burn_n': 512},
    ('nightly', 'cpu', 85899345920, None): {
        'name': 'nightly',
        'burn_s': 210.0,
        'memtest_s': 90.00000000000001,
        'burn_n': 512,
    },
    ('nightly', 'cpu', 85899345920, 60): {
        'name': 'nightly',
        'burn_s': 42.0,
        'memtest_s': 18.000000000000004,
        'burn_n': 512,
    },
    ('nightly', 'cpu', 12884901888, None): {
        'name': 'nightly',
        'burn_s': 210.0,
        'memtest_s': 90.00000000000001,
        'burn_n': 512,
    },
    ('nightly', 'cpu', 12884901888, 60): {
        'name': 'nightly',
        'burn_s': 42.0,
        'memtest_s': 18.000000000000004,
        'burn_n': 512,
    },
    ('nightly', 'cpu', 1073741824, None): {
        'name': 'nightly',
        'burn_s': 210.0,
        'memtest_s': 90.00000000000001,
        'burn_n': 512,
    },
    ('nightly', 'cpu', 1073741824, 60): {
        'name': 'nightly',
        'burn_s': 42.0,
        'memtest_s': 18.000000000000004,
        'burn_n': 512,
    },
    ('acceptance', 'cpu', None, None): {
        'name': 'acceptance',
        'burn_s': 1260.0,
        'memtest_s': 540.0000000000001,
        'burn_n': 2048,
    },
    ('acceptance', 'cpu', None, 60): {
        'name': 'acceptance',
        'burn_s': 42.0,
        'memtest_s': 18.000000000000004,
        'burn_n': 2048,
    },
    ('acceptance', 'cpu', 85899345920, None): {
        'name': 'acceptance',
        'burn_s': 1260.0,
        'memtest_s': 540.0000000000001,
        'burn_n': 2048,
    },
    ('acceptance', 'cpu', 85899345920, 60): {
        'name': 'acceptance',
        'burn_s': 42.0,
        'memtest_s': 18.000000000000004,
        'burn_n': 2048,
    },
    ('acceptance', 'cpu', 12884901888, None): {
        'name': 'acceptance',
        'burn_s': 1260.0,
        'memtest_s': 540.0000000000001,
        'burn_n': 2048,
    },
    ('acceptance', 'cpu', 12884901888, 60): {
        'name': 'acceptance',
        'burn_s': 42.0,
        'memtest_s': 18.000000000000004,
        'burn_n': 2048,
    },
    ('acceptance', 'cpu', 1073741824, None): {
        'name': 'acceptance',
        'copy_bytes': 134217728,
        'burn_s': 1260.0,
        'memtest_s': 540.0000000000001,
        'burn_n': 2048,
    },
    ('acceptance', 'cpu', 1073741824, 60): {
        'name': 'acceptance',
        'copy_bytes': 134217728,
        'burn_s': 42.0,
        'memtest_s': 18.000000000000004,
        'burn_n': 2048,
    },
    ('quick', 'cuda', None, None): {},
    ('quick', 'cuda', 85899345920, None): {},
    ('quick', 'cuda', 12884901888, None): {},
    ('quick', 'cuda', 1073741824, None): {
        'matmul_n': 4096,
        'copy_bytes': 134217728,
        'allreduce_sizes': (1048576, 16777216, 67108864),
        'matmul_sizes': (4096,),
    },
    ('full', 'cuda', None, None): {},
    ('full', 'cuda', 85899345920, None): {},
    ('full', 'cuda', 12884901888, None): {'copy_bytes': 2147483648},
    ('full', 'cuda', 1073741824, None): {
        'matmul_n': 4096,
        'copy_bytes': 134217728,
        'allreduce_sizes': (1048576, 4194304, 16777216, 67108864),
        'matmul_sizes': (4096,),
    },
    ('nightly', 'cuda', None, None): {
        'name': 'nightly',
        'burn_s': 210.0,
        'memtest_s': 90.00000000000001,
        'burn_n': 8192,
    },
    ('nightly', 'cuda', None, 60): {'name': 'nightly', 'burn_s': 42.0, 'memtest_s': 18.000000000000004, 'burn_n': 8192},
    ('nightly', 'cuda', 85899345920, None): {
        'name': 'nightly',
        'burn_s': 210.0,
        'memtest_s': 90.00000000000001,
        'burn_n': 8192,
    },
    ('nightly', 'cuda', 85899345920, 60): {
        'name': 'nightly',
        'burn_s': 42.0,
        'memtest_s': 18.000000000000004,
        'burn_n': 8192,
    },
    ('nightly', 'cuda', 12884901888, None): {
        'name': 'nightly',
        'burn_s': 210.0,
        'memtest_s': 90.00000000000001,
        'burn_n': 8192,
    },
    ('nightly', 'cuda', 12884901888, 60): {
        'name': 'nightly',
        'burn_s': 42.0,
        'memtest_s': 18.000000000000004,
        'burn_n': 8192,
    },
    ('nightly', 'cuda', 1073741824, None): {
        'name': 'nightly',
        'matmul_n': 4096,
        'copy_bytes': 134217728,
        'allreduce_sizes': (1048576, 16777216, 67108864),
        'burn_s': 210.0,
        'memtest_s': 90.00000000000001,
        'burn_n': 4096,
        'matmul_sizes': (4096,),
    },
    ('nightly', 'cuda', 1073741824, 60): {
        'name': 'nightly',
        'matmul_n': 4096,
        'copy_bytes': 134217728,
        'allreduce_sizes': (1048576, 16777216, 67108864),
        'burn_s': 42.0,
        'memtest_s': 18.000000000000004,
        'burn_n': 4096,
        'matmul_sizes': (4096,),
    },
    ('acceptance', 'cuda', None, None): {
        'name': 'acceptance',
        'burn_s': 1260.0,
        'memtest_s': 540.0000000000001,
        'burn_n': 16384,
    },
    ('acceptance', 'cuda', None, 60): {
        'name': 'acceptance',
        'burn_s': 42.0,
        'memtest_s': 18.000000000000004,
        'burn_n': 16384,
    },
    ('acceptance', 'cuda', 85899345920, None): {
        'name': 'acceptance',
        'burn_s': 1260.0,
        'memtest_s': 540.0000000000001,
        'burn_n': 16384,
    },
    ('acceptance', 'cuda', 85899345920, 60): {
        'name': 'acceptance',
        'burn_s': 42.0,
        'memtest_s': 18.000000000000004,
        'burn_n': 16384,
    },
    ('acceptance', 'cuda', 12884901888, None): {
        'name': 'acceptance',
        'copy_bytes': 2147483648,
        'burn_s': 1260.0,
        'memtest_s': 540.0000000000001,
        'burn_n': 8192,
    },
    ('acceptance', 'cuda', 12884901888, 60): {
        'name': 'acceptance',
        'copy_bytes': 2147483648,
        'burn_s': 42.0,
        'memtest_s': 18.000000000000004,
        'burn_n': 8192,
    },
    ('acceptance', 'cuda', 1073741824, None): {
        'name': 'acceptance',
        'matmul_n': 4096,
        'copy_bytes': 134217728,
        'allreduce_sizes': (1048576, 4194304, 16777216, 67108864),
        'burn_s': 1260.0,
        'memtest_s': 540.0000000000001,
        'burn_n': 4096,
        'matmul_sizes': (4096,),
    },
    ('acceptance', 'cuda', 1073741824, 60): {
        'name': 'acceptance',
        'matmul_n': 4096,
        'copy_bytes': 134217728,
        'allreduce_sizes': (1048576, 4194304, 16777216, 67108864),
        'burn_s': 42.0,
        'memtest_s': 18.000000000000004,
        'burn_n': 4096,
        'matmul_sizes': (4096,),
    },
}


@pytest.mark.parametrize("name, device_type", sorted(BASE))
def test_base_profiles_are_pinned(name, device_type):
    assert asdict(profiles.make(name, device_type)) == BASE[(name, device_type)]


@pytest.mark.parametrize("name, device_type, free_bytes, duration", sorted(DERIVED, key=repr))
def test_fitted_and_sustained_profiles_are_pinned(name, device_type, free_bytes, duration):
    made = asdict(profiles.make(name, device_type, free_bytes, duration))
    base = BASE[(profiles.SUSTAINED.get(name, name), device_type)]
    assert made == {**base, **DERIVED[(name, device_type, free_bytes, duration)]}


# -- the contract: what the controller may import without torch ---------------------------------------------
def test_the_contract_and_the_names_the_controller_imports_load_without_torch():
    code = ("import sys\n"
            "from verify.contract import SCHEMA, STAGES, PROFILES, PASS, severity\n"
            "from verify.cli import STAGES as S\n"
            "from verify.profiles import PROFILES as P, DURATION, SUSTAINED\n"
            "from verify.dcgm import SUGGESTED_TIMEOUT_S\n"
            "assert S is STAGES and P is PROFILES\n"
            "print(sorted(m for m in ('torch', 'tqdm', 'PIL', 'torchvision') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=tests.verify_helpers.REPO, capture_output=True,
                         text=True, check=True, env=dict(os.environ, PYTHONPATH=tests.verify_helpers.REPO))
    assert out.stdout.strip() == "[]", out.stderr


def test_the_contract_holds_the_names_verify_uses():
    assert contract.SCHEMA == verify.SCHEMA == "gpufleet.verify/1"
    assert contract.STAGES == ("collectives", "ddp", "compute", "memory", "inference", "pipeline", "burn",
                               "memtest", "dcgm")
    assert cli.STAGES is contract.STAGES and profiles.PROFILES is contract.PROFILES
    assert contract.PROFILES == ("quick", "full", "nightly", "acceptance")
    assert profiles.DURATION == {"nightly": 300.0, "acceptance": 1800.0}
    assert (contract.PASS, contract.WARN, contract.FAIL, contract.SKIP, contract.ERROR) == \
        (status.PASS, status.WARN, status.FAIL, status.SKIP, status.ERROR)
    assert contract.CHECK_STATUSES == status.CHECK_STATUSES and contract.severity is status.severity
    assert dcgm.LEVELS == contract.DCGM_LEVELS == (1, 2, 3, 4)
    assert dcgm.SUGGESTED_TIMEOUT_S[3] == 3600.0
    assert contract.stage_check("dcgm") == "stage/dcgm"
    assert tuple(profiles.BASES["cpu"]) == tuple(profiles.BASES["cuda"]) == contract.BASE_PROFILES


# -- the registry ---------------------------------------------------------------------------------------------
def test_the_registry_follows_its_rules_and_the_contract():
    assert stages.problems() == []
    assert tuple(s.name for s in stages.REGISTRY) == contract.STAGES
    for s in stages.REGISTRY:
        assert set(s.reads) <= set(profiles.FIELDS), s.name
    table = {s.name: (s.scope, s.on, [n.name for n in s.needs], s.opt_in) for s in stages.REGISTRY}
    assert table == {
        "collectives": ("world", "every", [], False), "ddp": ("world", "every", [], False),
        "compute": ("device", "every", [], False), "memory": ("device", "every", [], False),
        "inference": ("device", "every", [], False), "pipeline": ("rank", "main", [], False),
        "burn": ("device", "every", ["profile:burn_s"], False),
        "memtest": ("device", "every", ["profile:memtest_s"], False),
        "dcgm": ("rank", "node", ["tool:dcgmi"], True)}
    assert stages.BY_NAME["memory"].turns and stages.BY_NAME["burn"].telemetry


def test_the_registry_rules_catch_a_bad_entry(monkeypatch):
    bad = stages.Stage("ddp", contract.WORLD, (), lambda ctx, p: ({}, []), needs=(stages.tool("x", str),))
    monkeypatch.setattr(stages, "REGISTRY", stages.REGISTRY[:1] + (bad,) + stages.REGISTRY[2:])
    assert stages.problems() == ["ddp: a stage every rank takes in step may not need a tool one node may lack"]


def test_selected_and_placed():
    assert [s.name for s in stages.selected(("dcgm", "compute"))] == ["compute", "dcgm"]
    with pytest.raises(ValueError, match="unknown stage"):
        stages.selected(("bogus",))
    pipe, dc, comp = stages.BY_NAME["pipeline"], stages.BY_NAME["dcgm"], stages.BY_NAME["compute"]
    assert [stages.placed(pipe, r, lr) for r, lr in ((0, 0), (1, 1), (8, 0))] == [True, False, False]
    assert [stages.placed(dc, r, lr) for r, lr in ((0, 0), (1, 1), (8, 0))] == [True, False, True]
    assert all(stages.placed(comp, r, lr) for r, lr in ((0, 0), (1, 1), (8, 0)))


def facts(name="quick", device_type="cpu", asked=(), tools=()):
    return stages.Facts(device_type, profiles.make(name, device_type), frozenset(asked),
                        which=lambda exe: f"/usr/bin/{exe}" if exe in tools else None)


GPU_ONLY = stages.Stage("gpu_only", contract.DEVICE, (), lambda *a: ({}, []), needs=(stages.CUDA,))


@pytest.mark.parametrize("stage, f, expected", [
    # dcgm: opt-in; asked for (--dcgm-level / --checks dcgm) it must run, or fail with the reason
    ("dcgm", facts(), ("skip", "dcgm not run: not asked for (--dcgm-level N (1-4) runs `dcgmi diag -r N`)")),
    ("dcgm", facts(asked={"dcgm"}), (
        "fail", "dcgm was asked for and cannot run: dcgmi not found (not on PATH or not executable); install "
                "NVIDIA's datacenter-gpu-manager and start its host engine (nv-hostengine) to run DCGM diagnostics")),
    ("dcgm", facts(asked={"dcgm"}, tools={"dcgmi"}), None),
    # burn, memtest: the profile's seconds; included by default and given none, a skip; asked for, a failure
    ("burn", facts(), ("skip", "burn not run: profile quick gives it no time (burn_s 0); --profile nightly or "
                               "acceptance runs it")),
    ("memtest", facts("full", asked={"memtest"}), (
        "fail", "memtest was asked for and cannot run: profile full gives it no time (memtest_s 0); --profile "
                "nightly or acceptance runs it")),
    ("burn", facts("nightly", asked={"burn"}), None),
    ("memtest", facts("acceptance"), None),
    ("compute", facts(asked={"compute"}), None),
    # a CUDA-only stage on the CPU
    (GPU_ONLY, facts(), ("skip", "gpu_only not run: it needs a GPU (CUDA) and this run is on the CPU")),
    (GPU_ONLY, facts(asked={"gpu_only"}), (
        "fail", "gpu_only was asked for and cannot run: it needs a GPU (CUDA) and this run is on the CPU")),
    (GPU_ONLY, facts(device_type="cuda", asked={"gpu_only"}), None),
])
def test_asked_for_means_required(stage, f, expected):
    stage = stages.BY_NAME[stage] if isinstance(stage, str) else stage
    assert stages.decide(stage, f) == expected


@pytest.mark.parametrize("argv, checks, requested, level", [
    ([], contract.STAGES, set(), None),
    (["--checks", "all"], contract.STAGES, set(), None),
    (["--checks", "dcgm,compute"], ("compute", "dcgm"), {"compute", "dcgm"}, 1),  # dcgm named alone: level 1
    (["--checks", "compute", "--dcgm-level", "3"], ("compute", "dcgm"), {"compute", "dcgm"}, 3),
    (["--dcgm-level", "2"], contract.STAGES, {"dcgm"}, 2),
    (["--checks", "burn", "--profile", "nightly"], ("burn",), {"burn"}, None),
])
def test_what_the_command_line_asks_for(argv, checks, requested, level):
    args = cli.parse_args(argv)
    assert (args.checks, set(args.requested), args.dcgm_level) == (checks, requested, level)


# -- profiles as data -----------------------------------------------------------------------------------------
@pytest.mark.skipif(sys.version_info < (3, 10), reason="dataclass kw_only needs Python 3.10")
def test_a_profile_is_built_by_name_only():
    with pytest.raises(TypeError):
        profiles.Profile("quick", 512, 256)  # noqa - positional fields are refused
    assert profiles.make("quick", "cpu").sizes() == (512,)


def test_a_stage_gets_only_the_fields_it_declares():
    r = profiles.Reads(profiles.make("full", "cuda"), ("matmul_n", "matmul_sizes"), "compute")
    assert r.matmul_n == 16384 and r.sizes() == (4096, 8192, 16384) and r.unread() == ()
    with pytest.raises(AttributeError, match="stage compute read profile field 'ddp_batch', which it does not "
                                             r"declare \(it reads matmul_n, matmul_sizes: verify/stages.py\)"):
        _ = r.ddp_batch
    with pytest.raises(AttributeError):
        r.matmul_n = 1
    with pytest.raises(ValueError, match="stage x: unknown profile field"):
        profiles.Reads(profiles.make("quick", "cpu"), ("nope",), "x")


CPU = torch.device("cpu")


@pytest.mark.parametrize("name, unread_on_cpu", [
    ("compute", ()), ("memory", ("pcie_bytes",)), ("inference", ()), ("pipeline", ()),
])
def test_a_stage_reads_what_it_declares(name, unread_on_cpu, tmp_path, monkeypatch):
    """The stage's real call on the CPU, at small sizes: every field it reads is declared (else AttributeError),
    and every field it declares is read (pcie_bytes: only on a GPU)."""
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    prof = dataclasses.replace(profiles.make("quick", "cpu"), min_time=0.01, infer_batches=(1,), copy_bytes=1 << 20,
                               jpeg_count=4, jpeg_side=64, jpeg_workers=0, matmul_n=256, matmul_check_n=256)
    stage = stages.BY_NAME[name]
    fields = profiles.Reads(prof, stage.reads, name)
    ctx = stages.Context(world=None, refs={"cpu0": None})
    metrics, checks = stage.call(ctx, fields) if stage.scope == contract.RANK else stage.call(ctx, fields, CPU,
                                                                                                   "cpu0")
    assert checks and not [c for c in checks if c["status"] in ("fail", "error")], checks
    assert fields.unread() == unread_on_cpu


# -- the real run on the CPU: asked for means required ---------------------------------------------------------
CPU_RUN = ["--device", "cpu", "--no-progress"]
RUN = CPU_RUN + ["--profile", "quick"]


def fake_dcgmi(directory: Path, capture: str, code: int) -> None:
    directory.mkdir(exist_ok=True)
    script = directory / "dcgmi"
    # shell builtins only: PATH holds this directory alone
    script.write_text("#!/bin/sh\nwhile IFS= read -r line; do printf '%s\\n' \"$line\"; done "
                      f"< '{DCGM_DATA / capture}'\nexit {code}\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def test_dcgm_level_without_dcgmi_fails_the_report(tmp_path):
    bin_dir = tmp_path / "bin"  # PATH: an empty directory, so no dcgmi
    bin_dir.mkdir()
    run = run_verify(RUN + ["--checks", "compute", "--dcgm-level", "1"], str(tmp_path),
                     env_extra={"PATH": str(bin_dir)})
    assert run.report is not None, run.stderr[-3000:]
    assert report.validate(run.report) == []
    check = run.check("stage/dcgm")
    assert check["status"] == "fail" and check["message"] == (
        "dcgm was asked for and cannot run: dcgmi not found (not on PATH or not executable); install NVIDIA's "
        "datacenter-gpu-manager and start its host engine (nv-hostengine) to run DCGM diagnostics")
    assert run.report["status"] == "fail" and run.returncode == 0  # a written report exits 0: its status is the verdict
    assert run.failing() == {"stage/dcgm"}  # compute ran and passed
    assert run.report["options"]["checks"] == ["compute", "dcgm"] and run.report["options"]["dcgm_level"] == 1
    assert "FAIL  stage/dcgm: dcgm was asked for and cannot run: dcgmi not found" in run.stdout


def test_dcgm_with_its_host_engine_down_fails_the_report(tmp_path):
    fake_dcgmi(tmp_path / "bin", "synthetic-4.x-runtime-error.json", 235)
    run = run_verify(RUN + ["--checks", "dcgm"], str(tmp_path), env_extra={"PATH": str(tmp_path / "bin")})
    assert run.report is not None, run.stderr[-3000:]
    assert run.report["status"] == "fail" and run.returncode == 0
    check = run.check("dcgm")
    assert check["status"] == "fail"
    assert check["message"].startswith("DCGM could not run the diagnostic asked for: dcgmi diag -r 1 -j: exit 235 "
                                       "(DCGM_ST_CONNECTION_NOT_VALID, -21); DCGM runtime error: ")
    assert run.failing() == {"dcgm"}


def test_dcgm_that_runs_is_in_the_report(tmp_path):
    fake_dcgmi(tmp_path / "bin", "virtualclient-r1.json", 0)
    run = run_verify(RUN + ["--dcgm-level", "1", "--checks", "dcgm"], str(tmp_path),
                     env_extra={"PATH": str(tmp_path / "bin")})
    assert run.report is not None, run.stderr[-3000:]
    assert run.report["status"] == "pass" and run.returncode == 0
    assert run.check("dcgm")["status"] == "pass" and run.report["metrics"]["dcgm/tests"] == 9.0
    assert "stage/dcgm" not in run.statuses()


def test_a_sustained_stage_asked_for_under_quick_fails(tmp_path):
    run = run_verify(RUN + ["--checks", "burn,memtest"], str(tmp_path))
    assert run.report is not None, run.stderr[-3000:]
    assert run.report["status"] == "fail" and run.returncode == 0
    assert run.check("stage/burn")["message"] == ("burn was asked for and cannot run: profile quick gives it no "
                                                   "time (burn_s 0); --profile nightly or acceptance runs it")
    assert run.failing() == {"stage/burn", "stage/memtest"}


def test_the_sustained_stages_run_from_the_registry_with_their_planted_faults(tmp_path):
    # nightly with 20 s: burn 14 s (stopped at its planted corruption in interval 2), memory test 6 s (64 MiB on a
    # CPU, one bit flipped); the registry hands each its profile seconds and the faults
    run = run_verify(CPU_RUN + ["--profile", "nightly", "--duration", "20", "--checks", "burn,memtest"], str(tmp_path),
                     fault="burn-corrupt,memtest-bitflip")
    assert run.report is not None, run.stderr[-3000:]
    assert run.failing() == {"burn/correct/fp32:cpu0", "memtest:cpu0"}
    assert "the product changed at interval 2" in run.check("burn/correct/fp32:cpu0")["message"]
    assert run.check("telemetry:cpu0")["status"] == "skip"  # NVML needs a GPU: the burn's telemetry says so
    assert run.report["options"]["duration_s"] == 20.0 and run.report["profile"] == "nightly"
    assert sorted(run.report["stages"]) == ["burn", "memtest"]
