"""Decompression through blosc2's C library (ctypes) instead of the blosc2 package: the
same bytes as the package over every codec, filter and encoding the writer uses, safe
on damaged input, parallel, and a read that never imports the package."""

from __future__ import annotations

import itertools
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from tickstore import Tickstore, blosc, chunks
from tickstore.splay import CHUNK_ROWS, _encode_chunk
from tests.conftest import REPO
from tests.tickstore.helpers import SYM, trades

CODECS = ("blosclz", "lz4", "lz4hc", "zstd", "zlib")
SHUFFLES = ("none", "byte", "bit")


@pytest.fixture
def fallback(monkeypatch):
    """The C library cannot be found: decompression falls back to the package."""
    monkeypatch.setattr(blosc, "library_paths", lambda: [])
    blosc.reset()
    yield
    monkeypatch.undo()
    blosc.reset()


def _parts(rng: np.random.Generator, n: int) -> list[np.ndarray]:
    """Columns as the writer stores them: plain and encoded ('delta', 'delta_scaled',
    'xor' int64 chunks), small ints, strings, bools."""
    ts = np.int64(1_723_075_200_000_000_000) + np.cumsum(rng.integers(0, 10**9, n))
    price = np.round(60_000 + rng.normal(0, 5, n).cumsum(), 1)
    qty = rng.exponential(0.1, n)
    encoded = []
    for values, codec, scale in ((ts, "delta", 0), (price, "delta_scaled", 1), (qty, "xor", 0)):
        out = np.empty(n, np.int64)
        if n:
            assert _encode_chunk(values, codec, scale, out)
        encoded.append(out)
    return [
        ts, price, *encoded,
        rng.choice(np.array([-1, 1], np.int8), n),
        rng.integers(0, 2**16, n).astype(np.uint16),
        np.array([b"trade-%d" % i for i in rng.integers(0, 10**6, n)], dtype="S13"),
        rng.random(n) < 0.5,
        np.zeros(n, np.int8),  # a special chunk: stored without data, read as a whole frame
    ]


def _by_package(raw, like: np.ndarray, whole_frame: bool) -> np.ndarray:
    b2 = blosc.package()
    out = np.empty_like(like)
    if whole_frame:
        b2.schunk_from_cframe(bytes(raw), copy=True).decompress_chunk(0, dst=out)
    else:
        b2.decompress2(bytes(raw), dst=out, nthreads=1)
    return out


def test_the_wheels_library_is_loaded_and_checked():
    b = blosc.binding()
    assert b is not None, blosc.why_not()
    assert b.path.parent.name == "lib" and b.path.parent.parent.name == "blosc2"
    assert b.version == blosc.package().VERSION_STRING == "3.3.5"  # C-Blosc2 of blosc2 4.14.1
    assert blosc.why_not() == ""


@pytest.mark.parametrize("codec", CODECS)
def test_every_codec_filter_and_encoding_round_trips_as_the_package_reads_it(codec):
    """Chunks the writer makes (``chunks.compress``: inner chunks and whole frames of
    special chunks), 0, 1, 3 rows up to a full chunk, read through the C library: the
    original bytes exactly, and the bytes the package decompresses."""
    assert blosc.binding() is not None
    rng = np.random.default_rng(7)
    seen = {"inner": 0, "frame": 0}
    for shuffle, n in itertools.product(SHUFFLES, (0, 1, 3, 4096, CHUNK_ROWS)):
        for part in _parts(rng, n):
            params = chunks.cparams(f"blosc2:{codec}", 5, shuffle, part.dtype.itemsize)
            frame, (at, length, _) = chunks.compress(part, params)
            whole = at < 0
            raw = memoryview(frame) if whole else memoryview(frame)[at : at + length]
            if whole and not n:
                continue  # blosc2 keeps no empty chunk in a frame; the writer stores no empty chunk
            got = np.full_like(part, 1)
            chunks.decompress(raw, got, whole_frame=whole)
            assert got.tobytes() == part.tobytes(), (codec, shuffle, n, part.dtype)
            assert got.tobytes() == _by_package(raw, part, whole).tobytes()
            seen["frame" if whole else "inner"] += 1
            if not whole:  # the frame around an inner chunk reads the same
                framed = np.full_like(part, 1)
                if n:
                    blosc.decompress_frame(frame, framed)
                    assert framed.tobytes() == part.tobytes()
    assert seen["inner"] > 100 and seen["frame"] >= 6


def test_the_fallback_reads_the_same(fallback):
    assert blosc.binding() is None and "not found" in blosc.why_not()
    rng = np.random.default_rng(3)
    for part in _parts(rng, 5000):
        params = chunks.cparams("blosc2:zstd", 1, "bit", part.dtype.itemsize)
        frame, (at, length, _) = chunks.compress(part, params)
        got = np.empty_like(part)
        chunks.decompress(frame if at < 0 else memoryview(frame)[at : at + length], got, whole_frame=at < 0)
        assert got.tobytes() == part.tobytes()
        with pytest.raises(ValueError):  # a destination of another size
            chunks.decompress(frame if at < 0 else memoryview(frame)[at : at + length], got[:-1], whole_frame=at < 0)


def test_a_library_that_does_not_load_falls_back_with_the_reason(tmp_path, monkeypatch):
    fake = tmp_path / "libblosc2.so"
    fake.write_bytes(b"not an ELF file")
    monkeypatch.setattr(blosc, "library_paths", lambda: [fake])
    blosc.reset()
    try:
        assert blosc.binding() is None and str(fake) in blosc.why_not()
        part = np.arange(1000, dtype=np.int64)
        inner = blosc.package().compress2(part, typesize=8)
        got = np.empty_like(part)
        blosc.decompress(inner, got)  # through the package
        assert (got == part).all()
    finally:
        monkeypatch.undo()
        blosc.reset()
    assert blosc.binding() is not None


def test_many_threads_decompress_at_once():
    """Each thread has its own context: 16 threads, each decompressing other chunks over
    and over into its own arrays, read every byte right."""
    rng = np.random.default_rng(5)
    cases = []
    for i, codec in enumerate(CODECS * 2):
        part = rng.integers(0, 1000, 20_000 + i).astype(np.int64).cumsum()
        frame, (at, length, _) = chunks.compress(part, chunks.cparams(f"blosc2:{codec}", 5, SHUFFLES[i % 3], 8))
        cases.append((part, frame[at : at + length]))
    errors = []
    start = threading.Barrier(16)

    def work(t: int) -> None:
        try:
            start.wait()
            for r in range(60):
                part, raw = cases[(t + r) % len(cases)]
                out = np.empty_like(part)
                chunks.decompress(raw, out)
                if not np.array_equal(out, part):
                    errors.append((t, r))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(16)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors
    chunks.run([lambda c=c: chunks.decompress(c[1], np.empty_like(c[0])) for c in cases * 8], chunks.PARALLEL_BYTES)


DAMAGE = r"""
import sys
sys.path.insert(0, {repo!r})
import numpy as np
from tickstore import blosc, chunks

rng = np.random.default_rng(11)
b2 = blosc.package()
assert blosc.binding() is not None
outcomes = {{"error": 0, "same": 0}}

def check(raw, like, whole):
    got = np.zeros_like(like)
    try:
        chunks.decompress(raw, got, whole_frame=whole)
    except ValueError:
        outcomes["error"] += 1
        return
    # it decompressed: exactly what the package makes of the same bytes
    ref = np.zeros_like(like)
    if whole:
        b2.schunk_from_cframe(bytes(raw), copy=True).decompress_chunk(0, dst=ref)
    else:
        b2.decompress2(bytes(raw), dst=ref, nthreads=1)
    assert got.tobytes() == ref.tobytes()
    outcomes["same"] += 1

for codec in ("blosclz", "lz4", "lz4hc", "zstd", "zlib"):
    for part in (np.arange(50_000, dtype=np.int64) * 3, rng.integers(0, 9, 50_000).astype(np.int8), np.zeros(30_000, np.int16)):
        frame, (at, length, _) = chunks.compress(part, chunks.cparams("blosc2:" + codec, 5, "byte", part.itemsize))
        whole = at < 0
        raw = frame if whole else frame[at : at + length]
        for cut in list(range(0, min(len(raw), 100))) + list(rng.integers(0, len(raw), 30)):  # truncated
            check(raw[:cut], part, whole)
        for _ in range(300):  # garbled: flipped bits, bytes overwritten, the header first
            bad = bytearray(raw)
            for _ in range(int(rng.integers(1, 4))):
                i = int(rng.integers(0, min(len(bad), 64) if rng.random() < 0.5 else len(bad)))
                if rng.random() < 0.5:
                    bad[i] ^= 1 << int(rng.integers(0, 8))
                else:
                    bad[i] = int(rng.integers(0, 256))
            check(bytes(bad), part, whole)
        check(bytes(rng.integers(0, 256, len(raw), dtype=np.uint8)), part, whole)  # noise
        for wrong in (part[:-1], np.concatenate([part, part[:1]])):  # a destination of another size
            got = np.zeros_like(wrong)
            try:
                chunks.decompress(raw, got, whole_frame=whole)
            except ValueError:
                outcomes["error"] += 1
            else:
                raise AssertionError("a chunk filled a destination of another size")
print("ok", outcomes["error"], outcomes["same"])
"""


def test_damaged_chunks_raise_and_never_crash():
    """Truncated, garbled and random chunks and frames, and destinations of the wrong
    size: a ``ValueError`` (what the readers turn into ``CorruptionError``), or bytes
    identical to the package's (a flip the codec cannot see; readers check an xxh3 first).
    In a process of its own, so a crash of the library fails the test."""
    proc = subprocess.run([sys.executable, "-c", DAMAGE.format(repo=str(REPO))], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    status, errors, same = proc.stdout.split()
    assert status == "ok" and int(errors) > 1000


READ = r"""
import sys
sys.path.insert(0, {repo!r})
from tickstore import Tickstore
table = Tickstore(sys.argv[1])["trades"]
cols = table.select_columns({sym!r}, "2024-08-08", "2024-08-09", columns=["trade_id", "kind"])
assert len(cols["ts"]) == {n} and int(cols["trade_id"][-1]) == {n} and not cols["kind"].any()
assert "blosc2" not in sys.modules
frame = table.select({sym!r}, "2024-08-08", "2024-08-09")
assert len(frame) == {n} and int(frame["trade_id"].iloc[-1]) == {n}, len(frame)
assert (frame["kind"] == 0).all()
print("LOADED", sorted(m for m in sys.modules if m == "blosc2" or m.startswith("blosc2.")))
"""


def test_a_read_does_not_import_the_blosc2_package(tmp_path):
    """A new process reads a day (inner chunks, a column of zeros stored as whole frames,
    the index's chunk) with ``select_columns`` and ``select`` without importing the
    blosc2 package (~0.4 s)."""
    n = CHUNK_ROWS * 2 + 17
    rows = trades("2024-08-08", n, step="200ms")
    rows["kind"] = rows["kind"] * 0
    with Tickstore(tmp_path) as s:
        s["trades"].insert(SYM, "2024-08-08", rows)
    proc = subprocess.run([sys.executable, "-c", READ.format(repo=str(REPO), sym=SYM, n=n), str(tmp_path)], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "LOADED []" in proc.stdout, proc.stdout


def test_sources_of_every_kind_and_only_whole_destinations():
    """Writable (a reader's scratch buffer), read-only (the index's bytes) and sliced
    sources read alike; a destination that is not one writable block is a caller's bug
    (TypeError), never taken for a damaged chunk."""
    part = np.arange(10_000, dtype=np.int64) ** 2
    inner = blosc.package().compress2(part, typesize=8, clevel=5)
    scratch = np.zeros(len(inner) + 64, np.uint8)
    scratch[10 : 10 + len(inner)] = np.frombuffer(inner, np.uint8)
    for raw in (inner, memoryview(inner), bytearray(inner), memoryview(scratch)[10 : 10 + len(inner)]):
        got = np.zeros_like(part)
        blosc.decompress(raw, got)
        assert np.array_equal(got, part), type(raw)
    with pytest.raises(TypeError):
        blosc.decompress(inner, np.zeros(20_000, np.int64)[::2])
    frozen = np.zeros_like(part)
    frozen.flags.writeable = False
    with pytest.raises(TypeError):
        blosc.decompress(inner, frozen)
    assert not frozen.any()
