"""``slurm-sync``: drain the nodes a verify run failed, resume the ones gpufleet drained that pass again.

The plan is :mod:`fleet.slurm.sync`'s, from the run's verdict (read, never re-decided); applied only with
``--apply``.  Slurm that cannot be asked (no controller, scontrol missing) is a usage error: one line, exit 2,
as for ``verify --via slurm``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from fleet.commands import Outcome, common
from fleet.config import Config
from fleet.options import usage_error


@dataclass(frozen=True)
class SyncSettings:
    run_dir: str
    apply: bool
    max_drain: str
    resume_after: int
    slurm_host: Optional[str]
    inventory: tuple
    db: Optional[Path]


def run(config: Config, s: SyncSettings) -> Outcome:
    from fleet.slurm.apply import sync
    from fleet.slurm.client import SlurmError
    from fleet.slurm.nodes import node_of

    hosts = common.inventory_hosts(config, s.inventory)
    node_names = {name: node_of(name, h.vars) for name, h in hosts.items()}
    try:
        with slurm_client(config, s.slurm_host, hosts) as client:
            text, doc, code = sync(s.run_dir, client, node_names, s.db, s.apply, s.max_drain, s.resume_after)
    except (FileNotFoundError, ValueError) as e:
        raise usage_error(str(e)) from None
    except SlurmError as e:
        raise usage_error(f"slurm-sync: {one_line(e)}") from None
    return Outcome(text, doc, code)


def one_line(error: Exception) -> str:
    """An error's first non-empty line (scontrol's own errors run over several)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


def slurm_client(config: Config, slurm_host: Optional[str], hosts: dict):
    """A :class:`fleet.slurm.client.SlurmClient` running here, or over SSH on ``slurm_host`` (an inventory host,
    with its connection variables, or an ssh name), as a context manager."""
    from contextlib import contextmanager

    from fleet.inventory import Host
    from fleet.options import ssh_options
    from fleet.outcome import HostError
    from fleet.slurm.client import SlurmClient, SlurmError, ssh_runner
    from fleet.transport import connect

    @contextmanager
    def opened():
        if not slurm_host:
            yield SlurmClient()
            return
        host = hosts.get(slurm_host) or Host(slurm_host)
        try:
            transport = connect(host, ssh_options(config, "verify", None, None, None, False))
        except HostError as e:
            raise SlurmError(f"--slurm-host {slurm_host}: {e}") from None
        try:
            yield SlurmClient(ssh_runner(transport))
        finally:
            transport.close()

    return opened()
