"""Memtest: write and read back patterns over most of a device's free memory (an acceptance burn-in).

What DCGM's memory test and cuda_memtest do, in torch ops (docs/memtest.md): the
memory under test is allocated **all at once** (in chunks of at most
:data:`CHUNK_BYTES`, with a scratch buffer and a mask of a slice each), every
pattern is written over all of it, then read back and compared on the device.
Holding every chunk for the whole test is deliberate: a chunk freed and
allocated again would most likely get the same physical memory back, and the
test would cover one chunk's worth of memory many times instead of the device.
Writing every chunk before reading any back also lets an addressing fault (a
write to one place landing in another) show up.

Patterns (:data:`PATTERNS`), each over the whole region, in this order:

``walking_ones``  32-bit word ``i`` holds ``1 << ((i + seed) % 32)``
``walking_zeros`` the inverse: every bit set but that one
``random``        32-bit word ``i`` holds ``column(i % 1024) ^ row(i // 1024)``, two hashes of the
                  index and the seed (:func:`random_word`): regenerated for the check from the
                  index (1024 column words and one key per 4 KiB row), never stored twice
``random_inv``    its inverse
``address``       64-bit word ``i`` holds ``i``, its own index in the region (byte offset / 8)
``address_inv``   its inverse

Word indices count from the start of the region (chunk 0, offset 0), so no two
chunks hold the same address words.  Pass ``p`` (from 0) uses seed ``seed + p``:
the walking bit moves by one word and the random words change from pass to
pass.  :func:`pattern_words` gives the expected words of any range, on any
device; a mismatch's expected value can be checked on a CPU.

The comparison runs on the device, a slice (at most :data:`SLICE_BYTES`) at a
time, into the preallocated scratch buffer and mask: a count per slice stays on
the device until the pattern is read back (one synchronisation per pattern);
only a slice with mismatches is read again (:data:`LOCATE_WORDS` at a time) for
the first :data:`MAX_REPORTED` indices, which come back with the expected and
read words.  Everything is released at the end, whatever happened, and the CUDA
cache emptied.  The region, chunks and slices are multiples of :data:`ALIGN`.

How much: on CUDA ``fraction`` (0.9) of ``torch.cuda.mem_get_info()[0]`` after
emptying the cache, capped at ``max_bytes``; on a CPU ``max_bytes``, else
:data:`CPU_MAX_BYTES` (a CPU stands in for a GPU in tests, it is not memtested).
Whatever ``fraction`` says, ``TEMP_FACTOR`` slices plus :data:`RESERVE_BYTES`
stay free (the scratch buffer and mask take 1.25 slices; a search for
mismatches a little more).  An allocation that fails is a failed check.

Time: passes over all the patterns repeat while the next pass is expected to end
within ``seconds`` (the last pass's duration is the estimate; the budget starts
after the allocation); at least one full
pass always runs, ``max_passes`` caps them, and a pass that found errors is the
last.

Result: one check per device, ``memtest:<label>``: ``fail`` on any mismatch
(the message names the pattern, the count and the first address) and ``fail``
when the memory could not be allocated or the test could not finish (an
out-of-memory error, a CUDA error): a memory test that did not run is never a
pass.  Its ``details`` hold per pattern the errors and the first mismatches
(``pass``, ``chunk``, ``offset`` in the region, device ``address``,
``expected``, ``actual``, ``xor``), the bytes, chunks, passes and seconds, and
the GPU's ``uuid``.  Metrics: ``memtest/bytes_tested:<label>`` (the region's
size) and ``memtest/gbps:<label>`` (bytes written plus bytes read over every
pass, in 1e9 bytes/s, pattern generation and comparison included).  The error
count is in the check (``observed``), not in the metrics: the fleet verdict
compares every metric between hosts as higher-is-better.

Planted fault (tests): ``flip=(chunk, word, bit)`` or ``(chunk, word, bit,
pattern)`` flips bit ``bit`` of 32-bit word ``word`` of chunk ``chunk`` in
device memory after the pattern is written and before it is read back, in the
first pass, for every pattern or only for ``pattern``.
"""

from __future__ import annotations

import time
from typing import Optional, Sequence

import torch

from verify.status import FAIL, PASS, make_check

PATTERNS = ("walking_ones", "walking_zeros", "random", "random_inv", "address", "address_inv")
WORD_BYTES = {"walking_ones": 4, "walking_zeros": 4, "random": 4, "random_inv": 4, "address": 8, "address_inv": 8}
DTYPE = {4: torch.int32, 8: torch.int64}
CHUNK_BYTES = 1 << 30   # one tensor per GiB of the region
SLICE_BYTES = 256 << 20  # what one generate/compare step covers (a few kernels, each over the slice)
MIN_SLICE = 1 << 20
ALIGN = 4096            # the region, chunks and slices are multiples of it (ROW words of 32 bits)
CPU_MAX_BYTES = 64 << 20
MAX_REPORTED = 16       # first mismatches reported per pattern
LOCATE_WORDS = 1 << 20  # a slice with mismatches is searched this many words at a time
TEMP_FACTOR = 4         # free memory kept per byte of a slice, for the temporaries (1.25 needed)
RESERVE_BYTES = 64 << 20  # and this much more (the caching allocator's segments)
MASK32 = 0xFFFFFFFF
HASH_MULT = 0x45D9F3B   # < 2**31: a 32-bit value times it never overflows int64
HASH_SEED, HASH_SEED2 = 0x9E3779B9, 0x85EBCA6B
ROW = 1024              # the random pattern's row, in 32-bit words (see random_word)


# -- patterns -------------------------------------------------------------------------------------
def mix32(x: int) -> int:
    """The 32-bit hash behind the ``random`` pattern (a bijection on 0..2**32-1)."""
    x &= MASK32
    x = ((x >> 16) ^ x) * HASH_MULT & MASK32
    x = ((x >> 16) ^ x) * HASH_MULT & MASK32
    return (x >> 16) ^ x


def _mix32_(x: torch.Tensor) -> torch.Tensor:
    """:func:`mix32` in place on an int64 tensor of values in 0..2**32-1."""
    for _ in range(2):
        x.bitwise_xor_(x >> 16).mul_(HASH_MULT).bitwise_and_(MASK32)
    return x.bitwise_xor_(x >> 16)


def _signed32(v: int) -> int:
    return v - (1 << 32) if v >= 1 << 31 else v


def _keys(seed: int) -> tuple:
    k0 = mix32(seed ^ HASH_SEED)
    return k0, mix32(k0 ^ HASH_SEED2)


def random_word(index: int, seed: int = 0) -> int:
    """Word ``index`` of the ``random`` pattern, as a signed 32-bit int (the definition; the tensors are
    built from it): the region is cut in rows of :data:`ROW` words, and word ``i`` is
    ``column(i % ROW) ^ row(i // ROW)`` with ``column(j) = mix32(j ^ k0)``,
    ``row(r) = mix32(mix32((r % 2**32) ^ k1) ^ (r >> 32))``, ``k0 = mix32(seed ^ HASH_SEED)``,
    ``k1 = mix32(k0 ^ HASH_SEED2)`` (the seed counts modulo 2**32).  Writing a slice is then one
    broadcast XOR of a row of columns with a column of row keys: as fast as a fill."""
    k0, k1 = _keys(seed)
    r = index // ROW
    return _signed32(mix32((index % ROW) ^ k0) ^ mix32(mix32((r & MASK32) ^ k1) ^ (r >> 32)))


def _to_int32(x: torch.Tensor) -> torch.Tensor:
    """int64 values in 0..2**32-1 -> int32, exactly (two's complement)."""
    return x.sub_((x >> 31) << 32).to(torch.int32)


def _random_columns(seed: int, device, invert: bool = False) -> torch.Tensor:
    """``column(j)`` for ``j`` in ``0..ROW-1`` (inverted for ``random_inv``: ``~(a ^ b) == ~a ^ b``)."""
    cols = _to_int32(_mix32_(torch.arange(ROW, dtype=torch.int64, device=device).bitwise_xor_(_keys(seed)[0])))
    return cols.bitwise_not_() if invert else cols


def _random_rows(first: int, count: int, seed: int, device) -> torch.Tensor:
    """``row(r)`` for ``r`` in ``first .. first+count-1``."""
    r = torch.arange(first, first + count, dtype=torch.int64, device=device)
    x = _mix32_((r & MASK32).bitwise_xor_(_keys(seed)[1]))
    return _to_int32(_mix32_(x.bitwise_xor_(r >> 32)))


def pattern_words(kind: str, start: int, count: int, seed: int = 0, device=None) -> torch.Tensor:
    """The words pattern ``kind`` puts at word indices ``start .. start+count-1`` of the region.

    int32 for the 32-bit patterns (``walking_*``, ``random*``), int64 for ``address*``; indices
    count in the pattern's words from the start of the region.  ``device`` defaults to the CPU.
    """
    if kind not in WORD_BYTES:
        raise ValueError(f"unknown pattern {kind!r}; known: {', '.join(PATTERNS)}")
    if start < 0 or count < 0:
        raise ValueError(f"start and count must be >= 0 (got {start}, {count})")
    device = torch.device("cpu") if device is None else device
    if kind in ("walking_ones", "walking_zeros"):
        bit = (torch.arange(start, start + count, dtype=torch.int64, device=device) + seed) % 32
        ones = torch.ones_like(bit).bitwise_left_shift_(bit)
        words = ones.sub_((bit == 31).to(torch.int64) << 32).to(torch.int32)
        return words.bitwise_not_() if kind == "walking_zeros" else words
    if kind.startswith("random"):
        if count == 0:
            return torch.empty(0, dtype=torch.int32, device=device)
        first, last = start // ROW, (start + count - 1) // ROW
        cols = _random_columns(seed, device, invert=kind == "random_inv")
        rows = _random_rows(first, last - first + 1, seed, device)
        words = (rows.view(-1, 1) ^ cols.view(1, -1)).view(-1)
        return words[start - first * ROW:start - first * ROW + count]
    words = torch.arange(start, start + count, dtype=torch.int64, device=device)
    return words.bitwise_not_() if kind == "address_inv" else words


def compare(expected: torch.Tensor, actual: torch.Tensor, cap: int = MAX_REPORTED) -> tuple:
    """``(count, first_indices)``: how many words of ``actual`` differ from ``expected`` (broadcast to its
    shape) and the flat indices of the first ``cap`` of them.  The comparison runs where the tensors are;
    only the count and at most ``cap`` indices come back."""
    mismatch = actual != expected
    count = int(torch.count_nonzero(mismatch).item())
    if count == 0:
        return 0, []
    first = mismatch.reshape(-1).nonzero()[:cap].reshape(-1)
    return count, [int(i) for i in first.tolist()]


# -- sizes ----------------------------------------------------------------------------------------
def plan_bytes(free: int, fraction: float, max_bytes: Optional[int], slice_bytes: int = SLICE_BYTES) -> tuple:
    """``(region bytes, slice bytes)`` for ``free`` bytes of free device memory: ``fraction`` of it, capped
    at ``max_bytes``, rounded down to :data:`ALIGN`, and always leaving free ``TEMP_FACTOR`` slices plus
    :data:`RESERVE_BYTES` for the temporaries (a slice of at most a sixteenth of ``free``, at least
    :data:`MIN_SLICE`)."""
    slice_bytes = min(slice_bytes, max(MIN_SLICE, free // 16 // ALIGN * ALIGN))
    target = min(int(free * fraction), free - TEMP_FACTOR * slice_bytes - RESERVE_BYTES)
    if max_bytes is not None:
        target = min(target, int(max_bytes))
    return max(0, target) // ALIGN * ALIGN, slice_bytes


def chunk_sizes(total: int, chunk_bytes: int = CHUNK_BYTES) -> list:
    """The chunks covering ``total`` bytes: full chunks of ``chunk_bytes``, then the rest."""
    full, rest = divmod(total, chunk_bytes)
    return [chunk_bytes] * full + ([rest] if rest else [])


def allocate(nbytes: int, device: torch.device) -> torch.Tensor:
    """One buffer of the test (tests replace this to make an allocation fail)."""
    return torch.empty(nbytes, dtype=torch.uint8, device=device)


def _release(device: torch.device) -> None:
    """Give the cached blocks back to the driver (a broken CUDA context raises nothing here: the check
    already says what went wrong)."""
    if device.type == "cuda":
        try:
            torch.cuda.synchronize(device)
            torch.cuda.empty_cache()
        except Exception:  # noqa: BLE001 - e.g. a sticky CUDA error after an aborted test
            pass


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _uuid(device: torch.device) -> Optional[str]:
    if device.type != "cuda":
        return None
    try:
        return "GPU-" + str(torch.cuda.get_device_properties(device).uuid)
    except Exception:  # noqa: BLE001 - older torch without .uuid: the check just lacks it
        return None


def _drop_none(d: dict) -> dict:
    return {k: v for k, v in d.items() if v is not None}


def _hex(value: int, nbytes: int) -> str:
    return f"0x{value & ((1 << 8 * nbytes) - 1):0{2 * nbytes}x}"


# -- the test -------------------------------------------------------------------------------------
class _Region:
    """The chunks under test, cut into slices ``(chunk, offset in chunk, bytes, offset in region)``, and the
    comparison's scratch buffers (``scratch``: a slice's bytes; ``mask``: a flag per 32-bit word of it)."""

    def __init__(self, chunks: Sequence[torch.Tensor], slice_bytes: int, scratch: torch.Tensor, mask: torch.Tensor):
        self.chunks, self.slices, region = list(chunks), [], 0
        self.scratch, self.mask = scratch, mask.view(torch.bool)
        for c, chunk in enumerate(self.chunks):
            n = chunk.numel()
            for off in range(0, n, slice_bytes):
                self.slices.append((c, off, min(slice_bytes, n - off), region + off))
            region += n
        self.nbytes = region

    def words(self, kind: str, s: tuple) -> tuple:
        """``(1-D view of slice s in the pattern's words, index of its first word in the region)``."""
        c, off, n, region_off = s
        size = WORD_BYTES[kind]
        return self.chunks[c][off:off + n].view(DTYPE[size]), region_off // size


def _write(kind: str, words: torch.Tensor, start: int, seed: int) -> None:
    """Write pattern ``kind`` into ``words`` (a slice's words; ``start``: the index of its first word in the
    region, a multiple of :data:`ROW` for the 32-bit patterns), each in one pass over the memory."""
    dev = words.device
    if kind.startswith("address"):
        torch.arange(start, start + words.numel(), dtype=torch.int64, device=dev, out=words)
        if kind == "address_inv":
            words.bitwise_not_()
    elif kind.startswith("walking"):  # period 32: one row of ROW words, broadcast
        words.view(-1, ROW).copy_(pattern_words(kind, start, ROW, seed, dev).expand(words.numel() // ROW, ROW))
    else:  # a row of columns XOR a column of row keys
        rows = _random_rows(start // ROW, words.numel() // ROW, seed, dev)
        torch.bitwise_xor(_random_columns(seed, dev, kind == "random_inv").view(1, ROW), rows.view(-1, 1),
                          out=words.view(-1, ROW))


def _mismatches(kind: str, words: torch.Tensor, start: int, seed: int, region: _Region) -> torch.Tensor:
    """How many words of the slice differ from pattern ``kind`` (a 0-dim tensor, left on the device)."""
    dev, n = words.device, words.numel()
    hits = region.mask[:n]
    if kind.startswith("walking"):
        torch.ne(words.view(-1, ROW), pattern_words(kind, start, ROW, seed, dev).view(1, ROW), out=hits.view(-1, ROW))
    elif kind.startswith("random"):  # XOR with the row key is one-to-one: a word differs iff it differs after
        tmp = region.scratch.view(torch.int32)[:n].view(-1, ROW)
        torch.bitwise_xor(words.view(-1, ROW), _random_rows(start // ROW, n // ROW, seed, dev).view(-1, 1), out=tmp)
        torch.ne(tmp, _random_columns(seed, dev, kind == "random_inv").view(1, ROW), out=hits.view(-1, ROW))
    else:
        tmp = region.scratch.view(torch.int64)[:n]
        torch.arange(start, start + n, dtype=torch.int64, device=dev, out=tmp)
        if kind == "address_inv":
            tmp.bitwise_not_()
        torch.ne(words, tmp, out=hits)
    return torch.count_nonzero(hits)


def _flip(region: _Region, flip: tuple) -> None:
    c, w, bit = flip[:3]
    word = region.chunks[c].view(torch.int32)[w:w + 1]
    word.bitwise_xor_(-(1 << 31) if bit == 31 else 1 << bit)


def _check_flip(flip, sizes: list, patterns: Sequence[str]) -> Optional[tuple]:
    if flip is None:
        return None
    flip = tuple(flip)
    if len(flip) not in (3, 4):
        raise ValueError(f"flip must be (chunk, word, bit) or (chunk, word, bit, pattern), not {flip!r}")
    c, w, bit = (int(v) for v in flip[:3])
    pattern = flip[3] if len(flip) == 4 else None
    if not 0 <= c < len(sizes) or not 0 <= w < sizes[c] // 4 or not 0 <= bit < 32 or (
            pattern is not None and pattern not in patterns):
        raise ValueError(f"flip {flip!r} is outside the test ({len(sizes)} chunks, {sizes[0] // 4 if sizes else 0} "
                         f"words per full chunk, bits 0..31, patterns {', '.join(patterns)})")
    return c, w, bit, pattern


class _Test:
    def __init__(self, region: _Region, device: torch.device, patterns: Sequence[str], seed: int, flip):
        self.region, self.device, self.patterns, self.seed, self.flip = region, device, patterns, seed, flip
        self.errors = {k: 0 for k in patterns}
        self.first = {k: [] for k in patterns}
        self.unlocated = {k: 0 for k in patterns}
        self.pattern_seconds = {k: 0.0 for k in patterns}
        self.passes, self.seconds, self.moved = 0, 0.0, 0

    def one_pattern(self, kind: str, p: int) -> None:
        seed, region = self.seed + p, self.region
        _sync(self.device)
        t0 = time.perf_counter()
        for s in region.slices:
            _write(kind, *region.words(kind, s), seed)
        if self.flip is not None and p == 0 and self.flip[3] in (None, kind):
            _flip(region, self.flip)
        counts = [_mismatches(kind, *region.words(kind, s), seed, region) for s in region.slices]
        counts = torch.stack(counts).tolist() if counts else []  # the one synchronisation
        self.pattern_seconds[kind] += time.perf_counter() - t0
        self.moved += 2 * region.nbytes
        for s, n in zip(region.slices, counts):
            if n:
                self.errors[kind] += n
                self.locate(kind, p, s, n)

    def locate(self, kind: str, p: int, s: tuple, n: int) -> None:
        """Read the slice again, :data:`LOCATE_WORDS` at a time, for the first mismatches' places and words."""
        room = MAX_REPORTED - len(self.first[kind])
        if room <= 0:
            return
        words, start = self.region.words(kind, s)
        c, off, _, region_off = s
        size, base = WORD_BYTES[kind], self.region.chunks[c].data_ptr() + off
        found = 0
        for lo in range(0, words.numel(), LOCATE_WORDS):
            part = words[lo:lo + LOCATE_WORDS]
            expected = pattern_words(kind, start + lo, part.numel(), self.seed + p, part.device)
            count, idx = compare(expected, part, cap=room)
            found += count
            if not idx:
                continue
            index = torch.tensor(idx, dtype=torch.int64, device=part.device)
            for i, e, a in zip(idx, expected[index].tolist(), part[index].tolist()):
                at = (lo + i) * size
                self.first[kind].append({
                    "pass": p + 1, "chunk": c, "offset": region_off + at, "address": hex(base + at),
                    "expected": _hex(e, size), "actual": _hex(a, size), "xor": _hex(e ^ a, size)})
            room -= len(idx)
            if room <= 0:
                return
        if found == 0:
            self.unlocated[kind] += n  # gone on the second read: an intermittent fault

    def run(self, seconds: float, max_passes: Optional[int]) -> None:
        start = time.perf_counter()
        while True:
            t0 = time.perf_counter()
            for kind in self.patterns:
                self.one_pattern(kind, self.passes)
            self.passes += 1
            now = time.perf_counter()
            self.seconds = now - start
            if any(self.errors.values()) or (max_passes is not None and self.passes >= max_passes):
                return
            if now - start + (now - t0) > seconds:
                return


def _gib(n: int) -> str:
    return f"{n / 2 ** 30:.2f} GiB" if n >= 2 ** 30 else f"{n / 2 ** 20:.2f} MiB"


def run(device: torch.device, label: str, seconds: float, fraction: float = 0.9, max_bytes: Optional[int] = None,
        seed: int = 0, flip=None, *, patterns: Sequence[str] = PATTERNS, chunk_bytes: int = CHUNK_BYTES,
        slice_bytes: int = SLICE_BYTES, max_passes: Optional[int] = None) -> tuple:
    """``(metrics, [check])`` of the memory test on ``device`` (see the module's docstring).

    ``seconds``: the time budget (at least one full pass runs); ``fraction``: of the free CUDA memory;
    ``max_bytes``: a cap (on a CPU the size, default :data:`CPU_MAX_BYTES`); ``seed``: of pass 1;
    ``flip``: the planted fault; ``patterns``: a subset of :data:`PATTERNS`; ``chunk_bytes``,
    ``slice_bytes``: multiples of :data:`ALIGN`; ``max_passes``: a cap on the passes.
    Bad arguments raise ValueError; everything that goes wrong on the device is a failed check.
    """
    name = f"memtest:{label}"
    patterns = tuple(patterns)
    unknown = [k for k in patterns if k not in WORD_BYTES]
    if unknown or not patterns:
        raise ValueError(f"unknown pattern(s) {unknown or patterns!r}; known: {', '.join(PATTERNS)}")
    if not 0 < fraction <= 1 or seconds < 0 or (max_passes is not None and max_passes < 1):
        raise ValueError(f"need 0 < fraction <= 1, seconds >= 0, max_passes >= 1 "
                         f"(got {fraction}, {seconds}, {max_passes})")
    for what, v in (("chunk_bytes", chunk_bytes), ("slice_bytes", slice_bytes)):
        if v <= 0 or v % ALIGN:
            raise ValueError(f"{what} must be a positive multiple of {ALIGN} (got {v})")
    uuid = _uuid(device)
    if device.type == "cuda":
        _release(device)  # what earlier stages left in PyTorch's cache is free memory too
        free, total = torch.cuda.mem_get_info(device)
        nbytes, slice_bytes = plan_bytes(free, fraction, max_bytes, slice_bytes)
        sizing = f"{fraction:g} of {_gib(free)} free of {_gib(total)}"
    else:
        nbytes = (CPU_MAX_BYTES if max_bytes is None else int(max_bytes)) // ALIGN * ALIGN
        sizing = "CPU stand-in"
    sizes = chunk_sizes(nbytes, chunk_bytes)
    flip = _check_flip(flip, sizes, patterns)
    if not sizes:
        return {}, [make_check(name, FAIL, f"no memory to test ({sizing})", device=label, observed=0,
                               details=_drop_none({"bytes": 0, "uuid": uuid}))]
    step = min(slice_bytes, max(sizes))
    wanted = [(f"chunk {i} of {len(sizes)}", n) for i, n in enumerate(sizes)] + [
        ("the scratch buffer", step), ("the mismatch mask", step // 4)]
    held, test = [], None
    try:
        try:
            for _, n in wanted:
                held.append(allocate(n, device))
        except (RuntimeError, MemoryError) as exc:  # torch.cuda.OutOfMemoryError is a RuntimeError
            what, n = wanted[len(held)]
            have = sum(t.numel() for t in held)
            return {}, [make_check(
                name, FAIL, f"allocation failed: {what} ({_gib(n)}, {_gib(have)} of {_gib(nbytes)} held; "
                            f"{sizing}): {type(exc).__name__}: {exc}",
                device=label, details=_drop_none({"bytes": nbytes, "chunks": len(sizes), "allocated": have,
                                                  "uuid": uuid}))]
        test = _Test(_Region(held[:len(sizes)], step, *held[len(sizes):]), device, patterns, seed, flip)
        try:
            test.run(seconds, max_passes)
        except Exception as exc:  # noqa: BLE001 - e.g. OOM in a temporary, a CUDA error: the test failed
            return {}, [make_check(
                name, FAIL, f"test aborted in pass {test.passes + 1} after {_gib(nbytes)} allocated ({sizing}): "
                            f"{type(exc).__name__}: {exc}",
                device=label, details=_drop_none({"bytes": nbytes, "chunks": len(sizes), "passes": test.passes,
                                                  "errors": test.errors, "uuid": uuid}))]
    finally:
        held.clear()
        if test is not None:
            test.region = None  # the last references to the chunks: freed before the cache is emptied
        _release(device)
    return _result(name, label, test, nbytes, sizes, sizing, uuid)


def _result(name, label, test: _Test, nbytes, sizes, sizing, uuid) -> tuple:
    busy = sum(test.pattern_seconds.values())
    gbps = test.moved / busy / 1e9 if busy > 0 else 0.0
    errors = sum(test.errors.values())
    details = _drop_none({
        "bytes": nbytes, "chunks": len(sizes), "chunk_bytes": sizes[0], "passes": test.passes,
        "seconds": round(test.seconds, 3), "seed": test.seed, "uuid": uuid,
        "patterns": {k: _drop_none({
            "errors": test.errors[k], "gbps": round(2 * nbytes * test.passes / t / 1e9, 3) if t else None,
            "first": test.first[k], "unlocated": test.unlocated[k] or None}) for k, t in test.pattern_seconds.items()},
    })
    what = (f"{_gib(nbytes)} in {len(sizes)} chunk{'s' if len(sizes) > 1 else ''} ({sizing}), "
            f"{len(test.patterns)} patterns x {test.passes} pass{'es' if test.passes > 1 else ''}, {gbps:.1f} GB/s")
    metrics = {f"memtest/bytes_tested:{label}": nbytes, f"memtest/gbps:{label}": gbps}
    if not errors:
        return metrics, [make_check(name, PASS, f"{what}: no errors", device=label, observed=0, expected=0,
                                    details=details)]
    bad = [k for k in test.patterns if test.errors[k]]
    counts = ", ".join(f"{k} {test.errors[k]}" for k in bad)
    msg = f"{errors} mismatched word{'s' if errors > 1 else ''} ({counts}) in pass {test.passes}"
    located = [(k, test.first[k][0]) for k in bad if test.first[k]]
    if located:
        k, f = located[0]
        msg += (f"; first: {k} at offset {f['offset']:#x} (chunk {f['chunk']}, address {f['address']}): "
                f"expected {f['expected']}, read {f['actual']}")
    return metrics, [make_check(name, FAIL, f"{msg}; {what}", device=label, observed=errors, expected=0,
                                details=details)]
