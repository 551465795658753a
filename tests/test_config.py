"""One configuration for both entry points: invoke.yaml, Ansible's configuration, the environment, the defaults.

Pure tests of :mod:`fleet.config` (files written to a temporary directory, exact answers), then the two real
programs: ``gpufleet`` (``python -m fleet.cli``) and ``invoke`` run on a project holding an ``invoke.yaml``
must give the same answer, and a broken file is one line and exit 2 from both.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fleet.config import (AnsibleConfig, Config, ConfigError, DEFAULTS, PROJECT, check_project_file,
                          find_ansible_cfg, read_ansible_cfg)

REPO = Path(__file__).resolve().parents[1]


# -- invoke.yaml ----------------------------------------------------------------------------------------
def test_no_project_file_is_fine(tmp_path):
    assert check_project_file(tmp_path) is None


def test_a_good_project_file_is_found(tmp_path):
    (tmp_path / "invoke.yaml").write_text("gpufleet:\n  forks: 64\n  timeout: {verify: 3600}\n")
    assert check_project_file(tmp_path) == tmp_path / "invoke.yaml"


@pytest.mark.parametrize("text,message", [
    ("gpufleet:\n  inventory: [oops\n", "invoke.yaml:3: not valid YAML: expected ',' or ']', but got '<stream end>'"),
    ("gpufleet:\n  forks: 3\n\tbad: tab\n", "invoke.yaml:3: not valid YAML: found character '\\t' that cannot start "
                                            "any token"),
    ("- a\n- b\n", "invoke.yaml: expected a mapping of settings, got a YAML list"),
    ("gpufleet: 32\n", "invoke.yaml:1: gpufleet: expected a mapping of settings, got 32"),
    ("tasks:\n  dedupe: false\ngpufleet:\n  forsk: 3\n",
     "invoke.yaml:4: gpufleet.forsk: unknown setting; known: inventory, reports, history, forks, connect_timeout, "
     "timeout"),
    ("gpufleet:\n  timeout: 30\n", "invoke.yaml:2: gpufleet.timeout: expected a mapping of task to seconds "
                                   "(e.g. {verify: 3600}), got 30"),
])
def test_a_broken_project_file_names_file_and_line(tmp_path, text, message):
    (tmp_path / "invoke.yaml").write_text(text)
    with pytest.raises(ConfigError) as e:
        check_project_file(tmp_path)
    assert str(e.value) == f"{tmp_path}/{message}"


# -- Ansible's configuration ------------------------------------------------------------------------------
def test_ansible_cfg_found_as_ansible_finds_it(tmp_path):
    home, cwd = tmp_path / "home", tmp_path / "cwd"
    home.mkdir()
    cwd.mkdir(mode=0o755)
    cwd.chmod(0o755)
    assert find_ansible_cfg({}, cwd, home) in (None, Path("/etc/ansible/ansible.cfg"))
    (home / ".ansible.cfg").write_text("[defaults]\n")
    assert find_ansible_cfg({}, cwd, home) == home / ".ansible.cfg"
    (cwd / "ansible.cfg").write_text("[defaults]\n")
    assert find_ansible_cfg({}, cwd, home) == cwd / "ansible.cfg"
    cwd.chmod(0o777)  # Ansible ignores ansible.cfg in a world-writable directory
    assert find_ansible_cfg({}, cwd, home) == home / ".ansible.cfg"
    cwd.chmod(0o755)
    (tmp_path / "site.cfg").write_text("[defaults]\n")
    assert find_ansible_cfg({"ANSIBLE_CONFIG": str(tmp_path / "site.cfg")}, cwd, home) == tmp_path / "site.cfg"
    with pytest.raises(ConfigError, match=r"^\$ANSIBLE_CONFIG /nonexistent.cfg: no such file$"):
        find_ansible_cfg({"ANSIBLE_CONFIG": "/nonexistent.cfg"}, cwd, home)


def test_ansible_cfg_defaults_and_their_environment(tmp_path):
    cfg = tmp_path / "etc" / "ansible.cfg"
    cfg.parent.mkdir()
    cfg.write_text("[defaults]\n"
                   "inventory = hosts.ini, /abs/other.yml   ; two sources\n"
                   "remote_user = ops\n"
                   "private_key_file = keys/id_ed25519\n"
                   "forks = 50\n"
                   "timeout = 20\n"
                   "[ssh_connection]\npipelining = True\n")
    a = read_ansible_cfg(cfg, {}, tmp_path)
    assert a == AnsibleConfig(path=cfg, inventory=(str(cfg.parent / "hosts.ini"), "/abs/other.yml"),
                              remote_user="ops", private_key_file=str(cfg.parent / "keys/id_ed25519"), forks="50",
                              timeout="20", origin={k: str(cfg) for k in ("inventory", "remote_user",
                                                                          "private_key_file", "forks", "timeout")})
    env = {"ANSIBLE_INVENTORY": "env.yml", "ANSIBLE_REMOTE_USER": "root", "ANSIBLE_FORKS": "5"}
    b = read_ansible_cfg(cfg, env, tmp_path / "here")
    assert (b.inventory, b.remote_user, b.forks, b.timeout) == ((str(tmp_path / "here" / "env.yml"),), "root", "5",
                                                                "20")
    assert b.origin["inventory"] == "$ANSIBLE_INVENTORY" and b.origin["timeout"] == str(cfg)


def test_ansible_cfg_old_hostfile_name(tmp_path):
    cfg = tmp_path / "ansible.cfg"
    cfg.write_text("[defaults]\nhostfile = /etc/ansible/hosts\n")
    assert read_ansible_cfg(cfg, {}, tmp_path).inventory == ("/etc/ansible/hosts",)


def test_a_broken_ansible_cfg_is_one_line(tmp_path):
    cfg = tmp_path / "ansible.cfg"
    cfg.write_text("inventory = x\n")
    with pytest.raises(ConfigError) as e:
        read_ansible_cfg(cfg, {}, tmp_path)
    assert str(e.value).startswith(f"{cfg}:1: not a valid ansible.cfg: File contains no section headers.")
    assert "\n" not in str(e.value)


# -- precedence ---------------------------------------------------------------------------------------
def test_inventory_precedence(tmp_path):
    ansible = AnsibleConfig(inventory=("/ans/hosts",), origin={"inventory": "/ans/ansible.cfg"})
    base = Config(section={}, ansible=AnsibleConfig(), env={}, cwd=tmp_path)
    assert base.inventory_sources() == ([PROJECT / "inventory/hosts.yaml"], "the default")
    with_ansible = Config(section={}, ansible=ansible, env={}, cwd=tmp_path)
    assert with_ansible.inventory_sources() == ([Path("/ans/hosts")], "inventory in /ans/ansible.cfg")
    with_yaml = Config(section={"inventory": "conf.yaml"}, ansible=ansible, env={}, cwd=tmp_path)
    assert with_yaml.inventory_sources() == ([PROJECT / "conf.yaml"], "gpufleet.inventory in invoke.yaml")
    with_env = Config(section={"inventory": "conf.yaml"}, ansible=ansible, env={"GPUFLEET_INVENTORY": "e1,e2"},
                      cwd=tmp_path)
    assert with_env.inventory_sources() == ([tmp_path / "e1", tmp_path / "e2"], "$GPUFLEET_INVENTORY")
    assert with_env.inventory_sources(("f1,f2", "f3")) == ([tmp_path / "f1", tmp_path / "f2", tmp_path / "f3"],
                                                           "--inventory")


def test_settings_precedence(tmp_path):
    ansible = AnsibleConfig(forks="50", timeout="20")
    assert Config(ansible=AnsibleConfig()).setting("forks") == DEFAULTS["forks"] == 32
    assert Config(ansible=ansible).setting("forks") == "50"
    assert Config(ansible=ansible).setting("connect_timeout") == "20"
    assert Config(section={"forks": 64}, ansible=ansible).setting("forks") == 64
    assert Config(section={"timeout": {"verify": 3600}}).setting("timeout", "verify") == 3600
    assert Config(section={"timeout": {"verify": 3600}}).setting("timeout", "audit") == 120


def test_host_defaults_only_where_the_inventory_is_silent():
    from fleet.commands.common import with_defaults
    from fleet.inventory import Host

    cfg = Config(ansible=AnsibleConfig(remote_user="ops", private_key_file="/k/id"))
    assert cfg.host_defaults() == {"ansible_user": "ops", "ansible_private_key_file": "/k/id"}
    assert cfg.host_defaults("bob")["ansible_user"] == "bob"
    bare = with_defaults(Host("n1"), cfg.host_defaults())
    assert (bare.user, bare.key_file) == ("ops", "/k/id")
    own = with_defaults(Host("n2", {"ansible_ssh_user": "alice", "ansible_ssh_private_key_file": "/mine"}),
                        cfg.host_defaults("bob"))
    assert (own.user, own.key_file) == ("alice", "/mine")  # as in Ansible, the inventory's own user wins over -u


# -- the two programs ---------------------------------------------------------------------------------
def _project(tmp_path: Path, invoke_yaml: str | None) -> Path:
    """A project directory as a user has one: tasks.py (the package beside it on PYTHONPATH) and invoke.yaml."""
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(REPO / "tasks.py", project / "tasks.py")
    if invoke_yaml is not None:
        (project / "invoke.yaml").write_text(invoke_yaml)
    return project


def _run(entry: str, project: Path, args: list[str], tmp_path: Path, extra: dict | None = None
         ) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GPUFLEET_", "ANSIBLE_"))} | (extra or {})
    env["HOME"] = str(tmp_path / "home")
    env["PYTHONPATH"] = f"{project}{os.pathsep}{REPO}"
    if entry == "gpufleet":  # the console script: from anywhere, the project found through tasks.py
        argv, cwd = [sys.executable, "-m", "fleet.cli", *args], tmp_path
    else:  # invoke: from the project directory, where it finds tasks.py
        argv, cwd = [sys.executable, "-m", "invoke", *args], project
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


INVENTORY = "all:\n  children:\n    gpu-nodes:\n      hosts:\n        n01: {ansible_host: 10.9.0.1}\n        n02: {}\n"


@pytest.mark.parametrize("with_yaml", [True, False], ids=["invoke.yaml", "none"])
def test_gpufleet_and_invoke_give_the_same_answer(tmp_path, with_yaml):
    (tmp_path / "home").mkdir()
    inventory = tmp_path / "cluster.yaml"
    inventory.write_text(INVENTORY)
    project = _project(tmp_path, f"gpufleet:\n  inventory: {inventory}\n" if with_yaml else None)
    answers = {}
    for entry in ("gpufleet", "invoke"):
        r = _run(entry, project, ["hosts", "--hosts", "gpu-nodes"], tmp_path)
        answers[entry] = (r.returncode, r.stdout, r.stderr)
    assert answers["gpufleet"] == answers["invoke"]
    if with_yaml:
        assert answers["gpufleet"][0] == 0
        first = answers["gpufleet"][1].splitlines()[0]
        assert first == f"inventory: {inventory} (from gpufleet.inventory in invoke.yaml)"
        assert "n01   10.9.0.1" in answers["gpufleet"][1] and answers["gpufleet"][1].rstrip().endswith("2 hosts")
    else:
        assert answers["gpufleet"][0] == 0
        assert answers["gpufleet"][1].splitlines()[0] == (f"inventory: {REPO / 'inventory' / 'hosts.yaml'} "
                                                          f"(from the default)")


@pytest.mark.parametrize("task", ["hosts", "audit", "verify", "push", "provision", "history", "report x",
                                  "slurm-sync x"])
def test_a_broken_invoke_yaml_is_exit_2_from_both(tmp_path, task):
    (tmp_path / "home").mkdir()
    project = _project(tmp_path, "gpufleet:\n  inventory: [oops\n")
    for entry in ("gpufleet", "invoke"):
        r = _run(entry, project, task.split(), tmp_path)
        assert r.returncode == 2, (entry, r.stdout, r.stderr)
        assert r.stderr == (f"gpufleet: {project}/invoke.yaml:3: not valid YAML: expected ',' or ']', but got "
                            f"'<stream end>'\n"), entry
        assert r.stdout == ""


def test_ansible_cfg_and_dash_i_from_the_console(tmp_path):
    (tmp_path / "home").mkdir()
    (tmp_path / "a.yaml").write_text(INVENTORY)
    (tmp_path / "b.ini").write_text("[gpu-nodes]\nn03 ansible_user=own\n")
    (tmp_path / "ansible.cfg").write_text("[defaults]\ninventory = a.yaml\nremote_user = ops\n")
    project = _project(tmp_path, None)
    r = _run("gpufleet", project, ["hosts", "-l", "gpu-nodes"], tmp_path,
             {"ANSIBLE_CONFIG": str(tmp_path / "ansible.cfg")})
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == f"inventory: {tmp_path / 'a.yaml'} (from inventory in {tmp_path / 'ansible.cfg'})"
    assert lines[2].split() == ["n01", "10.9.0.1", "-", "ops", "gpu-nodes"]
    r = _run("gpufleet", project, ["hosts", "-i", str(tmp_path / "a.yaml"), "-i", str(tmp_path / "b.ini"),
                                   "--limit", "gpu-nodes", "-u", "bob"], tmp_path)
    assert r.returncode == 0, r.stderr
    rows = [line.split() for line in r.stdout.splitlines()[2:5]]
    assert rows == [["n01", "10.9.0.1", "-", "bob", "gpu-nodes"], ["n02", "n02", "-", "bob", "gpu-nodes"],
                    ["n03", "n03", "-", "own", "gpu-nodes"]]
