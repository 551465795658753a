"""Provisioning logic without a host: facts parsing, family detection, plans for apt, dnf, yum and zypper
(on recorded fact-script output), settings, versions, validation, the password's handling, the engine."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess

import pytest

from fleet.fanout import TaskFailed
from fleet.inventory import Host
from fleet.status import Status
from fleet.transport import CommandResult, SshOptions
from provision import facts as F
from provision import steps as S
from provision import validate as V
from provision.apply import Provisioner, sh
from provision.run import build_report, render
from provision.secrets import ENV, Scrubber, become_password, needs_become
from provision.settings import (DEFAULT_KEY_URL, DEFAULT_REPO_URL, Overrides, Settings, SettingsError, redact_url,
                                resolve)
from tests.provision_helpers import OS_RELEASE, RPM_TOOLS, FakeTransport, frame, recorded

MIRROR = Settings(repo_url="https://mirror.example/libnvidia-container/stable",
                  key_url="https://mirror.example/libnvidia-container/gpgkey")
APT_TOOLS = ["apt-get", "dpkg-query", "curl", "gpg", "base64", "systemctl", "docker"]
ALL4 = {p: "1.17.8-1" for p in F.PACKAGES}
DOCKER_NVIDIA = json.dumps({"runtimes": {"nvidia": {"args": [], "path": "nvidia-container-runtime"}}}, indent=4)


def facts(*a, **kw) -> F.ProvisionFacts:
    return F.parse_facts(recorded(*a, **kw))


def shells(plan: S.Plan) -> list[str]:
    return [c.shell for c in plan.commands]


# ---------------------------------------------------------------- family detection


@pytest.mark.parametrize("os_name,tools,family", [
    ("debian12", ["apt-get", "dpkg-query"], "apt"),
    ("ubuntu2204", ["apt-get", "dpkg-query"], "apt"),
    ("pop2204", ["apt-get", "dpkg-query"], "apt"),  # a derivative, by ID_LIKE
    ("rocky9", ["dnf", "yum", "rpm"], "dnf"),
    ("alma8", ["dnf", "rpm"], "dnf"),
    ("rhel9", ["dnf", "rpm"], "dnf"),
    ("fedora40", ["dnf", "rpm"], "dnf"),
    ("amzn2023", ["dnf", "rpm"], "dnf"),
    ("centos7", ["yum", "rpm"], "yum"),  # no dnf: yum
    ("sles15", ["zypper", "rpm"], "zypper"),
    ("leap15", ["zypper", "rpm"], "zypper"),
])
def test_family_from_os_release(os_name, tools, family):
    from fleet.audit.facts.osrelease import parse_os_release
    assert F.detect_family(parse_os_release(OS_RELEASE[os_name]), set(tools)) == (family, None)


@pytest.mark.parametrize("os_name", ["arch", "alpine"])
def test_unsupported_distribution_is_named(os_name):
    f = facts(os_name, ["curl"])
    assert f.family is None
    assert "unsupported distribution" in f.family_error and "apt" in f.family_error and "zypper" in f.family_error


def test_family_needs_its_package_manager():
    from fleet.audit.facts.osrelease import parse_os_release
    fam, err = F.detect_family(parse_os_release(OS_RELEASE["rocky9"]), {"rpm"})
    assert fam is None and "neither dnf nor yum" in err
    assert F.detect_family({}, set())[1].startswith("cannot tell the distribution")


def test_unsupported_host_fails_before_any_change():
    t = FakeTransport(recorded("arch", ["curl"]))
    with pytest.raises(TaskFailed) as e:
        Provisioner(t, Settings()).run()
    assert "unsupported distribution 'Arch Linux'" in str(e.value)
    assert len(t.ran) == 1  # the read-only fact script, nothing else
    assert e.value.partial["status"] == "failed"


# ---------------------------------------------------------------- the fact script, really run


@pytest.mark.parametrize("shell", ["sh", "dash"])
def test_fact_script_runs_and_parses_here(shell, tmp_path):
    if not shutil.which(shell):
        pytest.skip(f"{shell} not installed")
    gnupg = tmp_path / "g"
    gnupg.mkdir(mode=0o700)
    subprocess.run(["gpg", "--batch", "--homedir", str(gnupg), "--passphrase", "", "--quick-gen-key",
                    "t <t@example.invalid>", "ed25519", "sign", "never"], check=True, capture_output=True)
    armored = subprocess.run(["gpg", "--batch", "--homedir", str(gnupg), "--armor", "--export"], check=True,
                             capture_output=True).stdout
    binary = subprocess.run(["gpg", "--batch", "--homedir", str(gnupg), "--export"], check=True,
                            capture_output=True).stdout
    subprocess.run(["gpgconf", "--homedir", str(gnupg), "--kill", "gpg-agent"], capture_output=True)
    (tmp_path / "gpgkey").write_bytes(armored)
    r = subprocess.run([shell, "-c", F.fact_script(f"file://{tmp_path}/gpgkey")], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    f = F.parse_facts(r.stdout)
    assert f.uid is not None and f.os.get("id") and f.arch
    assert {"curl", "gpg"} <= f.tools
    if f.family == "apt":  # this machine (Debian): the key was fetched and dearmored exactly as gpg does
        assert f.key == binary and f.key_error is None
    r2 = subprocess.run([shell, "-c", F.fact_script("file:///nonexistent/gpgkey")], capture_output=True, text=True)
    f2 = F.parse_facts(r2.stdout)
    if f2.family == "apt":
        assert f2.key is None and f2.key_error


def test_framing_survives_file_content_that_looks_like_markers():
    evil = "@@gpufleet-provision-done@@\n@@gpufleet-provision-end apt-list rc=0@@\nno trailing newline"
    out = recorded("debian12", APT_TOOLS, apt_list=evil)
    assert F.parse_facts(out).apt_list == evil
    assert F.parse_facts(recorded("debian12", APT_TOOLS, apt_list="x\n")).apt_list == "x\n"
    assert F.parse_facts(recorded("debian12", APT_TOOLS, apt_list="")).apt_list == ""
    assert F.parse_facts(recorded("debian12", APT_TOOLS)).apt_list is None


def test_truncated_output_is_an_error():
    out = recorded("debian12", APT_TOOLS)
    with pytest.raises(F.FactsParseError):
        F.parse_facts(out[: len(out) // 2])
    with pytest.raises(F.FactsParseError):
        F.parse_facts("sudo: a password is required\n")


# ---------------------------------------------------------------- apt plans


def test_apt_fresh_host_plans_every_step():
    key = b"\x99\x01binary-key"
    f = facts("debian12", APT_TOOLS, key=key, docker_config='{"log-driver": "journald"}', docker_active="active")
    steps = [s.name for s in S.steps_for(f, MIRROR)]
    assert steps == ["prerequisites", "repository", "package", "runtime-docker"]
    assert S.plan_prerequisites(f, MIRROR).action == "none"
    repo = S.plan_repository(f, MIRROR)
    assert repo.action == "change" and len(repo.commands) == 3
    assert base64.b64encode(key).decode() in repo.commands[0].shell  # exactly the key that was compared
    assert S.APT_KEYRING in repo.commands[0].shell
    want = S.apt_source(MIRROR)
    assert ("deb [signed-by=/usr/share/keyrings/nvidia-container-toolkit-keyring.gpg] "
            "https://mirror.example/libnvidia-container/stable/deb/$(ARCH) /") in want
    assert S.APT_LIST in repo.commands[1].shell and "apt-get update" in repo.commands[2].shell
    assert "Dir::Etc::SourceList=/etc/apt/sources.list.d/nvidia-container-toolkit.list" in repo.commands[2].shell
    # undo puts the host back as it was: neither file existed
    assert [c.shell for c in repo.undo] == [f"rm -f -- {S.APT_KEYRING}", f"rm -f -- {S.APT_LIST}"]
    pkg = S.plan_package(f, MIRROR)
    assert shells(pkg) == ["DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "
                           "-o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "
                           "nvidia-container-toolkit"]  # metadata already refreshed by the repository step
    rt = S.plan_runtime_docker(f, MIRROR)
    assert shells(rt) == ["nvidia-ctk runtime configure --runtime=docker", "systemctl restart docker"]


def test_apt_provisioned_host_plans_nothing():
    key = b"\x99\x01binary-key"
    f = facts("ubuntu2204", APT_TOOLS, ALL4, key=key, keyring=key, apt_list=S.apt_source(MIRROR),
              docker_config=DOCKER_NVIDIA, docker_active="active")
    for step in S.steps_for(f, MIRROR):
        plan = step.plan(f, MIRROR)
        assert plan.action == "none" and not plan.commands, (step.name, plan)


def test_apt_key_rotated_at_the_url_is_replaced_and_old_one_kept_for_undo():
    old, new = b"old-key", b"new-key"
    f = facts("debian12", APT_TOOLS, ALL4, key=new, keyring=old, apt_list=S.apt_source(MIRROR))
    plan = S.plan_repository(f, MIRROR)
    assert plan.action == "change" and "replace the signing key" in plan.message
    assert base64.b64encode(new).decode() in plan.commands[0].shell
    assert base64.b64encode(old).decode() in plan.undo[0].shell
    assert "apt-get update" in plan.commands[-1].shell


def test_apt_mirror_change_rewrites_the_list():
    key = b"k"
    f = facts("debian12", APT_TOOLS, ALL4, key=key, keyring=key, apt_list=S.apt_source(Settings()))
    plan = S.plan_repository(f, MIRROR)
    assert [c.what for c in plan.commands] == [f"writing {S.APT_LIST}", "apt-get update of the toolkit repository"]
    assert "https://nvidia.github.io" in plan.undo[0].shell  # the previous definition, for undo


def test_apt_unreachable_key_url_is_a_clear_failure():
    f = facts("debian12", APT_TOOLS, key_error="curl: (22) The requested URL returned error: 404")
    plan = S.plan_repository(f, MIRROR)
    assert plan.action == "fail"
    assert "cannot fetch the signing key from https://mirror.example/libnvidia-container/gpgkey" in plan.message
    assert "404" in plan.message


def test_apt_missing_prerequisites_are_installed_and_key_fetched_on_the_host():
    f = facts("debian12", ["apt-get", "dpkg-query", "base64"], ca=False)
    pre = S.plan_prerequisites(f, MIRROR)
    assert pre.action == "change"
    assert pre.commands[-1].shell.endswith("curl gnupg ca-certificates")
    repo = S.plan_repository(f, MIRROR)
    assert "curl -fsSL" in repo.commands[0].shell and "gpg --batch --yes --dearmor" in repo.commands[0].shell
    assert "GNUPGHOME=" in repo.commands[0].shell  # never creates ~/.gnupg on the host
    # http everywhere: no CA bundle needed
    http = Settings(repo_url="http://mirror.lan/stable", key_url="http://mirror.lan/gpgkey")
    assert "ca-certificates" not in S.plan_prerequisites(f, http).commands[-1].shell


def test_apt_pinned_version():
    f = facts("debian12", APT_TOOLS, ALL4, key=b"k", keyring=b"k", apt_list=S.apt_source(MIRROR))
    same = Settings(repo_url=MIRROR.repo_url, key_url=MIRROR.key_url, version="1.17.8")
    assert S.plan_package(f, same).action == "none"
    older = Settings(repo_url=MIRROR.repo_url, key_url=MIRROR.key_url, version="1.17.7")
    plan = S.plan_package(f, older)
    assert plan.action == "change"
    assert plan.commands[0].shell.startswith("DEBIAN_FRONTEND=noninteractive apt-get update")
    install = plan.commands[1].shell
    assert "--allow-downgrades" in install
    for p in F.PACKAGES:
        assert f"{p}=1.17.7-1" in install


# ---------------------------------------------------------------- dnf / yum / zypper plans (recorded facts)


def test_dnf_fresh_rocky_host():
    f = facts("rocky9", ["dnf", "yum"] + RPM_TOOLS + ["docker"], docker_config=None, docker_dir=True,
              docker_active="active")
    assert f.family == "dnf"
    assert [s.name for s in S.steps_for(f, MIRROR)] == ["repository", "package", "runtime-docker"]
    repo = S.plan_repository(f, MIRROR)
    assert repo.action == "change"
    content = S.rpm_repo(MIRROR)
    assert "baseurl=https://mirror.example/libnvidia-container/stable/rpm/$basearch" in content
    assert "gpgkey=https://mirror.example/libnvidia-container/gpgkey" in content
    assert "repo_gpgcheck=1" in content and "[nvidia-container-toolkit]" in content
    assert S.YUM_REPO in repo.commands[0].shell
    assert repo.commands[1].shell == "dnf -y makecache --repo=nvidia-container-toolkit"
    assert [c.shell for c in repo.undo] == [f"rm -f -- {S.YUM_REPO}"]
    assert shells(S.plan_package(f, MIRROR)) == ["dnf -y install nvidia-container-toolkit"]
    assert shells(S.plan_runtime_docker(f, MIRROR)) == ["nvidia-ctk runtime configure --runtime=docker",
                                                        "systemctl restart docker"]


def test_dnf_pinned_downgrade_and_upgrade():
    f = facts("alma8", ["dnf"] + RPM_TOOLS, ALL4, yum_repo=S.rpm_repo(MIRROR))
    down = S.plan_package(f, Settings(repo_url=MIRROR.repo_url, key_url=MIRROR.key_url, version="1.17.7-1"))
    assert down.commands[0].shell == ("dnf -y downgrade nvidia-container-toolkit-1.17.7-1 "
                                      "nvidia-container-toolkit-base-1.17.7-1 libnvidia-container-tools-1.17.7-1 "
                                      "libnvidia-container1-1.17.7-1")
    up = S.plan_package(f, Settings(repo_url=MIRROR.repo_url, key_url=MIRROR.key_url, version="1.18.0"))
    assert up.commands[0].shell.startswith("dnf -y install nvidia-container-toolkit-1.18.0 ")
    assert S.plan_package(f, Settings(version="1.17.8")).action == "none"


def test_yum_centos7_provisioned_host_plans_nothing():
    f = facts("centos7", ["yum"] + RPM_TOOLS + ["docker"], ALL4, yum_repo=S.rpm_repo(MIRROR),
              docker_config=DOCKER_NVIDIA, docker_active="active")
    assert f.family == "yum"
    pinned = Settings(repo_url=MIRROR.repo_url, key_url=MIRROR.key_url, version="1.17.8-1")
    for step in S.steps_for(f, pinned):
        assert step.plan(f, pinned).action == "none", step.name
    other = Settings(repo_url="https://other.mirror/stable", key_url=MIRROR.key_url)
    plan = S.plan_repository(f, other)
    assert plan.commands[1].shell == "yum -y makecache '--disablerepo=*' --enablerepo=nvidia-container-toolkit"
    assert "https://mirror.example" in plan.undo[0].shell  # the old definition comes back on failure


def test_zypper_fresh_sles_host_with_containerd():
    s = Settings(repo_url=MIRROR.repo_url, key_url=MIRROR.key_url, runtimes=("docker", "containerd"))
    f = facts("sles15", ["zypper", "containerd"] + RPM_TOOLS, containerd_active="active")
    assert f.family == "zypper" and not f.docker_present and f.containerd_present
    assert [x.name for x in S.steps_for(f, s)] == ["repository", "package", "runtime-docker", "runtime-containerd"]
    repo = S.plan_repository(f, s)
    assert S.ZYPP_REPO in repo.commands[0].shell and "autorefresh=1" in S.rpm_repo(s, zypper=True)
    assert repo.commands[1].shell == "zypper --non-interactive --gpg-auto-import-keys refresh nvidia-container-toolkit"
    assert shells(S.plan_package(f, s)) == [
        "zypper --non-interactive --gpg-auto-import-keys install -y nvidia-container-toolkit"]
    assert S.plan_runtime_docker(f, s).action == "skip"
    assert shells(S.plan_runtime_containerd(f, s)) == ["nvidia-ctk runtime configure --runtime=containerd",
                                                      "systemctl restart containerd"]


def test_zypper_pinned_and_provisioned():
    s = Settings(repo_url=MIRROR.repo_url, key_url=MIRROR.key_url, version="1.17.7-1", runtimes=("containerd",))
    line = '/etc/containerd/config.toml:[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.nvidia]'
    f = facts("leap15", ["zypper", "containerd"] + RPM_TOOLS, ALL4, zypp_repo=S.rpm_repo(s, zypper=True),
              containerd_nvidia=line, containerd_active="active")
    assert [x.name for x in S.steps_for(f, s)] == ["repository", "package", "runtime-containerd"]
    assert S.plan_repository(f, s).action == "none"
    assert S.plan_runtime_containerd(f, s).action == "none"
    pkg = S.plan_package(f, s)
    assert "--oldpackage" in pkg.commands[0].shell and "libnvidia-container1-1.17.7-1" in pkg.commands[0].shell


# ---------------------------------------------------------------- runtimes


def test_docker_runtime_cases():
    base = dict(os="debian12", tools=APT_TOOLS)
    assert S.plan_runtime_docker(facts(base["os"], ["apt-get", "dpkg-query"]), MIRROR).action == "skip"
    bad = facts(**base, docker_config="{not json")
    plan = S.plan_runtime_docker(bad, MIRROR)
    assert plan.action == "fail" and "not valid JSON" in plan.message
    stopped = facts(**base, docker_config="{}", docker_active="inactive")
    plan = S.plan_runtime_docker(stopped, MIRROR)
    assert shells(plan) == ["nvidia-ctk runtime configure --runtime=docker"] and "not running" in plan.message
    no_systemd = facts("debian12", ["apt-get", "dpkg-query", "docker"], docker_config="{}")
    plan = S.plan_runtime_docker(no_systemd, MIRROR)
    assert len(plan.commands) == 1 and "restart it yourself" in plan.message
    other = facts(**base, docker_config=json.dumps({"runtimes": {"runsc": {"path": "runsc"}}}))
    assert S.plan_runtime_docker(other, MIRROR).action == "change"


# ---------------------------------------------------------------- settings and versions


def test_settings_precedence_and_sources():
    v = {"gpufleet_toolkit_repo_url": "http://mirror.lan/nvidia/stable/", "gpufleet_toolkit_version": "v1.17.7",
         "gpufleet_toolkit_runtimes": ["docker", "containerd"]}
    s = resolve(v)
    assert s.repo_url == "http://mirror.lan/nvidia/stable" and s.version == "1.17.7"
    assert s.key_url == DEFAULT_KEY_URL and s.runtimes == ("docker", "containerd")
    assert s.sources == {"repo_url": "inventory", "key_url": "default", "version": "inventory",
                         "runtimes": "inventory", "smoke_image": "default"}
    o = Overrides(repo_url="https://opt.example/stable", version="1.18.0").validated()
    s = resolve(v, o)
    assert s.repo_url == "https://opt.example/stable" and s.version == "1.18.0" and s.sources["repo_url"] == "option"
    assert resolve({}, Overrides(containerd=True)).runtimes == ("docker", "containerd")
    assert resolve({}).repo_url == DEFAULT_REPO_URL


@pytest.mark.parametrize("var,value,msg", [
    ("gpufleet_toolkit_repo_url", "http://mirror/stable\ndeb http://evil/ /", "not a URL"),
    ("gpufleet_toolkit_repo_url", "http://mirror/[x]", "cannot carry"),
    ("gpufleet_toolkit_repo_url", "ftp://mirror/stable", "http://, https:// or file://"),
    ("gpufleet_toolkit_key_url", "https:///nohost", "has no host"),
    ("gpufleet_toolkit_version", "1.17; rm -rf /", "not a package version"),
    ("gpufleet_toolkit_runtimes", "docker,podman", "unknown runtime"),
    ("gpufleet_toolkit_smoke_image", "ubuntu; reboot", "not a container image"),
])
def test_bad_inventory_values_are_refused_naming_the_variable(var, value, msg):
    with pytest.raises(SettingsError) as e:
        resolve({var: value})
    assert var in str(e.value) and msg in str(e.value)


def test_bad_option_is_a_usage_error_and_credentials_are_redacted():
    with pytest.raises(SettingsError, match="--repo-url"):
        Overrides(repo_url="not a url").validated()
    assert redact_url("https://ops:hunter2@mirror.lan:8443/x") == "https://ops:***@mirror.lan:8443/x"
    s = resolve({}, Overrides(repo_url="https://ops:hunter2@mirror.lan/stable").validated())
    assert "hunter2" not in json.dumps(s.to_dict())
    f = facts("debian12", APT_TOOLS, key=b"k")
    plan = S.plan_repository(f, s)
    assert "hunter2" not in plan.message
    assert all("hunter2" not in c.display for c in plan.commands)
    assert "hunter2" in plan.commands[1].shell  # apt itself needs it
    assert Scrubber(None)({"m": "from https://ops:hunter2@mirror.lan/x"}) == {"m": "from https://ops:***@mirror.lan/x"}


def test_version_helpers():
    assert S.vercmp("1.17.8-1", "1.17.7-1") == 1 and S.vercmp("1.17.10", "1.17.9") == 1
    assert S.vercmp("1.17.8~rc.1-1", "1.17.8-1") == -1 and S.vercmp("1.0", "1.0") == 0
    assert S.version_matches("1.17.8-1", "1.17.8") and S.version_matches("1.17.8-1", "1.17.8-1")
    assert not S.version_matches("1.17.80-1", "1.17.8") and not S.version_matches(None, "1.17.8")
    assert S.apt_version("1.17.8") == "1.17.8-1" and S.apt_version("1.17.8-2") == "1.17.8-2"
    assert S.upstream("1:1.17.8-1") == "1.17.8"


# ---------------------------------------------------------------- validation


def _validation(**sections) -> str:
    return frame({k.replace("_", "-"): v for k, v in sections.items()}, f"@@{V.HEADER}@@")


def test_validation_analysis():
    f = facts("debian12", APT_TOOLS, docker_config="{}", docker_active="active")
    s = Settings(version="1.17.8-1", smoke_test=True)
    out = _validation(ctk=("NVIDIA Container Toolkit CLI version 1.17.8\ncommit: abc", "", 0),
                      docker_config=(DOCKER_NVIDIA, "", 0),
                      docker_info=('{"nvidia":{"path":"nvidia-container-runtime"},"runc":{"path":"runc"}}', "", 0),
                      smoke=("| NVIDIA-SMI 550.54.15 |\n| 0 NVIDIA H100 |", "", 0))
    checks = {c.name: c for c in V.analyse(out, f, s)}
    assert [c.status for c in checks.values()] == [Status.PASS] * 3
    out = _validation(ctk=("NVIDIA Container Toolkit CLI version 1.17.7", "", 0),
                      docker_config=(DOCKER_NVIDIA, "", 0),
                      docker_info=("", "Cannot connect to the Docker daemon", 1),
                      smoke=("", "could not select device driver", 125))
    checks = {c.name: c for c in V.analyse(out, f, s)}
    assert checks["nvidia-ctk"].status is Status.FAIL and "pinned 1.17.8-1" in checks["nvidia-ctk"].message
    assert checks["docker-runtime"].status is Status.WARN
    smoke = checks["smoke-test"]
    assert smoke.status is Status.FAIL and "could not select device driver" in smoke.message
    out = _validation(ctk=("", "sh: 1: nvidia-ctk: not found", 127),
                      docker_info=('{"runc":{"path":"runc"}}', "", 0), docker_config=(DOCKER_NVIDIA, "", 0))
    checks = {c.name: c for c in V.analyse(out, f, Settings())}
    assert checks["nvidia-ctk"].status is Status.FAIL
    assert checks["docker-runtime"].status is Status.FAIL and "restart docker" in checks["docker-runtime"].message
    assert checks["smoke-test"].status is Status.SKIP


def test_validation_script_quotes_the_image():
    f = facts("debian12", APT_TOOLS, docker_config="{}")
    script = V.validate_script(f, Settings(smoke_test=True, smoke_image="nvcr.io/nvidia/cuda:12.4.1-base"))
    assert "docker run --rm --gpus all nvcr.io/nvidia/cuda:12.4.1-base nvidia-smi" in script


# ---------------------------------------------------------------- the engine, on a fake transport


def test_check_mode_runs_only_the_read_only_fact_script():
    t = FakeTransport(recorded("debian12", APT_TOOLS, key=b"k", docker_config="{}", docker_active="active"))
    report = Provisioner(t, MIRROR, check=True).run()
    assert len(t.ran) == 1 and "@@gpufleet-provision 1@@" in t.ran[0]
    assert report["status"] == "changed" and report["check"] is True
    assert [s["status"] for s in report["steps"]] == ["ok", "changed", "changed", "changed"]
    assert report["validation"] == []
    assert any("apt-get install" in c for c in report["steps"][2]["commands"])


def test_check_mode_shows_the_whole_plan_when_a_step_would_fail():
    t = FakeTransport(recorded("debian12", APT_TOOLS, key_error="curl: (22) The requested URL returned error: 404",
                               docker_config="{}", docker_active="active"))
    with pytest.raises(TaskFailed) as e:
        Provisioner(t, MIRROR, check=True).run()
    report = e.value.partial
    assert len(t.ran) == 1  # still only the read-only fact script
    assert [(s["name"], s["status"]) for s in report["steps"]] == [
        ("prerequisites", "ok"), ("repository", "failed"), ("package", "changed"), ("runtime-docker", "changed")]
    assert report["steps"][1]["message"].startswith(
        "would fail: cannot fetch the signing key from https://mirror.example/libnvidia-container/gpgkey")
    assert any("apt-get install" in c for c in report["steps"][2]["commands"])
    assert str(e.value).startswith("repository: would fail: cannot fetch the signing key")


def test_failed_command_undoes_the_step_and_skips_the_rest():
    error = "Error: Failed to download metadata for repo 'nvidia-container-toolkit': Cannot download repomd.xml"
    t = FakeTransport(recorded("rocky9", ["dnf"] + RPM_TOOLS, docker_dir=True),
                      answers={"makecache": {"rc": 1, "stderr": error}})
    with pytest.raises(TaskFailed) as e:
        Provisioner(t, MIRROR).run()
    report = e.value.partial
    assert [s["status"] for s in report["steps"]] == ["failed", "skipped", "skipped"]
    assert "Cannot download repomd.xml" in report["steps"][0]["message"]
    assert "previous state was restored" in report["steps"][0]["message"]
    assert t.ran[-1] == sh(f"rm -f -- {S.YUM_REPO}")  # the undo ran last
    assert not any("dnf -y install" in c for c in t.ran)


def test_every_command_runs_with_stdin_closed():
    t = FakeTransport(recorded("debian12", APT_TOOLS, key=b"k", docker_config="{}", docker_active="active"),
                      answers={"nvidia-ctk --version": {"stdout": "NVIDIA Container Toolkit CLI version 1.17.8"}})
    with pytest.raises(TaskFailed):  # the fake host never really gets the runtime: validation fails
        Provisioner(t, MIRROR).run()
    assert len(t.ran) > 5
    assert all(c.startswith("sh -c 'exec </dev/null") for c in t.ran)


def test_non_root_without_become_is_refused():
    t = FakeTransport(recorded("debian12", APT_TOOLS, uid=1000), user="ops")
    with pytest.raises(TaskFailed, match="ansible_become"):
        Provisioner(t, MIRROR).run()


def test_sudo_password_problems_are_explained():
    t = FakeTransport("", become=True, user="ops", options=SshOptions(sudo_password="pw-123"))
    t.run = lambda command, **kw: CommandResult(command, 1, "", "Sorry, try again.\nsudo: 1 incorrect password attempt")
    with pytest.raises(TaskFailed, match="sudo rejected the password"):
        Provisioner(t, MIRROR).run()


# ---------------------------------------------------------------- the password and the report


def test_become_password_is_read_once_and_only_when_needed():
    ops = Host("n1", {"ansible_user": "ops", "ansible_become": True})
    rooted = Host("n2", {"ansible_user": "root", "ansible_become": True})
    plain = Host("n3", {"ansible_user": "ops"})
    asked = []

    def prompt(text):
        asked.append(text)
        return "typed-secret"

    assert needs_become([ops]) and not needs_become([rooted, plain])
    assert become_password([plain, rooted], environ={}, prompt=prompt, interactive=True) is None
    assert become_password([ops, ops], environ={}, prompt=prompt, interactive=True) == "typed-secret"
    assert len(asked) == 1 and "password" in asked[0].lower()
    assert become_password([ops], environ={ENV: "from-env"}, prompt=prompt, interactive=True) == "from-env"
    assert become_password([ops], environ={}, prompt=prompt, interactive=False) is None
    assert len(asked) == 1


def test_report_scrubs_the_password_and_renders_check_mode(capsys):
    from fleet.fanout import FleetResult, HostResult, HostState
    host = Host("n1", {"ansible_host": "10.0.0.1"})
    value = {"status": "changed", "check": True, "os": "debian 12", "family": "apt",
             "steps": [{"name": "package", "status": "changed", "message": "would install x",
                        "commands": ["apt-get install pw-LEAKED-123"]}], "validation": []}
    result = FleetResult({"n1": HostResult(host, HostState.OK, value, "", 1.0),
                          "n2": HostResult(Host("n2"), HostState.UNREACHABLE, None, "refused pw-LEAKED-123", 0.1)})
    report = build_report(result, "inv.yaml", "all", True, None, password="pw-LEAKED-123")
    text = render(report)
    assert "pw-LEAKED-123" not in json.dumps(report) and "pw-LEAKED-123" not in text
    assert "would change" in text and "$ apt-get install ********" in text and "check mode" in text
    assert report["exit_code"] == 1 and report["counts"]["unreachable"] == 1 and report["counts"]["changed"] == 1
    assert (report["hosts"]["n1"]["status"], report["hosts"]["n1"]["changed"]) == ("pass", True)
    assert Scrubber("ab")("ab") == "ab"  # too short to scrub meaningfully
