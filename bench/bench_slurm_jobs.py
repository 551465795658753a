"""Benchmark `verify --via slurm`: one job per node against `--one-job`, on the suite's real Slurm.

    python bench/bench_slurm_jobs.py [--runs 2] [--checks collectives]

Starts the test suite's Slurm (tests/slurmcluster.py: slurmctld and three slurmd, gpu1..gpu3; needs root and
Debian's slurm-wlm and munge, as the suite does) and three real sshd test hosts (tests/sshd.py) mapped to its
nodes, pushes verify once (a warm-up run, not counted), then runs `gpufleet verify --via slurm` on the three
nodes with per-node jobs and with `--one-job` in turn (A B A B ...), `--runs` times each.  `sbatch`, `squeue`
and `scontrol` are wrappers on the PATH that count each call and run the real program.  Prints, per run, the
calls of each and the wall time of the command, and, from Slurm's records of the run's jobs, the longest wait
from submission to start and the time from the first start to the last end; then the medians and the ratios.
Asserts nothing.

All three nodes are this one machine, so the runs share its cores: the wall time includes the benchmark itself
(verify's stages on three nodes at once) and the scheduler's start-up of each job; the counts are exact.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.slurmcluster import SlurmCluster, missing_tools  # noqa: E402
from tests.sshd import SshdFarm, invoke_env  # noqa: E402

HOSTS = {"sl-1": "gpu1", "sl-2": "gpu2", "sl-3": "gpu3"}
COUNTED = ("sbatch", "squeue", "scontrol")


def counting_env(base: Path, env: dict) -> tuple[dict, Path]:
    """``env`` with wrappers of the Slurm clients first on the PATH: each call appends its name to a file."""
    bin_dir, log = base / "bin", base / "calls.log"
    bin_dir.mkdir()
    for name in COUNTED:
        real = subprocess.run(["sh", "-c", f"command -v {name}"], capture_output=True, text=True,
                              env=env).stdout.strip()
        (bin_dir / name).write_text(f'#!/bin/sh\necho {name} >>"{log}"\nexec "{real}" "$@"\n')
        (bin_dir / name).chmod(0o755)
    return {**env, "PATH": f"{bin_dir}{os.pathsep}{env['PATH']}"}, log


def job_times(cluster: SlurmCluster, run_id: str) -> tuple[float, float]:
    """The run's jobs (by name) as Slurm recorded them: the longest wait from submission to start, and the seconds
    from the first start to the last end."""
    from datetime import datetime

    ids = cluster.run("squeue", "-h", "-t", "all", "-n", f"gpufleet-verify-{run_id}", "-o", "%i").stdout.split()
    jobs = [cluster.jobs(i)[0] for i in ids]

    def at(job: dict, key: str) -> float:
        return datetime.fromisoformat(job[key]).timestamp()

    pending = max(at(j, "StartTime") - at(j, "SubmitTime") for j in jobs)
    return pending, max(at(j, "EndTime") for j in jobs) - min(at(j, "StartTime") for j in jobs)


def one_run(argv: list[str], env: dict, log: Path, cluster: SlurmCluster) -> dict:
    """Run the command once: its exit status, wall seconds, each Slurm client's calls, its jobs' times and its
    hosts' statuses."""
    log.write_text("")
    start = time.perf_counter()
    r = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=1800)
    wall = time.perf_counter() - start
    calls = log.read_text().splitlines()
    out = Path(argv[argv.index("--out") + 1])
    run_dir = sorted(p for p in out.iterdir() if p.is_dir())[-1]
    summary = json.loads((run_dir / "summary.json").read_text())
    pending, running = job_times(cluster, run_dir.name)
    return {"rc": r.returncode, "wall": wall, **{name: calls.count(name) for name in COUNTED},
            "pending": pending, "running": running,
            "hosts": {h: e["status"] for h, e in summary["hosts"].items()}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--checks", default="collectives")
    args = ap.parse_args()
    if missing_tools():
        print(f"Slurm/munge not installed (no {', '.join(missing_tools())}): see .ci/run", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cluster = SlurmCluster(tmp / "slurm")
        farm = SshdFarm(tmp / "farm")
        try:
            cluster.start()
            for name, node in HOSTS.items():
                farm.add_host(name, fixture=None, gpus=0, extra_vars={
                    "ansible_python_interpreter": sys.executable, "gpufleet_slurm_node": node,
                    "gpufleet_remote_dir": str(tmp / "install")})  # one install, as in a shared home
            inv = tmp / "hosts.yaml"
            inv.write_text(farm.inventory(list(HOSTS)))
            env, log = counting_env(tmp, {**invoke_env(farm, tmp / "home"), **cluster.env})
            shared = cluster.shared / "gpufleet"

            def argv(out: str, *extra: str) -> list[str]:
                return [sys.executable, "-m", "fleet.cli", "verify", "--via", "slurm", "--shared-dir", str(shared),
                        "--hosts", "gpu-nodes", "--inventory", str(inv), "--out", str(tmp / out), "--no-history",
                        "--nproc", "1", "--checks", args.checks, "--timeout", "600", *extra]

            warm = one_run(argv("warm"), env, log, cluster)  # pushes verify to the shared install: not counted
            print(f"warm-up (push): rc {warm['rc']}, {warm['hosts']}")
            kinds = {"per-node jobs": (), "--one-job": ("--one-job",)}
            results: dict = {k: [] for k in kinds}
            for i in range(args.runs):
                for kind, extra in kinds.items():
                    cluster.wait_nodes("idle", timeout=120)
                    r = one_run(argv(f"{'one' if extra else 'per'}-{i}", *extra), env, log, cluster)
                    results[kind].append(r)
                    print(f"{kind:14s} run {i + 1}: rc {r['rc']}, " + ", ".join(f"{n} {r[n]}" for n in COUNTED)
                          + f", wall {r['wall']:.1f} s (jobs: pending up to {r['pending']:.0f} s, running "
                          f"{r['running']:.0f} s), {r['hosts']}")
        finally:
            farm.stop()
            cluster.stop()
    med = {k: {f: statistics.median(r[f] for r in rs) for f in (*COUNTED, "wall")} for k, rs in results.items()}
    print(f"\nthree nodes, --checks {args.checks}, {args.runs} runs each (median):")
    for kind, m in med.items():
        print(f"  {kind:14s} " + ", ".join(f"{n} {m[n]:g}" for n in COUNTED) + f", wall {m['wall']:.1f} s")
    a, b = med["per-node jobs"], med["--one-job"]
    print("  per-node / one-job: " + ", ".join(f"{n} {a[n] / b[n]:.2f}x" for n in (*COUNTED, "wall")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
