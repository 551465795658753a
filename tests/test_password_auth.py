"""Password authentication (ansible_password / ansible_ssh_pass) against an sshd that accepts passwords.

The host's sshd checks a shadow file of its own, bind-mounted over /etc/shadow in a private
mount namespace (tests/sshd.py); it authorises no key, so only the password logs in.  The
password must appear in no output, report or log.  Needs root (unshare --mount).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from fleet.audit.run import audit_hosts
from fleet.inventory import Host
from fleet.outcome import HostState
from provision.secrets import Scrubber, become_password, needs_become
from tests.sshd import REPO, invoke_env

SECRET = "Ssh-Pw-4b9e1d"
WRONG = "Wrong-Pw-77c2aa"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="password test hosts need root (unshare --mount)")


@pytest.fixture(scope="module")
def pw_farm(farm):
    farm.add_host("pw-node", password=SECRET, authorized=False)
    return farm


def password_vars(farm, name: str, **extra) -> dict:
    v = {k: val for k, val in farm.hosts[name].vars.items() if k != "ansible_ssh_private_key_file"}
    return {**v, **extra}


def test_password_logs_in_and_a_wrong_one_is_auth_failed(pw_farm):
    farm = pw_farm
    good = Host("pw-node", password_vars(farm, "pw-node", ansible_password=SECRET))
    alias = Host("pw-alias", password_vars(farm, "pw-node", ansible_ssh_pass=SECRET))
    bad = Host("pw-wrong", password_vars(farm, "pw-node", ansible_password=WRONG))
    nokey = Host("pw-none", password_vars(farm, "pw-node"))
    result = audit_hosts([good, alias, bad, nokey], farm.options())
    assert result["pw-node"].state is HostState.OK, result["pw-node"].message
    assert result["pw-alias"].state is HostState.OK, result["pw-alias"].message
    assert result["pw-wrong"].state is HostState.AUTH_FAILED
    assert result["pw-none"].state is HostState.AUTH_FAILED  # the key is not authorised: the password did it
    for r in result:
        assert SECRET not in r.message and WRONG not in r.message
        assert SECRET not in repr(r.value) and WRONG not in repr(r.value)


def test_password_appears_in_no_output_report_or_log(pw_farm, tmp_path):
    farm = pw_farm
    good = password_vars(farm, "pw-node", ansible_password=SECRET)
    bad = password_vars(farm, "pw-node", ansible_ssh_pass=WRONG)
    inv = tmp_path / "inv.yaml"
    import yaml

    inv.write_text(yaml.safe_dump({"all": {"children": {"gpu-nodes": {"hosts": {"pw-node": good,
                                                                                   "pw-wrong": bad}}}}}))
    home = tmp_path / "home"
    env = invoke_env(farm, home)
    out = tmp_path / "audit.json"
    p = subprocess.run([sys.executable, "-m", "fleet.cli", "audit", "--hosts", "all", "--inventory", str(inv),
                        "--json", str(out)], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    raw = out.read_text()
    report = json.loads(raw)
    assert report["hosts"]["pw-node"]["state"] == "ok", p.stdout + p.stderr
    assert report["hosts"]["pw-wrong"]["state"] == "auth_failed"
    assert "authentication failed" in report["hosts"]["pw-wrong"]["message"].lower()
    logs = [f for f in tmp_path.rglob("*") if f.is_file() and f != inv]
    logs += [f for f in farm.root.rglob("*.log")]
    for text in [p.stdout, p.stderr, raw] + [f.read_text(errors="replace") for f in logs]:
        assert SECRET not in text and WRONG not in text


def test_a_hosts_own_become_password_is_used_and_never_prompted_for():
    own = Host("n1", {"ansible_user": "ops", "ansible_become": True, "ansible_become_password": "Own-Become-1"})
    sudo_pass = Host("n2", {"ansible_user": "ops", "ansible_become": True, "ansible_sudo_pass": "Own-Become-2"})
    other = Host("n3", {"ansible_user": "ops", "ansible_become": True})
    asked = []
    assert not needs_become([own, sudo_pass])
    assert become_password([own, sudo_pass], environ={}, prompt=asked.append, interactive=True) is None
    assert not asked
    assert needs_become([own, other])
    scrub = Scrubber([None, "global-pw", "Own-Become-1", SECRET])
    assert scrub({"m": f"x global-pw Own-Become-1 {SECRET}"}) == {"m": "x ******** ******** ********"}
    assert Scrubber("global-pw").text("a global-pw") == "a ********"
