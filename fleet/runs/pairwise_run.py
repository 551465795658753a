"""``verify --multinode --pairwise``: run the rounds of :mod:`fleet.runs.pairwise` over SSH and write the run.

Every pair of a round runs at once: one torchrun per host, the pair's own c10d rendezvous on its first host, the
collectives stage only, the pair's own timeout (``--pair-timeout``): a pair that hangs is stopped on every host
when its time is up, so the run never hangs.  Each pair's records go to ``pairs/r<round>-<n>/`` of the run
directory (run.json, hosts/, logs/, as any run); the top-level run.json holds every pair's result, and
``summary.json`` the verdict (:func:`judge_pairwise`), which ``gpufleet report`` computes again from run.json.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import random
from pathlib import Path
from typing import Callable, Iterable, Mapping

from fleet.fanout import run_fleet
from fleet.inventory import Host
from fleet.outcome import ExitCode, HostState, Recap
from fleet.progress import Progress
from fleet.push import Artifact, build_wheel
from fleet.runs.node import VerifySettings, host_runs, node_task, rdzv_addr, stop_installed, stopped_members
from fleet.runs.pairwise import DEFAULT_FLOOR, PairResult, classify, next_groups, pair_up, verdict
from fleet.runs.record import FinishedRun, HostRun
from fleet.runs.run_dir import make_run_dir, write_run, write_summary
from fleet.runs.verdict import SCHEMA, culprit_reason
from fleet.status import reason, state_reason
from fleet.transport import SshOptions

MAX_RETEST_ROUNDS = 4
RACK_VAR = "gpufleet_rack"


@dataclasses.dataclass
class PairwiseSettings:
    rounds: int = 1
    pair_timeout: float = 120.0
    floor: float = DEFAULT_FLOOR
    topology: str = "random"  # random | rack | cross
    seed: int | None = None


def pair_outcome(group: tuple, runs: Mapping[str, HostRun], round_no: int, timeout: float) -> PairResult:
    """One pair's result from its hosts' records (pure)."""
    result = PairResult(tuple(group), round_no)
    states = {h: runs[h].state for h in group}
    hung = [h for h, st in states.items() if st in (HostState.TIMED_OUT, HostState.INTERRUPTED)]
    reports = [runs[h].report for h in group if runs[h].report is not None]  # each host reports its own ranks
    if hung:
        result.outcome, result.reason = "hang", f"did not finish within {timeout:g} s on {', '.join(hung)}"
        return result
    if not reports:
        why = "; ".join(f"{h}: {runs[h].state.value} {runs[h].message}".strip() for h in group
                        if runs[h].state is not HostState.OK)
        result.outcome, result.reason = "error", why or "no report from the pair"
        return result
    result.busbw_gbps = next((r["metrics"]["allreduce/busbw_gbps"] for r in reports
                              if "allreduce/busbw_gbps" in (r.get("metrics") or {})), None)
    bad = [(h, c) for h in group if runs[h].report is not None
           for c in runs[h].report.get("checks") or [] if c.get("status") in ("fail", "error")]
    missing = [h for h in group if runs[h].report is None and runs[h].state is not HostState.OK]
    if bad:
        result.outcome = "wrong"
        result.reason = "; ".join(f"{h}: {c['name']}: {c.get('message', '')}" for h, c in bad)[:300]
    elif missing:
        result.outcome = "error"
        result.reason = "; ".join(f"{h}: {runs[h].state.value} {runs[h].message}".strip() for h in missing)[:300]
    elif result.busbw_gbps is None:
        result.outcome, result.reason = "error", "the report has no allreduce/busbw_gbps"
    return result


def over_ssh(groups: list[tuple], hosts: Mapping[str, Host], artifact: Artifact, rs: VerifySettings,
             options: SshOptions, progress: Progress) -> tuple[dict, bool]:
    """One round's groups at once over SSH: one torchrun per host, each group's rendezvous on its first host; every
    member's :class:`HostRun` by host name, and whether the run was interrupted."""
    group_of = {h: g for g in groups for h in g}

    def rendezvous_for(h: Host) -> dict:
        g = group_of[h.name]
        return {"nnodes": len(g), "node_rank": g.index(h.name), "endpoint": f"{rdzv_addr(hosts[g[0]])}:{rs.rdzv_port}",
                "local_addr": rdzv_addr(h)}

    members = [hosts[h] for g in groups for h in g]
    opts = dataclasses.replace(options, forks=max(options.forks, len(members)))

    installed: dict = {}  # host -> its absolute install directory, as its push found it
    result = run_fleet(members, node_task(artifact, rs, progress.stage, rendezvous_for, installed), opts,
                       desc="pairwise", progress=progress, stop=stop_installed(installed, rs.run_id))
    return {r.host: r for r in host_runs(result)}, result.interrupted


@dataclasses.dataclass(frozen=True)
class PairRunner:
    """How a pairwise run reaches its nodes: ``run(groups, hosts, artifact, settings, options, progress)`` runs one
    round's groups at once and returns every member's HostRun by name and whether the run was interrupted.  Over
    SSH (:data:`OVER_SSH`) or as Slurm jobs (:func:`fleet.slurm.multinode.pair_runner`); ``left_out``: the hosts
    that cannot be paired (a busy or drained Slurm node), each with its error, kept in the summary with its state."""

    via: str  # "ssh" or "slurm", kept in run.json
    run: Callable
    left_out: Mapping = dataclasses.field(default_factory=dict)  # host -> a fleet.outcome.HostError


OVER_SSH = PairRunner("ssh", over_ssh)


def run_round(groups: list[tuple], hosts: Mapping[str, Host], artifact: Artifact, s: VerifySettings,
              options: SshOptions, p: PairwiseSettings, round_no: int, run_dir: Path,
              progress: Progress, runner: PairRunner = OVER_SSH) -> tuple[list[PairResult], bool]:
    """Every group of one round at once; their results and whether the run was interrupted."""
    rs = dataclasses.replace(s, run_id=f"{s.run_id}-r{round_no}", timeout=p.pair_timeout, multinode=True,
                             checks=("collectives",))
    runs, interrupted = runner.run(groups, hosts, artifact, rs, options, progress)
    out = []
    for i, g in enumerate(groups):
        out.append(pair_outcome(g, runs, round_no, p.pair_timeout))
        stopped_members([runs[h] for h in g])  # the pair's records: only a crashed member fails
        sub = run_dir / "pairs" / f"r{round_no}-{i}"
        sub.mkdir(parents=True, exist_ok=True)
        write_run(sub, [runs[h] for h in g], {"run_id": rs.run_id, "round": round_no, "pair": list(g),
                                              "via": runner.via})
    return out, interrupted


def pairwise_fleet(hosts: Iterable[Host], s: VerifySettings, options: SshOptions, p: PairwiseSettings,
                   out_base: str = "reports", pattern: str = "", progress: Progress | bool | None = None,
                   on_started: Callable[[Path], None] | None = None, runner: PairRunner = OVER_SSH) -> FinishedRun:
    """Round 1 (``p.rounds`` times), then re-pairing until every suspect is settled (at most
    :data:`MAX_RETEST_ROUNDS` more rounds); writes the run directory; returns the :class:`FinishedRun` (no host
    records of its own: the pairs are in ``meta``)."""
    everyone = [h.name for h in hosts]
    hosts = [h for h in hosts if h.name not in runner.left_out]  # the hosts that can be paired
    by_name = {h.name: h for h in hosts}
    started = _dt.datetime.now(_dt.timezone.utc)
    run_dir = make_run_dir(out_base, started)
    if on_started:
        on_started(run_dir)
    s = dataclasses.replace(s, run_id=s.run_id or run_dir.name)
    if not isinstance(progress, Progress):
        progress = Progress.auto("pairwise", everyone, progress)
    for name, error in runner.left_out.items():
        progress.stage(name, str(error.state))
    artifact = build_wheel()
    rng = random.Random(p.seed)
    racks = {h.name: str(h.vars.get(RACK_VAR)) for h in hosts if h.vars.get(RACK_VAR) is not None}
    results: list[PairResult] = []
    interrupted = False
    round_no = 0
    for _ in range(p.rounds):
        round_no += 1
        got, interrupted = run_round(pair_up([h.name for h in hosts], rng, racks, p.topology), by_name, artifact, s,
                                     options, p, round_no, run_dir, progress, runner)
        results += got
        if interrupted:
            break
    for _ in range(MAX_RETEST_ROUNDS):
        if interrupted:
            break
        classify(results, p.floor)
        groups = next_groups(results)
        if not groups:
            break
        round_no += 1
        got, interrupted = run_round(groups, by_name, artifact, s, options, p, round_no, run_dir, progress, runner)
        results += got
    classify(results, p.floor)
    meta = {"run_id": s.run_id, "started": started.isoformat(timespec="seconds"),
            "finished": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "interrupted": interrupted, "pattern": pattern, "profile": s.profile, "nproc": s.nproc,
            "checks": ["collectives"], "multinode": True, "via": runner.via,
            "pairwise": {"rounds": p.rounds, "pair_timeout": p.pair_timeout, "floor": p.floor,
                         "topology": p.topology, "hosts": everyone,
                         "left_out": {h: {"state": str(e.state), "message": str(e)}
                                      for h, e in runner.left_out.items()}},
            "pairs": [r.to_dict() for r in results],
            "artifact": {"file": artifact.filename, "sha256_16": artifact.digest}}
    write_run(run_dir, [], meta)
    summary = judge_pairwise(meta)
    write_summary(run_dir, summary)
    return FinishedRun(run_dir, [], meta, summary)


def judge_pairwise(meta: Mapping) -> dict:
    """The ``gpufleet.summary/1`` document of a pairwise run, from run.json's fields alone (pure): per host
    ``pass`` or ``fail`` (a culprit), its pairs; ``pairs`` and ``culprits``; a culprit link fails the run too."""
    pw = meta.get("pairwise") or {}
    results = [PairResult.from_dict(d) for d in meta.get("pairs") or []]
    v = verdict(results)
    culprit_hosts = {c["host"] for c in v.culprits if "host" in c}
    links = [c for c in v.culprits if "link" in c]
    hosts = {}
    left_out = pw.get("left_out") or {}
    for name in pw.get("hosts") or sorted({h for r in results for h in r.hosts}):
        mine = [r for r in results if name in r.hosts]
        figures = [r.busbw_gbps for r in mine if r.status == "pass" and r.busbw_gbps is not None]
        if name in left_out:  # not paired: a busy or drained Slurm node, in its state
            why = state_reason(left_out[name]["state"], left_out[name]["message"])
        elif name in culprit_hosts:
            why = culprit_reason(next(c["evidence"] for c in v.culprits if c.get("host") == name))
        elif any(r.status == "pass" for r in mine):
            why = None
        else:  # only bad pairs, and not enough good partners to tell: not settled
            why = (reason("check", "error", "not settled: " + "; ".join(f"{'+'.join(r.hosts)} {r.status}"
                                                                       for r in mine), name="pairwise")
                   if mine else reason("state", "error", "never paired", state="error"))
        status = "pass" if why is None else why["status"]
        reason_text = "" if why is None else why["message"]
        state = left_out[name]["state"] if name in left_out else "ok" if mine else "error"
        hosts[name] = {"status": status, "state": state, "message": reason_text, "log": None,
                       "gpu_model": None, "gpu_count": None,
                       "failing_checks": [{"name": "pairwise", "status": "fail", "message": reason_text}]
                       if status == "fail" else [], "warning_checks": [], "reasons": [] if why is None else [why],
                       "metrics": {"allreduce/busbw_gbps": {"value": max(figures), "fleet_median": None,
                                                            "fleet_ratio": None, "reference": None,
                                                            "reference_ratio": None}} if figures else {},
                       "straggler": False, "straggler_metrics": [], "regression": False, "regression_metrics": [],
                       "culprit": name in culprit_hosts,
                       "pairs": [results.index(r) for r in mine]}
    recap = Recap({h: e["status"] for h, e in hosts.items()}, extra_failures=len(links))
    interrupted = bool(meta.get("interrupted"))
    counts = recap.to_dict() | {"stragglers": 0, "straggler_hosts": 0, "regressions": 0, "regression_hosts": 0,
                                "pairs": len(results), "culprits": len(v.culprits)}
    return {"schema": SCHEMA, "run_id": meta.get("run_id"), "started": meta.get("started"),
            "finished": meta.get("finished"), "interrupted": interrupted,
            "exit_code": int(ExitCode.INTERRUPTED if interrupted else recap.exit_code), "counts": counts,
            "rule": {"pair_floor": pw.get("floor"), "pair_timeout": pw.get("pair_timeout")},
            "key_figures": ["allreduce/busbw_gbps"], "hosts": hosts, "fleet": {}, "stragglers": [],
            "regressions": [], "baseline": None, "pairs": [r.to_dict() for r in results],
            "culprits": v.culprits, "unsettled": v.suspects}
