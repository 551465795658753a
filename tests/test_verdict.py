"""The fleet verdict: data in, verdict out (fleet/runs/verdict.py, fleet/runs/render.py)."""

from __future__ import annotations

import json
import statistics

import pytest

from fleet.runs.record import HostRun
from fleet.runs.render import render_markdown, render_table
from fleet.runs.metrics import higher_is_better, key_figures, split_key
from fleet.runs.verdict import (
    gpu_model,
    host_figures,
    is_slow,
    judge,
)
from tests.report_builder import arrived, node_report

A100 = "NVIDIA A100-SXM4-80GB"
H100 = "NVIDIA H100 80GB HBM3"
NO_REF = {}  # no reference ratios unless a test asks for them

# Realistic per-GPU figures for a healthy A100 SXM4 80GB.
A100_GPU = {"matmul/bf16/tflops": 240.0, "matmul/fp16/tflops": 245.0, "matmul/tf32/tflops": 120.0,
            "matmul/fp32/tflops": 18.5, "memory/d2d/gbps": 1650.0, "memory/h2d/gbps": 24.5}
A100_NODE = {"allreduce/busbw_gbps": 210.0, "ddp/resnet50/images_per_s": 2400.0}


def report(host, model=A100, ngpu=8, gpu=None, node=None, scale=None, status="pass", checks=None,
           gpu_overrides=None):
    """A verify/1 report: per-GPU metrics for ``ngpu`` GPUs (``:gpuN``) plus node metrics.

    ``scale``: metric base key -> factor applied to every GPU's value.
    ``gpu_overrides``: (base key, gpu index) -> value.
    """
    gpu = dict(A100_GPU if gpu is None else gpu)
    node = dict(A100_NODE if node is None else node)
    metrics = {}
    for i in range(ngpu):
        for k, v in gpu.items():
            metrics[f"{k}:gpu{i}"] = v * (scale or {}).get(k, 1.0)
    for (k, i), v in (gpu_overrides or {}).items():
        metrics[f"{k}:gpu{i}"] = v
    for k, v in node.items():
        metrics[k] = v * (scale or {}).get(k, 1.0)
    return node_report(host, [model] * ngpu, metrics, status=status, checks=checks)


def ok(host, **kw):
    return arrived(report(host, **kw))


META = {"run_id": "run-1", "started": "2025-01-01T00:00:00Z", "finished": "2025-01-01T00:03:00Z"}


def summ(runs, reference=NO_REF):
    return judge(runs, META, reference=reference)


def flagged(summary, scope=None):
    return {(s["host"], s["metric"]) + ((s.get("gpu"),) if scope == "node" else ())
            for s in summary["stragglers"] if scope is None or s["scope"] == scope}


# --------------------------------------------------------------------------- keys and direction


@pytest.mark.parametrize("key,expected", [
    ("matmul/bf16/tflops", ("matmul/bf16/tflops", None)),
    ("matmul/bf16/tflops:gpu0", ("matmul/bf16/tflops", "gpu0")),
    ("matmul/fp32/tflops:cpu12", ("matmul/fp32/tflops", "cpu12")),
    ("allreduce/busbw_gbps:rank3", ("allreduce/busbw_gbps", "rank3")),
    ("weird/key:name", ("weird/key:name", None)),
    ("weird/key:7", ("weird/key:7", None)),
])
def test_split_key(key, expected):
    assert split_key(key) == expected


@pytest.mark.parametrize("key", [
    "matmul/bf16/tflops", "memory/d2d/gbps:gpu3", "allreduce/busbw_gbps", "ddp/resnet50/images_per_s",
    "infer/resnet50/samples_per_sec", "dataload/jpeg/images_per_s:rank0",
])
def test_higher_is_better(key):
    assert higher_is_better(key) is True


@pytest.mark.parametrize("key", [
    "allreduce/latency_us", "ddp/resnet50/step_ms", "ddp/resnet50/step_ms:gpu1", "startup/import/s",
    "infer/bs1/ms_per_batch", "infer/latency/p50", "allreduce/4k/latency_ms:rank2", "init/cuda/seconds",
])
def test_lower_is_better(key):
    assert higher_is_better(key) is False


def test_gpu_model_is_the_first_gpu_name_verify_reports_else_cpu():
    assert gpu_model({"env": {"gpu_names": [A100, A100]}}) == A100
    assert gpu_model({"env": {"gpu_names": ["  NVIDIA   L4 "]}}) == "NVIDIA L4"
    assert gpu_model({"env": {"gpu_count": 0, "gpu_names": []}}) == "cpu"
    assert gpu_model({"env": {}}) == "cpu"
    assert gpu_model({}) == "cpu"
    assert gpu_model(None) == "cpu"


def test_host_figure_is_the_worst_device_and_keeps_devices_per_kind():
    figs, devs = host_figures({"metrics": {
        "matmul/bf16/tflops:gpu0": 240.0, "matmul/bf16/tflops:gpu1": 200.0,
        "ddp/resnet50/step_ms:gpu0": 100.0, "ddp/resnet50/step_ms:gpu1": 130.0,
        "matmul/fp32/tflops:cpu0": 1.0, "matmul/fp32/tflops:gpu0": 18.0,
        "allreduce/busbw_gbps": 150.0, "bad": "n/a", "flag": True, "nan": float("nan")}})
    assert figs["matmul/bf16/tflops"] == 200.0            # min for higher-is-better
    assert figs["ddp/resnet50/step_ms"] == 130.0          # max for lower-is-better
    assert figs["matmul/fp32/tflops"] == 18.0             # GPUs only when a key has GPU devices
    assert figs["allreduce/busbw_gbps"] == 150.0
    assert not {"bad", "flag", "nan"} & set(figs)
    assert devs[("matmul/bf16/tflops", "gpu")] == {"gpu0": 240.0, "gpu1": 200.0}
    assert devs[("matmul/fp32/tflops", "cpu")] == {"cpu0": 1.0}


# --------------------------------------------------------------------------- the straggler rule


def test_eight_a100_hosts_one_thirty_percent_slower_on_bf16():
    # small, realistic run-to-run noise on the healthy hosts
    noise = [1.0, 1.01, 0.99, 1.005, 0.995, 1.012, 0.988, 1.003]
    runs = [ok(f"a{i}", scale={"matmul/bf16/tflops": n, "memory/d2d/gbps": n}) for i, n in enumerate(noise)]
    runs.append(ok("slow", scale={"matmul/bf16/tflops": 0.7}))
    s = summ(runs)
    assert flagged(s) == {("slow", "matmul/bf16/tflops")}
    (st,) = s["stragglers"]
    assert st["scope"] == "fleet" and st["gpu_model"] == A100
    assert st["ratio"] == pytest.approx(0.7, abs=0.01)
    assert st["z"] < -3.5
    assert st["value"] == pytest.approx(240.0 * 0.7)
    assert s["exit_code"] == 1
    assert s["hosts"]["slow"]["straggler"] is True
    assert s["hosts"]["slow"]["straggler_metrics"] == ["matmul/bf16/tflops"]
    # its own report passes, but the verdict fails it, once, with the reason (what everything downstream reads)
    assert s["hosts"]["slow"]["status"] == "fail"
    assert s["hosts"]["slow"]["reasons"] == [
        {"kind": "straggler", "status": "fail", "metric": "matmul/bf16/tflops", "scope": "fleet",
         "message": "straggler (fleet): matmul/bf16/tflops 168.0 is 0.7 x the median 240.0 (z -20.23)"}]
    assert s["hosts"]["a0"]["status"] == "pass" and s["hosts"]["a0"]["reasons"] == []
    assert s["counts"]["pass"] == 8 and s["counts"]["fail"] == 1
    assert not any(s["hosts"][f"a{i}"]["straggler"] for i in range(8))
    bf16 = s["fleet"][A100]["metrics"]["matmul/bf16/tflops"]
    assert bf16["n"] == 9
    assert bf16["min"] == pytest.approx(168.0)
    assert s["hosts"]["slow"]["metrics"]["matmul/bf16/tflops"]["fleet_ratio"] == pytest.approx(0.7, abs=0.01)
    assert s["counts"]["stragglers"] == 1 and s["counts"]["straggler_hosts"] == 1


def test_identical_hosts_mad_zero_floor_alone():
    runs = [ok(f"a{i}") for i in range(5)]
    runs.append(ok("at85", scale={"memory/d2d/gbps": 0.85}))
    runs.append(ok("at95", scale={"memory/d2d/gbps": 0.95}))
    s = summ(runs)
    assert s["fleet"][A100]["metrics"]["memory/d2d/gbps"]["mad"] == 0
    assert flagged(s) == {("at85", "memory/d2d/gbps")}
    (st,) = s["stragglers"]
    assert st["z"] is None
    assert st["ratio"] == pytest.approx(0.85)


def test_noisy_fleet_host_at_088_within_z_is_not_flagged():
    values = [190.0, 215.0, 240.0, 265.0, 290.0, 228.0]
    slow = 0.88 * 228.0          # 228 stays the median once slow joins (it sorts second)
    allv = values + [slow]
    med = statistics.median(allv)
    mad = statistics.median(abs(v - med) for v in allv)
    # the fixture really is "below the floor but within 3.5 z"
    assert slow / med == pytest.approx(0.88)
    assert 0.6745 * (slow - med) / mad > -3.5
    runs = [ok(f"n{i}", scale={"matmul/bf16/tflops": v / 240.0}) for i, v in enumerate(values)]
    runs.append(ok("slowish", scale={"matmul/bf16/tflops": slow / 240.0}))
    s = summ(runs)
    assert s["stragglers"] == []
    assert s["exit_code"] == 0


def test_tight_fleet_host_at_088_is_flagged():
    values = [239.0, 240.0, 241.0, 240.5, 239.5, 240.0]
    runs = [ok(f"n{i}", scale={"matmul/bf16/tflops": v / 240.0}) for i, v in enumerate(values)]
    runs.append(ok("slowish", scale={"matmul/bf16/tflops": 0.88}))
    s = summ(runs)
    assert flagged(s) == {("slowish", "matmul/bf16/tflops")}


def test_is_slow_boundaries():
    assert is_slow(89.0, 100.0, 0.0) is True
    assert is_slow(90.0, 100.0, 0.0) is False            # exactly at the floor is not below it
    assert is_slow(80.0, 100.0, 1.0) is True
    assert is_slow(80.0, 100.0, 10.0) is False           # z = -1.35
    assert is_slow(120.0, 100.0, 0.0, higher_better=False) is True
    assert is_slow(110.0, 100.0, 0.0, higher_better=False) is False   # below median / 0.9
    assert is_slow(50.0, 100.0, 0.0, higher_better=False) is False    # faster
    assert is_slow(-5.0, 0.0, 0.0) is False


def test_slow_gpu_inside_a_node():
    runs = [ok(f"a{i}") for i in range(4)]
    runs.append(ok("sick", gpu_overrides={("memory/d2d/gbps", 5): 1650.0 * 0.6}))
    s = summ(runs)
    assert flagged(s, "node") == {("sick", "memory/d2d/gbps", "gpu5")}
    node = [x for x in s["stragglers"] if x["scope"] == "node"][0]
    assert node["ratio"] == pytest.approx(0.6)
    assert node["median"] == pytest.approx(1650.0)
    # the node's figure is its worst GPU, so the node also straggles in the fleet
    assert ("sick", "memory/d2d/gbps") in flagged(s, "fleet")
    assert {x["host"] for x in s["stragglers"]} == {"sick"}
    assert "memory/d2d/gbps:gpu5" in s["hosts"]["sick"]["straggler_metrics"]
    assert s["exit_code"] == 1


def test_two_values_are_not_judged():
    # two hosts: no stragglers even at half speed
    s = summ([ok("a0"), ok("a1", scale={"matmul/bf16/tflops": 0.5})])
    assert s["stragglers"] == []
    # a 2-GPU node: no intra-node judgement either
    s = summ([ok(f"a{i}", ngpu=2) for i in range(3)] +
             [ok("two", ngpu=2, gpu_overrides={("matmul/bf16/tflops", 1): 240.0 * 0.5})])
    assert flagged(s, "node") == set()
    assert ("two", "matmul/bf16/tflops") in flagged(s, "fleet")


def test_three_values_are_judged():
    s = summ([ok("a0"), ok("a1"), ok("slow", scale={"matmul/bf16/tflops": 0.5})])
    assert flagged(s) == {("slow", "matmul/bf16/tflops")}


def test_latency_metric_slow_is_high():
    node = dict(A100_NODE, **{"allreduce/latency_us": 50.0})
    runs = [ok(f"a{i}", node=node) for i in range(5)]
    runs.append(ok("laggy", node=node, scale={"allreduce/latency_us": 1.6}))
    runs.append(ok("quick", node=node, scale={"allreduce/latency_us": 0.5}))
    s = summ(runs)
    assert flagged(s) == {("laggy", "allreduce/latency_us")}
    (st,) = s["stragglers"]
    assert st["ratio"] == pytest.approx(1.6)
    assert s["fleet"][A100]["metrics"]["allreduce/latency_us"]["higher_is_better"] is False


def test_models_are_compared_only_with_their_own_kind():
    h100 = {k: v * 3 for k, v in A100_GPU.items()}
    runs = [ok(f"a{i}") for i in range(4)] + [ok(f"h{i}", model=H100, gpu=h100) for i in range(4)]
    s = summ(runs)
    assert s["stragglers"] == []
    assert set(s["fleet"]) == {A100, H100}
    assert s["fleet"][H100]["hosts"] == ["h0", "h1", "h2", "h3"]
    assert s["fleet"][A100]["metrics"]["matmul/bf16/tflops"]["median"] == pytest.approx(240.0)
    assert s["hosts"]["h0"]["gpu_model"] == H100


def test_cpu_hosts_group_as_cpu():
    fast = {"matmul/fp32/tflops:cpu0": 0.05, "matmul/fp32/tflops:cpu1": 0.05, "allreduce/busbw_gbps": 1.2}
    slow = {"matmul/fp32/tflops:cpu0": 0.02, "matmul/fp32/tflops:cpu1": 0.02, "allreduce/busbw_gbps": 1.2}
    runs = [arrived(node_report(f"c{i}", [], fast)) for i in range(3)] + [arrived(node_report("cslow", [], slow))]
    s = summ(runs)
    assert set(s["fleet"]) == {"cpu"}
    assert flagged(s) == {("cslow", "matmul/fp32/tflops")}


# --------------------------------------------------------------------------- status and exit code


@pytest.mark.parametrize("state,status", [
    ("unreachable", "unreachable"), ("auth_failed", "unreachable"), ("host_key_rejected", "unreachable"),
    ("failed", "fail"), ("timed_out", "error"), ("error", "error"), ("bad_report", "error"),
    ("interrupted", "error"),
])
def test_hosts_that_did_not_report(state, status):
    runs = [ok(f"a{i}") for i in range(3)]
    runs.append(HostRun("down", state, message=f"{state}: connection refused", report=None, log="logs/down.log"))
    s = summ(runs)
    d = s["hosts"]["down"]
    assert d["status"] == status and d["state"] == state
    assert d["message"] == f"{state}: connection refused"
    assert d["metrics"] == {} and d["gpu_model"] is None
    assert s["exit_code"] == 1
    assert s["counts"][status] == 1 and s["counts"]["pass"] == 3
    assert s["fleet"][A100]["metrics"]["matmul/bf16/tflops"]["n"] == 3   # the others' results are kept
    assert s["hosts"]["a0"]["metrics"]["matmul/bf16/tflops"]["value"] == pytest.approx(240.0)


def test_failing_checks_are_listed_and_fail_exits_1():
    checks = [{"name": "env/cuda", "status": "pass", "message": "ok"},
              {"name": "matmul/bf16/correctness", "status": "fail", "message": "max error 0.5 > 0.01"},
              {"name": "memory/h2d", "status": "warn", "message": "65% of achievable"}]
    s = summ([ok("a0"), ok("a1"), ok("bad", status="fail", checks=checks)])
    bad = s["hosts"]["bad"]
    assert bad["status"] == "fail"
    assert bad["failing_checks"] == [{"name": "matmul/bf16/correctness", "status": "fail",
                                      "message": "max error 0.5 > 0.01"}]
    assert [c["name"] for c in bad["warning_checks"]] == ["memory/h2d"]
    assert s["exit_code"] == 1 and s["counts"]["fail"] == 1


@pytest.mark.parametrize("statuses,code", [
    (["pass", "pass", "pass"], 0),
    (["pass", "warn", "pass"], 0),
    (["pass", "fail", "pass"], 1),
    (["pass", "error", "pass"], 1),
])
def test_exit_code_by_status(statuses, code):
    s = summ([ok(f"h{i}", status=st) for i, st in enumerate(statuses)])
    assert s["stragglers"] == []
    assert s["exit_code"] == code


def test_report_that_fails_validation_is_bad_report_and_empty_run_is_1():
    r = report("x")
    del r["status"]
    x = HostRun("x", "ok")
    assert not x.accept_report(json.dumps(r).encode(), "hosts/x.json")
    assert x.state.value == "bad_report" and x.message.startswith("hosts/x.json: not a valid gpufleet.verify/1 report")
    assert "status: missing or not str" in x.message
    s = summ([ok("a"), x])
    assert s["hosts"]["x"]["status"] == "error" and s["hosts"]["x"]["state"] == "bad_report"
    assert summ([])["exit_code"] == 1


def test_interrupted_run_exits_130_even_when_every_finished_host_passed():
    s = judge([ok("a0"), ok("a1"), HostRun("a2", "interrupted", "interrupted (Ctrl-C) before it finished")],
              dict(META, interrupted=True), reference=NO_REF)
    assert s["interrupted"] is True and s["exit_code"] == 130
    assert s["hosts"]["a2"]["status"] == "error" and s["hosts"]["a2"]["state"] == "interrupted"


# --------------------------------------------------------------------------- reference ratios


def test_reference_mapping_gives_reference_ratios():
    ref = {A100: {"matmul/bf16/tflops": 200.0, "memory/d2d/gbps": {"achievable": 1500.0, "peak": 2039.0}}}
    s = summ([ok("a0"), ok("a1")], reference=ref)
    m = s["hosts"]["a0"]["metrics"]
    assert m["matmul/bf16/tflops"]["reference_ratio"] == pytest.approx(240.0 / 200.0)
    assert m["memory/d2d/gbps"]["reference_ratio"] == pytest.approx(1650.0 / 1500.0)
    assert m["memory/d2d/gbps"]["reference"]["peak"] == 2039.0
    assert m["matmul/fp32/tflops"]["reference_ratio"] is None


def test_reference_callable_in_verify_shape():
    def lookup(name):
        if "A100" not in name:
            return None
        return {"matmul_tflops": {"bf16": {"peak": 312.0, "achievable": 218.4}, "fp32": None},
                "memory_gbps": {"peak": 2039.0, "achievable": 1631.2},
                "pcie_gbps": {"peak": 32.0, "achievable": 24.0}}
    s = summ([ok("a0"), ok("h0", model=H100)], reference=lookup)
    m = s["hosts"]["a0"]["metrics"]
    assert m["matmul/bf16/tflops"]["reference_ratio"] == pytest.approx(240.0 / 218.4, abs=1e-4)
    assert m["memory/h2d/gbps"]["reference_ratio"] == pytest.approx(24.5 / 24.0, abs=1e-4)
    assert m["matmul/fp32/tflops"]["reference_ratio"] is None
    assert s["hosts"]["h0"]["metrics"]["matmul/bf16/tflops"]["reference_ratio"] is None


def test_default_reference_is_verify_table():
    pytest.importorskip("verify.reference")
    s = judge([ok("a0")], {"run_id": "r"}, reference=None)
    # A100 SXM4 80GB: 312 TFLOP/s bf16 peak, 70 % of it achievable (verify/reference.py)
    ratio = s["hosts"]["a0"]["metrics"]["matmul/bf16/tflops"]["reference_ratio"]
    assert ratio == pytest.approx(240.0 / (312.0 * 0.7), abs=1e-3)
    assert summ([ok("a0")], reference={})["hosts"]["a0"]["metrics"]["matmul/bf16/tflops"]["reference_ratio"] is None


# --------------------------------------------------------------------------- rendering


def _fleet_summary():
    runs = [ok(f"gpu-node-{i:02d}.cluster.example") for i in range(6)]
    runs.append(ok("gpu-node-slow.cluster.example", scale={"matmul/bf16/tflops": 0.7}))
    runs.append(HostRun("gpu-node-down.cluster.example", "unreachable", "ssh: connect timed out"))
    runs.append(ok("gpu-node-bad", status="fail",
                   checks=[{"name": "ddp/resnet50", "status": "fail", "message": "loss did not fall"}]))
    return judge(runs, {"run_id": "20250101T000000Z", "started": "s", "finished": "f"},
                 reference={A100: {"matmul/bf16/tflops": 218.4}})


def test_render_table():
    s = _fleet_summary()
    text = render_table(s)
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 120
    for h in s["hosts"]:
        assert h in text
    slow_line = next(line for line in lines if line.startswith("gpu-node-slow.cluster.example"))
    assert "fail/slow" in slow_line  # failed by the verdict for being slow
    assert f"{240.0 * 0.7:.1f} (0.70)" in slow_line
    assert "A100-SXM4-80GB" in slow_line
    down_line = next(line for line in lines if line.startswith("gpu-node-down.cluster.example"))
    assert "unreachable" in down_line
    assert "240.0 (1.00)" in text
    assert "\nstragglers (ratio" in text
    at = next(i for i, line in enumerate(lines) if line.startswith("stragglers"))
    strag = [line.split() for line in lines[at:] if line.startswith("gpu-node-slow")]
    assert strag == [["gpu-node-slow.cluster.example", "-", "matmul/bf16/tflops", "168.0", "240.0", "0.70",
                      "MAD", "0", "fleet"]]
    assert "loss did not fall" in text and "ssh: connect timed out" in text
    assert "reference" in text and f"{240.0 / 218.4:.2f}" in text
    assert lines[-1].startswith("9 hosts") and lines[-1].endswith("exit code 1")
    for header in ("bf16 TF/s", "fp16 TF/s", "tf32 TF/s", "fp32 TF/s", "D2D GB/s", "H2D GB/s", "AR busbw",
                   "DDP img/s"):
        assert header in text


def test_render_table_narrow_splits_columns():
    s = _fleet_summary()
    text = render_table(s, max_width=80)
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "DDP img/s" in text and "bf16 TF/s" in text


def test_render_table_without_stragglers():
    s = summ([ok("a0"), ok("a1"), ok("a2")])
    text = render_table(s)
    assert "stragglers: none" in text
    assert text.splitlines()[-1].endswith("exit code 0")


def test_render_markdown():
    s = _fleet_summary()
    md = render_markdown(s)
    assert md.startswith("# gpufleet verify run 20250101T000000Z")
    assert "| Host | Status | Model | bf16 TF/s |" in md
    row = next(line for line in md.splitlines() if line.startswith("| gpu-node-slow.cluster.example |"))
    assert "fail/slow" in row and "(0.70; ref 0.77)" in row
    strag = [line for line in md.split("## Stragglers")[1].splitlines() if line.startswith("| gpu-node-slow")]
    assert len(strag) == 1 and "| matmul/bf16/tflops |" in strag[0] and "| fleet |" in strag[0]
    assert f"### {A100} (8 hosts)" in md
    assert "loss did not fall" in md


def test_key_figures_put_matmul_dtypes_first_in_their_order():
    keys = ["memory/d2d/gbps", "matmul/fp32/tflops", "matmul/fp8/tflops", "allreduce/busbw_gbps",
            "matmul/int8/tflops", "matmul/bf16/tflops", "burn/bf16/tflops"]
    assert key_figures(keys) == ["matmul/bf16/tflops", "matmul/fp8/tflops", "matmul/fp32/tflops",
                                         "matmul/int8/tflops", "memory/d2d/gbps", "allreduce/busbw_gbps"]
