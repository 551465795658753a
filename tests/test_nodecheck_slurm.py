"""gpufleet-check without --expect: the GPUs the node should have are the ones Slurm schedules on it.

Pure: ``gres_gpus`` on real ``scontrol -o show node`` output (tests/data/slurm/) and ``slurm_count_check``'s
verdicts.  Real: ``python -m fleet.nodecheck`` on a real Slurm started here (tests/slurmcluster.py) whose nodes
are declared with ``Gres=gpu:N``, each node's nvidia-smi and lspci replaying what its GPUs show.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from fleet.nodecheck import slurm_count_check
from fleet.slurm.nodes import gres_gpus, parse_show_node
from fleet.status import Status
from tests.sshd import REPO, fake_lspci, fake_nvidia_smi, fixture_slots

DATA = Path(__file__).parent / "data" / "slurm"


@pytest.mark.parametrize("gres, gpus", [
    ("gpu:2", 2),
    ("gpu:a100:4", 4),
    ("gpu:a100:4(S:0-1)", 4),
    ("gpu:a100:4(S:0,1),gpu:t4:1(S:1)", 5),  # a comma inside the socket list is not an item's end
    ("gpu:a100:2,gpu:v100:1,mps:200", 3),
    ("mps:100", 0),
    ("(null)", 0),
    ("", 0),
    ("gpu", 1),
    ("gpu:a100", 1),
])
def test_gres_gpus(gres, gpus):
    assert gres_gpus(gres) == gpus


def test_gres_from_real_scontrol_output():
    nodes = parse_show_node((DATA / "scontrol-o-show-node-gres.txt").read_text())
    assert {n.name: (n.gres, n.gpus) for n in nodes.values()} == {"gpu1": ("gpu:2", 2), "gpu2": ("gpu:a100:1", 1)}
    plain = parse_show_node((DATA / "scontrol-o-show-node.txt").read_text())  # a cluster without GPUs declared
    assert {n.gres for n in plain.values()} == {""} and {n.gpus for n in plain.values()} == {0}


def _facts(smi, bus, driver=None, error=None):
    return {"nvidia_smi_gpu_count": smi, "lspci_gpu_count": bus, "driver_gpu_bus_ids": driver,
            "nvidia_smi_error": error}


NO_DEVICES = {"kind": "no-devices", "rc": 6, "excerpt": "",
              "message": "nvidia-smi found no GPU: the driver sees no device (GPU fallen off the bus, disabled, or "
                         "passed through elsewhere)"}


@pytest.mark.parametrize("facts, gres, status, message", [
    (_facts(2, 2, ["0000:01:00.0", "0000:02:00.0"]), "gpu:2", Status.PASS,
     "2 GPU(s) work here, as Slurm schedules on gpu3 (Gres=gpu:2; PCI bus 2, driver 2)"),
    (_facts(1, 1), "gpu:2", Status.FAIL,
     "Slurm schedules 2 GPU(s) on gpu3 (Gres=gpu:2) but only 1 work here (nvidia-smi 1, PCI bus 1, driver unknown)"),
    (_facts(1, 2, ["0000:01:00.0", "0000:02:00.0"]), "gpu:h100:2(S:0-1)", Status.FAIL,
     "Slurm schedules 2 GPU(s) on gpu3 (Gres=gpu:h100:2(S:0-1)) but only 1 work here (nvidia-smi 1, PCI bus 2, "
     "driver 2)"),
    (_facts(None, 0, [], NO_DEVICES), "gpu:2", Status.FAIL,
     "Slurm schedules 2 GPU(s) on gpu3 (Gres=gpu:2) but none works here: nvidia-smi: nvidia-smi found no GPU: the "
     "driver sees no device (GPU fallen off the bus, disabled, or passed through elsewhere) (PCI bus 0, driver 0)"),
    (_facts(4, 4), "gpu:2", Status.WARN,
     "4 GPU(s) work here but Slurm schedules only 2 on gpu3 (Gres=gpu:2): is slurm.conf or gres.conf out of date?"),
    (_facts(0, 0), "", Status.SKIP, "Slurm schedules no GPU on gpu3 (Gres=(null))"),
])
def test_slurm_count_check(facts, gres, status, message):
    c = slurm_count_check(facts, "gpu3", gres)
    assert (c.name, c.status, c.message) == ("gpu-count:slurm", status, message)


def test_slurm_count_check_without_slurm_skips_with_the_reason():
    c = slurm_count_check(_facts(1, 1), "gpu3", None, "scontrol: not found here (run on a login node, or give "
                                                      "--slurm-host)")
    assert (c.status, c.message) == (Status.SKIP, "no GPU count from Slurm: scontrol: not found here (run on a "
                                                  "login node, or give --slurm-host)")


# ------------------------------------------------------------------------- real Slurm

NO_DEVICES_SMI = "#!/bin/sh\necho 'No devices were found'\nexit 6\n"  # what nvidia-smi says when the driver has none


@pytest.fixture(scope="module")
def gres_cluster(tmp_path_factory):
    """gpu1 declared with one GPU, gpu2 and gpu3 with two (``Gres=gpu:N``); gpu1 and gpu2 show one RTX 3090,
    gpu3 none at all."""
    from tests.slurmcluster import SlurmCluster, missing_tools

    if missing_tools():
        pytest.skip(f"Slurm/munge not installed (no {', '.join(missing_tools())}): see .ci/run")
    base = tmp_path_factory.mktemp("gres")
    cluster = SlurmCluster(base / "c", gpus={"gpu1": 1, "gpu2": 2, "gpu3": 2})
    for node, shows in (("gpu1", 1), ("gpu2", 1), ("gpu3", 0)):
        b = base / "bin" / node
        b.mkdir(parents=True)
        (b / "nvidia-smi").write_text(fake_nvidia_smi("rtx-3090-v12.xml") if shows else NO_DEVICES_SMI)
        (b / "lspci").write_text(fake_lspci(shows, slots=fixture_slots("rtx-3090-v12.xml")))
        for tool in b.iterdir():
            tool.chmod(0o755)
    cluster.start()
    try:
        yield cluster, base
    finally:
        cluster.stop()


def check(cluster, base, node: str, *args: str) -> subprocess.CompletedProcess:
    env = cluster.environ() | {"PATH": f"{base / 'bin' / node}:/usr/bin:/bin", "PYTHONPATH": str(REPO)}
    argv = [sys.executable, "-m", "fleet.nodecheck", "--node", node, "--json", str(base / f"{node}.json"), *args]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)


def _slurm_check(base, node):
    doc = json.loads((base / f"{node}.json").read_text())
    return next(c for c in doc["checks"] if c["name"] == "gpu-count:slurm"), doc["status"]


def test_a_node_with_the_gpus_slurm_schedules_passes(gres_cluster):
    cluster, base = gres_cluster
    r = check(cluster, base, "gpu1")
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.startswith("gpufleet-check: ok: ")
    c, _ = _slurm_check(base, "gpu1")
    assert (c["status"], c["message"]) == ("pass", "1 GPU(s) work here, as Slurm schedules on gpu1 (Gres=gpu:1; "
                                                   "PCI bus 1, driver unknown)")


def test_a_node_with_fewer_gpus_than_slurm_schedules_fails_with_the_reason(gres_cluster):
    cluster, base = gres_cluster
    r = check(cluster, base, "gpu2")
    assert r.returncode == 1, r.stdout + r.stderr
    assert r.stdout == ("gpufleet-check: FAIL: gpu-count:slurm: Slurm schedules 2 GPU(s) on gpu2 (Gres=gpu:2) but only "
                        "1 work here (nvidia-smi 1, PCI bus 1, driver unknown)\n")
    c, status = _slurm_check(base, "gpu2")
    assert (c["observed"], c["expected"], status) == (1, 2, "fail")


def test_a_node_that_lost_every_gpu_fails_instead_of_warning(gres_cluster):
    cluster, base = gres_cluster
    r = check(cluster, base, "gpu3")
    assert r.returncode == 1, r.stdout + r.stderr
    assert r.stdout.startswith("gpufleet-check: FAIL: gpu-count:slurm: Slurm schedules 2 GPU(s) on gpu3 (Gres=gpu:2) "
                               "but none works here: nvidia-smi: nvidia-smi found no GPU"), r.stdout
    # with an expectation given, Slurm is not asked: the expectation's own check speaks
    expect = base / "expect0.yaml"
    expect.write_text("gpufleet_gpu_count: 0\n")
    r = check(cluster, base, "gpu3", "--expect", str(expect))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "gpu-count:slurm" not in {c["name"] for c in json.loads((base / "gpu3.json").read_text())["checks"]}


def test_a_node_slurm_does_not_know_is_judged_without_it(gres_cluster):
    cluster, base = gres_cluster
    (base / "bin" / "gpu9").mkdir(exist_ok=True)
    r = check(cluster, base, "gpu9")
    c, _ = _slurm_check(base, "gpu9")
    assert (c["status"], c["message"]) == ("skip", "no GPU count from Slurm: Slurm has no node 'gpu9' (give --node)")
    assert r.returncode == 0, r.stdout + r.stderr  # no GPU, and nothing says there should be one: a warning
