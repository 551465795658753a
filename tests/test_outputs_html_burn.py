"""The table under sustained load tints the figure that made a burn or telemetry check warn or fail
(fleet/outputs/series.py ``burn_marks``, ``telemetry_marks``), by verify's own rule: the checks here are made by
``verify.burn.stability`` (where torch is installed) and ``verify.telemetry.judge`` themselves, from synthetic
series (no GPU ran)."""

from __future__ import annotations

import pytest

from fleet.outputs import html as page, series
from fleet.runs.verdict import judge
from tests.report_builder import arrived, node_report
from tests.test_outputs_html import META, parse, table_texts

STEADY = [700.0] * 16
SAGGED = [700.0] * 8 + [600.0] * 8  # last quarter 600 / first 700 = 0.86
VARIED = [560.0, 840.0, 700.0, 700.0] * 4  # steady quarters, (p95 - p5) / median = 0.40
BOTH = [700.0, 720.0, 690.0, 710.0] * 2 + [500.0, 640.0, 440.0, 600.0] * 2  # sagged and varied


def verify_burn():
    return pytest.importorskip("verify.burn", reason="verify.burn needs torch")


def burn_check(samples: list, achievable=None) -> dict:
    """The check verify.burn.run writes for a series (its name, status, message and details)."""
    burn = verify_burn()
    status, message, figs = burn.stability(samples, achievable)
    return {"name": "burn/bf16:gpu0", "status": status, "message": message, "device": "gpu0",
            "details": {"series_tflops": burn.downsample(samples), "interval_s": 1.0,
                        **{k: (round(v, 4) if isinstance(v, float) else v) for k, v in figs.items()}}}


def test_the_thresholds_are_verify_burns():
    burn = verify_burn()
    assert (series.SAG, series.SPREAD) == (burn.SAG, burn.SPREAD)


@pytest.mark.parametrize("samples, achievable, status, marks, words", [
    (STEADY, None, "pass", {}, []),
    (STEADY, 750.0, "pass", {}, []),
    (SAGGED, None, "warn", {"sag": 1}, ["sagged"]),
    (VARIED, None, "warn", {"spread": 1}, ["varied"]),
    (BOTH, None, "warn", {"sag": 1, "spread": 1}, ["sagged", "varied"]),
    (STEADY, 1000.0, "warn", {"median": 1}, ["of the reference"]),  # 70 % of the reference
    (STEADY, 2000.0, "fail", {"median": 2}, ["of the reference"]),  # 35 %: fails
    (SAGGED, 1000.0, "warn", {"median": 1, "sag": 1}, ["of the reference", "sagged"]),
])
def test_the_marks_name_what_the_burn_said(samples, achievable, status, marks, words):
    check = burn_check(samples, achievable)
    assert check["status"] == status
    assert series.burn_marks(check) == marks
    for word in ("of the reference", "sagged", "varied"):
        assert (word in check["message"]) == (word in words), (word, check["message"])


def test_a_short_burn_is_not_judged_on_its_sag():
    check = {"name": "burn/bf16:gpu0", "status": "warn", "details": {
        "series_tflops": [700.0, 500.0, 400.0], "samples": 3, "first_quarter": 700.0, "last_quarter": 400.0,
        "spread": 0.5, "median": 500.0, "reference_ratio": 0.7}}
    assert series.burn_marks(check) == {"median": 1}  # fewer than 4 samples: verify judges no sag nor spread


def test_a_variability_warning_tints_the_spread_cell_alone():
    check = burn_check(VARIED)
    report = node_report("v0", ["NVIDIA H100 80GB HBM3"], {"burn/bf16/tflops:gpu0": 700.0},
                         checks=[{"name": "env/torch", "status": "pass", "message": "torch 2.4.0"}, check])
    summary = judge([arrived(report)], META, reference={})
    doc = parse(page.render_html(summary, None, page.series_checks({"v0": report})))
    table = doc.tables["sustained-table-0"]
    assert table["headers"] == ["Device", "Status", "bf16 TF/s", "bf16 last/first", "bf16 spread"]
    assert table_texts(doc, "sustained-table-0") == [["gpu0", "warn bf16 warn", "700.0", "1.00", "0.40"]]
    (row,) = table["rows"]
    assert [sorted({"slow", "regressed"} & c["classes"]) for c in row["cells"][2:]] == [[], [], ["regressed"]]


# --------------------------------------------------------------------------- telemetry, by verify.telemetry.judge


def telemetry_check(samples: list) -> dict:
    """The check verify.telemetry.checks writes for one GPU's samples (verify.telemetry needs no torch)."""
    from verify import telemetry
    status, message, figs = telemetry.judge(telemetry.Series(samples))
    return {"name": "telemetry:gpu0", "status": status, "message": message, "device": "gpu0",
            "details": {**figs, "series": {"temp_c": [s["temp_c"] for s in samples]}, "period_s": 1.0}}


def sample(reasons: int = 0, sm: int = 1980, temp: int = 70, util: int = 100) -> dict:
    return {"temp_c": temp, "power_w": 650.0, "sm_mhz": sm, "sm_max_mhz": 1980, "reasons": reasons, "util_pct": util}


@pytest.mark.parametrize("samples, status, marks", [
    ([sample()] * 8, "pass", {}),
    ([sample()] * 6 + [sample(reasons=0x40, temp=92)] * 2, "fail", {"temp_c": 2}),  # HW thermal slowdown
    ([sample()] * 6 + [sample(reasons=0x80)] * 2, "fail", {"power_w": 2}),  # HW power brake
    ([sample()] * 6 + [sample(reasons=0x8, sm=900)] * 2, "fail", {"sm_mhz": 2}),  # HW slowdown
    ([sample()] * 6 + [sample(reasons=0x20, temp=88)] * 2, "warn", {"temp_c": 1}),  # SW thermal slowdown
    ([sample(sm=1400)] * 8, "warn", {"sm_mhz": 1}),  # mean SM clock 71 % of its maximum
    ([sample(util=10)] * 8, "warn", {}),  # never under load: no figure to blame
])
def test_the_telemetry_marks_name_what_the_check_said(samples, status, marks):
    check = telemetry_check(samples)
    assert check["status"] == status, check["message"]
    assert series.telemetry_marks(check) == marks
