"""A run directory's verdict, judged again from what it holds (read-only).

``gpufleet report`` and ``slurm-sync`` read a finished run through :func:`rejudge`, so a ``--pairwise`` run (its
pairs in run.json, no host records of its own) is judged as one everywhere: its culprits fail, and
``slurm-sync`` drains them.
"""

from __future__ import annotations

from fleet.runs.pairwise_run import judge_pairwise
from fleet.runs.run_dir import load_run
from fleet.runs.verdict import judge


def rejudge(run_dir) -> tuple[dict, dict]:
    """``(summary, meta)`` of ``run_dir``: the ``gpufleet.summary/1`` document and run.json's fields.
    FileNotFoundError / ValueError as :func:`fleet.runs.run_dir.load_run` raises them."""
    runs, meta = load_run(run_dir)
    if meta.get("pairwise"):
        return judge_pairwise(meta), meta
    return judge(runs, meta), meta
