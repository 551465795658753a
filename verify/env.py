"""Environment: what the node runs (OS, Python, env managers, torch, CUDA, GPUs) and its checks.

This is the seeds' env-check script done right: figures go into the report's
``env`` object, and CUDA initialisation warnings ("driver too old", "no NVIDIA
driver") are captured with ``warnings.catch_warnings`` and reported as failed
checks instead of being lost on stderr.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import warnings
from typing import Callable, Iterable, Optional

from verify.status import FAIL, PASS, SKIP, WARN, make_check

_CUDA_WARNING = re.compile(r"cuda|nvidia|driver|cudnn|nccl|gpu", re.IGNORECASE)


def parse_os_release(text: str) -> dict:
    """``/etc/os-release`` as a dict (quotes removed)."""
    out = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and key and not key.startswith("#"):
            out[key] = value.strip().strip('"').strip("'")
    return out


def distribution(path: str = "/etc/os-release") -> Optional[str]:
    """The distribution's PRETTY_NAME, or None."""
    try:
        with open(path, encoding="utf-8") as f:
            return parse_os_release(f.read()).get("PRETTY_NAME")
    except OSError:
        return None


# Set by the .pth of the environment gpufleet's push makes on a node: the node Python's site directories,
# which that environment sees on purpose (fleet/push.py).
NODE_SITE_VAR = "GPUFLEET_NODE_SITE"


def python_env(environ=None, prefix: str = sys.prefix, base_prefix: str = sys.base_prefix) -> dict:
    """Virtualenv / conda facts: where Python lives and which environment is active."""
    env = os.environ if environ is None else environ
    return {
        "python": platform.python_version(),
        "python_executable": sys.executable,
        "prefix": prefix,
        "virtualenv": prefix if prefix != base_prefix else env.get("VIRTUAL_ENV"),
        "conda_env": env.get("CONDA_DEFAULT_ENV"),
        "conda_prefix": env.get("CONDA_PREFIX"),
        "system_site_packages": system_site_packages(prefix) if prefix != base_prefix else None,
        "node_site_dirs": [d for d in env.get(NODE_SITE_VAR, "").split(os.pathsep) if d],
    }


def system_site_packages(prefix: str) -> bool:
    """Whether the virtualenv at ``prefix`` was made with ``--system-site-packages`` (pyvenv.cfg)."""
    try:
        with open(os.path.join(prefix, "pyvenv.cfg")) as f:
            for line in f:
                key, _, value = line.partition("=")
                if key.strip() == "include-system-site-packages":
                    return value.strip().lower() == "true"
    except OSError:
        pass
    return False


def cuda_warnings_checks(messages: Iterable[str]) -> list:
    """One failed ``env/cuda_init`` check listing the CUDA-related warnings, else a pass."""
    relevant = [m for m in messages if _CUDA_WARNING.search(m)]
    if relevant:
        return [make_check("env/cuda_init", FAIL, "CUDA initialisation warned: " + " | ".join(relevant),
                           details={"warnings": relevant})]
    return [make_check("env/cuda_init", PASS, "no CUDA initialisation warnings")]


def probe_cuda(torch_module=None) -> dict:
    """Initialise CUDA under ``warnings.catch_warnings`` and report what was seen.

    Returns ``available``, ``device_count``, ``warnings`` (messages) and
    ``error`` (an exception text, or None).
    """
    import torch

    tm = torch_module or torch
    out = {"available": False, "device_count": 0, "warnings": [], "error": None}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            out["available"] = bool(tm.cuda.is_available())
            if out["available"]:
                tm.cuda.init()
                out["device_count"] = int(tm.cuda.device_count())
        except Exception as exc:  # noqa: BLE001 - a broken driver raises anything here
            out["available"] = False
            out["error"] = f"{type(exc).__name__}: {exc}"
    out["warnings"] = [str(w.message) for w in caught]
    return out


def nvidia_smi_driver(run: Callable = subprocess.run) -> Optional[str]:
    """The driver version nvidia-smi reports, or None (no nvidia-smi, or it failed)."""
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        proc = run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                   capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    lines = [line.strip() for line in proc.stdout.splitlines() if line.strip()]
    return lines[0] if proc.returncode == 0 and lines else None


def _versions() -> dict:
    import PIL
    import torch
    import torchvision
    import tqdm

    return {
        "torch_version": torch.__version__,
        "torch_path": os.path.dirname(torch.__file__),
        "torchvision_version": torchvision.__version__,
        "pillow_version": PIL.__version__,
        "tqdm_version": tqdm.__version__,
        "cuda_version": torch.version.cuda,
        "torch_threads": torch.get_num_threads(),
    }


def _gpu_facts(cuda: dict) -> dict:
    import torch

    facts = {"gpu_count": 0, "gpu_names": [], "cudnn_version": None, "nccl_version": None}
    if not cuda["available"]:
        return facts
    facts["gpu_count"] = cuda["device_count"]
    facts["gpu_names"] = [torch.cuda.get_device_name(i) for i in range(cuda["device_count"])]
    facts["cudnn_version"] = torch.backends.cudnn.version()
    try:
        v = torch.cuda.nccl.version()
        facts["nccl_version"] = ".".join(str(x) for x in v) if isinstance(v, tuple) else str(v)
    except Exception:  # noqa: BLE001 - torch built without NCCL
        facts["nccl_version"] = None
    return facts


def collect(cuda: dict) -> dict:
    """The report's ``env`` object, given a :func:`probe_cuda` result."""
    env = {
        "hostname": socket.gethostname(),
        "os": platform.system(),
        "kernel": platform.release(),
        "distribution": distribution(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
    }
    env.update(python_env())
    env.update(_versions())
    env["cuda_available"] = cuda["available"]
    env["cuda_error"] = cuda["error"]
    env.update(_gpu_facts(cuda))
    env["driver_version"] = nvidia_smi_driver()
    env["nvidia_smi"] = shutil.which("nvidia-smi")
    return env


def torch_location_check(env: dict) -> dict:
    """Whether torch is imported from the active virtualenv / conda env (the seed's check)."""
    active = env.get("virtualenv") or env.get("conda_prefix")
    where = f"torch {env['torch_version']} from {env['torch_path']}"
    if active and not os.path.realpath(env["torch_path"]).startswith(os.path.realpath(active)):
        real = os.path.realpath(env["torch_path"])
        if any(real.startswith(os.path.realpath(d) + os.sep) for d in env.get("node_site_dirs") or ()):
            return make_check("env/torch", PASS, f"{where} (the node Python's, seen by gpufleet's environment "
                                                 f"{active})")
        if env.get("system_site_packages"):
            # gpufleet's own push: a venv that deliberately sees the node's torch
            return make_check("env/torch", PASS, f"{where} (the base interpreter's, seen by the environment "
                                                 f"{active} through --system-site-packages)")
        return make_check("env/torch", WARN, f"{where}, not from the active environment {active}")
    return make_check("env/torch", PASS, where)


def cuda_check(env: dict, device: str) -> dict:
    """``env/cuda``: is CUDA available where it should be."""
    if device == "cpu":
        return make_check("env/cuda", SKIP, "--device cpu: CUDA not used")
    if env["cuda_available"]:
        return make_check("env/cuda", PASS, f"CUDA {env['cuda_version']}, cuDNN {env['cudnn_version']}, "
                          f"{env['gpu_count']} GPU(s): {', '.join(env['gpu_names'])}; driver "
                          f"{env['driver_version'] or 'unknown'}; NCCL {env['nccl_version']}")
    why = env["cuda_error"] or "torch.cuda.is_available() is False"
    if device == "cuda":
        return make_check("env/cuda", FAIL, f"--device cuda but CUDA is unusable: {why}")
    if env.get("nvidia_smi"):
        return make_check("env/cuda", FAIL, f"nvidia-smi is installed but CUDA is unusable: {why}")
    return make_check("env/cuda", SKIP, f"no CUDA on this node ({why}); CPU-only run")


def checks(env: dict, cuda: dict, device: str) -> list:
    """The environment's check records."""
    out = [make_check("env/python", PASS, f"Python {env['python']} at {env['python_executable']}",
                      details={"virtualenv": env["virtualenv"], "conda_env": env["conda_env"]}),
           torch_location_check(env),
           cuda_check(env, device)]
    if device != "cpu":
        out.extend(cuda_warnings_checks(cuda["warnings"]))
    return out
