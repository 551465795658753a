"""`invoke provision` end to end against real Debian hosts: debootstrap roots running their own sshd,
the real apt and dpkg, a signed local apt repository serving stand-in nvidia-container-toolkit
packages (see tests/debroot.py).  Each host is an overlay of one cached root, so every test can
say exactly which files a run wrote.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from provision.facts import APT_KEYRING, APT_LIST, PACKAGES
from provision.steps import apt_source
from provision.settings import Settings
from tests import debroot

REPO = Path(__file__).resolve().parents[1]
SECRET = "Become-Pw-7f3a9c"  # ops's sudo password: must never appear in any output, report or host file

pytestmark = pytest.mark.skipif(debroot.unavailable() is not None, reason=str(debroot.unavailable()))


class Lab:
    def __init__(self, farm, work: Path):
        self.farm = farm
        self.work = work
        self.hosts: dict[str, debroot.ChrootHost] = {}
        self.runs = 0
        self.home = work / "home"
        (self.home / ".ssh").mkdir(parents=True)
        os.symlink(farm.known_hosts, self.home / ".ssh" / "known_hosts")
        (self.home / ".ssh" / "config").write_text("")

    def invoke(self, *args: str, password: str | None = None, json_report: bool = True):
        """Run `invoke provision` as an operator would; returns (exit code, stdout, stderr, report)."""
        self.runs += 1
        report = self.work / f"report-{self.runs}.json"
        env = {k: v for k, v in os.environ.items() if k not in ("GPUFLEET_BECOME_PASSWORD", "SSH_AUTH_SOCK")}
        env["HOME"] = str(self.home)
        if password is not None:
            env["GPUFLEET_BECOME_PASSWORD"] = password
        argv = [sys.executable, "-m", "invoke", "provision", "--inventory", str(self.inventory),
                "--connect-timeout", "5", "--timeout", "240", *args]
        if json_report:
            argv += ["--json", str(report)]
        r = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
                           stdin=subprocess.DEVNULL)
        data = json.loads(report.read_text()) if json_report and report.exists() else None
        raw = report.read_text() if json_report and report.exists() else ""
        return r.returncode, r.stdout, r.stderr, data, raw


@pytest.fixture(scope="module")
def lab(farm, tmp_path_factory):
    started = time.monotonic()
    base = debroot.cached_root(log=lambda m: print(m, file=sys.stderr))
    print(f"[debroot] root ready in {time.monotonic() - started:.1f}s (debootstrap took "
          f"{debroot.build_seconds(base)}s when it was built)", file=sys.stderr)
    work = tmp_path_factory.mktemp("provision")
    lab = Lab(farm, work)
    repo = debroot.AptRepo(work / "repo").build().serve()
    lab.repo = repo
    sudoers = ("ops ALL=(ALL:ALL) ALL\n"
               "nopw ALL=(ALL:ALL) NOPASSWD: ALL\n"
               "Defaults lecture=never\n")
    try:
        for i, name in enumerate(("deb-a", "deb-b", "deb-c")):
            h = debroot.ChrootHost(name, base, work / name, f"127.0.1.{i + 2}")
            lab.hosts[name] = h
            h.start(farm, {"ops": SECRET, "nopw": None}, sudoers)
        down = farm.add_down_host("down")
        hv = {n: dict(farm.hosts[n].vars) for n in lab.hosts}
        hv["deb-b"]["gpufleet_toolkit_repo_url"] = repo.url.replace("/stable", "/no-such-mirror")
        hv["deb-c"].update(ansible_user="ops", ansible_become=True)
        hv["deb-c-nopw"] = dict(hv["deb-c"], ansible_user="nopw")
        hv["down"] = dict(down.vars)
        doc = {"all": {"children": {"gpu-nodes": {
            "vars": {"gpufleet_toolkit_repo_url": repo.url, "gpufleet_toolkit_key_url": repo.key_url},
            "hosts": hv}}}}
        lab.inventory = work / "inventory.yaml"
        lab.inventory.write_text(yaml.safe_dump(doc, sort_keys=False))
        print(f"[debroot] lab up in {time.monotonic() - started:.1f}s", file=sys.stderr)
        yield lab
    finally:
        for h in lab.hosts.values():
            h.stop()
        repo.stop()


def restarts(h: debroot.ChrootHost) -> int:
    return (h.read(debroot.FAKE_SYSTEMCTL_LOG) or "").splitlines().count("restart docker")


def changed_paths(before: dict, after: dict) -> list[str]:
    return sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))


def outcome(report, host):
    """A host's (status, changed): provisioning speaks the shared vocabulary, plus whether it changed the host."""
    return report["hosts"][host]["status"], report["hosts"][host]["changed"]


def steps(report: dict, host: str) -> dict[str, str]:
    return {s["name"]: s["status"] for s in report["hosts"][host]["steps"]}


# ---------------------------------------------------------------- one host, start to finish


def test_check_mode_prints_the_commands_and_changes_nothing(lab):
    a = lab.hosts["deb-a"]
    before = a.snapshot()
    rc, out, err, report, _ = lab.invoke("--hosts", "deb-a", "--check")
    assert rc == 0, out + err
    assert changed_paths(before, a.snapshot()) == []  # not one file written on the host
    assert a.installed("nvidia-container-toolkit") is None and a.read(APT_LIST) is None
    assert report["check"] is True and outcome(report, "deb-a") == ("pass", True)
    assert steps(report, "deb-a") == {"prerequisites": "ok", "repository": "changed", "package": "changed",
                                      "runtime-docker": "changed"}
    assert "check mode: nothing was changed" in out
    assert "would change  repository" in out
    assert f"cat > {APT_LIST} <<'EOF'" in out and f"{lab.repo.url}/deb/$(ARCH) /" in out
    assert "apt-get install -y --no-install-recommends" in out and "nvidia-container-toolkit" in out
    assert "$ nvidia-ctk runtime configure --runtime=docker" in out and "$ systemctl restart docker" in out
    assert restarts(a) == 0


def test_first_run_installs_configures_and_reports_changed(lab):
    a = lab.hosts["deb-a"]
    rc, out, err, report, _ = lab.invoke("--hosts", "deb-a")
    assert rc == 0, out + err
    h = report["hosts"]["deb-a"]
    assert (h["status"], h["changed"]) == ("pass", True) and h["family"] == "apt" and h["os"] == "debian 12"
    assert steps(report, "deb-a") == {"prerequisites": "ok", "repository": "changed", "package": "changed",
                                      "runtime-docker": "changed"}
    # the real package manager did the work
    for p in PACKAGES:
        assert a.installed(p) == "1.17.8-1", p
    assert a.read(APT_LIST) == apt_source(Settings(repo_url=lab.repo.url))
    served = subprocess.run(["gpg", "--dearmor"], input=(lab.repo.site / "gpgkey").read_bytes(),
                            capture_output=True, check=True).stdout
    assert a.path(APT_KEYRING).read_bytes() == served
    assert not a.path("/root/.gnupg").exists()  # the dearmoring left no keyring directory behind
    daemon = json.loads(a.read("/etc/docker/daemon.json"))
    assert daemon["runtimes"]["nvidia"] == {"args": [], "path": "nvidia-container-runtime"}
    assert daemon["log-driver"] == "json-file" and daemon["log-opts"] == {"max-size": "10m"}  # merged, kept
    assert restarts(a) == 1  # its configuration changed: restarted once
    checks = {v["name"]: v for v in h["validation"]}
    assert checks["nvidia-ctk"]["status"] == "pass" and "1.17.8" in checks["nvidia-ctk"]["message"]
    assert checks["docker-runtime"]["status"] == "pass"
    assert h["audit"]["status"] == "pass" and "1.17.8" in h["audit"]["message"]
    assert "verified state" in out and "1 host: 1 pass, 1 changed" in out.splitlines()


def test_second_run_changes_nothing(lab):
    a = lab.hosts["deb-a"]
    before = a.snapshot()
    rc, out, err, report, _ = lab.invoke("--hosts", "deb-a")
    assert rc == 0, out + err
    assert outcome(report, "deb-a") == ("pass", False)
    assert set(steps(report, "deb-a").values()) == {"ok"}
    assert all(s["commands"] == [] for s in report["hosts"]["deb-a"]["steps"])
    assert changed_paths(before, a.snapshot()) == []
    assert restarts(a) == 1  # no restart without a configuration change
    assert "1 host: 1 pass" in out.splitlines()


def test_pinned_version_changes_then_holds(lab):
    a = lab.hosts["deb-a"]
    rc, out, err, report, _ = lab.invoke("--hosts", "deb-a", "--version", "1.17.7")
    assert rc == 0, out + err
    assert steps(report, "deb-a")["package"] == "changed"
    assert all(a.installed(p) == "1.17.7-1" for p in PACKAGES)
    ctk = {v["name"]: v for v in report["hosts"]["deb-a"]["validation"]}["nvidia-ctk"]
    assert ctk["status"] == "pass" and "1.17.7" in ctk["message"]
    assert restarts(a) == 1  # the runtime configuration did not change: no restart
    before = a.snapshot()
    rc, out, err, report, _ = lab.invoke("--hosts", "deb-a", "--version", "1.17.7-1")
    assert rc == 0 and outcome(report, "deb-a") == ("pass", False), out + err
    rc, out, err, report, _ = lab.invoke("--hosts", "deb-a")  # unpinned: present is enough, no upgrade
    assert rc == 0 and outcome(report, "deb-a") == ("pass", False), out + err
    assert changed_paths(before, a.snapshot()) == []


def test_smoke_test_and_containerd_where_absent(lab):
    rc, out, err, report, _ = lab.invoke("--hosts", "deb-a", "--smoke-test", "--containerd")
    assert rc == 0, out + err
    h = report["hosts"]["deb-a"]
    assert steps(report, "deb-a")["runtime-containerd"] == "skipped"
    checks = {v["name"]: v for v in h["validation"]}
    assert checks["smoke-test"]["status"] == "pass"
    assert "docker run --rm --gpus all ubuntu nvidia-smi" in checks["smoke-test"]["message"]
    assert checks["containerd-runtime"]["status"] == "skip"


# ---------------------------------------------------------------- several hosts, failures, sudo


def test_broken_repository_fails_that_host_while_the_others_proceed(lab):
    b, c = lab.hosts["deb-b"], lab.hosts["deb-c"]
    rc, out, err, report, raw = lab.invoke("--hosts", "deb-b,deb-c,down", password=SECRET)
    assert rc == 1, out + err
    hb = report["hosts"]["deb-b"]
    assert hb["status"] == "fail"
    assert steps(report, "deb-b") == {"prerequisites": "ok", "repository": "failed", "package": "skipped",
                                      "runtime-docker": "skipped"}
    msg = hb["message"]
    assert "apt-get update of the toolkit repository failed" in msg and "/no-such-mirror/" in msg and "404" in msg
    assert "previous state was restored" in msg
    assert b.read(APT_LIST) is None and not b.path(APT_KEYRING).exists()  # nothing half-configured left
    assert b.installed("nvidia-container-toolkit") is None
    # deb-c (ops, through sudo with a password) was provisioned meanwhile; "down" is just unreachable
    assert outcome(report, "deb-c") == ("pass", True) and report["hosts"]["deb-c"]["become"] is True
    assert c.installed("nvidia-container-toolkit") == "1.17.8-1"
    assert report["hosts"]["down"]["status"] == "unreachable"
    assert report["counts"] == {"hosts": 3, "pass": 1, "warn": 0, "skipped": 0, "fail": 1, "error": 0, "unreachable": 1,
                                "changed": 1}
    assert "deb-b  FAIL  debian 12 (apt)" in out and "/no-such-mirror/" in out
    # the sudo password is nowhere: not printed, not in the report, not on the host
    assert SECRET not in out and SECRET not in err and SECRET not in raw
    leaked = [p for p in _files(c.upper) if SECRET.encode() in p.read_bytes()]
    assert leaked == []


def test_wrong_become_password_is_refused_and_never_echoed(lab):
    wrong = "Wrong-Pw-22c1e0"
    rc, out, err, report, raw = lab.invoke("--hosts", "deb-c", password=wrong)
    assert rc == 1
    assert report["hosts"]["deb-c"]["status"] == "fail"
    assert "sudo rejected the password" in report["hosts"]["deb-c"]["message"]
    for text in (out, err, raw):
        assert wrong not in text and SECRET not in text


def test_passwordless_sudo_never_receives_the_password(lab):
    rc, out, err, report, raw = lab.invoke("--hosts", "deb-c-nopw", "--check", password=SECRET)
    assert rc == 0, out + err
    assert outcome(report, "deb-c-nopw") == ("pass", False)  # deb-c was provisioned above
    assert SECRET not in out + err + raw


def test_bad_option_is_a_usage_error(lab):
    rc, out, err, report, _ = lab.invoke("--hosts", "deb-a", "--repo-url", "ftp://mirror/x", json_report=False)
    assert rc == 2 and "--repo-url" in err


def _files(top: Path):
    for dirpath, _, names in os.walk(top):
        for n in names:
            p = Path(dirpath) / n
            if p.is_file() and not p.is_symlink() and p.stat().st_size < 50_000_000:
                yield p
