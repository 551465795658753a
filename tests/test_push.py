"""Pushing verify/ to real sshd hosts: content-addressed, installed once, torch probed."""

from __future__ import annotations

import io
import os
import sys
import time
import zipfile
from pathlib import Path

import pytest

from fleet.fanout import HostState, run_fleet
from fleet.inventory import parse_inventory
from fleet.push import absolute_dir, build_wheel, configured_dir, install_dir, push, verify_source


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
    """ansible_python_interpreter may be a venv's (or conda env's) Python: verify must see what it sees,
    in its order, .pth files included (editable installs), and not its base Python's packages instead."""
    import subprocess

    outer = tmp_path / "outer-venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(outer)], check=True)
    site = subprocess.run([str(outer / "bin" / "python"), "-c",
                           "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    # the node venv's torch: this test's own packages, wherever they are (the system's or a virtualenv's),
    # seen by the node venv through a .pth of its own, as a venv sees what is installed in it
    mine = [p for p in sys.path if p.endswith(("site-packages", "dist-packages"))]
    Path(site, "zz-controller-packages.pth").write_text(f"import site; list(map(site.addsitedir, {mine!r}))\n")
    Path(site, "gpufleet_outer_marker.py").write_text("WHERE = 'outer venv'\n")
    editable = tmp_path / "editable-src"
    (editable / "gpufleet_editable_marker").mkdir(parents=True)
    (editable / "gpufleet_editable_marker" / "__init__.py").write_text("WHERE = 'editable'\n")
    Path(site, "__editable__.gpufleet_editable_marker-1.0.pth").write_text(f"{editable}\n")
    farm.add_host("push-venv", fixture=None, gpus=0, extra_vars={
        "ansible_python_interpreter": str(outer / "bin" / "python"),
        "gpufleet_remote_dir": str(farm.root / "push-venv" / "cache")})
    inv = parse_inventory(farm.inventory(["push-venv"]), "venv.yaml")
    art = build_wheel()
    r = run_fleet(inv.select("all"), lambda t: push(t, art), farm.options(command_timeout=120))["push-venv"]
    assert r.state is HostState.OK, r.message
    import torch

    assert r.value.probe["torch"] == torch.__version__
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    code = ("import gpufleet_outer_marker, gpufleet_editable_marker, torch, verify, sys; "
            "print(gpufleet_outer_marker.WHERE, gpufleet_editable_marker.WHERE, torch.__file__, sys.prefix)")
    out = subprocess.run([r.value.python, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env,
                         timeout=120)
    assert out.stdout.split() == ["outer", "venv", "editable", torch.__file__, r.value.directory + "/venv"], out.stderr


def _demo_wheel(directory: Path, value: int) -> Path:
    """A minimal valid wheel of a package ``gpufleet_demo_dep`` whose VALUE is ``value``."""
    import base64
    import hashlib

    files = {"gpufleet_demo_dep/__init__.py": f"VALUE = {value}\n".encode(),
             "gpufleet_demo_dep-1.0.dist-info/METADATA":
                 b"Metadata-Version: 2.1\nName: gpufleet-demo-dep\nVersion: 1.0\n",
             "gpufleet_demo_dep-1.0.dist-info/WHEEL":
                 b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    record = "".join(f"{n},sha256={base64.urlsafe_b64encode(hashlib.sha256(d).digest()).rstrip(b'=').decode()},"
                     f"{len(d)}\n"
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


def _verify_copy(directory: Path, tag: str) -> Path:
    """verify/'s source with one comment added: a different build of the same code."""
    import shutil

    src = directory / tag / "verify"
    shutil.copytree(verify_source(), src, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    with open(src / "__init__.py", "a") as f:
        f.write(f"# build {tag}\n")
    return src


def test_nodes_sharing_one_home_install_at_once(farm, tmp_path):
    """Four nodes, one NFS-like remote directory, pushing at the same moment, round after round."""
    import subprocess

    shared = tmp_path / "shared-home-cache"
    names = [f"push-shared{i}" for i in range(4)]
    for n in names:
        farm.add_host(n, fixture=None, gpus=0, extra_vars={
            "ansible_python_interpreter": sys.executable, "gpufleet_remote_dir": str(shared)})
    inv = parse_inventory(farm.inventory(names), "shared.yaml")
    art_a, art_b = build_wheel(_verify_copy(tmp_path, "a")), build_wheel(_verify_copy(tmp_path, "b"))
    assert art_a.digest != art_b.digest
    opts = farm.options(command_timeout=180, forks=4)
    for rnd, art in enumerate([art_a, art_a, art_b]):
        r = run_fleet(inv.select("all"), lambda t, art=art: push(t, art), opts)
        assert {n: r[n].state for n in names} == {n: HostState.OK for n in names}, [r[n].message for n in names]
        assert all(r[n].value.torch_ok for n in names)
        assert [r[n].value.probe["torch"] for n in names] == [r[names[0]].value.probe["torch"]] * 4
        uploads = [r[n].value.uploaded for n in names]
        if rnd == 1:
            assert uploads == [False] * 4  # installed by the round before
        else:  # exactly one build was moved into place; the other nodes used it (lost the race or came after)
            assert sum(r[n].value.uploaded and not r[n].value.raced for n in names) == 1
        directory = r[names[0]].value.directory
        assert {r[n].value.directory for n in names} == {directory}
        # only complete installs are left: no staging directory, no half-built one
        expected = {install_dir(inv.hosts[names[0]], a).rsplit("/", 1)[1] for a in [art_a, art_b][:1 + (rnd == 2)]}
        assert sorted(p.name for p in shared.iterdir()) == sorted(expected)
        assert all((shared / e / ".installed").is_file() for e in expected)
        # the venv built at the staging path works at its final path
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        out = subprocess.run([f"{directory}/venv/bin/python", "-c", "import sys, verify; print(sys.prefix); "
                              "print(verify.__file__); print(open(verify.__file__).read().splitlines()[-1])"],
                             capture_output=True, text=True, timeout=60, cwd=tmp_path, env=env)
        site = subprocess.run([f"{directory}/venv/bin/python", "-c",
                               "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                              capture_output=True, text=True, timeout=60, env=env).stdout.strip()
        assert out.stdout.splitlines() == [f"{directory}/venv", f"{site}/verify/__init__.py",
                                           f"# build {'b' if rnd == 2 else 'a'}"], out.stderr


def test_an_incomplete_install_left_by_an_older_gpufleet_is_replaced(farm, tmp_path):
    farm.add_host("push-stale", fixture=None, gpus=0, extra_vars={
        "ansible_python_interpreter": sys.executable, "gpufleet_remote_dir": str(tmp_path / "cache")})
    inv = parse_inventory(farm.inventory(["push-stale"]), "stale.yaml")
    art = build_wheel()
    stale = tmp_path / "cache" / install_dir(inv.hosts["push-stale"], art).rsplit("/", 1)[1]
    (stale / "venv").mkdir(parents=True)
    (stale / art.filename).write_bytes(b"half an upload")
    # staging directories of pushes that died: a day old is abandoned, an hour old may still be in use
    for name, age_s in (("tmp.dead01", 86400 + 60), ("tmp.alive1", 3600)):
        d = tmp_path / "cache" / f"{stale.name}.{name}"
        (d / "venv").mkdir(parents=True)
        os.utime(d, (time.time() - age_s, time.time() - age_s))
    r = run_fleet(inv.select("all"), lambda t: push(t, art), farm.options(command_timeout=120))["push-stale"]
    assert r.state is HostState.OK, r.message
    assert r.value.uploaded is True and r.value.raced is False and r.value.torch_ok
    assert (stale / art.filename).read_bytes() == art.data
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == [stale.name, f"{stale.name}.tmp.alive1"]


def test_prune_runs_keeps_the_newest(farm, tmp_path):
    from fleet.push import parse_pruned, prune_runs_command
    from fleet.transport import connect

    farm.add_host("push-prune", fixture=None, gpus=0)
    inv = parse_inventory(farm.inventory(["push-prune"]), "prune.yaml")
    d = tmp_path / "verify-x"
    runs = [f"2026112{i}T180602Z" for i in range(7)] + ["20261129T000000Z it's"]
    for name in runs:
        (d / "runs" / name).mkdir(parents=True)
        (d / "runs" / name / "report.json").write_text("{}")
    (d / "runs" / "not-a-run.txt").write_text("kept: not a folder")
    t = connect(inv.hosts["push-prune"], farm.options())
    try:
        r = t.run(prune_runs_command(str(d), keep=5))
        assert r.exit_code == 0 and parse_pruned(r.stdout) == runs[:3], r.stderr
        assert sorted(p.name for p in (d / "runs").iterdir()) == sorted(runs[3:] + ["not-a-run.txt"])
        r = t.run(prune_runs_command(str(d)))  # default: keep 5, already so
        assert r.exit_code == 0 and parse_pruned(r.stdout) == []
        r = t.run(prune_runs_command(str(d) + "/", keep=1))
        assert r.exit_code == 0 and parse_pruned(r.stdout) == runs[3:7]
        assert sorted(p.name for p in (d / "runs").iterdir()) == sorted(runs[7:] + ["not-a-run.txt"])
        r = t.run(prune_runs_command(str(tmp_path / "nowhere"), keep=0))
        assert r.exit_code == 0 and r.stdout == ""
        r = t.run(prune_runs_command(str(d), keep=0))
        assert r.exit_code == 0 and parse_pruned(r.stdout) == runs[7:]
        assert sorted(p.name for p in (d / "runs").iterdir()) == ["not-a-run.txt"]
    finally:
        t.close()
    for bad in (-1, 2.5, True, "5"):
        with pytest.raises(ValueError, match="keep must be"):
            prune_runs_command(str(d), keep=bad)


# --------------------------------------------------------------------------- absolute remote directories


@pytest.mark.parametrize("home, configured, expected", [
    ("/home/ops", None, "/home/ops/.cache/gpufleet"),  # unset: the default, under the home
    ("/home/ops", "", "/home/ops/.cache/gpufleet"),
    ("/home/ops", ".cache/gpufleet", "/home/ops/.cache/gpufleet"),
    ("/home/ops/", "gpufleet/", "/home/ops/gpufleet"),  # trailing slashes, either side
    ("/home/ops", "~", "/home/ops"),
    ("/home/ops", "~/", "/home/ops"),
    ("/home/ops", "~/.cache/gf//x/", "/home/ops/.cache/gf/x"),
    ("/home/ops", "/shared/gpufleet/", "/shared/gpufleet"),  # absolute given: the home does not matter
    ("/home/ops", "//shared//gpufleet", "/shared/gpufleet"),
    ("/home/ops", "./work/./gf", "/home/ops/work/gf"),
    ("/", ".cache/gpufleet", "/.cache/gpufleet"),  # a login without a home starts in /
    ("/nfs/home/ops", "/", "/"),
])
def test_absolute_dir(home, configured, expected):
    assert absolute_dir(home, configured) == expected


@pytest.mark.parametrize("home, configured, why", [
    ("/home/ops", "~bob/gpufleet", "gpufleet_remote_dir '~bob/gpufleet': only ~ (the login's own home) is "
                                   "understood, not ~user"),
    ("home/ops", "x", "the login's home directory 'home/ops' is not an absolute path"),
    ("", "x", "the login's home directory '' is not an absolute path"),
])
def test_absolute_dir_refuses(home, configured, why):
    with pytest.raises(ValueError) as e:
        absolute_dir(home, configured)
    assert str(e.value) == why


def test_configured_dir_stays_relative_to_the_home():
    assert [configured_dir(v) for v in (None, "~/a/", "a/b/", "/x/")] == [".cache/gpufleet", "a", "a/b", "/x"]


def test_install_dir_absolute_only_with_the_home():
    host = parse_inventory("all:\n  hosts:\n    n1:\n      ansible_python_interpreter: /usr/bin/python3\n",
                           "i.yaml").hosts["n1"]
    art = build_wheel()
    rel = install_dir(host, art)
    assert rel.startswith(f".cache/gpufleet/verify-{art.digest}-")
    assert install_dir(host, art, home="/home/ops") == "/home/ops/" + rel


def test_a_relative_remote_dir_is_pushed_and_reported_absolute(farm):
    """``~/...`` (relative to the login's home, as the default is): the push resolves it on the node, once, and
    reports the absolute install directory, which works from any working directory (a Slurm job's)."""
    import pwd
    import shutil
    import subprocess
    import uuid

    home = pwd.getpwuid(os.getuid()).pw_dir  # the test host's login: this machine's user
    rel = f".cache/gpufleet-test-{uuid.uuid4().hex[:8]}"
    farm.add_host("push-rel", extra_vars={"ansible_python_interpreter": sys.executable,
                                           "gpufleet_remote_dir": f"~/{rel}/"})
    inv = parse_inventory(farm.inventory(["push-rel"]), "rel.yaml")
    art = build_wheel()
    try:
        r = run_fleet(inv.select("push-rel"), lambda t: push(t, art), farm.options(command_timeout=120))["push-rel"]
        assert r.state is HostState.OK, r.message
        expected = install_dir(inv.hosts["push-rel"], art, home=home)
        assert (r.value.home, r.value.directory) == (home, expected)
        assert expected.startswith(f"{home}/{rel}/verify-{art.digest}-")
        assert r.value.python == f"{expected}/venv/bin/python"
        assert (Path(expected) / ".installed").is_file()
        assert sorted(p.name for p in Path(home, rel).iterdir()) == [expected.rsplit("/", 1)[1]]  # no staging left
        out = subprocess.run([r.value.python, "-c", "import verify, sys; print(sys.prefix)"], cwd="/",
                             capture_output=True, text=True)
        assert out.stdout.strip() == f"{expected}/venv", out.stderr
        again = run_fleet(inv.select("push-rel"), lambda t: push(t, art), farm.options())["push-rel"]
        assert (again.value.uploaded, again.value.directory) == (False, expected)
    finally:
        shutil.rmtree(Path(home, rel), ignore_errors=True)


def test_a_remote_dir_of_another_users_home_is_one_clear_error(farm):
    farm.add_host("push-tilde", extra_vars={"ansible_python_interpreter": sys.executable,
                                             "gpufleet_remote_dir": "~bob/gf"})
    inv = parse_inventory(farm.inventory(["push-tilde"]), "tilde.yaml")
    r = run_fleet(inv.select("push-tilde"), lambda t: push(t, build_wheel()), farm.options())["push-tilde"]
    assert (r.state, r.message) == (HostState.FAILED, "gpufleet_remote_dir '~bob/gf': only ~ (the login's own "
                                                      "home) is understood, not ~user")
