"""Reports for the output tests, built from real data: golden audit cases and verify summaries from ``judge``."""

from __future__ import annotations

from fleet.audit import analyse
from fleet.audit.run import build_report
from fleet.fanout import FleetResult, HostResult
from fleet.inventory.model import Host
from fleet.outcome import HostState
from fleet.runs.record import HostRun
from fleet.runs.verdict import judge
from tests.golden_cases import CASES, expectations, output
from tests.report_builder import arrived, node_report

H100 = "NVIDIA H100 80GB HBM3"
WEIRD = 'odd"host\\name\nline2'  # a quote, a backslash and a newline: every character the format escapes
REFUSED = "ssh: connect to host gone port 22: Connection refused"
META = {"run_id": "20250101T000000Z", "started": "2025-01-01T00:00:00+00:00",
        "finished": "2025-01-01T00:05:00+00:00", "interrupted": False}


def audited(name: str, case: str, duration: float = 1.5) -> HostResult:
    c = CASES / case
    return HostResult(Host(name), HostState.OK, analyse(output(c), expectations(c)).to_dict(), "", duration)


def audit_report() -> dict:
    """``good`` (healthy-h100), ``bad`` (faulty-h100-2gpu), ``gone`` (unreachable), as ``build_report`` makes it."""
    result = FleetResult({
        "good": audited("good", "healthy-h100"),
        "bad": audited("bad", "faulty-h100-2gpu"),
        "gone": HostResult(Host("gone"), HostState.UNREACHABLE, None, REFUSED, 10.0),
    })
    report = build_report(result, "inventory.yaml", "all")
    report["generated"] = "2025-01-01T00:05:00+00:00"
    return report


def _metrics(matmul: list, d2d: float = 2000.0) -> dict:
    m = {f"matmul/bf16/tflops:gpu{i}": v for i, v in enumerate(matmul)}
    m.update({f"memory/d2d/gbps:gpu{i}": d2d for i in range(len(matmul))})
    m["allreduce/busbw_gbps"] = 400.0
    return m


WARN_CHECK = {"name": "compute/matmul/bf16:gpu1", "status": "warn", "message": 'bf16 at 61% of "achievable"'}
FAIL_CHECK = {"name": "collectives/allreduce_busbw", "status": "fail", "message": "busbw 40 GB/s < 200"}


def verify_reports() -> dict:
    """host -> verify report: n0 healthy; n1 a slow gpu2 (a node and a fleet straggler); n2 a warning;
    WEIRD a failing check."""
    return {
        "n0": node_report("n0", [H100] * 4, _metrics([700.0] * 4)),
        "n1": node_report("n1", [H100] * 4, _metrics([700.0, 700.0, 350.0, 700.0])),
        "n2": node_report("n2", [H100] * 4, _metrics([700.0] * 4),
                          checks=[{"name": "env/torch", "status": "pass", "message": "torch 2.4.0"}, WARN_CHECK]),
        WEIRD: node_report(WEIRD, [H100] * 4, _metrics([700.0] * 4),
                           checks=[{"name": "env/torch", "status": "pass", "message": "torch 2.4.0"}, FAIL_CHECK]),
    }


def verify_summary(reports: dict | None = None) -> dict:
    """The summary of :func:`verify_reports` and ``gone`` (unreachable)."""
    reports = reports or verify_reports()
    runs = [arrived(r, h) for h, r in reports.items()]
    runs.append(HostRun("gone", HostState.UNREACHABLE, message=REFUSED))
    return judge(runs, META, reference={})
