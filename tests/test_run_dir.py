"""The run directory: write_run / load_run round trip, corrupt reports, layout (fleet/runs/run_dir.py)."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from fleet.outcome import HostState
from fleet.runs.record import HostRun, Member, parse_report
from fleet.runs.run_dir import load_run, make_run_dir, write_run, write_summary
from fleet.runs.verdict import judge
from tests.report_builder import arrived
from tests.test_verdict import report

META = {"run_id": "20250101T120000Z", "started": "2025-01-01T12:00:00Z", "finished": "2025-01-01T12:03:10Z",
        "profile": "quick"}


def raw_report(host, **kw) -> bytes:
    # odd but valid formatting: written back byte for byte, never re-serialised
    return (json.dumps(report(host, **kw), indent=None, separators=(" ,", " : ")) + "\n\n").encode()


def received(host, raw: bytes) -> HostRun:
    run = HostRun(host, exit_code=0, output=f"output of {host}\n")
    run.accept_report(raw)
    return run


def fleet_runs():
    runs = [received(f"a{i}", raw_report(f"a{i}")) for i in range(3)]
    runs.append(received("slow", raw_report("slow", scale={"matmul/bf16/tflops": 0.6})))
    runs.append(HostRun("down", HostState.UNREACHABLE, "ssh: connect to host 10.0.0.9 port 22: No route to host"))
    return runs


def test_write_run_layout_and_round_trip(tmp_path):
    runs = fleet_runs()
    write_run(tmp_path, runs, META)
    summary = judge(runs, META, reference={})
    write_summary(tmp_path, summary)
    assert (tmp_path / "hosts" / "a0.json").read_bytes() == runs[0].raw
    assert (tmp_path / "hosts" / "slow.json").read_bytes() == runs[3].raw
    assert not (tmp_path / "hosts" / "down.json").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hosts", "logs", "run.json", "summary.json", "summary.md"]
    assert not [p for p in (tmp_path / "hosts").iterdir() if p.name.startswith(".")]   # no temp files left
    assert (tmp_path / "logs" / "a0.log").read_text() == "# host a0: state ok\n# torchrun exit status 0\noutput of a0\n"

    doc = json.loads((tmp_path / "run.json").read_text())
    assert doc["schema"] == "gpufleet.run/1"
    assert doc["run_id"] == META["run_id"] and doc["profile"] == "quick"
    assert doc["hosts"][0] == {"host": "a0", "state": "ok", "message": "", "log": "logs/a0.log",
                               "report": "hosts/a0.json", "exit_code": 0, "duration_s": 0.0}
    assert doc["hosts"][4]["state"] == "unreachable" and doc["hosts"][4]["report"] is None

    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert on_disk["schema"] == "gpufleet.summary/1"
    assert on_disk["exit_code"] == 1 == summary["exit_code"]
    assert [(s["host"], s["metric"]) for s in on_disk["stragglers"]] == [("slow", "matmul/bf16/tflops")]
    assert "slow" in (tmp_path / "summary.md").read_text()

    loaded, meta = load_run(tmp_path)
    assert meta == META
    assert [(r.host, r.state, r.message, r.log) for r in loaded] == [(r.host, r.state, r.message, r.log) for r in runs]
    assert loaded[0].report == runs[0].report and loaded[0].raw == runs[0].raw
    assert loaded[4].report is None
    again = judge(loaded, meta, reference={})   # what `invoke report` does: the same verdict
    assert json.loads(json.dumps(again)) == on_disk


def test_corrupt_host_report_becomes_bad_report_with_position(tmp_path):
    runs = fleet_runs()
    write_run(tmp_path, runs, META)
    (tmp_path / "hosts" / "a1.json").write_bytes(b'{"schema": "gpufleet.verify/1",\n  "status" "pass"}')
    loaded, _ = load_run(tmp_path)
    bad = loaded[1]
    assert bad.state is HostState.BAD_REPORT and bad.report is None
    assert bad.message.startswith("hosts/a1.json: invalid JSON at line 2 column 12")
    # the others' results are kept, and the summary calls the host an error
    s = judge(loaded, {"run_id": "r"}, reference={})
    assert s["hosts"]["a1"]["status"] == "error"
    assert s["hosts"]["a1"]["message"] == bad.message
    assert s["hosts"]["a0"]["metrics"]["matmul/bf16/tflops"]["value"] == pytest.approx(240.0)
    assert s["fleet"]["NVIDIA A100-SXM4-80GB"]["metrics"]["matmul/bf16/tflops"]["n"] == 3


@pytest.mark.parametrize("data,fragment", [
    (b"", "invalid JSON at line 1 column 1"),
    (b"[1, 2]", "a JSON list, not an object"),
    (b'{"schema": "gpufleet.verify/0"}', "schema 'gpufleet.verify/0', expected 'gpufleet.verify/1'"),
    (b'{"schema": "gpufleet.verify/1", "host": "\xff"}', "not UTF-8"),
    (b'{"schema": "gpufleet.verify/1", "status": "pass"}', "not a valid gpufleet.verify/1 report: version: missing"),
])
def test_parse_report_names_the_problem(data, fragment):
    report_, why = parse_report(data, "hosts/x.json")
    assert report_ is None
    assert why.startswith("hosts/x.json: ") and fragment in why


def test_parse_report_accepts_a_valid_report():
    r = report("a0")
    assert parse_report(json.dumps(r).encode()) == (r, None)


def test_missing_report_file_and_runner_states(tmp_path):
    write_run(tmp_path, fleet_runs(), META)
    (tmp_path / "hosts" / "a2.json").unlink()
    doc = json.loads((tmp_path / "run.json").read_text())
    doc["hosts"][0]["state"] = "timed_out"
    doc["hosts"][0]["message"] = "verify did not finish in 600 s"
    (tmp_path / "run.json").write_text(json.dumps(doc))
    loaded, _ = load_run(tmp_path)
    by = {r.host: r for r in loaded}
    assert by["a2"].state is HostState.BAD_REPORT and "hosts/a2.json" in by["a2"].message
    # a state the runner recorded is kept, with its message, even when the file parses
    assert by["a0"].state is HostState.TIMED_OUT and by["a0"].message == "verify did not finish in 600 s"
    assert by["down"].state is HostState.UNREACHABLE and "No route to host" in by["down"].message


def test_multinode_member_round_trips_with_its_verdict(tmp_path):
    member = HostRun("n2", exit_code=0, member=Member(1, 2, "10.0.0.1:29400"))
    write_run(tmp_path, [arrived(report("n1")), member], META)
    loaded, meta = load_run(tmp_path)
    assert loaded[1].member == member.member and loaded[1].state is HostState.OK
    s = judge(loaded, meta, reference={})
    assert s["hosts"]["n2"]["status"] == "pass" and s["exit_code"] == 0
    member.exit_code = 1
    assert judge([arrived(report("n1")), member], meta, reference={})["hosts"]["n2"]["failing_checks"][0]["name"] \
        == "multinode/member"


def test_load_run_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_run(tmp_path / "nope")
    with pytest.raises(ValueError, match="run.json: missing: not a gpufleet run directory"):
        load_run(tmp_path)
    (tmp_path / "run.json").write_text('{"run_id": "x",\n "hosts": [}')
    with pytest.raises(ValueError, match="line 2 column 12"):
        load_run(tmp_path)
    (tmp_path / "run.json").write_text('{"schema": "gpufleet.run/1", "hosts": [{"host": "a", "state": "dozing"}]}')
    with pytest.raises(ValueError, match="host 'a': 'dozing' is not a valid HostState"):
        load_run(tmp_path)


def test_odd_host_names_get_safe_file_names(tmp_path):
    host = "user@gpu/07:22"
    write_run(tmp_path, [received(host, raw_report("x"))], META)
    files = [p.name for p in (tmp_path / "hosts").iterdir()]
    assert files == ["user_gpu_07_22.json"]
    loaded, _ = load_run(tmp_path)
    assert loaded[0].host == host and loaded[0].state is HostState.OK


def test_two_hosts_with_one_file_name_are_refused(tmp_path):
    runs = [received("gpu/1", raw_report("x")), received("gpu_1", raw_report("y"))]
    with pytest.raises(ValueError, match="same report file name"):
        write_run(tmp_path, runs, META)


def test_make_run_dir_never_reuses(tmp_path):
    now = datetime(2025, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    a = make_run_dir(tmp_path / "reports", now)
    b = make_run_dir(tmp_path / "reports", now)
    assert a.name == "20250102T030405Z"
    assert b != a and b.name.startswith("20250102T030405Z") and b.is_dir()
