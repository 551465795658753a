"""Real OpenSSH test hosts on loopback, started by the test suite itself.

Each :class:`TestHost` is its own ``sshd`` on a 127.0.0.x address with its own
generated host key and a hermetic PATH: one bin directory holding links to
exactly the basic tools the node-side scripts use (:data:`BASE_TOOLS`), a fake
``nvidia-smi`` and ``lspci`` that replay real captured output, and only the
stubs a test asks for (``dmesg``, ``journalctl``, ``nvidia-ctk``, ``docker``...),
so nothing this machine happens to have installed reaches a host's results.
(The audit script itself appends ``/usr/local/sbin:/usr/sbin:/sbin`` to its
PATH, as a real node needs; none of the tools it probes lives there on a test
machine, see :func:`leaking_sbin_tools`.)
Only the GPU is emulated; SSH, the shell and the files are real.
Hosts that are down, hang in the handshake, present an unknown key or refuse
our user key are built here too.

Two more kinds, for the connection options of an inventory (they need root):

* **Behind a bastion** (``add_bastion``, then ``add_host(..., behind=bastion)``): the
  bastion's sshd and the hosts behind it run in a private network namespace of their
  own (``unshare --net``, loopback only): nothing on this machine's network reaches
  them.  The bastion alone is published: a relay process binds its address and port
  in this machine's namespace, then enters the private one (``setns``) and forwards
  each connection to the bastion's sshd there.  A host behind it is reachable only
  through the bastion's sshd (``direct-tcpip``: ProxyJump, ``ssh -W``); a direct
  connection to its address is refused, since nothing listens there outside.
* **Password authentication** (``add_host(..., password=...)``): sshd without PAM
  checks ``/etc/shadow``.  The host's sshd runs in a mount namespace of its own
  (``unshare --mount``, private propagation) where a shadow file of the test's own,
  holding only that password's hash for the login user, is bind-mounted over
  ``/etc/shadow``; this machine's own ``/etc/shadow`` is never touched.

And hosts on a network of their own (``add_host(..., netns=ns)``, with ``ns`` from
``BridgeNetwork.add_namespace``, tests/netfarm.py): the host's sshd runs in a network namespace joined
by a veth pair to a bridge in this machine's namespace, listening on the namespace's address
(``10.X.Y.N``, port 22), where the test process reaches it over the bridge; its link can be shaped
or cut (see docs/testing-network.md).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from fleet.host_keys import known_hosts_name
from fleet.transport import SshOptions

if TYPE_CHECKING:
    from tests.netfarm import NetNs

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO.parent / "shared" / "fixtures"
NVSMI = FIXTURES / "nvidia-smi"
SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
SFTP_SERVER = next((p for p in ("/usr/lib/openssh/sftp-server", "/usr/libexec/openssh/sftp-server",
                                "/usr/lib/ssh/sftp-server", "/usr/libexec/sftp-server", "/usr/lib/sftp-server")
                    if os.path.exists(p)), None)  # a program: every session goes through the host's ForceCommand

MISMATCH = "Failed to initialize NVML: Driver/library version mismatch"
NO_DRIVER = (
    "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. "
    "Make sure that the latest NVIDIA driver is installed and running."
)


def free_port(address: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((address, 0))
        return s.getsockname()[1]


def wait_listening(address: str, port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((address, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {address}:{port} after {timeout}s")


# What a test host's PATH holds besides its stubs: the tools the audit script, the push and
# verify command lines and the stubs themselves run (found by running them under this PATH).
BASE_TOOLS = ("sh", "cat", "sed", "grep", "mktemp", "rm", "mkdir", "mv", "touch", "wc", "timeout", "uname",
              "sleep", "python3")
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Tools the audit probes for: a test host has them only as stubs, when a test asks.
PROBED_TOOLS = ("nvidia-smi", "lspci", "nvidia-ctk", "docker", "dmesg", "journalctl")


def link_base_tools(bin_dir: Path, tools: tuple = BASE_TOOLS) -> None:
    """Symlink each of ``tools``, as found on this machine's system PATH, into ``bin_dir``."""
    for tool in tools:
        found = shutil.which(tool, path=SYSTEM_PATH)
        if tool == "python3" and not found:  # a machine whose only Python is this one (pyenv, a venv's base)
            found = sys._base_executable
        if not found:
            raise RuntimeError(f"test hosts need {tool!r}, not found in {SYSTEM_PATH}")
        os.symlink(found, bin_dir / tool)


def leaking_sbin_tools() -> list[str]:
    """Probed tools in the sbin directories the audit script adds to its PATH (should be none)."""
    return sorted(t for t in PROBED_TOOLS for d in ("/usr/local/sbin", "/usr/sbin", "/sbin")
                  if os.path.exists(f"{d}/{t}"))


def fake_dmesg(text: str = "", rc: int = 0) -> str:
    """A ``dmesg`` printing ``text`` (a readable, clean kernel log by default); ``rc=1``: restricted."""
    if rc:
        return f"#!/bin/sh\necho 'dmesg: read kernel buffer failed: Operation not permitted' >&2\nexit {rc}\n"
    return f"#!/bin/sh\ncat <<'EOF'\n{text}\nEOF\n"


def fake_journalctl(text: str = "", rc: int = 0) -> str:
    """A ``journalctl`` printing ``text``; ``rc=1``: a journal this user may not read."""
    if rc:
        return f"#!/bin/sh\necho 'No journal files were opened due to insufficient permissions.' >&2\nexit {rc}\n"
    return f"#!/bin/sh\ncat <<'EOF'\n{text}\nEOF\n"


def fake_nvidia_ctk(version: str = "1.17.8") -> str:
    return (f"#!/bin/sh\necho 'NVIDIA Container Toolkit CLI version {version}'\n"
            "echo 'commit: 0000000000000000000000000000000000000000'\n")


def fake_docker(runtimes: str = '{"nvidia":{"path":"nvidia-container-runtime"},"runc":{"path":"runc"}}') -> str:
    """A ``docker`` whose ``docker info --format '{{json .Runtimes}}'`` prints ``runtimes``."""
    return f"#!/bin/sh\ncase \"$1\" in\n  info) printf '%s\\n' '{runtimes}' ;;\n  *) exit 1 ;;\nesac\n"


def keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)


# nvidia-smi's texts for a lost GPU (https://github.com/JosephKJ/OWOD/issues/81) and a corrupted infoROM
# (https://github.com/NVIDIA/gpu-operator/issues/20); see tests/data/nvidia-smi/README.md.
GPU_LOST = ("Unable to determine the device handle for GPU 0000:02:00.0: GPU is lost. "
            "Reboot the system to recover this GPU")
INFOROM = "WARNING: infoROM is corrupted at gpu 0000:01:00.0"


def fake_nvidia_smi(fixture: str | None, mode: str = "ok", compute_apps: str = "",
                    nvlink: dict[str, Path] | None = None) -> str:
    """A shell script standing in for nvidia-smi.  ``mode``: ok, mismatch, no-driver, garbage, hang;
    lost (the GPU-lost text, exit 15); and, replaying ``fixture``: inforom (the infoROM warning on stderr,
    exit 0), blank-line (a blank line before the XML).

    ``nvlink``: ``{"-s": file, "-e": file}``, what ``nvidia-smi nvlink -s`` / ``-e`` print (recorded outputs);
    without it both print nothing, as on a GPU without NVLink."""
    if mode == "lost":
        return f"#!/bin/sh\necho '{GPU_LOST}'\nexit 15\n"
    if mode == "mismatch":
        return f"#!/bin/sh\necho '{MISMATCH}'\nexit 18\n"
    if mode == "no-driver":
        return f"#!/bin/sh\necho '{NO_DRIVER}'\nexit 9\n"
    if mode == "garbage":
        return "#!/bin/sh\nprintf '\\001\\002 <nvidia_smi_log><gpu id=\"0\"><product_name>trunc'\nexit 0\n"
    if mode == "hang":
        return "#!/bin/sh\nexec sleep 3600\n"
    xml = (NVSMI / fixture).resolve()
    before = {"inforom": f"echo '{INFOROM}' >&2; ", "blank-line": "echo; "}.get(mode, "")
    return (
        "#!/bin/sh\n"
        'case "$*" in\n'
        f"  *--query-compute-apps*) printf '%s' '{compute_apps}' ;;\n"
        + "".join(f"  nvlink\\ {flag}*) cat '{Path(path).resolve()}' ;;\n" for flag, path in (nvlink or {}).items())
        + "  nvlink\\ *) ;;\n"
        f"  *-q*) {before}cat '{xml}' ;;\n"
        "  *) echo 'fake nvidia-smi: unsupported arguments' >&2; exit 2 ;;\n"
        "esac\n"
    )


def fake_driver_gpus(bus_ids: list[str]) -> str:
    """An ``ls`` listing ``bus_ids`` for /proc/driver/nvidia/gpus (the GPUs the kernel driver holds)."""
    listing = "\n".join(bus_ids)
    return ("#!/bin/sh\n"
            'case "$*" in\n'
            f"  */proc/driver/nvidia/gpus*) printf '%s\\n' '{listing}' ;;\n"
            '  *) exec /bin/ls "$@" ;;\n'
            "esac\n")


def fixture_slots(fixture: str | None) -> list[str]:
    """The PCI slots (``bb:dd.f``, as lspci prints them) of the GPUs a fixture's report lists."""
    if not fixture:
        return []
    text = (NVSMI / fixture).read_text()
    pattern = r"<pci_bus_id>[0-9A-Fa-f]+:([0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}\.\d)<"
    return [m.group(1).lower() for m in re.finditer(pattern, text)]


def fake_lspci(gpus: int, product: str = "GA102 [GeForce RTX 3090] [10de:2204]",
               slots: list[str] | None = None) -> str:
    """An lspci listing ``gpus`` NVIDIA GPUs: at ``slots`` first (a fixture's bus IDs), then at 01:00.0, 02:00.0..."""
    lines = ["00:00.0 Host bridge [0600]: Intel Corporation Device [8086:1234]"]
    slots = list(slots or [])
    n = 1
    while len(slots) < gpus:
        if f"{n:02x}:00.0" not in slots:
            slots.append(f"{n:02x}:00.0")
        n += 1
    for slot in slots[:gpus]:
        fn = slot[:-1] + "1"
        lines.append(f"{slot} VGA compatible controller [0300]: NVIDIA Corporation {product} (rev a1)")
        lines.append(f"{fn} Audio device [0403]: NVIDIA Corporation GA102 Audio [10de:1aef] (rev a1)")
    body = "\n".join(lines)
    return f"#!/bin/sh\ncat <<'EOF'\n{body}\nEOF\n"


def stop_process(proc: subprocess.Popen | None) -> None:
    """Terminate, then kill after 5 s: a test server never outlives its fixture."""
    if proc and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@dataclass
class TestHost:
    name: str
    address: str
    port: int
    root: Path
    vars: dict = field(default_factory=dict)
    proc: subprocess.Popen | None = None
    network: "PrivateNetwork | None" = None  # the private network its sshd runs in (behind a bastion)
    helpers: list = field(default_factory=list)  # processes stopped with it (a bastion's relay and network)
    netns: "NetNs | None" = None  # the bridge network namespace its sshd runs in (tests/netfarm.py)

    @property
    def bin(self) -> Path:
        return self.root / "bin"

    def set_tool(self, name: str, script: str) -> None:
        p = self.bin / name
        if p.is_symlink():  # a base tool linked to this machine's binary: replace the link, never write through it
            p.unlink()
        p.write_text(script)
        p.chmod(0o755)

    def stop(self) -> None:
        stop_process(self.proc)
        for helper in self.helpers:
            helper.stop()


class _Hang(threading.Thread):
    """Accepts TCP connections and never says a word (a host hung in the kernel, a black-holed sshd)."""

    def __init__(self, address: str, port: int):
        super().__init__(daemon=True)
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((address, port))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.conns: list[socket.socket] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                c, _ = self.sock.accept()
                self.conns.append(c)
            except OSError:
                continue

    def stop(self) -> None:
        self.stopping.set()
        for c in self.conns:
            c.close()
        self.sock.close()


# --------------------------------------------------------------------------- private networks (bastions)

IP = shutil.which("ip", path=SYSTEM_PATH)

_RELAY = r"""
import ctypes, os, socket, sys, threading
la, lp, ns, ta, tp = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5])
listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind((la, lp))  # in this machine's network namespace...
listener.listen(64)
fd = os.open(ns, os.O_RDONLY)
if hasattr(os, "setns"):
    os.setns(fd, 0x40000000)
elif ctypes.CDLL(None, use_errno=True).setns(fd, 0x40000000) != 0:
    raise OSError(ctypes.get_errno(), "setns")
# ...and from here on, every socket this process opens is in the private one
print("ready", flush=True)

def pump(a, b):
    try:
        while True:
            data = a.recv(65536)
            if not data:
                break
            b.sendall(data)
    except OSError:
        pass
    try:
        b.shutdown(socket.SHUT_WR)
    except OSError:
        pass

def serve(c):
    try:
        t = socket.create_connection((ta, tp), timeout=10)
        t.settimeout(None)
    except OSError:
        c.close()
        return
    other = threading.Thread(target=pump, args=(c, t), daemon=True)
    other.start()
    pump(t, c)
    other.join()
    c.close()
    t.close()

while True:
    conn, _ = listener.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
"""


class _Proc:
    """A helper process stopped with its host."""

    def __init__(self, proc: subprocess.Popen):
        self.proc = proc

    def stop(self) -> None:
        stop_process(self.proc)


class PrivateNetwork(_Proc):
    """A network namespace with only a loopback interface, held open by a sleeping process."""

    def __init__(self, work: Path):
        if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("nsenter") or not IP:
            raise RuntimeError("private test networks need root, unshare, nsenter and ip")
        ready = work / "netns.ready"
        super().__init__(subprocess.Popen(["unshare", "--net", "sh", "-c",
                                           f'{IP} link set lo up && touch "$0" && exec sleep 100000', str(ready)]))
        deadline = time.monotonic() + 10
        while not ready.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("could not create a private network namespace (unshare --net)")
            time.sleep(0.02)
        self.ns = f"/proc/{self.proc.pid}/ns/net"

    def enter(self, argv: list[str]) -> list[str]:
        return ["nsenter", f"--net={self.ns}", *argv]

    def wait_listening(self, address: str, port: int, timeout: float = 10.0) -> None:
        code = (f"import sys; sys.path.insert(0, {str(REPO)!r}); from tests.sshd import wait_listening; "
                f"wait_listening({address!r}, {port}, {timeout})")
        subprocess.run(self.enter([sys.executable, "-c", code]), check=True, capture_output=True,
                       timeout=timeout + 10)


def start_relay(address: str, port: int, network: PrivateNetwork, log: Path) -> _Proc:
    """Publish ``address:port`` of ``network`` at the same ``address:port`` on this machine's network."""
    proc = subprocess.Popen([sys.executable, "-c", _RELAY, address, str(port), network.ns, address, str(port)],
                            stdout=subprocess.PIPE, stderr=open(log, "w"), text=True)
    if proc.stdout.readline().strip() != "ready":
        stop_process(proc)
        raise RuntimeError(f"the relay for {address}:{port} did not start: {log.read_text()}")
    return _Proc(proc)


def shadow_line(user: str, password: str) -> str:
    """A /etc/shadow line for ``user`` with ``password`` (SHA-512 crypt, made by openssl; the password on stdin)."""
    r = subprocess.run(["openssl", "passwd", "-6", "-stdin"], input=password + "\n", capture_output=True, text=True,
                       check=True)
    return f"{user}:{r.stdout.strip()}:19000:0:99999:7:::\n"


class SshdFarm:
    """A set of test hosts sharing one client key, one known_hosts and one empty ssh config."""

    def __init__(self, root: Path):
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o755)
        self.client_key = root / "id_client"
        keygen(self.client_key)
        self.other_key = root / "id_other"  # a key no host authorises
        keygen(self.other_key)
        self.known_hosts = root / "known_hosts"
        self.known_hosts.write_text("")
        self.ssh_config = root / "ssh_config"
        self.ssh_config.write_text("")
        self.hosts: dict[str, TestHost] = {}
        self.aliases: dict[str, TestHost] = {}  # inventory names standing for a host of ``hosts`` (see add_aliases)
        self._hangs: list[_Hang] = []
        self._next_octet = 2

    def _address(self) -> str:
        a = f"127.0.0.{self._next_octet}"
        self._next_octet += 1
        return a

    def add_host(
        self,
        name: str,
        fixture: str | None = "rtx-3090-v12.xml",
        gpus: int = 1,
        nvidia_smi_mode: str = "ok",
        known: bool = True,
        authorized: bool = True,
        extra_vars: dict | None = None,
        sftp: bool = True,
        stubs: dict[str, str] | None = None,
        behind: TestHost | None = None,
        password: str | None = None,
        network: PrivateNetwork | None = None,
        sysfs: Path | None = None,
        nvlink: dict[str, Path] | None = None,
        netns: NetNs | None = None,
        port: int = 22,
        max_startups: str = "100",
    ) -> TestHost:
        """A test host.

        ``stubs``: extra commands on its PATH, name -> script (``fake_dmesg()``, ``fake_nvidia_ctk()``...);
        without them the host has no ``dmesg``, ``journalctl``, ``nvidia-ctk`` or ``docker``.
        ``sftp=False``: an sshd without the ``sftp`` subsystem (hardened configurations).
        ``behind=bastion`` (from :meth:`add_bastion`): in the bastion's private network, reachable only
        through it.  ``password``: the login user's password, and sshd accepts password authentication
        (with ``authorized=False``, only the password logs in).  ``network``: used by :meth:`add_bastion`.
        ``sysfs``: the directory the audit reads as ``/sys`` (``GPUFLEET_SYSFS``, a recorded tree); by
        default an empty one of the host's own, so this machine's devices never reach a host's results.
        ``nvlink``: what the fake ``nvidia-smi nvlink -s`` / ``-e`` print (see :func:`fake_nvidia_smi`).
        ``netns``: a namespace on a bridge network (``BridgeNetwork.add_namespace``, tests/netfarm.py): the
        host's sshd runs in it, listening on the namespace's own address at ``port`` (22 by default; the
        namespace has a port space of its own), reached from here over the bridge.  ``port`` is used only
        with ``netns``.  ``max_startups``: sshd's ``MaxStartups`` (``"10:30:100"`` is OpenSSH's stock setting:
        beyond 10 unauthenticated connections, new ones are dropped at random).
        """
        network = network or (behind.network if behind is not None else None)
        if netns is not None and network is not None:
            raise ValueError("a test host runs in a bridge namespace (netns=) or a private network, not both")
        if sftp and SFTP_SERVER is None:
            raise RuntimeError("no sftp-server program found (openssh-sftp-server): test hosts need one")
        if netns is not None:
            address = netns.address
        else:
            address = self._address()
            port = free_port(address)
        hroot = self.root / name
        (hroot / "bin").mkdir(parents=True)
        host = TestHost(name, address, port, hroot)
        if fixture or nvidia_smi_mode != "ok":
            host.set_tool("nvidia-smi", fake_nvidia_smi(fixture, nvidia_smi_mode, nvlink=nvlink))
        host.set_tool("lspci", fake_lspci(gpus, slots=fixture_slots(fixture)))
        link_base_tools(host.bin)
        for tool, body in (stubs or {}).items():
            host.set_tool(tool, body)
        hostkey = hroot / "ssh_host_ed25519_key"
        keygen(hostkey)
        auth = hroot / "authorized_keys"
        auth.write_text(Path(f"{self.client_key}.pub").read_text() if authorized else "")
        auth.chmod(0o600)
        path = str(host.bin)
        # The login shell may rewrite PATH in its rc files (Debian's bash reads ~/.bashrc under sshd:
        # pyenv shims, ~/.cargo/bin...), so every session, sftp included, goes through this.
        session = hroot / "session"
        session.write_text(
            "#!/bin/sh\n"
            f"PATH={shlex.quote(path)}; export PATH\n"
            f"GPUFLEET_SYSFS={shlex.quote(str(sysfs or hroot / 'sys'))}; export GPUFLEET_SYSFS\n"
            '[ -n "$SSH_ORIGINAL_COMMAND" ] || exec /bin/sh\n'
            'exec /bin/sh -c "$SSH_ORIGINAL_COMMAND"\n'
        )
        session.chmod(0o755)
        config = hroot / "sshd_config"
        config.write_text(
            f"ListenAddress {address}:{port}\n"
            f"HostKey {hostkey}\n"
            f"AuthorizedKeysFile {auth}\n"
            f"PidFile {hroot / 'sshd.pid'}\n"
            + ("PermitRootLogin yes\nPasswordAuthentication yes\n" if password else
               "PermitRootLogin prohibit-password\nPasswordAuthentication no\n")
            + "KbdInteractiveAuthentication no\n"
            "PubkeyAuthentication yes\nUsePAM no\nStrictModes no\n"
            + (f"Subsystem sftp {SFTP_SERVER}\n" if sftp else "")
            + f"ForceCommand {session}\n"
            f"SetEnv PATH={SYSTEM_PATH} GPUFLEET_TEST_HOST={name}\n"  # for the login shell's rc files
            f"LogLevel ERROR\nMaxStartups {max_startups}\n"
        )
        Path("/run/sshd").mkdir(exist_ok=True)
        log = open(hroot / "sshd.log", "w")
        user = os.environ.get("USER") or "root"
        argv = [SSHD, "-D", "-e", "-f", str(config)]
        if password:
            shadow = hroot / "shadow"
            shadow.write_text(shadow_line(user, password))
            shadow.chmod(0o600)
            argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                    'mount --bind "$0" /etc/shadow && exec "$@"', str(shadow), *argv]
        if network is not None:
            argv = network.enter(argv)
            host.network = network
        if netns is not None:
            argv = netns.enter(argv)
            host.netns = netns
        host.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        if network is not None:
            network.wait_listening(address, port)
        else:
            wait_listening(address, port)
        if known:
            pub = Path(f"{hostkey}.pub").read_text().split()
            with open(self.known_hosts, "a") as f:
                f.write(f"{known_hosts_name(address, port)} {pub[0]} {pub[1]}\n")
        host.vars = {
            "ansible_host": address,
            "ansible_port": port,
            "ansible_user": user,
            "ansible_ssh_private_key_file": str(self.client_key),
            **(extra_vars or {}),
        }
        self.hosts[name] = host
        return host

    def add_bastion(self, name: str, **kw) -> TestHost:
        """A bastion: a test host in a private network of its own (see the module's docstring), published on
        this machine's network; hosts added with ``behind=`` it are reachable only through it."""
        work = self.root / f"{name}-network"
        work.mkdir(parents=True)
        network = PrivateNetwork(work)
        try:
            host = self.add_host(name, network=network, **kw)
        except BaseException:
            network.stop()
            raise
        host.helpers.append(network)
        host.helpers.insert(0, start_relay(host.address, host.port, network, work / "relay.log"))
        wait_listening(host.address, host.port)
        return host

    def add_aliases(self, hosts: list[TestHost], count: int, prefix: str = "node") -> list[str]:
        """``count`` inventory names (``node0001``...), dealt round-robin over ``hosts``: each alias is the same
        sshd under a name of its own, so a fleet of thousands is a few sshds."""
        names = []
        for i in range(count):
            name = f"{prefix}{i + 1:04d}"
            self.aliases[name] = hosts[i % len(hosts)]
            names.append(name)
        return names

    def vars_of(self, name: str) -> dict:
        """The inventory variables of a host or an alias."""
        return dict((self.hosts.get(name) or self.aliases[name]).vars)

    def add_down_host(self, name: str) -> TestHost:
        address = self._address()
        host = TestHost(name, address, free_port(address), self.root / name)
        host.vars = {"ansible_host": address, "ansible_port": host.port,
                     "ansible_ssh_private_key_file": str(self.client_key)}
        self.hosts[name] = host
        return host

    def add_hung_host(self, name: str) -> TestHost:
        host = self.add_down_host(name)
        hang = _Hang(host.address, host.port)
        hang.start()
        self._hangs.append(hang)
        return host

    def inventory(self, names: list[str] | None = None, group: str = "gpu-nodes",
                  group_vars: dict | None = None) -> str:
        names = list(self.hosts) if names is None else names
        doc = {"all": {"children": {group: {"hosts": {n: self.vars_of(n) for n in names}}}}}
        if group_vars:
            doc["all"]["children"][group]["vars"] = group_vars
        return yaml.safe_dump(doc, sort_keys=False)

    def write_inventory(self, path: Path, **kw) -> Path:
        path.write_text(self.inventory(**kw))
        return path

    def options(self, **kw) -> SshOptions:
        # generous defaults: the suite runs on two busy cores, where a handshake can take seconds; a test about
        # timeouts sets its own
        base = dict(connect_timeout=10, command_timeout=60, known_hosts=str(self.known_hosts),
                    system_known_hosts=str(self.root / "no-system-known-hosts"), ssh_config=str(self.ssh_config))
        base.update(kw)
        return SshOptions(**base)

    def stop(self) -> None:
        for h in self.hosts.values():
            h.stop()
        for hang in self._hangs:
            hang.stop()


def invoke_env(farm: SshdFarm, home: Path) -> dict:
    """An environment for running `invoke` as an operator would, with a HOME whose
    ~/.ssh/known_hosts holds the test hosts' keys and whose ~/.ssh/config is empty."""
    ssh = home / ".ssh"
    ssh.mkdir(parents=True, exist_ok=True)
    shutil.copy(farm.known_hosts, ssh / "known_hosts")
    (ssh / "config").write_text("")
    env = {k: v for k, v in os.environ.items() if k not in ("SSH_AUTH_SOCK", "GPUFLEET_INVENTORY")}
    env["HOME"] = str(home)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def run_invoke(args: list[str], env: dict, timeout: float = 300) -> subprocess.CompletedProcess:
    import sys

    return subprocess.run([sys.executable, "-m", "invoke", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (read from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        for c in children.get(p, []):
            out.append(c)
            todo.append(c)
    return out


def crash(host: TestHost) -> None:
    """The host goes down: its sshd and everything running under it die at once."""
    import signal

    if host.proc is None:
        return
    for pid in [host.proc.pid, *descendants(host.proc.pid)]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    host.proc.wait(5)
