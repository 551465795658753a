"""Helpers for the verify tests: run ``python -m verify`` / torchrun as real subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Optional

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:  # so that ``import verify`` works however pytest was started
    sys.path.insert(0, REPO)


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    report: Optional[dict]
    path: str

    def check(self, name: str) -> dict:
        found = [c for c in self.report["checks"] if c["name"] == name]
        assert found, f"no check {name!r} in {[c['name'] for c in self.report['checks']]}"
        return found[0]

    def statuses(self) -> dict:
        return {c["name"]: c["status"] for c in self.report["checks"]}

    def failing(self) -> set:
        return {c["name"] for c in self.report["checks"] if c["status"] in ("fail", "error")}


def run_verify(args, cwd: str, nproc: Optional[int] = None, fault: Optional[str] = None,
               timeout: float = 900, out: Optional[str] = "report.json", env_extra=None) -> Run:
    """Run verify in ``cwd`` (under torchrun with ``nproc`` ranks if given) and load its report."""
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("GPUFLEET_VERIFY_FAULT", None)
    if fault:
        env["GPUFLEET_VERIFY_FAULT"] = fault
    env.update(env_extra or {})
    if nproc is None:
        cmd = [sys.executable, "-m", "verify"]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               "-m", "verify"]
    cmd += list(args) + (["--out", out] if out else [])
    t0 = time.monotonic()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    seconds = time.monotonic() - t0
    path = os.path.join(cwd, out or "verify-report.json")
    report = None
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            report = json.load(f)
    return Run(proc.returncode, proc.stdout, proc.stderr, seconds, report, path)
