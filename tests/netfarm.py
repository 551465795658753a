"""Test hosts in network namespaces of their own, joined by veth pairs to a Linux bridge; and network faults.

A :class:`BridgeNetwork` is a bridge in this machine's (the root) network namespace, ``gfbrNNNN`` with the
address ``10.X.Y.1/24`` (a /24 no interface or route of this machine uses), and any number of
:class:`NetNs`: a network namespace held open by a sleeping process, with loopback up and one interface
``eth0`` at ``10.X.Y.N/24`` (default route via ``.1``), the other end of its veth pair
(:attr:`NetNs.veth`) attached to the bridge.  Each also has a UTS namespace (``uname -n`` says its name)
and a mount namespace where the network's own ``/etc/hosts`` (every host by name) and a
``/etc/resolv.conf`` whose nameserver refuses at once are bind-mounted: a namespace cannot reach this
machine's nameserver, and lookups would otherwise hang for seconds (torch's TCPStore makes some).  The test process
reaches every namespace over the bridge, and the namespaces reach each other, as hosts on one switch do.
``SshdFarm.add_host(name, netns=ns)`` (tests/sshd.py) runs a test host's sshd in one.

Faults, on one host's link (see docs/testing-network.md):

* :meth:`BridgeNetwork.shape`: a token bucket (``tc qdisc ... tbf``) on both ends of the host's veth pair,
  its ``eth0`` (what it sends) and the bridge side (what it receives): a slow link.  (``netem`` is not
  needed, and not available on every kernel.)
* :meth:`BridgeNetwork.drop`: an nftables table in the host's namespace dropping every IPv4 packet in
  and out, except loopback and the TCP ports named (both directions: ``dport`` and ``sport``), so that
  SSH stays up while everything else (a collective's connections) is black-holed: a broken link.

Needs root and ``ip``, ``tc``, ``nft``, ``unshare``, ``nsenter``: :func:`unavailable` says why not,
:func:`skip_unless_available` skips a test with that reason.
"""

from __future__ import annotations

import atexit
import ctypes
import ipaddress
import os
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
TOOLS = ("ip", "tc", "nft", "unshare", "nsenter")
BRIDGE_PREFIX = "gfbr"  # gfbrNNNN: NNNN is the subnet index
VETH_PREFIX = "gfv"  # gfvNNNNHHH: subnet index, host octet (the root-side end of a namespace's veth pair)
ALIAS = "gpufleet-netfarm pid="  # the bridge's alias names the process that made it (stale bridges are swept)
DROP_TABLE = "gpufleet_drop"
MAX_INDEX = 4096  # subnet index i: 10.(224 + i // 256).(i % 256).0/24


class NetfarmError(RuntimeError):
    pass


def which(tool: str) -> str | None:
    return shutil.which(tool) or shutil.which(tool, path=SYSTEM_PATH)


def missing_tools() -> list[str]:
    return [t for t in TOOLS if which(t) is None]


def unavailable() -> str | None:
    """Why bridge networks cannot be made here (None: they can)."""
    if os.geteuid() != 0:
        return "bridge test networks need root (network namespaces, veth, bridge, tc, nftables)"
    missing = missing_tools()
    if missing:
        return (f"bridge test networks need {', '.join(missing)}: apt-get install iproute2 nftables util-linux "
                "(see .ci/run)")
    return None


def skip_unless_available() -> None:
    import pytest

    reason = unavailable()
    if reason:
        pytest.skip(reason)


def subnet_of(index: int) -> ipaddress.IPv4Network:
    if not 0 <= index < MAX_INDEX:
        raise ValueError(f"subnet index {index} not in 0..{MAX_INDEX - 1}")
    return ipaddress.IPv4Network(f"10.{224 + index // 256}.{index % 256}.0/24")


def used_networks() -> list[ipaddress.IPv4Network]:
    """Every IPv4 network this machine's root namespace has an address in or a route to."""
    nets = []
    out = _ip("-o", "-4", "addr", "show").stdout
    for m in re.finditer(r"\binet (\d+\.\d+\.\d+\.\d+/\d+)", out):
        nets.append(ipaddress.IPv4Interface(m.group(1)).network)
    for line in _ip("-4", "route", "show", "table", "all").stdout.splitlines():
        for w in line.split()[:2]:  # "[type] PREFIX ..." ("default": 0/0, overlapping nothing on purpose)
            if w == "default":
                break
            try:
                net = ipaddress.IPv4Network(w, strict=False)
            except ValueError:
                continue
            if net.prefixlen > 0:
                nets.append(net)
            break
    return nets


def rate_bits(rate: str) -> int:
    """A tc rate (``8mbit``, ``500kbit``, ``1gbit``, ``100mbps``...) in bits per second."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kmgt]?)(bit|bps)?", rate.strip().lower())
    if not m:
        raise ValueError(f"not a tc rate: {rate!r} (e.g. 8mbit)")
    value = float(m.group(1)) * {"": 1, "k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12}[m.group(2)]
    return int(value * (8 if m.group(3) == "bps" else 1))


def _run(argv: list[str], check: bool = True, timeout: float = 30, **kw) -> subprocess.CompletedProcess:
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)
    if check and r.returncode != 0:
        raise NetfarmError(f"{' '.join(argv)}: exit {r.returncode}: {(r.stderr or r.stdout).strip()}")
    return r


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return _run([which("ip") or "ip", *args], check=check)


def _link_exists(name: str) -> bool:
    return os.path.exists(f"/sys/class/net/{name}")


def _die_with_parent() -> None:
    """In the child, before exec: SIGKILL when the process that made it exits (PR_SET_PDEATHSIG), so a
    namespace's holder never outlives a killed test run.  (The signal comes when the *thread* that started
    it exits: make a BridgeNetwork in a thread that lives as long as it does, such as the main thread.)"""
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)


def _ns_inode(path: str) -> int | None:
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


def pids_in_netns(inode: int) -> list[int]:
    """Every process whose network namespace is ``inode``."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}/ns/net").st_ino == inode:
                    pids.append(int(entry))
            except OSError:
                continue
    return pids


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _kill_all(pids: list[int], grace: float = 2.0) -> None:
    """SIGTERM, then SIGKILL whatever is left after ``grace`` seconds."""
    me = os.getpid()
    pids = [p for p in pids if p != me]
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        for p in pids:
            try:
                os.kill(p, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            pids = [p for p in pids if _alive(p)]
            if not pids:
                return
            time.sleep(0.02)


def sweep_stale_bridges() -> list[str]:
    """Delete the bridges (and their veths) of earlier runs whose process is gone (a SIGKILLed pytest)."""
    removed = []
    for name in sorted(os.listdir("/sys/class/net")):
        if not re.fullmatch(rf"{BRIDGE_PREFIX}\d{{4}}", name):
            continue
        try:
            alias = Path(f"/sys/class/net/{name}/ifalias").read_text().strip()
        except OSError:
            continue
        if not alias.startswith(ALIAS):
            continue
        try:
            pid = int(alias[len(ALIAS):])
        except ValueError:
            continue
        if _alive(pid):
            continue
        for port in os.listdir(f"/sys/class/net/{name}/brif") if os.path.isdir(f"/sys/class/net/{name}/brif") else []:
            _ip("link", "del", port, check=False)
        _ip("link", "del", name, check=False)
        removed.append(name)
    return removed


@dataclass
class NetNs:
    """One host's namespace on a :class:`BridgeNetwork`."""

    name: str
    address: str  # its eth0's address, e.g. 10.224.0.2
    gateway: str  # the bridge's address (its default route)
    prefixlen: int
    veth: str  # the root-side end of its veth pair (on the bridge)
    work: Path
    proc: subprocess.Popen | None = None  # the sleeping process holding the namespaces open
    inode: int | None = None  # the network namespace's inode (to find every process in it)
    shaped: str | None = None  # the rate it is shaped to, if it is
    dropped: list[int] | None = None  # the TCP ports left open, if its traffic is dropped
    helpers: list = field(default_factory=list)  # processes started in it by start_sink (close() ends them)

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise NetfarmError(f"namespace {self.name} is not running")
        return self.proc.pid

    @property
    def net_ns(self) -> str:
        return f"/proc/{self.pid}/ns/net"

    def enter(self, argv: list[str]) -> list[str]:
        """``argv`` run inside this host's namespaces (network, UTS, mount), in the caller's working directory."""
        ns = f"/proc/{self.pid}/ns"
        return [which("nsenter") or "nsenter", f"--net={ns}/net", f"--uts={ns}/uts", f"--mount={ns}/mnt", "--wd=.",
                *argv]

    def run(self, argv: list[str], check: bool = True, timeout: float = 30, **kw) -> subprocess.CompletedProcess:
        """Run ``argv`` inside, output captured as text; ``check``: a non-zero exit raises NetfarmError."""
        return _run(self.enter(argv), check=check, timeout=timeout, **kw)

    def popen(self, argv: list[str], **kw) -> subprocess.Popen:
        return subprocess.Popen(self.enter(argv), **kw)

    def pids(self) -> list[int]:
        """Every process in this host's network namespace (its holder included)."""
        return pids_in_netns(self.inode) if self.inode is not None else []


class BridgeNetwork:
    """A bridge in the root namespace and hosts in namespaces of their own on it (see the module's docstring).

    ``subnet_index``: which /24 (``10.(224 + i // 256).(i % 256).0/24``, bridge ``gfbr%04d``); by default the
    first one whose bridge does not exist yet and whose subnet no address or route of this machine overlaps.
    ``close()`` removes everything (idempotent; also registered with atexit, and run when setup fails).
    """

    def __init__(self, work_dir: Path, subnet_index: int | None = None):
        reason = unavailable()
        if reason:
            raise NetfarmError(reason)
        t0 = time.monotonic()
        self.work_dir = Path(work_dir)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.namespaces: dict[str, NetNs] = {}
        self.bridge: str | None = None
        self.index: int | None = None
        self.subnet: ipaddress.IPv4Network | None = None
        self.closed = False
        self.close_seconds: float | None = None
        self._next_octet = 2
        self.aliases: dict[str, str] = {}  # extra /etc/hosts names (alias())
        self._owner = os.getpid()  # a forked child (its atexit handlers) never tears down its parent's network
        atexit.register(self.close)
        try:
            sweep_stale_bridges()
            self._make_bridge(subnet_index)
            # name resolution inside: /etc/hosts of the network's own, and no DNS (a nameserver that refuses at
            # once, instead of this machine's, which a namespace cannot reach: lookups would hang for seconds)
            self.hosts_file = self.work_dir / "hosts"
            self._write_hosts()
            self.resolv_conf = self.work_dir / "resolv.conf"
            self.resolv_conf.write_text("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
        except BaseException:
            self.close()
            raise
        self.setup_seconds = time.monotonic() - t0

    # ------------------------------------------------------------------ the bridge

    @property
    def gateway(self) -> str:
        return str(self.subnet.network_address + 1)

    def _make_bridge(self, subnet_index: int | None) -> None:
        used = used_networks()
        candidates = [subnet_index] if subnet_index is not None else range(MAX_INDEX)
        for i in candidates:
            net = subnet_of(i)
            name = f"{BRIDGE_PREFIX}{i:04d}"
            if _link_exists(name) or any(net.overlaps(u) for u in used):
                if subnet_index is not None:
                    raise NetfarmError(f"subnet {net} (bridge {name}) is in use on this machine")
                continue
            # creating the link claims the index: a concurrent run gets "File exists" and tries the next one
            r = _ip("link", "add", name, "type", "bridge", "forward_delay", "0", "stp_state", "0", check=False)
            if r.returncode != 0:
                if _link_exists(name) and subnet_index is None:
                    continue
                raise NetfarmError(f"could not create bridge {name}: {r.stderr.strip()}")
            self.bridge, self.index, self.subnet = name, i, net
            _ip("link", "set", "dev", name, "alias", f"{ALIAS}{os.getpid()}")
            _ip("addr", "add", f"{self.gateway}/{net.prefixlen}", "dev", name)
            _ip("link", "set", "dev", name, "up")
            return
        raise NetfarmError(f"no free subnet among 10.224.0.0/24..{subnet_of(MAX_INDEX - 1)}")

    # ------------------------------------------------------------------ hosts

    def add_namespace(self, name: str, hostname: str | None = None) -> NetNs:
        """A new host on the bridge: namespaces held open, loopback up, ``eth0`` addressed, default route.
        ``hostname``: the namespace's host name when not its ``name`` (several hosts may share one, as cloned
        images do); it is not added to /etc/hosts (:meth:`alias` says what it resolves to)."""
        if self.closed or self.bridge is None:
            raise NetfarmError("the bridge network is closed")
        if name in self.namespaces:
            raise NetfarmError(f"namespace {name!r} exists already")
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9-]{0,62}", name):
            raise NetfarmError(f"{name!r}: a namespace's name is its hostname (letters, digits, '-')")
        octet = self._next_octet
        if octet > self.subnet.num_addresses - 2:
            raise NetfarmError(f"subnet {self.subnet} is full")
        self._next_octet += 1
        work = self.work_dir / name
        work.mkdir(parents=True, exist_ok=True)
        ns = NetNs(name=name, address=str(self.subnet.network_address + octet), gateway=self.gateway,
                   prefixlen=self.subnet.prefixlen, veth=f"{VETH_PREFIX}{self.index:04d}{octet:03d}", work=work)
        self.namespaces[name] = ns  # from here on, close() cleans it up whatever fails below
        ready = work / "ready"
        ready.unlink(missing_ok=True)
        ip = which("ip")
        self._write_hosts(extra={name: ns.address})
        ns.proc = subprocess.Popen(
            [which("unshare"), "--net", "--uts", "--mount", "--propagation", "private", "sh", "-c",
             'hostname "$1" && mount --bind "$2" /etc/hosts && mount --bind "$3" /etc/resolv.conf'
             f' && {ip} link set lo up && touch "$0" && exec sleep 1000000',
             str(ready), hostname or name, str(self.hosts_file), str(self.resolv_conf)],
            stdout=subprocess.DEVNULL, stderr=open(work / "holder.log", "w"), preexec_fn=_die_with_parent)
        deadline = time.monotonic() + 10
        while not ready.exists():
            if ns.proc.poll() is not None or time.monotonic() > deadline:
                raise NetfarmError(f"could not create namespace {name} (unshare --net --uts): "
                                   f"{(work / 'holder.log').read_text()}")
            time.sleep(0.01)
        ns.inode = _ns_inode(ns.net_ns)
        # the peer is created straight in the namespace, already named eth0
        _ip("link", "add", ns.veth, "type", "veth", "peer", "name", "eth0", "netns", ns.net_ns)
        _ip("link", "set", "dev", ns.veth, "master", self.bridge)
        _ip("link", "set", "dev", ns.veth, "up")
        for args in (("addr", "add", f"{ns.address}/{ns.prefixlen}", "dev", "eth0"),
                     ("link", "set", "dev", "eth0", "up"),
                     ("route", "add", "default", "via", self.gateway, "dev", "eth0")):
            ns.run([ip, *args])
        return ns

    def _write_hosts(self, extra: dict[str, str] | None = None) -> None:
        """The namespaces' /etc/hosts: every host of the network by name, and the bridge as ``gateway``.
        Rewritten in place (the same inode: every namespace's bind mount sees the new text)."""
        entries = {"localhost": "127.0.0.1", "gateway": self.gateway,
                   **{n.name: n.address for n in self.namespaces.values()}, **self.aliases, **(extra or {})}
        text = "".join(f"{a}\t{n}\n" for n, a in entries.items())
        with open(self.hosts_file, "r+" if self.hosts_file.exists() else "w") as f:
            f.write(text)
            f.truncate()

    def alias(self, name: str, address: str) -> None:
        """Every namespace's /etc/hosts maps ``name`` to ``address`` (e.g. a shared host name to Debian's
        127.0.1.1)."""
        self.aliases[name] = address
        self._write_hosts()

    def __getitem__(self, name: str) -> NetNs:
        return self.namespaces[name]

    def _ns(self, ns: NetNs | str) -> NetNs:
        return self.namespaces[ns] if isinstance(ns, str) else ns

    # ------------------------------------------------------------------ faults

    def shape(self, ns: NetNs | str, rate: str = "10mbit", burst: str | None = None,
              latency: str = "200ms") -> None:
        """Limit the host's link to ``rate`` both ways: a tbf qdisc on its eth0 (egress: what it sends) and on
        the bridge-side veth (egress towards it: what it receives).  ``burst``: the bucket's size (by default
        10 ms at ``rate``, at least 32 KiB); ``latency``: how long a packet may wait in the queue."""
        ns = self._ns(ns)
        if burst is None:
            burst = f"{max(32 * 1024, rate_bits(rate) // 8 // 100)}b"
        spec = ["root", "tbf", "rate", rate, "burst", burst, "latency", latency]
        ns.run([which("tc"), "qdisc", "replace", "dev", "eth0", *spec])
        _run([which("tc"), "qdisc", "replace", "dev", ns.veth, *spec])
        ns.shaped = rate

    def unshape(self, ns: NetNs | str) -> None:
        ns = self._ns(ns)
        ns.run([which("tc"), "qdisc", "del", "dev", "eth0", "root"], check=False)
        _run([which("tc"), "qdisc", "del", "dev", ns.veth, "root"], check=False)
        ns.shaped = None

    def drop(self, ns: NetNs | str, except_tcp_ports: list[int] | tuple = ()) -> None:
        """Drop every IPv4 packet into and out of the host, except loopback and TCP to or from
        ``except_tcp_ports`` (its sshd's port: SSH sessions, new and established, keep working).  An nftables
        table (``ip gpufleet_drop``) in its namespace; replaces an earlier one."""
        ns = self._ns(ns)
        ports = sorted({int(p) for p in except_tcp_ports})
        keep = "".join(f"    tcp dport {p} accept\n    tcp sport {p} accept\n" for p in ports)
        ruleset = (
            f"table ip {DROP_TABLE} {{\n"
            "  chain input {\n    type filter hook input priority -10; policy drop;\n"
            f'    iifname "lo" accept\n{keep}  }}\n'
            "  chain output {\n    type filter hook output priority -10; policy drop;\n"
            f'    oifname "lo" accept\n{keep}  }}\n'
            "}\n"
        )
        (ns.work / "drop.nft").write_text(ruleset)
        self.undrop(ns)
        ns.run([which("nft"), "-f", str(ns.work / "drop.nft")])
        ns.dropped = ports

    def undrop(self, ns: NetNs | str) -> None:
        ns = self._ns(ns)
        ns.run([which("nft"), "delete", "table", "ip", DROP_TABLE], check=False)
        ns.dropped = None

    # ------------------------------------------------------------------ cleanup

    def close(self) -> None:
        """Remove everything: every process in the namespaces (holders, sshds, what tests started there), the
        veths, the bridge.  Idempotent; safe after a failed setup."""
        if self.closed or os.getpid() != self._owner:
            return
        t0 = time.monotonic()
        self.closed = True
        try:
            for ns in self.namespaces.values():
                pids = ns.pids()
                if ns.proc is not None:
                    pids.append(ns.proc.pid)
                _kill_all(sorted(set(pids)))
                if ns.proc is not None:
                    try:
                        ns.proc.wait(5)
                    except subprocess.TimeoutExpired:
                        pass
                if _link_exists(ns.veth):
                    _ip("link", "del", ns.veth, check=False)
            if self.bridge and _link_exists(self.bridge):
                _ip("link", "del", self.bridge, check=False)
            # a veth whose namespace was going away already goes with it, asynchronously: wait for it
            deadline = time.monotonic() + 10
            while any(_link_exists(ns.veth) for ns in self.namespaces.values()) and time.monotonic() < deadline:
                time.sleep(0.02)
        finally:
            atexit.unregister(self.close)
            self.close_seconds = time.monotonic() - t0

    def __enter__(self) -> BridgeNetwork:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# --------------------------------------------------------------------------- traffic between hosts

# A TCP sink: for each connection, reads to EOF, then answers one JSON line: how many bytes came, their
# SHA-256, the first 64 of them, and the peer's address (as this host saw it).
SINK = r"""
import hashlib, json, socket, sys, threading
listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind((sys.argv[1], int(sys.argv[2])))
listener.listen(64)
print("ready", flush=True)

def serve(c, peer):
    with c:
        n, h, head = 0, hashlib.sha256(), b""
        while True:
            data = c.recv(1 << 20)
            if not data:
                break
            n += len(data)
            h.update(data)
            if len(head) < 64:
                head = (head + data)[:64]
        c.sendall(json.dumps({"bytes": n, "sha256": h.hexdigest(), "head": head.decode("latin-1"),
                              "peer": peer[0]}).encode() + b"\n")

while True:
    conn, peer = listener.accept()
    threading.Thread(target=serve, args=(conn, peer), daemon=True).start()
"""

# A client: connects (within the timeout), sends a text or N bytes, half-closes, reads the sink's answer;
# prints one JSON line: the answer, the sha256 of what it sent, seconds from connect to answer, or the error.
SEND = r"""
import hashlib, json, os, socket, sys, time
address, port, payload, timeout = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
data = os.urandom(int(payload[1:])) if payload.startswith("#") else payload.encode()
t0 = time.monotonic()
try:
    c = socket.create_connection((address, port), timeout=timeout)
except OSError as e:
    print(json.dumps({"error": type(e).__name__, "message": str(e), "seconds": time.monotonic() - t0}))
    sys.exit(0)
c.settimeout(max(timeout, 120))
t0 = time.monotonic()
c.sendall(data)
c.shutdown(socket.SHUT_WR)
answer = b""
while not answer.endswith(b"\n"):
    chunk = c.recv(4096)
    if not chunk:
        break
    answer += chunk
seconds = time.monotonic() - t0
print(json.dumps({"answer": json.loads(answer), "sent_sha256": hashlib.sha256(data).hexdigest(),
                  "seconds": seconds, "mbit_s": len(data) * 8 / seconds / 1e6}))
"""


def start_sink(ns: NetNs, port: int, python: str | None = None) -> subprocess.Popen:
    """A TCP sink (:data:`SINK`) on ``ns``'s address at ``port``, in its namespace; stop it with stop_process
    (or leave it: close() ends every process in the namespace)."""
    import sys

    proc = ns.popen([python or sys.executable, "-c", SINK, ns.address, str(port)], stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline().strip()
    if line != "ready":
        proc.kill()
        raise NetfarmError(f"the sink on {ns.name}:{port} did not start: {proc.stderr.read()}")
    ns.helpers.append(proc)
    return proc


def send(ns: NetNs, address: str, port: int, payload: str | int, timeout: float = 5.0,
         python: str | None = None) -> dict:
    """From inside ``ns``, connect to ``address:port`` and send ``payload`` (a text, or that many random bytes);
    the client's JSON line (:data:`SEND`): ``answer`` (the sink's), ``seconds``, ``mbit_s``; or ``error``."""
    import json
    import sys

    arg = f"#{payload}" if isinstance(payload, int) else payload
    r = ns.run([python or sys.executable, "-c", SEND, address, str(port), arg, str(timeout)], timeout=timeout + 180)
    return json.loads(r.stdout)
