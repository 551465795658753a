"""Pushing verify/ to real sshd hosts: content-addressed, installed once, torch probed."""

from __future__ import annotations

import sys
import zipfile
import io

import pytest

from fleet.fanout import HostState, run_fleet
from fleet.inventory import parse_inventory
from fleet.push import build_wheel, install_dir, push, verify_source


@pytest.fixture(scope="module")
def pushed_hosts(farm):
    farm.add_host("push-a", extra_vars={"ansible_python_interpreter": sys.executable,
                                         "gpufleet_remote_dir": str(farm.root / "push-a" / "cache")})
    farm.add_host("push-notorch", extra_vars={"ansible_python_interpreter": "/usr/bin/python3",
                                               "gpufleet_remote_dir": str(farm.root / "push-notorch" / "cache")})
    farm.add_host("push-nopython", extra_vars={"ansible_python_interpreter": "/opt/nowhere/python3",
                                                "gpufleet_remote_dir": str(farm.root / "push-nopython" / "cache")})
    return parse_inventory(farm.inventory(["push-a", "push-notorch", "push-nopython"]), "push.yaml")


def test_wheel_is_deterministic_and_complete(tmp_path):
    a, b = build_wheel(), build_wheel()
    assert a.data == b.data and a.digest == b.digest and len(a.digest) == 16
    names = zipfile.ZipFile(io.BytesIO(a.data)).namelist()
    sources = sorted(p.relative_to(verify_source()).as_posix() for p in verify_source().rglob("*.py"))
    assert sorted(n[len("verify/"):] for n in names if n.startswith("verify/")) == sources
    assert any(n.endswith(".dist-info/RECORD") for n in names)
    # a change in the source changes the address
    src = tmp_path / "verify"
    src.mkdir()
    (src / "__init__.py").write_text("x = 1\n")
    h1 = build_wheel(src).digest
    (src / "__init__.py").write_text("x = 2\n")
    assert build_wheel(src).digest != h1


def test_second_push_uploads_nothing(farm, pushed_hosts):
    art = build_wheel()
    opts = farm.options(command_timeout=120)
    first = run_fleet(pushed_hosts.select("push-a"), lambda t: push(t, art), opts)["push-a"]
    assert first.state is HostState.OK, first.message
    assert first.value.uploaded and first.value.torch_ok
    import torch

    assert first.value.probe["torch"] == torch.__version__
    d = farm.root / "push-a" / "cache"
    installed = d / install_dir(pushed_hosts.hosts["push-a"], art).rsplit("/", 1)[1]
    assert (installed / ".installed").exists()
    stamp = (installed / art.filename).stat().st_mtime_ns
    second = run_fleet(pushed_hosts.select("push-a"), lambda t: push(t, art), opts)["push-a"]
    assert second.state is HostState.OK and second.value.uploaded is False
    assert "nothing uploaded" in second.value.summary()
    assert (installed / art.filename).stat().st_mtime_ns == stamp


def test_node_without_torch_or_python_is_a_clear_failure(farm, pushed_hosts):
    art = build_wheel()
    r = run_fleet(pushed_hosts.select("push-notorch,push-nopython"), lambda t: push(t, art),
                  farm.options(command_timeout=120))
    assert r["push-notorch"].state is HostState.FAILED
    assert "torch and torchvision not importable with /usr/bin/python3" in r["push-notorch"].message
    assert "ansible_python_interpreter" in r["push-notorch"].message
    assert r["push-notorch"].value.probe["torch"] is None  # the partial result is kept
    assert r["push-nopython"].state is HostState.FAILED
    assert "/opt/nowhere/python3" in r["push-nopython"].message
