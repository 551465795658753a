"""The pure parts of `invoke verify`: outcome classification, torchrun's command line, rank counts."""

from __future__ import annotations

import json
import shlex

import pytest

from fleet.verify_run import VerifySettings, classify, nproc_for, run_command_line, torchrun_argv

GOOD = json.dumps({"schema": "gpufleet.verify/1", "status": "fail"}).encode()


@pytest.mark.parametrize("code, report, state", [
    (0, GOOD, "ok"), (1, GOOD, "ok"),               # a failing node is still a node that reported
    (124, GOOD, "timed_out"), (124, None, "timed_out"), (137, None, "timed_out"),
    (2, None, "failed"), (139, GOOD, "failed"),
    (0, b'{"schema": "gpufleet.verify/1", "sta', "bad_report"), (0, b'{"schema": "other/1"}', "bad_report"),
])
def test_classify(code, report, state):
    assert classify(code, report, 60)[0] == state


def test_nproc_auto_follows_the_gpus():
    assert nproc_for("auto", {"gpu_count": 8}) == 8
    assert nproc_for("auto", {"gpu_count": 0}) == 1
    assert nproc_for("3", {"gpu_count": 8}) == 3
    with pytest.raises(ValueError):
        nproc_for("0", {})


def test_torchrun_line_is_quoted_and_guarded():
    s = VerifySettings(profile="full", run_id="R1", force=True, extra_args=("--checks", "compute"))
    argv = torchrun_argv("venv/bin/python", 4, "runs/R1/report.json", s)
    assert argv[:4] == ["venv/bin/python", "-m", "torch.distributed.run", "--standalone"]
    assert "--nproc_per_node=4" in argv and argv[-3:] == ["--force", "--checks", "compute"]
    line = run_command_line(argv, {"NCCL_DEBUG": "INFO", "X": "a b; rm -rf /"}, "dir with space", 600)
    words = shlex.split(line)
    assert words[:3] == ["cd", "dir with space", "&&"]
    assert "X=a b; rm -rf /" in words  # one quoted word, never split by the shell
    assert "timeout" in words and "600" in words


def test_multinode_rendezvous_flags():
    s = VerifySettings(run_id="R2")
    first = torchrun_argv("py", 1, "o", s, {"nnodes": 3, "node_rank": 0, "endpoint": "10.0.0.1:29400"})
    other = torchrun_argv("py", 1, "o", s, {"nnodes": 3, "node_rank": 2, "endpoint": "10.0.0.1:29400"})
    assert "--standalone" not in first
    assert {"--nnodes=3", "--rdzv_backend=c10d", "--rdzv_endpoint=10.0.0.1:29400", "--rdzv_id=R2"} <= set(first)
    assert "--rdzv_conf=is_host=true" in first and "--rdzv_conf=is_host=false" in other
