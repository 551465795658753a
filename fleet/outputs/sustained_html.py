"""summary.html's section "Under sustained load": per host with a burn or telemetry series, its figure (drawn by
:func:`fleet.outputs.plots.sustained`) and a table of the summary figures, each figure tinted when it is what
made its check fail or warn (:func:`fleet.outputs.series.burn_marks`, :func:`~fleet.outputs.series.telemetry_marks`)."""

from __future__ import annotations

from typing import Mapping, Optional, Sequence

from fleet.outcome import plural
from fleet.outputs import plots
from fleet.runs.metrics import number
from fleet.outputs.markup import esc, fmt_figure, plot, status_class, table, tint
from fleet.outputs.series import (BURN, SAG, SPREAD, TELEMETRY_SERIES, burn_marks, panels, sag_ratio, series_kind,
                                  split, sustained_hosts, telemetry_marks, usable, worst)
from fleet.runs.render import fmt_ratio, fmt_value
from verify.status import severity


def _sustained_table(checks: Sequence[Mapping], ident: str) -> str:
    """A row per device: its status, per dtype the median TFLOP/s, last quarter / first quarter and the spread, and
    the telemetry figures; a figure tinted when it is what made its check fail or warn."""
    burns, tele, devices, dtypes = split(checks)
    headers = [("Device", ""), ("Status", "")]
    for dt in dtypes:
        headers += [(f"{dt} TF/s", "num"), (f"{dt} last/first", "num"), (f"{dt} spread", "num")]
    if tele:
        headers += [(header, "num") for *_, header, _ in TELEMETRY_SERIES]
    rows = []
    for device in devices:
        mine = [c for d, _, c in burns if d == device] + ([tele[device]] if device in tele else [])
        worst_status = worst(mine)
        labels = "".join(
            f'<span class="label" title="{esc(c.get("message"))}">'
            f'{esc(BURN.fullmatch(c["name"]).group(1) if series_kind(c) == "burn" else "telemetry")} '
            f'{esc(c.get("status"))}</span>' for c in mine if severity(c.get("status")) > 0)
        cells = [f'<td class="device">{esc(device)}</td>',
                 f'<td class="status"><span class="badge st-{status_class(worst_status)}">{esc(worst_status)}</span>'
                 f'{labels}</td>']
        for dt in dtypes:
            c = next((c for d, t, c in burns if d == device and t == dt), None)
            if c is None:
                cells += ['<td class="num">-</td>'] * 3
                continue
            d, marks = c["details"], burn_marks(c)
            median = esc(fmt_figure(d.get("median"), fmt_value))
            if number(d.get("reference_ratio")) is not None:
                median += f'<span class="sub ref">ref ×{esc(fmt_ratio(number(d["reference_ratio"])))}</span>'
            sag, spread = esc(fmt_figure(sag_ratio(d), fmt_ratio)), esc(fmt_figure(d.get("spread"), fmt_ratio))
            cells += [f'<td class="num{tint(marks.get("median", 0))}">{median}</td>',
                      f'<td class="num{tint(marks.get("sag", 0))}">{sag}</td>',
                      f'<td class="num{tint(marks.get("spread", 0))}">{spread}</td>']
        if tele:
            c = tele.get(device)
            marks = telemetry_marks(c) if c else {}
            details = c["details"] if c else {}
            cells += [f'<td class="num{tint(marks.get(key, 0))}">'
                      f'{esc(fmt_figure(details.get(figure), lambda v: f"{v:.0f}"))}</td>'
                      for key, *_, figure in TELEMETRY_SERIES]
        rows.append(f'<tr data-device="{esc(device)}">' + "".join(cells) + "</tr>")
    return table(headers, rows, ident)


def sustained_section(summary: Mapping, series: Optional[Mapping], max_hosts: int) -> str:
    """Empty when no host of the run has a series."""
    chosen, more = sustained_hosts(summary, series if isinstance(series, Mapping) else {}, max_hosts)
    if not chosen:
        return ""
    out = ['<h2>Under sustained load</h2>',
           f'<p class="note">Per host, the burn\'s throughput per interval (a line per device and dtype; a device '
           f'runs its dtypes one after another) and, on GPUs, the SM clock, temperature and power sampled meanwhile. '
           f'A failing burn or telemetry check is drawn in orange, a warning one in violet. Under each figure: the '
           f'median TFLOP/s (ref ×: to the reference figure), last/first: the median of the last quarter over the '
           f'first quarter\'s (the burn warns below {SAG:.2f}: it sagged), spread: (p95 − p5) / median (it warns '
           f'above {SPREAD:.2f}: it varied), the maximum temperature, mean power and mean SM clock. A figure '
           f'is tinted when it is what failed (orange) or warned (violet).</p>']
    mpl, note = plots.load_matplotlib()
    if mpl is None:
        out.append(f'<p class="note" id="sustained-note">{esc(note)}</p>')
    for i, host in enumerate(chosen):
        checks = usable(series[host])
        worst_status = worst(checks)
        block = [f'<div class="sustained" data-host="{esc(host)}">',
                 f'<h3>{esc(host)} <span class="badge st-{status_class(worst_status)}">{esc(worst_status)}</span></h3>']
        if mpl is not None:
            burns, tele, _, _ = split(checks)
            names = {k: name for k, name, *_ in TELEMETRY_SERIES}
            shown = [names.get(k, "burn throughput") for k in panels(burns, tele)]
            marked = [f"{d} {t} {c.get('status')}" for d, t, c in burns if severity(c.get("status")) > 0]
            marked += [f"{d} telemetry {c.get('status')}" for d, c in tele.items() if severity(c.get("status")) > 0]
            caption = f"{host}: {', '.join(shown)} over time" + (f"; {', '.join(marked)}" if marked else "")
            block.append(plot(lambda h=host, c=checks: plots.sustained(mpl, h, c), f"sustained load on {host}",
                               caption, "sustained"))
        block.append(_sustained_table(checks, f"sustained-table-{i}"))
        block.append("</div>")
        out.append("\n".join(block))
    if more:
        out.append(f'<p class="note" id="sustained-more">{plural(more, "more host")} with series not shown here: '
                   f'their reports are in the run directory\'s hosts/.</p>')
    return "\n".join(out)
