"""Benchmark: a fleet of N hosts from one controller, against ``xargs -P FORKS ssh HOST sh -s`` (issue 24).

    python bench/bench_scale.py [--sizes 128,512] [--forks 32,64] [--repeat 1] [--sshds 16] [--skip-audit]
                                [--pure-nodes 5000] [--history-runs 365] [--history-only] [--keep-history PATH]
                                [--skip-pure]

1. The audit over N inventory hosts, aliases dealt over ``--sshds`` real sshd test hosts (tests/sshd.py), and,
   alongside in the same run, ``xargs -P FORKS ssh HOST sh -s < gpufleet's own gather script``: the same remote
   work, so the ratio is the controller's.  ``--repeat R``: R pairs per size, alternating which runs first,
   and their median ratio (this machine's load drifts by more than the difference being measured).  gpufleet
   runs in a child process of its own, so its CPU time (all threads) and peak RSS are the audit's alone.  Per
   size: wall of both, the ratio, controller CPU per host (the Python process) and, apart, the CPU of the
   ``ssh`` clients it ran (the audit runs OpenSSH's client where a host's entry allows: fleet/openssh.py)
   beside xargs's, the time the report took after the last host, peak RSS, the load average before.
2. The pure parts at ``--pure-nodes`` nodes (8 GPUs each): the audit's and a verify run's terminal summary
   (lines), the slurm-sync plan (``fleet.slurm.sync.plan``), ``summary.html`` (``render_html``: seconds, size)
   and, after ``--history-runs`` simulated nightly runs (database size), the history baseline read before a run
   (``read_baselines``) and the page's trends read after it (``read_trends``: the hosts summary.html draws).
   What could not be measured is printed, not hidden.

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
import statistics
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
    kids0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu0, t0 = time.process_time(), time.perf_counter()
    result = audit_hosts(hosts, opts, progress=False)
    t1 = time.perf_counter()
    report = build_report(result, str(inventory), "all")
    t2, cpu = time.perf_counter(), time.process_time() - cpu0
    wall = t2 - t0
    kids1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    kids = (kids1.ru_utime - kids0.ru_utime) + (kids1.ru_stime - kids0.ru_stime)  # the ssh clients it started
    states: dict[str, int] = {}
    for h in report["hosts"].values():
        states[h["state"]] = states.get(h["state"], 0) + 1
    messages = sorted({h.get("message", "") for h in report["hosts"].values() if h["state"] != "ok"})[:3]
    print(json.dumps({"wall": wall, "report_s": t2 - t1, "cpu": cpu,
                      "rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                      "children_cpu": kids, "states": states, "messages": messages}))
    return 0


def child_files(inventory: Path, options: Path, local: Path, remote: Path, fetched: Path) -> int:
    """Every host: upload ``local`` to ``remote/<host>``, then fetch it back to ``fetched/<host>``; as child_audit."""
    from fleet.fanout import run_fleet
    from fleet.inventory import parse_inventory
    from fleet.transport import SshOptions

    logging.getLogger("paramiko").addHandler(logging.NullHandler())
    inv = parse_inventory(inventory.read_text(), str(inventory))
    opts = SshOptions(**json.loads(options.read_text()))

    def task(t) -> None:
        t.put(local, str(remote / t.host.name))
        t.get(str(remote / t.host.name), fetched / t.host.name)

    cpu0, t0 = time.process_time(), time.perf_counter()
    result = run_fleet(inv.select("all"), task, opts, progress=False)
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    states: dict[str, int] = {}
    for r in result:
        states[r.state.value] = states.get(r.state.value, 0) + 1
    print(json.dumps({"wall": wall, "cpu": cpu, "rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                      "states": states, "messages": sorted({r.message for r in result if not r.ok})[:3]}))
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


def bench_files(hosts_n: int, forks: int, sshds: int, size_kb: int) -> None:
    """Push + fetch: a ``size_kb`` file up to every host and back, gpufleet (SFTP) against ``xargs -P`` scp."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        farm = SshdFarm(work / "farm")
        try:
            hosts = [farm.add_host(f"sshd{i:02d}") for i in range(sshds)]
            names = farm.add_aliases(hosts, hosts_n)
            local = work / "payload.bin"
            local.write_bytes(os.urandom(size_kb * 1024))
            for d in ("remote-g", "fetched-g", "remote-x", "fetched-x"):
                (work / d).mkdir()
            inv = work / "inv.yaml"
            inv.write_text(farm.inventory(names=names))
            opts = work / "options.json"
            opts.write_text(json.dumps({"forks": forks, "connect_timeout": 30, "command_timeout": 300,
                                        "known_hosts": str(farm.known_hosts),
                                        "system_known_hosts": str(work / "no-system-known-hosts"),
                                        "ssh_config": str(farm.ssh_config)}))
            load = loadavg()
            p = subprocess.run([sys.executable, __file__, "--child-files", str(inv), str(opts), str(local),
                                str(work / "remote-g"), str(work / "fetched-g")], capture_output=True, text=True,
                               check=False)
            if p.returncode != 0:
                raise RuntimeError(f"the files child failed: {p.stderr[-2000:]}")
            g = json.loads(p.stdout.strip().splitlines()[-1])
            lines = []
            for n in names:
                v = farm.vars_of(n)
                lines.append(f"{n} {v['ansible_host']} {v['ansible_port']} {v['ansible_user']}")
            scp = (f"scp -q -F {shlex.quote(str(farm.ssh_config))} -i {shlex.quote(str(farm.client_key))} "
                   f"-o UserKnownHostsFile={shlex.quote(str(farm.known_hosts))} -o BatchMode=yes")
            rx, fx = shlex.quote(str(work / "remote-x")), shlex.quote(str(work / "fetched-x"))
            one = (f'{scp} -P "$2" {shlex.quote(str(local))} "$3@$1:{rx}/$0" && '
                   f'{scp} -P "$2" "$3@$1:{rx}/$0" {fx}/"$0"')
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            t0 = time.perf_counter()
            subprocess.run(["xargs", "-P", str(forks), "-n", "4", "sh", "-c", one], input="\n".join(lines) + "\n",
                           text=True, check=False)
            xw = time.perf_counter() - t0
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            xcpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
            got_g = sum(1 for n in names if (work / "fetched-g" / n).exists())
            got_x = sum(1 for n in names if (work / "fetched-x" / n).exists())
        finally:
            farm.stop()
    print(f"push+fetch {hosts_n} hosts forks {forks} ({size_kb} KB each way): gpufleet {g['wall']:.1f} s  "
          f"xargs+scp {xw:.1f} s  ratio {g['wall'] / xw:.2f}  controller CPU {g['cpu'] / hosts_n * 1000:.0f} ms/host "
          f"(scp clients {xcpu / hosts_n * 1000:.0f} ms/host)  peak RSS {g['rss_kb'] / 1024:.0f} MB  "
          f"fetched {got_g}/{got_x} of {hosts_n}  states {g['states']}  load before {load}", flush=True)


def bench_audit(sizes: list[int], forks: list[int], sshds: int, repeat: int = 1) -> list[dict]:
    """Per size, ``repeat`` pairs of runs (gpufleet, then xargs + ssh; the next pair the other way round, so
    neither always runs on the machine the other left); each pair's row, then the median ratio."""
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
                ratios = []
                for i in range(repeat):
                    load = loadavg()
                    if i % 2 == 0:
                        g = gpufleet(farm, names[:n], f, work)
                        xw, xcpu = xargs_ssh(farm, names[:n], f, script, work / f"xargs-{n}-{i}")
                    else:
                        xw, xcpu = xargs_ssh(farm, names[:n], f, script, work / f"xargs-{n}-{i}")
                        g = gpufleet(farm, names[:n], f, work)
                    row = {"hosts": n, "forks": f, "gpufleet_s": g["wall"], "xargs_s": xw, "ratio": g["wall"] / xw,
                           "cpu_ms_per_host": g["cpu"] / n * 1000, "ssh_cpu_ms_per_host": xcpu / n * 1000,
                           "its_ssh_cpu_ms_per_host": g["children_cpu"] / n * 1000,
                           "report_s": g["report_s"], "rss_mb": g["rss_kb"] / 1024, "states": g["states"],
                           "load": load, "messages": g["messages"]}
                    rows.append(row)
                    ratios.append(row["ratio"])
                    first = "gpufleet first" if i % 2 == 0 else "xargs first"
                    print(f"audit {n:5d} hosts forks {f:3d}: gpufleet {g['wall']:7.1f} s  xargs+ssh {xw:7.1f} s  "
                          f"ratio {row['ratio']:.2f}  controller CPU {row['cpu_ms_per_host']:.0f} ms/host "
                          f"(+ the ssh clients it ran {row['its_ssh_cpu_ms_per_host']:.0f}; xargs's ssh clients "
                          f"{row['ssh_cpu_ms_per_host']:.0f} ms/host)  report after the last host "
                          f"{row['report_s']:.2f} s  peak RSS {row['rss_mb']:.0f} MB  "
                          f"states {g['states']}  load before {load}" + (f"  ({first})" if repeat > 1 else ""),
                          flush=True)
                    if g["messages"]:
                        print(f"  not ok: {g['messages']}")
                if repeat > 1:
                    print(f"audit {n:5d} hosts: median ratio of {repeat} pairs {statistics.median(ratios):.2f} "
                          f"({', '.join(f'{r:.2f}' for r in ratios)})", flush=True)
        finally:
            farm.stop()
    return rows


# --------------------------------------------------------------------------- the pure parts at thousands of nodes


class Took:
    """Wall and CPU seconds of one call: on a shared machine the CPU seconds are the figure that holds."""

    def __init__(self, wall: float, cpu: float):
        self.wall, self.cpu = wall, cpu

    def __format__(self, spec: str) -> str:
        return f"{self.wall:{spec or '.2f'}} s wall, {self.cpu:{spec or '.2f'}} s CPU"


def _timed(label: str, fn):
    t0, c0 = time.perf_counter(), time.process_time()
    try:
        value = fn()
    except Exception as e:  # noqa: BLE001 - a bench reports what it could not measure and goes on
        print(f"{label}: not measured: {type(e).__name__}: {e}")
        return None, None
    return value, Took(time.perf_counter() - t0, time.process_time() - c0)


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
            opts = farm.options(connect_timeout=30, command_timeout=120)
            result = run_command([Host(n, farm.vars_of(n)) for n in farm.hosts], shell.script(AUDIT_SCRIPT), opts,
                                 progress=False)
            outs = [r.value.stdout for r in result]
        finally:
            farm.stop()
    values = [analyse(o, Expectations()).to_dict() for o in outs]
    results = {}
    for i in range(nodes):
        name = f"gpu{i + 1:05d}"
        results[name] = HostResult(Host(name, {"ansible_host": f"10.{i // 65536}.{i // 256 % 256}.{i % 256}"}),
                                   HostState.OK, values[i % len(values)], "", 1.0)
    return build_report(FleetResult(results), "bench.yaml", "all")


def verify_summary(nodes: int) -> tuple[dict, list]:
    """A verify run's summary over ``nodes`` hosts (8 H100s each, the tests' report builder, judged as a run is)."""
    from fleet.runs.verdict import judge
    from tests.report_builder import arrived, node_report

    gpus = ["NVIDIA H100 80GB HBM3"] * 8
    runs = []
    for i in range(nodes):
        host = f"gpu{i + 1:05d}"
        m = {f"matmul/bf16/tflops:gpu{g}": 700.0 - (i % 7) for g in range(8)}
        m.update({f"memory/d2d/gbps:gpu{g}": 2000.0 for g in range(8)})
        m["allreduce/busbw_gbps"] = 400.0
        runs.append(arrived(node_report(host, gpus, m), host))
    meta = {"run_id": "20260101T000000Z", "started": "2026-01-01T00:00:00+00:00",
            "finished": "2026-01-01T00:05:00+00:00", "interrupted": False}
    return judge(runs, meta, reference={}), runs


def bench_pure(nodes: int, history_runs: int, history_only: bool = False, keep: str | None = None) -> None:
    from fleet.audit.run import render_table

    if history_only:
        got, secs = _timed("verify summary", lambda: verify_summary(nodes))
        if got is not None:
            _bench_baseline(*got, nodes, history_runs, keep)
        return
    report, secs = _timed("audit report", lambda: synthetic_report(nodes))
    if report is not None:
        text, secs = _timed("audit terminal summary", lambda: render_table(report))
        if text is not None:
            print(f"{nodes} nodes: audit terminal summary {len(text.splitlines())} lines, {secs}  "
                  f"(load {loadavg()})", flush=True)
    got, secs = _timed("verify summary", lambda: verify_summary(nodes))
    if got is None:
        return
    summary, runs = got
    print(f"{nodes} nodes: verify summary judged in {secs}", flush=True)
    _bench_verify_table(summary, nodes)
    _bench_slurm_plan(summary, nodes)
    _bench_html(summary, nodes)
    _bench_baseline(summary, runs, nodes, history_runs, keep)


def _bench_verify_table(summary: dict, nodes: int) -> None:
    from fleet.runs.render import render_table

    text, secs = _timed("verify terminal summary", lambda: render_table(summary))
    if text is not None:
        print(f"{nodes} nodes: verify terminal summary {len(text.splitlines())} lines, {secs}", flush=True)


def _bench_slurm_plan(summary: dict, nodes: int) -> None:
    from fleet.slurm.nodes import SlurmNode
    from fleet.slurm.sync import plan

    hosts = list(summary["hosts"])
    slurm = {h: SlurmNode(h, "IDLE") for h in hosts}
    got, secs = _timed("slurm-sync plan", lambda: plan(summary, {h: h for h in hosts}, slurm, {}))
    if got is not None:
        print(f"{nodes} nodes: slurm-sync plan {len(got.actions)} actions, {secs}  (load {loadavg()})",
              flush=True)


def _bench_html(summary: dict, nodes: int) -> None:
    from fleet.outputs.html import render_html

    page, secs = _timed("summary.html", lambda: render_html(summary))
    if page is not None:
        print(f"{nodes} nodes: summary.html {len(page.encode()) / 1e6:.2f} MB, {secs}  (load {loadavg()})",
              flush=True)


def _table_columns(db, table: str) -> list[str]:
    return [r[1] for r in db.execute(f"PRAGMA table_info({table})")]


def clone_run(db, template: str, run_id: str, started: str, finished: str, offset: int) -> None:
    """Copy the recorded run ``template`` as run ``run_id`` started at ``started``: its ``runs`` row, its
    ``host_runs`` (ids shifted by ``offset``) and every row of the tables keyed by ``host_run``, with SQL alone
    (``INSERT ... SELECT``), whatever the schema version: what ``record_verify`` would have written for the same
    summary on another night, written in a fraction of the time.  The caller holds the transaction."""
    runs_cols = _table_columns(db, "runs")
    values = ", ".join({"run_id": "?", "started": "?", "finished": "?"}.get(c, c) for c in runs_cols)
    db.execute(f"INSERT INTO runs ({', '.join(runs_cols)}) SELECT {values} FROM runs WHERE run_id = ?",
               [{"run_id": run_id, "started": started, "finished": finished}[c]
                for c in runs_cols if c in ("run_id", "started", "finished")] + [template])
    hr_cols = _table_columns(db, "host_runs")
    values = ", ".join({"id": "id + ?", "run_id": "?"}.get(c, c) for c in hr_cols)
    params = [{"id": offset, "run_id": run_id}[c] for c in hr_cols if c in ("id", "run_id")]
    db.execute(f"INSERT INTO host_runs ({', '.join(hr_cols)}) SELECT {values} FROM host_runs WHERE run_id = ?",
               params + [template])
    for table in ("checks", "metrics", "events", "gpu_sightings"):
        cols = _table_columns(db, table)
        values = ", ".join("host_run + ?" if c == "host_run" else c for c in cols)
        order = "host_run" if table == "metrics" else "rowid"  # metrics: WITHOUT ROWID from schema version 4
        db.execute(f"INSERT INTO {table} ({', '.join(cols)}) SELECT {values} FROM {table} "
                   f"WHERE host_run IN (SELECT id FROM host_runs WHERE run_id = ?) ORDER BY {order}",
                   (offset, template))


def simulate_history(path: Path, summary: dict, runs: list, history_runs: int) -> float:
    """``history_runs`` nightly verify runs (profile ``quick``) of ``summary`` in the database at ``path``: the
    first recorded by ``fleet.history.db.record_verify`` (returns its seconds), the others copies of it
    (:func:`clone_run`) one day apart."""
    import datetime as dt

    from fleet.history.db import connect, record_verify

    day0 = dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)
    db = connect(path)
    try:
        meta = {"run_id": day0.strftime("%Y%m%dT%H%M%SZ"), "started": day0.isoformat(),
                "finished": (day0 + dt.timedelta(minutes=5)).isoformat(), "interrupted": False, "profile": "quick"}
        t0 = time.perf_counter()
        record_verify(db, {**summary, "run_id": meta["run_id"]}, meta, runs)
        one = time.perf_counter() - t0
        step = db.execute("SELECT MAX(id) FROM host_runs").fetchone()[0]
        db.execute("PRAGMA synchronous = OFF")
        db.execute("BEGIN")
        for d in range(1, history_runs):
            when = day0 + dt.timedelta(days=d)
            clone_run(db, meta["run_id"], when.strftime("%Y%m%dT%H%M%SZ"), when.isoformat(),
                      (when + dt.timedelta(minutes=5)).isoformat(), d * step)
        db.execute("COMMIT")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        db.close()
    return one


def _run_ids(path: Path) -> list[str]:
    import sqlite3

    db = sqlite3.connect(path)
    try:
        return [r[0] for r in db.execute("SELECT run_id FROM runs WHERE kind = 'verify' ORDER BY started")]
    finally:
        db.close()


def _bench_baseline(summary: dict, runs: list, nodes: int, history_runs: int, keep: str | None = None) -> None:
    """``history_runs`` nightly runs of ``summary`` (:func:`simulate_history`), then: one more run recorded
    (``record_verify``), the next run's baselines read (``read_baselines``), the ``history`` command's document
    for one host and for every host over the last 7 days: the database's size and each one's seconds."""
    import datetime as dt

    from fleet.history.baseline import read_baselines, read_trends
    from fleet.history.db import connect, record_verify
    from fleet.outputs.flags import flags
    from fleet.outputs.html import MAX_TREND_HOSTS
    from fleet.outputs.trends import trend_order
    from fleet.history.query import document

    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        path = Path(keep) if keep else Path(tmp) / "history.db"
        if keep and path.exists():  # simulated by an earlier run of the bench: measured again, not rewritten
            print(f"{nodes} nodes: the history of {path} kept from an earlier run", flush=True)
        else:
            t0 = time.perf_counter()
            first = simulate_history(path, summary, runs, history_runs)
            wrote = time.perf_counter() - t0
            size = path.stat().st_size / 1e6
            print(f"{nodes} nodes, {history_runs} nightly runs: history {size:.0f} MB (simulated in {wrote:.0f} s; "
                  f"the first run recorded in {first:.2f} s)  (load {loadavg()})", flush=True)
        if keep:  # the run recorded below is the same one each time: recorded again, it replaces itself
            history_runs = len(_run_ids(path)) - 1
        when = dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(days=history_runs)
        meta = {"run_id": when.strftime("%Y%m%dT%H%M%SZ"), "started": when.isoformat(), "finished": None,
                "interrupted": False, "profile": "quick"}

        def record_one() -> str:
            db = connect(path)
            try:
                return record_verify(db, {**summary, "run_id": meta["run_id"]}, meta, runs)
            finally:
                db.close()

        _, secs = _timed("record one run", record_one)
        print(f"{nodes} nodes: one more run recorded (record_verify) in {secs}", flush=True)
        got, secs = _timed("baseline read", lambda: read_baselines(path, list(summary["hosts"]), "quick"))
        if got is not None:
            doc, why = got
            print(f"{nodes} nodes, {history_runs + 1} nightly runs: baseline read {secs}, "
                  f"{len(doc['hosts']) if doc else 0} hosts with a baseline{'; ' + why if why else ''}  "
                  f"(load {loadavg()})", flush=True)
        order = trend_order(summary, *flags(summary))
        got, secs = _timed("trends read", lambda: read_trends(path, order, "quick", MAX_TREND_HOSTS))
        if got is not None:
            past, with_history, why = got
            print(f"{nodes} nodes: the page's trends read {secs}: {len(past)} hosts drawn of {with_history} with a "
                  f"history{'; ' + why if why else ''}  (load {loadavg()})", flush=True)
        for label, patterns, days in (("history --hosts gpu00001", ["gpu00001"], None),
                                      ("history --days 7 (every host)", None, 7.0)):
            def read(patterns=patterns, days=days) -> dict:
                db = connect(path)
                try:
                    return document(db, patterns, None, days, now=when + dt.timedelta(hours=1))
                finally:
                    db.close()

            got, secs = _timed(label, read)
            if got is not None:
                n = sum(len(h["runs"]) for h in got["hosts"].values())
                print(f"{nodes} nodes: {label}: {n} host runs in {secs}", flush=True)


def main() -> int:
    if len(sys.argv) == 4 and sys.argv[1] == "--child-audit":
        return child_audit(Path(sys.argv[2]), Path(sys.argv[3]))
    if len(sys.argv) == 7 and sys.argv[1] == "--child-files":
        return child_files(*(Path(a) for a in sys.argv[2:]))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="128,512", help="host counts, comma-separated (e.g. 128,512,1024)")
    ap.add_argument("--forks", default="32,64", help="forks per size (the last one repeats)")
    ap.add_argument("--sshds", type=int, default=16, help="real sshd test hosts the aliases are dealt over")
    ap.add_argument("--pure-nodes", type=int, default=5000)
    ap.add_argument("--history-runs", type=int, default=365, help="nightly runs in the simulated history")
    ap.add_argument("--history-only", action="store_true", help="of the pure parts, the history alone")
    ap.add_argument("--keep-history", metavar="PATH",
                    help="simulate the history into PATH and keep it; when PATH exists, measure it again as it is")
    ap.add_argument("--skip-audit", action="store_true")
    ap.add_argument("--repeat", type=int, default=1,
                    help="audit: pairs of runs per size, alternating which goes first; prints the median ratio")
    ap.add_argument("--files-hosts", type=int, default=0, help="push+fetch over this many hosts (0: skip)")
    ap.add_argument("--files-kb", type=int, default=256, help="push+fetch: the file's size")
    ap.add_argument("--skip-pure", action="store_true")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    forks = [int(f) for f in args.forks.split(",")]
    forks += [forks[-1]] * (len(sizes) - len(forks))
    print(f"machine: {os.cpu_count()} cores; load average at start {loadavg()}", flush=True)
    if not args.skip_audit:
        bench_audit(sizes, forks, args.sshds, args.repeat)
    if args.files_hosts:
        bench_files(args.files_hosts, forks[-1], args.sshds, args.files_kb)
    if not args.skip_pure:
        bench_pure(args.pure_nodes, args.history_runs, args.history_only, args.keep_history)
    return 0


if __name__ == "__main__":
    sys.exit(main())
