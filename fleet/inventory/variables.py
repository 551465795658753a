"""Every ``gpufleet_*`` inventory variable (:data:`VARIABLES`: its meaning and the command that reads it), and the
parsing of what an inventory says a host should look like (per-host variables, inherited from groups): a malformed
value is refused when the inventory is read, naming the file, line and variable.

Variables (all optional; a check whose variable is unset is skipped):

- ``gpufleet_gpu_count``: int, the number of GPUs the host must show (on the PCI bus and to nvidia-smi).
- ``gpufleet_gpu_model``: string matched case-insensitively against every GPU's nvidia-smi product name:
  a glob if it holds ``*``, ``?`` or ``[`` (``"*A100*80GB"``), otherwise a substring (``"H100"``).
- ``gpufleet_driver_min``: minimum driver version, e.g. ``"535.104"``.
- ``gpufleet_driver_version``: pinned driver version.  Compared component-wise on the components given:
  ``"535.104.05"`` matches only 535.104.05; ``"535"`` matches any 535.x.
- ``gpufleet_cuda_min``: minimum CUDA version nvidia-smi reports (the driver's CUDA), e.g. ``"12.2"``.
- ``gpufleet_nvlink_count``: int, active NVLinks every GPU must have (``nvidia-smi nvlink -s``: 18 on an
  H100 SXM, 12 on an A100 SXM4 or a bridged H100 PCIe pair).
- ``gpufleet_ib_ports``: the host's compute rails (the InfiniBand/RoCE ports multi-node jobs use), either
  a count, the active ports (state ACTIVE, physical state LinkUp) of the link layer ``gpufleet_ib_link_layer``
  the host must have, or a list of port names, ``mlx5_0`` (every port of that device) or ``mlx5_0/1`` (one port),
  every one of which must be active.  Unset: the compute rails are the host's largest set of identical ports
  (same link layer and adapter model); other ports (a front-end NIC, a spare port) are reported, not judged.
- ``gpufleet_ib_rate``: number, the lowest rate in Gb/s each of those ports must run at (``400`` for NDR).
- ``gpufleet_ib_link_layer``: ``InfiniBand`` (default) or ``Ethernet`` (RoCE): which ports the two
  variables above count (a host's Ethernet bond beside its InfiniBand ports is not one of them).

Versions are compared as tuples of ints.  Quote them in YAML: unquoted ``12.10`` is the float 12.1, so
floats are refused.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass


# The audit's expectations: what the host should look like.
EXPECTATION_VARIABLES = ("gpufleet_gpu_count", "gpufleet_gpu_model", "gpufleet_driver_min",
                         "gpufleet_driver_version", "gpufleet_cuda_min",
                         "gpufleet_nvlink_count", "gpufleet_ib_ports", "gpufleet_ib_rate", "gpufleet_ib_link_layer")

# Every gpufleet_* variable an inventory may set: what it means, and which command reads it (the module).
VARIABLES = {
    **{name: ("what the audit expects of the host (see above)", "audit: fleet/audit/checks*.py")
       for name in EXPECTATION_VARIABLES},
    "gpufleet_remote_dir": ("where verify is installed and runs on the node (absolute, or relative to the login's "
                            "home; default .cache/gpufleet)", "push, verify: fleet/push.py"),
    "gpufleet_verify_env": ("environment variables for verify on the node (a mapping)", "verify: fleet/runs/node.py"),
    "gpufleet_rdzv_addr": ("the address other nodes reach this one on for --multinode (default: the address "
                           "gpufleet connects to)", "verify --multinode/--pairwise: fleet/runs/node.py"),
    "gpufleet_jump_handshakes": ("handshakes with this host's jump host at once (a whole number >= 1, default 8: "
                                 "below sshd's stock MaxStartups 10:30:100)", "every command that connects: "
                                 "fleet/inventory/connection.py"),
    "gpufleet_rack": ("the host's rack, for --pairwise --topology rack/cross", "verify --pairwise: "
                      "fleet/runs/pairwise_run.py"),
    "gpufleet_slurm_node": ("the host's Slurm node name (default: its inventory name)", "verify --via slurm, "
                            "slurm-sync: fleet/slurm/nodes.py"),
    "gpufleet_toolkit_repo_url": ("nvidia-container-toolkit repository base URL", "provision: provision/settings.py"),
    "gpufleet_toolkit_key_url": ("the repository's signing key URL", "provision: provision/settings.py"),
    "gpufleet_toolkit_version": ("the toolkit version to pin", "provision: provision/settings.py"),
    "gpufleet_toolkit_runtimes": ("container runtimes to configure", "provision: provision/settings.py"),
    "gpufleet_toolkit_smoke_test": ("run the docker smoke test after installing", "provision: provision/settings.py"),
    "gpufleet_toolkit_smoke_image": ("the smoke test's image", "provision: provision/settings.py"),
}


def version_tuple(value: str) -> tuple[int, ...]:
    """``"535.104.05"`` -> ``(535, 104, 5)``.  Raises ValueError if not dotted integers."""
    value = str(value).strip()
    if not re.fullmatch(r"\d+(\.\d+)*", value):
        raise ValueError(f"not a dotted version number: {value!r}")
    return tuple(int(p) for p in value.split("."))


def _version(vars: dict, name: str) -> str | None:
    value = vars.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or isinstance(value, float):
        raise ValueError(f"{name}: expected a version string such as \"535.104\", got {value!r} "
                         f"(quote it in YAML: an unquoted 12.10 reads as the number 12.1)")
    if isinstance(value, int):
        value = str(value)
    if not isinstance(value, str):
        raise ValueError(f"{name}: expected a version string such as \"535.104\", got {value!r}")
    try:
        version_tuple(value)
    except ValueError:
        raise ValueError(f"{name}: expected dotted integers such as \"535.104\", got {value!r}") from None
    return value.strip()


def _count(vars: dict, name: str) -> int | None:
    value = vars.get(name)
    if value is None:
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name}: expected a non-negative integer, got {value!r}")
    return value


def _rate(vars: dict, name: str) -> float | None:
    value = vars.get(name)
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip().lower().removesuffix("gb/sec").removesuffix("gb/s").removesuffix("g").strip()
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"{name}: expected a rate in Gb/s such as 400, got {vars.get(name)!r}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ValueError(f"{name}: expected a positive rate in Gb/s such as 400, got {value!r}")
    return float(value)


def _ports(vars: dict, name: str) -> tuple[int | None, tuple[str, ...] | None]:
    """``gpufleet_ib_ports``: a count -> (count, None); a list of names -> (None, names)."""
    value = vars.get(name)
    if isinstance(value, (list, tuple)):
        names = tuple(v.strip() for v in value if isinstance(v, str) and v.strip())
        if len(names) != len(value) or not names or len(set(names)) != len(names):
            raise ValueError(f"{name}: expected a count or a list of distinct port names such as "
                             f"[mlx5_0, mlx5_1/1], got {value!r}")
        return None, names
    return _count(vars, name), None


def _link_layer(vars: dict, name: str) -> str:
    value = vars.get(name, "InfiniBand")
    layers = {"infiniband": "InfiniBand", "ib": "InfiniBand", "ethernet": "Ethernet", "roce": "Ethernet"}
    if not isinstance(value, str) or value.strip().lower() not in layers:
        raise ValueError(f"{name}: expected InfiniBand or Ethernet (RoCE), got {value!r}")
    return layers[value.strip().lower()]


@dataclass(frozen=True)
class Expectations:
    gpu_count: int | None = None
    gpu_model: str | None = None
    driver_min: str | None = None
    driver_version: str | None = None
    cuda_min: str | None = None
    # fabric area
    nvlink_count: int | None = None
    ib_ports: int | None = None
    ib_port_names: tuple[str, ...] | None = None   # gpufleet_ib_ports as a list: the compute rails by name
    ib_rate: float | None = None
    ib_link_layer: str = "InfiniBand"

    @classmethod
    def from_vars(cls, vars: dict) -> "Expectations":
        """Read the ``gpufleet_*`` variables of one host; raise ValueError naming the bad variable."""
        vars = vars or {}
        count = vars.get("gpufleet_gpu_count")
        if count is not None:
            if isinstance(count, str) and count.strip().isdigit():
                count = int(count)
            if isinstance(count, bool) or not isinstance(count, int):
                raise ValueError(f"gpufleet_gpu_count: expected an integer, got {count!r}")
            if count < 0:
                raise ValueError(f"gpufleet_gpu_count: expected a non-negative integer, got {count!r}")
        model = vars.get("gpufleet_gpu_model")
        if model is not None:
            if not isinstance(model, str) or not model.strip():
                raise ValueError(f"gpufleet_gpu_model: expected a non-empty string (substring or glob), got {model!r}")
            model = model.strip()
        ports, port_names = _ports(vars, "gpufleet_ib_ports")
        return cls(gpu_count=count, gpu_model=model,
                   driver_min=_version(vars, "gpufleet_driver_min"),
                   driver_version=_version(vars, "gpufleet_driver_version"),
                   cuda_min=_version(vars, "gpufleet_cuda_min"),
                   nvlink_count=_count(vars, "gpufleet_nvlink_count"),
                   ib_ports=ports, ib_port_names=port_names,
                   ib_rate=_rate(vars, "gpufleet_ib_rate"),
                   ib_link_layer=_link_layer(vars, "gpufleet_ib_link_layer"))

    def model_matches(self, name: str | None) -> bool:
        if self.gpu_model is None:
            return True
        if not name:
            return False
        pattern, name = self.gpu_model.lower(), name.lower()
        if any(c in pattern for c in "*?["):
            return fnmatch.fnmatchcase(name, pattern)
        return pattern in name
