"""Host patterns select what ``ansible PATTERN --list-hosts`` selects (compared live; skipped without ansible-core).

The inventory here is synthetic (written for these tests, not published); the published ones are in
tests/test_inventory_corpus.py.  The one deliberate difference: a term matching nothing is an error here.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from fleet.inventory import PatternError, parse_inventory
from tests.test_inventory_corpus import CORPUS, ansible_env, needs_ansible

SYNTHETIC = """\
# synthetic test inventory
[h100]
gpu[01:04]
[a100]
gpu[05:06] ansible_port=2222
[login]
login1
[gpu:children]
h100
a100
[cpu]
gpu01
login1
"""

PATTERNS = [
    "all", "gpu", "h100:a100", "h100,a100", "gpu:!a100", "gpu:&cpu", "gpu,!gpu02,&h100", "!h100", "&gpu",
    "gpu0*", "~gpu0[2-5]", "~login", "gpu[0]", "gpu[-1]", "gpu[1:3]", "h100[2:]", "gpu[0],login", "login1:gpu06",
    "!gpu01,gpu", "*", "gpu0?", "h100:!~gpu0[12]", "gpu:!login*:&cpu",
]


def ansible_list_hosts(src: str, pattern: str) -> set[str]:
    done = subprocess.run([sys.executable, "-m", "ansible.cli.adhoc", pattern, "-i", src, "--list-hosts"],
                          capture_output=True, text=True, env=ansible_env(), timeout=120, check=True)
    return {line.strip() for line in done.stdout.splitlines()[1:] if line.strip()}


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    path = tmp_path_factory.mktemp("inv") / "synthetic.ini"
    path.write_text(SYNTHETIC)
    return path


@needs_ansible
@pytest.mark.parametrize("pattern", PATTERNS)
def test_pattern_selects_what_ansible_selects(synthetic, pattern):
    inv = parse_inventory(SYNTHETIC, str(synthetic))
    assert {h.name for h in inv.select(pattern)} == ansible_list_hosts(str(synthetic), pattern)


@needs_ansible
@pytest.mark.parametrize("pattern", ["slurm-node[0]:~virtual-m.*", "k8s_cluster:&slurm-cluster", "all:!etcd"])
def test_pattern_on_a_published_inventory(pattern):
    src = CORPUS / "deepops-virtual" / "virtual_inventory"
    from fleet.inventory import load_inventory

    assert {h.name for h in load_inventory(src).select(pattern)} == ansible_list_hosts(str(src), pattern)


@pytest.mark.parametrize("pattern", ["nosuch", "gpu,nosuch", "gpu,!nosuch", "~zzz", "gpu,&nosuch", "h100,!h100"])
def test_the_deliberate_difference_a_term_matching_nothing_is_an_error(pattern):
    with pytest.raises(PatternError):
        parse_inventory(SYNTHETIC, "synthetic.ini").select(pattern)


def test_results_keep_inventory_order():
    inv = parse_inventory(SYNTHETIC, "synthetic.ini")
    assert [h.name for h in inv.select("login1,gpu[0],a100")] == ["gpu01", "gpu05", "gpu06", "login1"]
