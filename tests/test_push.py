"""Pushing verify/ to real sshd hosts: content-addressed, installed once, torch probed."""

from __future__ import annotations

import io
import sys
import zipfile
from pathlib import Path

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
    second = run_fleet(pushed_hosts.select("push-a"), lambda t: push(t, art, deep=True), opts)["push-a"]
    assert second.state is HostState.OK and second.value.uploaded is False
    assert "nothing uploaded" in second.value.summary()
    # the deep probe (invoke push) imports torch for real; the fast one (verify) reads its metadata
    deep, fast = second.value.probe, first.value.probe
    assert deep["deep"] is True and fast["deep"] is False
    assert deep["torch"] == fast["torch"] == torch.__version__
    assert deep["cuda_available"] is torch.cuda.is_available() and "cuda_available" not in fast
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


def test_node_python_inside_a_venv_is_seen_through(farm, tmp_path):
    """ansible_python_interpreter may be a venv's (or conda env's) Python: verify must see what it sees."""
    import subprocess

    outer = tmp_path / "outer-venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(outer)], check=True)
    site = subprocess.run([str(outer / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    Path(site, "gpufleet_outer_marker.py").write_text("WHERE = 'outer venv'\n")
    farm.add_host("push-venv", fixture=None, gpus=0, extra_vars={
        "ansible_python_interpreter": str(outer / "bin" / "python"),
        "gpufleet_remote_dir": str(farm.root / "push-venv" / "cache")})
    inv = parse_inventory(farm.inventory(["push-venv"]), "venv.yaml")
    art = build_wheel()
    r = run_fleet(inv.select("all"), lambda t: push(t, art), farm.options(command_timeout=120))["push-venv"]
    assert r.state is HostState.OK, r.message
    python = farm.root / "push-venv" / "cache" / Path(r.value.python).relative_to(
        str(farm.root / "push-venv" / "cache"))
    out = subprocess.run([str(python), "-c", "import gpufleet_outer_marker, verify; print(gpufleet_outer_marker.WHERE)"],
                         capture_output=True, text=True)
    assert out.stdout.strip() == "outer venv", out.stderr


def _demo_wheel(directory: Path, value: int) -> Path:
    """A minimal valid wheel of a package ``gpufleet_demo_dep`` whose VALUE is ``value``."""
    import base64
    import hashlib

    files = {"gpufleet_demo_dep/__init__.py": f"VALUE = {value}\n".encode(),
             "gpufleet_demo_dep-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: gpufleet-demo-dep\nVersion: 1.0\n",
             "gpufleet_demo_dep-1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    record = "".join(f"{n},sha256={base64.urlsafe_b64encode(hashlib.sha256(d).digest()).rstrip(b'=').decode()},{len(d)}\n"
                     for n, d in files.items()) + "gpufleet_demo_dep-1.0.dist-info/RECORD,,\n"
    files["gpufleet_demo_dep-1.0.dist-info/RECORD"] = record.encode()
    path = directory / "gpufleet_demo_dep-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as z:
        for n, d in files.items():
            z.writestr(n, d)
    return path


def test_wheelhouse_is_installed_with_verify_for_air_gapped_nodes(farm, tmp_path):
    import subprocess

    from fleet.push import Wheelhouse

    house = tmp_path / "wheelhouse"
    house.mkdir()
    _demo_wheel(house, 42)
    farm.add_host("push-airgap", fixture=None, gpus=0, extra_vars={
        "ansible_python_interpreter": sys.executable, "gpufleet_remote_dir": str(farm.root / "push-airgap" / "cache")})
    inv = parse_inventory(farm.inventory(["push-airgap"]), "airgap.yaml")
    art, wh = build_wheel(), Wheelhouse.from_dir(house)
    r = run_fleet(inv.select("all"), lambda t: push(t, art, wheelhouse=wh), farm.options(command_timeout=120))
    res = r["push-airgap"]
    assert res.state is HostState.OK, res.message
    assert res.value.directory.endswith(f"-wh{wh.digest}")
    out = subprocess.run([res.value.python, "-c", "import gpufleet_demo_dep, verify; print(gpufleet_demo_dep.VALUE)"],
                         capture_output=True, text=True)
    assert out.stdout.strip() == "42", out.stderr
    # a different wheelhouse is a different install
    _demo_wheel(house, 43)
    assert Wheelhouse.from_dir(house).digest != wh.digest
    with pytest.raises(ValueError, match="no \\*.whl"):
        Wheelhouse.from_dir(tmp_path)
