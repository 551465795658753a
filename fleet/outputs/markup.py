"""Markup shared by summary.html's sections: escaping, tables, inlined plot images, status classes."""

from __future__ import annotations

import html
from typing import Any, Iterable, Sequence

from fleet.runs.metrics import number
from fleet.outputs.palette import STATUS_COLOURS


def esc(value: Any) -> str:
    """``value`` as HTML text (quotes escaped too: it may land in an attribute)."""
    return html.escape("" if value is None else str(value), quote=True)


def table(headers: Sequence[tuple], rows: Iterable[str], table_id: str, cls: str = "") -> str:
    """``headers``: (text, css class); ``rows``: ready ``<tr>`` markup."""
    head = "".join(f'<th class="{c}">{esc(text)}</th>' if c else f"<th>{esc(text)}</th>" for text, c in headers)
    klass = f' class="{cls}"' if cls else ""
    return (f'<div class="scroll"><table id="{table_id}"{klass}>\n<thead><tr>{head}</tr></thead>\n<tbody>\n'
            + "\n".join(rows) + "\n</tbody></table></div>")


def img(b64: str, width: int, height: int, alt: str, caption: str, cls: str) -> str:
    return (f'<figure class="plot {cls}"><img alt="{esc(alt)}" width="{width}" height="{height}" '
            f'src="data:image/png;base64,{b64}"><figcaption>{esc(caption)}</figcaption></figure>')


def plot(draw, alt: str, caption: str, cls: str) -> str:
    try:
        b64, width, height = draw()
    except Exception as exc:  # noqa: BLE001 - a plot that cannot be drawn must not cost the page its tables
        return f'<p class="note plot-error">{esc(alt)}: not drawn ({esc(type(exc).__name__)}: {esc(exc)})</p>'
    return img(b64, width, height, alt, caption, cls)


def status_class(status: Any) -> str:
    """The ``st-*`` class of a check status (verify's ``skip`` is the page's ``skipped``)."""
    status = "skipped" if status == "skip" else status
    return status if status in STATUS_COLOURS else "error"


def tint(level: int) -> str:
    """A cell's class: what failed in the straggler colour, what warned in the regression colour."""
    return " slow" if level >= 2 else " regressed" if level == 1 else ""


def fmt_figure(value: Any, fmt) -> str:
    """``fmt`` of a number; "-" for none."""
    v = number(value)
    return "-" if v is None else fmt(v)
