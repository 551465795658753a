"""The audit's facts, each a unit (:class:`~fleet.audit.facts.fact.Fact`: command + pure parser) declared
in the module of what it looks at, and :data:`FACTS`, the order the gather script runs them in.

Adding a fact: see docs/audit-facts.md.
"""

from __future__ import annotations

from fleet.audit.facts.fabric import FABRIC_MANAGER, NVSWITCH
from fleet.audit.facts.fact import Fact
from fleet.audit.facts.infiniband import INFINIBAND
from fleet.audit.facts.kernel import DMESG, DRIVER_MODULE, JOURNALCTL
from fleet.audit.facts.lspci import LSPCI
from fleet.audit.facts.nvlink import NVLINK_ERRORS, NVLINK_STATUS
from fleet.audit.facts.nvidia_smi import COMPUTE_APPS, DRIVER_GPUS, NVIDIA_SMI
from fleet.audit.facts.osrelease import BOOT_ID, OS_RELEASE, UNAME
from fleet.audit.facts.toolkit import DOCKER_RUNTIMES, NVIDIA_CTK

# Run order, and precedence: a field set by an earlier fact is kept (nvidia-smi's driver version over
# the kernel module's; dmesg's XIDs over the journal's).  A `when` may only look at earlier facts.
FACTS: tuple[Fact, ...] = (OS_RELEASE, UNAME, BOOT_ID, LSPCI, NVIDIA_SMI, DRIVER_MODULE, NVIDIA_CTK, DOCKER_RUNTIMES,
                           DMESG, JOURNALCTL, COMPUTE_APPS, DRIVER_GPUS,
                           NVLINK_STATUS, NVLINK_ERRORS, INFINIBAND, NVSWITCH, FABRIC_MANAGER)  # fabric area

SECTIONS = tuple(f.name for f in FACTS)

__all__ = ["FACTS", "SECTIONS", "Fact"]
