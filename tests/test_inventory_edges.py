"""Inventory edges against ``ansible-inventory --list`` (ansible-core, a test-only dependency), and what gpufleet
decides where Ansible's answer would not serve a health check: ``ansible_group_priority``, masking in
``gpufleet hosts --json``, a pattern whose terms all match but that selects no host."""

from __future__ import annotations

import json

import pytest

from fleet.inventory import InventoryError, PatternError, load_inventory, parse_inventory
from fleet.inventory.listing import MASK, hosts_document, is_secret
from tests.test_inventory_corpus import ansible_inventory, needs_ansible

PRIORITY_INI = ("[a_group]\nfoohost\n[b_group]\nfoohost\n"
                "[a_group:vars]\ntestvar=a\nansible_group_priority=10\n[b_group:vars]\ntestvar=b\n")
PRIORITY_YAML = ("all:\n  children:\n    a_group:\n      hosts: {foohost: {}}\n"
                 "      vars: {testvar: a, ansible_group_priority: 10}\n"
                 "    b_group:\n      hosts: {foohost: {}}\n      vars: {testvar: b}\n")


@pytest.mark.parametrize("name,text", [("hosts.ini", PRIORITY_INI), ("hosts.yml", PRIORITY_YAML)])
def test_group_priority_orders_the_groups_and_is_no_variable(tmp_path, name, text):
    (tmp_path / name).write_text(text)
    assert load_inventory(tmp_path / name).hosts["foohost"].vars == {"testvar": "a"}


@needs_ansible
@pytest.mark.parametrize("name,text", [("hosts.ini", PRIORITY_INI), ("hosts.yml", PRIORITY_YAML)])
def test_group_priority_as_ansible_inventory_list(tmp_path, name, text):
    (tmp_path / name).write_text(text)
    theirs = ansible_inventory([str(tmp_path / name)])["_meta"]["hostvars"]["foohost"]
    assert load_inventory(tmp_path / name).hosts["foohost"].vars == theirs == {"testvar": "a"}


def group_vars_case(tmp_path):
    (tmp_path / "hosts.ini").write_text("[a_group]\nfoohost\n[b_group]\nfoohost\n")
    (tmp_path / "group_vars").mkdir()
    (tmp_path / "group_vars" / "a_group.yml").write_text("testvar: a\nansible_group_priority: 10\n")
    (tmp_path / "group_vars" / "b_group.yml").write_text("testvar: b\n")
    return tmp_path / "hosts.ini"


def test_group_priority_in_group_vars_files_stays_a_variable_and_orders_nothing(tmp_path):
    assert load_inventory(group_vars_case(tmp_path)).hosts["foohost"].vars == {
        "testvar": "b", "ansible_group_priority": 10}


@needs_ansible
def test_group_priority_in_group_vars_files_as_ansible_inventory_list(tmp_path):
    inv = group_vars_case(tmp_path)
    theirs = ansible_inventory([str(inv)])["_meta"]["hostvars"]["foohost"]
    assert load_inventory(inv).hosts["foohost"].vars == theirs


def test_a_group_priority_that_is_no_number_names_the_group():
    with pytest.raises(InventoryError) as e:
        parse_inventory("[g]\nh\n[g:vars]\nansible_group_priority=high\n", "x.ini")
    assert str(e.value) == "x.ini: [g.ansible_group_priority] ansible_group_priority must be a whole number, got 'high'"


MASKING = """\
all:
  hosts:
    n1:
      ansible_password: p
      ansible_ssh_pass: 123456
      ansible_become_pass: q
      api_token: t
      client_secret: s
      registry_password: r
      db: {secret_key: s, name: x, password_min_length: 12}
      join_tokens: [t1, t2]
      tls_private: "-----BEGIN OPENSSH PRIVATE KEY-----\\nb3Bl\\n-----END OPENSSH PRIVATE KEY-----"
      kube_webhook_token_auth: false
      kolla_enable_keystone: "yes"
      token_ttl: 24h
      secret_name: registry-cred
      ssh_public_key: ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB1 ops@site
      deploy_key: ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ ops@site
      ansible_ssh_private_key_file: ~/.ssh/id
      tls_key: /etc/pki/tls/private/node.key
      grafana_admin_password: "{{ vault_grafana_admin_password }}"
      vault_pass_enabled: true
      port_key: 7
"""


def test_hosts_document_masks_secrets_and_nothing_else():
    hosts = parse_inventory(MASKING, "x.yaml").select("all")
    v = hosts_document(["x.yaml"], "all", hosts)["hosts"]["n1"]["vars"]
    assert v == {
        "ansible_password": MASK, "ansible_ssh_pass": MASK, "ansible_become_pass": MASK,
        "api_token": MASK, "client_secret": MASK, "registry_password": MASK,
        "db": {"secret_key": MASK, "name": "x", "password_min_length": 12},
        "join_tokens": [MASK, MASK], "tls_private": MASK,
        "kube_webhook_token_auth": False, "kolla_enable_keystone": "yes", "token_ttl": "24h",
        "secret_name": "registry-cred", "ssh_public_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB1 ops@site",
        "deploy_key": "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ ops@site",
        "ansible_ssh_private_key_file": "~/.ssh/id", "tls_key": "/etc/pki/tls/private/node.key",
        "grafana_admin_password": "{{ vault_grafana_admin_password }}", "vault_pass_enabled": True,
        "port_key": 7,
    }
    text = json.dumps(v)
    for secret in ('"p"', "123456", '"q"', '"t"', '"s"', '"r"', "t1", "b3Bl"):
        assert secret not in text


def test_secret_rule_in_pieces():
    assert is_secret("db_password", "x") and is_secret("OS_PASSWORD", "x") and is_secret("apikey", "x")
    assert not is_secret("db_password", "") and not is_secret("db_password", None)
    assert not is_secret("id_rsa_pub_key", "AAAAB3Nza") and not is_secret("kube_token_auth", True)


def test_empty_intersection_is_refused_with_the_reason():
    inv = parse_inventory("[control]\nc1\n[compute]\nn1\nn2\n", "x.ini")
    with pytest.raises(PatternError) as e:
        inv.select("control:&compute")
    assert str(e.value) == (
        "pattern 'control:&compute' selects no host: each term matches, but no host is in 'control' and "
        "'compute' at once (Ansible warns 'No hosts matched' and exits 0; gpufleet refuses, so that a check of no "
        "host never passes)")
    with pytest.raises(PatternError) as e:
        inv.select("compute:!n1:!n2")
    assert str(e.value) == (
        "pattern 'compute:!n1:!n2' selects no host: each term matches, but the exclusions (!n1, !n2) leave no "
        "host (Ansible warns 'No hosts matched' and exits 0; gpufleet refuses, so that a check of no host never "
        "passes)")
    assert [h.name for h in inv.select("all:&compute:!n1")] == ["n2"]
