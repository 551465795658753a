"""Shared fixtures: the real-sshd test hosts (see tests/sshd.py)."""

from __future__ import annotations

import os

import pytest

from tests.sshd import SSHD, SshdFarm


@pytest.fixture(scope="session", autouse=True)
def _history_outside_the_project(tmp_path_factory):
    """Runs the suite starts record their history in a database of the suite's own, not the project's."""
    os.environ["GPUFLEET_HISTORY"] = str(tmp_path_factory.mktemp("history") / "history.sqlite")
    yield


@pytest.fixture(scope="session", autouse=True)
def _no_ssh_agent():
    """Tests authenticate with generated keys only, never with a developer's agent."""
    os.environ.pop("SSH_AUTH_SOCK", None)
    yield


@pytest.fixture(scope="module")
def farm(tmp_path_factory):
    if not os.path.exists(SSHD):
        pytest.fail(f"sshd not found at {SSHD}: install openssh-server (see .ci/run)")
    f = SshdFarm(tmp_path_factory.mktemp("farm"))
    yield f
    f.stop()


@pytest.fixture(scope="session")
def slurm(tmp_path_factory):
    """A real Slurm cluster (tests/slurmcluster.py): slurmctld, gpu1..gpu3 and a munged of its own, started
    once for the session and stopped after it.  Skipped only where Slurm or munge is not installed."""
    from tests.slurmcluster import SlurmCluster, missing_tools

    missing = missing_tools()
    if missing:
        pytest.skip(f"Slurm/munge not installed (no {', '.join(missing)}): apt-get install slurm-wlm munge "
                    "(see .ci/run)")
    cluster = SlurmCluster(tmp_path_factory.mktemp("slurm"))
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def bridge(tmp_path_factory):
    """A bridge network (tests/netfarm.py) for the module's hosts: ``bridge.add_namespace(name)``, then
    ``farm.add_host(name, netns=ns)``; closed (namespaces, veths, bridge) after the module.  Skipped with the
    reason where it cannot be made (not root; ip, tc, nft, unshare or nsenter missing)."""
    from tests.netfarm import BridgeNetwork, unavailable

    reason = unavailable()
    if reason:
        pytest.skip(reason)
    network = BridgeNetwork(tmp_path_factory.mktemp("bridge"))
    try:
        yield network
    finally:
        network.close()
