"""What the terminal says below a run's table (fleet/findings.py): every failing and warning check of every host
with its reason, worst host first, shared findings folded; checked exactly on recorded captures (the golden audit
cases, each replaying a real node's output) and on a verify summary."""

from __future__ import annotations

import pytest

from fleet.audit.run import decide, render_table
from fleet.findings import fold_names, render_findings
from tests import golden_cases as golden

CASES = golden.CASES


def _host(case: str) -> dict:
    report = golden.analyse(golden.output(CASES / case), golden.expectations(CASES / case)).to_dict()
    return {"state": "ok", **report}


@pytest.fixture(scope="module")
def report() -> dict:
    hosts = {"n001": _host("faulty-h100-2gpu"), "n002": _host("faulty-h100-2gpu"), "n003": _host("faulty-h100-2gpu"),
             "h7": _host("h100-faults-v13"), "lost": _host("gpu-lost-partial"), "fine": _host("healthy-h100"),
             "down": {"state": "unreachable", "status": "unreachable", "message": "connection refused by 10.0.0.9:22",
                      "facts": {}, "checks": []}}
    return decide({"hosts": hosts})


def _named(hosts_text: str) -> set:
    """The host names a folded list covers (``n001-n003, lost``)."""
    import re

    out = set()
    for item in hosts_text.split(", "):
        m = re.fullmatch(r"(\D*)(\d+)-\1(\d+)", item)
        if m:
            width = len(m.group(2))
            out |= {f"{m.group(1)}{i:0{width}d}" for i in range(int(m.group(2)), int(m.group(3)) + 1)}
        else:
            out.add(item)
    return out


def test_every_failing_and_warning_check_of_every_host_is_said_with_its_reason(report):
    text = render_table(report)
    lines = text.splitlines()
    for name, h in report["hosts"].items():
        for c in h["checks"]:
            if c["status"] not in ("warn", "fail", "error"):
                continue
            said = f"{c['name']} {c['status']}: {c['message']}"
            own = f"  {name}: {said}"
            folded = [x.split(" hosts: ", 1)[1] for x in lines if x.startswith(f"  {said} — ")]
            assert own in lines or (folded and name in _named(folded[0])), (name, said)
    assert "  down: unreachable: connection refused by 10.0.0.9:22" in lines
    assert not any(x.startswith("  fine:") for x in lines)


def test_findings_are_worst_host_first_and_shared_ones_folded(report):
    lines = render_findings(report["hosts"])
    hosts_in_order = [x.split(":")[0].strip() for x in lines if not x.startswith("on several") and " — " not in x]
    assert hosts_in_order[0] == "down"  # unreachable: nothing could be judged
    assert set(hosts_in_order) == {"down", "h7", "lost"}  # n001-n003 share every finding: folded
    at = lines.index("on several hosts:")
    folded = lines[at + 1:]
    faulty = report["hosts"]["n001"]
    bad = [c for c in faulty["checks"] if c["status"] in ("warn", "fail")]
    assert len(folded) == len(bad)
    # worst first, then the most widely shared: pcie:gpu1 is on the host "lost" too
    assert [x.split(" — ")[1] for x in folded] == ["4 hosts: lost, n001-n003"] + ["3 hosts: n001-n003"] * 5
    assert [x.split()[:2] for x in folded] == [["pcie:gpu1", "fail:"], ["ecc:gpu1", "fail:"],
                                               ["kernel:fallen-off-bus", "fail:"], ["xid", "fail:"],
                                               ["clocks:gpu1", "warn:"], ["persistence:gpu1", "warn:"]]


def test_long_findings_wrap_on_a_terminal_and_stay_one_line_in_a_log(report):
    wide = render_findings(report["hosts"])
    narrow = render_findings(report["hosts"], width=60)
    assert max(len(x) for x in narrow) <= 60
    assert len(narrow) > len(wide)
    assert " ".join(x.strip() for x in narrow).split() == " ".join(x.strip() for x in wide).split()


def test_fold_names():
    assert fold_names(["n001", "n002", "n003", "n005", "gpu7", "x"]) == "n001-n003, n005, gpu7, x"
    assert fold_names(["a9", "a10"]) == "a9, a10"  # different widths are not one range
    assert fold_names([f"h{i}" for i in range(1, 40, 2)], limit=3) == "h1, h3, h5 and 17 more"


def test_verify_findings_exclude_what_their_own_tables_show():
    hosts = {"a": {"status": "fail", "reasons": [
        {"kind": "straggler", "status": "fail", "message": "straggler (fleet): bf16 ...", "metric": "matmul"},
        {"kind": "check", "status": "fail", "name": "compute/bf16", "message": "max error 3.1 > 0.05"}]}}
    assert render_findings(hosts, kinds=("state", "check", "report", "culprit")) == [
        "  a: compute/bf16 fail: max error 3.1 > 0.05"]
