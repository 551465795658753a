"""summary.html's plots, drawn with matplotlib (the optional extra ``gpufleet[report]``) as PNG images.

Each function takes what to draw, already chosen (:mod:`fleet.outputs.distribution`, :mod:`fleet.outputs.trends`,
:mod:`fleet.outputs.series`), and returns ``(png base64, width, height)``.  matplotlib is imported on first use
(:func:`load_matplotlib`), never by importing this module; the Agg canvas draws without a display or a global
backend switch.
"""

from __future__ import annotations

import base64
import io
import math
from typing import Any, Mapping, Optional, Sequence

from fleet.outputs.distribution import Group
from fleet.outputs.flags import model_label
from fleet.outputs.palette import (DEVICE_COLOURS, DTYPE_STYLES, EXCLUDED_COLOUR, HOST_COLOUR, MEDIAN_COLOUR,
                                   REFERENCE_COLOUR, REGRESSION_COLOUR, STRAGGLER_COLOUR)
from fleet.outputs.series import TELEMETRY_SERIES, has_points, panels, points, seconds_per_point, split
from fleet.outputs.trends import panel_order, x_axis, y_range
from fleet.runs.render import short_name
from fleet.runs.metrics import higher_is_better
from verify.status import severity

INSTALL_NOTE = ("Plots need matplotlib: from the gpufleet checkout, pip install -e '.[report]' (an installed "
                "package: pip install matplotlib).")
DPI = 100


class Mpl:
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


def load_matplotlib() -> tuple[Optional[Mpl], str]:
    """``(Mpl, "")``, or ``(None, the one-line note)`` when matplotlib cannot be imported."""
    try:
        return Mpl(), ""
    except ImportError:
        return None, INSTALL_NOTE
    except Exception as exc:  # noqa: BLE001 - a broken matplotlib (say, a numpy it was not built for) is none
        return None, f"Plots unavailable: matplotlib failed to import ({type(exc).__name__}: {exc}). {INSTALL_NOTE}"


def mpl_text(s: Any) -> str:
    """Text for matplotlib: a ``$`` would start mathtext (a host named ``a$b$c`` would render as math)."""
    return str(s).replace("$", r"\$")


def clip(text: Any, width: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 1] + "…"


# --------------------------------------------------------------------------- the fleet distribution


def _kind(key: str, host: str, slow: Mapping, regressed: Mapping) -> str:
    is_slow, is_reg = key in slow.get(host, ()), key in regressed.get(host, ())
    return "both" if is_slow and is_reg else "straggler" if is_slow else "regression" if is_reg else "host"


def distribution(mpl: Mpl, key: str, groups: Sequence[Group], slow: Mapping, regressed: Mapping) -> tuple:
    """One key figure over the fleet, a column of points per GPU model with a distribution (``groups``, each
    ``drawn``): the median of the model's hosts dashed, its reference dotted, its failed and errored hosts as
    crosses beside, in no median."""
    n = sum(len(g.hosts) + len(g.excluded) for g in groups)
    fig = mpl.figure(min(12.0, max(5.8, 3.6 + 0.18 * n + 0.3 * len(groups))), 3.3)
    ax = fig.add_subplot()
    xs_ticks, labels = [], []
    marks: dict = {"host": [], "straggler": [], "regression": [], "both": [], "excluded": []}  # kind -> [(x, value)]
    x, top = 0, 0.0
    for gi, group in enumerate(groups):
        x0 = x
        members = [(h, v, _kind(key, h, slow, regressed)) for h, v in group.hosts]
        members += [(h, v, "excluded") for h, _, v in group.excluded]
        for i, (name, value, kind) in enumerate(members):
            x += 1 if i == len(group.hosts) and i else 0  # the left-out hosts a slot apart from the distribution
            marks[kind].append((x, value))
            if kind not in ("host", "excluded") and n > 40:  # no tick labels: name the flagged ones (the left-out
                colour = REGRESSION_COLOUR if kind == "regression" else STRAGGLER_COLOUR  # ones: in the table below)
                ax.annotate(mpl_text(clip(name, 24)), (x, value), xytext=(4, -10), textcoords="offset points",
                            fontsize=7, color=colour)
            xs_ticks.append(x)
            labels.append(mpl_text(clip(name, 16)))
            top = max(top, value)
            x += 1
        x1 = x - 1
        if gi % 2:
            ax.axvspan(x0 - 0.5, x1 + 0.5, color="#f1f3f5", zorder=0)
        right = x0 + len(group.hosts) - 1  # the median spans the hosts it is the median of
        ax.hlines(group.median, x0 - 0.4, right + 0.4, colors=MEDIAN_COLOUR, linestyles="--", linewidth=1.2, zorder=4)
        if group.achievable is not None:
            ax.hlines(group.achievable, x0 - 0.4, x1 + 0.4, colors=REFERENCE_COLOUR, linestyles=":", linewidth=1.2,
                      zorder=2)
            top = max(top, group.achievable)
        if len(groups) > 1:  # from the group's left edge; alternate rows so that narrow groups' labels never meet
            ax.text(x0 - 0.45, 0.985 if gi % 2 == 0 else 0.92, mpl_text(model_label(group.model)),
                    transform=mpl.blended(ax.transData, ax.transAxes), ha="left", va="top", fontsize=7,
                    color=MEDIAN_COLOUR)
        x += 1  # a gap between models
    small, big = (30, 46) if n <= 60 else (10, 40)  # a dense fleet: small points, the flagged ones stand out
    styles = {"host": dict(s=small, color=HOST_COLOUR, marker="o"),
              "straggler": dict(s=big, color=STRAGGLER_COLOUR, marker="o"),
              "regression": dict(s=big, color=REGRESSION_COLOUR, marker="D"),
              "both": dict(s=big, color=STRAGGLER_COLOUR, marker="o", edgecolors=REGRESSION_COLOUR, linewidths=2),
              "excluded": dict(s=big, color=EXCLUDED_COLOUR, marker="x", linewidths=2)}
    for kind, pts in marks.items():
        if pts:
            ax.scatter([p[0] for p in pts], [p[1] for p in pts], zorder=3, **styles[kind])
    ax.set_xlim(-0.8, x - 1.2)
    ax.set_ylim(0, top * (1.28 if len(groups) > 1 else 1.15) if top > 0 else 1)
    if n <= 40:
        slanted = n > 6 or max(len(label) for label in labels) > 8
        ax.set_xticks(xs_ticks)
        ax.set_xticklabels(labels, rotation=60 if slanted else 0, ha="right" if slanted else "center", fontsize=8)
    else:
        ax.set_xticks([])
        ax.set_xlabel(f"{n} hosts, grouped by GPU model", fontsize=8)
    ax.tick_params(axis="y", labelsize=8)
    ax.grid(axis="y", color="#e9ecef", zorder=0)
    ax.set_axisbelow(True)
    title = f"{short_name(key)} per host ({'higher' if higher_is_better(key) else 'lower'} is better)"
    if len(groups) == 1:
        title += f", {model_label(groups[0].model)}"
    ax.set_title(mpl_text(title), fontsize=10)
    ax.set_ylabel(mpl_text(key), fontsize=8)
    handles = [mpl.Line2D([], [], marker="o", linestyle="", color=HOST_COLOUR, label="host"),
               mpl.Line2D([], [], linestyle="--", color=MEDIAN_COLOUR, label="median of the GPU model")]
    if marks["straggler"] or marks["both"]:
        handles.append(mpl.Line2D([], [], marker="o", linestyle="", color=STRAGGLER_COLOUR, label="straggler"))
    if marks["regression"] or marks["both"]:
        handles.append(mpl.Line2D([], [], marker="D", linestyle="", color=REGRESSION_COLOUR,
                                  markeredgecolor=REGRESSION_COLOUR, label="regression"))
    if marks["excluded"]:
        handles.append(mpl.Line2D([], [], marker="x", linestyle="", color=EXCLUDED_COLOUR, markeredgewidth=2,
                                  label="failed or errored\n(not in the median)"))
    if any(g.achievable is not None for g in groups):
        handles.append(mpl.Line2D([], [], linestyle=":", color=REFERENCE_COLOUR, label="reference (achievable)"))
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, frameon=False)
    return mpl.png(fig)


# --------------------------------------------------------------------------- a host's trends


def trend(mpl: Mpl, summary: Mapping, host: str, series: Mapping, baselines: Mapping, regressed: set) -> tuple:
    """One host's trends, a small panel per metric of at least two points (``series``: ``{metric: [(time or None,
    value)]}``); ``baselines``: ``{metric: the host's baseline}`` of its whole-host regressions."""
    metrics = panel_order(summary, series)
    ncols = min(5, len(metrics))
    nrows = math.ceil(len(metrics) / ncols)
    fig = mpl.figure(2.3 * ncols, 1.7 * nrows + 0.3)
    for i, key in enumerate(metrics):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        pts = series[key]
        xs, dated, xlim = x_axis(pts)
        ys = [v for _, v in pts]
        ax.plot(xs, ys, color=HOST_COLOUR, linewidth=1.3, marker="o", markersize=3)
        last = REGRESSION_COLOUR if key in regressed else HOST_COLOUR
        ax.plot(xs[-1:], ys[-1:], linestyle="", marker="D" if key in regressed else "o", markersize=6, color=last)
        seen = list(ys)
        if baselines.get(key) is not None:
            ax.axhline(baselines[key], color=REGRESSION_COLOUR, linestyle="--", linewidth=1)
            seen.append(baselines[key])
        ax.set_ylim(*y_range(min(seen), max(seen)))
        ax.set_xlim(*xlim)
        ax.set_title(mpl_text(short_name(key)), fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(color="#e9ecef")
        if dated:
            locator = mpl.dates.AutoDateLocator(minticks=2, maxticks=4)
            ax.xaxis.set_major_locator(locator)
            ax.xaxis.set_major_formatter(mpl.dates.ConciseDateFormatter(locator))
            ax.xaxis.get_offset_text().set_fontsize(7)
        else:
            ax.set_xticks(range(len(pts)))
            ax.set_xlabel("run", fontsize=7)
    fig.suptitle(mpl_text(host), fontsize=9)
    return mpl.png(fig)


# --------------------------------------------------------------------------- under sustained load


def flag_colour(status: Any) -> Optional[str]:
    """A failing (or erring) check's lines in the straggler colour, a warning one's in the regression colour."""
    level = severity(status)
    return STRAGGLER_COLOUR if level >= 2 else REGRESSION_COLOUR if level == 1 else None


def sustained(mpl: Mpl, host: str, checks: Sequence[Mapping]) -> tuple:
    """One host under sustained load, panels sharing the time axis."""
    burns, tele, devices, dtypes = split(checks)
    colour = {d: DEVICE_COLOURS[i % len(DEVICE_COLOURS)] for i, d in enumerate(devices)}
    style = {dt: DTYPE_STYLES[i % len(DTYPE_STYLES)] for i, dt in enumerate(dtypes)}
    shown = panels(burns, tele)
    fig = mpl.figure(8.4, 1.55 * len(shown) + 0.75)
    grid = fig.add_gridspec(len(shown), 2, width_ratios=[5.0, 1.0])  # the legend's own column, beside all panels
    axes = []
    for i in range(len(shown)):
        axes.append(fig.add_subplot(grid[i, 0], sharex=axes[0] if axes else None))
    handles = []
    per_line = len(burns) <= 8
    ends: dict = {}  # device -> seconds its dtypes so far took: a device runs its dtypes one after another
    for ax, panel in zip(axes, shown):
        if panel == "burn":
            lo, hi = math.inf, -math.inf
            for device, dtype, c in burns:
                d = c["details"]
                values = d["series_tflops"]
                spp = seconds_per_point(values, d.get("interval_s"), d.get("samples"))
                xs, ys = points(values, spp, ends.get(device, 0.0))
                ends[device] = ends.get(device, 0.0) + spp * len(values)
                flag = flag_colour(c.get("status"))
                label = f"{device} {dtype}" + (f": {c.get('status')}" if flag else "")
                ax.plot(xs, ys, color=flag or colour[device], linestyle=style[dtype], linewidth=2.0 if flag else 1.2,
                        zorder=3 if flag else 2)
                lo, hi = min([lo] + ys), max([hi] + ys)
                if per_line:
                    handles.append(mpl.Line2D([], [], color=flag or colour[device], linestyle=style[dtype],
                                              label=mpl_text(label)))
                elif flag:
                    handles.append(mpl.Line2D([], [], color=flag, linestyle=style[dtype], label=mpl_text(label)))
            ax.set_ylim(*y_range(lo, hi))
            ax.set_ylabel("burn\nTFLOP/s", fontsize=8)
            continue
        for device, c in tele.items():
            d = c["details"]
            values = d["series"].get(panel)
            if not has_points(values):
                continue
            xs, ys = points(values, seconds_per_point(values, d.get("period_s"), d.get("samples")))
            flag = flag_colour(c.get("status"))
            ax.plot(xs, ys, color=flag or colour[device], linewidth=2.0 if flag else 1.2, zorder=3 if flag else 2)
        ax.set_ylabel(mpl_text(next(f"{name}\n{unit}" for k, name, unit, *_ in TELEMETRY_SERIES if k == panel)),
                      fontsize=8)
    if not per_line or not burns:  # a device's colour, a dtype's line style
        handles = [mpl.Line2D([], [], color=colour[d], label=mpl_text(d)) for d in devices] + (
            [mpl.Line2D([], [], color=MEDIAN_COLOUR, linestyle=style[dt], label=mpl_text(dt)) for dt in dtypes]
            if len(dtypes) > 1 else []) + handles
    for device, c in tele.items():
        flag = flag_colour(c.get("status"))
        if flag:
            handles.append(mpl.Line2D([], [], color=flag, label=mpl_text(f"{device} telemetry: {c.get('status')}")))
    for i, ax in enumerate(axes):
        ax.tick_params(labelsize=7, labelbottom=i == len(axes) - 1)
        ax.grid(color="#e9ecef")
    axes[-1].set_xlabel("seconds into the burn", fontsize=8)
    key = fig.add_subplot(grid[:, 1])
    key.axis("off")
    key.legend(handles=handles, loc="upper left", fontsize=7, frameon=False, borderaxespad=0)
    fig.suptitle(mpl_text(host), fontsize=9)
    return mpl.png(fig)
