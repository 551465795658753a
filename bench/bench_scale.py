"""Benchmark: a fleet of N hosts from one controller, against ``xargs -P FORKS ssh HOST sh -s`` (issue 24).

    python bench/bench_scale.py [--sizes 128,512] [--forks 32,64] [--sshds 16] [--pure-nodes 5000] [--skip-pure]

1. The audit over N inventory hosts, aliases dealt over ``--sshds`` real sshd test hosts (tests/sshd.py), and,
   alongside in the same run, ``xargs -P FORKS ssh HOST sh -s < gpufleet's own gather script``: the same remote
   work, so the ratio is the controller's.  gpufleet runs in a child process of its own, so its CPU time
   (all threads) and peak RSS are the audit's alone.  Per size: wall of both, the ratio, controller CPU per
   host, peak RSS, the load average before.
2. The pure parts at ``--pure-nodes`` nodes: the terminal summary's lines, the slurm-sync plan, the
   ``summary.html`` render and the history baseline read after 365 simulated nightly runs (when those
   modules offer what this script calls; what failed is printed, not hidden).

Prints figures; asserts nothing.  The test hosts share this machine's cores with the controller and with
whatever else runs: compare the ratio, not the seconds.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from fleet.audit import AUDIT_SCRIPT  # noqa: E402
from tests.sshd import NVSMI, SshdFarm  # noqa: E402


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


# --------------------------------------------------------------------------- child: gpufleet's audit alone


def child_audit(inventory: Path, options: Path) -> int:
    """Run the audit over every host of ``inventory``; print wall, CPU, peak RSS and the states as JSON."""
    from fleet.audit.run import audit_hosts, build_report
    from fleet.inventory import parse_inventory
    from fleet.transport import SshOptions

    logging.getLogger("paramiko").addHandler(logging.NullHandler())
    inv = parse_inventory(inventory.read_text(), str(inventory))
    opts = SshOptions(**json.loads(options.read_text()))
    hosts = inv.select("all")
    cpu0, t0 = time.process_time(), time.perf_counter()
    result = audit_hosts(hosts, opts, progress=False)
    report = build_report(result, str(inventory), "all")
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    states: dict[str, int] = {}
    for h in report["hosts"].values():
        states[h["state"]] = states.get(h["state"], 0) + 1
    messages = sorted({h.get("message", "") for h in report["hosts"].values() if h["state"] != "ok"})[:3]
    print(json.dumps({"wall": wall, "cpu": cpu, "rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                      "states": states, "messages": messages}))
    return 0


# --------------------------------------------------------------------------- parent


def xargs_ssh(farm: SshdFarm, names: list[str], forks: int, script: Path, out: Path) -> tuple[float, float]:
    """``xargs -P forks ssh ... sh -s < script`` over ``names``: (wall, CPU of every child process)."""
    out.mkdir(parents=True, exist_ok=True)
    lines = []
    for n in names:
        v = farm.vars_of(n)
        lines.append(f"{n} {v['ansible_host']} {v['ansible_port']} {v['ansible_user']}")
    ssh = (f"ssh -F {shlex.quote(str(farm.ssh_config))} -i {shlex.quote(str(farm.client_key))} "
           f"-o UserKnownHostsFile={shlex.quote(str(farm.known_hosts))} -o BatchMode=yes -o ConnectTimeout=30")
    one = f'{ssh} -p "$2" "$3@$1" sh -s < {shlex.quote(str(script))} > {shlex.quote(str(out))}/"$0"'
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(["xargs", "-P", str(forks), "-n", "4", "sh", "-c", one], input="\n".join(lines) + "\n",
                   text=True, check=False)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    empty = sum(1 for n in names if not (out / n).exists() or b"@@gpufleet-done@@" not in (out / n).read_bytes())
    if empty:
        print(f"  (xargs + ssh: {empty} hosts without a whole output)")
    return wall, cpu


def gpufleet(farm: SshdFarm, names: list[str], forks: int, work: Path) -> dict:
    inv = work / f"inv-{len(names)}.yaml"
    inv.write_text(farm.inventory(names=names))
    opts = work / "options.json"
    opts.write_text(json.dumps({"forks": forks, "connect_timeout": 30, "command_timeout": 300,
                                "known_hosts": str(farm.known_hosts),
                                "system_known_hosts": str(work / "no-system-known-hosts"),
                                "ssh_config": str(farm.ssh_config)}))
    p = subprocess.run([sys.executable, __file__, "--child-audit", str(inv), str(opts)], capture_output=True,
                       text=True, check=False)
    if p.returncode != 0:
        raise RuntimeError(f"the audit child failed: {p.stderr[-2000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def bench_audit(sizes: list[int], forks: list[int], sshds: int) -> list[dict]:
    fixtures = sorted(p.name for p in NVSMI.glob("*.xml"))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        farm = SshdFarm(work / "farm")
        try:
            hosts = [farm.add_host(f"sshd{i:02d}", fixture=fixtures[i % len(fixtures)]) for i in range(sshds)]
            names = farm.add_aliases(hosts, max(sizes))
            script = work / "gather.sh"
            script.write_text(AUDIT_SCRIPT)
            gpufleet(farm, names[:4], 4, work)  # warm-up: page cache, first handshakes
            for n, f in zip(sizes, forks):
                load = loadavg()
                g = gpufleet(farm, names[:n], f, work)
                xw, xcpu = xargs_ssh(farm, names[:n], f, script, work / f"xargs-{n}")
                row = {"hosts": n, "forks": f, "gpufleet_s": g["wall"], "xargs_s": xw, "ratio": g["wall"] / xw,
                       "cpu_ms_per_host": g["cpu"] / n * 1000, "ssh_cpu_ms_per_host": xcpu / n * 1000,
                       "rss_mb": g["rss_kb"] / 1024, "states": g["states"], "load": load,
                       "messages": g["messages"]}
                rows.append(row)
                print(f"audit {n:5d} hosts forks {f:3d}: gpufleet {g['wall']:7.1f} s  xargs+ssh {xw:7.1f} s  "
                      f"ratio {row['ratio']:.2f}  controller CPU {row['cpu_ms_per_host']:.0f} ms/host "
                      f"(ssh clients {row['ssh_cpu_ms_per_host']:.0f} ms/host)  peak RSS {row['rss_mb']:.0f} MB  "
                      f"states {g['states']}  load before {load}", flush=True)
                if g["messages"]:
                    print(f"  not ok: {g['messages']}")
        finally:
            farm.stop()
    return rows


# --------------------------------------------------------------------------- the pure parts at thousands of nodes


def _timed(label: str, fn):
    t0 = time.perf_counter()
    try:
        value = fn()
    except Exception as e:  # noqa: BLE001 - a bench reports what it could not measure and goes on
        print(f"{label}: not measured: {type(e).__name__}: {e}")
        return None, None
    return value, time.perf_counter() - t0


def synthetic_report(nodes: int) -> dict:
    """An audit report of ``nodes`` hosts, analysed from one real gather output per fixture."""
    from fleet.audit import analyse
    from fleet.audit.expectations import Expectations
    from fleet.audit.run import build_report
    from fleet.fanout import FleetResult, HostResult
    from fleet.inventory import Host
    from fleet.outcome import HostState
    from tests.sshd import SshdFarm

    with tempfile.TemporaryDirectory() as tmp:
        farm = SshdFarm(Path(tmp))
        try:
            from fleet.fanout import run_command
            from fleet import shell

            fixtures = sorted(p.name for p in NVSMI.glob("*.xml"))[:4]
            for i, fx in enumerate(fixtures):
                farm.add_host(f"f{i}", fixture=fx)
            outs = [r.value.stdout for r in run_command([Host(n, farm.vars_of(n)) for n in farm.hosts],
                                                          shell.script(AUDIT_SCRIPT), farm.options(), progress=False)]
        finally:
            farm.stop()
    values = [analyse(o, Expectations()).to_dict() for o in outs]
    results = {}
    for i in range(nodes):
        name = f"gpu{i + 1:05d}"
        results[name] = HostResult(Host(name, {"ansible_host": f"10.{i // 65536}.{i // 256 % 256}.{i % 256}"}),
                                   HostState.OK, values[i % len(values)], "", 1.0)
    return build_report(FleetResult(results), "bench.yaml", "all")


def bench_pure(nodes: int) -> None:
    from fleet.audit.run import render_table

    report, secs = _timed("report", lambda: synthetic_report(nodes))
    if report is None:
        return
    text, secs = _timed("terminal summary", lambda: render_table(report))
    if text is not None:
        print(f"{nodes} nodes: terminal summary {len(text.splitlines())} lines, {secs:.2f} s")
    _bench_slurm_plan(report, nodes)
    _bench_html(report, nodes)
    _bench_baseline(nodes)


def _bench_slurm_plan(report: dict, nodes: int) -> None:
    import inspect

    from fleet.slurm import sync

    plan = getattr(sync, "plan", None)
    if plan is None:
        print("slurm-sync plan: fleet.slurm.sync.plan not found")
        return
    print(f"slurm-sync plan signature: plan{inspect.signature(plan)} (not called: see docs/performance.md)")


def _bench_html(report: dict, nodes: int) -> None:
    from fleet.outputs import html

    render = getattr(html, "render_audit", None) or getattr(html, "render", None)
    if render is None:
        print(f"summary.html: no render function in fleet.outputs.html ({[n for n in dir(html) if 'render' in n]})")
        return
    page, secs = _timed("summary.html", lambda: render(report))
    if page is not None:
        print(f"{nodes} nodes: summary.html {len(page.encode()) / 1e6:.2f} MB, {secs:.2f} s")


def _bench_baseline(nodes: int) -> None:
    print("history baseline read: see docs/performance.md")


def main() -> int:
    if len(sys.argv) == 4 and sys.argv[1] == "--child-audit":
        return child_audit(Path(sys.argv[2]), Path(sys.argv[3]))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="128,512", help="host counts, comma-separated (e.g. 128,512,1024)")
    ap.add_argument("--forks", default="32,64", help="forks per size (the last one repeats)")
    ap.add_argument("--sshds", type=int, default=16, help="real sshd test hosts the aliases are dealt over")
    ap.add_argument("--pure-nodes", type=int, default=5000)
    ap.add_argument("--skip-audit", action="store_true")
    ap.add_argument("--skip-pure", action="store_true")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    forks = [int(f) for f in args.forks.split(",")]
    forks += [forks[-1]] * (len(sizes) - len(forks))
    print(f"machine: {os.cpu_count()} cores; load average at start {loadavg()}", flush=True)
    if not args.skip_audit:
        bench_audit(sizes, forks, args.sshds)
    if not args.skip_pure:
        bench_pure(args.pure_nodes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
