"""Hosts whose sshd has no ``sftp`` subsystem: files are streamed over exec channels instead."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from fleet.fanout import HostState, run_fleet
from fleet.inventory import parse_inventory
from fleet.push import build_wheel, push
from fleet.transport import SshTransport, connect


@pytest.fixture(scope="module")
def hosts(farm):
    for name, sftp in (("nosftp", False), ("withsftp", True)):
        farm.add_host(name, fixture=None, gpus=0, sftp=sftp, extra_vars={
            "ansible_python_interpreter": sys.executable, "gpufleet_remote_dir": str(farm.root / name / "cache")})
    return parse_inventory(farm.inventory(["nosftp", "withsftp"]), "nosftp.yaml")


@pytest.fixture
def transport(farm, hosts):
    t = connect(hosts.hosts["nosftp"], farm.options())
    yield t
    t.close()


EVERY_BYTE = bytes(range(256)) * 4 + b"\r\n\x00\n\x1a"


def test_files_round_trip_byte_for_byte_without_sftp(transport, farm, tmp_path):
    assert isinstance(transport, SshTransport)
    big = os.urandom(3 * 1024 * 1024 + 7)  # larger than the SSH window: the sender must wait, not drop bytes
    for name, data in (("every-byte.bin", EVERY_BYTE), ("big.bin", big), ("empty", b""),
                       ("it's a file", b"no newline at the end")):
        src = tmp_path / f"src-{name}"
        src.write_bytes(data)
        remote = farm.root / "nosftp" / "files" / name
        remote.parent.mkdir(exist_ok=True)
        transport.put(src, str(remote))
        assert remote.read_bytes() == data
        back = tmp_path / f"back-{name}"
        transport.get(str(remote), back)
        assert back.read_bytes() == data
    assert transport._sftp_absent is True  # remembered for the connection
    assert sorted(p.name for p in (farm.root / "nosftp" / "files").iterdir()) == sorted(
        ["every-byte.bin", "big.bin", "empty", "it's a file"])  # no temporary file left behind


def test_paths_relative_to_home_and_overwrites(transport, tmp_path):
    src = tmp_path / "x"
    src.write_bytes(b"first")
    name = f".gpufleet-nosftp-test-{os.getpid()}"
    home = transport.run("pwd").stdout.strip()
    try:
        transport.put(src, name)
        src.write_bytes(b"second, longer")
        transport.put(src, name)
        assert open(os.path.join(home, name), "rb").read() == b"second, longer"
    finally:
        os.unlink(os.path.join(home, name))


def test_missing_remote_file_is_file_not_found(transport, farm, tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        transport.get(str(farm.root / "nosftp" / "no-such-report.json"), tmp_path / "r.json")
    assert e.value.filename == str(farm.root / "nosftp" / "no-such-report.json")
    assert not (tmp_path / "r.json").exists()
    (tmp_path / "f").write_bytes(b"x")
    with pytest.raises(OSError, match=r"^upload to .*/no-such-dir/f failed: "
                                      r".*(Directory nonexistent|No such file or directory)$"):
        transport.put(tmp_path / "f", str(farm.root / "nosftp" / "no-such-dir" / "f"))


def test_a_server_with_sftp_still_uses_it(farm, hosts, tmp_path):
    t = connect(hosts.hosts["withsftp"], farm.options())
    try:
        src = tmp_path / "b"
        src.write_bytes(EVERY_BYTE)
        t.put(src, str(farm.root / "withsftp" / "b"))
        t.get(str(farm.root / "withsftp" / "b"), tmp_path / "b2")
        assert (tmp_path / "b2").read_bytes() == EVERY_BYTE and t._sftp_absent is False
        with pytest.raises(FileNotFoundError):
            t.get(str(farm.root / "withsftp" / "missing"), tmp_path / "m")
    finally:
        t.close()


def test_push_and_verify_work_without_sftp(farm, hosts, tmp_path):
    art = build_wheel()
    r = run_fleet(hosts.select("nosftp"), lambda t: push(t, art), farm.options(command_timeout=120))["nosftp"]
    assert r.state is HostState.OK, r.message
    assert r.value.uploaded is True and r.value.torch_ok
    from fleet.runs.launch import verify_fleet
    from fleet.runs.node import VerifySettings

    settings = VerifySettings(profile="quick", nproc="1", timeout=240, checks=("compute",))
    done = verify_fleet(hosts.select("nosftp"), settings, farm.options(command_timeout=240),
                        out_base=str(tmp_path / "runs"), pattern="nosftp", progress=False)
    run_dir, summary = done.run_dir, done.summary
    assert summary["hosts"]["nosftp"]["state"] == "ok", summary["hosts"]["nosftp"]
    fetched = (run_dir / "hosts" / "nosftp.json").read_bytes()
    on_node = Path(r.value.directory, "runs", run_dir.name, "nosftp", "report.json").read_bytes()
    assert fetched == on_node  # the node's bytes, unchanged
    assert json.loads(fetched)["schema"] == "gpufleet.verify/1"
