"""The `gpufleet` command as an operator meets it: usage errors, defaults from anywhere, Ctrl-C and timeouts.

Runs the real console program (``python -m fleet.cli``, what the ``gpufleet``
script calls) as a subprocess, against real sshd test hosts where a host is needed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.sshd import REPO, invoke_env


def gpufleet(args: list[str], env: dict | None = None, cwd: str | Path = "/", timeout: float = 300,
             umask: int | None = None) -> subprocess.CompletedProcess:
    env = dict(env or os.environ)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return subprocess.run([sys.executable, "-m", "fleet.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout, preexec_fn=None if umask is None else (lambda: os.umask(umask)))


USAGE_ERRORS = [
    (["verify", "--bogus"], "gpufleet: No idea what '--bogus' is! (see gpufleet --help)"),
    (["verfiy"], "gpufleet: No idea what 'verfiy' is! (see gpufleet --help)"),
    (["report"], "gpufleet: 'report' did not receive required positional arguments: 'run_dir' (see gpufleet --help)"),
    (["verify", "--timeout", "abc"], "gpufleet: --timeout must be a positive number, got 'abc'"),
    (["audit", "--forks", "abc"], "gpufleet: --forks must be a positive whole number, got 'abc'"),
    (["verify", "--out", "/etc/passwd"], "gpufleet: --out /etc/passwd: exists and is not a directory"),
    (["verify", "--profile", "huge"],
     "gpufleet: --profile must be one of quick, full, nightly, acceptance, got 'huge'"),
    (["verify", "--nproc", "zero"], "gpufleet: --nproc must be a positive whole number, got 'zero'"),
    (["verify", "--hosts", "gpu-nodes", "--checks", "compute,typo"],
     "gpufleet: --checks: unknown stage(s) typo; choose from all, collectives, ddp, compute, memory, inference, "
     "pipeline, burn, memtest, dcgm"),
    (["verify", "--one-job"], "gpufleet: --one-job needs --via slurm"),
    (["verify", "--via", "slurm", "--shared-dir", "/shared/gpufleet", "--one-job", "--multinode"],
     "gpufleet: --one-job is for single-node checks: not with --multinode"),
    (["verify", "--via", "slurm", "--shared-dir", "/shared/gpufleet", "--one-job", "--pairwise"],
     "gpufleet: --one-job is for single-node checks: not with --pairwise"),
    (["audit", "--hosts", "nosuch"],
     f"gpufleet: pattern term 'nosuch' matches no host or group (inventory {REPO / 'inventory' / 'hosts.yaml'})"),
    (["audit", "--inventory", "/nonexistent/hosts.yaml"],
     "gpufleet: inventory error: /nonexistent/hosts.yaml: cannot read inventory: No such file or directory "
     "(inventory from --inventory)"),
]


@pytest.mark.parametrize("args,line", USAGE_ERRORS, ids=[" ".join(a) for a, _ in USAGE_ERRORS])
def test_every_usage_error_exits_2_with_one_line(args, line, tmp_path):
    r = gpufleet(args, cwd=tmp_path, timeout=60)
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stderr.strip() == line and "Traceback" not in r.stderr
    assert r.stdout == ""  # no host was contacted: nothing printed a progress line or a table


def test_help_and_list_work_from_anywhere(tmp_path):
    r = gpufleet(["--list"], cwd=tmp_path)
    assert r.returncode == 0 and {"audit", "verify", "report", "push", "provision"} <= set(r.stdout.split())
    r = gpufleet(["verify", "--help"], cwd=tmp_path)
    assert r.returncode == 0 and "--checks" in r.stdout and "--hosts" in r.stdout and "-h" not in r.stdout.split()


@pytest.mark.slow
def test_the_documented_command_passes_on_the_default_inventory_from_another_directory(tmp_path):
    out = tmp_path / "reports"
    history = str(tmp_path / "history.sqlite")
    r = gpufleet(["verify", "--hosts", "gpu-nodes", "--checks", "compute", "--out", str(out), "--history", history,
                  "--prom", str(tmp_path / "gpufleet.prom"), "--junit", str(tmp_path / "junit.xml")], cwd=tmp_path,
                 umask=0o022)
    assert r.returncode == 0, r.stdout + r.stderr
    (run_dir,) = [p for p in out.iterdir() if p.is_dir()]
    # one host, one run: no distribution of one point and no trend of one point; the page says so
    first_page = (run_dir / "summary.html").read_text()
    assert 'src="data:image/png;base64,' not in first_page and "fewer than 3 hosts" in first_page
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["hosts"]["localhost"]["status"] == "pass" and summary["exit_code"] == 0
    # the files an ops group reads follow the umask (022: readable by all), the page holds its plots
    import stat

    for f in (run_dir / "summary.json", run_dir / "summary.html", run_dir / "run.json",
              run_dir / "hosts" / "localhost.json", tmp_path / "gpufleet.prom", tmp_path / "junit.xml"):
        assert stat.S_IMODE(f.stat().st_mode) == 0o644, f
    # the same command the next night: the host's trend from its two runs is drawn
    r = gpufleet(["verify", "--hosts", "gpu-nodes", "--checks", "compute", "--out", str(out), "--history", history],
                 cwd=tmp_path, umask=0o022)
    assert r.returncode == 0, r.stdout + r.stderr
    second = max(p for p in out.iterdir() if p.is_dir())
    page = (second / "summary.html").read_text()
    assert 'alt="trends of localhost"' in page and 'src="data:image/png;base64,' in page
    # the outputs operators watch: node_exporter's textfile, CI's JUnit
    from prometheus_client.parser import text_string_to_metric_families
    import xml.etree.ElementTree as ET

    families = {f.name: f for f in text_string_to_metric_families((tmp_path / "gpufleet.prom").read_text())}
    status = {s.labels["status"]: s.value for s in families["gpufleet_host_status"].samples
              if s.labels["host"] == "localhost"}
    assert status["pass"] == 1 and sum(status.values()) == 1
    matmul = [s for s in families["gpufleet_verify_matmul_fp32_flops_per_second"].samples]
    assert [(s.labels["host"], s.labels["gpu"]) for s in matmul] == [("localhost", "cpu0")] and matmul[0].value > 0
    suite = ET.parse(tmp_path / "junit.xml").getroot().find("testsuite")
    assert suite.get("name") == "localhost" and suite.get("failures") == "0" and suite.get("errors") == "0"


# --------------------------------------------------------------------------- Ctrl-C and timeouts


def _processes_under(directory: Path) -> list[str]:
    """Processes on this machine whose working directory is inside ``directory`` (a test host's remote dir)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cwd = os.readlink(f"/proc/{entry}/cwd")
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if state != "Z" and (cwd == str(directory) or cwd.startswith(str(directory) + "/")):
            found.append(f"{entry} {cmd.strip()}")
    return found


@pytest.fixture(scope="module")
def hanging_hosts(farm):
    """Two hosts whose verify hangs in the collectives stage (a rank sleeps), as a stuck GPU job would."""
    names = ("hang-a", "hang-b")
    for name in names:
        farm.add_host(name, fixture=None, gpus=0, extra_vars={
            "ansible_python_interpreter": sys.executable,
            "gpufleet_remote_dir": str(farm.root / name / "cache"),
            "gpufleet_verify_env": {"GPUFLEET_VERIFY_FAULT": "rank-hang"}})
    return names


def _signals_at_default() -> None:
    """In the child: SIGINT as a terminal delivers it, even when this suite runs with SIGINT ignored
    (a background job of a non-interactive shell inherits SIG_IGN, and Python then installs no handler)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_stops_every_rank_on_every_host_and_keeps_the_run(farm, hanging_hosts, tmp_path, sig):
    inv = farm.write_inventory(tmp_path / "hosts.yaml", names=list(hanging_hosts))
    env = invoke_env(farm, tmp_path / "home")
    env["PYTHONPATH"] = str(REPO)
    out = tmp_path / "reports"
    proc = subprocess.Popen([sys.executable, "-m", "fleet.cli", "verify", "--hosts", "all", "--inventory", str(inv),
                             "--out", str(out), "--nproc", "2", "--checks", "collectives", "--timeout", "240"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_signals_at_default)
    caches = {n: farm.root / n / "cache" for n in hanging_hosts}
    start = time.monotonic()
    # 8 s in, and not before torchrun runs on both hosts (each host's run records its pid when it starts)
    while time.monotonic() - start < 120 and not all(any(c.glob("verify-*/runs/*/*/pid")) for c in caches.values()):
        time.sleep(0.2)
    assert all(any(c.glob("verify-*/runs/*/*/pid")) for c in caches.values()), "verify never started"
    time.sleep(max(0.0, 8 - (time.monotonic() - start)) + 2)
    assert all(_processes_under(c) for c in caches.values())  # ranks are running (and hanging) on both
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=120)  # a ceiling, not a measure: the event is the exit below
    assert proc.returncode == 130, stdout + stderr
    for name, cache in caches.items():
        assert _processes_under(cache) == [], name
    (run_dir,) = [p for p in out.iterdir() if p.is_dir()]
    run = json.loads((run_dir / "run.json").read_text())
    assert run["interrupted"] is True
    assert {h["host"]: h["state"] for h in run["hosts"]} == {"hang-a": "interrupted", "hang-b": "interrupted"}
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["exit_code"] == 130 and summary["interrupted"] is True
    assert "interrupted" in stdout
    # `report` on it says so too
    r = gpufleet(["report", str(run_dir)], env=env)
    assert r.returncode == 130 and "interrupted" in r.stdout


@pytest.mark.slow
def test_a_host_cut_off_at_its_timeout_has_nothing_left_running(farm, hanging_hosts, tmp_path):
    inv = farm.write_inventory(tmp_path / "hosts.yaml", names=["hang-a"])
    env = invoke_env(farm, tmp_path / "home")
    env["PYTHONPATH"] = str(REPO)
    out = tmp_path / "reports"
    r = gpufleet(["verify", "--hosts", "hang-a", "--inventory", str(inv), "--out", str(out), "--nproc", "2",
                  "--checks", "collectives", "--timeout", "10"], env=env, cwd=tmp_path, timeout=120)
    assert r.returncode == 1, r.stdout + r.stderr
    (run_dir,) = [p for p in out.iterdir() if p.is_dir()]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["hosts"]["hang-a"]["state"] == "timed_out" and summary["hosts"]["hang-a"]["status"] == "error"
    deadline = time.monotonic() + 180  # a ceiling: the node-side guard's KILL comes 15 s after its TERM
    while time.monotonic() < deadline and _processes_under(farm.root / "hang-a" / "cache"):
        time.sleep(0.5)
    assert _processes_under(farm.root / "hang-a" / "cache") == []


def test_unknown_host_key_shows_the_whole_remedy_and_says_what_it_is(farm, tmp_path):
    farm.add_host("newcomer", fixture="rtx-3090-v12.xml", known=False)
    inv = farm.write_inventory(tmp_path / "hosts.yaml", names=["newcomer"])
    env = invoke_env(farm, tmp_path / "home")
    r = gpufleet(["audit", "--inventory", str(inv)], env=env, cwd=tmp_path, timeout=60)
    assert r.returncode == 1
    row = next(line for line in r.stdout.splitlines() if line.startswith("newcomer "))
    assert "unreachable (host_key_rejected)" in row
    host = farm.hosts["newcomer"]
    assert (f"  newcomer: host_key_rejected: unknown host key for [{host.address}]:{host.port}: verify its "
            f"fingerprint, then add it with `ssh-keyscan -p {host.port} {host.address} >> ~/.ssh/known_hosts` or "
            f"re-run with --accept-new-host-keys to trust it on first use") in r.stdout.splitlines()


def test_a_host_the_inventory_describes_beyond_gpufleet_is_that_hosts_error_only(farm, tmp_path):
    farm.add_host("plain", fixture="rtx-3090-v12.xml")
    inv = tmp_path / "hosts.ini"
    h = farm.hosts["plain"]
    plain = " ".join(f"{k}={v}" for k, v in h.vars.items())
    inv.write_text(f"[gpu]\nplain {plain}\n"
                   "in-a-container ansible_connection=docker\ntemplated ansible_host='{{ lookup(\"env\", \"X\") }}'\n")
    env = invoke_env(farm, tmp_path / "home")
    r = gpufleet(["audit", "--inventory", str(inv), "--json", str(tmp_path / "a.json")], env=env, cwd=tmp_path,
                 timeout=60)
    assert r.returncode == 1, r.stdout + r.stderr
    report = json.loads((tmp_path / "a.json").read_text())
    assert {n: (e["state"], e["status"]) for n, e in report["hosts"].items()} == {
        "plain": ("ok", "warn"), "in-a-container": ("error", "error"), "templated": ("error", "error")}
    assert report["hosts"]["in-a-container"]["message"] == \
        "ansible_connection 'docker' is not supported (gpufleet connects over ssh, or local)"
    assert report["hosts"]["templated"]["message"].startswith("ansible_host is a Jinja template")
    assert "  in-a-container: error: ansible_connection 'docker' is not supported" in r.stdout


def test_a_second_run_on_a_locked_reports_directory_exits_2_naming_the_holder(tmp_path):
    out = tmp_path / "reports"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from fleet.runlock import RunLock, lock_path_for; "
                               f"l = RunLock(lock_path_for({str(out)!r}), "
                               "command='gpufleet verify --hosts gpu-nodes'); "
                               "l.acquire(); print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert holder.stdout.readline().strip() == "held"
        r = gpufleet(["verify", "--hosts", "gpu-nodes", "--checks", "compute", "--out", str(out)], cwd=tmp_path,
                     timeout=60)
        assert r.returncode == 2
        line = r.stderr.strip().splitlines()[-1]
        assert line.startswith(
            f"gpufleet: another gpufleet run holds the lock {out}/.gpufleet.lock: pid {holder.pid} on ")
        assert line.endswith(", running: gpufleet verify --hosts gpu-nodes")
        assert not [p for p in out.iterdir() if p.name != ".gpufleet.lock"]  # nothing was run
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.slow
def test_keep_runs_prunes_old_run_directories_and_nothing_else(tmp_path):
    out = tmp_path / "reports"
    for name in ("20250101T000000Z", "20250102T000000Z", "20250103T000000Z"):
        (out / name).mkdir(parents=True)
    (out / "notes").mkdir()
    r = gpufleet(["verify", "--hosts", "gpu-nodes", "--checks", "compute", "--out", str(out), "--keep-runs", "2"],
                 cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    left = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert left[0] == "20250103T000000Z" and left[-1] == "notes" and len(left) == 3  # the newest old one + this run
    assert "pruned 2 old run directories: 20250101T000000Z, 20250102T000000Z" in r.stderr


def test_every_audit_is_recorded_and_history_shows_them(tmp_path):
    db = tmp_path / "h.sqlite"
    for _ in range(2):
        r = gpufleet(["audit", "--hosts", "gpu-nodes", "--history", str(db)], cwd=tmp_path, timeout=120)
        assert r.returncode in (0, 1) and f"recorded in the history: {db}" in r.stderr, r.stderr
    r = gpufleet(["audit", "--hosts", "gpu-nodes", "--no-history"], cwd=tmp_path, timeout=120)
    assert "recorded in the history" not in r.stderr
    r = gpufleet(["history", "--history", str(db), "--json", str(tmp_path / "h.json")], cwd=tmp_path)
    assert r.returncode == 0 and r.stdout.startswith("localhost: 2 runs")
    doc = json.loads((tmp_path / "h.json").read_text())
    assert doc["schema"] == "gpufleet.history/1" and list(doc["hosts"]) == ["localhost"]
    runs = doc["hosts"]["localhost"]["runs"]
    assert [run["kind"] for run in runs] == ["audit", "audit"] and len({run["run_id"] for run in runs}) == 2
    r = gpufleet(["history", "--history", str(tmp_path / "none.sqlite")], cwd=tmp_path)
    assert r.returncode == 0 and "no history yet" in r.stdout and not (tmp_path / "none.sqlite").exists()
    # a pattern, resolved through the (default) inventory, as every other task takes it
    r = gpufleet(["history", "--hosts", "gpu-nodes", "--history", str(db)], cwd=tmp_path)
    assert r.returncode == 0 and r.stdout.startswith("localhost: 2 runs"), r.stdout + r.stderr
    r = gpufleet(["history", "--metric", "nosuch/metric", "--history", str(db)], cwd=tmp_path)
    assert (r.returncode, r.stdout) == (2, "")
    assert r.stderr.startswith("gpufleet: --metric nosuch/metric: the history holds no such metric; known: ")


# --------------------------------------------------------------------------- configuration errors at the edges


def test_a_missing_key_file_is_one_line_naming_it_before_any_host(farm, tmp_path):
    farm.add_host("keyless", fixture="rtx-3090-v12.xml")
    inv = tmp_path / "hosts.yaml"
    inv.write_text(farm.inventory(names=["keyless"]).replace(str(farm.client_key), str(tmp_path / "nope" / "id_x")))
    r = gpufleet(["audit", "-i", str(inv), "--no-history"], env=invoke_env(farm, tmp_path / "home"), cwd=tmp_path,
                 timeout=120)
    assert (r.returncode, r.stdout) == (2, "")
    assert len(r.stderr.splitlines()) == 1 and r.stderr.startswith("gpufleet: ")
    assert str(tmp_path / "nope" / "id_x") in r.stderr and "ansible_ssh_private_key_file" in r.stderr


def test_a_wrong_key_for_every_host_is_one_line_naming_the_key(farm, tmp_path):
    farm.add_host("locked", fixture="rtx-3090-v12.xml", authorized=False)
    inv = farm.write_inventory(tmp_path / "hosts.yaml", names=["locked"])
    r = gpufleet(["audit", "-i", str(inv), "--no-history"], env=invoke_env(farm, tmp_path / "home"), cwd=tmp_path,
                 timeout=120)
    assert r.returncode == 2, r.stdout + r.stderr
    (line,) = [x for x in r.stderr.splitlines() if x.startswith("gpufleet: ")]
    assert line.startswith("gpufleet: authentication failed on the only host: locked: ")
    assert f"with key {farm.client_key}" in line


def test_an_inventory_turning_host_key_checking_off_audits_with_one_warning(farm, tmp_path):
    for name in ("lax-a", "lax-b"):
        farm.add_host(name, fixture="rtx-3090-v12.xml",
                      extra_vars={"ansible_ssh_common_args": "-o StrictHostKeyChecking=no "
                                                             "-o UserKnownHostsFile=/dev/null"})
    inv = farm.write_inventory(tmp_path / "hosts.yaml", names=["lax-a", "lax-b"])
    r = gpufleet(["audit", "-i", str(inv), "--no-history", "--json", str(tmp_path / "a.json")],
                 env=invoke_env(farm, tmp_path / "home"), cwd=tmp_path, timeout=180)
    warnings = [x for x in r.stderr.splitlines() if x.startswith("warning: ")]
    assert len(warnings) == 1 and "StrictHostKeyChecking" in warnings[0], r.stderr
    report = json.loads((tmp_path / "a.json").read_text())
    assert {h: e["state"] for h, e in report["hosts"].items()} == {"lax-a": "ok", "lax-b": "ok"}


@pytest.mark.skipif(not Path("/usr/bin/scontrol").exists(), reason="Slurm's client tools (slurm-wlm) not installed")
def test_slurm_sync_without_a_reachable_controller_is_one_line_exit_2(tmp_path):
    """A slurm.conf naming a controller nobody runs (port 1 on this machine): scontrol fails, gpufleet says so in
    one line and exits 2, as verify --via slurm does (cron must not read "a node failed")."""
    from fleet.outcome import HostState
    from fleet.runs.record import HostRun
    from fleet.runs.run_dir import write_run

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    write_run(run_dir, [HostRun("gpu1", HostState.UNREACHABLE, message="refused")],
              {"run_id": "r1", "started": "2026-12-07T00:00:00+00:00", "finished": "2026-12-07T00:01:00+00:00",
               "interrupted": False, "pattern": "all", "profile": "quick"})
    conf = tmp_path / "slurm.conf"
    conf.write_text("ClusterName=nowhere\nSlurmctldHost=localhost(127.0.0.1)\nSlurmctldPort=1\n"
                    "MessageTimeout=2\nNodeName=gpu1 CPUs=1 State=UNKNOWN\nPartitionName=p Nodes=gpu1\n")
    r = gpufleet(["slurm-sync", str(run_dir)], env={**os.environ, "SLURM_CONF": str(conf)}, cwd=tmp_path,
                 timeout=300)
    assert (r.returncode, r.stdout) == (2, ""), r.stdout + r.stderr
    assert len(r.stderr.splitlines()) == 1 and r.stderr.startswith("gpufleet: slurm-sync: scontrol"), r.stderr
