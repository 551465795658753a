"""What every command does at its edges (fleet/commands/common.py): selection with Ansible's defaults, history
names from a pattern."""

from __future__ import annotations

import pytest
from invoke.exceptions import Exit

from fleet.commands.common import history_names, select
from fleet.config import AnsibleConfig, Config

INVENTORY = """all:
  children:
    gpu-nodes:
      hosts:
        n01: {ansible_host: 10.9.0.1}
        n02: {ansible_user: own}
    login:
      hosts:
        l01: {}
"""


@pytest.fixture
def config(tmp_path):
    (tmp_path / "hosts.yaml").write_text(INVENTORY)
    return Config(section={"inventory": str(tmp_path / "hosts.yaml")}, ansible=AnsibleConfig(remote_user="ops"),
                  env={}, cwd=tmp_path)


def test_history_names_resolve_a_pattern_through_the_inventory(config):
    assert history_names(config, None) is None
    assert history_names(config, "gpu-nodes") == ["n01", "n02"]
    assert history_names(config, "all:!login") == ["n01", "n02"]
    # not in the inventory (a host that left it, a glob of the history): the terms as names and globs
    assert history_names(config, "old-node,n0*") == ["old-node", "n0*"]


def test_history_names_without_an_inventory_are_names_and_globs(tmp_path):
    bare = Config(section={"inventory": str(tmp_path / "none.yaml")}, env={}, cwd=tmp_path)
    assert history_names(bare, "gpu-nodes,n1*") == ["gpu-nodes", "n1*"]


def test_select_fills_ansible_defaults_where_the_inventory_is_silent(config):
    path, hosts = select(config, "gpu-nodes", (), None)
    assert path.endswith("hosts.yaml")
    assert [(h.name, h.user) for h in hosts] == [("n01", "ops"), ("n02", "own")]
    _, hosts = select(config, "all", (), "bob")
    assert [(h.name, h.user) for h in hosts] == [("n01", "bob"), ("n02", "own"), ("l01", "bob")]


def test_select_names_the_inventory_origin_in_its_error(config, tmp_path):
    with pytest.raises(Exit) as e:
        select(config, "nosuch", (), None)
    assert e.value.code == 2
    assert e.value.message == (f"gpufleet: pattern term 'nosuch' matches no host or group (inventory "
                               f"{tmp_path / 'hosts.yaml'})")
