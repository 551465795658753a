"""``summary.html``: a verify run's verdict as one self-contained page, for people.

:func:`render_html` is pure (a ``gpufleet.summary/1`` document in, text out); :func:`write_summary_html`
writes it atomically into the run directory.  The page opens offline from disk: inline CSS, no script,
no URL of any kind; plots are PNG images inlined as ``data:`` URIs.

- a header: run id, start and end, exit code, the counts line;
- the hosts table: status, state, GPU model and count, each key figure with its ratio to the fleet
  median of the same GPU model (and to the reference figure), straggler and regression marks, failing
  and warning checks;
- the stragglers table and the regressions table, with their evidence (value, median or baseline, ratio);
- plots (:mod:`fleet.outputs.plots`, matplotlib: the optional extra ``gpufleet[report]``): per key figure, the
  fleet's distribution per GPU model of the hosts that did not fail (:mod:`fleet.outputs.distribution`: failed
  and errored hosts are crosses beside it, in no median; a model of fewer than three such hosts has none and the
  table under the plot says so), with a table of each model's hosts, median and the hosts left out; per host with
  two runs or more of a metric, a small trend per metric over the runs (:mod:`fleet.outputs.trends`).  Without
  matplotlib the page says so in one line and keeps every table;
- under sustained load (the nightly and acceptance profiles' burn, only when a host's report has its series): per
  host, the burn's throughput over time (a line per device and dtype) with the SM clock, temperature and power
  sampled meanwhile, a failing or warning device in the straggler or regression colour; under it a table of the
  summary figures (drawn without matplotlib too), each figure tinted when it is what made the burn fail or warn
  (:func:`fleet.outputs.series.burn_marks`).  The series are in the hosts' reports, not in the summary:
  :func:`series_checks` picks them out (pure), :func:`write_summary_html` reads the reports from the run
  directory (:func:`read_host_reports`, a missing or unreadable one: no series for that host).

Every string that comes from the summary (host names, messages, check names) is escaped.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Mapping, Optional, Sequence

from fleet.jsonio import write_text_atomic
from fleet.outcome import plural
from fleet.outputs import distribution, plots, trends as trend_data
from fleet.outputs.flags import flags, is_regressed, model_label, regression_labels, regressions
from fleet.runs.metrics import number
from fleet.outputs.palette import (EXCLUDED_COLOUR, HOST_COLOUR, REGRESSION_COLOUR, STATUS_COLOURS,
                                   STRAGGLER_COLOUR)
from fleet.outputs.markup import esc, plot, table
from fleet.outputs.plots import INSTALL_NOTE
from fleet.outputs.series import read_host_reports, series_checks
from fleet.outputs.sustained_html import sustained_section
from fleet.runs.render import counts_line, fmt_ratio, fmt_value, short_name

FILENAME = "summary.html"
# Trend plots drawn at most (one image per host): hosts with a straggler, a regression or a failing
# status first, then the others in run order.  The rest are in ``gpufleet history``.
MAX_TREND_HOSTS = 64
# Hosts drawn under sustained load (a figure and a table each): those with a failing or warning burn or telemetry
# check, or a failing status, first.  Fewer than the trends: each figure is up to four panels of lines.
MAX_SUSTAINED_HOSTS = 24
MAX_LEFT_OUT = 10  # hosts named under a distribution as left out of it; the rest counted

STATUS_CSS = "\n".join(f".st-{s} {{ color: {fg}; background: {bg}; }}" for s, (fg, bg) in STATUS_COLOURS.items())

CSS = f"""
body {{ font: 14px/1.45 system-ui, "DejaVu Sans", "Helvetica Neue", Arial, sans-serif; color: #212529;
       margin: 24px; background: #fff; }}
h1 {{ font-size: 22px; margin: 0 0 8px; }}
h2 {{ font-size: 17px; margin: 28px 0 8px; border-bottom: 1px solid #dee2e6; padding-bottom: 4px; }}
h3 {{ font-size: 15px; margin: 18px 0 6px; }}
table {{ border-collapse: collapse; margin: 4px 0 8px; }}
th, td {{ padding: 4px 8px; border-bottom: 1px solid #dee2e6; text-align: left; vertical-align: top; }}
th {{ background: #f1f3f5; font-weight: 600; white-space: nowrap; }}
td.num, th.num {{ text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }}
table.meta th {{ background: none; text-align: left; padding-left: 0; }}
table.meta td, table.meta th {{ border: none; padding-top: 1px; padding-bottom: 1px; }}
.scroll {{ overflow-x: auto; }}
.note {{ color: #495057; margin: 4px 0; }}
.sub {{ display: block; color: #6c757d; font-size: 12px; }}
.badge {{ display: inline-block; padding: 0 7px; border-radius: 9px; font-size: 12px; font-weight: 600; }}
.verdict {{ font-size: 15px; padding: 2px 10px; }}
{STATUS_CSS}
.badge.straggler {{ color: #fff; background: {STRAGGLER_COLOUR}; }}
.badge.regression {{ color: #fff; background: {REGRESSION_COLOUR}; }}
td.slow {{ background: #fff4e6; box-shadow: inset 3px 0 0 {STRAGGLER_COLOUR}; }}
td.regressed {{ background: #f3f0ff; box-shadow: inset -3px 0 0 {REGRESSION_COLOUR}; }}
td.slow.regressed {{ background: #fff4e6;
                     box-shadow: inset 3px 0 0 {STRAGGLER_COLOUR}, inset -3px 0 0 {REGRESSION_COLOUR}; }}
td.gpus {{ white-space: nowrap; }}
tr.has-detail td {{ border-bottom: none; }}
tr.detail td {{ padding-top: 0; font-size: 13px; }}
th.fig {{ white-space: normal; min-width: 4.5em; }}
.check {{ margin: 0 0 2px; }}
.check .name {{ font-family: "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 12px; }}
.check.fail .name, .check.error .name {{ color: #cf222e; }}
.check.warn .name {{ color: #9a6700; }}
.label {{ display: block; font-size: 12px; color: #495057; }}
tr.interrupted td {{ color: #6c757d; }}
.plots {{ display: flex; flex-wrap: wrap; gap: 12px; }}
figure {{ margin: 0 0 8px; }}
figure img {{ display: block; max-width: 100%; height: auto; border: 1px solid #e9ecef; }}
figcaption {{ font-size: 12px; color: #495057; }}
div.sustained {{ margin: 0 0 20px; }}
div.dist {{ max-width: 100%; }}
table.groups {{ font-size: 12px; max-width: 560px; }}
table.groups td {{ white-space: normal; }}
.left-out {{ color: {EXCLUDED_COLOUR}; }}
footer {{ margin-top: 32px; font-size: 12px; color: #6c757d; }}
"""


# --------------------------------------------------------------------------- sections


def _header(summary: Mapping) -> str:
    code = summary.get("exit_code")
    if summary.get("interrupted"):
        verdict, cls = "INTERRUPTED", "error"
    elif code == 0:
        verdict, cls = "PASS", "pass"
    else:
        verdict, cls = "FAIL", "fail"
    rows = [("started", summary.get("started") or "-"), ("finished", summary.get("finished") or "-"),
            ("exit code", "-" if code is None else code), ("counts", counts_line(summary))]
    out = [f'<h1>gpufleet verify run <span id="run-id">{esc(summary.get("run_id") or "-")}</span> '
           f'<span class="badge verdict st-{cls}" id="verdict">{verdict}</span></h1>',
           '<table class="meta" id="meta"><tbody>']
    out += [f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in rows]
    out.append("</tbody></table>")
    if summary.get("interrupted"):
        out.append('<p class="note">Interrupted (Ctrl-C): hosts that had not finished are marked interrupted.</p>')
    return "\n".join(out)


def _figure_cell(summary: Mapping, entry: Mapping, key: str, slow: bool, regressed: bool) -> str:
    """The host figure, ``×`` its ratio to the fleet median (where there is a fleet), ``ref ×`` to the reference."""
    cls = " ".join(["num", "fig"] + (["slow"] if slow else []) + (["regressed"] if regressed else []))
    m = (entry.get("metrics") or {}).get(key)
    if not isinstance(m, Mapping) or number(m.get("value")) is None:
        return f'<td class="{cls}">-</td>'
    group = ((summary.get("fleet") or {}).get(entry.get("gpu_model")) or {}).get("metrics", {}).get(key) or {}
    parts = [esc(fmt_value(m["value"]))]
    if group.get("n", 0) >= 2 and number(m.get("fleet_ratio")) is not None:
        parts.append(f'<span class="sub ratio">×{esc(fmt_ratio(m["fleet_ratio"]))}</span>')
    if number(m.get("reference_ratio")) is not None:
        parts.append(f'<span class="sub ref">ref ×{esc(fmt_ratio(m["reference_ratio"]))}</span>')
    return f'<td class="{cls}">{"".join(parts)}</td>'


def _problems(entry: Mapping) -> list:
    """Markup of why the host did not end ``ok``, then its failing and warning checks."""
    items = []
    if entry.get("state") not in (None, "ok") and entry.get("message"):
        items.append(f'<div class="check error"><span class="name">{esc(entry["state"])}</span>: '
                     f'{esc(entry["message"])}</div>')
    for c in list(entry.get("failing_checks") or ()) + list(entry.get("warning_checks") or ()):
        status = str(c.get("status", "error"))
        items.append(f'<div class="check {esc(status)}"><span class="name">{esc(c.get("name", "?"))}</span> '
                     f'{esc(status)}: {esc(c.get("message", ""))}</div>')
    return items


def _mark_cell(kind: str, labels: Sequence[str], flagged: bool) -> str:
    if not flagged:
        return f'<td class="mark {kind}"></td>'
    # one label a line, breakable after a slash: matmul/bf16/<wbr>tflops:gpu2
    text = "".join(f'<span class="label">{esc(label).replace("/", "/<wbr>")}</span>' for label in labels)
    return f'<td class="mark {kind} flagged"><span class="badge {kind}">{kind}</span>{text}</td>'


def _gpus(entry: Mapping) -> str:
    model, count = entry.get("gpu_model"), entry.get("gpu_count")
    if not model:
        return "-"
    if model == "cpu":
        return "no GPU (CPU)"
    return f"{count} × {model_label(model)}" if isinstance(count, int) and count else model_label(model)


def _hosts_section(summary: Mapping) -> str:
    hosts = summary.get("hosts") or {}
    if not hosts:
        return '<h2>Hosts</h2>\n<p class="note">No host in this run.</p>'
    keys = list(summary.get("key_figures") or [])
    slow, regressed = flags(summary)
    headers = [("Host", ""), ("Status", ""), ("State", ""), ("GPUs", "")]
    headers += [(short_name(k), "num fig") for k in keys]
    headers += [("Straggler", ""), ("Regression", "")]
    rows = []
    for name, e in hosts.items():
        status = str(e.get("status") or "error")
        state = str(e.get("state") or "-")
        cells = [f'<td class="host">{esc(name)}</td>',
                 f'<td class="status"><span class="badge st-{esc(status)}">{esc(status)}</span></td>',
                 f'<td class="state">{esc(state)}</td>',
                 f'<td class="gpus" title="{esc(e.get("gpu_model") or "")}">{esc(_gpus(e))}</td>']
        cells += [_figure_cell(summary, e, k, k in slow.get(name, ()), k in regressed.get(name, ())) for k in keys]
        cells.append(_mark_cell("straggler", [str(x) for x in e.get("straggler_metrics") or ()],
                                bool(e.get("straggler")) or bool(slow.get(name))))
        cells.append(_mark_cell("regression", regression_labels(summary, name, e), is_regressed(summary, name, e)))
        problems = _problems(e)
        cls = f"host-row st-row-{esc(status)}" + (" has-detail" if problems else "")
        rows.append(f'<tr class="{cls}" data-host="{esc(name)}">' + "".join(cells) + "</tr>")
        if problems:
            rows.append(f'<tr class="detail" data-host="{esc(name)}"><td></td>'
                        f'<td class="checks" colspan="{len(headers) - 1}">{"".join(problems)}</td></tr>')
    intro = ('<p class="note">Each figure is the host\'s (its slowest GPU); ×: its ratio to the median of the hosts '
             'with the same GPU model; ref ×: to the reference (achievable) figure for the model. Under a host: '
             'why it did not finish, its failing and warning checks.</p>')
    return '<h2>Hosts</h2>\n' + intro + "\n" + table(headers, rows, "hosts-table")


def _pairs_section(summary: Mapping) -> str:
    """A pairwise run's pairs and culprits (``verify --multinode --pairwise``); empty for other runs."""
    pairs = summary.get("pairs")
    if pairs is None:
        return ""
    culprits = summary.get("culprits") or []
    out = ['<h2>Pairwise isolation</h2>']
    if culprits:
        items = "".join(
            f"<li><b>{esc('host ' + c['host'] if 'host' in c else 'link ' + ' ↔ '.join(c['link']))}</b>: "
            + "; ".join(esc(e) for e in c.get("evidence") or []) + "</li>" for c in culprits)
        out.append(f'<ul id="culprits">{items}</ul>')
    else:
        out.append('<p class="note" id="culprits">No culprit: every host had a good pair.</p>')
    headers = [("Round", "num"), ("Hosts", ""), ("Bus bandwidth GB/s", "num"), ("Status", ""), ("Reason", "")]
    rows = [f'<tr><td class="num">{esc(p.get("round"))}</td><td class="host">{esc(" + ".join(p.get("hosts") or []))}'
            f'</td><td class="num">{esc(fmt_value(number(p.get("busbw_gbps"))))}</td>'
            f'<td class="status"><span class="badge st-{"pass" if p.get("status") == "pass" else "fail"}">'
            f'{esc(p.get("status"))}</span></td>'
            f'<td>{esc(p.get("reason") or "")}</td></tr>' for p in pairs]
    out.append(table(headers, rows, "pairs-table"))
    return "\n".join(out)


def _stragglers_section(summary: Mapping) -> str:
    stragglers = summary.get("stragglers") or []
    out = ['<h2>Stragglers</h2>']
    if not stragglers:
        out.append('<p class="note" id="no-stragglers">None.</p>')
        return "\n".join(out)
    rule = summary.get("rule") or {}
    out.append(f'<p class="note">Slow against the median of the same GPU model\'s hosts (scope fleet) or of the '
               f'node\'s own GPUs (scope node): modified z-score beyond {esc(rule.get("z_threshold", 3.5))} and '
               f'below {esc(rule.get("floor", 0.9))} × the median.</p>')
    headers = [("Host", ""), ("GPU", ""), ("Metric", ""), ("Value", "num"), ("Median", "num"), ("Ratio", "num"),
               ("z", "num"), ("Scope", ""), ("GPU model", "")]
    rows = []
    for s in stragglers:
        z = number(s.get("z"))
        rows.append("<tr>" + "".join([
            f'<td class="host">{esc(s.get("host"))}</td>', f"<td>{esc(s.get('gpu') or '-')}</td>",
            f"<td>{esc(s.get('metric'))}</td>", f'<td class="num">{esc(fmt_value(number(s.get("value"))))}</td>',
            f'<td class="num">{esc(fmt_value(number(s.get("median"))))}</td>',
            f'<td class="num slow">{esc(fmt_ratio(number(s.get("ratio"))))}</td>',
            f'<td class="num">{"MAD 0" if z is None else f"{z:.1f}"}</td>', f"<td>{esc(s.get('scope'))}</td>",
            f"<td>{esc(model_label(s.get('gpu_model')))}</td>"]) + "</tr>")
    out.append(table(headers, rows, "stragglers-table"))
    return "\n".join(out)


def _regressions_section(summary: Mapping) -> str:
    regs = regressions(summary)
    out = ['<h2>Regressions</h2>']
    if regs is None:
        out.append('<p class="note" id="no-regressions">Not judged: this summary has no history to compare with.</p>')
        return "\n".join(out)
    if not regs:
        out.append('<p class="note" id="no-regressions">None.</p>')
        return "\n".join(out)
    out.append('<p class="note">Slower than the host\'s own baseline from its previous runs.</p>')
    headers = [("Host", ""), ("GPU", ""), ("Metric", ""), ("Value", "num"), ("Baseline", "num"), ("Ratio", "num"),
               ("Runs", "num")]
    rows = []
    for r in regs:
        rows.append("<tr>" + "".join([
            f'<td class="host">{esc(r.get("host"))}</td>', f"<td>{esc(r.get('gpu') or '-')}</td>",
            f"<td>{esc(r.get('metric'))}</td>", f'<td class="num">{esc(fmt_value(number(r.get("value"))))}</td>',
            f'<td class="num">{esc(fmt_value(number(r.get("baseline"))))}</td>',
            f'<td class="num regressed">{esc(fmt_ratio(number(r.get("ratio"))))}</td>',
            f'<td class="num">{esc("-" if r.get("runs") is None else r.get("runs"))}</td>']) + "</tr>")
    out.append(table(headers, rows, "regressions-table"))
    return "\n".join(out)


# --------------------------------------------------------------------------- plots


def _left_out(group: distribution.Group) -> str:
    named = "".join(f'<span class="label left-out">{esc(h)} {esc(status)} {esc(fmt_value(v))}</span>'
                    for h, status, v in group.excluded[:MAX_LEFT_OUT])
    more = len(group.excluded) - MAX_LEFT_OUT
    return named + (f'<span class="label">and {esc(plural(more, "more host"))}</span>' if more > 0 else "")


def _groups_table(groups: Sequence[distribution.Group], ident: str) -> str:
    """Per GPU model: the hosts in the distribution (``data-hosts``, a JSON list), their median, the hosts left
    out (failed or errored) and, for a model of too few hosts, that it has no distribution."""
    headers = [("GPU model", ""), ("Hosts", "num"), ("Median", "num"), ("Left out (failed, errored)", "")]
    rows = []
    for g in groups:
        hosts = str(len(g.hosts))
        if not g.drawn:
            values = ", ".join(f"{h} {fmt_value(v)}" for h, v in g.hosts)
            hosts += (f'<span class="sub too-few">too few for a distribution ({distribution.MIN_HOSTS} needed)'
                      f'{esc(": " + values) if values else ""}</span>')
        drawn = json.dumps([h for h, _ in g.hosts] if g.drawn else [])
        rows.append(f'<tr data-model="{esc(g.model)}" data-hosts="{esc(drawn)}">'
                    f'<td title="{esc(g.model)}">{esc(model_label(g.model))}</td><td class="num">{hosts}</td>'
                    f'<td class="num median">{esc(fmt_value(g.median))}</td><td>{_left_out(g)}</td></tr>')
    return table(headers, rows, ident, "groups")


def _distribution_block(mpl, summary: Mapping, key: str, index: int, slow: Mapping, regressed: Mapping) -> str:
    """A key figure's plot (where a GPU model has enough hosts) and the table of its groups."""
    groups = distribution.groups(summary, key)
    drawn = [g for g in groups if g.drawn]
    out = [f'<div class="dist" data-key="{esc(key)}">']
    if not drawn:
        out.append(f'<p class="note no-distribution" id="no-distribution-{index}">{esc(short_name(key))}: no '
                   f'distribution, fewer than '
                   f'{distribution.MIN_HOSTS} hosts of a GPU model that did not fail.</p>')
    elif mpl is not None:
        out.append(plot(lambda: plots.distribution(mpl, key, drawn, slow, regressed), f"{short_name(key)} per host",
                         key, "distribution"))
    out.append(_groups_table(groups, f"distribution-{index}"))
    out.append("</div>")
    return "".join(out)


def _plots_section(summary: Mapping, trends: Optional[Mapping], trend_total: Optional[int] = None) -> str:
    out = ['<h2>Plots</h2>']
    mpl, note = plots.load_matplotlib()
    if mpl is None:
        out.append(f'<p class="note" id="plots-note">{esc(note)}</p>')
        return "\n".join(out)
    slow, regressed = flags(summary)
    keys = list(summary.get("key_figures") or [])
    out.append('<h3 id="distribution">Fleet distribution</h3>')
    if keys:
        out.append(f'<p class="note">A point per host, grouped by GPU model; the dashed line is the median of the '
                   f'model\'s hosts. A host that failed or erred is a cross beside them, in no median; a model '
                   f'needs {distribution.MIN_HOSTS} hosts that did not fail for a distribution.</p>')
        blocks = [_distribution_block(mpl, summary, key, i, slow, regressed) for i, key in enumerate(keys)]
        out.append('<div class="plots">' + "".join(blocks) + "</div>")
    else:
        out.append('<p class="note">No figures: no host returned a report.</p>')
    out.append('<h3 id="trends">Trends</h3>')
    trends = trends if isinstance(trends, Mapping) else {}
    chosen, more = trend_data.trend_hosts(summary, trends, slow, regressed, MAX_TREND_HOSTS, trend_total)
    figures = []
    for host in chosen:
        series = trend_data.host_series(trends[host])
        figures.append(plot(lambda h=host, s=series: plots.trend(mpl, summary, h, s, trend_data.baselines(summary, h),
                                                                  regressed.get(h, set())),
                             f"trends of {host}", f"{host}: this run is the last point", "trend"))
    if figures:
        out.append('<div class="plots">' + "".join(figures) + "</div>")
    else:
        out.append('<p class="note">No history for these hosts yet. A trend needs two runs of a host.</p>')
    if more:
        out.append(f'<p class="note">{plural(more, "more host")} with a history not drawn here: '
                   f'see <code>gpufleet history</code>.</p>')
    return "\n".join(out)


# --------------------------------------------------------------------------- the page


def render_html(summary: Mapping, trends: Optional[Mapping] = None, series: Optional[Mapping] = None,
                trend_total: Optional[int] = None) -> str:
    """``summary.html`` for a ``gpufleet.summary/1`` verdict.

    ``summary`` may carry ``regressions`` (``[{host, gpu, metric, value, baseline, ratio, runs}]``) and, per
    host, ``regression`` and ``regression_metrics``.  ``trends``: ``{host: {metric base key: [[iso time,
    value], ...]}}``, oldest first, this run last (None or empty: no trend plots).  ``series``: ``{host: [burn
    and telemetry checks]}`` (:func:`series_checks` of the hosts' reports; None or empty: no section "Under
    sustained load").  ``trend_total``: how many hosts have a history, when ``trends`` holds only those the page
    draws (:func:`fleet.history.baseline.read_trends`); None: the hosts in ``trends``.
    """
    sustained = sustained_section(summary, series, MAX_SUSTAINED_HOSTS)
    rule = summary.get("rule") or {}
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>gpufleet verify {esc(summary.get('run_id') or '')}</title>",
        f"<style>{CSS}</style>",
        "</head>",
        "<body>",
        '<header id="header">', _header(summary), "</header>",
        "<main>",
        f'<section id="hosts">{_hosts_section(summary)}</section>',
        f'<section id="pairs">{_pairs_section(summary)}</section>' if summary.get("pairs") is not None else "",
        f'<section id="stragglers">{_stragglers_section(summary)}</section>',
        f'<section id="regressions">{_regressions_section(summary)}</section>',
        f'<section id="plots">{_plots_section(summary, trends, trend_total)}</section>',
        f'<section id="sustained">{sustained}</section>' if sustained else "",
        "</main>",
        f'<footer>gpufleet {esc(summary.get("schema") or "")}; straggler rule: modified z-score beyond '
        f'{esc(rule.get("z_threshold", "-"))}, value below {esc(rule.get("floor", "-"))} × the median, at least '
        f'{esc(rule.get("min_values", "-"))} values; host figure: {esc(rule.get("host_figure", "-"))}.</footer>',
        "</body>",
        "</html>",
    ]
    return "\n".join(parts) + "\n"


def write_summary_html(run_dir: str | os.PathLike, summary: Mapping, trends: Optional[Mapping] = None,
                       reports: Optional[Mapping] = None, trend_total: Optional[int] = None) -> Path:
    """Write :func:`render_html` to ``run_dir/summary.html`` atomically; returns the path.

    The series under sustained load come from the hosts' reports (the summary does not carry them): ``reports``
    (``{host: report}``, handed over in memory by a live run), else those in ``run_dir/hosts/`` (a run directory
    rendered again); a host whose report is missing or unreadable has none."""
    if reports is None:
        reports = read_host_reports(run_dir, summary.get("hosts") or {})
    series = series_checks(reports)
    return write_text_atomic(Path(run_dir) / FILENAME, render_html(summary, trends, series, trend_total))


__all__ = ["render_html", "write_summary_html", "series_checks", "read_host_reports", "counts_line", "FILENAME",
           "INSTALL_NOTE", "STRAGGLER_COLOUR", "REGRESSION_COLOUR", "HOST_COLOUR", "EXCLUDED_COLOUR", "STATUS_COLOURS",
           "MAX_TREND_HOSTS", "MAX_SUSTAINED_HOSTS"]
