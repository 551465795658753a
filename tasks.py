"""gpufleet tasks: `invoke --list` shows them, `invoke --help TASK` explains each.

Tasks are thin: parse flags, call the library in fleet/, turn the outcome into an
exit code (0 all good, 1 a host failed or was unreachable, 2 usage or inventory error).
"""

from __future__ import annotations

from invoke import task

from fleet import audit_run, cli, push as push_lib, verify_run
from fleet.fanout import run_fleet
from fleet.run_dir import load_run, write_summary
from fleet.summary_render import render_table
from fleet.verdict import exit_code as verdict_exit_code, summarize
from provision import run as provision_run
from provision.secrets import become_password
from provision.settings import DEFAULT_SMOKE_IMAGE, Overrides, SettingsError


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
    cli.finish(audit_run.render_table(report), report, json, audit_run.exit_code(report))


@task(auto_shortflags=False, help={**cli.HELP_COMMON, "wheelhouse": cli.HELP_WHEELHOUSE})
def push(c, hosts="all", inventory=None, wheelhouse=None, forks=32, timeout=600, connect_timeout=10,
         accept_new_host_keys=False):
    """Install the node-side verify/ package on every selected host (once per content hash).

    Builds a wheel of verify/, uploads it over SFTP to gpufleet_remote_dir
    (default ~/.cache/gpufleet) and installs it into a virtual environment made
    with --system-site-packages from the node's Python (ansible_python_interpreter),
    so the node's own torch is used.  Unchanged code uploads nothing.  Reports
    which torch / torchvision each node can import.
    """
    cli.quiet_libraries()
    _, selected = cli.select(c, hosts, inventory)
    options = cli.ssh_options(forks, timeout, connect_timeout, accept_new_host_keys)
    artifact = push_lib.build_wheel()
    house = cli.wheelhouse(wheelhouse)
    cli.note(f"verify wheel {artifact.filename} (content {artifact.digest})")
    result = run_fleet(selected, lambda t: push_lib.push(t, artifact, deep=True, wheelhouse=house), options, desc="push")
    cli.echo(push_lib.render_table(result))
    if result.failed:
        raise cli.Exit(code=1)


@task(
    auto_shortflags=False,
    help={
        **cli.HELP_COMMON,
        "profile": "quick (default; about a minute) or full (larger sizes, longer sweeps)",
        "nproc": "ranks per host: auto (one per GPU; 1 on a host without) or a number",
        "timeout": "seconds verify may run on a host before it is stopped (default 1800)",
        "out": "directory under which the run directory <UTC timestamp>/ is made (default reports)",
        "force": "benchmark GPUs even when other compute processes are using them",
        "multinode": "one torchrun per host joined by c10d rendezvous on the first host: all_reduce across nodes",
        "rdzv_port": "rendezvous port on the first host for --multinode (default 29400)",
        "checks": "comma-separated verify stages (collectives, ddp, compute, memory, inference, pipeline) or all",
        "wheelhouse": cli.HELP_WHEELHOUSE,
    },
)
def verify(c, hosts="all", inventory=None, profile="quick", nproc="auto", timeout=1800, out="reports",
           force=False, multinode=False, rdzv_port=verify_run.DEFAULT_RDZV_PORT, checks="all", wheelhouse=None,
           forks=32, connect_timeout=10, accept_new_host_keys=False):
    """Push verify/, run it under torchrun on every selected host, pull the reports and judge the fleet.

    Writes reports/<UTC timestamp>/ (hosts/<host>.json, logs/, summary.json,
    summary.md) and prints the fleet table: per-host status and key figures with
    their ratio to the fleet median of the same GPU model, and stragglers.
    Exit 0 when every host passes, 1 when any fails, is unreachable or is a
    straggler, 2 for a usage error.
    """
    cli.quiet_libraries()
    if profile not in ("quick", "full"):
        raise cli.usage_error(f"--profile must be quick or full, got {profile!r}")
    if str(nproc) != "auto" and not (str(nproc).isdigit() and int(nproc) > 0):
        raise cli.usage_error(f"--nproc must be auto or a positive number, got {nproc!r}")
    _, selected = cli.select(c, hosts, inventory)
    options = cli.ssh_options(forks, timeout, connect_timeout, accept_new_host_keys)
    settings = verify_run.VerifySettings(profile=profile, nproc=str(nproc), timeout=float(timeout), force=force,
                                         multinode=multinode, rdzv_port=int(rdzv_port),
                                         extra_args=() if checks == "all" else ("--checks", str(checks)),
                                         wheelhouse=cli.wheelhouse(wheelhouse))
    run_dir, summary = verify_run.verify_fleet(selected, settings, options, out_base=out, pattern=hosts)
    cli.echo(render_table(summary))
    cli.echo(f"\nrun directory: {run_dir}  (summary.md, summary.json, hosts/, logs/)")
    code = verdict_exit_code(summary)
    if code:
        raise cli.Exit(code=code)


@task(auto_shortflags=False, help={"run_dir": "a run directory written by `invoke verify`"})
def report(c, run_dir):
    """Re-render a verify run's fleet verdict (table, summary.json, summary.md) from its directory."""
    try:
        runs, meta = load_run(run_dir)
    except (FileNotFoundError, ValueError) as e:
        raise cli.usage_error(str(e)) from None
    summary = summarize(runs, meta.get("run_id"), meta.get("started"), meta.get("finished"))
    write_summary(run_dir, summary)
    cli.echo(render_table(summary))
    code = verdict_exit_code(summary)
    if code:
        raise cli.Exit(code=code)


@task(
    auto_shortflags=False,
    help={
        **cli.HELP_COMMON,
        "check": "dry run: print per host the commands it would run; change nothing",
        "version": "pin nvidia-container-toolkit (and its three companion packages) to this version, e.g. 1.17.8-1",
        "repo_url": "repository base URL, e.g. an internal mirror of https://nvidia.github.io/libnvidia-container/stable",
        "key_url": "the repository's signing key URL (default NVIDIA's gpgkey)",
        "containerd": "also configure containerd's nvidia runtime (docker is always configured when present)",
        "smoke_test": "after installing, run `docker run --rm --gpus all IMAGE nvidia-smi` where docker is present",
        "smoke_image": f"image for --smoke-test (default {DEFAULT_SMOKE_IMAGE})",
        "json": "also write the full report (schema gpufleet.provision/1) to this path",
    },
)
def provision(c, hosts="all", inventory=None, check=False, version=None, repo_url=None, key_url=None,
              containerd=False, smoke_test=False, smoke_image=None, forks=32, timeout=900, connect_timeout=10,
              accept_new_host_keys=False, json=None):
    """Install and configure nvidia-container-toolkit, idempotently (README: invoke provision).

    Per host: repository and signing key, the package, `nvidia-ctk runtime configure` for
    docker (and containerd), a runtime restart only when its configuration changed, then
    validation and the audit's toolkit check.  Inventory variables gpufleet_toolkit_repo_url,
    gpufleet_toolkit_key_url, gpufleet_toolkit_version, gpufleet_toolkit_runtimes; options win.
    With ansible_become the sudo password comes from $GPUFLEET_BECOME_PASSWORD or one prompt.
    """
    cli.quiet_libraries()
    try:
        overrides = Overrides(repo_url, key_url, version, bool(containerd), bool(smoke_test), smoke_image).validated()
    except SettingsError as e:
        raise cli.usage_error(str(e)) from None
    path, selected = cli.select(c, hosts, inventory)
    options = cli.ssh_options(forks, timeout, connect_timeout, accept_new_host_keys)
    options.sudo_password = become_password(selected)
    result = provision_run.provision_hosts(selected, overrides, options, check=bool(check))
    audit = provision_run.audit_toolkit(result, options)
    report = provision_run.build_report(result, path, hosts, bool(check), audit, options.sudo_password)
    cli.finish(provision_run.render(report), report, json, provision_run.exit_code(report))
