"""The fleet verdict: per-host status, fleet statistics, stragglers, exit code.

Pure functions over data: no I/O, no SSH, no torch.  The input is one
:class:`fleet.runs.record.HostRun` per host (its report already validated);
the output of :func:`judge` is the ``summary.json`` document (schema
``gpufleet.summary/1``, documented in ``docs/summary-schema.md``).  ``invoke
verify`` and ``invoke report`` both call :func:`judge`, so a run directory
re-judged gives the verdict the run printed.

Metrics
-------
A node report's ``metrics`` are flat ``<test>/<variant>/<unit>`` keys,
optionally followed by ``:<device>`` (``gpu0``, ``cpu1``, ``rank3``: any
``:<letters><digits>``).  :func:`split_key` separates the two.

- **Host figure** of a base key: the un-suffixed value when the report has
  one, else the *worst* of the host's per-device values (min for
  higher-is-better metrics, max for lower-is-better).  Synchronous training is
  paced by a node's slowest GPU, so the worst device is what the node
  delivers; the intra-node comparison then names that GPU.  When a base key
  has ``gpuN`` devices and other kinds, only the GPUs count.
- **Direction** (:func:`higher_is_better`): everything is higher-is-better
  unless the key's unit is a time (``ms``, ``us``, ``ns``, ``s``, ``sec``,
  ``seconds``, ...) or a segment says ``latency``/``time``/``duration``; a
  rate such as ``images_per_s`` is higher-is-better, a time per unit such as
  ``ms_per_step`` is lower-is-better.

Straggler rule
--------------
For every host figure, among the hosts whose report names the same GPU model
(:func:`gpu_model`; CPU-only hosts group as ``"cpu"``), and for every base key
among one node's devices of one kind (``scope: "node"``):

- at least ``MIN_VALUES`` (3) values are needed to judge; with two values the
  median is their mean and it cannot tell which one is slow, so nothing is
  flagged (the z-score of either of two values is always +-0.6745, so the rule
  could not flag one anyway; the floor alone is not used for pairs either);
- ``median`` and ``MAD`` (median absolute deviation) over the group;
  modified z-score ``z = 0.6745 * (x - median) / MAD``;
- a higher-is-better value is slow when ``z < -3.5`` **and**
  ``x < 0.9 * median``; a lower-is-better one when ``z > 3.5`` **and**
  ``x > median / 0.9`` (the same 10 % loss of speed);
- when ``MAD == 0`` (more than half the group identical) the z-score is
  undefined (reported as ``null``) and the relative floor alone decides;
- groups whose median is not positive are not judged.

Status, reasons and exit code
-----------------------------
A host's status is decided here, once, with its reasons (:func:`host_reasons`,
:func:`fleet.status.final_status`): for a run that ended ``ok``, the worst of its
checks that did not pass, its report's own status, and ``fail`` for each
straggler or regression record naming it; else the status
:func:`fleet.outcome.status_for` gives its state.  The history, the alerts,
slurm-sync, JUnit, Prometheus and the table read ``status`` and ``reasons`` and
never decide again.  The exit code is :class:`fleet.outcome.Recap`'s over those
statuses: 0 when every host is ``pass`` or ``warn`` (warn counts as a pass, as
verify's own exit code does), else 1.  An empty run is 1 (nothing was verified).

Regression rule
---------------
Against the host's own past (:mod:`fleet.history.baseline`, carried in run.json's ``baseline``): a metric of
its report below ``threshold`` (0.9) of the median of its last passing runs (at least 3) is a regression
(:func:`find_regressions`).  This sees what the straggler rule cannot: the whole fleet slowing down at once.
"""

from __future__ import annotations

import importlib
from statistics import median
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence, Union

from fleet.outcome import ExitCode, HostState, Recap
from fleet.runs.metrics import device_kind, higher_is_better, key_figures, number, split_key
from fleet.runs.record import HostRun
from fleet.status import check_reasons, final_status, reason, state_reason
from verify.contract import NOT_ASKED, stage_check
from verify.status import FAIL, severity, worst

SCHEMA = "gpufleet.summary/1"

Z_THRESHOLD = 3.5
FLOOR = 0.9
MIN_VALUES = 3
Z_FACTOR = 0.6745

# --------------------------------------------------------------------------- report fields


def gpu_model(report: Optional[Mapping]) -> str:
    """The GPU model a report ran on (its first GPU's name), or ``"cpu"`` for a node without GPUs."""
    names = ((report or {}).get("env") or {}).get("gpu_names")
    if isinstance(names, list) and names and isinstance(names[0], str) and names[0].strip():
        return " ".join(names[0].split())
    return "cpu"


def gpu_count(report: Optional[Mapping]) -> int:
    n = number(((report or {}).get("env") or {}).get("gpu_count"))
    return int(n) if n is not None else 0


def _checks(checks: Iterable[Mapping], statuses: Sequence[str]) -> list:
    return [{"name": c["name"], "status": c["status"], "message": c["message"]}
            for c in checks if c["status"] in statuses]


def host_figures(report: Optional[Mapping]) -> tuple:
    """``(figures, devices)`` of a report's metrics.

    ``figures``: base key -> host figure (see the module docstring).
    ``devices``: ``(base key, device kind)`` -> {device: value}, for the intra-node comparison.
    """
    metrics = report.get("metrics") if isinstance(report, Mapping) else None
    plain: dict = {}
    devices: dict = {}
    for key, raw in (metrics.items() if isinstance(metrics, Mapping) else ()):
        value = number(raw)
        if value is None or not isinstance(key, str):
            continue
        base, dev = split_key(key)
        if dev is None:
            plain[base] = value
        else:
            devices.setdefault((base, device_kind(dev)), {})[dev] = value
    figures = dict(plain)
    by_base: dict = {}
    for (base, kind), values in devices.items():
        by_base.setdefault(base, {})[kind] = values
    for base, kinds in by_base.items():
        if base in figures:
            continue
        values = kinds["gpu"] if "gpu" in kinds else {d: v for vs in kinds.values() for d, v in vs.items()}
        figures[base] = (max if not higher_is_better(base) else min)(values.values())
    return figures, devices


# --------------------------------------------------------------------------- statistics


def stats(values: Sequence[float]) -> dict:
    """``n``, ``median``, ``min``, ``max``, ``mad`` (median absolute deviation) of ``values``."""
    med = median(values)
    return {"n": len(values), "median": med, "min": min(values), "max": max(values),
            "mad": median(abs(v - med) for v in values)}


def modified_z(value: float, med: float, mad: float) -> Optional[float]:
    """``0.6745 * (value - median) / MAD``; None when MAD is 0."""
    if mad <= 0:
        return None
    return Z_FACTOR * (value - med) / mad


def is_slow(value: float, med: float, mad: float, higher_better: bool = True,
            z_threshold: float = Z_THRESHOLD, floor: float = FLOOR) -> bool:
    """The straggler test for one value against its group's median and MAD."""
    if med <= 0:
        return False
    if higher_better:
        below = value < floor * med
    else:
        below = value > med / floor
    if not below:
        return False
    z = modified_z(value, med, mad)
    if z is None:
        return True
    return z < -z_threshold if higher_better else z > z_threshold


def find_stragglers(values: Mapping[str, float], metric: str, min_values: int = MIN_VALUES) -> list:
    """``[(name, value, median, ratio, z)]`` for the slow members of one group (name -> value)."""
    if len(values) < min_values:
        return []
    st = stats(list(values.values()))
    hib = higher_is_better(metric)
    out = []
    for name, v in values.items():
        if is_slow(v, st["median"], st["mad"], hib):
            z = modified_z(v, st["median"], st["mad"])
            out.append((name, v, st["median"], v / st["median"], z))
    return out


def _round(v: Optional[float], digits: int = 4) -> Optional[float]:
    return None if v is None else round(v, digits)


# --------------------------------------------------------------------------- reference figures

ReferenceArg = Union[None, Callable[[str], Optional[dict]], Mapping[str, Mapping]]


def default_reference() -> Optional[Callable[[str], Optional[dict]]]:
    """``verify.reference.lookup`` (pure, no torch), or None when verify/ is not importable."""
    try:
        return importlib.import_module("verify.reference").lookup
    except ImportError:
        return None


def reference_figures(ref: Optional[Mapping]) -> dict:
    """Metric base key -> ``{"achievable": x, "peak": y}`` from one model's reference entry.

    Accepts ``verify.reference.lookup``'s shape (``matmul_tflops`` per dtype,
    ``memory_gbps`` for ``memory/d2d/gbps``, ``pcie_gbps`` for
    ``memory/h2d/gbps`` and ``memory/d2h/gbps``) or a plain mapping
    base key -> number (taken as the achievable figure) or ``{"achievable", "peak"}``.
    """
    if not isinstance(ref, Mapping):
        return {}
    out: dict = {}

    def put(key, fig):
        if isinstance(fig, Mapping):
            ach = number(fig.get("achievable"))
            if ach is None:
                ach = number(fig.get("peak"))
            if ach is not None and ach > 0:
                out[key] = {"achievable": ach, "peak": number(fig.get("peak"))}
        else:
            n = number(fig)
            if n is not None and n > 0:
                out[key] = {"achievable": n, "peak": None}

    structured = False
    if isinstance(ref.get("matmul_tflops"), Mapping):
        structured = True
        for dt, fig in ref["matmul_tflops"].items():
            put(f"matmul/{dt}/tflops", fig)
    if "memory_gbps" in ref:
        structured = True
        put("memory/d2d/gbps", ref["memory_gbps"])
    if "pcie_gbps" in ref:
        structured = True
        put("memory/h2d/gbps", ref["pcie_gbps"])
        put("memory/d2h/gbps", ref["pcie_gbps"])
    if not structured:
        for key, fig in ref.items():
            if isinstance(key, str) and "/" in key:
                put(split_key(key)[0], fig)
    return out


def _resolve_reference(reference: ReferenceArg) -> Callable[[str], Optional[dict]]:
    if reference is None:
        reference = default_reference()
        if reference is None:
            return lambda model: None
    if callable(reference):
        return reference
    if isinstance(reference, Mapping):
        return lambda model: reference.get(model)
    raise TypeError(f"reference must be a callable, a mapping or None, not {type(reference).__name__}")


# --------------------------------------------------------------------------- the summary


def find_regressions(host: str, metrics: Mapping[str, Any], baseline: Optional[Mapping]) -> list:
    """A host's regressions against its own baseline (``baseline``: run.json's ``baseline`` document, see
    :mod:`fleet.history.baseline`): every metric of its report whose key the baseline has, at less than
    ``threshold`` of it (a lower-is-better one: above ``baseline / threshold``).  Records
    ``{host, gpu, metric, value, baseline, ratio, runs}``; ``ratio`` is value / baseline."""
    if not isinstance(baseline, Mapping):
        return []
    figures = (baseline.get("hosts") or {}).get(host) or {}
    threshold = float(baseline.get("threshold") or FLOOR)
    out = []
    for key, raw in sorted(metrics.items()):
        value, base = number(raw), figures.get(key)
        if value is None or not isinstance(base, Mapping) or not number(base.get("value")):
            continue
        ref = float(base["value"])
        if ref <= 0:
            continue
        metric, device = split_key(key)
        slower = value < threshold * ref if higher_is_better(metric) else value > ref / threshold
        if slower:
            out.append({"host": host, "gpu": device, "metric": metric, "value": value, "baseline": ref,
                        "ratio": _round(value / ref), "runs": base.get("runs")})
    return out


def straggler_reason(s: Mapping) -> dict:
    """The reason a straggler record gives its host."""
    label = s["metric"] + (f":{s['gpu']}" if s.get("gpu") else "")
    return reason("straggler", "fail", f"straggler ({s['scope']}): {label} {s['value']} is {s['ratio']} x the median "
                                       f"{s['median']} (z {s['z']})", metric=label, scope=s["scope"])


def regression_reason(r: Mapping) -> dict:
    """The reason a regression record gives its host."""
    label = r["metric"] + (f":{r['gpu']}" if r.get("gpu") else "")
    return reason("regression", "fail", f"regression: {label} {r['value']} is {r['ratio']} x its baseline "
                                        f"{r['baseline']} (median of its last {r['runs']} passing runs)", metric=label)


def culprit_reason(evidence: Iterable[str]) -> dict:
    """The reason of a pairwise run's culprit host (bad with every partner; ``evidence``: the pairs' lines)."""
    return reason("culprit", "fail", "culprit: bad with every partner: " + "; ".join(evidence))


def host_reasons(run: HostRun) -> list:
    """The reasons a host's own run gives (before the fleet's findings): its state when the run did not end
    ``ok``; else its checks that did not pass, and its report's own status when that is worse than them."""
    if run.state is not HostState.OK:
        return [state_reason(run.state, run.message)]
    out = check_reasons(run.checks)
    own = run.status
    if severity(own) > severity(worst(r["status"] for r in out)):
        out.append(reason("report", own, f"the node's report says {own}"))
    return out


def profile_reasons(report: Optional[Mapping], profile: Optional[str]) -> list:
    """A node report of another profile than the run asked for (a stale install, a hand-run verify) is an error of
    that host: its figures are not the ones the run compares."""
    if report is None or not profile or report.get("profile") in (None, profile):
        return []
    return [reason("report", "error", f"the node's report is of profile {report.get('profile')!r}, the run asked "
                                      f"for {profile!r}")]


def reasons_of(entry: Mapping) -> list:
    """A summary host entry's reasons; for an entry written without them (an older gpufleet), what its
    ``failing_checks``, ``warning_checks`` and state say, so that readers need no second rule."""
    if isinstance(entry.get("reasons"), list):
        return entry["reasons"]
    if entry.get("state") not in (None, "ok"):
        return [reason("state", str(entry.get("status")), str(entry.get("message") or entry["state"]),
                       state=entry["state"])]
    return check_reasons(list(entry.get("failing_checks") or []) + list(entry.get("warning_checks") or []))


def judge(runs: Iterable[HostRun], meta: Mapping[str, Any], reference: ReferenceArg = None) -> dict:
    """The ``gpufleet.summary/1`` document for one run (see ``docs/summary-schema.md``).

    ``meta``: run.json's fields (``run_id``, ``started``, ``finished``,
    ``interrupted``).  An interrupted run exits 130 whatever its hosts say.
    ``reference``: ``lookup(gpu_model) -> dict | None`` (default:
    ``verify.reference.lookup`` when importable), or a mapping model -> figures;
    pass ``{}`` for no reference ratios.  ``meta["baseline"]`` (when the run had a history): each host's
    own baseline, against which :func:`find_regressions` judges its metrics.
    """
    runs = list(runs)
    lookup = _resolve_reference(reference)

    hosts: dict = {}
    figures: dict = {}      # host -> base -> value
    devices: dict = {}      # host -> (base, kind) -> {device: value}
    models: dict = {}       # host -> model
    regressions: list = []
    for run in runs:
        report = run.report
        model = gpu_model(report) if report is not None else None
        entry = {
            "status": run.status,
            "state": run.state.value,
            "message": run.message,
            "log": run.log,
            "gpu_model": model,
            "gpu_count": gpu_count(report) if report is not None else None,
            "failing_checks": _checks(run.checks, ("fail", "error")),
            "warning_checks": _checks(run.checks, ("warn",)),
            "skipped_stages": _checks([c for c in run.checks if c["name"].startswith(stage_check(""))
                                       and NOT_ASKED not in c["message"]], ("skip",)),
            "metrics": {},
            "straggler": False,
            "straggler_metrics": [],
            "regression": False,
            "regression_metrics": [],
            "reasons": host_reasons(run) + profile_reasons(report, meta.get("profile")),
        }
        if run.state is HostState.OK and report is not None:
            for r in find_regressions(run.host, report.get("metrics") or {}, meta.get("baseline")):
                regressions.append(r)
                entry["regression"] = True
                entry["regression_metrics"].append(r["metric"] + (f":{r['gpu']}" if r["gpu"] else ""))
                entry["reasons"].append(regression_reason(r))
            figs, devs = host_figures(report)
            figures[run.host] = figs
            devices[run.host] = devs
            models[run.host] = model
        hosts[run.host] = entry

    # fleet statistics and fleet-scope stragglers, per GPU model, over the hosts whose own run did not fail: a
    # failed or errored run's figure is no measure of the fleet (it gets its ratio to the healthy hosts' median)
    fleet: dict = {}
    stragglers: list = []
    failed_own = {h for h, e in hosts.items() if e["state"] != "ok" or any(
        r["kind"] in ("check", "report") and severity(r["status"]) >= severity(FAIL) for r in e["reasons"])}
    for model in sorted(set(models.values())):
        members = [h for h in hosts if models.get(h) == model]
        ref_figs = reference_figures(lookup(model)) if model != "cpu" else {}
        metric_stats: dict = {}
        keys = sorted({k for h in members for k in figures[h]})
        for key in keys:
            every = {h: figures[h][key] for h in members if key in figures[h]}
            group = {h: v for h, v in every.items() if h not in failed_own}
            st = stats(list((group or every).values()))
            st.update(higher_is_better=higher_is_better(key))
            metric_stats[key] = st
            for h, v, med, ratio, z in find_stragglers(group, key):
                stragglers.append({"host": h, "metric": key, "value": v, "median": med, "ratio": _round(ratio),
                                   "z": _round(z, 2), "scope": "fleet", "gpu_model": model})
            for h, v in every.items():
                ref = ref_figs.get(key)
                hosts[h]["metrics"][key] = {
                    "value": v,
                    "fleet_median": st["median"],
                    "fleet_ratio": _round(v / st["median"]) if st["median"] > 0 else None,
                    "reference": ref,
                    "reference_ratio": _round(v / ref["achievable"]) if ref else None,
                }
        fleet[model] = {"hosts": members, "metrics": metric_stats,
                        "reference": ref_figs or None}

    # node-scope stragglers: one node's devices of one kind, per base key
    for h in hosts:
        for (base, _kind), values in sorted(devices.get(h, {}).items()):
            for dev, v, med, ratio, z in find_stragglers(values, base):
                stragglers.append({"host": h, "metric": base, "value": v, "median": med, "ratio": _round(ratio),
                                   "z": _round(z, 2), "scope": "node", "gpu": dev, "gpu_model": models[h]})

    for s in stragglers:
        entry = hosts[s["host"]]
        entry["straggler"] = True
        label = s["metric"] + (f":{s['gpu']}" if s.get("gpu") else "")
        if label not in entry["straggler_metrics"]:
            entry["straggler_metrics"].append(label)
        entry["reasons"].append(straggler_reason(s))

    # the one decision: each host's final status from its reasons (a straggler or a regression fails it)
    for entry in hosts.values():
        entry["status"] = final_status(entry["state"], entry["reasons"])

    recap = Recap({h: e["status"] for h, e in hosts.items()})
    interrupted = bool(meta.get("interrupted"))
    count_doc = recap.to_dict()
    count_doc["stragglers"] = len(stragglers)
    count_doc["straggler_hosts"] = sum(1 for e in hosts.values() if e["straggler"])
    count_doc["regressions"] = len(regressions)
    count_doc["regression_hosts"] = sum(1 for e in hosts.values() if e["regression"])
    baseline = meta.get("baseline") if isinstance(meta.get("baseline"), Mapping) else None

    return {
        "schema": SCHEMA,
        "run_id": meta.get("run_id"),
        "started": meta.get("started"),
        "finished": meta.get("finished"),
        "profile": meta.get("profile"),
        "interrupted": interrupted,
        "exit_code": int(ExitCode.INTERRUPTED if interrupted else recap.exit_code),
        "counts": count_doc,
        "rule": {"z_threshold": Z_THRESHOLD, "floor": FLOOR, "min_values": MIN_VALUES,
                 "host_figure": "worst device (min, or max for lower-is-better); un-suffixed value if present"},
        "key_figures": key_figures(k for f in figures.values() for k in f),
        "hosts": hosts,
        "fleet": fleet,
        "stragglers": stragglers,
        "regressions": regressions,
        "baseline": None if baseline is None else {k: baseline.get(k) for k in
                                                   ("threshold", "window", "min_runs", "profile")},
    }


def exit_code(summary: Mapping) -> int:
    """The run's exit code, as recorded in a summary."""
    return int(summary["exit_code"])
