"""Published inventories (tests/data/inventories, see its SOURCES.md) load as ``ansible-inventory --list`` loads them.

For every case: the same hosts, the same non-empty groups (members directly or through children), the same
merged variables per host, and the same connection settings read from them.  The reference is produced live
by ansible-core (a test-only dependency: ``pip install -e '.[test]'``); without it these tests are skipped.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fleet.inventory import Host, load_inventory

CORPUS = Path(__file__).resolve().parent / "data" / "inventories"

# case directory -> its entry (as SOURCES.md lists it); several comma-separated sources are layered.
CASES = {
    "deepops-virtual": "virtual_inventory",
    "deepops-virtual-full": "virtual_inventory_full",
    "deepops-virtual-large-slurm": "virtual_inventory_large_slurm",
    "deepops-config-example": "inventory",
    "kubespray-sample": "inventory.ini",
    "kubespray-local": "hosts.ini",
    "kubespray-image-builder": "hosts.ini",
    "superbench-hosts": "hosts.ini",
    "nvidia-driver-role-tests": "inventory",
    "omnia-host-inventory": "host_inventory_file",
    "omnia-server-spec": "server_spec_inv",
    "omnia-nfs-server": "nfs_server_inventory_file",
    "omnia-k8s-upgrade": "inventory.yml",
    "omnia-test": "omnia_inventory",
    "omnia-ldap-test": "ldap_inventory",
    "omnia-telemetry-k8s": "k8s_inv.ini",
    "omnia-accelerator-test": "inventory.txt",
    "ansible-complex-ini": "complex.ini",
    "ansible-valid-sample-yaml": "valid_sample.yml",
    "ansible-unicode-yaml": "unicode.yml",
    "ansible-var-blending": "inventory",
    "ansible-var-precedence": "inventory",
    "ansible-delegate-to": "inventory",
    "ansible-throttle": "inventory",
    "ansible-order": "inventory",
    "ansible-inventory-ini": "inventory.ini",
    "ansible-become-unprivileged": "inventory",
    "stackhpc-slurm-caas": "common/inventory,.caas/inventory",
}

HAVE_ANSIBLE = importlib.util.find_spec("ansible") is not None
needs_ansible = pytest.mark.skipif(not HAVE_ANSIBLE, reason="ansible-core is not installed (pip install ansible-core)")


def sources(case: str) -> list[str]:
    return [str(CORPUS / case / part) for part in CASES[case].split(",")]


def ansible_env() -> dict:
    return {**os.environ, "ANSIBLE_INVENTORY_UNPARSED_WARNING": "False", "ANSIBLE_LOCALHOST_WARNING": "False",
            "ANSIBLE_NOCOLOR": "1", "ANSIBLE_HOME": str(Path(os.environ.get("TMPDIR", "/tmp")) / "gpufleet-ansible")}


def ansible_inventory(srcs: list[str]) -> dict:
    args = [sys.executable, "-m", "ansible.cli.inventory", "--list"]
    for s in srcs:
        args += ["-i", s]
    done = subprocess.run(args, capture_output=True, text=True, env=ansible_env(), timeout=120, check=True)
    return json.loads(done.stdout)


def reference_view(listing: dict) -> tuple[list[str], dict[str, list[str]], dict[str, dict]]:
    hostvars = listing.get("_meta", {}).get("hostvars", {})
    groups = {g: b for g, b in listing.items() if g != "_meta"}

    def members(g: str, trail: tuple = ()) -> set:
        body = groups.get(g, {})
        out = set(body.get("hosts", []))
        for child in body.get("children", []):
            if child not in trail:
                out |= members(child, (*trail, g))
        return out

    hosts = set(hostvars)
    for body in groups.values():
        hosts |= set(body.get("hosts", []))
    view = {g: sorted(members(g)) for g in groups if g != "all"}
    return sorted(hosts), {g: m for g, m in view.items() if m}, {h: hostvars.get(h, {}) for h in hosts}


CONNECTION = ("address", "port", "user", "key_file", "password", "become_password", "ssh_args", "connection",
              "is_local", "become", "python", "problem")


def test_the_corpus_is_what_sources_md_lists():
    listed = (CORPUS / "SOURCES.md").read_text()
    on_disk = sorted(p.name for p in CORPUS.iterdir() if p.is_dir())
    assert on_disk == sorted(CASES)
    for case, entry in CASES.items():
        assert f"| {case} | `{entry}` |" in listed, case
    assert len(CASES) >= 20


@needs_ansible
@pytest.mark.parametrize("case", sorted(CASES))
def test_published_inventory_loads_as_ansible_inventory_list(case):
    ref_hosts, ref_groups, ref_vars = reference_view(ansible_inventory(sources(case)))
    inv = load_inventory(sources(case), require_hosts=False)
    assert sorted(inv.hosts) == ref_hosts
    assert {g: sorted(m) for g, m in inv.groups.items() if g != "all" and m} == ref_groups
    for name in ref_hosts:
        mine = inv.hosts[name]
        assert json.loads(json.dumps(mine.vars, default=str)) == ref_vars[name], name
        theirs = Host(name, ref_vars[name])
        assert {k: getattr(mine, k) for k in CONNECTION} == {k: getattr(theirs, k) for k in CONNECTION}, name
        assert sorted(mine.groups) == sorted(g for g, m in ref_groups.items() if name in m), name


def test_what_gpufleet_cannot_honour_is_the_hosts_problem_not_the_inventorys():
    inv = load_inventory(sources("ansible-delegate-to"))
    problems = {h.name: h.problem for h in inv.hosts.values() if h.problem}
    assert sorted(problems) == ["testhost5", "testhost6", "testhost7"]
    assert "fakelocal" in problems["testhost5"] and "Jinja template" in problems["testhost6"]
    assert inv.hosts["testhost3"].address == "127.0.0.3" and inv.hosts["testhost3"].problem is None


def test_alias_variables_and_ranges_from_published_inventories():
    builder = load_inventory(sources("kubespray-image-builder")).hosts["image-builder-1"]
    assert builder.address == "xxx.xxx.xxx.xxx"  # ansible_ssh_host
    vagrant = load_inventory(sources("superbench-hosts"))
    assert list(vagrant.hosts) == ["192.168.0.100", "192.168.0.101", "192.168.0.102"]
    assert vagrant.hosts["192.168.0.101"].user == "vagrant"
    assert vagrant.hosts["192.168.0.101"].key_file == "vagrant.key"
