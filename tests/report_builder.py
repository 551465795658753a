"""Node reports as ``verify`` writes them, for the controller's tests: each one passes verify's own validator."""

from __future__ import annotations

import json

from fleet.outcome import HostState
from fleet.runs.record import HostRun
from verify.report import validate
from verify.status import overall


def node_report(host: str, gpu_names: list, metrics: dict, status: str | None = None, checks: list | None = None,
                device: str | None = None) -> dict:
    """A ``gpufleet.verify/1`` report for ``host``: one rank per GPU (one CPU rank without GPUs).

    ``status`` defaults to the worst of ``checks`` (as verify computes it).
    """
    ngpu = len(gpu_names)
    world = max(ngpu, 1)
    checks = checks if checks is not None else [{"name": "env/torch", "status": "pass", "message": "torch 2.4.0"}]
    kind = device or ("cuda" if ngpu else "cpu")
    report = {
        "schema": "gpufleet.verify/1", "version": "0.1.0", "host": host,
        "started": "2025-01-01T00:00:00+00:00", "finished": "2025-01-01T00:02:00+00:00",
        "status": status or overall(checks), "profile": "quick", "device": kind,
        "env": {"gpu_count": ngpu, "gpu_names": list(gpu_names), "torch_version": "2.4.0",
                "cuda_version": "12.4" if ngpu else None},
        "metrics": metrics,
        "checks": checks,
        "world": {"world_size": world, "node_count": 1, "backend": "nccl" if ngpu else "gloo", "launcher": "torchrun",
                  "ranks": [{"rank": i, "local_rank": i, "host": host, "device": f"{kind}:{i}"} for i in range(world)]},
    }
    problems = validate(report)
    assert not problems, problems  # a builder that writes what verify never would proves nothing
    return report


def arrived(report: dict, host: str | None = None) -> HostRun:
    """The HostRun of a host whose report arrived: parsed and validated as the runner does it."""
    run = HostRun(host or report["host"], HostState.OK, exit_code=0 if report["status"] in ("pass", "warn") else 1)
    assert run.accept_report(json.dumps(report).encode()), run.message
    return run
