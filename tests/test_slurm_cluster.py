"""The Slurm test cluster (tests/slurmcluster.py): real slurmctld, slurmd and munged, real jobs.

The ``slurm`` fixture (tests/conftest.py) is one cluster for the session: every test here leaves its
nodes idle and its jobs finished.  The last tests start clusters of their own to check start-up
failures and stopping.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time

import pytest

from tests.slurmcluster import SlurmCluster, SlurmError, missing_tools


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _wait_state(slurm: SlurmCluster, job: int, state: str, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        record = slurm.jobs(job)[0]
        if record["JobState"] == state:
            return record
        assert time.monotonic() < deadline, f"job {job} not {state} after {timeout}s: {record}"
        time.sleep(0.1)


@pytest.fixture(autouse=True)
def _nodes_idle(request):
    """A test on the session's cluster starts with every node idle (one finishing the last test's job is
    ``comp`` a moment)."""
    if "slurm" in request.fixturenames:
        request.getfixturevalue("slurm").wait_nodes("idle", timeout=30)


def test_nodes_idle_with_their_own_addresses(slurm):
    assert slurm.node_names == ["gpu1", "gpu2", "gpu3"]
    assert slurm.addresses == {"gpu1": "127.0.1.1", "gpu2": "127.0.1.2", "gpu3": "127.0.1.3"}
    r = slurm.run("sinfo", "-h", "-N", "-o", "%N %t %P")
    assert r.returncode == 0, r.stderr
    assert sorted(r.stdout.splitlines()) == ["gpu1 idle gpu*", "gpu2 idle gpu*", "gpu3 idle gpu*"]
    for node in slurm.nodes:
        fields = slurm.show_node(node.name)
        assert (fields["NodeAddr"], fields["NodeHostName"], fields["CPUTot"]) == (node.address, node.name, "2")
    ports = {n.port for n in slurm.nodes}
    assert len(ports) == 3 and slurm.ctld_port not in ports


def test_each_slurmd_has_its_own_spool_and_run_directories(slurm):
    ours = os.readlink("/proc/self/ns/mnt")
    namespaces = {n.name: os.readlink(f"/proc/{n.pid}/ns/mnt") for n in slurm.nodes}
    assert len(set(namespaces.values())) == 3 and ours not in namespaces.values()
    for node in slurm.nodes:
        # inside its namespace, the path slurm.conf names is the node's own run directory
        r = slurm.on_node(node.name, "cat", str(slurm.node_mount / "run" / "slurmd.pid"))
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == str(node.pid)
        assert (node.run_dir / "slurmd.pid").read_text().strip() == str(node.pid)
        for inside, own in ((slurm.node_mount / "spool", node.spool), (slurm.node_mount / "run", node.run_dir)):
            r = slurm.on_node(node.name, "stat", "-c", "%d:%i", str(inside))
            assert r.stdout.strip() == f"{os.stat(own).st_dev}:{os.stat(own).st_ino}", (node.name, inside)
    # outside, the mount points stay empty: nothing leaked out of the namespaces
    assert list((slurm.node_mount / "run").iterdir()) == []
    assert list((slurm.node_mount / "spool").iterdir()) == []


def test_srun_one_task_per_node(slurm):
    r = slurm.run("srun", "-N3", "--ntasks-per-node=1", "-l", "sh", "-c", 'echo "$SLURMD_NODENAME"')
    assert r.returncode == 0, r.stderr
    assert sorted(r.stdout.splitlines()) == ["0: gpu1", "1: gpu2", "2: gpu3"]


def test_sbatch_on_a_named_node_writes_into_shared(slurm):
    out = slurm.shared / "sbatch-gpu2"
    job = slurm.sbatch("--nodelist=gpu2", "--output", str(slurm.shared / "sbatch-%j.log"),
                       "--wrap", f'echo "$SLURMD_NODENAME $SLURM_JOB_ID" > {out}; echo done')
    [record] = slurm.wait_job(job, timeout=60)
    assert (record["JobState"], record["ExitCode"], record["NodeList"]) == ("COMPLETED", "0:0", "gpu2")
    assert out.read_text() == f"gpu2 {job}\n"
    assert (slurm.shared / f"sbatch-{job}.log").read_text() == "done\n"


def test_job_array_completes(slurm):
    job = slurm.sbatch("--array=0-2", "--output", str(slurm.shared / "array-%A_%a.out"),
                       "--wrap", 'echo "task $SLURM_ARRAY_TASK_ID of $SLURM_ARRAY_JOB_ID"')
    records = slurm.wait_job(job, timeout=60)
    assert sorted((r["ArrayJobId"], r["ArrayTaskId"], r["JobState"], r["ExitCode"]) for r in records) == [
        (str(job), str(i), "COMPLETED", "0:0") for i in range(3)]
    for i in range(3):
        assert (slurm.shared / f"array-{job}_{i}.out").read_text() == f"task {i} of {job}\n"


def test_drain_holds_jobs_and_resume_releases_them(slurm):
    job = None
    try:
        r = slurm.run("scontrol", "update", "nodename=gpu1", "state=drain", 'reason=maintenance')
        assert r.returncode == 0, r.stderr
        fields = slurm.show_node("gpu1")
        assert fields["State"] == "IDLE+DRAIN"
        assert fields["Reason"].startswith("maintenance [root@")
        assert slurm.node_states() == {"gpu1": "drain", "gpu2": "idle", "gpu3": "idle"}

        job = slurm.sbatch("--nodelist=gpu1", "--wrap", "true")
        deadline = time.monotonic() + 3  # three passes of the scheduler: it stays pending
        while time.monotonic() < deadline:
            [record] = slurm.jobs(job)
            assert record["JobState"] == "PENDING", record
            time.sleep(0.2)
        assert record["Reason"] == "ReqNodeNotAvail,_UnavailableNodes:gpu1"

        r = slurm.run("scontrol", "update", "nodename=gpu1", "state=resume")
        assert r.returncode == 0, r.stderr
        [record] = slurm.wait_job(job, timeout=60)  # resumed, the node takes it
        assert (record["JobState"], record["NodeList"]) == ("COMPLETED", "gpu1")
        slurm.wait_nodes("idle", timeout=30)
        fields = slurm.show_node("gpu1")
        assert fields["State"] == "IDLE" and "Reason" not in fields
    finally:
        if job is not None:
            slurm.run("scancel", str(job))
        if "DRAIN" in slurm.show_node("gpu1").get("State", ""):  # the session's next tests need every node
            slurm.run("scontrol", "update", "nodename=gpu1", "state=resume")


def test_jobs_run_this_machines_python3(slurm):
    env = slurm.environ()
    here = subprocess.run(["python3", "-c", "import sys; print(sys.executable, sys.version.split()[0])"],
                          env=env, capture_output=True, text=True, check=True).stdout.strip()
    r = slurm.run("srun", "-N3", "--ntasks-per-node=1", "python3", "-c",
                  "import os, sys; print(os.environ['SLURMD_NODENAME'], sys.executable, sys.version.split()[0])")
    assert r.returncode == 0, r.stderr
    assert sorted(r.stdout.splitlines()) == [f"{n} {here}" for n in ("gpu1", "gpu2", "gpu3")]
    # python3 -m, as verify jobs run it, reading a file from the shared directory
    doc = slurm.shared / "doc.json"
    doc.write_text('{"b": 1, "a": [1, 2]}')
    r = slurm.run("srun", "-w", "gpu3", "python3", "-m", "json.tool", "--sort-keys", "--compact", str(doc))
    assert r.returncode == 0, r.stderr
    assert r.stdout == json.dumps({"a": [1, 2], "b": 1}, separators=(",", ":")) + "\n"


def test_clients_ignore_an_outer_slurm_environment(slurm, monkeypatch):
    monkeypatch.setenv("SLURM_CONF", "/nonexistent/slurm.conf")
    monkeypatch.setenv("SLURM_JOB_ID", "424242")
    monkeypatch.setenv("SQUEUE_FORMAT", "%all")
    assert slurm.env == {"SLURM_CONF": str(slurm.conf)}
    r = slurm.run("squeue", "-h", "-o", "%i")
    assert (r.returncode, r.stdout) == (0, ""), r.stderr
    r = slurm.run("srun", "-w", "gpu2", "sh", "-c", 'echo "$SLURM_JOB_ID" "$SLURM_CONF"')
    assert r.returncode == 0, r.stderr
    job_id, conf = r.stdout.split()
    assert job_id != "424242" and conf == str(slurm.conf)


# ----------------------------------------------------------------------------- clusters of their own

needs_slurm = pytest.mark.skipif(bool(missing_tools()), reason=f"Slurm/munge not installed: {missing_tools()}")


@needs_slurm
def test_stop_kills_the_daemons_and_every_job_process(tmp_path):
    cluster = SlurmCluster(tmp_path / "c")
    try:
        cluster.start()
        pids = cluster.shared / "pids"
        job = cluster.sbatch("--nodelist=gpu3", "--wrap",
                             f'setsid sleep 3600 & echo "$$ $!" > {pids}.tmp; mv {pids}.tmp {pids}; wait')
        _wait_state(cluster, job, "RUNNING")
        deadline = time.monotonic() + 10
        while not pids.exists():
            assert time.monotonic() < deadline, "the job never wrote its pids"
            time.sleep(0.05)
        job_pids = [int(p) for p in pids.read_text().split()]
        assert all(_alive(p) for p in job_pids)
        stepds = [p for p in os.listdir("/proc") if p.isdigit() and _alive(int(p))
                  and os.path.exists(f"/proc/{p}/ns/mnt")
                  and _readlink(f"/proc/{p}/ns/mnt") == cluster.node("gpu3").mnt_ns
                  and _comm(p) == "slurmstepd"]
        assert stepds  # not the slurmd's children: found through its mount namespace
    finally:
        cluster.stop()
    daemons = [cluster.munged.pid, cluster.slurmctld.pid, *(n.pid for n in cluster.nodes)]
    assert [p for p in [*daemons, *job_pids, *map(int, stepds)] if _alive(p)] == []
    cluster.stop()  # twice: nothing left to do


def _comm(pid: str) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def _readlink(path: str) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return ""


@needs_slurm
def test_a_node_that_fails_to_start_names_its_log_and_everything_is_stopped(tmp_path):
    cluster = SlurmCluster(tmp_path / "c")
    with socket.socket() as taken:  # gpu2's port is taken: its slurmd cannot listen
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        taken.bind(("0.0.0.0", cluster.node("gpu2").port))
        taken.listen()
        with pytest.raises(SlurmError) as e:
            cluster.start(timeout=30)
    message = str(e.value)
    assert message.startswith(f"slurmd gpu2 exited with code 1; log {cluster.node('gpu2').log}:\n")
    assert f"Unable to bind listen port ({cluster.node('gpu2').port}): Address already in use" in message
    started = [p for p in (cluster.munged, cluster.slurmctld, *(n.proc for n in cluster.nodes)) if p is not None]
    assert len(started) >= 4  # munged, slurmctld, gpu1 and gpu2 had started
    assert [p.args for p in started if p.poll() is None] == []


@needs_slurm
def test_two_clusters_side_by_side(slurm, tmp_path):
    """A second cluster (its own munged, key, ports, slurm.conf lines) does not see the first one's nodes."""
    with SlurmCluster(tmp_path / "c", nodes=1, prefix="other",
                      extra_conf=["HealthCheckProgram=/bin/true", "HealthCheckInterval=30", "KillWait=7"]) as other:
        assert other.node_states() == {"other1": "idle"}
        config = other.run("scontrol", "show", "config").stdout.splitlines()
        assert [" ".join(line.split()) for line in config if line.startswith(("HealthCheckP", "HealthCheckI", "KillW"))
                ] == ["HealthCheckInterval = 30 sec", "HealthCheckProgram = /bin/true", "KillWait = 7 sec"]
        r = other.run("srun", "sh", "-c", 'echo "$SLURMD_NODENAME"')
        assert (r.returncode, r.stdout) == (0, "other1\n"), r.stderr
        assert slurm.node_states() == {"gpu1": "idle", "gpu2": "idle", "gpu3": "idle"}
        assert other.munge_key.read_bytes() != slurm.munge_key.read_bytes()


def test_gpus_are_declared_only_for_nodes_of_the_cluster(tmp_path):
    with pytest.raises(ValueError) as e:
        SlurmCluster(tmp_path / "c", gpus={"gpu7": 1})
    assert str(e.value) == "gpus: no node 'gpu7' in this cluster"
    with pytest.raises(ValueError) as e:
        SlurmCluster(tmp_path / "d", gpus={"gpu1": "a100"})
    assert str(e.value) == "gpus: 'a100' is not N or TYPE:N"


def test_gpus_become_gres_lines(tmp_path):
    c = SlurmCluster(tmp_path / "c", nodes=3, gpus={"gpu2": 2, "gpu3": "a100:1"})
    c._write_files()
    lines = c.conf.read_text().splitlines()
    assert "GresTypes=gpu" in lines
    assert [next(w for w in ln.split() if w.startswith("Gres=")) if "Gres=" in ln else None
            for ln in lines if ln.startswith("NodeName=")] == [None, "Gres=gpu:2", "Gres=gpu:a100:1"]
    dev = c.base_dir / "dev"
    assert (c.base_dir / "gres.conf").read_text().splitlines() == [
        f"NodeName=gpu2 Name=gpu Count=2 File={dev}/gpu2/nvidia[0-1]",
        f"NodeName=gpu3 Name=gpu Type=a100 Count=1 File={dev}/gpu3/nvidia0"]
    assert sorted(p.relative_to(dev).as_posix() for p in dev.rglob("nvidia*")) == ["gpu2/nvidia0", "gpu2/nvidia1",
                                                                                  "gpu3/nvidia0"]
