"""Push ``verify/`` to nodes: a content-addressed wheel, installed once per node.

The controller builds a deterministic pure-Python wheel of ``verify/`` (same
source, same bytes, same hash).  On each node it lives in
``<remote_dir>/verify-<hash>/`` beside a virtual environment made from the node's
Python (``ansible_python_interpreter`` when set) that sees, after verify itself,
every site directory that Python sees, in its order (so the node's own torch is
used, also when that Python is itself a venv or a conda env).  A second push of unchanged code
finds the ``.installed`` marker and uploads nothing.

``gpufleet_remote_dir`` may be relative to the login's home directory (the default, ``.cache/gpufleet``, is).
The push's first round trip asks the node where that home is, and from then on every path is absolute
(:func:`absolute_dir`): :attr:`PushResult.directory` is what SSH commands, Slurm job scripts (which start in the
submit directory, not the home), stop lines and fetches use.

The remote directory may be shared by many nodes (an NFS home on an HPC
cluster), so an install is built in a private staging directory beside its
target (same filesystem) and moved into place with one ``rename``: the target
only ever appears complete, with its ``.installed`` marker.  A node that loses
the race (the target appeared meanwhile) discards its build and uses the
winner's, which is the same content.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import io
import json
import os
import posixpath
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from fleet import __version__
from fleet.fanout import TaskFailed
from fleet.inventory import Host
from fleet.shell import cmd, quote, script
from fleet.transport import Transport

DEFAULT_REMOTE_DIR = ".cache/gpufleet"
DIST = "gpufleet_verify"
_EPOCH = (1980, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class Artifact:
    """The built wheel: its bytes and the short content hash that names it on nodes."""

    filename: str
    data: bytes
    digest: str

    def write(self, directory: str | os.PathLike) -> Path:
        path = Path(directory) / self.filename
        path.write_bytes(self.data)
        return path


def verify_source() -> Path:
    """Where ``verify/`` lives, found without importing it (it imports torch)."""
    spec = importlib.util.find_spec("verify")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the verify package is not importable from the controller")
    return Path(list(spec.submodule_search_locations)[0])


def build_wheel(source: Path | None = None, version: str = __version__) -> Artifact:
    """A deterministic wheel of ``verify/`` (sorted entries, fixed timestamps)."""
    source = source or verify_source()
    files = sorted(
        p for p in source.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix not in (".pyc", ".pyo")
    )
    entries: list[tuple[str, bytes]] = [(f"verify/{p.relative_to(source).as_posix()}", p.read_bytes()) for p in files]
    dist_info = f"{DIST}-{version}.dist-info"
    entries.append((f"{dist_info}/METADATA", (
        f"Metadata-Version: 2.1\nName: {DIST}\nVersion: {version}\n"
        "Summary: gpufleet node-side verification suite\n"
        "Requires-Dist: torch\nRequires-Dist: torchvision\nRequires-Dist: pillow\nRequires-Dist: tqdm\n"
    ).encode()))
    entries.append((f"{dist_info}/WHEEL",
                    b"Wheel-Version: 1.0\nGenerator: gpufleet\nRoot-Is-Purelib: true\nTag: py3-none-any\n"))
    record = "".join(
        f"{name},sha256={base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()},{len(data)}\n"
        for name, data in entries
    ) + f"{dist_info}/RECORD,,\n"
    entries.append((f"{dist_info}/RECORD", record.encode()))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in entries:
            info = zipfile.ZipInfo(name, date_time=_EPOCH)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, data)
    data = buf.getvalue()
    return Artifact(f"{DIST}-{version}-py3-none-any.whl", data, hashlib.sha256(data).hexdigest()[:16])


@dataclass(frozen=True)
class Wheelhouse:
    """Local wheels for air-gapped nodes: uploaded with verify and installed with ``--no-index``.

    Exactly these wheels are installed (``--no-deps``) into verify's environment,
    where they take precedence over the node's own packages.
    """

    wheels: tuple
    digest: str

    @classmethod
    def from_dir(cls, path: str | os.PathLike) -> "Wheelhouse":
        wheels = tuple(sorted(Path(path).glob("*.whl")))
        if not wheels:
            raise ValueError(f"no *.whl files in wheelhouse {path}")
        h = hashlib.sha256()
        for w in wheels:
            h.update(w.name.encode() + b"\0" + hashlib.sha256(w.read_bytes()).digest())
        return cls(wheels, h.hexdigest()[:8])


# --------------------------------------------------------------------------- per host


def configured_dir(value) -> str:
    """A ``gpufleet_remote_dir`` value, normalised (pure): absolute, or relative to the login's home directory
    (``~`` and ``~/`` say so too); no trailing slash; unset or empty: :data:`DEFAULT_REMOTE_DIR`.

    ``~user/...`` names another user's home, which the controller cannot know: ValueError."""
    d = str(value).strip() if value is not None else ""
    if d == "~" or d.startswith("~/"):
        d = d[1:].lstrip("/") or "."
    elif d.startswith("~"):
        raise ValueError(f"gpufleet_remote_dir {d!r}: only ~ (the login's own home) is understood, not ~user")
    if not d:
        return DEFAULT_REMOTE_DIR
    d = posixpath.normpath(d)
    return "/" + d.lstrip("/") if d.startswith("/") else d


def absolute_dir(home: str, configured) -> str:
    """The absolute remote directory (pure): ``configured`` (see :func:`configured_dir`) resolved against
    ``home``, the login's home directory as the node reported it (an absolute path)."""
    if not home.startswith("/"):
        raise ValueError(f"the login's home directory {home!r} is not an absolute path")
    d = configured_dir(configured)
    if d.startswith("/"):
        return d
    base = posixpath.normpath(home)
    base = "/" + base.lstrip("/")  # POSIX keeps a leading //
    return base if d == "." else posixpath.join(base, d)


def remote_dir(host: Host) -> str:
    """``gpufleet_remote_dir`` as configured (absolute, or relative to the login directory): see
    :func:`configured_dir`; :func:`absolute_dir` resolves it once the node has told its home."""
    return configured_dir(host.vars.get("gpufleet_remote_dir"))


def node_python(host: Host) -> str:
    """``ansible_python_interpreter``; on the local host, this very interpreter; else python3."""
    if host.python:
        return host.python
    return sys.executable if host.is_local else "python3"


LAYOUT = "2"  # how an install is built; a new layout is a new install directory


def install_dir(host: Host, artifact: Artifact, wheelhouse: Wheelhouse | None = None, home: str | None = None) -> str:
    """Where ``artifact`` is installed on ``host``: absolute with ``home`` (the login's home directory, as
    :class:`PushResult` carries it); without it, as configured (relative to the login's home unless
    ``gpufleet_remote_dir`` is absolute: right over SSH and SFTP, which start there, wrong anywhere else)."""
    py = hashlib.sha256(f"{node_python(host)}\0{LAYOUT}".encode()).hexdigest()[:8]
    wh = f"-wh{wheelhouse.digest}" if wheelhouse else ""
    base = absolute_dir(home, remote_dir(host)) if home is not None else remote_dir(host)
    return posixpath.join(base, f"verify-{artifact.digest}-{py}{wh}")


_PROBE = r"""
import json, os, platform, sys, warnings
DEEP = sys.argv[1:] == ["deep"]
out = {"python": sys.executable, "python_version": platform.python_version(), "deep": DEEP}
DISTS = {"torch": "torch", "torchvision": "torchvision", "PIL": "pillow", "tqdm": "tqdm"}
for m, dist in DISTS.items():
    try:
        if DEEP:  # really import it (slow: torch takes seconds)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                mod = __import__(m)
            out[m] = str(getattr(mod, "__version__", "unknown"))
        else:  # found, and its installed version, without importing
            import importlib.metadata, importlib.util, re
            spec = importlib.util.find_spec(m)
            if spec is None:
                raise ImportError("No module named %r" % m)
            found = None
            for where in spec.submodule_search_locations or []:  # torch/version.py: '2.4.1+cu121'
                try:
                    with open(os.path.join(where, "version.py")) as f:
                        found = re.search(r"^__version__\s*=\s*['\"]([^'\"]+)", f.read(), re.M)
                except OSError:
                    continue
                if found:
                    break
            try:
                out[m] = found.group(1) if found else importlib.metadata.version(dist)
            except importlib.metadata.PackageNotFoundError:
                out[m] = "unknown"
    except Exception as e:
        out[m] = None
        out[m + "_error"] = "%s: %s" % (type(e).__name__, e)
if DEEP and out["torch"]:
    import torch
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out["cuda_available"] = bool(torch.cuda.is_available())
        out["gpu_count"] = torch.cuda.device_count() if out["cuda_available"] else 0
elif not DEEP:  # the GPUs the driver exposes, without initialising CUDA
    try:
        n = len(os.listdir("/proc/driver/nvidia/gpus"))
    except OSError:
        n = 0
    if not n:
        import shutil, subprocess
        smi = shutil.which("nvidia-smi")
        if smi:
            try:
                r = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=30)
                n = sum(1 for line in r.stdout.splitlines() if line.startswith("GPU "))
            except (OSError, subprocess.SubprocessError):
                n = 0
    out["gpu_count"] = n
print("@@gpufleet-probe " + json.dumps(out))
"""


def state_script(python: str, directory: str, deep: bool = False) -> str:
    """One round trip: the login's home directory, is this artifact installed, and what can the node's Python import?

    ``deep`` imports torch and torchvision for real and asks CUDA for its GPUs
    (seconds); otherwise they are found and versioned without importing, and
    the GPUs are those the driver exposes.  When the artifact is not installed,
    a private staging directory is made beside ``directory`` for the upload
    (``@@gpufleet-staging PATH``).
    """
    parent = directory.rsplit("/", 1)[0] if "/" in directory else "."
    return (
        # the directory a relative path starts from, over SSH and SFTP alike: the login's home (@@gpufleet-home)
        "printf '@@gpufleet-home %s\\n' \"$(pwd)\"\n"
        f"d={quote(directory)}; py={quote(python)}\n"
        f"mkdir -p {quote(parent)} || exit 3\n"
        'installed=""\n'
        'if [ -f "$d/.installed" ] && [ -x "$d/venv/bin/python" ]; then '
        'echo "@@gpufleet-installed"; installed=1; py="$d/venv/bin/python"; fi\n'
        'command -v "$py" >/dev/null 2>&1 || [ -x "$py" ] || { echo "@@gpufleet-nopython $py"; exit 0; }\n'
        'if [ -z "$installed" ]; then s=$(mktemp -d "$d.tmp.XXXXXX") || exit 3; echo "@@gpufleet-staging $s"; fi\n'
        f'"$py" - {"deep" if deep else "fast"} <<\'GPUFLEET_PROBE\'\n{_PROBE}\nGPUFLEET_PROBE\n'
    )


_WHEELHOUSE_INSTALL = (
    '"$py" -m pip --version >/dev/null 2>&1 || '
    '{ echo "the wheelhouse needs pip on the node: $py -m pip is not available" >&2; exit 4; }\n'
    '"$py" -m pip install -q --no-index --no-deps --no-warn-script-location --disable-pip-version-check '
    '--target "$site" "$s"/wheelhouse/*.whl\n'
)

# Every site directory the node's Python sees, in its order, each processed as a site directory
# (so the ``.pth`` files in it work too: editable installs, import hooks), after verify's own.
# Not ``--system-site-packages``: when the node's Python is a venv, that would put its base
# Python's packages (another torch, say) before the venv's own.
# It also names them in $GPUFLEET_NODE_SITE (os.pathsep-separated), so verify's env/torch check knows
# that a torch found there is the node's own, seen on purpose (verify.env.NODE_SITE_VAR).
_NODE_SITE = (
    "import os, site, sys\n"
    "dirs = [p for p in sys.path if p.endswith(('site-packages', 'dist-packages'))]\n"
    "print('import os, site; os.environ[%r] = %r; list(map(site.addsitedir, %r))'"
    " % ('GPUFLEET_NODE_SITE', os.pathsep.join(dirs), dirs))\n"
)

# Move the staged build into place: rename(2) of a directory is atomic on one filesystem (NFS
# included), and fails when the target exists and is not empty.  A complete target means another
# node won: its install is the same content, so ours is discarded.  An incomplete one (left by an
# older gpufleet that installed in place) is set aside first.  Staging directories of pushes that
# died (a controller killed mid-upload) are removed once they are a day old.
STALE_STAGING_S = 86400
_COMMIT = r"""
import errno, glob, os, shutil, sys, time
staging, target, stale_after = sys.argv[1], sys.argv[2], float(sys.argv[3])
for old in glob.glob(glob.escape(target) + ".tmp.*"):
    try:
        if old != staging and time.time() - os.lstat(old).st_mtime > stale_after:
            shutil.rmtree(old, ignore_errors=True)
    except OSError:
        pass
for attempt in range(3):
    try:
        os.rename(staging, target)
        print("@@gpufleet-committed")
        sys.exit(0)
    except OSError as e:
        if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
            raise
    if os.path.isfile(os.path.join(target, ".installed")):
        shutil.rmtree(staging, ignore_errors=True)
        print("@@gpufleet-lost-race")
        sys.exit(0)
    aside = "%s.stale%d" % (staging, attempt)
    try:
        os.rename(target, aside)
    except FileNotFoundError:
        continue
    shutil.rmtree(aside, ignore_errors=True)
sys.exit("could not move %s into place at %s" % (staging, target))
"""


def install_script(python: str, directory: str, staging: str, wheel: str, deep: bool = False,
                   wheelhouse: bool = False) -> str:
    """Build verify's environment in ``staging`` (the wheel is there), then move it to ``directory``."""
    return (
        "set -e\n"
        f"d={quote(directory)}; s={quote(staging)}; py={quote(python)}; whl={quote(wheel)}\n"
        "trap 'rm -rf \"$s\"' EXIT\n"  # a failed build leaves nothing; after the move $s is gone
        '"$py" -m venv --without-pip "$s/venv"\n'
        'site=$("$s/venv/bin/python" -c \'import sysconfig; print(sysconfig.get_paths()["purelib"])\')\n'
        '"$s/venv/bin/python" -m zipfile -e "$s/$whl" "$site"\n'
        # the node's interpreter may itself be a venv or conda env: see everything it sees
        f'"$py" -c {quote(_NODE_SITE)} > "$site/gpufleet-node-site.pth"\n'
        + (_WHEELHOUSE_INSTALL if wheelhouse else "")
        + '"$s/venv/bin/python" -c "import verify"\n'
        'touch "$s/.installed"\n'
        f'"$py" -c {quote(_COMMIT)} "$s" "$d" {STALE_STAGING_S}\n'
        '[ -f "$d/.installed" ]\n'
        'echo "@@gpufleet-installed"\n'
        f'"$d/venv/bin/python" - {"deep" if deep else "fast"} <<\'GPUFLEET_PROBE\'\n{_PROBE}\nGPUFLEET_PROBE\n'
    )


def prune_runs_command(directory: str, keep: int = 5) -> str:
    """A node-side command removing all but the newest ``keep`` run folders under ``directory/runs``.

    Run folders are named by their run id, a UTC timestamp (``20261122T180602Z``), so name
    order is time order.  Each removed folder is printed as ``@@gpufleet-pruned NAME``
    (see :func:`parse_pruned`); a missing ``runs`` folder is not an error.
    """
    if isinstance(keep, bool) or not isinstance(keep, int) or keep < 0:
        raise ValueError(f"keep must be a whole number >= 0, not {keep!r}")
    return script(
        "LC_ALL=C; export LC_ALL\n"
        f"r={quote(directory.rstrip('/') + '/runs')}; keep={keep}\n"
        '[ -d "$r" ] || exit 0\n'
        'set -- "$r"/*/\n'
        '[ -d "$1" ] || exit 0\n'  # no folder: the pattern stayed as it was
        "n=$(($# - keep))\n"
        'while [ "$n" -gt 0 ]; do\n'
        '    f=${1%/}; rm -rf -- "$f" || exit 1\n'
        '    echo "@@gpufleet-pruned ${f##*/}"; shift; n=$((n - 1))\n'
        "done\n"
    )


def parse_pruned(stdout: str) -> list[str]:
    """The run folders :func:`prune_runs_command` removed, oldest first."""
    marker = "@@gpufleet-pruned "
    return [line[len(marker):] for line in stdout.splitlines() if line.startswith(marker)]


@dataclass
class PushResult:
    directory: str  # the install directory, absolute (resolved against the login's home on the node)
    python: str  # the interpreter verify runs with (the venv's), absolute
    uploaded: bool
    probe: dict = field(default_factory=dict)
    raced: bool = False  # another node installed the same build into the shared directory first
    home: str = ""  # the login's home directory, as the node reported it

    @property
    def torch_ok(self) -> bool:
        return bool(self.probe.get("torch")) and bool(self.probe.get("torchvision"))

    def summary(self) -> str:
        p = self.probe
        action = "uploaded and installed" if self.uploaded else "already installed, nothing uploaded"
        if self.raced:
            action = "uploaded; another node installed it first, using its install"
        libs = f"torch {p.get('torch') or 'MISSING'}, torchvision {p.get('torchvision') or 'MISSING'}"
        gpus = f", {p.get('gpu_count', 0)} {'CUDA GPU(s)' if p.get('deep') else 'GPU(s) exposed by the driver'}"
        return f"{action}; python {p.get('python_version', '?')}, {libs}{gpus}"


def parse_probe(stdout: str) -> tuple[bool, dict]:
    installed = "@@gpufleet-installed" in stdout
    for line in stdout.splitlines():
        if line.startswith("@@gpufleet-nopython"):
            raise TaskFailed(f"no Python interpreter {line.split(' ', 1)[1]!r} on the node "
                             "(set ansible_python_interpreter)")
        if line.startswith("@@gpufleet-probe "):
            return installed, json.loads(line.split(" ", 1)[1])
    raise TaskFailed(f"could not probe the node's Python: {stdout.strip()[-300:]}")


def parse_home(stdout: str) -> str:
    """The login's home directory the state script reported (``@@gpufleet-home``)."""
    for line in stdout.splitlines():
        if line.startswith("@@gpufleet-home "):
            home = line.split(" ", 1)[1]
            if home.startswith("/"):
                return home
            break
    raise TaskFailed(f"the node did not say its home directory: {stdout.strip()[-300:]}")


def parse_staging(stdout: str) -> str | None:
    """The private staging directory the state script made, if it made one."""
    for line in stdout.splitlines():
        if line.startswith("@@gpufleet-staging "):
            return line.split(" ", 1)[1]
    return None


def _upload(t: Transport, staging: str, artifact: Artifact, wheelhouse: Wheelhouse | None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        t.put(artifact.write(tmp), f"{staging}/{artifact.filename}")
    if wheelhouse:
        r = t.run(cmd("mkdir -p %s", f"{staging}/wheelhouse"))
        if not r.ok:
            raise TaskFailed(f"cannot make {staging}/wheelhouse on the node: {r.tail(3)}")
        for w in wheelhouse.wheels:
            t.put(w, f"{staging}/wheelhouse/{w.name}")


def push(t: Transport, artifact: Artifact, require_torch: bool = True, deep: bool = False,
         wheelhouse: Wheelhouse | None = None) -> PushResult:
    """Install ``artifact`` on the host behind ``t`` unless it is already there.

    ``deep`` imports torch on the node to probe it (``invoke push``); ``verify``
    uses the fast probe, since verify itself then checks the stack in depth.
    Safe when many nodes install into one shared directory at once (see the module doc).
    """
    host = t.host
    try:
        configured, base_py = install_dir(host, artifact, wheelhouse), node_python(host)
    except ValueError as e:
        raise TaskFailed(str(e)) from None
    r = t.run(script(state_script(base_py, configured, deep)))
    if not r.ok:
        raise TaskFailed(f"cannot prepare {configured} on the node: {r.tail(5)}")
    # from here on every path is absolute: a Slurm job, or any command not started in the home, finds them too
    home = parse_home(r.stdout)
    directory = install_dir(host, artifact, wheelhouse, home)
    installed, probe = parse_probe(r.stdout)
    uploaded = raced = False
    if not installed:
        staging = parse_staging(r.stdout)
        if not staging:
            raise TaskFailed(f"no staging directory beside {directory} on the node: {r.tail(5)}")
        staging = absolute_dir(home, staging)
        try:
            _upload(t, staging, artifact, wheelhouse)
        except (TaskFailed, OSError):  # the node is still there: leave nothing behind
            t.run(cmd("rm -rf %s", staging))
            raise
        r = t.run(script(install_script(base_py, directory, staging, artifact.filename, deep, wheelhouse is not None)))
        if not r.ok:
            raise TaskFailed(f"installing verify into {directory}/venv failed: {r.tail(8)}")
        uploaded, raced = True, "@@gpufleet-lost-race" in r.stdout
        installed, probe = parse_probe(r.stdout)
    result = PushResult(directory, f"{directory}/venv/bin/python", uploaded, probe, raced, home)
    if require_torch and not result.torch_ok:
        missing = [m for m in ("torch", "torchvision") if not probe.get(m)]
        why = "; ".join(str(probe.get(f"{m}_error")) for m in missing)
        raise TaskFailed(
            f"{' and '.join(missing)} not importable with {base_py} ({why}); "
            "install them on the node or set ansible_python_interpreter to a Python that has them",
            result,
        )
    return result


def render_table(result) -> str:
    """One line per host for ``invoke push``."""
    from fleet import table

    rows = []
    for r in result:
        v = r.value if isinstance(r.value, PushResult) else None
        p = v.probe if v else {}
        action = ("uploaded" if v.uploaded else "cached") if v else "-"
        rows.append([r.host.name, r.state.value, action, p.get("python_version"),
                     p.get("torch") or ("MISSING" if v else None),
                     p.get("torchvision") or ("MISSING" if v else None), p.get("gpu_count"), r.message])
    return table.render(["HOST", "STATE", "PUSH", "PYTHON", "TORCH", "TORCHVISION", "CUDA GPUS", "MESSAGE"], rows, 100)
