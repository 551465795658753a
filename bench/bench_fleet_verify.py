"""Benchmark `invoke verify`: the tool's overhead, and 1 host against N.

    python bench/bench_fleet_verify.py [--hosts 4] [--checks compute] [--profile quick]

1. `python -m verify` run directly on this machine, against `invoke verify --hosts local`
   (push check, torch probe, torchrun, report fetch, verdict) with the same stages:
   the ratio is the tool's overhead.
2. `invoke verify` over real sshd test hosts on loopback: 1 host, then N hosts in
   parallel (all on this one machine, so N hosts share its cores: the ratio shows
   the fan-out's cost, not what N real nodes would take).
Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from fleet.inventory import parse_inventory  # noqa: E402
from fleet.runs.launch import verify_fleet  # noqa: E402
from fleet.runs.node import VerifySettings  # noqa: E402
from tests.sshd import SshdFarm  # noqa: E402


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hosts", type=int, default=4)
    ap.add_argument("--checks", default="compute")
    ap.add_argument("--profile", default="quick")
    args = ap.parse_args()
    logging.getLogger("paramiko").addHandler(logging.NullHandler())
    stage = ["--checks", args.checks] if args.checks != "all" else []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        direct = timed(lambda: subprocess.run(
            [sys.executable, "-m", "verify", "--profile", args.profile, "--out", str(tmp / "direct.json"),
             "--quiet", *stage],
            cwd=REPO, check=False, capture_output=True))
        inv_cmd = [sys.executable, "-m", "invoke", "verify", "--hosts", "local", "--nproc", "1",
                   "--profile", args.profile, "--out", str(tmp / "reports"), "--checks", args.checks]
        subprocess.run(inv_cmd, cwd=REPO, capture_output=True)  # first run pushes; measure the steady state
        tool = timed(lambda: subprocess.run(inv_cmd, cwd=REPO, capture_output=True))

        farm = SshdFarm(tmp / "farm")
        try:
            for i in range(args.hosts):
                farm.add_host(f"n{i}", fixture=None, gpus=0, extra_vars={
                    "ansible_python_interpreter": sys.executable,
                    "gpufleet_remote_dir": str(tmp / "farm" / f"n{i}" / "cache")})
            inv = parse_inventory(farm.inventory(), "bench.yaml")
            opts = farm.options(command_timeout=600)
            checks = () if args.checks == "all" else tuple(args.checks.split(","))

            def s():
                return VerifySettings(profile=args.profile, nproc="1", timeout=600, checks=checks)
            verify_fleet(inv.select("all"), s(), opts, out_base=str(tmp / "warm"), progress=False)  # push everywhere
            one = timed(lambda: verify_fleet(inv.select("n0"), s(), opts, out_base=str(tmp / "r1"), progress=False))
            many = timed(lambda: verify_fleet(inv.select("all"), s(), opts, out_base=str(tmp / "rn"), progress=False))
        finally:
            farm.stop()
    print(f"stages: {args.checks}, profile {args.profile}")
    print(f"python -m verify directly:        {direct:6.2f} s")
    print(f"invoke verify --hosts local:      {tool:6.2f} s   "
          f"overhead ratio {tool / direct:.2f}x (+{tool - direct:.2f} s)")
    print(f"verify over SSH, 1 host:          {one:6.2f} s")
    print(f"verify over SSH, {args.hosts} hosts:         {many:6.2f} s   ratio {many / one:.2f}x "
          f"(all {args.hosts} share this machine's cores)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
