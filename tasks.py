"""gpufleet tasks: `invoke --list` shows them, `invoke --help TASK` explains each.

Tasks are thin: parse flags, call the library in fleet/, turn the outcome into an
exit code (0 all good, 1 a host failed or was unreachable, 2 usage or inventory error).
"""

from __future__ import annotations

from invoke import task

from fleet import audit_run, cli
from fleet.jsonio import write_json_atomic


@task(
    auto_shortflags=False,
    help={
        **cli.HELP_COMMON,
        "json": "also write the full report (schema gpufleet.audit/1) to this path",
    },
)
def audit(c, hosts="all", inventory=None, json=None, forks=32, timeout=120, connect_timeout=10,
          accept_new_host_keys=False):
    """Audit GPUs, driver, ECC, PCIe, throttling, XIDs and container toolkit on every selected host.

    One SSH round trip per host; each finding is checked against the host's
    inventory expectations (gpufleet_gpu_count, gpufleet_gpu_model,
    gpufleet_driver_min / gpufleet_driver_version, gpufleet_cuda_min).
    """
    cli.quiet_libraries()
    path, selected = cli.select(c, hosts, inventory)
    options = cli.ssh_options(forks, timeout, connect_timeout, accept_new_host_keys)
    result = audit_run.audit_hosts(selected, options)
    report = audit_run.build_report(result, path, hosts)
    cli.echo(audit_run.render_table(report))
    if json:
        write_json_atomic(json, report)
        cli.note(f"report written to {json}")
    code = audit_run.exit_code(report)
    if code:
        raise cli.Exit(code=code)
