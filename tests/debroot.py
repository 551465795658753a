"""A real Debian host for provisioning tests: debootstrap root, overlay copies, their own sshd.

* :func:`cached_root` builds a minimal Debian root with ``debootstrap`` once and keeps
  it under ``/var/tmp/gpufleet-test-debian-<hash>`` (``$GPUFLEET_TEST_DEBROOT_DIR``
  overrides the directory).  The mirror is ``$GPUFLEET_DEBIAN_MIRROR`` or the first
  Debian URI of this machine's apt sources.  The cached root is never modified.
* :class:`ChrootHost` mounts a private overlay of it (falling back to a copy), mounts
  ``/proc``, and starts the root's own ``/usr/sbin/sshd`` inside it on a 127.0.1.x
  address: a test host whose every command -- apt, dpkg, sudo -- is Debian's own.
  Only docker and systemctl are stand-ins (no daemon runs in a chroot).
* :class:`AptRepo` builds stand-in ``nvidia-container-toolkit`` packages with
  ``dpkg-deb``, indexes them as a flat repository laid out like NVIDIA's
  (``<base>/deb/<arch>/``), signs it with a throwaway GPG key, and serves it and
  the key over HTTP on loopback.

Needs root (chroot, mount), debootstrap, dpkg-deb and gpg.
"""

from __future__ import annotations

import datetime as _dt
import fcntl
import gzip
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.sshd import SshdFarm, TestHost, free_port, keygen, stop_process, wait_listening

SUITE = "bookworm"
VARIANT = "minbase"
# openssh-server: the host's own sshd; curl + gnupg: NVIDIA's documented prerequisites;
# sudo: ansible_become; jq: the stand-in nvidia-ctk merges daemon.json with it.
INCLUDE = ("openssh-server", "gnupg", "curl", "sudo", "jq")
BUILD_REV = "1"  # bump to invalidate every cached root
DEFAULT_MIRROR = "http://deb.debian.org/debian"

FAKE_DOCKER_ACTIVE = "/run/gpufleet-fake-docker.active"
FAKE_DOCKER_LOADED = "/run/gpufleet-fake-docker.loaded.json"
FAKE_SYSTEMCTL_LOG = "/var/log/gpufleet-fake-systemctl.log"


def unavailable() -> str | None:
    """Why this machine cannot run chroot test hosts, or None."""
    if sys.platform != "linux":
        return "chroot test hosts need Linux"
    if os.geteuid() != 0:
        return "chroot test hosts need root (chroot, mount)"
    for tool in ("debootstrap", "dpkg-deb", "gpg", "chroot", "mount"):
        if not shutil.which(tool):
            return f"{tool} not found: install debootstrap and gnupg (see .ci/run)"
    return None


def arch() -> str:
    return subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True, check=True).stdout.strip()


def debian_mirror() -> str:
    """$GPUFLEET_DEBIAN_MIRROR, else the first Debian (non-security) URI in this machine's apt sources."""
    if os.environ.get("GPUFLEET_DEBIAN_MIRROR"):
        return os.environ["GPUFLEET_DEBIAN_MIRROR"]
    files = [Path("/etc/apt/sources.list")] + sorted(Path("/etc/apt/sources.list.d").glob("*"))
    for f in files:
        try:
            text = f.read_text()
        except OSError:
            continue
        uris = (re.findall(r"^\s*URIs:\s*(\S+)", text, re.M)
                + re.findall(r"^\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)", text, re.M))
        for uri in uris:
            if uri.rstrip("/").endswith("/debian") and "security" not in uri:
                return uri.rstrip("/")
    return DEFAULT_MIRROR


def cache_path() -> Path:
    key = json.dumps([SUITE, VARIANT, INCLUDE, arch(), BUILD_REV]).encode()
    base = Path(os.environ.get("GPUFLEET_TEST_DEBROOT_DIR", "/var/tmp"))
    return base / f"gpufleet-test-debian-{hashlib.sha256(key).hexdigest()[:12]}"


def cached_root(log=print) -> Path:
    """The pristine root, built once (about 40 s with a nearby mirror) and reused."""
    root = cache_path()
    marker = root / ".gpufleet-root.json"
    if marker.exists():
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{root}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.exists():
            return root
        tmp = Path(f"{root}.build-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        mirror = debian_mirror()
        log(f"debootstrap {SUITE} ({VARIANT}, +{','.join(INCLUDE)}) from {mirror} into {root} ...")
        start = time.monotonic()
        r = subprocess.run(["debootstrap", f"--variant={VARIANT}", f"--include={','.join(INCLUDE)}", SUITE,
                            str(tmp), mirror], capture_output=True, text=True)
        if r.returncode != 0:
            _umount_below(tmp)
            tail = "\n".join((r.stdout + r.stderr).splitlines()[-15:])
            log_file = tmp / "debootstrap" / "debootstrap.log"
            if log_file.exists():
                tail += "\n--- debootstrap.log ---\n" + "\n".join(log_file.read_text().splitlines()[-15:])
            raise RuntimeError(f"debootstrap failed (exit {r.returncode}) with mirror {mirror}:\n{tail}")
        _umount_below(tmp)
        subprocess.run(["chroot", str(tmp), "apt-get", "clean"], capture_output=True)
        seconds = round(time.monotonic() - start, 1)
        (tmp / ".gpufleet-root.json").write_text(json.dumps({
            "suite": SUITE, "variant": VARIANT, "include": INCLUDE, "mirror": mirror, "arch": arch(),
            "debootstrap_seconds": seconds, "built": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }, indent=2))
        os.rename(tmp, root)
        log(f"debootstrap done in {seconds}s")
    return root


def build_seconds(root: Path) -> float | None:
    try:
        return json.loads((root / ".gpufleet-root.json").read_text())["debootstrap_seconds"]
    except (OSError, ValueError, KeyError):
        return None


def _mounts_below(path: Path) -> list[str]:
    prefix = str(path.resolve()).rstrip("/") + "/"
    points = []
    with open("/proc/self/mounts") as f:
        for line in f:
            mp = line.split()[1].replace("\\040", " ")
            if mp == prefix.rstrip("/") or mp.startswith(prefix):
                points.append(mp)
    return points


def _umount_below(path: Path) -> None:
    for mp in sorted(_mounts_below(path), key=len, reverse=True):
        if subprocess.run(["umount", mp], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", mp], capture_output=True)


# --------------------------------------------------------------------------- stand-in packages

NVIDIA_CTK = r"""#!/bin/sh
# Stand-in for NVIDIA's nvidia-ctk (gpufleet tests): `--version`, and `runtime configure`
# which merges the nvidia runtime into the engine's configuration the way the real one does
# (docker: load daemon.json, set runtimes.nvidia = {"args": [], "path": "nvidia-container-runtime"},
# write it back with sorted keys and 4-space indentation).
VERSION=@VERSION@
case "$1" in
    --version|-v)
        echo "NVIDIA Container Toolkit CLI version $VERSION"
        echo "commit: 0123456789abcdef"
        exit 0 ;;
    runtime) shift ;;
    *) echo "nvidia-ctk (stand-in): unsupported command: $*" >&2; exit 2 ;;
esac
[ "$1" = configure ] || { echo "nvidia-ctk (stand-in): unsupported: runtime $*" >&2; exit 2; }
shift
runtime=docker; config=""; default=""
for a in "$@"; do
    case "$a" in
        --runtime=*) runtime=${a#--runtime=} ;;
        --config=*) config=${a#--config=} ;;
        --set-as-default) default=1 ;;
        *) echo "nvidia-ctk (stand-in): unsupported flag $a" >&2; exit 2 ;;
    esac
done
case "$runtime" in
docker)
    config=${config:-/etc/docker/daemon.json}
    mkdir -p "$(dirname "$config")"
    if [ -s "$config" ]; then input=$(cat "$config"); else input='{}'; fi
    filter='.runtimes = ((.runtimes // {}) + {"nvidia": {"args": [], "path": "nvidia-container-runtime"}})'
    [ -n "$default" ] && filter="$filter | .[\"default-runtime\"] = \"nvidia\""
    if ! printf '%s' "$input" | jq --indent 4 -S "$filter" >"$config.nvidia-ctk" 2>/dev/null; then
        rm -f "$config.nvidia-ctk"
        echo "ERRO[0000] unable to load config for runtime $runtime: invalid JSON in $config" >&2
        exit 1
    fi
    mv -f "$config.nvidia-ctk" "$config" ;;
containerd)
    config=${config:-/etc/containerd/config.toml}
    mkdir -p "$(dirname "$config")"
    cat >>"$config" <<'EOF'

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.nvidia]
  privileged_without_host_devices = false
  runtime_engine = ""
  runtime_root = ""
  runtime_type = "io.containerd.runc.v2"

  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.nvidia.options]
    BinaryName = "/usr/bin/nvidia-container-runtime"
EOF
    ;;
*) echo "ERRO[0000] unrecognized runtime '$runtime'" >&2; exit 1 ;;
esac
echo "INFO[0000] Wrote updated config to $config" >&2
echo "INFO[0000] It is recommended that $runtime daemon be restarted." >&2
"""

STUB = "#!/bin/sh\necho \"{name} (gpufleet stand-in) version {version}\"\n"


@dataclass
class StandIn:
    name: str
    depends: str
    files: dict  # path -> (content, mode)
    conffiles: tuple = ()


def stand_ins(version: str) -> list[StandIn]:
    up = version.rsplit("-", 1)[0]
    return [
        StandIn("libnvidia-container1", "", {
            "/usr/share/doc/libnvidia-container1/README.gpufleet": ("stand-in package for gpufleet tests\n", 0o644)}),
        StandIn("libnvidia-container-tools", f"libnvidia-container1 (>= {version})", {
            "/usr/bin/nvidia-container-cli": (STUB.format(name="nvidia-container-cli", version=up), 0o755)}),
        StandIn("nvidia-container-toolkit-base", "", {
            "/usr/bin/nvidia-ctk": (NVIDIA_CTK.replace("@VERSION@", up), 0o755),
            "/usr/bin/nvidia-container-runtime": (STUB.format(name="nvidia-container-runtime", version=up), 0o755),
            "/etc/nvidia-container-runtime/config.toml": ("#accept-nvidia-visible-devices-as-volume-mounts = false\n",
                                                          0o644)},
            conffiles=("/etc/nvidia-container-runtime/config.toml",)),
        StandIn("nvidia-container-toolkit",
                f"nvidia-container-toolkit-base (= {version}), libnvidia-container-tools (>= {version}), "
                f"libnvidia-container-tools (<< 2.0.0)", {
                    "/usr/bin/nvidia-container-runtime-hook": (
                        STUB.format(name="nvidia-container-runtime-hook", version=up), 0o755)}),
    ]


def build_deb(pkg: StandIn, version: str, architecture: str, work: Path, out: Path) -> Path:
    root = work / f"{pkg.name}_{version}"
    shutil.rmtree(root, ignore_errors=True)
    (root / "DEBIAN").mkdir(parents=True)
    for path, (content, mode) in pkg.files.items():
        p = root / path.lstrip("/")
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(content)
        p.chmod(mode)
    control = [f"Package: {pkg.name}", f"Version: {version}", f"Architecture: {architecture}",
               "Maintainer: gpufleet tests <tests@gpufleet.invalid>", "Section: utils", "Priority: optional"]
    if pkg.depends:
        control.append(f"Depends: {pkg.depends}")
    control.append(f"Description: {pkg.name} (stand-in for NVIDIA's package, gpufleet tests)")
    (root / "DEBIAN" / "control").write_text("\n".join(control) + "\n")
    if pkg.conffiles:
        (root / "DEBIAN" / "conffiles").write_text("\n".join(pkg.conffiles) + "\n")
    deb = out / f"{pkg.name}_{version}_{architecture}.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", str(root), str(deb)],
                   check=True, capture_output=True)
    return deb


def _index_entry(deb: Path) -> str:
    control = subprocess.run(["dpkg-deb", "-f", str(deb)], check=True, capture_output=True, text=True).stdout
    data = deb.read_bytes()
    extra = (f"Filename: ./{deb.name}\nSize: {len(data)}\nMD5sum: {hashlib.md5(data).hexdigest()}\n"
             f"SHA1: {hashlib.sha1(data).hexdigest()}\nSHA256: {hashlib.sha256(data).hexdigest()}\n")
    return control.rstrip("\n") + "\n" + extra


class AptRepo:
    """A signed flat apt repository laid out like NVIDIA's, served over HTTP on 127.0.0.1."""

    def __init__(self, work: Path, versions=("1.17.7-1", "1.17.8-1")):
        self.work = work
        self.versions = versions
        self.arch = arch()
        self.site = work / "site"
        self.repo_dir = self.site / "stable" / "deb" / self.arch
        self.repo_dir.mkdir(parents=True)
        self.gnupg = work / "gnupg"
        self.gnupg.mkdir(mode=0o700)
        self.proc: subprocess.Popen | None = None
        self.port = 0

    def _gpg(self, *args: str, **kw) -> subprocess.CompletedProcess:
        return subprocess.run(["gpg", "--batch", "--homedir", str(self.gnupg), *args], check=True,
                              capture_output=True, **kw)

    def build(self) -> "AptRepo":
        self._gpg("--passphrase", "", "--quick-gen-key", "gpufleet test repository <repo@gpufleet.invalid>",
                  "ed25519", "sign", "never")
        (self.site / "gpgkey").write_bytes(self._gpg("--armor", "--export").stdout)
        for version in self.versions:
            for pkg in stand_ins(version):
                build_deb(pkg, version, self.arch, self.work / "build", self.repo_dir)
        packages = "\n".join(_index_entry(d) for d in sorted(self.repo_dir.glob("*.deb")))
        (self.repo_dir / "Packages").write_text(packages)
        (self.repo_dir / "Packages.gz").write_bytes(gzip.compress(packages.encode(), mtime=0))
        files = [self.repo_dir / "Packages", self.repo_dir / "Packages.gz"]
        date = _dt.datetime.now(_dt.timezone.utc).strftime("%a, %d %b %Y %H:%M:%S UTC")
        release = ["Origin: gpufleet-test", "Label: nvidia-container-toolkit (stand-in)", f"Date: {date}",
                   f"Architectures: {self.arch}"]
        for title, algo in (("MD5Sum", hashlib.md5), ("SHA256", hashlib.sha256)):
            release.append(f"{title}:")
            release += [f" {algo(f.read_bytes()).hexdigest()} {f.stat().st_size} {f.name}" for f in files]
        (self.repo_dir / "Release").write_text("\n".join(release) + "\n")
        self._gpg("--yes", "--digest-algo", "SHA256", "--clearsign", "-o", str(self.repo_dir / "InRelease"),
                  str(self.repo_dir / "Release"))
        self._gpg("--yes", "--digest-algo", "SHA256", "-abs", "-o", str(self.repo_dir / "Release.gpg"),
                  str(self.repo_dir / "Release"))
        subprocess.run(["gpgconf", "--homedir", str(self.gnupg), "--kill", "gpg-agent"], capture_output=True)
        return self

    def serve(self) -> "AptRepo":
        self.port = free_port("127.0.0.1")
        log = open(self.work / "http.log", "w")
        self.proc = subprocess.Popen([sys.executable, "-m", "http.server", str(self.port), "--bind", "127.0.0.1",
                                      "--directory", str(self.site)], stdout=log, stderr=subprocess.STDOUT)
        wait_listening("127.0.0.1", self.port)
        return self

    @property
    def url(self) -> str:
        """The repository base URL (what NVIDIA calls .../libnvidia-container/stable)."""
        return f"http://127.0.0.1:{self.port}/stable"

    @property
    def key_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/gpgkey"

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(5)


# --------------------------------------------------------------------------- chroot hosts

FAKE_DOCKER = r"""#!/bin/sh
# Stand-in docker CLI (gpufleet tests): the "daemon" runs while @ACTIVE@ exists and knows the
# runtimes of the daemon.json it loaded when it was last (re)started (@LOADED@), as dockerd does.
active=@ACTIVE@; loaded=@LOADED@
down() {
    echo "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?" >&2
    exit 1
}
case "$1" in
info)
    [ -e "$active" ] || down
    { [ -s "$loaded" ] && cat "$loaded" || echo '{}'; } |
        jq -c '{"io.containerd.runc.v2": {"path": "runc"}, "runc": {"path": "runc"}} + (.runtimes // {})' ;;
run)
    [ -e "$active" ] || down
    case "$*" in *--gpus*) ;; *) echo "docker run (stand-in): only --gpus runs are emulated" >&2; exit 125 ;; esac
    if { [ -s "$loaded" ] && jq -e '.runtimes.nvidia' "$loaded" >/dev/null; }; then
        echo "| NVIDIA-SMI 550.54.15   Driver Version: 550.54.15   CUDA Version: 12.4 |"
        echo "|   0  NVIDIA H100 80GB HBM3   On | 00000000:18:00.0 Off |  0MiB / 81559MiB |"
    else
        echo 'docker: Error response from daemon: could not select device driver "" with capabilities: [[gpu]].' >&2
        exit 125
    fi ;;
*) echo "docker (stand-in): unsupported: $*" >&2; exit 1 ;;
esac
"""

FAKE_SYSTEMCTL = r"""#!/bin/sh
# Stand-in systemctl (gpufleet tests): is-active / restart for the stand-in docker, logged.
log=@LOG@
echo "$*" >>"$log"
case "$1" in
is-active)
    if [ "$2" = docker ] && [ -e @ACTIVE@ ]; then echo active; exit 0; fi
    echo inactive; exit 3 ;;
restart|start)
    if [ "$2" = docker ]; then
        touch @ACTIVE@
        if [ -e /etc/docker/daemon.json ]; then cp /etc/docker/daemon.json @LOADED@; else rm -f @LOADED@; fi
    fi ;;
esac
exit 0
"""


def _fill(template: str) -> str:
    return (template.replace("@ACTIVE@", FAKE_DOCKER_ACTIVE).replace("@LOADED@", FAKE_DOCKER_LOADED)
            .replace("@LOG@", FAKE_SYSTEMCTL_LOG))


# Paths that change because somebody logged in or ran sudo, not because the host was provisioned.
SESSION_NOISE = re.compile(r"^(tmp/|run/sshd|run/sudo|run/gpufleet_sshd\.pid|var/log/(wtmp|btmp|lastlog)|"
                           r"var/log/gpufleet-fake-systemctl\.log|root/\.ssh/|home/[^/]+/\.ssh/)")


@dataclass
class ChrootHost:
    """One Debian test host: an overlay of the cached root with its own sshd on 127.0.1.N."""

    name: str
    base: Path  # the cached pristine root (overlay lower layer)
    work: Path
    address: str
    passwords: dict = field(default_factory=dict)  # user -> password (sudo needs one)
    docker: str | None = '{"log-driver": "json-file", "log-opts": {"max-size": "10m"}}'  # daemon.json; None: no docker
    docker_running: bool = True
    upper: Path = field(init=False)
    root: Path = field(init=False)
    overlay: bool = field(init=False, default=False)
    port: int = field(init=False, default=0)
    proc: subprocess.Popen | None = field(init=False, default=None)

    def __post_init__(self):
        self.upper = self.work / "upper"
        self.root = self.work / "merged"

    # -------------------------------------------------------------- setup

    def start(self, farm: SshdFarm, users: dict[str, str | None], sudoers: str = "") -> TestHost:
        for d in (self.upper, self.work / "ovl-work", self.root):
            d.mkdir(parents=True, exist_ok=True)
        if os.environ.get("GPUFLEET_TEST_NO_OVERLAY"):  # exercise the fallback
            self.overlay = False
        else:
            r = subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                                f"lowerdir={self.base},upperdir={self.upper},workdir={self.work / 'ovl-work'}",
                                str(self.root)], capture_output=True, text=True)
            self.overlay = r.returncode == 0
        if not self.overlay:  # no overlayfs here: a full copy (a few seconds more)
            shutil.rmtree(self.root)
            subprocess.run(["cp", "-a", "--reflink=auto", str(self.base), str(self.root)], check=True)
        r = subprocess.run(["mount", "-t", "proc", "proc", str(self.root / "proc")], capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"cannot mount /proc in the test root {self.root}: {r.stderr.strip()} "
                               f"(the provisioning tests need root with CAP_SYS_ADMIN: chroot and mount)")
        self.port = free_port(self.address)
        etc = self.root / "etc"
        keygen(etc / "ssh" / "gpufleet_host_ed25519_key")
        (etc / "ssh" / "gpufleet_authorized_keys").write_text(Path(f"{farm.client_key}.pub").read_text())
        (etc / "hosts").write_text(f"127.0.0.1 localhost\n127.0.1.1 {socket.gethostname()}\n")
        (etc / "ssh" / "gpufleet_sshd_config").write_text(
            f"ListenAddress {self.address}:{self.port}\n"
            "HostKey /etc/ssh/gpufleet_host_ed25519_key\n"
            "AuthorizedKeysFile /etc/ssh/gpufleet_authorized_keys\n"
            "PidFile /run/gpufleet_sshd.pid\n"
            "PermitRootLogin prohibit-password\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\n"
            "PubkeyAuthentication yes\nUsePAM no\nStrictModes no\n"
            "Subsystem sftp internal-sftp\n"
            f"SetEnv GPUFLEET_TEST_HOST={self.name}\n"
            "LogLevel ERROR\nMaxStartups 100\n")
        (self.root / "run" / "sshd").mkdir(parents=True, exist_ok=True)
        for user, password in users.items():
            self.chroot("useradd", "--create-home", "--shell", "/bin/sh", user)
            if password:
                self.chroot("chpasswd", stdin=f"{user}:{password}\n")
            else:  # no password, yet not locked: sshd (without PAM) refuses locked accounts even with a key
                self.chroot("usermod", "-p", "*", user)
        if sudoers:
            f = etc / "sudoers.d" / "gpufleet-test"
            f.write_text(sudoers)
            f.chmod(0o440)
        bin_ = self.root / "usr" / "local" / "bin"
        self._write(bin_ / "systemctl", _fill(FAKE_SYSTEMCTL), 0o755)
        if self.docker is not None:
            self._write(bin_ / "docker", _fill(FAKE_DOCKER), 0o755)
            self._write(etc / "docker" / "daemon.json", self.docker, 0o644)
            if self.docker_running:
                self.chroot("systemctl", "start", "docker")
                (self.root / FAKE_SYSTEMCTL_LOG.lstrip("/")).write_text("")
        log = open(self.work / "sshd.log", "w")
        self.proc = subprocess.Popen(["chroot", str(self.root), "/usr/sbin/sshd", "-D", "-e", "-f",
                                      "/etc/ssh/gpufleet_sshd_config"], stdout=log, stderr=subprocess.STDOUT)
        wait_listening(self.address, self.port)
        pub = (etc / "ssh" / "gpufleet_host_ed25519_key.pub").read_text().split()
        with open(farm.known_hosts, "a") as f:
            f.write(f"[{self.address}]:{self.port} {pub[0]} {pub[1]}\n")
        host = TestHost(self.name, self.address, self.port, self.work)
        host.proc = self.proc
        host.vars = {"ansible_host": self.address, "ansible_port": self.port, "ansible_user": "root",
                     "ansible_ssh_private_key_file": str(farm.client_key)}
        farm.hosts[self.name] = host
        return host

    @staticmethod
    def _write(path: Path, text: str, mode: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        path.chmod(mode)

    def stop(self) -> None:
        stop_process(self.proc)
        _umount_below(self.root)
        if not _mounts_below(self.work):  # never delete through a mount that is still there
            shutil.rmtree(self.work, ignore_errors=True)

    # -------------------------------------------------------------- inspection

    def chroot(self, *argv: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
        env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"}
        return subprocess.run(["chroot", str(self.root), *argv], input=stdin, capture_output=True, text=True,
                              check=check, env=env)

    def path(self, p: str) -> Path:
        return self.root / p.lstrip("/")

    def read(self, p: str) -> str | None:
        f = self.path(p)
        return f.read_text() if f.exists() else None

    def installed(self, package: str) -> str | None:
        r = self.chroot("dpkg-query", "-W", "-f=${db:Status-Abbrev} ${Version}", package, check=False)
        parts = r.stdout.split()
        return parts[1] if r.returncode == 0 and parts and parts[0] == "ii" and len(parts) > 1 else None

    def snapshot(self) -> dict[str, tuple]:
        """Every file the host has written since it was created (the overlay's upper layer, or a full walk)."""
        top = self.upper if self.overlay else self.root
        state = {}
        for dirpath, dirnames, filenames in os.walk(top):
            rel_dir = os.path.relpath(dirpath, top)
            if rel_dir == "proc" or rel_dir.startswith("proc/"):
                dirnames[:] = []
                continue
            for name in filenames + dirnames:
                rel = os.path.normpath(os.path.join(rel_dir, name))
                if SESSION_NOISE.match(rel + ("/" if name in dirnames else "")):
                    continue
                st = os.lstat(os.path.join(dirpath, name))
                if name in dirnames:
                    state[rel] = ("dir", st.st_mode)
                else:
                    state[rel] = ("file", st.st_mode, st.st_size, st.st_mtime_ns, st.st_rdev)
        return state
