"""``summary.html``: a verify run's verdict as one self-contained page, for people.

:func:`render_html` is pure (a ``gpufleet.summary/1`` document in, text out); :func:`write_summary_html`
writes it atomically into the run directory.  The page opens offline from disk: inline CSS, no script,
no URL of any kind; plots are PNG images inlined as ``data:`` URIs.

- a header: run id, start and end, exit code, the counts line;
- the hosts table: status, state, GPU model and count, each key figure with its ratio to the fleet
  median of the same GPU model (and to the reference figure), straggler and regression marks, failing
  and warning checks;
- the stragglers table and the regressions table, with their evidence (value, median or baseline, ratio);
- plots, drawn with matplotlib (the optional extra ``gpufleet[report]``): per key figure, the fleet's
  distribution (a point per host, grouped by GPU model, the median of each model, stragglers and
  regressions in colours of their own); per host with a history, a small trend per metric.  Without
  matplotlib the page says so in one line and keeps every table;
- under sustained load (the nightly and acceptance profiles' burn, only when a host's report has its series): per
  host, the burn's throughput over time (a line per device and dtype) with the SM clock, temperature and power
  sampled meanwhile, a failing or warning device in the straggler or regression colour; under it a table of the
  summary figures (drawn without matplotlib too).  The series are in the hosts' reports, not in the summary:
  :func:`series_checks` picks them out (pure), :func:`write_summary_html` reads the reports from the run
  directory (:func:`read_host_reports`, a missing or unreadable one: no series for that host).

Every string that comes from the summary (host names, messages, check names) is escaped.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import io
import json
import math
import os
import re
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Sequence

from fleet.jsonio import write_text_atomic
from fleet.outcome import STATUSES, plural
from fleet.runs.render import fmt_ratio, fmt_value, short_name
from fleet.runs.run_dir import report_path
from fleet.runs.verdict import higher_is_better, split_key
from verify.status import severity

FILENAME = "summary.html"

# One palette for the page and the plots.
HOST_COLOUR = "#1c7ed6"  # an unflagged host
STRAGGLER_COLOUR = "#e8590c"  # a straggler: badge, figure cell, plot point
REGRESSION_COLOUR = "#7048e8"  # a regression: badge, figure cell, plot point
MEDIAN_COLOUR = "#495057"
REFERENCE_COLOUR = "#2b8a3e"
STATUS_COLOURS = {  # status -> (text, background)
    "pass": ("#1a7f37", "#dafbe1"),
    "warn": ("#9a6700", "#fff8c5"),
    "skipped": ("#57606a", "#f6f8fa"),
    "fail": ("#cf222e", "#ffebe9"),
    "error": ("#8250df", "#fbefff"),
    "unreachable": ("#57606a", "#eaeef2"),
}

INSTALL_NOTE = "Plots need matplotlib: pip install 'gpufleet[report]'."
# Trend plots drawn at most (one image per host): hosts with a straggler, a regression or a failing
# status first, then the others in run order.  The rest are in ``gpufleet history``.
MAX_TREND_HOSTS = 64
# Hosts drawn under sustained load (a figure and a table each): those with a failing or warning burn or telemetry
# check, or a failing status, first.  Fewer than the trends: each figure is up to four panels of lines.
MAX_SUSTAINED_HOSTS = 24
# A device's lines under sustained load (none orange or violet: those mark a failing or warning check).
DEVICE_COLOURS = ("#1c7ed6", "#0ca678", "#495057", "#1098ad", "#74b816", "#1864ab", "#2b8a3e", "#868e96")
DTYPE_STYLES = ("-", "--", ":", "-.")
# The telemetry series a report may carry, in panel order: key, name, unit, table header, the check's figure.
TELEMETRY_SERIES = (("sm_mhz", "SM clock", "MHz", "Mean SM MHz", "mean_sm_mhz"),
                    ("temp_c", "temperature", "°C", "Max °C", "max_temp_c"),
                    ("power_w", "power", "W", "Mean W", "mean_power_w"))
DPI = 100

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
footer {{ margin-top: 32px; font-size: 12px; color: #6c757d; }}
"""


# --------------------------------------------------------------------------- small helpers


def _e(value: Any) -> str:
    """``value`` as HTML text (quotes escaped too: it may land in an attribute)."""
    return html.escape("" if value is None else str(value), quote=True)


def _number(value: Any) -> Optional[float]:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _model_label(model: Optional[str]) -> str:
    if not model:
        return "-"
    return model[len("NVIDIA "):] if model.startswith("NVIDIA ") else model


def _base(label: Any) -> str:
    """``matmul/bf16/tflops`` of a mark label ``matmul/bf16/tflops:gpu2``."""
    return split_key(str(label))[0]


def _mark_label(metric: Any, gpu: Any) -> str:
    return f"{metric}:{gpu}" if gpu else str(metric)


def _regressions(summary: Mapping) -> Optional[list]:
    """The regression records; None when the run was not judged against a history (no ``baseline``)."""
    regs = summary.get("regressions")
    if not isinstance(regs, list) or (not regs and summary.get("baseline") is None):
        return None
    return [r for r in regs if isinstance(r, Mapping)]


def _flags(summary: Mapping) -> tuple[dict, dict]:
    """``(slow, regressed)``: host -> set of base keys it straggles / regresses on."""
    slow: dict = {}
    for s in summary.get("stragglers") or ():
        slow.setdefault(s.get("host"), set()).add(s.get("metric"))
    regressed: dict = {}
    for r in _regressions(summary) or ():
        regressed.setdefault(r.get("host"), set()).add(r.get("metric"))
    for host, entry in (summary.get("hosts") or {}).items():
        for label in entry.get("straggler_metrics") or ():
            slow.setdefault(host, set()).add(_base(label))
        for label in entry.get("regression_metrics") or ():
            regressed.setdefault(host, set()).add(_base(label))
    return slow, regressed


def _regression_labels(summary: Mapping, host: str, entry: Mapping) -> list:
    labels = [str(x) for x in entry.get("regression_metrics") or ()]
    for r in _regressions(summary) or ():
        if r.get("host") == host:
            label = _mark_label(r.get("metric"), r.get("gpu"))
            if label not in labels:
                labels.append(label)
    return labels


def _is_regressed(summary: Mapping, host: str, entry: Mapping) -> bool:
    return bool(entry.get("regression")) or bool(_regression_labels(summary, host, entry))


def counts_line(summary: Mapping) -> str:
    """``5 hosts: 3 pass, 1 fail, 1 unreachable; 2 stragglers on 1 host; 1 regression; exit code 1``."""
    c = summary.get("counts") or {}
    hosts = c.get("hosts", len(summary.get("hosts") or {}))
    statuses = ", ".join(f"{c[s]} {s}" for s in STATUSES if c.get(s))
    parts = [plural(hosts, "host") + (f": {statuses}" if statuses else "")]
    parts.append(f"{plural(c.get('stragglers', 0), 'straggler')} on {plural(c.get('straggler_hosts', 0), 'host')}")
    regs = _regressions(summary)
    if regs is not None:
        parts.append(plural(len(regs), "regression"))
    parts.append(f"exit code {summary.get('exit_code', '-')}")
    return "; ".join(parts)


def _table(headers: Sequence[tuple], rows: Iterable[str], table_id: str) -> str:
    """``headers``: (text, css class); ``rows``: ready ``<tr>`` markup."""
    head = "".join(f'<th class="{cls}">{_e(text)}</th>' if cls else f"<th>{_e(text)}</th>" for text, cls in headers)
    return (f'<div class="scroll"><table id="{table_id}">\n<thead><tr>{head}</tr></thead>\n<tbody>\n'
            + "\n".join(rows) + "\n</tbody></table></div>")


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
    out = [f'<h1>gpufleet verify run <span id="run-id">{_e(summary.get("run_id") or "-")}</span> '
           f'<span class="badge verdict st-{cls}" id="verdict">{verdict}</span></h1>',
           '<table class="meta" id="meta"><tbody>']
    out += [f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows]
    out.append("</tbody></table>")
    if summary.get("interrupted"):
        out.append('<p class="note">Interrupted (Ctrl-C): hosts that had not finished are marked interrupted.</p>')
    return "\n".join(out)


def _figure_cell(summary: Mapping, entry: Mapping, key: str, slow: bool, regressed: bool) -> str:
    """The host figure, ``×`` its ratio to the fleet median (where there is a fleet), ``ref ×`` to the reference."""
    cls = " ".join(["num", "fig"] + (["slow"] if slow else []) + (["regressed"] if regressed else []))
    m = (entry.get("metrics") or {}).get(key)
    if not isinstance(m, Mapping) or _number(m.get("value")) is None:
        return f'<td class="{cls}">-</td>'
    group = ((summary.get("fleet") or {}).get(entry.get("gpu_model")) or {}).get("metrics", {}).get(key) or {}
    parts = [_e(fmt_value(m["value"]))]
    if group.get("n", 0) >= 2 and _number(m.get("fleet_ratio")) is not None:
        parts.append(f'<span class="sub ratio">×{_e(fmt_ratio(m["fleet_ratio"]))}</span>')
    if _number(m.get("reference_ratio")) is not None:
        parts.append(f'<span class="sub ref">ref ×{_e(fmt_ratio(m["reference_ratio"]))}</span>')
    return f'<td class="{cls}">{"".join(parts)}</td>'


def _problems(entry: Mapping) -> list:
    """Markup of why the host did not end ``ok``, then its failing and warning checks."""
    items = []
    if entry.get("state") not in (None, "ok") and entry.get("message"):
        items.append(f'<div class="check error"><span class="name">{_e(entry["state"])}</span>: '
                     f'{_e(entry["message"])}</div>')
    for c in list(entry.get("failing_checks") or ()) + list(entry.get("warning_checks") or ()):
        status = str(c.get("status", "error"))
        items.append(f'<div class="check {_e(status)}"><span class="name">{_e(c.get("name", "?"))}</span> '
                     f'{_e(status)}: {_e(c.get("message", ""))}</div>')
    return items


def _mark_cell(kind: str, labels: Sequence[str], flagged: bool) -> str:
    if not flagged:
        return f'<td class="mark {kind}"></td>'
    # one label a line, breakable after a slash: matmul/bf16/<wbr>tflops:gpu2
    text = "".join(f'<span class="label">{_e(label).replace("/", "/<wbr>")}</span>' for label in labels)
    return f'<td class="mark {kind} flagged"><span class="badge {kind}">{kind}</span>{text}</td>'


def _gpus(entry: Mapping) -> str:
    model, count = entry.get("gpu_model"), entry.get("gpu_count")
    if not model:
        return "-"
    if model == "cpu":
        return "no GPU (CPU)"
    return f"{count} × {_model_label(model)}" if isinstance(count, int) and count else _model_label(model)


def _hosts_section(summary: Mapping) -> str:
    hosts = summary.get("hosts") or {}
    if not hosts:
        return '<h2>Hosts</h2>\n<p class="note">No host in this run.</p>'
    keys = list(summary.get("key_figures") or [])
    slow, regressed = _flags(summary)
    headers = [("Host", ""), ("Status", ""), ("State", ""), ("GPUs", "")]
    headers += [(short_name(k), "num fig") for k in keys]
    headers += [("Straggler", ""), ("Regression", "")]
    rows = []
    for name, e in hosts.items():
        status = str(e.get("status") or "error")
        state = str(e.get("state") or "-")
        cells = [f'<td class="host">{_e(name)}</td>',
                 f'<td class="status"><span class="badge st-{_e(status)}">{_e(status)}</span></td>',
                 f'<td class="state">{_e(state)}</td>',
                 f'<td class="gpus" title="{_e(e.get("gpu_model") or "")}">{_e(_gpus(e))}</td>']
        cells += [_figure_cell(summary, e, k, k in slow.get(name, ()), k in regressed.get(name, ())) for k in keys]
        cells.append(_mark_cell("straggler", [str(x) for x in e.get("straggler_metrics") or ()],
                                bool(e.get("straggler")) or bool(slow.get(name))))
        cells.append(_mark_cell("regression", _regression_labels(summary, name, e), _is_regressed(summary, name, e)))
        problems = _problems(e)
        cls = f"host-row st-row-{_e(status)}" + (" has-detail" if problems else "")
        rows.append(f'<tr class="{cls}" data-host="{_e(name)}">' + "".join(cells) + "</tr>")
        if problems:
            rows.append(f'<tr class="detail" data-host="{_e(name)}"><td></td>'
                        f'<td class="checks" colspan="{len(headers) - 1}">{"".join(problems)}</td></tr>')
    intro = ('<p class="note">Each figure is the host\'s (its slowest GPU); ×: its ratio to the median of the hosts '
             'with the same GPU model; ref ×: to the reference (achievable) figure for the model. Under a host: '
             'why it did not finish, its failing and warning checks.</p>')
    return '<h2>Hosts</h2>\n' + intro + "\n" + _table(headers, rows, "hosts-table")


def _pairs_section(summary: Mapping) -> str:
    """A pairwise run's pairs and culprits (``verify --multinode --pairwise``); empty for other runs."""
    pairs = summary.get("pairs")
    if pairs is None:
        return ""
    culprits = summary.get("culprits") or []
    out = ['<h2>Pairwise isolation</h2>']
    if culprits:
        items = "".join(
            f"<li><b>{_e('host ' + c['host'] if 'host' in c else 'link ' + ' ↔ '.join(c['link']))}</b>: "
            + "; ".join(_e(e) for e in c.get("evidence") or []) + "</li>" for c in culprits)
        out.append(f'<ul id="culprits">{items}</ul>')
    else:
        out.append('<p class="note" id="culprits">No culprit: every host had a good pair.</p>')
    headers = [("Round", "num"), ("Hosts", ""), ("Bus bandwidth GB/s", "num"), ("Status", ""), ("Reason", "")]
    rows = [f'<tr><td class="num">{_e(p.get("round"))}</td><td class="host">{_e(" + ".join(p.get("hosts") or []))}'
            f'</td><td class="num">{_e(fmt_value(_number(p.get("busbw_gbps"))))}</td>'
            f'<td class="status"><span class="badge st-{"pass" if p.get("status") == "pass" else "fail"}">'
            f'{_e(p.get("status"))}</span></td>'
            f'<td>{_e(p.get("reason") or "")}</td></tr>' for p in pairs]
    out.append(_table(headers, rows, "pairs-table"))
    return "\n".join(out)


def _stragglers_section(summary: Mapping) -> str:
    stragglers = summary.get("stragglers") or []
    out = ['<h2>Stragglers</h2>']
    if not stragglers:
        out.append('<p class="note" id="no-stragglers">None.</p>')
        return "\n".join(out)
    rule = summary.get("rule") or {}
    out.append(f'<p class="note">Slow against the median of the same GPU model\'s hosts (scope fleet) or of the '
               f'node\'s own GPUs (scope node): modified z-score beyond {_e(rule.get("z_threshold", 3.5))} and '
               f'below {_e(rule.get("floor", 0.9))} × the median.</p>')
    headers = [("Host", ""), ("GPU", ""), ("Metric", ""), ("Value", "num"), ("Median", "num"), ("Ratio", "num"),
               ("z", "num"), ("Scope", ""), ("GPU model", "")]
    rows = []
    for s in stragglers:
        z = _number(s.get("z"))
        rows.append("<tr>" + "".join([
            f'<td class="host">{_e(s.get("host"))}</td>', f"<td>{_e(s.get('gpu') or '-')}</td>",
            f"<td>{_e(s.get('metric'))}</td>", f'<td class="num">{_e(fmt_value(_number(s.get("value"))))}</td>',
            f'<td class="num">{_e(fmt_value(_number(s.get("median"))))}</td>',
            f'<td class="num slow">{_e(fmt_ratio(_number(s.get("ratio"))))}</td>',
            f'<td class="num">{"MAD 0" if z is None else f"{z:.1f}"}</td>', f"<td>{_e(s.get('scope'))}</td>",
            f"<td>{_e(_model_label(s.get('gpu_model')))}</td>"]) + "</tr>")
    out.append(_table(headers, rows, "stragglers-table"))
    return "\n".join(out)


def _regressions_section(summary: Mapping) -> str:
    regs = _regressions(summary)
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
            f'<td class="host">{_e(r.get("host"))}</td>', f"<td>{_e(r.get('gpu') or '-')}</td>",
            f"<td>{_e(r.get('metric'))}</td>", f'<td class="num">{_e(fmt_value(_number(r.get("value"))))}</td>',
            f'<td class="num">{_e(fmt_value(_number(r.get("baseline"))))}</td>',
            f'<td class="num regressed">{_e(fmt_ratio(_number(r.get("ratio"))))}</td>',
            f'<td class="num">{_e("-" if r.get("runs") is None else r.get("runs"))}</td>']) + "</tr>")
    out.append(_table(headers, rows, "regressions-table"))
    return "\n".join(out)


# --------------------------------------------------------------------------- plots


class _Mpl:
    """The parts of matplotlib the plots use, imported on first use (never by importing this module)."""

    def __init__(self) -> None:
        from matplotlib import dates
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.lines import Line2D
        from matplotlib.transforms import blended_transform_factory

        self.dates, self.Canvas, self.Figure, self.Line2D = dates, FigureCanvasAgg, Figure, Line2D
        self.blended = blended_transform_factory

    def figure(self, width: float, height: float):
        fig = self.Figure(figsize=(width, height), dpi=DPI, layout="constrained")
        self.Canvas(fig)  # the Agg canvas: no display, no global backend switch
        return fig

    @staticmethod
    def png(fig) -> tuple[str, int, int]:
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
        data = buf.getvalue()
        width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")  # IHDR
        return base64.b64encode(data).decode("ascii"), width, height


def _load_matplotlib() -> tuple[Optional[_Mpl], str]:
    """``(_Mpl, "")``, or ``(None, the one-line note)`` when matplotlib cannot be imported."""
    try:
        return _Mpl(), ""
    except ImportError:
        return None, INSTALL_NOTE
    except Exception as exc:  # noqa: BLE001 - a broken matplotlib (say, a numpy it was not built for) is none
        return None, f"Plots unavailable: matplotlib failed to import ({type(exc).__name__}: {exc}). {INSTALL_NOTE}"


def _mpl_text(s: Any) -> str:
    """Text for matplotlib: a ``$`` would start mathtext (a host named ``a$b$c`` would render as math)."""
    return str(s).replace("$", r"\$")


def _clip(text: Any, width: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _img(b64: str, width: int, height: int, alt: str, caption: str, cls: str) -> str:
    return (f'<figure class="plot {cls}"><img alt="{_e(alt)}" width="{width}" height="{height}" '
            f'src="data:image/png;base64,{b64}"><figcaption>{_e(caption)}</figcaption></figure>')


def _distribution(mpl: _Mpl, summary: Mapping, key: str, slow: Mapping, regressed: Mapping) -> tuple:
    """One key figure over the fleet: ``(png base64, width, height)``."""
    hosts = summary.get("hosts") or {}
    fleet = summary.get("fleet") or {}
    groups: dict = {}  # model -> [(host, value)]
    for name, e in hosts.items():
        value = _number(((e.get("metrics") or {}).get(key) or {}).get("value"))
        if value is not None:
            groups.setdefault(e.get("gpu_model") or "-", []).append((name, value))
    models = sorted(groups)
    n = sum(len(v) for v in groups.values())
    has_reference = False
    fig = mpl.figure(min(12.0, max(5.8, 3.6 + 0.18 * n + 0.3 * len(models))), 3.3)
    ax = fig.add_subplot()
    xs_ticks, labels = [], []
    points: dict = {"host": [], "straggler": [], "regression": [], "both": []}  # kind -> [(x, value)]
    x = 0
    top = 0.0
    for gi, model in enumerate(models):
        members = groups[model]
        x0 = x
        for name, value in members:
            is_slow, is_reg = key in slow.get(name, ()), key in regressed.get(name, ())
            kind = "both" if is_slow and is_reg else "straggler" if is_slow else "regression" if is_reg else "host"
            points[kind].append((x, value))
            if kind != "host" and n > 40:  # no tick labels: name the flagged ones
                ax.annotate(_mpl_text(_clip(name, 24)), (x, value), xytext=(4, -10), textcoords="offset points",
                            fontsize=7, color=REGRESSION_COLOUR if kind == "regression" else STRAGGLER_COLOUR)
            xs_ticks.append(x)
            labels.append(_mpl_text(_clip(name, 16)))
            top = max(top, value)
            x += 1
        x1 = x - 1
        if gi % 2:
            ax.axvspan(x0 - 0.5, x1 + 0.5, color="#f1f3f5", zorder=0)
        med = _number(((fleet.get(model) or {}).get("metrics") or {}).get(key, {}).get("median"))
        if med is None:
            med = sorted(v for _, v in members)[len(members) // 2]
        ax.hlines(med, x0 - 0.4, x1 + 0.4, colors=MEDIAN_COLOUR, linestyles="--", linewidth=1.2, zorder=4)
        ref = ((fleet.get(model) or {}).get("reference") or {}).get(key)
        ach = _number(ref.get("achievable")) if isinstance(ref, Mapping) else None
        if ach is not None:
            ax.hlines(ach, x0 - 0.4, x1 + 0.4, colors=REFERENCE_COLOUR, linestyles=":", linewidth=1.2, zorder=2)
            has_reference = True
            top = max(top, ach)
        if len(models) > 1:  # from the group's left edge; alternate rows so that narrow groups' labels never meet
            ax.text(x0 - 0.45, 0.985 if gi % 2 == 0 else 0.92, _mpl_text(_model_label(model)),
                    transform=mpl.blended(ax.transData, ax.transAxes), ha="left", va="top", fontsize=7,
                    color=MEDIAN_COLOUR)
        x += 1  # a gap between models
    small, big = (30, 46) if n <= 60 else (10, 40)  # a dense fleet: small points, the flagged ones stand out
    styles = {"host": dict(s=small, color=HOST_COLOUR, marker="o"),
              "straggler": dict(s=big, color=STRAGGLER_COLOUR, marker="o"),
              "regression": dict(s=big, color=REGRESSION_COLOUR, marker="D"),
              "both": dict(s=big, color=STRAGGLER_COLOUR, marker="o", edgecolors=REGRESSION_COLOUR, linewidths=2)}
    for kind, pts in points.items():
        if pts:
            ax.scatter([p[0] for p in pts], [p[1] for p in pts], zorder=3, **styles[kind])
    has = {"straggler": bool(points["straggler"] or points["both"]),
           "regression": bool(points["regression"] or points["both"]), "reference": has_reference}
    ax.set_xlim(-0.8, x - 1.2)
    ax.set_ylim(0, top * (1.28 if len(models) > 1 else 1.15) if top > 0 else 1)
    if n <= 40:
        ax.set_xticks(xs_ticks)
        ax.set_xticklabels(labels, rotation=60 if n > 6 else 0, ha="right" if n > 6 else "center", fontsize=8)
    else:
        ax.set_xticks([])
        ax.set_xlabel(f"{n} hosts, grouped by GPU model", fontsize=8)
    ax.tick_params(axis="y", labelsize=8)
    ax.grid(axis="y", color="#e9ecef", zorder=0)
    ax.set_axisbelow(True)
    title = f"{short_name(key)} per host ({'higher' if higher_is_better(key) else 'lower'} is better)"
    if len(models) == 1:
        title += f", {_model_label(models[0])}"
    ax.set_title(_mpl_text(title), fontsize=10)
    ax.set_ylabel(_mpl_text(key), fontsize=8)
    handles = [mpl.Line2D([], [], marker="o", linestyle="", color=HOST_COLOUR, label="host"),
               mpl.Line2D([], [], linestyle="--", color=MEDIAN_COLOUR, label="median of the GPU model")]
    if has["straggler"]:
        handles.append(mpl.Line2D([], [], marker="o", linestyle="", color=STRAGGLER_COLOUR, label="straggler"))
    if has["regression"]:
        handles.append(mpl.Line2D([], [], marker="D", linestyle="", color=REGRESSION_COLOUR,
                                  markeredgecolor=REGRESSION_COLOUR, label="regression"))
    if has["reference"]:
        handles.append(mpl.Line2D([], [], linestyle=":", color=REFERENCE_COLOUR, label="reference (achievable)"))
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, frameon=False)
    return mpl.png(fig)


def _when(text: Any) -> Optional[_dt.datetime]:
    try:
        t = _dt.datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo is None else t.astimezone(_dt.timezone.utc).replace(tzinfo=None)


def _series(points: Any) -> list:
    """``[(time or None, value)]`` of a trend's ``[[iso_time, value], ...]``, unusable points left out."""
    out = []
    for p in points if isinstance(points, (list, tuple)) else ():
        if isinstance(p, (list, tuple)) and len(p) >= 2 and _number(p[1]) is not None:
            out.append((_when(p[0]), _number(p[1])))
    return out


def _trend_metrics(summary: Mapping, series: Mapping) -> list:
    keys = list(summary.get("key_figures") or [])
    present = [k for k in series if series[k]]
    return [k for k in keys if k in present] + sorted(k for k in present if k not in keys)


def _trend_range(lo: float, hi: float) -> tuple[float, float]:
    """The y range of a trend: at least 30 % of its top, so that a run-to-run wobble of 0.3 % stays flat while
    a drop of 8 % shows; from zero when it comes close."""
    if hi <= 0 or lo < 0:
        pad = 0.1 * (hi - lo) or 1.0
        return lo - pad, hi + pad
    bottom = min(lo - 0.1 * (hi - lo), 0.7 * hi)
    bottom = 0.0 if bottom < 0.15 * hi else bottom
    return bottom, hi + 0.12 * (hi - bottom)


def _trend(mpl: _Mpl, summary: Mapping, host: str, series: Mapping, regressed: set) -> tuple:
    """One host's trends, a small panel per metric: ``(png base64, width, height)``."""
    metrics = _trend_metrics(summary, series)
    ncols = min(5, len(metrics))
    nrows = math.ceil(len(metrics) / ncols)
    fig = mpl.figure(2.3 * ncols, 1.7 * nrows + 0.3)
    baselines = {r.get("metric"): _number(r.get("baseline")) for r in _regressions(summary) or ()
                 if r.get("host") == host and not r.get("gpu")}
    for i, key in enumerate(metrics):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        pts = series[key]
        dated = all(t is not None for t, _ in pts)
        xs = [t for t, _ in pts] if dated else list(range(len(pts)))
        ys = [v for _, v in pts]
        ax.plot(xs, ys, color=HOST_COLOUR, linewidth=1.3, marker="o", markersize=3)
        last = REGRESSION_COLOUR if key in regressed else HOST_COLOUR
        ax.plot(xs[-1:], ys[-1:], linestyle="", marker="D" if key in regressed else "o", markersize=6, color=last)
        seen = list(ys)
        if baselines.get(key) is not None:
            ax.axhline(baselines[key], color=REGRESSION_COLOUR, linestyle="--", linewidth=1)
            seen.append(baselines[key])
        ax.set_ylim(*_trend_range(min(seen), max(seen)))
        ax.set_title(_mpl_text(short_name(key)), fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(color="#e9ecef")
        if dated:
            locator = mpl.dates.AutoDateLocator(minticks=2, maxticks=4)
            ax.xaxis.set_major_locator(locator)
            ax.xaxis.set_major_formatter(mpl.dates.ConciseDateFormatter(locator))
            ax.xaxis.get_offset_text().set_fontsize(7)
        else:
            ax.set_xlabel("run", fontsize=7)
    fig.suptitle(_mpl_text(host), fontsize=9)
    return mpl.png(fig)


def _trend_hosts(summary: Mapping, trends: Mapping, slow: Mapping, regressed: Mapping) -> tuple[list, int]:
    """``(hosts to draw, in run order; how many more had trends)``."""
    hosts = summary.get("hosts") or {}
    have = [h for h in hosts if isinstance(trends.get(h), Mapping) and any(_series(v) for v in trends[h].values())]
    if len(have) <= MAX_TREND_HOSTS:
        return have, 0
    urgent = [h for h in have if slow.get(h) or regressed.get(h) or hosts[h].get("status") not in ("pass", "warn")]
    first = set(urgent)
    rest = [h for h in have if h not in first]
    chosen = set((urgent + rest)[:MAX_TREND_HOSTS])
    return [h for h in have if h in chosen], len(have) - MAX_TREND_HOSTS


def _plots_section(summary: Mapping, trends: Optional[Mapping]) -> str:
    out = ['<h2>Plots</h2>']
    mpl, note = _load_matplotlib()
    if mpl is None:
        out.append(f'<p class="note" id="plots-note">{_e(note)}</p>')
        return "\n".join(out)
    slow, regressed = _flags(summary)
    keys = list(summary.get("key_figures") or [])
    out.append('<h3 id="distribution">Fleet distribution</h3>')
    if keys:
        out.append('<p class="note">A point per host, grouped by GPU model; the dashed line is the median of the '
                   'model\'s hosts.</p>')
    figures = []
    for key in keys:
        figures.append(_plot(lambda k=key: _distribution(mpl, summary, k, slow, regressed),
                             f"{short_name(key)} per host", key, "distribution"))
    out.append('<div class="plots">' + "".join(figures) + "</div>" if figures
               else '<p class="note">No figures: no host returned a report.</p>')
    out.append('<h3 id="trends">Trends</h3>')
    trends = trends if isinstance(trends, Mapping) else {}
    chosen, more = _trend_hosts(summary, trends, slow, regressed)
    figures = []
    for host in chosen:
        series = {k: _series(v) for k, v in trends[host].items()}
        figures.append(_plot(lambda h=host, s=series: _trend(mpl, summary, h, s, regressed.get(h, set())),
                             f"trends of {host}", f"{host}: this run is the last point", "trend"))
    if figures:
        out.append('<div class="plots">' + "".join(figures) + "</div>")
    else:
        out.append('<p class="note">No history for these hosts yet.</p>')
    if more:
        out.append(f'<p class="note">{plural(more, "more host")} with a history not drawn here: '
                   f'see <code>gpufleet history</code>.</p>')
    return "\n".join(out)


def _plot(draw, alt: str, caption: str, cls: str) -> str:
    try:
        b64, width, height = draw()
    except Exception as exc:  # noqa: BLE001 - a plot that cannot be drawn must not cost the page its tables
        return f'<p class="note plot-error">{_e(alt)}: not drawn ({_e(type(exc).__name__)}: {_e(exc)})</p>'
    return _img(b64, width, height, alt, caption, cls)


# --------------------------------------------------------------------------- under sustained load

_BURN = re.compile(r"burn/([^/:]+):(.+)")  # burn/bf16:gpu0; not burn/correct/bf16:gpu0 (no series)
_TELEMETRY = re.compile(r"telemetry:(.+)")


def _has_points(values: Any) -> bool:
    return isinstance(values, list) and any(_number(v) is not None for v in values)


def _series_kind(check: Any) -> Optional[str]:
    """``"burn"`` or ``"telemetry"`` for a check that carries a series to plot; None for any other."""
    if not isinstance(check, Mapping) or not isinstance(check.get("name"), str):
        return None
    details = check.get("details")
    if not isinstance(details, Mapping):
        return None
    if _BURN.fullmatch(check["name"]):
        return "burn" if _has_points(details.get("series_tflops")) else None
    if _TELEMETRY.fullmatch(check["name"]) and check.get("status") != "skip":
        series = details.get("series")
        if isinstance(series, Mapping) and any(_has_points(series.get(k)) for k, *_ in TELEMETRY_SERIES):
            return "telemetry"
    return None


def series_checks(reports: Mapping) -> dict:
    """``{host: [its burn and telemetry checks that carry a series, in report order]}`` of ``{host: verify
    report}`` (pure).  Hosts without such a check are left out; the checks are the reports' own dicts."""
    out = {}
    for host, report in reports.items():
        checks = report.get("checks") if isinstance(report, Mapping) else None
        found = [c for c in checks if _series_kind(c)] if isinstance(checks, list) else []
        if found:
            out[host] = found
    return out


def read_host_reports(run_dir: str | os.PathLike, hosts: Iterable[str]) -> dict:
    """``{host: report}`` of ``run_dir/hosts/<host>.json`` for each of ``hosts``; a report that is missing,
    unreadable or no JSON is left out (its host just has no series on the page)."""
    out = {}
    for host in hosts:
        try:
            out[host] = json.loads((Path(run_dir) / report_path(str(host))).read_bytes())
        except (OSError, ValueError, RecursionError):
            continue
    return out


def _usable(checks: Any) -> list:
    return [c for c in checks if _series_kind(c)] if isinstance(checks, list) else []


def _status_class(status: Any) -> str:
    """The ``st-*`` class of a check status (verify's ``skip`` is the page's ``skipped``)."""
    status = "skipped" if status == "skip" else status
    return status if status in STATUS_COLOURS else "error"


def _flag_colour(status: Any) -> Optional[str]:
    """A failing (or erring) check's lines in the straggler colour, a warning one's in the regression colour."""
    level = severity(status)
    return STRAGGLER_COLOUR if level >= 2 else REGRESSION_COLOUR if level == 1 else None


def _flag_class(status: Any) -> str:
    level = severity(status)
    return " slow" if level >= 2 else " regressed" if level == 1 else ""


def _worst(checks: Sequence[Mapping]) -> str:
    worst = "pass"
    for c in checks:
        if severity(c.get("status")) > severity(worst):
            worst = str(c.get("status"))
    return worst


def _split(checks: Sequence[Mapping]) -> tuple[list, dict, list, list]:
    """``(burns [(device, dtype, check)], telemetry {device: check}, devices, dtypes)``, in report order."""
    burns, tele, devices, dtypes = [], {}, [], []
    for c in checks:
        kind = _series_kind(c)
        if kind == "burn":
            dtype, device = _BURN.fullmatch(c["name"]).groups()
            burns.append((device, dtype, c))
            dtypes += [dtype] if dtype not in dtypes else []
        elif kind == "telemetry":
            device = _TELEMETRY.fullmatch(c["name"]).group(1)
            tele.setdefault(device, c)
        else:
            continue
        devices += [device] if device not in devices else []
    return burns, tele, devices, dtypes


def _panels(burns: list, tele: Mapping) -> list:
    """``"burn"`` (when there is a burn series), then each telemetry key some device has a series of."""
    return (["burn"] if burns else []) + [k for k, *_ in TELEMETRY_SERIES
                                          if any(_has_points(c["details"]["series"].get(k)) for c in tele.values())]


def _points(values: list, seconds_per_point: float, offset: float = 0.0) -> tuple[list, list]:
    """``(x, y)``: each point at the middle of the seconds it covers, from ``offset``; non-numbers left out."""
    xs, ys = [], []
    for i, v in enumerate(values):
        if _number(v) is not None:
            xs.append(offset + (i + 0.5) * seconds_per_point)
            ys.append(float(v))
    return xs, ys


def _seconds_per_point(values: list, period: Any, samples: Any) -> float:
    """A downsampled point covers ``samples / len(values)`` original intervals of ``period`` seconds (1 s when the
    report does not say)."""
    period = _number(period)
    period = period if period and period > 0 else 1.0
    samples = _number(samples)
    return period * samples / len(values) if samples and samples >= len(values) else period


def _sustained(mpl: _Mpl, host: str, checks: Sequence[Mapping]) -> tuple:
    """One host under sustained load, panels sharing the time axis: ``(png base64, width, height)``."""
    burns, tele, devices, dtypes = _split(checks)
    colour = {d: DEVICE_COLOURS[i % len(DEVICE_COLOURS)] for i, d in enumerate(devices)}
    style = {dt: DTYPE_STYLES[i % len(DTYPE_STYLES)] for i, dt in enumerate(dtypes)}
    panels = _panels(burns, tele)
    fig = mpl.figure(8.4, 1.55 * len(panels) + 0.75)
    grid = fig.add_gridspec(len(panels), 2, width_ratios=[5.0, 1.0])  # the legend's own column, beside all panels
    axes = []
    for i in range(len(panels)):
        axes.append(fig.add_subplot(grid[i, 0], sharex=axes[0] if axes else None))
    handles = []
    per_line = len(burns) <= 8
    ends: dict = {}  # device -> seconds its dtypes so far took: a device runs its dtypes one after another
    for ax, panel in zip(axes, panels):
        if panel == "burn":
            lo, hi = math.inf, -math.inf
            for device, dtype, c in burns:
                d = c["details"]
                values = d["series_tflops"]
                spp = _seconds_per_point(values, d.get("interval_s"), d.get("samples"))
                xs, ys = _points(values, spp, ends.get(device, 0.0))
                ends[device] = ends.get(device, 0.0) + spp * len(values)
                flag = _flag_colour(c.get("status"))
                label = f"{device} {dtype}" + (f": {c.get('status')}" if flag else "")
                ax.plot(xs, ys, color=flag or colour[device], linestyle=style[dtype], linewidth=2.0 if flag else 1.2,
                        zorder=3 if flag else 2)
                lo, hi = min([lo] + ys), max([hi] + ys)
                if per_line:
                    handles.append(mpl.Line2D([], [], color=flag or colour[device], linestyle=style[dtype],
                                              label=_mpl_text(label)))
                elif flag:
                    handles.append(mpl.Line2D([], [], color=flag, linestyle=style[dtype], label=_mpl_text(label)))
            ax.set_ylim(*_trend_range(lo, hi))
            ax.set_ylabel("burn\nTFLOP/s", fontsize=8)
            continue
        for device, c in tele.items():
            d = c["details"]
            values = d["series"].get(panel)
            if not _has_points(values):
                continue
            xs, ys = _points(values, _seconds_per_point(values, d.get("period_s"), d.get("samples")))
            flag = _flag_colour(c.get("status"))
            ax.plot(xs, ys, color=flag or colour[device], linewidth=2.0 if flag else 1.2, zorder=3 if flag else 2)
        ax.set_ylabel(_mpl_text(next(f"{name}\n{unit}" for k, name, unit, *_ in TELEMETRY_SERIES if k == panel)),
                      fontsize=8)
    if not per_line or not burns:  # a device's colour, a dtype's line style
        handles = [mpl.Line2D([], [], color=colour[d], label=_mpl_text(d)) for d in devices] + (
            [mpl.Line2D([], [], color=MEDIAN_COLOUR, linestyle=style[dt], label=_mpl_text(dt)) for dt in dtypes]
            if len(dtypes) > 1 else []) + handles
    for device, c in tele.items():
        flag = _flag_colour(c.get("status"))
        if flag:
            handles.append(mpl.Line2D([], [], color=flag, label=_mpl_text(f"{device} telemetry: {c.get('status')}")))
    for i, ax in enumerate(axes):
        ax.tick_params(labelsize=7, labelbottom=i == len(axes) - 1)
        ax.grid(color="#e9ecef")
    axes[-1].set_xlabel("seconds into the burn", fontsize=8)
    key = fig.add_subplot(grid[:, 1])
    key.axis("off")
    key.legend(handles=handles, loc="upper left", fontsize=7, frameon=False, borderaxespad=0)
    fig.suptitle(_mpl_text(host), fontsize=9)
    return mpl.png(fig)


def _figure(value: Any, fmt) -> str:
    v = _number(value)
    return "-" if v is None else fmt(v)


def _sustained_table(checks: Sequence[Mapping], ident: str) -> str:
    """A row per device: its status, per dtype the median TFLOP/s and last quarter / first quarter, and the
    telemetry figures."""
    burns, tele, devices, dtypes = _split(checks)
    headers = [("Device", ""), ("Status", "")]
    for dt in dtypes:
        headers += [(f"{dt} TF/s", "num"), (f"{dt} last/first", "num")]
    if tele:
        headers += [(header, "num") for *_, header, _ in TELEMETRY_SERIES]
    rows = []
    for device in devices:
        mine = [c for d, _, c in burns if d == device] + ([tele[device]] if device in tele else [])
        worst = _worst(mine)
        labels = "".join(
            f'<span class="label" title="{_e(c.get("message"))}">'
            f'{_e(_BURN.fullmatch(c["name"]).group(1) if _series_kind(c) == "burn" else "telemetry")} '
            f'{_e(c.get("status"))}</span>' for c in mine if severity(c.get("status")) > 0)
        cells = [f'<td class="device">{_e(device)}</td>',
                 f'<td class="status"><span class="badge st-{_status_class(worst)}">{_e(worst)}</span>{labels}</td>']
        for dt in dtypes:
            c = next((c for d, t, c in burns if d == device and t == dt), None)
            if c is None:
                cells += ['<td class="num">-</td>'] * 2
                continue
            d, cls = c["details"], "num" + _flag_class(c.get("status"))
            median = _e(_figure(d.get("median"), fmt_value))
            if _number(d.get("reference_ratio")) is not None:
                median += f'<span class="sub ref">ref ×{_e(fmt_ratio(_number(d["reference_ratio"])))}</span>'
            first, last = _number(d.get("first_quarter")), _number(d.get("last_quarter"))
            sag = fmt_ratio(last / first) if first and last is not None else "-"
            cells += [f'<td class="{cls}">{median}</td>', f'<td class="{cls}">{_e(sag)}</td>']
        if tele:
            c = tele.get(device)
            cls = "num" + (_flag_class(c.get("status")) if c else "")
            details = c["details"] if c else {}
            cells += [f'<td class="{cls}">{_e(_figure(details.get(figure), lambda v: f"{v:.0f}"))}</td>'
                      for *_, figure in TELEMETRY_SERIES]
        rows.append(f'<tr data-device="{_e(device)}">' + "".join(cells) + "</tr>")
    return _table(headers, rows, ident)


def _sustained_hosts(summary: Mapping, series: Mapping) -> tuple[list, int]:
    """``(hosts to show, in run order; how many more had series)``."""
    hosts = summary.get("hosts") or {}
    have = [h for h in hosts if _usable(series.get(h))]
    if len(have) <= MAX_SUSTAINED_HOSTS:
        return have, 0
    urgent = [h for h in have if severity(_worst(_usable(series[h]))) > 0
              or (hosts[h] or {}).get("status") not in ("pass", "warn")]
    first = set(urgent)
    chosen = set((urgent + [h for h in have if h not in first])[:MAX_SUSTAINED_HOSTS])
    return [h for h in have if h in chosen], len(have) - MAX_SUSTAINED_HOSTS


def _sustained_section(summary: Mapping, series: Optional[Mapping]) -> str:
    """Empty when no host of the run has a series."""
    chosen, more = _sustained_hosts(summary, series if isinstance(series, Mapping) else {})
    if not chosen:
        return ""
    out = ['<h2>Under sustained load</h2>',
           '<p class="note">Per host, the burn\'s throughput per interval (a line per device and dtype; a device '
           'runs its dtypes one after another) and, on GPUs, the SM clock, temperature and power sampled meanwhile. '
           'A failing burn or telemetry check is drawn in orange, a warning one in violet. Under each figure: the '
           'median TFLOP/s (ref ×: to the reference figure), last/first: the median of the last quarter over the '
           'first quarter\'s (the burn warns below 0.90: it sagged), the maximum temperature, mean power and mean '
           'SM clock.</p>']
    mpl, note = _load_matplotlib()
    if mpl is None:
        out.append(f'<p class="note" id="sustained-note">{_e(note)}</p>')
    for i, host in enumerate(chosen):
        checks = _usable(series[host])
        worst = _worst(checks)
        block = [f'<div class="sustained" data-host="{_e(host)}">',
                 f'<h3>{_e(host)} <span class="badge st-{_status_class(worst)}">{_e(worst)}</span></h3>']
        if mpl is not None:
            burns, tele, _, _ = _split(checks)
            names = {k: name for k, name, *_ in TELEMETRY_SERIES}
            panels = [names.get(k, "burn throughput") for k in _panels(burns, tele)]
            marked = [f"{d} {t} {c.get('status')}" for d, t, c in burns if severity(c.get("status")) > 0]
            marked += [f"{d} telemetry {c.get('status')}" for d, c in tele.items() if severity(c.get("status")) > 0]
            caption = f"{host}: {', '.join(panels)} over time" + (f"; {', '.join(marked)}" if marked else "")
            block.append(_plot(lambda h=host, c=checks: _sustained(mpl, h, c), f"sustained load on {host}", caption,
                               "sustained"))
        block.append(_sustained_table(checks, f"sustained-table-{i}"))
        block.append("</div>")
        out.append("\n".join(block))
    if more:
        out.append(f'<p class="note" id="sustained-more">{plural(more, "more host")} with series not shown here: '
                   f'their reports are in the run directory\'s hosts/.</p>')
    return "\n".join(out)


# --------------------------------------------------------------------------- the page


def render_html(summary: Mapping, trends: Optional[Mapping] = None, series: Optional[Mapping] = None) -> str:
    """``summary.html`` for a ``gpufleet.summary/1`` verdict.

    ``summary`` may carry ``regressions`` (``[{host, gpu, metric, value, baseline, ratio, runs}]``) and, per
    host, ``regression`` and ``regression_metrics``.  ``trends``: ``{host: {metric base key: [[iso time,
    value], ...]}}``, oldest first, this run last (None or empty: no trend plots).  ``series``: ``{host: [burn
    and telemetry checks]}`` (:func:`series_checks` of the hosts' reports; None or empty: no section "Under
    sustained load").
    """
    sustained = _sustained_section(summary, series)
    rule = summary.get("rule") or {}
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>gpufleet verify {_e(summary.get('run_id') or '')}</title>",
        f"<style>{CSS}</style>",
        "</head>",
        "<body>",
        '<header id="header">', _header(summary), "</header>",
        "<main>",
        f'<section id="hosts">{_hosts_section(summary)}</section>',
        f'<section id="pairs">{_pairs_section(summary)}</section>' if summary.get("pairs") is not None else "",
        f'<section id="stragglers">{_stragglers_section(summary)}</section>',
        f'<section id="regressions">{_regressions_section(summary)}</section>',
        f'<section id="plots">{_plots_section(summary, trends)}</section>',
        f'<section id="sustained">{sustained}</section>' if sustained else "",
        "</main>",
        f'<footer>gpufleet {_e(summary.get("schema") or "")}; straggler rule: modified z-score beyond '
        f'{_e(rule.get("z_threshold", "-"))}, value below {_e(rule.get("floor", "-"))} × the median, at least '
        f'{_e(rule.get("min_values", "-"))} values; host figure: {_e(rule.get("host_figure", "-"))}.</footer>',
        "</body>",
        "</html>",
    ]
    return "\n".join(parts) + "\n"


def write_summary_html(run_dir: str | os.PathLike, summary: Mapping, trends: Optional[Mapping] = None) -> Path:
    """Write :func:`render_html` to ``run_dir/summary.html`` atomically; returns the path.

    The series under sustained load come from the hosts' reports in ``run_dir/hosts/`` (the summary does not
    carry them); a host whose report is missing or unreadable has none."""
    series = series_checks(read_host_reports(run_dir, summary.get("hosts") or {}))
    return write_text_atomic(Path(run_dir) / FILENAME, render_html(summary, trends, series))


__all__ = ["render_html", "write_summary_html", "series_checks", "read_host_reports", "counts_line", "FILENAME",
           "INSTALL_NOTE", "STRAGGLER_COLOUR", "REGRESSION_COLOUR", "HOST_COLOUR", "MAX_TREND_HOSTS",
           "MAX_SUSTAINED_HOSTS"]
