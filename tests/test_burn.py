"""The burn (verify/burn.py) and telemetry under load (verify/telemetry.py): the loop on the CPU with a planted
corruption, and the pure rules on synthetic series with exact answers."""

from __future__ import annotations

import pytest
import torch

from verify import burn, telemetry
from verify.profiles import DURATION, make

CPU = torch.device("cpu")


def test_a_planted_corruption_fails_the_burn_at_its_interval_and_stops_it():
    # the budget (an hour) never ends the loop: only the corruption planted in interval 3 does, however slow the
    # machine; the burn stops there with one sample per interval it ran
    r = burn.burn(CPU, "fp32", 96, seconds=3600.0, interval_s=0.05, check_every=10, corrupt_at=3)
    assert r.corrupt_at == 3 and len(r.samples) == r.corrupt_at and r.checks_done == 1
    assert r.max_error == pytest.approx(1.0, rel=1e-6) and r.seconds < 3600.0
    metrics, checks = burn.run(CPU, "cpu0", seconds=3600.0, n=96, ref=None, interval_s=0.05, check_every=10,
                               corrupt_at=3)
    by = {c["name"]: c for c in checks}
    assert by["burn/correct/fp32:cpu0"]["status"] == "fail"
    assert "the product changed at interval 3" in by["burn/correct/fp32:cpu0"]["message"]
    assert "silent data corruption" in by["burn/correct/fp32:cpu0"]["message"]


def test_a_clean_burn_checks_its_product_and_samples_every_interval():
    # asserts on what the burn recorded, never on how many intervals a (busy) machine fits in the budget
    r = burn.burn(CPU, "fp32", 96, seconds=0.3, interval_s=0.05, check_every=4)
    assert r.corrupt_at is None and r.samples and all(v > 0 for v in r.samples)
    assert r.checks_done == len(r.samples) // 4 + (len(r.samples) % 4 != 0)  # every 4th interval and the last
    assert r.seconds >= 0.3 and r.max_error <= burn.TOLERANCE["fp32"]
    metrics, checks = burn.run(CPU, "cpu0", seconds=0.3, n=96, ref=None, interval_s=0.05, check_every=4)
    by = {c["name"]: c for c in checks}
    assert by["burn/correct/fp32:cpu0"]["status"] == "pass"
    details = by["burn/fp32:cpu0"]["details"]
    assert len(details["series_tflops"]) == details["samples"] and all(v > 0 for v in details["series_tflops"])
    assert details["median"] == burn.keep_digits(metrics["burn/fp32/tflops:cpu0"]) and details["median"] > 0
    assert metrics["burn/fp32/seconds:cpu0"] >= 0.3


def test_a_slow_machines_series_keeps_its_digits():
    # a 2-core CPU under load did 96^3 matmuls at a few MFLOP/s: 4 decimals of TFLOP/s made its series 0.0
    assert burn.downsample([2.345678e-6, 1.5e-7, 0.0]) == [2.346e-06, 1.5e-07, 0.0]
    assert burn.keep_digits(712.34567) == 712.3457 and burn.keep_digits(0.012345) == 0.01235


def test_stability_rules_on_exact_series():
    steady = [100.0, 101.0, 99.0, 100.0, 100.5, 99.5, 100.0, 100.0]
    assert burn.stability(steady)[0] == "pass"
    sagging = [100.0] * 4 + [95.0] * 4 + [85.0] * 4 + [80.0] * 4
    status, message, figs = burn.stability(sagging)
    assert status == "warn" and message.startswith("sagged from 100 to 80 TFLOP/s (80% of the start)")
    assert figs["first_quarter"] == 100.0 and figs["last_quarter"] == 80.0
    jumpy = [100.0, 60.0, 100.0, 140.0, 100.0, 60.0, 100.0, 140.0]
    status, message, _ = burn.stability(jumpy)
    assert status == "warn" and message.startswith("varied by 80%")
    assert burn.stability(steady, ref_achievable=250.0)[0] == "fail"  # 40 % of the reference: below 50 %
    assert burn.stability(steady, ref_achievable=110.0)[0] == "pass"
    assert burn.stability(steady, ref_achievable=140.0)[0] == "warn"  # 71 %: below 80 %
    assert burn.stability([])[0] == "skip"


def test_downsample_keeps_the_shape():
    assert burn.downsample([1.0, 2.0, 3.0]) == [1.0, 2.0, 3.0]
    assert burn.downsample(list(range(10)), points=5) == [0.5, 2.5, 4.5, 6.5, 8.5]
    assert len(burn.downsample([1.0] * 1000)) == burn.MAX_POINTS


def _samples(n, reasons=0, sm=1980, sm_max=1980, temp=70, power=650.0):
    return telemetry.Series([{"t": i, "temp_c": temp + i % 3, "hbm_temp_c": 80, "power_w": power, "sm_mhz": sm,
                              "mem_mhz": 2619, "sm_max_mhz": sm_max, "reasons": reasons} for i in range(n)])


def test_only_samples_under_load_make_the_clock_and_power_figures():
    # synthetic: 3 idle samples (the burn's set-up: 0 % utilisation, 345 MHz, 70 W) before 7 under load
    series = _samples(10, sm=1755, power=690.0)
    for i, x in enumerate(series.samples):
        x["util_pct"] = 0 if i < 3 else 100
        if i < 3:
            x.update(sm_mhz=345, power_w=70.0, temp_c=35)
    status, message, figs = telemetry.judge(series)
    assert status == "pass" and message == ("no throttling under load: max 72 C (HBM 80 C), mean 690.0 W, "
                                            "mean SM clock 1755 MHz")
    assert figs["loaded_samples"] == 7 and figs["samples"] == 10 and figs["max_temp_c"] == 72
    for x in series.samples:  # the same samples where NVML gave no utilisation: the idle ones drag the mean down
        x["util_pct"] = None
    status, message, figs = telemetry.judge(series)
    assert status == "warn" and figs["mean_sm_mhz"] == round((3 * 345 + 7 * 1755) / 10, 1) == 1332.0
    assert "mean SM clock 1332 MHz below 80% of its maximum 1980 MHz" in message
    for x in series.samples:
        x["util_pct"] = 12
    status, message, figs = telemetry.judge(series)
    assert status == "warn" and message.startswith("the GPU never reached 80% utilisation in 10 samples")
    assert figs["loaded_samples"] == 0 and figs["mean_sm_mhz"] is None and figs["mean_power_w"] is None


def test_telemetry_judgement():
    status, message, figs = telemetry.judge(_samples(10))
    assert status == "pass" and figs == {"samples": 10, "loaded_samples": 10, "max_temp_c": 72, "max_hbm_temp_c": 80,
                                         "mean_power_w": 650.0, "mean_sm_mhz": 1980.0, "max_sm_mhz": 1980,
                                         "throttle_reasons": 0}
    hot = _samples(10)
    hot.samples[4]["reasons"] = telemetry.HW_THERMAL | 0x4  # HW thermal slowdown beside SW power cap
    status, message, _ = telemetry.judge(hot)
    assert status == "fail" and message.startswith("HW thermal slowdown under load in 1 of 10 samples")
    brake = _samples(5, reasons=telemetry.HW_POWER_BRAKE)
    assert telemetry.judge(brake)[1].startswith("HW power brake under load in 5 of 5 samples")
    assert telemetry.judge(_samples(5, reasons=telemetry.SW_THERMAL))[0] == "warn"
    slow = telemetry.judge(_samples(5, sm=1400))
    assert slow[0] == "warn" and "mean SM clock 1400 MHz below 80% of its maximum 1980 MHz" in slow[1]
    assert telemetry.judge(telemetry.Series())[0] == "skip"


def test_without_nvml_the_sampler_says_why_and_the_check_is_skipped(monkeypatch):
    import builtins

    real = builtins.__import__

    def no_pynvml(name, *a, **k):
        if name == "pynvml":
            raise ImportError("no pynvml")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_pynvml)
    with telemetry.Sampler(["GPU-x"]) as s:
        pass
    assert s.problem == "nvidia-ml-py (pynvml) is not installed: pip install nvidia-ml-py"
    _, checks = telemetry.checks(s, {"GPU-x": "gpu0"}, burn.downsample)
    assert [(c["name"], c["status"]) for c in checks] == [("telemetry:gpu0", "skip")]


def test_sustained_profiles_split_their_budget():
    p = make("nightly", "cpu", None, 30)
    assert (p.burn_s, round(p.memtest_s, 6), p.burn_n) == (21.0, 9.0, 512)
    assert make("acceptance", "cpu").burn_s == 0.7 * DURATION["acceptance"]
    assert make("quick", "cpu").burn_s == 0.0
