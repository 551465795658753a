"""Render a ``gpufleet.summary/1`` document: the terminal table and summary.md.

Both take only the summary dict (so ``invoke report RUN_DIR`` can re-render
from ``summary.json`` or from a fresh :func:`fleet.runs.verdict.judge`).
"""

from __future__ import annotations

from typing import Mapping, Optional

from fleet.findings import render_findings
from fleet.outcome import STATUSES, plural
from fleet.runs.verdict import reasons_of
from fleet.table import render

SHORT_NAMES = {
    "memory/d2d/gbps": "D2D GB/s",
    "memory/h2d/gbps": "H2D GB/s",
    "memory/d2h/gbps": "D2H GB/s",
    "allreduce/busbw_gbps": "AR busbw GB/s",
    "ddp/resnet50/images_per_s": "DDP img/s",
}


def short_name(key: str) -> str:
    """Column header for a metric key: ``matmul/bf16/tflops`` -> ``bf16 TF/s``."""
    if key in SHORT_NAMES:
        return SHORT_NAMES[key]
    parts = key.split("/")
    if len(parts) == 3 and parts[0] == "matmul" and parts[2] == "tflops":
        return f"{parts[1]} TF/s"
    return key


def fmt_value(v: Optional[float]) -> str:
    if v is None:
        return "-"
    if abs(v) >= 1000:
        return f"{v:.0f}"
    if abs(v) >= 100:
        return f"{v:.1f}"
    if abs(v) >= 1:
        return f"{v:.2f}"
    return f"{v:.3g}"


def fmt_ratio(r: Optional[float]) -> str:
    return "-" if r is None else f"{r:.2f}"


def short_model(model: Optional[str], width: int = 18) -> str:
    if not model:
        return "-"
    m = model
    for prefix in ("NVIDIA ", "Tesla "):
        if m.startswith(prefix):
            m = m[len(prefix):]
    return m if len(m) <= width else m[: width - 1] + "…"


def status_label(entry: Mapping) -> str:
    """The host's status as the verdict decided it, with what its reasons add: ``fail/slow`` (a straggler),
    ``fail/regressed`` (slower than its own baseline), or for a host whose run did not end ``ok``:
    ``error (timed_out)``."""
    if entry["state"] not in ("ok", entry["status"]):
        return f"{entry['status']} ({entry['state']})"
    kinds = {r.get("kind") for r in reasons_of(entry)}
    return entry["status"] + ("/slow" if "straggler" in kinds else "") + ("/regressed" if "regression" in kinds else "")


def _figure_cell(summary: Mapping, entry: Mapping, key: str) -> str:
    """``value (ratio to the fleet median)``; the ratio only where there is a fleet to compare with."""
    m = entry.get("metrics", {}).get(key)
    if not m:
        return "-"
    group = summary.get("fleet", {}).get(entry.get("gpu_model"), {}).get("metrics", {}).get(key, {})
    if group.get("n", 0) < 2:
        return fmt_value(m["value"])
    return f"{fmt_value(m['value'])} ({fmt_ratio(m.get('fleet_ratio'))})"


def counts_line(summary: Mapping) -> str:
    """``5 hosts: 3 pass, 1 fail, 1 unreachable; 2 stragglers on 1 host; 1 regression on 1 host; exit code 1``
    (the terminal's last line and the page's counts)."""
    c = summary.get("counts") or {}
    hosts = c.get("hosts", len(summary.get("hosts") or {}))
    statuses = ", ".join(f"{c[s]} {s}" for s in STATUSES if c.get(s))
    parts = [plural(hosts, "host") + (f": {statuses}" if statuses else "")]
    parts.append(f"{plural(c.get('stragglers', 0), 'straggler')} on {plural(c.get('straggler_hosts', 0), 'host')}")
    listed = [r for r in summary.get("regressions") or [] if isinstance(r, Mapping)]
    n_regs = len(listed) or c.get("regressions", 0)
    if n_regs:
        n_hosts = len({r.get("host") for r in listed}) or c.get("regression_hosts", 0)
        parts.append(f"{plural(n_regs, 'regression')} on {plural(n_hosts, 'host')}")
    elif summary.get("baseline") is not None:  # judged against the history, and nothing regressed
        parts.append("0 regressions")
    line = "; ".join(parts) + f"; exit code {summary.get('exit_code', '-')}"
    if summary.get("interrupted"):
        line = "interrupted (Ctrl-C): hosts that had not finished are marked interrupted\n" + line
    return line


def _chunk_columns(fixed_headers, fixed_rows, headers, rows, max_width):
    """Split the figure columns into tables that each fit ``max_width`` (HOST repeated)."""
    tables = []
    start = 0
    first = True
    while start < len(headers) or first:
        base_h = fixed_headers if first else fixed_headers[:1]
        base_r = [r if first else r[:1] for r in fixed_rows]
        end = start
        text = render(base_h, base_r, max_width)
        while end < len(headers):
            cand = render(base_h + headers[start:end + 1],
                          [b + r[start:end + 1] for b, r in zip(base_r, rows)], max_width)
            if max(len(line) for line in cand.splitlines()) > max_width and end > start:
                break
            text = cand
            end += 1
        tables.append(text)
        start = end
        first = False
    return "\n\n".join(tables)


def render_table(summary: Mapping, max_width: int = 120, width: Optional[int] = None) -> str:
    """The terminal verdict: a line per host, stragglers, pairs, regressions, then every reason a host did not pass
    (whole, wrapped to ``width`` on a terminal) and the counts line."""
    hosts = summary["hosts"]
    keys = list(summary.get("key_figures") or [])
    fixed_headers = ["HOST", "STATUS", "MODEL"]
    fixed_rows = [[name, status_label(e), short_model(e.get("gpu_model"))] for name, e in hosts.items()]
    fig_headers = [short_name(k) for k in keys]
    fig_rows = [[_figure_cell(summary, e, k) for k in keys] for e in hosts.values()]
    out = [f"run {summary['run_id']}: figures as value (ratio to the fleet median for the same GPU model)",
           _chunk_columns(fixed_headers, fixed_rows, fig_headers, fig_rows, max_width)]

    ref_keys = [k for k in keys
                if any(e.get("metrics", {}).get(k, {}).get("reference_ratio") is not None for e in hosts.values())]
    ref_rows = []
    for name, e in hosts.items():
        ratios = [e.get("metrics", {}).get(k, {}).get("reference_ratio") for k in ref_keys]
        if any(r is not None for r in ratios):
            ref_rows.append([name, short_model(e.get("gpu_model"))] + [fmt_ratio(r) for r in ratios])
    if ref_rows:
        out.append("\nratio to the reference (achievable) figure for the model:")
        out.append(_chunk_columns(["HOST", "MODEL"], [r[:2] for r in ref_rows],
                                  [short_name(k) for k in ref_keys], [r[2:] for r in ref_rows], max_width))

    # every reason but the stragglers' and regressions' (their tables follow), whole: never clipped below
    problems = render_findings({name: {**e, "reasons": reasons_of(e)} for name, e in hosts.items()}, width,
                               kinds=("state", "check", "report", "culprit"))

    stragglers = summary.get("stragglers") or []
    if stragglers:
        out.append("\nstragglers (ratio = value / median of the same GPU model's hosts, or of the node's GPUs):")
        out.append(render(["HOST", "GPU", "METRIC", "VALUE", "MEDIAN", "RATIO", "Z", "SCOPE"],
                          [_straggler_row(s) for s in stragglers], max_width))
    else:
        out.append("\nstragglers: none")
    pairs = summary.get("pairs")
    if pairs is not None:
        out.append("\npairs (two-node all_reduce; status against the median pair):")
        out.append(render(["ROUND", "HOSTS", "BUSBW GB/s", "STATUS", "REASON"],
                          [[p["round"], "+".join(p["hosts"]), fmt_value(p.get("busbw_gbps")), p["status"],
                            p.get("reason") or ""] for p in pairs], max_width))
        culprits = summary.get("culprits") or []
        out.append("culprits: " + ("none" if not culprits else "; ".join(
            (f"host {c['host']}" if "host" in c else f"link {' <-> '.join(c['link'])}") for c in culprits)))
        for c in culprits:
            out.extend(f"  {c.get('host') or ' <-> '.join(c['link'])}: {e}" for e in c["evidence"])
        if summary.get("unsettled"):
            out.append("not settled (too few good partners to tell): " + ", ".join(summary["unsettled"]))
    regressions = summary.get("regressions") or []
    if regressions:
        out.append("\nregressions (ratio = value / the host's own baseline: the median of its last passing runs):")
        out.append(render(REGRESSION_HEADERS, [_regression_row(r) for r in regressions], max_width))
    out.append("\n" + counts_line(summary))
    text = "\n".join(_clip(line, max_width) for line in "\n".join(out).splitlines())
    skipped = render_findings({name: {"status": e.get("status"), "reasons": [
        {"kind": "check", "status": "skipped", "name": c["name"], "message": c["message"]}
        for c in e.get("skipped_stages") or []]} for name, e in hosts.items()}, width)
    if problems or skipped:  # before the counts line, unclipped
        head, counts = text.rsplit("\n", 1)
        text = "\n".join([head, *(["problems (worst host first):", *problems] if problems else []),
                          *(["not run (stages the profile holds that could not run here; not asked for):", *skipped]
                            if skipped else []), "", counts])
    return text


def _straggler_row(s: Mapping) -> list:
    return [s["host"], s.get("gpu") or "-", s["metric"], fmt_value(s["value"]), fmt_value(s["median"]),
            fmt_ratio(s["ratio"]), "MAD 0" if s.get("z") is None else f"{s['z']:.1f}", s["scope"]]


REGRESSION_HEADERS = ["HOST", "GPU", "METRIC", "VALUE", "BASELINE", "RATIO", "RUNS"]


def _regression_row(r: Mapping) -> list:
    return [r["host"], r.get("gpu") or "-", r["metric"], fmt_value(r["value"]), fmt_value(r["baseline"]),
            fmt_ratio(r["ratio"]), r.get("runs") if r.get("runs") is not None else "-"]


def _clip(line: str, width: int) -> str:
    return line if len(line) <= width else line[: width - 1] + "…"


def _md_escape(s: object) -> str:
    return str(s).replace("|", "\\|").replace("\n", " ")


def _md_table(headers, rows) -> str:
    lines = ["| " + " | ".join(_md_escape(h) for h in headers) + " |",
             "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(_md_escape(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def render_markdown(summary: Mapping) -> str:
    """summary.md: the same content as the terminal table, as markdown."""
    hosts = summary["hosts"]
    keys = list(summary.get("key_figures") or [])
    out = [f"# gpufleet verify run {summary['run_id']}", "",
           f"- started: {summary.get('started') or '-'}",
           f"- finished: {summary.get('finished') or '-'}",
           f"- verdict: {counts_line(summary)}", "",
           "## Hosts", "",
           "Figures: value (ratio to the fleet median for the same GPU model; ratio to the reference "
           "achievable figure where the model is in the reference table).", ""]
    rows = []
    for name, e in hosts.items():
        cells = []
        for k in keys:
            m = e.get("metrics", {}).get(k)
            if not m:
                cells.append("-")
                continue
            ratios = [fmt_ratio(m.get("fleet_ratio"))] if "(" in _figure_cell(summary, e, k) else []
            if m.get("reference_ratio") is not None:
                ratios.append(f"ref {fmt_ratio(m['reference_ratio'])}")
            cells.append(fmt_value(m["value"]) + (f" ({'; '.join(ratios)})" if ratios else ""))
        rows.append([name, status_label(e), e.get("gpu_model") or "-"] + cells)
    out += [_md_table(["Host", "Status", "Model"] + [short_name(k) for k in keys], rows), ""]

    problems = []
    for name, e in hosts.items():
        if e["state"] != "ok" and e.get("message"):
            problems.append([name, e["state"], "-", e["message"]])
        for c in e.get("failing_checks", []):
            problems.append([name, c["status"], c["name"], c["message"]])
    if problems:
        out += ["## Problems", "", _md_table(["Host", "State/status", "Check", "Message"], problems), ""]

    out += ["## Stragglers", ""]
    stragglers = summary.get("stragglers") or []
    if stragglers:
        out.append(_md_table(
            ["Host", "GPU", "Metric", "Value", "Median", "Ratio", "z", "Scope"],
            [_straggler_row(s) for s in stragglers]))
    else:
        out.append("None.")
    out.append("")
    regressions = summary.get("regressions") or []
    if regressions:
        out += ["## Regressions", "", "Against each host's own baseline (the median of its last passing runs).", "",
                _md_table([h.capitalize() for h in REGRESSION_HEADERS], [_regression_row(r) for r in regressions]),
                ""]

    out += ["## Fleet statistics", ""]
    for model, f in summary.get("fleet", {}).items():
        out += [f"### {model} ({plural(len(f['hosts']), 'host')})", ""]
        out.append(_md_table(
            ["Metric", "n", "Median", "Min", "Max", "MAD", "Better"],
            [[k, s["n"], fmt_value(s["median"]), fmt_value(s["min"]), fmt_value(s["max"]), fmt_value(s["mad"]),
              "higher" if s.get("higher_is_better", True) else "lower"] for k, s in f["metrics"].items()]))
        out.append("")
    return "\n".join(out)
