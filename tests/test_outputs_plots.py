"""summary.html's plots that do not mislead (fleet/outputs/distribution.py, trends.py, plots.py): failed and errored
hosts out of the distributions and their medians, no distribution of fewer than three hosts, no trend of one point,
trend axes that span the runs.  The page is read back with html.parser; the figures are checked on matplotlib's own
objects (their axes' limits) and in the PNG's pixels.

Every figure here is synthetic, made up for the test (no GPU ran): the outputs asserted are exact."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from fleet.outcome import HostState
from fleet.outputs import distribution, html as page, plots, trends
from fleet.runs.record import HostRun
from fleet.runs.verdict import judge
from tests.report_builder import arrived, node_report
from tests.test_outputs_html import (H100, META, SCRIPT, count_near, host_rows, make_summary, metrics, parse,
                                     png_pixels, rgb)

BF16 = "matmul/bf16/tflops"
ERROR_CHECK = {"name": "memory/d2d", "status": "error", "message": "RuntimeError: CUDA error: an illegal access"}
FAIL_CHECK = {"name": "collectives/allreduce_busbw", "status": "fail", "message": "busbw 40 GB/s < 200"}


def groups_rows(doc, index: int = 0) -> dict:
    """model -> (hosts in the distribution, the Hosts cell, the Median cell, the Left out cell)."""
    out = {}
    for r in doc.tables[f"distribution-{index}"]["rows"]:
        cells = [c["text"] for c in r["cells"]]
        out[r["attrs"]["data-model"]] = (json.loads(r["attrs"]["data-hosts"]), cells[1], cells[2], cells[3])
    return out


def distribution_alts(doc) -> list:
    return [a["alt"] for a in doc.imgs() if a["alt"].endswith(" per host")]


# --------------------------------------------------------------------------- who is in a distribution


def failing_fleet() -> dict:
    """Three H100 hosts that passed (700, 690, 680 TF/s), one that failed a check (100) and one that erred (90):
    the summary's fleet median and the distribution both count the three that did not fail (690)."""
    good = [node_report(h, [H100] * 4, metrics([v] * 4, 2400.0)) for h, v in (("p0", 700.0), ("p1", 690.0),
                                                                               ("p2", 680.0))]
    bad = [node_report("f0", [H100] * 4, metrics([100.0] * 4, 2400.0), checks=[FAIL_CHECK]),
           node_report("e0", [H100] * 4, metrics([90.0] * 4, 2400.0), checks=[ERROR_CHECK])]
    runs = [arrived(r) for r in good + bad] + [HostRun("gone", HostState.UNREACHABLE, message="refused")]
    return judge(runs, META, reference={})


def test_failed_and_errored_hosts_are_out_of_the_distribution_and_its_median():
    summary = failing_fleet()
    assert {h: e["status"] for h, e in summary["hosts"].items()} == {
        "p0": "pass", "p1": "pass", "p2": "pass", "f0": "fail", "e0": "error", "gone": "unreachable"}
    assert summary["fleet"][H100]["metrics"][BF16]["median"] == 690.0  # the verdict's median: the same three hosts
    assert summary["hosts"]["f0"]["metrics"][BF16]["fleet_ratio"] == round(100.0 / 690.0, 4)  # measured against them
    assert summary["stragglers"] == []  # a failed host's figure is not a straggler: its check already failed it
    (group,) = distribution.groups(summary, BF16)
    assert group.hosts == (("p0", 700.0), ("p1", 690.0), ("p2", 680.0))
    assert group.excluded == (("f0", "fail", 100.0), ("e0", "error", 90.0))
    assert group.drawn and group.median == 690.0

    doc = parse(page.render_html(summary))
    assert groups_rows(doc) == {H100: (["p0", "p1", "p2"], "3", "690.0", "f0 fail 100.0 e0 error 90.00")}
    assert doc.tables["distribution-0"]["headers"] == ["GPU model", "Hosts", "Median", "Left out (failed, errored)"]
    assert distribution_alts(doc)[0] == "bf16 TF/s per host"


def test_the_failed_hosts_are_crosses_of_their_own_colour():
    summary = failing_fleet()
    doc = parse(page.render_html(summary))
    imgs = {a["alt"]: png_pixels(a["src"].split(",", 1)[1]) for a in doc.imgs()}
    assert count_near(imgs["bf16 TF/s per host"], rgb(page.EXCLUDED_COLOUR)) > 40  # two crosses and the legend's
    clean = parse(page.render_html(make_clean()))
    imgs = {a["alt"]: png_pixels(a["src"].split(",", 1)[1]) for a in clean.imgs()}
    assert count_near(imgs["bf16 TF/s per host"], rgb(page.EXCLUDED_COLOUR)) == 0


def make_clean() -> dict:
    reports = [node_report(h, [H100] * 4, metrics([700.0] * 4, 2400.0)) for h in ("c0", "c1", "c2")]
    return judge([arrived(r) for r in reports], META, reference={})


def test_the_fleet_of_the_page_tests_by_model():
    """Six H100 hosts, <script> failing (its figures in no median); two A100 hosts: too few for a distribution."""
    doc = parse(page.render_html(make_summary()))
    assert groups_rows(doc) == {
        H100: (["n0", "n1", "n2", "n3", "n4"], "5", "700.0", f"{SCRIPT} fail 700.0"),
        "NVIDIA A100-SXM4-80GB": ([], "2 too few for a distribution (3 needed): a0 240.0, a1 240.0", "-", "")}
    ddp = groups_rows(doc, 4)  # DDP img/s: n0 2400, n1 2450, n2 2300, n3 2420, n4 2380; <script> 2400 left out
    assert ddp[H100] == (["n0", "n1", "n2", "n3", "n4"], "5", "2400", f"{SCRIPT} fail 2400")
    assert len(distribution_alts(doc)) == 5


def test_fewer_than_three_hosts_of_a_model_draw_no_distribution():
    one = judge([arrived(node_report("solo", [H100] * 4, metrics([700.0] * 4, 2400.0)))], META, reference={})
    doc = parse(page.render_html(one))
    assert distribution_alts(doc) == []
    assert doc.text_of("no-distribution-0") == ("bf16 TF/s: no distribution, fewer than 3 hosts of a GPU model "
                                                "that did not fail.")
    assert groups_rows(doc)[H100] == ([], "1 too few for a distribution (3 needed): solo 700.0", "-", "")
    assert list(host_rows(doc)) == ["solo"]  # the host table is there all the same


def test_three_hosts_one_failed_is_two_and_no_distribution():
    reports = [node_report(h, [H100] * 4, metrics([700.0] * 4, 2400.0)) for h in ("t0", "t1")]
    reports.append(node_report("t2", [H100] * 4, metrics([300.0] * 4, 2400.0), checks=[FAIL_CHECK]))
    doc = parse(page.render_html(judge([arrived(r) for r in reports], META, reference={})))
    assert distribution_alts(doc) == []
    assert groups_rows(doc)[H100] == ([], "2 too few for a distribution (3 needed): t0 700.0, t1 700.0",
                                      "-", "t2 fail 300.0")


def test_many_hosts_left_out_are_named_up_to_ten():
    reports = [node_report(f"g{i}", [H100] * 4, metrics([700.0] * 4, 2400.0)) for i in range(3)]
    reports += [node_report(f"x{i:02}", [H100] * 4, metrics([10.0] * 4, 2400.0), checks=[FAIL_CHECK])
                for i in range(12)]
    doc = parse(page.render_html(judge([arrived(r) for r in reports], META, reference={})))
    hosts, count, median, left = groups_rows(doc)[H100]
    assert (hosts, count, median) == (["g0", "g1", "g2"], "3", "700.0")
    assert left == " ".join(f"x{i:02} fail 10.00" for i in range(10)) + " and 2 more hosts"


def test_a_status_the_page_does_not_know_is_left_out():
    assert [distribution.counts({"status": s}) for s in ("pass", "warn", "skipped", "fail", "error", "unreachable",
                                                         "bogus", None)] == [True, True, True, False, False, True,
                                                                             False, False]


def test_a_host_failed_for_its_figures_alone_stays_in_the_distribution():
    slow = {"status": "fail", "state": "ok", "reasons": [
        {"kind": "straggler", "status": "fail", "message": "straggler"},
        {"kind": "regression", "status": "fail", "message": "regression"}]}
    broken = {"status": "fail", "state": "ok", "reasons": [
        {"kind": "straggler", "status": "fail", "message": "straggler"},
        {"kind": "check", "status": "fail", "name": "compute/matmul_correct", "message": "wrong"}]}
    assert (distribution.counts(slow), distribution.counts(broken)) == (True, False)


# --------------------------------------------------------------------------- trends


DAYS = ["2024-12-30T00:00:00+00:00", "2024-12-31T00:00:00+00:00", "2025-01-01T00:00:00+00:00"]


def test_a_trend_needs_two_points():
    assert trends.host_series({BF16: [[DAYS[0], 700.0]], "memory/d2d/gbps": [[DAYS[0], 1.0], [DAYS[1], 2.0]],
                               "x": [[DAYS[0], None], [DAYS[1], 3.0]]}) == {
        "memory/d2d/gbps": [(dt.datetime(2024, 12, 30), 1.0), (dt.datetime(2024, 12, 31), 2.0)]}
    assert trends.host_series({BF16: [[DAYS[0], 700.0]]}) == {}
    assert trends.host_series(None) == {}


def test_no_trend_figure_from_one_point():
    summary = make_summary()
    one = {"n0": {BF16: [[DAYS[2], 700.0]]}, "n2": {BF16: [[DAYS[2], 700.0]], "memory/d2d/gbps": [[DAYS[2], 3000]]}}
    doc = parse(page.render_html(summary, one))
    assert [a["alt"] for a in doc.imgs() if a["alt"].startswith("trends of")] == []
    assert "No history for these hosts yet. A trend needs two runs of a host." in doc.text_of("plots")
    two = dict(one, n4={BF16: [[DAYS[1], 700.0], [DAYS[2], 350.0]]})
    doc = parse(page.render_html(summary, two))
    assert [a["alt"] for a in doc.imgs() if a["alt"].startswith("trends of")] == ["trends of n4"]


def test_the_x_axis_spans_the_runs():
    day = dt.timedelta(days=1)
    pts = [(dt.datetime(2024, 12, 30), 1.0), (dt.datetime(2025, 1, 1), 2.0)]
    xs, dated, (lo, hi) = trends.x_axis(pts)
    assert dated and xs == [p[0] for p in pts]
    assert (lo, hi) == (dt.datetime(2024, 12, 30) - 0.12 * day, dt.datetime(2025, 1, 1) + 0.12 * day)
    same = [(dt.datetime(2025, 1, 1), 1.0), (dt.datetime(2025, 1, 1), 2.0)]  # one time: the run order
    assert trends.x_axis(same) == ([0, 1], False, (-0.06, 1.06))
    assert trends.x_axis([(None, 1.0), (dt.datetime(2025, 1, 1), 2.0), (None, 3.0)]) == ([0, 1, 2], False,
                                                                                        (-0.12, 2.12))


def test_the_drawn_trend_axes_span_the_runs_not_years(monkeypatch):
    """The figure's own axes: from the first run to the last (two days here), whatever matplotlib would pick."""
    pytest.importorskip("matplotlib")
    drawn = []
    real_png = plots.Mpl.png

    def keep(fig):
        drawn.append(fig)
        return real_png(fig)

    monkeypatch.setattr(plots.Mpl, "png", staticmethod(keep))
    t = {"n0": {BF16: [[d, v] for d, v in zip(DAYS, (700.0, 701.0, 699.0))],
                "memory/d2d/gbps": [[DAYS[1], 3000.0], [DAYS[2], 2990.0]]}}
    doc = parse(page.render_html(make_summary(), t))
    assert [a["alt"] for a in doc.imgs() if a["alt"].startswith("trends of")] == ["trends of n0"]
    (fig,) = [f for f in drawn if f.get_suptitle() == "n0"]
    from matplotlib import dates
    spans = [tuple(dates.num2date(x).replace(tzinfo=None) for x in ax.get_xlim()) for ax in fig.axes]
    assert [round((s[1] - s[0]).total_seconds()) for s in spans] == [round(2 * 1.12 * 86400), round(1.12 * 86400)]
    assert [s[0] for s in spans] == [dt.datetime(2024, 12, 30) - dt.timedelta(days=0.12),
                                     dt.datetime(2024, 12, 31) - dt.timedelta(days=0.06)]
    assert [ax.get_title() for ax in fig.axes] == ["bf16 TF/s", "D2D GB/s"]
