"""The read and write paths' machinery: chunks (de)compressed on all cores, frames filled
from templates, result columns in huge-page mappings, the sha256 computed while writing."""

from __future__ import annotations

import hashlib
import itertools
import json
import multiprocessing
import threading

import numpy as np
import pandas.testing as pdt
import pytest
import tables

from tickstore import CorruptionError, Tickstore, blosc, chunks, diskio, memory
from tickstore.columns import MAPPED_MIN, Columns
from tickstore.splay import CHUNK_ROWS
from tests.tickstore.helpers import SYM, stored_columns, trades


def test_filled_frames_equal_the_frames_blosc2_builds():
    """Every frame filled in from a template is byte for byte the one blosc2 builds around
    the same chunk, over codecs, levels, filters, item sizes and chunk sizes."""
    rng = np.random.default_rng(0)
    seen = special = 0
    for codec, level, shuffle, dtype, n in itertools.product(
        ["lz4", "zstd", "blosclz"], [1, 5], ["byte", "bit", "none"], ["i8", "f8", "i1", "S7", "u2"], [1, 3, 4096, 44_640]
    ):
        dtype = np.dtype(dtype)
        if dtype.kind == "S":
            part = np.array([b"abc%d" % (i % 50) for i in range(n)], dtype)
        elif dtype.kind == "f":
            part = np.round(rng.normal(0, 1, n).cumsum(), 1)
        else:
            part = rng.integers(0, 100, n).astype(dtype)
        params = chunks.cparams(f"blosc2:{codec}", level, shuffle, dtype.itemsize)
        frame, (at, length, check) = chunks.compress(part, params)
        if at < 0:
            special += 1
            continue
        inner = frame[at : at + length]
        assert frame == chunks._reference_frame(inner, part.nbytes, params), (codec, level, shuffle, dtype, n)
        out = np.empty_like(part)
        chunks.decompress(inner, out)
        assert np.array_equal(out, part)
        seen += 1
    assert seen > 300 and special == 0


def test_special_chunks_keep_blosc2s_frame_and_read_back(tmp_path):
    """An all-zero chunk is stored by blosc2 without data (offset -1, the whole frame is
    checked and decompressed); PyTables reads every array of the file, so the frames
    stay ordinary HDF5 blosc2 chunks."""
    n = CHUNK_ROWS * 2 + 5
    df = trades("2024-08-08", n, step="100ms")
    df["kind"] = np.int8(0)  # all market prints: zero chunks
    with Tickstore(tmp_path) as store:
        store["trades"].insert(SYM, "2024-08-08", df)
        (rel,) = store["trades"].index()["path"]
        path = tmp_path / rel
        f = store._files._open(str(path))
        assert all(ref[2] == -1 for ref in f.columns["kind"][3])
        assert all(ref[2] > 0 for ref in f.columns["price"][3])
        pdt.assert_frame_equal(store["trades"].select(SYM), df, check_freq=False)
    with tables.open_file(str(path)) as h:
        assert json.loads(h.root.data._v_attrs.columns)["trade_id"] == ["delta", 0]
        stored = stored_columns(h)  # through HDF5's blosc2 filter, decoded per the file's codecs
    for name in ["ts", *df.columns]:
        want = df.index.asi8 if name == "ts" else df[name].array.asi8 if name == "recv_ts" else df[name].to_numpy()
        assert np.array_equal(stored[name], want), name


def test_special_chunk_frames_come_from_a_bounded_cache_equal_to_blosc2s(monkeypatch):
    """Frames of all-zero chunks (stored without data) are kept per (parameters, size, chunk): the same bytes
    blosc2 builds, however often they are asked for; the cache holds at most
    ``_SPECIAL_MAX`` of them."""
    monkeypatch.setattr(chunks, "_SPECIAL", {})
    monkeypatch.setattr(chunks, "_SPECIAL_MAX", 4)
    params = chunks.cparams("blosc2:lz4", 1, "bit", 1)
    part = np.zeros(CHUNK_ROWS, np.int8)
    first = chunks.compress(part, params)
    assert first[1][0] == -1 and first == chunks.compress(part, params)
    inner = blosc.package().compress2(part, **params)
    assert first[0] == chunks._reference_frame(inner, part.nbytes, params)
    out = np.ones_like(part)
    chunks.decompress(first[0], out, whole_frame=True)
    assert not out.any()
    for n in range(1000, 1012):  # other sizes: the cache is emptied when full
        frame, (at, _, check) = chunks.compress(np.zeros(n, np.int8), params)
        assert at == -1 and 1 <= len(chunks._SPECIAL) <= 4
        got = np.ones(n, np.int8)
        chunks.decompress(frame, got, whole_frame=True)
        assert not got.any() and check == chunks.xxh3_64_intdigest(frame)


def test_a_damaged_chunk_fails_a_parallel_read_with_its_name(tmp_path):
    n = CHUNK_ROWS * 4
    with Tickstore(tmp_path) as store:
        store["trades"].insert(SYM, "2024-08-08", trades("2024-08-08", n, step="100ms"))
        (rel,) = store["trades"].index()["path"]
    path = tmp_path / rel
    with Tickstore(tmp_path) as store:
        f = store._files._open(str(path))
        offset, size, inner, inner_size, _ = f.columns["qty"][3][2]
    raw = bytearray(path.read_bytes())
    raw[offset + inner + inner_size // 2] ^= 0x40
    path.write_bytes(bytes(raw))
    with Tickstore(tmp_path) as store:
        assert len(store["trades"].select(SYM, columns=["price"])) == n  # other columns are fine
        with pytest.raises(CorruptionError, match=r"column 'qty' chunk 2 .*damaged \(checksum mismatch\)"):
            store["trades"].select(SYM)


def test_run_raises_the_first_failure_after_every_job_stopped():
    done, lock = [], threading.Lock()

    def ok(i):
        def job():
            with lock:
                done.append(i)

        return job

    def boom():
        raise ValueError("chunk 3 is damaged")

    jobs = [ok(0), ok(1), ok(2), boom, ok(4), ok(5)]
    with pytest.raises(ValueError, match="chunk 3"):
        chunks.run(jobs, chunks.PARALLEL_BYTES)
    chunks.run([ok(10), ok(11)], chunks.PARALLEL_BYTES)  # the workers still work
    assert {10, 11} <= set(done)
    small = []
    chunks.run([lambda: small.append(threading.current_thread().name)] * 3, 100)  # small: the caller alone
    assert small == [threading.current_thread().name] * 3


def _child_reads(root, queue):
    try:
        with Tickstore(root) as s:
            queue.put(len(s["trades"].select(SYM)))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent
        queue.put(repr(exc))


def test_a_forked_child_gets_its_own_workers(tmp_path):
    n = CHUNK_ROWS * 3
    with Tickstore(tmp_path) as s:
        s["trades"].insert(SYM, "2024-08-08", trades("2024-08-08", n, step="100ms"))
        assert len(s["trades"].select(SYM)) == n  # the parent's workers exist now
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_child_reads, args=(str(tmp_path), queue))
    child.start()
    child.join(120)
    if child.is_alive():
        child.kill()
        pytest.fail("the forked child hung")
    assert queue.get(timeout=5) == n


def test_large_reads_share_one_huge_page_mapping():
    n = 1_000_000
    rows = Columns.empty({"ts": np.int64, "price": np.float64, "side": np.int8}, n)
    arrays = [rows[name] for name in rows.names]
    assert rows["ts"].ctypes.data % (2 << 20) == 0  # the mapping starts on a huge page
    assert all(a.ctypes.data % 64 == 0 and a.flags.writeable and len(a) == n for a in arrays)
    for a, b in itertools.combinations(arrays, 2):
        assert not np.shares_memory(a, b)
    for i, a in enumerate(arrays):
        a[...] = i + 1
    assert [int(a[0]) for a in arrays] == [1, 2, 3] and [int(a[-1]) for a in arrays] == [1, 2, 3]
    assert rows["side"].base is not None  # views of one mapping, which lives as long as any of them
    small = Columns.empty({"ts": np.int64}, MAPPED_MIN // 16)
    assert small["ts"].flags.owndata  # small reads come from the heap


def test_create_new_returns_the_sha256_of_what_it_wrote(tmp_path):
    parts = [b"head" * 100, np.random.default_rng(1).integers(0, 255, 3_000_000, dtype=np.uint8).tobytes()]
    path = tmp_path / "a" / "b" / "file.h5"
    digest = diskio.create_new(path, parts, digest="sha256")
    assert path.read_bytes() == b"".join(parts)
    assert digest == hashlib.sha256(b"".join(parts)).hexdigest()
    assert not list(path.parent.glob(".*tmp*"))


def test_a_dropped_reads_memory_is_reused_and_the_pool_is_bounded(monkeypatch):
    memory.release()
    n = 1_000_000
    first = Columns.empty({"ts": np.int64, "price": np.float64}, n)
    address = first["ts"].ctypes.data
    price = first["price"]
    del first
    assert memory.pooled() == 0  # an array over the mapping is alive: not reusable
    other = Columns.empty({"ts": np.int64, "price": np.float64}, n)
    assert other["ts"].ctypes.data != address
    del price
    assert memory.pooled() == 16 << 20  # the first read's mapping, now free
    again = Columns.empty({"ts": np.int64, "price": np.float64}, n - 5)  # fits: reused
    assert again["ts"].ctypes.data == address and memory.pooled() == 0
    del again, other
    assert memory.pooled() == 32 << 20
    big = Columns.empty({"ts": np.int64}, 30_000_000)  # 240 MB: no pooled mapping fits
    assert big["ts"].ctypes.data != address
    monkeypatch.setattr(memory, "POOL_BYTES", 64 << 20)
    del big  # 240 MB > POOL_BYTES: unmapped at once
    assert memory.pooled() == 32 << 20
    monkeypatch.setattr(memory, "IDLE_SECONDS", 0.0)
    small = Columns.empty({"ts": np.int64}, 200_000)  # 1.6 MB: no pooled one fits, and the idle ones expire
    assert memory.pooled() == 0
    monkeypatch.setattr(memory, "IDLE_SECONDS", 30.0)
    del small
    assert memory.pooled() == 2 << 20
    assert memory.release() == 2 << 20 and memory.pooled() == 0


def test_a_read_keeps_its_values_whatever_happens_to_other_reads(tmp_path):
    """Pooled memory is handed out again only once no array uses it."""
    n = CHUNK_ROWS * 3
    df = trades("2024-08-08", n, step="100ms")
    with Tickstore(tmp_path) as store:
        store["trades"].insert(SYM, "2024-08-08", df)
        kept = store["trades"].select(SYM)["price"]  # the frame is dropped, one column kept
        for _ in range(3):
            store["trades"].select(SYM, columns=["qty"])
        pdt.assert_series_equal(kept, df["price"], check_freq=False)


def test_idle_pooled_memory_is_unmapped_even_if_nothing_reads_again(monkeypatch):
    import time

    memory.release()
    monkeypatch.setattr(memory, "IDLE_SECONDS", 0.05)
    rows = Columns.empty({"ts": np.int64}, 1_000_000)
    del rows
    deadline = time.monotonic() + 30
    while memory.pooled() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert memory.pooled() == 0
