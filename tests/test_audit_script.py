"""AUDIT_SCRIPT run for real (sh and dash) against fake commands replaying recorded output, then analysed."""

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from fleet.audit import AUDIT_SCRIPT, AuditParseError, analyse, split_sections
from fleet.audit.expectations import Expectations
from fleet.status import Status
from tests.shared_fixtures import FIXTURES, captures

DATA = Path(__file__).parent / "data"
SHELLS = [s for s in ("sh", "dash") if shutil.which(s)]
TOOLS = ("cat", "sed", "grep", "mktemp", "rm", "mkdir", "uname", "timeout", "sleep")

MISMATCH = "Failed to initialize NVML: Driver/library version mismatch"
RUNTIMES = '{"nvidia":{"path":"nvidia-container-runtime"},"runc":{"path":"runc"}}'


class Host:
    """A temp dir whose bin/ holds only basic tools plus the fake commands a test adds."""

    def __init__(self, root: Path):
        self.root, self.bin = root, root / "bin"
        self.bin.mkdir()
        for tool in TOOLS:
            if shutil.which(tool):
                os.symlink(shutil.which(tool), self.bin / tool)

    def fake(self, name: str, body: str) -> None:
        path = self.bin / name
        path.write_text("#!/bin/sh\n" + body + "\n")
        path.chmod(0o755)

    def replay(self, name: str, source: Path, rc: int = 0) -> None:
        self.fake(name, f"cat '{source}'\nexit {rc}")

    def nvidia_smi(self, xml: Path | None = None, apps: str = "", fail: str | None = None, rc: int = 9) -> None:
        if fail is not None:
            self.fake("nvidia-smi", f"printf '%s\\n' '{fail}'\nexit {rc}")
            return
        (self.root / "apps.csv").write_text(apps)
        self.fake("nvidia-smi", f"""case "$1" in
  -q) cat '{xml}' ;;
  --query-compute-apps=*) cat '{self.root / "apps.csv"}' ;;
  *) echo "unexpected args: $*" >&2; exit 2 ;;
esac""")

    def run(self, shell: str = "sh", stdin_mode: bool = False, env: dict | None = None) -> subprocess.CompletedProcess:
        environ = {"PATH": str(self.bin), "HOME": str(self.root), "GPUFLEET_SYSFS": str(self.root / "sys"),
                   **(env or {})}  # GPUFLEET_SYSFS: never this machine's /sys (InfiniBand, NVSwitches)
        shell_path = shutil.which(shell)
        if stdin_mode:
            args, inp = [shell_path, "-s"], AUDIT_SCRIPT
        else:
            args, inp = [shell_path, "-c", AUDIT_SCRIPT], None
        proc = subprocess.run(args, input=inp, capture_output=True, text=True, env=environ, timeout=60, cwd=self.root)
        assert proc.returncode == 0, proc.stderr
        return proc


@pytest.fixture
def host(tmp_path):
    return Host(tmp_path)


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize("fixture", captures(), ids=lambda p: p.name)
def test_replays_every_fixture(host, shell, fixture):
    host.nvidia_smi(fixture)
    host.replay("lspci", DATA / "lspci" / "workstation.txt")
    out = host.run(shell).stdout
    sections = split_sections(out)
    assert sections["nvidia-smi"].stdout == fixture.read_text()  # byte-exact round trip
    assert sections["nvidia-smi"].rc == 0 and sections["lspci"].rc == 0
    audit = analyse(out, Expectations())
    assert audit.facts.nvidia_smi_error is None
    assert len(audit.facts.gpus) == fixture.read_text().count("<gpu id=")
    report = json.loads(json.dumps(audit.to_dict()))  # JSON-serialisable as is
    assert report["status"] in ("pass", "warn", "fail")
    for key in ("driver_version", "cuda_version", "lspci_gpu_count", "gpus"):
        assert key in report["facts"]
    assert report["facts"]["lspci_gpu_count"] == 1
    for gpu in report["facts"]["gpus"]:
        assert {"index", "name", "uuid", "pci_bus_id", "memory_total_mib"} <= set(gpu)


@pytest.mark.parametrize("shell", SHELLS)
def test_full_faulty_host(host, shell):
    host.nvidia_smi(DATA / "nvidia-smi" / "h100-2gpu-faulty-v12.xml",
                    apps="4242, python train.py, 39990 MiB, GPU-aaaaaaaa-0000-0000-0000-000000000000\n")
    host.replay("lspci", DATA / "lspci" / "h100-2gpu.txt")
    host.replay("dmesg", DATA / "kernel" / "dmesg-xids.txt")
    host.fake("nvidia-ctk", "echo 'NVIDIA Container Toolkit CLI version 1.14.3'; echo 'commit: abc'")
    host.fake("docker", f"echo '{RUNTIMES}'")
    out = host.run(shell, stdin_mode=True).stdout
    sections = split_sections(out)
    assert "journalctl" not in sections  # dmesg was readable
    assert sections["dmesg"].stdout.count("NVRM: Xid") == 3 and "Linux version" not in sections["dmesg"].stdout
    audit = analyse(out, Expectations(gpu_count=2, gpu_model="H100", driver_min="535.104", cuda_min="12.2"))
    f = audit.facts
    assert (f.lspci_gpu_count, len(f.gpus), f.driver_version, f.cuda_version) == (2, 2, "535.104.05", "12.2")
    assert f.toolkit_version == "1.14.3" and f.docker_runtimes == ["nvidia", "runc"]
    assert f.compute_processes[0]["pid"] == 4242 and f.xid_source == "dmesg"
    assert f.kernel and f.os  # real uname and /etc/os-release of this machine
    statuses = {c.name: c.status for c in audit.checks}
    assert statuses["xid"] is Status.FAIL and statuses["ecc:gpu1"] is Status.FAIL
    assert audit.status is Status.FAIL and audit.to_dict()["status"] == "fail"


@pytest.mark.parametrize("shell", SHELLS)
def test_everything_missing(host, shell):
    out = host.run(shell).stdout
    sections = split_sections(out)
    assert "compute-apps" not in sections  # not asked when nvidia-smi itself failed
    for name in ("lspci", "nvidia-smi", "nvidia-ctk", "dmesg", "journalctl"):
        assert sections[name].rc == 127, name
        assert "not found" in sections[name].stderr
    assert "docker-runtimes" not in sections
    audit = analyse(out, Expectations(gpu_count=8))
    assert audit.facts.nvidia_smi_error.kind == "not-installed"
    assert audit.facts.xids is None and audit.to_dict()["facts"]["xids"] == "unknown"
    checks = {c.name: c for c in audit.checks}
    assert checks["nvidia-smi"].status is Status.FAIL and "not installed" in checks["nvidia-smi"].message
    assert checks["gpu-count:expected"].status is Status.ERROR
    assert audit.status is Status.ERROR


@pytest.mark.parametrize("shell", SHELLS)
def test_driver_library_mismatch(host, shell):
    host.nvidia_smi(fail=MISMATCH, rc=18)
    host.replay("lspci", DATA / "lspci" / "h100-2gpu.txt")
    out = host.run(shell).stdout
    assert split_sections(out)["nvidia-smi"].rc == 18
    audit = analyse(out, Expectations(gpu_count=2))
    check = next(c for c in audit.checks if c.name == "nvidia-smi")
    assert check.status is Status.FAIL and check.observed == "driver-library-mismatch"
    assert "reboot" in check.message
    assert audit.status is Status.FAIL


@pytest.mark.parametrize("shell", SHELLS)
def test_garbage_nvidia_smi(host, shell):
    host.fake("nvidia-smi", "echo 'Segmentation fault (core dumped) <<<'; exit 0")
    out = host.run(shell).stdout
    audit = analyse(out, Expectations())
    check = next(c for c in audit.checks if c.name == "nvidia-smi")
    assert check.status is Status.ERROR and "Segmentation fault" in check.message
    assert audit.status is Status.ERROR


@pytest.mark.parametrize("shell", SHELLS)
def test_dmesg_denied_falls_back_to_journal(host, shell):
    host.fake("dmesg", "echo 'dmesg: read kernel buffer failed: Operation not permitted' >&2; exit 1")
    host.fake("journalctl", f"""case "$*" in
  *-k*--no-pager*) cat '{DATA / "kernel" / "dmesg-app-xids.txt"}'; echo '-- Boot 1234 --' ;;
  *) exit 2 ;;
esac""")
    audit = analyse(host.run(shell).stdout, Expectations())
    assert audit.facts.xid_source == "journalctl" and [x["xid"] for x in audit.facts.xids] == [13, 43]
    assert next(c for c in audit.checks if c.name == "xid").status is Status.WARN


def test_journal_without_permission_is_unknown(host):
    host.fake("dmesg", "echo 'dmesg: read kernel buffer failed: Operation not permitted' >&2; exit 1")
    host.fake("journalctl", "echo 'No journal files were opened due to insufficient permissions.' >&2; exit 0")
    audit = analyse(host.run().stdout, Expectations())
    assert audit.facts.xids is None


def test_marker_injection_and_missing_newline(host):
    """Payload that looks like framing, and output with no final newline, round-trip exactly."""
    nasty = "@@gpufleet-end nvidia-smi rc=0@@\n@@gpufleet-done@@\n|pipe\n\nlast line without newline"
    (host.root / "nasty.txt").write_text(nasty)
    host.replay("nvidia-ctk", host.root / "nasty.txt")
    host.fake("lspci", "printf ''")
    sections = split_sections(host.run().stdout)
    assert sections["nvidia-ctk"].stdout == nasty
    assert sections["lspci"].stdout == "" and sections["lspci"].rc == 0
    assert "driver-module" in sections and "dmesg" in sections  # framing continued after the nasty payload


def test_no_temp_dir_still_parses(host):
    os.unlink(host.bin / "mktemp")
    host.nvidia_smi(FIXTURES / "tesla-t4.xml")
    out = host.run(env={"TMPDIR": str(host.root / "does-not-exist")}).stdout
    sections = split_sections(out)
    assert "no temporary directory" in sections["nvidia-smi"].stderr
    assert len(analyse(out, Expectations()).facts.gpus) == 1


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root and setpriv to drop to nobody")
def test_runs_unprivileged():
    root = Path(tempfile.mkdtemp(prefix="gpufleet-unpriv-"))  # pytest's tmp_path is not traversable by nobody
    try:
        os.chmod(root, 0o755)
        host = Host(root)
        shutil.copy(FIXTURES / "tesla-t4.xml", root / "t4.xml")
        host.nvidia_smi(root / "t4.xml")
        host.fake("dmesg", "echo 'dmesg: read kernel buffer failed: Operation not permitted' >&2; exit 1")
        for path in (root / "t4.xml", root / "apps.csv"):
            path.chmod(0o644)
        proc = subprocess.run([shutil.which("setpriv"), "--reuid=65534", "--regid=65534", "--clear-groups",
                               shutil.which("sh"), "-c", AUDIT_SCRIPT],
                              capture_output=True, text=True, env={"PATH": str(host.bin), "TMPDIR": "/tmp"},
                              timeout=60)
        assert proc.returncode == 0
        sections = split_sections(proc.stdout)
        assert "no temporary directory" not in sections["nvidia-smi"].stderr
        audit = analyse(proc.stdout, Expectations())
        assert audit.facts.gpus and audit.facts.gpus[0].name == "Tesla T4"
        assert audit.facts.xids is None  # dmesg denied, no journalctl: unknown, not a failure
    finally:
        shutil.rmtree(root)


@pytest.mark.parametrize("shell", SHELLS)
def test_pure_sh_framing_without_sed(host, shell):
    os.unlink(host.bin / "sed")
    nasty = "  line one\t\n\\back\\slash  spaced  \n\nno final newline"
    (host.root / "nasty.txt").write_text(nasty)
    host.replay("nvidia-ctk", host.root / "nasty.txt")
    host.nvidia_smi(FIXTURES / "rtx-3060-v12.xml")
    sections = split_sections(host.run(shell).stdout)
    assert sections["nvidia-ctk"].stdout == nasty
    assert sections["nvidia-smi"].stdout == (FIXTURES / "rtx-3060-v12.xml").read_text()


# ---------------------------------------------------------------- framing errors

def _sample_output(host):
    host.nvidia_smi(FIXTURES / "tesla-t4.xml")
    return host.run().stdout


def test_truncation_detected_everywhere(host):
    out = _sample_output(host)
    lines = out.splitlines(keepends=True)
    for cut in range(1, len(lines), max(1, len(lines) // 40)):
        truncated = "".join(lines[:cut])
        with pytest.raises(AuditParseError):
            split_sections(truncated)
        audit = analyse(truncated, Expectations())
        assert audit.status is Status.ERROR and audit.checks[0].name == "audit-output"


@pytest.mark.parametrize("mutate,match", [
    (lambda o: o.replace("@@gpufleet-audit 1@@", ""), "header"),
    (lambda o: o.replace("@@gpufleet-stderr uname@@", "@@gpufleet-stderr lspci@@"), "uname"),
    (lambda o: o.replace("\n|", "\nX", 1), "unexpected line"),
    (lambda o: o.replace("@@gpufleet-end uname rc=0@@", "@@gpufleet-end uname rc=zero@@"), "uname"),
    (lambda o: o.replace("@@gpufleet-done@@", "@@gpufleet-begin uname@@\n@@gpufleet-done@@"), "twice|uname"),
])
def test_garbled_framing(host, mutate, match):
    out = _sample_output(host)
    split_sections(out)  # the original parses
    with pytest.raises(AuditParseError, match=match):
        split_sections(mutate(out))


def test_login_noise_before_header_ignored(host):
    out = _sample_output(host)
    assert split_sections("Welcome to node7\nlast login: ...\n" + out) == split_sections(out)


@pytest.mark.parametrize("shell", SHELLS)
def test_kernel_lines_kept_on_the_node(host, shell):
    """Every NVIDIA line the checks read leaves the node (fallen off the bus without an Xid, probe failure,
    SXid, RmInitAdapter), and nothing else does."""
    pub = DATA / "kernel" / "published"
    log = host.root / "kernel.log"
    log.write_text("".join((pub / n).read_text() for n in (
        "nvsentinel-155-fallen-off-bus-no-xid.txt", "nvtrust-124-sxid-nonfatal.txt", "ogkm-789-rminitadapter.txt",
        "chia-gigahorse-74-xid109.txt")))
    host.replay("dmesg", log)
    out = host.run(shell).stdout
    kept = split_sections(out)["dmesg"].stdout.splitlines()
    assert len(kept) == 3 + 8 + 1 + 3
    assert not any("loading NVIDIA" in line or "r8169" in line or "(PCI ID:" in line for line in kept)
    statuses = {c.name: c.status for c in analyse(out, Expectations()).checks}
    assert (statuses["xid"], statuses["sxid"], statuses["kernel:fallen-off-bus"], statuses["kernel:probe-failed"],
            statuses["kernel:rm-init-failed"]) == (Status.FAIL, Status.WARN, Status.FAIL, Status.FAIL, Status.FAIL)
