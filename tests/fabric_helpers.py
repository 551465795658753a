"""Run fabric facts' gather commands for real (sh) over a recorded sysfs tree: the golden cases' section
outputs for InfiniBand and NVSwitches are what these commands print over the trees in tests/data/fabric."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from fleet.audit import split_sections
from fleet.audit.facts import Fact
from fleet.audit.script import gather_script
from fleet.framing import Section

DATA = Path(__file__).resolve().parent / "data" / "fabric"
SYSFS = DATA / "sysfs"


def run_facts(facts: list[Fact], sysfs: Path, shell: str = "sh", path: str | None = None) -> dict[str, Section]:
    """The sections ``facts`` produce on a host whose sysfs root is ``sysfs`` (``GPUFLEET_SYSFS``)."""
    script = gather_script(facts)
    env = {"PATH": path or "/usr/bin:/bin", "GPUFLEET_SYSFS": str(sysfs)}
    proc = subprocess.run([shutil.which(shell), "-c", script], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return split_sections(proc.stdout)
