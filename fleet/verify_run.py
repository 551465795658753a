"""``invoke verify``: push, run ``verify`` under torchrun on every host, pull the reports back.

Each host's outcome is a :class:`NodeRun`: what happened (state + message), the
node's report bytes exactly as written on the node, and the run's output.  One
host's failure never loses another's result; everything lands in the run
directory (see :mod:`fleet.run_dir`).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from fleet.fanout import HostState, TaskFailed, run_fleet
from fleet.inventory import Host
from fleet.push import Artifact, PushResult, Wheelhouse, build_wheel, push
from fleet.run_dir import make_run_dir, parse_report, safe_name, write_run
from fleet.verdict import HostRun
from fleet.jsonio import write_text_atomic
from fleet.shell import quote
from fleet.transport import HostError, SshOptions, Transport

VERIFY_ENV_VAR = "gpufleet_verify_env"  # inventory: extra environment for verify (NCCL_*, OMP_NUM_THREADS...)
DEFAULT_RDZV_PORT = 29400


@dataclass
class VerifySettings:
    profile: str = "quick"
    nproc: str = "auto"  # "auto" or a number
    run_id: str = ""
    timeout: float = 1800.0  # seconds verify may run on a node
    force: bool = False
    multinode: bool = False
    rdzv_port: int = DEFAULT_RDZV_PORT
    extra_args: tuple = ()
    wheelhouse: Wheelhouse | None = None  # air-gapped nodes: wheels installed beside verify


@dataclass
class NodeRun:
    host: str
    state: str  # ok | failed | unreachable | auth_failed | host_key_rejected | timed_out | error | bad_report
    message: str = ""
    report_bytes: bytes | None = None
    log: str = ""
    push: dict = field(default_factory=dict)
    exit_code: int | None = None
    duration_s: float = 0.0
    node_rank: int | None = None


def utc_run_id(now: _dt.datetime | None = None) -> str:
    now = now or _dt.datetime.now(_dt.timezone.utc)
    return now.strftime("%Y%m%dT%H%M%SZ")


def nproc_for(setting: str, probe: dict) -> int:
    """``auto``: one rank per CUDA GPU, one CPU rank on a host without; else the number given."""
    if str(setting) == "auto":
        return max(1, int(probe.get("gpu_count") or 0))
    n = int(setting)
    if n < 1:
        raise ValueError("--nproc must be 'auto' or a positive number")
    return n


def torchrun_argv(python: str, nproc: int, out: str, s: VerifySettings, rendezvous: dict | None = None) -> list[str]:
    argv = [python, "-m", "torch.distributed.run"]
    if rendezvous:
        argv += [
            f"--nnodes={rendezvous['nnodes']}",
            f"--node_rank={rendezvous['node_rank']}",
            "--rdzv_backend=c10d",
            f"--rdzv_endpoint={rendezvous['endpoint']}",
            f"--rdzv_id={s.run_id}",
            f"--rdzv_conf=is_host={'true' if rendezvous['node_rank'] == 0 else 'false'}",
        ]
    else:
        argv.append("--standalone")
    argv += [f"--nproc_per_node={nproc}", "-m", "verify", "--profile", s.profile, "--out", out]
    if s.force:
        argv.append("--force")
    return argv + list(s.extra_args)


def run_command_line(argv: list[str], env: dict, directory: str, timeout: float) -> str:
    """The node-side shell line: quoted argv, env, and a node-side timeout as a second guard."""
    env_part = " ".join(f"{k}={quote(v)}" for k, v in sorted(env.items()) if _env_name_ok(k))
    guard = f"timeout -k 15 {int(timeout)} " if timeout else ""
    inner = f"{env_part + ' ' if env_part else ''}{guard}{' '.join(quote(a) for a in argv)}"
    return (
        f"cd {quote(directory)} && "
        f"if command -v timeout >/dev/null 2>&1; then {inner}; "
        f"else {env_part + ' ' if env_part else ''}{' '.join(quote(a) for a in argv)}; fi 2>&1"
    )


def _env_name_ok(name: str) -> bool:
    return name.replace("_", "a").isalnum() and not name[0].isdigit()


def verify_env(host: Host) -> dict:
    env = host.vars.get(VERIFY_ENV_VAR) or {}
    if not isinstance(env, dict):
        raise TaskFailed(f"{VERIFY_ENV_VAR} must be a mapping of environment variables")
    bad = [k for k in env if not _env_name_ok(str(k))]
    if bad:
        raise TaskFailed(f"{VERIFY_ENV_VAR}: invalid variable name {bad[0]!r}")
    return {str(k): str(v) for k, v in env.items()}


def node_task(artifact: Artifact, s: VerifySettings, rendezvous_for=None):
    """The per-host work.  Returns a NodeRun; host-level errors are mapped by the caller."""

    def task(t: Transport) -> NodeRun:
        start = time.monotonic()
        host = t.host
        run = NodeRun(host.name, "ok")
        pushed: PushResult = push(t, artifact, wheelhouse=s.wheelhouse)
        run.push = {"directory": pushed.directory, "uploaded": pushed.uploaded, "probe": pushed.probe,
                    "summary": pushed.summary()}
        nproc = nproc_for(s.nproc, pushed.probe)
        out = f"runs/{s.run_id}/report.json"
        rdzv = rendezvous_for(host) if rendezvous_for else None
        if rdzv:
            run.node_rank = rdzv["node_rank"]
        argv = torchrun_argv("venv/bin/python", nproc, out, s, rdzv)  # relative: the line cds there
        line = f"mkdir -p {quote(f'{pushed.directory}/runs/{s.run_id}')} && " + run_command_line(
            argv, verify_env(host), pushed.directory, s.timeout
        )
        try:
            r = t.run(line, timeout=s.timeout + 30)
        except HostError as e:
            e.partial = run  # keep what we had: the push summary
            raise
        run.log, run.exit_code = r.stdout + r.stderr, r.exit_code
        with tempfile.TemporaryDirectory() as tmp:
            local = Path(tmp) / "report.json"
            try:
                t.get(f"{pushed.directory}/{out}", local)
                run.report_bytes = local.read_bytes()
            except FileNotFoundError:
                run.report_bytes = None
            except OSError as e:  # SFTP "no such file" arrives as IOError/OSError
                if "No such file" not in str(e):
                    raise
        if rdzv and run.report_bytes is None and r.exit_code in (0, 1):
            # multi-node: only global rank 0 writes, on whichever node the rendezvous gave it
            run.report_bytes = json.dumps(member_report(host.name, rdzv, r.exit_code)).encode()
        run.state, run.message = classify(r.exit_code, run.report_bytes, s.timeout)
        run.duration_s = time.monotonic() - start
        return run

    return task


def member_report(host: str, rdzv: dict, exit_code: int) -> dict:
    """The controller's record for a node other than the first in a multi-node run.

    Only global rank 0 writes a verify report (with every rank's host and
    figures); the other nodes get this small report so the fleet verdict still
    shows whether their share of the run exited cleanly.
    """
    ok = exit_code == 0
    return {
        "schema": "gpufleet.verify/1",
        "host": host,
        "written_by": "gpufleet controller (multi-node member)",
        "status": "pass" if ok else "fail",
        "env": {},
        "metrics": {},
        "checks": [{
            "name": "multinode/member",
            "status": "pass" if ok else "fail",
            "message": f"node {rdzv['node_rank']} of {rdzv['nnodes']} (rendezvous {rdzv['endpoint']}): "
                       f"torchrun exited {exit_code}; the figures are in the report of the node that held rank 0",
        }],
        "world": {"node_rank": rdzv["node_rank"], "node_count": rdzv["nnodes"]},
    }


def classify(exit_code: int, report: bytes | None, timeout: float) -> tuple[str, str]:
    """Pure: the node's outcome from torchrun's exit status and the report it left."""
    if exit_code in (124, 137):  # the node-side `timeout` stopped it (a report may say "aborted")
        return "timed_out", f"verify did not finish within {timeout:g}s on the node"
    if report is None:
        return "failed", f"verify exited {exit_code} and wrote no report"
    data, why = parse_report(report, "report.json")
    if data is None:
        return "bad_report", why
    if exit_code not in (0, 1):
        return "failed", f"verify exited {exit_code} (report status {data.get('status')!r})"
    return "ok", ""


def run_verify(hosts: Iterable[Host], artifact: Artifact, s: VerifySettings, options: SshOptions,
               progress: bool | None = None) -> list[NodeRun]:
    hosts = list(hosts)
    rendezvous_for = None
    if s.multinode:
        first = hosts[0]
        endpoint = f"{first.address}:{s.rdzv_port}"
        ranks = {h.name: i for i, h in enumerate(hosts)}
        rendezvous_for = lambda h: {"nnodes": len(hosts), "node_rank": ranks[h.name], "endpoint": endpoint}  # noqa: E731
        options = dataclasses.replace(options, forks=max(options.forks, len(hosts)))  # all nodes at once
    result = run_fleet(hosts, node_task(artifact, s, rendezvous_for), options, desc="verify", progress=progress)
    runs = []
    for r in result:
        if r.value is not None and isinstance(r.value, NodeRun):
            run = r.value
            if r.state is not HostState.OK:  # TaskFailed carrying a partial NodeRun
                run.state, run.message = r.state.value, r.message
        else:
            run = NodeRun(r.host.name, r.state.value, r.message)
            if isinstance(r.value, PushResult):
                run.push = {"directory": r.value.directory, "probe": r.value.probe, "summary": r.value.summary()}
        run.duration_s = run.duration_s or r.duration_s
        runs.append(run)
    return runs


def host_runs(runs: list[NodeRun], run_dir: Path) -> list[HostRun]:
    """Write each host's log and turn the NodeRuns into the verdict's HostRuns."""
    out = []
    for n in runs:
        log_rel = f"logs/{safe_name(n.host)}.log"
        header = f"# host {n.host}: state {n.state}" + (f" ({n.message})" if n.message else "") + "\n"
        if n.push:
            header += f"# push: {n.push.get('summary', '')}\n"
        if n.exit_code is not None:
            header += f"# torchrun exit status {n.exit_code}\n"
        write_text_atomic(run_dir / log_rel, header + n.log)
        report = parse_report(n.report_bytes, "report.json")[0] if n.report_bytes is not None else None
        message = n.message
        if n.state != "ok" and n.log:
            tail = "\n".join(n.log.rstrip().splitlines()[-3:])
            message = f"{message}; output ends: {tail}" if message else tail
        out.append(HostRun(n.host, n.state, message, report, log_rel, n.report_bytes))
    return out


def verify_fleet(hosts: Iterable[Host], s: VerifySettings, options: SshOptions, out_base: str = "reports",
                 pattern: str = "", progress: bool | None = None) -> tuple[Path, dict]:
    """The whole job: build, push, run, fetch, write the run directory; returns (run_dir, summary)."""
    hosts = list(hosts)
    started = _dt.datetime.now(_dt.timezone.utc)
    run_dir = make_run_dir(out_base, started)
    s.run_id = s.run_id or run_dir.name
    artifact = build_wheel()
    runs = run_verify(hosts, artifact, s, options, progress=progress)
    finished = _dt.datetime.now(_dt.timezone.utc)
    meta = {
        "run_id": s.run_id,
        "started": started.isoformat(timespec="seconds"),
        "finished": finished.isoformat(timespec="seconds"),
        "pattern": pattern,
        "profile": s.profile,
        "nproc": s.nproc,
        "multinode": s.multinode,
        "artifact": {"file": artifact.filename, "sha256_16": artifact.digest},
        "push": {n.host: n.push.get("summary") for n in runs if n.push},
    }
    summary = write_run(run_dir, host_runs(runs, run_dir), meta)
    return run_dir, summary
