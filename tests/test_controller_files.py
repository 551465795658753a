"""The controller's own files: modes that follow the umask, and one line (exit 2) for a path that cannot be
written, found before any host is contacted.  Read-only paths are real read-only bind mounts, each in a mount
namespace of its own (``unshare --mount``), so nothing outside the test sees them."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from fleet.jsonio import unwritable, write_json_atomic

REPO = Path(__file__).resolve().parents[1]


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("mask,expected", [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600)])
def test_files_follow_the_umask(tmp_path, mask, expected):
    previous = os.umask(mask)
    try:
        write_json_atomic(tmp_path / "summary.json", {"a": 1})
        write_json_atomic(tmp_path / "secret.json", {"b": 2}, private=True)
    finally:
        os.umask(previous)
    assert _mode(tmp_path / "summary.json") == expected
    assert _mode(tmp_path / "secret.json") == 0o600


def test_unwritable_says_why(tmp_path):
    assert unwritable(tmp_path / "new" / "deeper" / "x.json") is None
    (tmp_path / "locked").mkdir(mode=0o500)
    if os.geteuid() != 0:  # root writes anywhere but a read-only mount
        assert unwritable(tmp_path / "locked" / "x.json") == "Permission denied"


needs_unshare = pytest.mark.skipif(shutil.which("unshare") is None or os.geteuid() != 0,
                                   reason="a read-only bind mount needs root and unshare")


def _in_read_only(ro: Path, args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """``gpufleet ARGS`` in a mount namespace where ``ro`` is a read-only bind mount of itself."""
    script = (f"mount --bind {ro} {ro} && mount -o remount,bind,ro {ro} && exec \"$@\"")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GPUFLEET_", "ANSIBLE_"))}
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh",
                           sys.executable, "-m", "fleet.cli", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)


@needs_unshare
def test_read_only_reports_directory_is_one_line_exit_2(tmp_path):
    ro = tmp_path / "reports"
    ro.mkdir()
    r = _in_read_only(ro, ["verify", "--hosts", "gpu-nodes", "--checks", "compute", "--out", str(ro),
                           "--history", str(tmp_path / "h.sqlite")], tmp_path)
    assert (r.returncode, r.stdout) == (2, "")
    assert r.stderr == f"gpufleet: cannot take the lock {ro}/.gpufleet.lock: Read-only file system\n"
    assert list(ro.iterdir()) == []


@needs_unshare
@pytest.mark.parametrize("task", ["audit", "verify", "provision"])
def test_read_only_history_is_one_line_exit_2(tmp_path, task):
    ro = tmp_path / "state"
    ro.mkdir()
    extra = ["--checks", "compute", "--out", str(tmp_path / "reports")] if task == "verify" else []
    r = _in_read_only(ro, [task, "--hosts", "gpu-nodes", "--history", str(ro / "history.sqlite"), *extra], tmp_path)
    assert (r.returncode, r.stdout) == (2, "")
    assert r.stderr == f"gpufleet: history {ro}/history.sqlite: cannot be written (Read-only file system)\n"


@needs_unshare
@pytest.mark.parametrize("flag", ["--json", "--prom", "--junit"])
def test_read_only_output_paths_are_one_line_exit_2(tmp_path, flag):
    ro = tmp_path / "out"
    ro.mkdir()
    r = _in_read_only(ro, ["audit", "--hosts", "gpu-nodes", "--no-history", flag, str(ro / "x")], tmp_path)
    assert (r.returncode, r.stdout) == (2, "")
    assert r.stderr == f"gpufleet: {flag} {ro}/x: cannot be written (Read-only file system)\n"
