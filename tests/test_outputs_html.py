"""summary.html (fleet/outputs/html.py): the page read back with html.parser, its plots decoded, and the page
opened in a real headless browser (Debian's chromium) where one is installed."""

from __future__ import annotations

import base64
import builtins
import copy
import io
import json
import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from fleet.outcome import HostState
from fleet.outputs import html as page, plots
from fleet.outputs.flags import flags
from fleet.outputs.trends import trend_order
from fleet.runs.record import HostRun
from fleet.runs.verdict import judge
from tests.report_builder import arrived, node_report

H100 = "NVIDIA H100 80GB HBM3"
A100 = "NVIDIA A100-SXM4-80GB"
SCRIPT = "<script>alert(1)</script>"
REFUSED = "ssh: connect to host gone port 22: Connection refused"
FAIL_CHECK = {"name": "collectives/allreduce_busbw", "status": "fail", "message": '<b>busbw</b> 40 GB/s & "low"'}
META = {"run_id": "20250101T000000Z", "started": "2025-01-01T00:00:00+00:00",
        "finished": "2025-01-01T00:05:00+00:00", "interrupted": False}
KEYS = ["matmul/bf16/tflops", "memory/d2d/gbps", "memory/h2d/gbps", "allreduce/busbw_gbps",
        "ddp/resnet50/images_per_s"]
HEADERS = ["Host", "Status", "State", "GPUs", "bf16 TF/s", "D2D GB/s", "H2D GB/s", "AR busbw GB/s", "DDP img/s",
           "Straggler", "Regression"]
ROOT = Path(__file__).resolve().parent.parent


# --------------------------------------------------------------------------- the run


def metrics(bf16: list, ddp: float, d2d: float = 3000.0, h2d: float = 52.0, busbw: float = 400.0) -> dict:
    m = {}
    for i, v in enumerate(bf16):
        m[f"matmul/bf16/tflops:gpu{i}"] = v
        m[f"memory/d2d/gbps:gpu{i}"] = d2d
        m[f"memory/h2d/gbps:gpu{i}"] = h2d
    m["allreduce/busbw_gbps"] = busbw
    m["ddp/resnet50/images_per_s"] = ddp
    return m


def fleet_reports() -> list:
    """Six H100 nodes (n4's gpu2 at half speed; SCRIPT fails a check), two A100 nodes (two: not judged)."""
    out = [node_report(h, [H100] * 4, metrics([700.0, 700.0, 350.0, 700.0] if h == "n4" else [700.0] * 4, ddp))
           for h, ddp in (("n0", 2400.0), ("n1", 2450.0), ("n2", 2300.0), ("n3", 2420.0), ("n4", 2380.0))]
    out.append(node_report(SCRIPT, [H100] * 4, metrics([700.0] * 4, 2400.0),
                           checks=[{"name": "env/torch", "status": "pass", "message": "torch 2.4.0"}, FAIL_CHECK]))
    out += [node_report(h, [A100] * 8, metrics([240.0] * 8, 2100.0, 1650.0, 24.5, 210.0)) for h in ("a0", "a1")]
    return out


REGRESSIONS = [
    {"host": "n2", "gpu": None, "metric": "ddp/resnet50/images_per_s", "value": 2300.0, "baseline": 2500.0,
     "ratio": 0.92, "runs": 5},
    {"host": "n4", "gpu": "gpu2", "metric": "matmul/bf16/tflops", "value": 350.0, "baseline": 700.0, "ratio": 0.5,
     "runs": 5},
]
DAYS = [f"2024-12-{d}T00:00:00+00:00" for d in (27, 28, 29, 30, 31)] + ["2025-01-01T00:00:00+00:00"]


def series(values) -> list:
    return [[t, v] for t, v in zip(DAYS, values)]


TRENDS = {
    "n0": {"matmul/bf16/tflops": series([702, 699, 701, 700, 698, 700]),
           "ddp/resnet50/images_per_s": series([2390, 2410, 2400, 2405, 2395, 2400])},
    "n2": {"ddp/resnet50/images_per_s": series([2500, 2510, 2490, 2505, 2495, 2300]),
           "matmul/bf16/tflops": series([700] * 6), "memory/d2d/gbps": series([3000] * 6)},
    "n4": {"matmul/bf16/tflops": series([700, 700, 700, 700, 700, 350])},
    "not-in-this-run": {"matmul/bf16/tflops": series([700] * 6)},
}


def make_summary(regressions: bool = True) -> dict:
    runs = [arrived(r) for r in fleet_reports()]
    runs.append(HostRun("gone", HostState.UNREACHABLE, message=REFUSED))
    summary = judge(runs, META, reference={H100: {"matmul/bf16/tflops": {"achievable": 650.0, "peak": 989.0}}})
    if regressions:
        summary["regressions"] = copy.deepcopy(REGRESSIONS)
        summary["hosts"]["n2"].update(regression=True, regression_metrics=["ddp/resnet50/images_per_s"])
        summary["hosts"]["n4"].update(regression=True, regression_metrics=["matmul/bf16/tflops:gpu2"])
    return summary


@pytest.fixture(scope="module")
def summary() -> dict:
    return make_summary()


@pytest.fixture(scope="module")
def text(summary) -> str:
    return page.render_html(summary, TRENDS)


@pytest.fixture(scope="module")
def doc(text):
    return parse(text)


# --------------------------------------------------------------------------- reading the page back

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class Page(HTMLParser):
    """Tables (by id: headers, rows of cells with their text and every class inside them), every start tag with
    its attributes, and the text of every element that has an id."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags: list = []  # (tag, attrs dict)
        self.tables: dict = {}
        self.ids: dict = {}
        self._open: list = []  # (tag, id or None, block)
        self._table = self._row = self._cell = None

    @staticmethod
    def _block(tag, attrs) -> bool:
        classes = (attrs.get("class") or "").split()
        return tag in ("div", "p", "br", "li") or (tag == "span" and bool({"sub", "label"} & set(classes)))

    def _text(self, data: str) -> None:
        if self._cell is not None:
            self._cell["parts"].append(data)
        for _tag, ident, _ in self._open:
            if ident:
                self.ids[ident].append(data)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append((tag, attrs))
        block = self._block(tag, attrs)
        if block:
            self._text(" ")
        if tag == "table" and attrs.get("id"):
            self._table = self.tables[attrs["id"]] = {"headers": [], "rows": []}
        elif tag == "tr" and self._table is not None:
            self._row = {"attrs": attrs, "cells": []}
        elif tag in ("td", "th") and self._row is not None:
            self._cell = {"tag": tag, "attrs": attrs, "parts": [], "classes": set((attrs.get("class") or "").split())}
        elif self._cell is not None:
            self._cell["classes"] |= set((attrs.get("class") or "").split())
        if tag not in VOID:
            if attrs.get("id"):
                self.ids[attrs["id"]] = []
            self._open.append((tag, attrs.get("id"), block))

    def handle_endtag(self, tag):
        while self._open:
            open_tag, _, block = self._open.pop()
            if block:
                self._text(" ")
            if open_tag == tag:
                break
        if tag in ("td", "th") and self._cell is not None:
            self._cell["text"] = " ".join("".join(self._cell.pop("parts")).split())
            self._row["cells"].append(self._cell)
            self._cell = None
        elif tag == "tr" and self._row is not None:
            cells = self._row["cells"]
            if all(c["tag"] == "th" for c in cells):
                self._table["headers"] = [c["text"] for c in cells]
            else:
                self._table["rows"].append(self._row)
            self._row = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        self._text(data)

    def text_of(self, ident: str) -> str:
        return " ".join("".join(self.ids[ident]).split())

    def imgs(self) -> list:
        return [a for t, a in self.tags if t == "img"]


def parse(text: str) -> Page:
    p = Page()
    p.feed(text)
    p.close()
    return p


def host_rows(doc: Page) -> dict:
    """host -> its row's cells' text, in page order."""
    rows = [r for r in doc.tables["hosts-table"]["rows"] if "host-row" in r["attrs"].get("class", "")]
    return {r["attrs"]["data-host"]: [c["text"] for c in r["cells"]] for r in rows}


def host_cells(doc: Page, host: str) -> dict:
    """header -> cell of one host's row."""
    table = doc.tables["hosts-table"]
    (row,) = [r for r in table["rows"] if r["attrs"].get("data-host") == host and "host-row" in r["attrs"]["class"]]
    return dict(zip(table["headers"], row["cells"]))


def table_texts(doc: Page, ident: str) -> list:
    return [[c["text"] for c in r["cells"]] for r in doc.tables[ident]["rows"]]


def png_pixels(b64: str):
    Image = pytest.importorskip("PIL.Image")
    return Image.open(io.BytesIO(base64.b64decode(b64))).convert("RGB")


def rgb(hex_colour: str) -> tuple:
    return tuple(int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))


def count_near(im, colour: tuple, tol: int = 8) -> int:
    return sum(n for n, c in im.getcolors(im.width * im.height) if all(abs(a - b) <= tol for a, b in zip(c, colour)))


# --------------------------------------------------------------------------- the tables


def test_header_run_times_exit_code_and_counts(doc):
    assert doc.text_of("run-id") == "20250101T000000Z"
    assert doc.text_of("verdict") == "FAIL"
    assert {r["cells"][0]["text"]: r["cells"][1]["text"] for r in doc.tables["meta"]["rows"]} == {
        "started": "2025-01-01T00:00:00+00:00", "finished": "2025-01-01T00:05:00+00:00", "exit code": "1",
        "counts": "9 hosts: 6 pass, 2 fail, 1 unreachable; 2 stragglers on 1 host; 2 regressions on 2 hosts; "
                  "exit code 1"}
    title = [t for t, _ in doc.tags if t == "title"]
    assert title == ["title"]


def test_hosts_table_one_row_per_host_with_status_state_and_gpus(doc):
    assert doc.tables["hosts-table"]["headers"] == HEADERS
    rows = host_rows(doc)
    assert [(h, r[1], r[2], r[3]) for h, r in rows.items()] == [
        ("n0", "pass", "ok", "4 × H100 80GB HBM3"), ("n1", "pass", "ok", "4 × H100 80GB HBM3"),
        ("n2", "pass", "ok", "4 × H100 80GB HBM3"), ("n3", "pass", "ok", "4 × H100 80GB HBM3"),
        ("n4", "fail", "ok", "4 × H100 80GB HBM3"), (SCRIPT, "fail", "ok", "4 × H100 80GB HBM3"),
        ("a0", "pass", "ok", "8 × A100-SXM4-80GB"), ("a1", "pass", "ok", "8 × A100-SXM4-80GB"),
        ("gone", "unreachable", "unreachable", "-")]
    assert [h for h, r in rows.items() if r[0] != h] == []
    # the status badge carries its colour class
    assert {h: sorted(c for c in host_cells(doc, h)["Status"]["classes"] if c.startswith("st-"))
            for h in ("n0", SCRIPT, "gone")} == {"n0": ["st-pass"], SCRIPT: ["st-fail"], "gone": ["st-unreachable"]}


def test_key_figures_with_fleet_and_reference_ratios(doc, summary):
    assert summary["key_figures"] == KEYS
    n4, n2, a0, gone = (host_cells(doc, h) for h in ("n4", "n2", "a0", "gone"))
    assert n4["bf16 TF/s"]["text"] == "350.0 ×0.50 ref ×0.54"  # 350 / median 700; 350 / achievable 650
    assert {"slow", "regressed"} <= n4["bf16 TF/s"]["classes"]
    assert host_cells(doc, "n0")["bf16 TF/s"]["text"] == "700.0 ×1.00 ref ×1.08"
    assert n2["DDP img/s"]["text"] == "2300 ×0.96"  # 2300 / median 2400
    assert "regressed" in n2["DDP img/s"]["classes"] and "slow" not in n2["DDP img/s"]["classes"]
    assert a0["bf16 TF/s"]["text"] == "240.0 ×1.00"  # no reference for the A100 here
    assert a0["H2D GB/s"]["text"] == "24.50 ×1.00"
    assert [gone[h]["text"] for h in HEADERS[4:9]] == ["-"] * 5
    flagged = {(h, k) for h in host_rows(doc) for k, c in host_cells(doc, h).items()
               if {"slow", "regressed"} & c["classes"]}
    assert flagged == {("n4", "bf16 TF/s"), ("n2", "DDP img/s")}


def test_straggler_and_regression_marks(doc):
    rows = host_rows(doc)
    straggler = {h: host_cells(doc, h)["Straggler"]["text"] for h in rows}
    regression = {h: host_cells(doc, h)["Regression"]["text"] for h in rows}
    assert {h: t for h, t in straggler.items() if t} == {
        "n4": "straggler matmul/bf16/tflops matmul/bf16/tflops:gpu2"}
    assert {h: t for h, t in regression.items() if t} == {
        "n2": "regression ddp/resnet50/images_per_s", "n4": "regression matmul/bf16/tflops:gpu2"}
    assert "badge" in host_cells(doc, "n4")["Straggler"]["classes"]
    assert "straggler" in host_cells(doc, "n4")["Straggler"]["classes"]
    assert "regression" in host_cells(doc, "n2")["Regression"]["classes"]


def test_failing_checks_and_messages_under_their_host(doc):
    details = [(r["attrs"]["data-host"], " ".join(c["text"] for c in r["cells"]).strip())
               for r in doc.tables["hosts-table"]["rows"] if r["attrs"].get("class") == "detail"]
    assert details == [(SCRIPT, 'collectives/allreduce_busbw fail: <b>busbw</b> 40 GB/s & "low"'),
                       ("gone", f"unreachable: {REFUSED}")]
    rows = doc.tables["hosts-table"]["rows"]
    order = [(r["attrs"]["data-host"], r["attrs"]["class"].split()[0]) for r in rows]
    assert order.index((SCRIPT, "detail")) == order.index((SCRIPT, "host-row")) + 1


def test_warning_checks_are_listed_too():
    reports = [node_report(h, [H100] * 4, metrics([700.0] * 4, 2400.0)) for h in ("w0", "w1")]
    reports.append(node_report("w2", [H100] * 4, metrics([700.0] * 4, 2400.0), checks=[
        {"name": "compute/matmul/bf16:gpu1", "status": "warn", "message": "bf16 at 61% of achievable"}]))
    summary = judge([arrived(r) for r in reports], META, reference={})
    doc = parse(page.render_html(summary))
    details = [(r["attrs"]["data-host"], r["cells"][1]["text"])
               for r in doc.tables["hosts-table"]["rows"] if r["attrs"].get("class") == "detail"]
    assert details == [("w2", "compute/matmul/bf16:gpu1 warn: bf16 at 61% of achievable")]
    assert host_rows(doc)["w2"][1] == "warn"


def test_stragglers_table_with_evidence(doc):
    assert doc.tables["stragglers-table"]["headers"] == ["Host", "GPU", "Metric", "Value", "Median", "Ratio", "z",
                                                         "Scope", "GPU model"]
    assert table_texts(doc, "stragglers-table") == [
        ["n4", "-", "matmul/bf16/tflops", "350.0", "700.0", "0.50", "MAD 0", "fleet", "H100 80GB HBM3"],
        ["n4", "gpu2", "matmul/bf16/tflops", "350.0", "700.0", "0.50", "MAD 0", "node", "H100 80GB HBM3"]]


def test_regressions_table_with_evidence(doc):
    assert doc.tables["regressions-table"]["headers"] == ["Host", "GPU", "Metric", "Value", "Baseline", "Ratio",
                                                          "Runs"]
    assert table_texts(doc, "regressions-table") == [
        ["n2", "-", "ddp/resnet50/images_per_s", "2300", "2500", "0.92", "5"],
        ["n4", "gpu2", "matmul/bf16/tflops", "350.0", "700.0", "0.50", "5"]]


def test_no_regressions_and_no_history_say_so():
    bare = make_summary(regressions=False)
    doc = parse(page.render_html(copy.deepcopy(bare)))
    assert "regressions-table" not in doc.tables
    assert doc.text_of("no-regressions") == "Not judged: this summary has no history to compare with."
    assert "regressions" not in {r["cells"][0]["text"] for r in doc.tables["meta"]["rows"]}
    assert [host_cells(doc, h)["Regression"]["text"] for h in host_rows(doc)] == [""] * 9
    assert bare["regressions"] == [] and bare["baseline"] is None  # judge's own: no history, nothing judged
    bare["baseline"] = {"threshold": 0.9, "window": 5, "min_runs": 3, "profile": "quick"}
    doc = parse(page.render_html(bare))
    assert doc.text_of("no-regressions") == "None."
    assert {r["cells"][0]["text"]: r["cells"][1]["text"] for r in doc.tables["meta"]["rows"]}["counts"].endswith(
        "; 0 regressions; exit code 1")


def test_a_clean_run():
    reports = [node_report(h, [H100] * 4, metrics([700.0] * 4, 2400.0)) for h in ("c0", "c1", "c2")]
    summary = judge([arrived(r) for r in reports], META, reference={})
    doc = parse(page.render_html(summary))
    assert doc.text_of("verdict") == "PASS"
    assert doc.text_of("no-stragglers") == "None."
    assert "stragglers-table" not in doc.tables
    assert [r[1] for r in host_rows(doc).values()] == ["pass"] * 3


def test_an_interrupted_run():
    runs = [arrived(node_report("i0", [H100] * 4, metrics([700.0] * 4, 2400.0))),
            HostRun("i1", HostState.INTERRUPTED, message="interrupted (Ctrl-C)")]
    summary = judge(runs, dict(META, interrupted=True), reference={})
    doc = parse(page.render_html(summary))
    assert doc.text_of("verdict") == "INTERRUPTED"
    assert "Interrupted (Ctrl-C): hosts that had not finished are marked interrupted." in doc.text_of("header")
    assert [(h, r[1], r[2]) for h, r in host_rows(doc).items()] == [("i0", "pass", "ok"),
                                                                    ("i1", "error", "interrupted")]


def test_an_empty_run_and_a_summary_read_back_from_json(summary):
    doc = parse(page.render_html(judge([], META, reference={})))
    assert "hosts-table" not in doc.tables
    assert doc.text_of("hosts") == "Hosts No host in this run."
    assert doc.text_of("verdict") == "FAIL"
    # summary.json is what `gpufleet report` reads: the same page from the JSON round trip
    assert page.render_html(json.loads(json.dumps(summary))) == page.render_html(summary)


# --------------------------------------------------------------------------- self-contained, escaped


def test_no_external_reference_of_any_kind(text, doc):
    assert not re.search(r"https?:", text, re.I)
    assert 'src="//' not in text and "src='//" not in text
    assert "url(" not in text and "@import" not in text and "@font-face" not in text
    assert {t for t, _ in doc.tags} & {"script", "link", "iframe", "object", "embed", "svg"} == set()
    for tag, attrs in doc.tags:
        for name in ("src", "href", "srcset", "action", "data"):
            if name in attrs:
                assert tag == "img" and name == "src" and attrs[name].startswith("data:image/png;base64,"), (tag, name)
    assert re.search(r"<style>.*</style>", text, re.S)


def test_strings_from_the_summary_are_escaped(text, doc):
    assert SCRIPT not in text and "<b>busbw" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "script" not in {t for t, _ in doc.tags}
    assert SCRIPT in host_rows(doc)
    hostile = 'x" onmouseover="alert(1)'
    summary = make_summary()
    summary["run_id"] = "</title><script>alert(2)</script>"
    summary["hosts"][hostile] = dict(summary["hosts"].pop("gone"), message="<img src=x onerror=alert(3)>")
    summary["stragglers"][0]["host"] = "<i>s</i>"
    summary["regressions"][0]["metric"] = "<u>m</u>"
    out = page.render_html(summary)
    doc = parse(out)
    assert {t for t, _ in doc.tags} & {"script", "i", "u"} == set()
    assert all(not k.startswith("on") for _, a in doc.tags for k in a)
    assert [a["src"][:22] for a in doc.imgs()] == ["data:image/png;base64,"] * len(doc.imgs())
    assert doc.text_of("run-id") == "</title><script>alert(2)</script>"
    assert list(host_rows(doc))[-1] == hostile
    details = {r["attrs"]["data-host"]: r["cells"][1]["text"]
               for r in doc.tables["hosts-table"]["rows"] if r["attrs"].get("class") == "detail"}
    assert details[hostile] == "unreachable: <img src=x onerror=alert(3)>"
    assert table_texts(doc, "stragglers-table")[0][0] == "<i>s</i>"
    assert table_texts(doc, "regressions-table")[0][2] == "<u>m</u>"


def test_host_names_matplotlib_would_read_as_math(summary):
    """A ``$`` pair in a host name would be mathtext for matplotlib (an unpaired one an error): the plots escape it."""
    odd = copy.deepcopy(summary)
    names = {"n0": "cost$1$x", "n1": "bad$\\frac{$node"}  # the second is no mathtext matplotlib can parse
    odd["hosts"] = {names.get(h, h): e for h, e in odd["hosts"].items()}
    trends = {name: TRENDS["n0"] for name in names.values()}
    doc = parse(page.render_html(odd, trends))
    assert not [a for t, a in doc.tags if "plot-error" in a.get("class", "")]
    assert len(doc.imgs()) == len(KEYS) + 2


# --------------------------------------------------------------------------- plots


def test_plots_one_per_key_figure_and_one_per_host_with_history(doc):
    figures = [a["class"] for t, a in doc.tags if t == "figure"]
    assert figures.count("plot distribution") == len(KEYS)
    assert figures.count("plot trend") == 3  # n0, n2, n4; a host not in this run is not drawn
    assert len(doc.imgs()) == len(KEYS) + 3
    assert "plots-note" not in doc.ids
    alts = [a["alt"] for a in doc.imgs()]
    assert alts == ["bf16 TF/s per host", "D2D GB/s per host", "H2D GB/s per host", "AR busbw GB/s per host",
                    "DDP img/s per host", "trends of n0", "trends of n2", "trends of n4"]
    for a in doc.imgs():
        im = png_pixels(a["src"].split(",", 1)[1])
        assert (im.width, im.height) == (int(a["width"]), int(a["height"]))
        assert len(im.getcolors(im.width * im.height)) > 50  # drawn, not blank


def test_distribution_plots_highlight_stragglers_and_regressions(doc):
    imgs = {a["alt"]: png_pixels(a["src"].split(",", 1)[1]) for a in doc.imgs()}
    straggler, regression, host = (rgb(c) for c in (page.STRAGGLER_COLOUR, page.REGRESSION_COLOUR, page.HOST_COLOUR))
    bf16, d2d, ddp = imgs["bf16 TF/s per host"], imgs["D2D GB/s per host"], imgs["DDP img/s per host"]
    assert count_near(bf16, straggler) > 30  # n4, a straggler (and regressed: a ring), and its legend entry
    assert count_near(bf16, regression) > 30
    assert count_near(ddp, regression) > 30 and count_near(ddp, straggler) == 0  # n2 regressed, nobody straggles
    assert count_near(d2d, straggler) == 0 and count_near(d2d, regression) == 0
    assert count_near(d2d, host) > 100
    # the trend of a regressed metric ends in the regression colour; a steady host's does not
    assert count_near(imgs["trends of n2"], regression) > 15
    assert count_near(imgs["trends of n0"], regression) == 0


def test_trend_plots_are_capped_urgent_hosts_first(summary, monkeypatch):
    monkeypatch.setattr(page, "MAX_TREND_HOSTS", 1)
    doc = parse(page.render_html(summary, TRENDS))
    assert [a["alt"] for a in doc.imgs()][len(KEYS):] == ["trends of n2"]  # regressed, before steady n0
    assert "2 more hosts with a history not drawn here: see gpufleet history." in doc.text_of("plots")


def test_trends_read_for_the_drawn_hosts_only_count_the_others_from_the_history(summary, monkeypatch):
    monkeypatch.setattr(page, "MAX_TREND_HOSTS", 1)
    only = {"n2": TRENDS["n2"]}  # what read_trends gives for a cap of 1: the first in trend_order
    assert trend_order(summary, *flags(summary))[0] == "n2"
    doc = parse(page.render_html(summary, only, trend_total=40))
    assert [a["alt"] for a in doc.imgs()][len(KEYS):] == ["trends of n2"]
    assert "39 more hosts with a history not drawn here: see gpufleet history." in doc.text_of("plots")


def test_no_trends_no_trend_plots(summary):
    for trends in (None, {}, {"n0": {}}, {"n0": {"matmul/bf16/tflops": [["2025-01-01T00:00:00Z", None]]}}):
        doc = parse(page.render_html(summary, trends))
        assert len(doc.imgs()) == len(KEYS)
        assert "No history for these hosts yet." in doc.text_of("plots")


def test_trend_times_that_are_not_iso_fall_back_to_run_order(summary):
    trends = {"n0": {"matmul/bf16/tflops": [["run 1", 690.0], ["run 2", 700.0]]}}
    doc = parse(page.render_html(summary, trends))
    assert [a["alt"] for a in doc.imgs()][len(KEYS):] == ["trends of n0"]


def test_a_plot_that_fails_costs_only_itself(summary, monkeypatch):
    def boom(*args, **kwargs):
        raise ValueError("no room")
    monkeypatch.setattr(plots, "distribution", boom)
    doc = parse(page.render_html(summary, TRENDS))
    errors = [a for t, a in doc.tags if "plot-error" in a.get("class", "")]
    assert len(errors) == len(KEYS)
    assert "bf16 TF/s per host: not drawn (ValueError: no room)" in doc.text_of("plots")
    assert len(doc.imgs()) == 3
    assert len(host_rows(doc)) == 9


def _without_matplotlib(monkeypatch):
    real_import = builtins.__import__

    def blocked(name, *args, **kwargs):
        if name == "matplotlib" or name.startswith("matplotlib."):
            raise ImportError(f"No module named {name!r} (blocked by the test)")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", blocked)


def test_without_matplotlib_the_tables_stay_and_one_line_says_why(summary, doc, monkeypatch):
    _without_matplotlib(monkeypatch)
    text = page.render_html(summary, TRENDS)
    bare = parse(text)
    assert bare.text_of("plots-note") == ("Plots need matplotlib: from the gpufleet checkout, pip install -e "
                                          "'.[report]' (an installed package: pip install matplotlib).")
    assert text.count(".[report]") == 1
    assert bare.imgs() == [] and "<svg" not in text and "<img" not in text
    assert "data:image" not in text
    for ident in ("hosts-table", "stragglers-table", "regressions-table", "meta"):
        assert bare.tables[ident] == doc.tables[ident]


def test_importing_the_module_never_imports_matplotlib(tmp_path):
    """In a fresh interpreter where matplotlib cannot be imported at all, the module imports and writes a page."""
    code = ("import sys; sys.modules['matplotlib'] = None\n"
            "from fleet.outputs import html\n"
            "assert sys.modules['matplotlib'] is None\n"
            "summary = {'run_id': 'r', 'exit_code': 1, 'counts': {'hosts': 0}, 'hosts': {}, 'key_figures': []}\n"
            f"path = html.write_summary_html({str(tmp_path)!r}, summary)\n"
            "print(path.read_text().count(\"Plots need matplotlib: from the gpufleet checkout\"))\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "1"
    probe = subprocess.run([sys.executable, "-c", "import sys; import fleet.outputs.html; "
                            "print('matplotlib' in sys.modules)"], capture_output=True, text=True, cwd=ROOT, env=env,
                           timeout=120)
    assert probe.stdout.strip() == "False", probe.stderr


# --------------------------------------------------------------------------- the file


def test_write_summary_html_atomically(tmp_path, summary, monkeypatch):
    run_dir = tmp_path / "20250101T000000Z"
    run_dir.mkdir()
    path = page.write_summary_html(run_dir, summary, TRENDS)
    assert path == run_dir / "summary.html"
    assert path.read_text(encoding="utf-8") == page.render_html(summary, TRENDS)
    assert sorted(p.name for p in run_dir.iterdir()) == ["summary.html"]  # no temporary file left behind
    replaced = []
    real_replace = os.replace

    def replace(src, dst):
        replaced.append((Path(src), Path(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    page.write_summary_html(str(run_dir), summary)
    ((src, dst),) = replaced
    assert dst == path and src.parent == run_dir and src.name.startswith(".summary.html.")
    assert "trends of" not in path.read_text(encoding="utf-8")


# --------------------------------------------------------------------------- a real browser


def chromium(*args: str, tmp_path: Path) -> subprocess.CompletedProcess:
    exe = shutil.which("chromium")
    return subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
                           "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'chromium-profile'}", *args],
                          capture_output=True, timeout=120, cwd=tmp_path)


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not installed (apt-get install chromium)")
def test_chromium_renders_the_page(tmp_path, summary, doc):
    Image = pytest.importorskip("PIL.Image")
    path = page.write_summary_html(tmp_path, summary, TRENDS)
    url = path.resolve().as_uri()

    dom = chromium("--dump-dom", url, tmp_path=tmp_path)
    assert dom.returncode == 0, dom.stderr.decode(errors="replace")[-2000:]
    seen = parse(dom.stdout.decode())
    assert host_rows(seen) == host_rows(doc)  # the browser's DOM has the tables the page was written with
    assert table_texts(seen, "stragglers-table") == table_texts(doc, "stragglers-table")
    assert table_texts(seen, "regressions-table") == table_texts(doc, "regressions-table")
    assert "script" not in {t for t, _ in seen.tags}
    assert len(seen.imgs()) == len(KEYS) + 3

    shot = tmp_path / "summary.png"
    run = chromium(f"--screenshot={shot}", "--window-size=1280,2000", url, tmp_path=tmp_path)
    assert run.returncode == 0 and shot.exists(), run.stderr.decode(errors="replace")[-2000:]
    im = Image.open(shot).convert("RGB")
    assert im.size == (1280, 2000)
    colours = im.getcolors(im.width * im.height)
    assert len(colours) > 500  # text, badges, tables and plots; a blank or error page has a handful
    white = sum(n for n, c in colours if min(c) >= 250)
    assert white < 0.93 * im.width * im.height
    assert count_near(im, rgb(page.STRAGGLER_COLOUR), tol=6) > 200  # the straggler badge and figure cell edge
    assert count_near(im, rgb(page.REGRESSION_COLOUR), tol=6) > 200
    for status in ("pass", "fail"):  # the status badges' backgrounds (unreachable's grey is the plots' borders' too)
        assert count_near(im, rgb(page.STATUS_COLOURS[status][1]), tol=3) > 100, status
