"""The pure parts of `invoke verify`: outcome classification, torchrun's command line, rank counts, error lines."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from fleet.outcome import HostState
from fleet.runs.node import (
    VerifySettings,
    classify,
    last_error_line,
    node_run_dir,
    nproc_for,
    run_command_line,
    stop_command,
    torchrun_argv,
)
from fleet.runs.record import HostRun
from tests.test_verdict import report

GOOD = json.dumps(report("n", status="fail")).encode()


@pytest.mark.parametrize("code, data, state", [
    (0, GOOD, "ok"), (1, GOOD, "ok"),               # a failing node is still a node that reported
    (124, GOOD, "timed_out"), (124, None, "timed_out"), (137, None, "timed_out"),
    (2, None, "failed"), (139, GOOD, "failed"),
    (0, b'{"schema": "gpufleet.verify/1", "sta', "bad_report"), (0, b'{"schema": "other/1"}', "bad_report"),
])
def test_classify(code, data, state):
    run = HostRun("n", exit_code=code, output="")
    if data is not None:
        run.accept_report(data)
    classify(run, 60)
    assert run.state is HostState(state)


TORCHRUN_FAILURE = """\
[rank1]: Traceback (most recent call last):
[rank1]:   File "/n/verify/collectives.py", line 88, in run
[rank1]:     dist.all_reduce(t)
[rank1]: RuntimeError: [../third_party/gloo/gloo/transport/tcp/pair.cc:534] Connection closed by peer [127.0.0.1]:1234
E1123 13:52:07.845000 4242 torch/distributed/elastic/multiprocessing/api.py:882] failed (exitcode: 1) \
local_rank: 1 (pid: 4244) of binary: /n/venv/bin/python
Traceback (most recent call last):
  File "/n/venv/bin/torchrun", line 8, in <module>
    sys.exit(main())
torch.distributed.elastic.multiprocessing.errors.ChildFailedError:
============================================================
verify FAILED
------------------------------------------------------------
Failures:
  <NO_OTHER_FAILURES>
------------------------------------------------------------
Root Cause (first observed failure):
[0]:
  time      : 2026-11-23_13:52:07
  host      : node1
  rank      : 1 (local_rank: 1)
  exitcode  : 1 (pid: 4244)
  error_file: <N/A>
  traceback : To enable traceback see: https://pytorch.org/docs/stable/elastic/errors.html
============================================================
"""


def test_the_failure_line_is_the_childs_own_not_torchruns_banner():
    assert last_error_line(TORCHRUN_FAILURE) == (
        "[rank1]: RuntimeError: [../third_party/gloo/gloo/transport/tcp/pair.cc:534] Connection closed by peer "
        "[127.0.0.1]:1234")
    assert last_error_line("/bin/sh: 1: venv/bin/python: not found\n") == "/bin/sh: 1: venv/bin/python: not found"
    assert last_error_line("") == ""
    run = HostRun("n", exit_code=1, output=TORCHRUN_FAILURE)
    classify(run, 60)
    assert run.state is HostState.FAILED
    assert run.message == "verify exited 1 and wrote no report: " + last_error_line(TORCHRUN_FAILURE)


def test_nproc_auto_follows_the_gpus():
    assert nproc_for("auto", {"gpu_count": 8}) == 8
    assert nproc_for("auto", {"gpu_count": 0}) == 1
    assert nproc_for("3", {"gpu_count": 8}) == 3
    with pytest.raises(ValueError):
        nproc_for("0", {})


def test_torchrun_line_is_quoted_records_its_group_and_is_guarded():
    s = VerifySettings(profile="full", run_id="R1", force=True, checks=("compute",))
    here = node_run_dir("R1", "gpu 1/a")
    assert here == "runs/R1/gpu_1_a"   # a directory per host: nodes sharing a home never collide
    argv = torchrun_argv("venv/bin/python", 4, f"{here}/report.json", s)
    assert argv[:4] == ["venv/bin/python", "-m", "torch.distributed.run", "--standalone"]
    assert "--nproc_per_node=4" in argv and argv[-3:] == ["--force", "--checks", "compute"]
    line = run_command_line(argv, {"NCCL_DEBUG": "INFO", "X": "a b; rm -rf /"}, "dir with space", here, 600)
    words = shlex.split(line)
    assert words[:6] == ["cd", "dir with space", "&&", "mkdir", "-p", "runs/R1/gpu_1_a"]
    assert "r=./runs; keep=5" in line  # older run folders pruned, this one kept
    assert "X=a b; rm -rf /;" in words  # one quoted word, never split by the shell
    assert "exec" in words and "timeout" in words and "600" in words
    assert "runs/R1/gpu_1_a/pid" in words


def test_stop_command_is_quoted():
    line = stop_command("d ir/runs/R1/h")
    assert line.startswith("f='d ir/runs/R1/h/pid';")
    assert "kill -TERM $tree" in line and "kill -KILL $alive" in line


def test_stop_command_ends_a_process_tree_whose_children_left_the_session(tmp_path):
    """What torchrun does: ranks in sessions of their own.  The stop finds them all through /proc."""
    import subprocess
    import time

    tree = ("import os, subprocess, sys, time\n"
            "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)'], start_new_session=True)\n"
            "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)'], start_new_session=True)\n"
            "time.sleep(300)\n")
    run_dir = tmp_path / "runs" / "R" / "h"
    line = run_command_line(["python3", "-c", tree], {}, str(tmp_path), "runs/R/h", 0)
    proc = subprocess.Popen(["/bin/sh", "-c", line], start_new_session=True)
    deadline = time.monotonic() + 10
    children = []
    while time.monotonic() < deadline and len(children) < 2:
        children = [int(c) for c in (Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split())] \
            if Path(f"/proc/{proc.pid}").exists() else []
        time.sleep(0.1)
    assert len(children) == 2 and (run_dir / "pid").read_text().strip() == str(proc.pid)
    r = subprocess.run(["/bin/sh", "-c", stop_command(str(run_dir))], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    proc.wait(5)
    time.sleep(0.2)
    assert [c for c in children if Path(f"/proc/{c}").exists() and "Z" not in _state(c)] == []
    assert not (run_dir / "pid").exists()
    assert subprocess.run(["/bin/sh", "-c", stop_command(str(run_dir))], timeout=30).returncode == 0  # idempotent


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


def test_multinode_rendezvous_flags():
    s = VerifySettings(run_id="R2")
    first = torchrun_argv("py", 1, "o", s, {"nnodes": 3, "node_rank": 0, "endpoint": "10.0.0.1:29400"})
    other = torchrun_argv("py", 1, "o", s, {"nnodes": 3, "node_rank": 2, "endpoint": "10.0.0.1:29400"})
    assert "--standalone" not in first
    assert {"--nnodes=3", "--rdzv_backend=c10d", "--rdzv_endpoint=10.0.0.1:29400", "--rdzv_id=R2"} <= set(first)
    assert "--rdzv_conf=is_host=true" in first and "--rdzv_conf=is_host=false" in other
