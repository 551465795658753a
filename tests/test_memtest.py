"""verify/memtest.py: the patterns' exact words, clean runs, planted bit flips, allocation failures, the time budget."""

from __future__ import annotations

import weakref

import pytest
import torch

import tests.verify_helpers  # noqa: F401  (puts the repo on sys.path)
from verify import memtest

CPU = torch.device("cpu")
MIB = 1 << 20
M32 = 0xFFFFFFFF


# An independent reading of random_word's documented definition (the hash is degski's 32-bit integer hash).
def _hash(x: int) -> int:
    x &= M32
    x = (((x >> 16) ^ x) * 0x45D9F3B) & M32
    x = (((x >> 16) ^ x) * 0x45D9F3B) & M32
    return (x >> 16) ^ x


def _random_ref(i: int, seed: int) -> int:
    k0 = _hash(seed ^ 0x9E3779B9)
    k1 = _hash(k0 ^ 0x85EBCA6B)
    r = i // 1024
    v = _hash((i % 1024) ^ k0) ^ _hash(_hash((r & M32) ^ k1) ^ (r >> 32))
    return v - (1 << 32) if v >= 1 << 31 else v


def _i32(v: int) -> int:
    v &= M32
    return v - (1 << 32) if v >= 1 << 31 else v


def _check(result):
    metrics, checks = result
    assert len(checks) == 1
    return metrics, checks[0]


# -- patterns -------------------------------------------------------------------------------------
def test_walking_ones_and_zeros_words():
    ones = memtest.pattern_words("walking_ones", 0, 34)
    assert ones.dtype == torch.int32
    assert ones.tolist() == [_i32(1 << b) for b in range(32)] + [1, 2]
    assert ones.tolist()[:4] == [1, 2, 4, 8] and ones.tolist()[31] == -(1 << 31)
    assert memtest.pattern_words("walking_zeros", 0, 34).tolist() == [_i32(~(1 << b)) for b in range(32)] + [-2, -3]
    # the start is a word index of the region; the seed moves the bit
    assert memtest.pattern_words("walking_ones", 37, 3).tolist() == [32, 64, 128]
    assert memtest.pattern_words("walking_ones", 0, 3, seed=1).tolist() == [2, 4, 8]
    assert memtest.pattern_words("walking_ones", 0, 2, seed=31).tolist() == [-(1 << 31), 1]


def test_address_words_are_their_index():
    a = memtest.pattern_words("address", 5, 4)
    assert a.dtype == torch.int64
    assert torch.equal(a, torch.arange(5, 9))
    assert memtest.pattern_words("address_inv", 5, 4).tolist() == [~5, ~6, ~7, ~8] == [-6, -7, -8, -9]
    assert memtest.pattern_words("address", 1 << 40, 2, seed=7).tolist() == [1 << 40, (1 << 40) + 1]


@pytest.mark.parametrize("start,count,seed", [(0, 8, 0), (1020, 10, 0), (3 * 1024 + 5, 2100, 3),
                                              ((1 << 32) * 1024 - 3, 6, 0), (7, 5, -1), (0, 4, (1 << 32) + 9)])
def test_random_words_exact(start, count, seed):
    got = memtest.pattern_words("random", start, count, seed)
    assert got.dtype == torch.int32
    expected = [_random_ref(i, seed) for i in range(start, start + count)]
    assert got.tolist() == expected
    assert [memtest.random_word(i, seed) for i in range(start, start + count)] == expected
    assert memtest.pattern_words("random_inv", start, count, seed).tolist() == [~v for v in expected]


def test_random_words_first_values_pinned():
    # pinned, so that a change to the generator is a visible decision
    assert memtest.pattern_words("random", 0, 4).tolist() == [
        _random_ref(0, 0), _random_ref(1, 0), _random_ref(2, 0), _random_ref(3, 0)]
    assert memtest.random_word(0, 0) == _random_ref(0, 0)


def test_random_words_look_random():
    w = memtest.pattern_words("random", 0, 1 << 16)
    ones = torch.stack([(w >> b) & 1 for b in range(32)]).double().mean(dim=1)
    assert ones.min().item() > 0.49 and ones.max().item() < 0.51  # every bit about half set (5 sigma)
    assert len(set(w.tolist())) > (1 << 16) - 10  # 0.5 birthday collisions expected in 2**16 of 2**32
    assert not torch.equal(w[:1024], memtest.pattern_words("random", 0, 1024, seed=1))
    assert not torch.equal(w[:1024], w[1024:2048])  # rows differ


def test_pattern_words_rejects_unknown_kind_and_negative_range():
    with pytest.raises(ValueError, match="unknown pattern"):
        memtest.pattern_words("checkerboard", 0, 4)
    with pytest.raises(ValueError):
        memtest.pattern_words("address", -1, 4)
    assert memtest.pattern_words("random", 9, 0).numel() == 0


def test_compare_counts_and_caps_first_indices():
    expected = torch.arange(100, dtype=torch.int64)
    actual = expected.clone()
    assert memtest.compare(expected, actual) == (0, [])
    actual[[3, 50, 99]] += 1
    assert memtest.compare(expected, actual) == (3, [3, 50, 99])
    assert memtest.compare(expected, actual, cap=2) == (3, [3, 50])
    # a broadcast row against rows of words
    row = torch.arange(4, dtype=torch.int32).view(1, 4)
    rows = row.expand(3, 4).clone()
    rows[2, 1] = 7
    assert memtest.compare(row, rows) == (1, [9])


# -- sizes ----------------------------------------------------------------------------------------
def test_plan_bytes_and_chunk_sizes():
    gib = 1 << 30
    assert memtest.plan_bytes(80 * gib, 0.9, None) == (int(80 * gib * 0.9) // 4096 * 4096, 256 * MIB)
    # fraction 1 still leaves the temporaries' room: 4 slices and 64 MiB
    assert memtest.plan_bytes(80 * gib, 1.0, None) == (80 * gib - 4 * 256 * MIB - 64 * MIB, 256 * MIB)
    assert memtest.plan_bytes(80 * gib, 0.9, 3 * MIB + 100) == (3 * MIB, 256 * MIB)
    assert memtest.plan_bytes(1 * gib, 0.9, None) == (gib - 4 * 64 * MIB - 64 * MIB, 64 * MIB)  # smaller slices
    assert memtest.plan_bytes(10 * MIB, 0.9, None) == (0, MIB)  # nothing left to test
    assert memtest.chunk_sizes(3 * MIB, MIB) == [MIB] * 3
    assert memtest.chunk_sizes(2 * MIB + 4096, MIB) == [MIB, MIB, 4096]
    assert memtest.chunk_sizes(0, MIB) == []


# -- runs on the CPU ------------------------------------------------------------------------------
def test_clean_run_passes():
    metrics, c = _check(memtest.run(CPU, "cpu0", 0, max_bytes=4 * MIB + 8192 + 100, chunk_bytes=MIB,
                                    slice_bytes=256 * 1024))
    assert c["name"] == "memtest:cpu0" and c["status"] == "pass", c
    assert c["observed"] == 0 and c["expected"] == 0
    assert metrics["memtest/bytes_tested:cpu0"] == 4 * MIB + 8192  # rounded down to 4 KiB
    assert metrics["memtest/gbps:cpu0"] > 0
    d = c["details"]
    assert d["bytes"] == 4 * MIB + 8192 and d["chunks"] == 5 and d["passes"] == 1
    assert set(d["patterns"]) == set(memtest.PATTERNS)
    assert all(p["errors"] == 0 and p["first"] == [] for p in d["patterns"].values())
    assert "no errors" in c["message"] and "6 patterns x 1 pass" in c["message"]


def test_cpu_default_size():
    metrics, c = _check(memtest.run(CPU, "cpu0", 0, patterns=("address",)))
    assert c["status"] == "pass"
    assert metrics["memtest/bytes_tested:cpu0"] == memtest.CPU_MAX_BYTES


def _flip_offset(chunk_bytes, chunk, word, size):
    return chunk * chunk_bytes + (4 * word) // size * size


@pytest.mark.parametrize("pattern", memtest.PATTERNS)
def test_planted_flip_fails_with_count_and_first_address(pattern):
    chunk, word, bit = 2, 70001, 5  # 70001 words in: in the chunk's second slice
    metrics, c = _check(memtest.run(CPU, "cpu0", 10, max_bytes=4 * MIB, chunk_bytes=MIB, slice_bytes=256 * 1024,
                                    flip=(chunk, word, bit, pattern)))
    assert c["status"] == "fail"
    assert c["observed"] == 1
    size = memtest.WORD_BYTES[pattern]
    offset = _flip_offset(MIB, chunk, word, size)
    assert f"1 mismatched word ({pattern} 1) in pass 1" in c["message"]
    assert f"first: {pattern} at offset {offset:#x} (chunk 2, address 0x" in c["message"]
    d = c["details"]
    assert d["passes"] == 1  # a pass that found errors is the last, however long the budget
    for k, p in d["patterns"].items():
        assert p["errors"] == (1 if k == pattern else 0), (k, p)
    (first,) = d["patterns"][pattern]["first"]
    assert first["offset"] == offset and first["chunk"] == 2 and first["pass"] == 1
    shift = bit + 32 * (word % 2) if size == 8 else bit  # the 32-bit word is a half of a 64-bit one
    assert int(first["xor"], 16) == 1 << shift
    assert (int(first["expected"], 16) ^ int(first["actual"], 16)) == 1 << shift
    # the expected word is the pattern's, at that index
    exp = memtest.pattern_words(pattern, offset // size, 1).item()
    assert int(first["expected"], 16) == exp & ((1 << 8 * size) - 1)
    assert metrics["memtest/bytes_tested:cpu0"] == 4 * MIB


def test_flip_of_bit_31_and_in_every_pattern():
    metrics, c = _check(memtest.run(CPU, "cpu0", 0, max_bytes=MIB, chunk_bytes=MIB, flip=(0, 0, 31)))
    assert c["status"] == "fail" and c["observed"] == len(memtest.PATTERNS)
    assert all(p["errors"] == 1 and p["first"][0]["offset"] == 0 for p in c["details"]["patterns"].values())
    assert c["details"]["patterns"]["walking_ones"]["first"][0]["actual"] == "0x80000001"
    assert c["message"].startswith("6 mismatched words (walking_ones 1, walking_zeros 1, random 1, random_inv 1, "
                                   "address 1, address_inv 1) in pass 1; first: walking_ones at offset 0x0")


@pytest.mark.parametrize("locate_words", [memtest.LOCATE_WORDS, 1024])
def test_many_mismatches_report_the_first_sixteen(monkeypatch, locate_words):
    real = memtest._write
    at = MIB + 4 * 1020  # a stuck-at-zero run of 100 words in chunk 1, across a 1024-word boundary

    def bad_write(kind, words, start, seed):
        real(kind, words, start, seed)
        if kind == "walking_zeros" and start * 4 <= at < start * 4 + words.numel() * 4:
            i = (at - start * 4) // 4
            words[i:i + 100] = 0

    monkeypatch.setattr(memtest, "_write", bad_write)
    monkeypatch.setattr(memtest, "LOCATE_WORDS", locate_words)
    _, c = _check(memtest.run(CPU, "cpu0", 0, max_bytes=2 * MIB, chunk_bytes=MIB))
    assert c["status"] == "fail" and c["observed"] == 100
    first = c["details"]["patterns"]["walking_zeros"]["first"]
    assert [f["offset"] for f in first] == [at + 4 * i for i in range(16)]
    assert all(f["actual"] == "0x00000000" and f["chunk"] == 1 for f in first)


def test_mismatches_gone_on_the_second_read_still_fail(monkeypatch):
    real, calls = memtest._mismatches, []

    def flaky(kind, words, start, seed, region):  # the first read of one slice sees 3 bad words, the re-read none
        calls.append(kind)
        n = real(kind, words, start, seed, region)
        return n + 3 if len(calls) == 1 else n

    monkeypatch.setattr(memtest, "_mismatches", flaky)
    _, c = _check(memtest.run(CPU, "cpu0", 0, max_bytes=MIB))
    assert c["status"] == "fail" and c["observed"] == 3
    p = c["details"]["patterns"]["walking_ones"]
    assert p == {"errors": 3, "gbps": p["gbps"], "first": [], "unlocated": 3}
    assert c["message"].startswith("3 mismatched words (walking_ones 3) in pass 1; 1.00 MiB")


@pytest.mark.parametrize("exc", [torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.00 GiB"),
                                 RuntimeError("CUDA out of memory"), MemoryError()])
def test_allocation_failure_fails_and_releases(monkeypatch, exc):
    held = []

    def allocate(nbytes, device):
        if len(held) == 2:
            raise exc
        t = torch.empty(nbytes, dtype=torch.uint8, device=device)
        held.append(weakref.ref(t))
        return t

    monkeypatch.setattr(memtest, "allocate", allocate)
    metrics, c = _check(memtest.run(CPU, "cpu0", 0, max_bytes=4 * MIB, chunk_bytes=MIB))
    assert c["status"] == "fail"
    assert metrics == {}
    assert c["message"].startswith("allocation failed: chunk 2 of 4 (1.00 MiB, 2.00 MiB of 4.00 MiB held")
    assert type(exc).__name__ in c["message"]
    assert c["details"]["allocated"] == 2 * MIB
    assert all(ref() is None for ref in held)  # the chunks allocated before the failure are gone


def test_scratch_allocation_failure_fails(monkeypatch):
    calls = []

    def allocate(nbytes, device):
        calls.append(nbytes)
        if len(calls) == 5:  # after the 4 chunks: the comparison's scratch buffer
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")
        return torch.empty(nbytes, dtype=torch.uint8, device=device)

    monkeypatch.setattr(memtest, "allocate", allocate)
    _, c = _check(memtest.run(CPU, "cpu0", 0, max_bytes=4 * MIB, chunk_bytes=MIB, slice_bytes=256 * 1024))
    assert c["status"] == "fail"
    assert c["message"].startswith("allocation failed: the scratch buffer (0.25 MiB, 4.00 MiB of 4.00 MiB held; "
                                   "CPU stand-in): OutOfMemoryError: CUDA out of memory"), c["message"]
    assert calls == [MIB] * 4 + [256 * 1024]


def test_failure_during_the_test_fails(monkeypatch):
    def broken(*args):
        raise RuntimeError("CUDA error: uncorrectable ECC error encountered")

    monkeypatch.setattr(memtest, "_mismatches", broken)
    metrics, c = _check(memtest.run(CPU, "cpu0", 5, max_bytes=MIB))
    assert c["status"] == "fail" and metrics == {}
    assert c["message"].startswith("test aborted in pass 1")
    assert "RuntimeError: CUDA error: uncorrectable ECC error encountered" in c["message"]


def test_no_memory_to_test_fails():
    _, c = _check(memtest.run(CPU, "cpu0", 0, max_bytes=100))
    assert c["status"] == "fail" and c["message"].startswith("no memory to test")


def test_time_budget_repeats_passes():
    metrics, c = _check(memtest.run(CPU, "cpu0", 0.5, max_bytes=64 * 1024))
    assert c["status"] == "pass"
    assert c["details"]["passes"] > 1  # a 64 KiB pass takes milliseconds
    assert f"x {c['details']['passes']} passes" in c["message"]


def test_max_passes_caps_and_zero_budget_runs_one_pass():
    _, c = _check(memtest.run(CPU, "cpu0", 3600, max_bytes=64 * 1024, max_passes=3))
    assert c["details"]["passes"] == 3
    _, c = _check(memtest.run(CPU, "cpu0", 0, max_bytes=64 * 1024))
    assert c["details"]["passes"] == 1


def test_seed_moves_the_patterns_between_passes(monkeypatch):
    seeds = []
    real = memtest._write

    def spy(kind, words, start, seed):
        seeds.append((kind, seed))
        real(kind, words, start, seed)

    monkeypatch.setattr(memtest, "_write", spy)
    memtest.run(CPU, "cpu0", 3600, max_bytes=4096, max_passes=2, seed=10, patterns=("random",))
    assert seeds == [("random", 10), ("random", 11)]


@pytest.mark.parametrize("kwargs", [
    {"flip": (4, 0, 0)}, {"flip": (0, MIB // 4, 0)}, {"flip": (0, 0, 32)}, {"flip": (0, 0, 0, "nope")},
    {"flip": (0, 0)}, {"patterns": ("nope",)}, {"fraction": 0}, {"fraction": 1.5}, {"seconds": -1},
    {"chunk_bytes": 1000}, {"max_passes": 0},
])
def test_bad_arguments_raise(kwargs):
    args = {"seconds": 0, **kwargs}
    with pytest.raises(ValueError):
        memtest.run(CPU, "cpu0", max_bytes=2 * MIB, chunk_bytes=args.pop("chunk_bytes", MIB), **args)


# -- on a GPU -------------------------------------------------------------------------------------
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(),
                    reason="needs CUDA: the memory test's GPU path (mem_get_info, device memory) only runs on a GPU")
def test_gpu_memtest():
    dev = torch.device("cuda", 0)
    # a planted flip, on a small region
    _, c = _check(memtest.run(dev, "gpu0", 0, max_bytes=256 * MIB, chunk_bytes=64 * MIB, slice_bytes=16 * MIB,
                              flip=(3, 12345, 7, "random")))
    assert c["status"] == "fail" and c["observed"] == 1, c
    (first,) = c["details"]["patterns"]["random"]["first"]
    assert first["offset"] == 3 * 64 * MIB + 4 * 12345 and first["xor"] == "0x00000080"
    assert c["details"]["uuid"].startswith("GPU-")
    assert int(first["expected"], 16) == memtest.pattern_words("random", first["offset"] // 4, 1).item() & M32
    for kind in memtest.PATTERNS:  # the same words on the GPU as on the CPU
        for start in (0, 5, (1 << 32) * 1024 - 7):
            assert memtest.pattern_words(kind, start, 5000, 3, dev).tolist() == \
                memtest.pattern_words(kind, start, 5000, 3).tolist(), (kind, start)
    # most of the free memory, one pass, everything given back
    torch.cuda.empty_cache()
    allocated, reserved = torch.cuda.memory_allocated(dev), torch.cuda.memory_reserved(dev)
    free = torch.cuda.mem_get_info(dev)[0]
    metrics, c = _check(memtest.run(dev, "gpu0", 0))
    assert c["status"] == "pass", c
    tested = metrics["memtest/bytes_tested:gpu0"]
    assert 0.5 * free <= tested <= 0.9 * free + 64 * MIB
    assert metrics["memtest/gbps:gpu0"] > 0
    assert c["details"]["passes"] == 1
    assert torch.cuda.memory_allocated(dev) == allocated
    assert torch.cuda.memory_reserved(dev) <= reserved
