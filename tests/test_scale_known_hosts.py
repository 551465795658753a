"""The run's shared, indexed known_hosts (fleet.host_keys.IndexedHostKeys) answers exactly as paramiko's own."""

from __future__ import annotations

import paramiko

from fleet.host_keys import IndexedHostKeys, KnownHosts


def _keys(n: int) -> list[paramiko.PKey]:
    return [paramiko.ECDSAKey.generate() for _ in range(n)]


def test_lookups_match_paramikos_over_plain_hashed_multi_name_and_repeated_entries(tmp_path):
    a, b, c, d = _keys(4)
    hashed = paramiko.HostKeys.hash_host("[10.0.0.9]:2222")
    text = (
        f"10.0.0.1 {a.get_name()} {a.get_base64()}\n"
        "# a comment\n\n"
        f"node2,10.0.0.2 {b.get_name()} {b.get_base64()}\n"
        f"{hashed} {c.get_name()} {c.get_base64()}\n"
        f"10.0.0.1 {a.get_name()} {a.get_base64()}\n"  # repeated: dropped, as paramiko does
        f"10.0.0.1 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n"
        f"[10.0.0.3]:2200 {d.get_name()} {d.get_base64()}\n"
        "garbage line\n"
    )
    path = tmp_path / "known_hosts"
    path.write_text(text)
    ours, theirs = IndexedHostKeys(str(path)), paramiko.HostKeys(str(path))
    for name in ("10.0.0.1", "node2", "10.0.0.2", "[10.0.0.9]:2222", "[10.0.0.3]:2200", "10.0.0.3", "nowhere"):
        mine, ref = ours.lookup(name), theirs.lookup(name)
        assert (mine is None) == (ref is None), name
        if ref is not None:
            assert list(mine.keys()) == list(ref.keys()), name
            assert [mine[k].asbytes() for k in mine.keys()] == [ref[k].asbytes() for k in ref.keys()], name
    assert len(ours) == len(theirs)
    assert ours.check("[10.0.0.9]:2222", c) and not ours.check("[10.0.0.9]:2222", a)


def test_added_keys_replace_one_of_the_same_type_or_join(tmp_path):
    a, b = _keys(2)
    keys = IndexedHostKeys()
    keys.add("h1", a.get_name(), a)
    keys.add("h1", b.get_name(), b)  # same type: replaces
    assert list(keys.lookup("h1").keys()) == [a.get_name()] and keys.lookup("h1")[a.get_name()] is b
    assert keys.lookup("h2") is None


def test_the_files_of_a_run_are_read_once_and_shared(tmp_path):
    a = _keys(1)[0]
    p = tmp_path / "kh"
    p.write_text(f"10.0.0.1 {a.get_name()} {a.get_base64()}\n")
    cache = KnownHosts()
    first = cache.get((str(p), str(tmp_path / "missing")))
    p.write_text("")  # read once: a later change to the file is not read again in the same run
    assert cache.get((str(p), str(tmp_path / "missing"))) is first
    assert first.lookup("10.0.0.1") is not None
