"""Benchmark: audit 1 host, then N hosts, over real sshd test hosts on loopback.

    python bench/bench_audit.py [--hosts 24] [--repeat 3] [--forks 32]

Prints each wall time (best of --repeat), the ratio N-host / 1-host (with a
parallel fan-out it should stay far below N), and the controller's own CPU time.
The test hosts run on this same machine, so on few cores their sshd and audit
scripts, not the controller, set the N-host time.  Not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fleet.audit.run import audit_hosts  # noqa: E402
from fleet.inventory import parse_inventory  # noqa: E402
from tests.sshd import NVSMI, SshdFarm  # noqa: E402


def best_of(repeat: int, fn) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hosts", type=int, default=24)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--forks", type=int, default=32)
    args = ap.parse_args()
    logging.getLogger("paramiko").addHandler(logging.NullHandler())
    fixtures = sorted(p.name for p in NVSMI.glob("*.xml"))
    with tempfile.TemporaryDirectory() as tmp:
        farm = SshdFarm(Path(tmp))
        try:
            for i in range(args.hosts):
                farm.add_host(f"node{i:02d}", fixture=fixtures[i % len(fixtures)])
            inv = parse_inventory(farm.inventory(), "bench.yaml")
            opts = farm.options(forks=args.forks, command_timeout=60)
            one = inv.select("node00")
            many = inv.select("all")
            audit_hosts(one, opts, progress=False)  # warm-up: imports, first handshake
            t1 = best_of(args.repeat, lambda: audit_hosts(one, opts, progress=False))
            tn = best_of(args.repeat, lambda: audit_hosts(many, opts, progress=False))
            cpu = time.process_time()
            failed = [r.host.name for r in audit_hosts(many, opts, progress=False) if not r.ok]
            cpu = time.process_time() - cpu
        finally:
            farm.stop()
    print(f"audit 1 host:   {t1:.3f} s (best of {args.repeat})")
    print(f"audit {args.hosts} hosts: {tn:.3f} s (best of {args.repeat}, forks {args.forks})")
    print(f"ratio {args.hosts}/1: {tn / t1:.2f}x  (serial would be ~{args.hosts}x)")
    print(f"per host: {tn / args.hosts * 1000:.0f} ms; hosts not ok: {failed or 'none'}")
    print(f"controller CPU for the {args.hosts}-host audit: {cpu:.2f} s (the rest of the wall time is the test hosts' "
          f"sshd and audit scripts, which share this machine's cores)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
